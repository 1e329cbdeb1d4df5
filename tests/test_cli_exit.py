"""The console script leaves with os._exit: output is complete, exit codes are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsaudit.cli import main
from tests.processes import dsaudit_process

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "problems.pcap"
INVENTORY = ROOT / "samples" / "problems.inventory.yaml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _dsaudit(*args: str) -> subprocess.CompletedProcess[bytes]:
    result: subprocess.CompletedProcess[bytes] = dsaudit_process(*args, text=False)
    return result


def test_piped_output_is_complete(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["flows", str(SAMPLE), "--format", "jsonl"])
    assert done.value.code == 0
    expected = capsysbinary.readouterr().out
    proc = _dsaudit("flows", str(SAMPLE), "--format", "jsonl")
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert proc.stdout == expected and expected.count(b"\n") > 10


def test_exit_codes_survive() -> None:
    findings = _dsaudit("audit", str(SAMPLE), "--inventory", str(INVENTORY), "--format", "json")
    assert findings.returncode == 1 and findings.stdout.rstrip().endswith(b"}")
    bad = _dsaudit("audit", str(ROOT / "no-such.pcap"))
    assert bad.returncode == 2 and bad.stderr.startswith(b"dsaudit: error:")
    usage = _dsaudit("flows", "--format", "nope", str(SAMPLE))
    assert usage.returncode == 2 and b"Invalid value" in usage.stderr


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsaudit", "flows", str(SAMPLE), "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=ENV,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert b"Traceback" not in err
