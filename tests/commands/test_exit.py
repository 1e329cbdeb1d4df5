"""The console script leaves with os._exit: output is complete, exit codes are kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsaudit.cli import main
from tests.processes import dsaudit_process

ROOT = Path(__file__).resolve().parents[2]
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


def test_ctrl_c_is_exit_130_in_one_line(tmp_path: Path) -> None:
    # A capture long enough to still be reading when the whole process group gets SIGINT,
    # as a terminal's Ctrl-C sends it (workers included).
    big = tmp_path / "long.pcap"
    with open(big, "wb") as out:
        raw = SAMPLE.read_bytes()
        out.write(raw)
        for _ in range(800):
            out.write(raw[24:])  # the same records again: a long, valid capture
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsaudit", "audit", str(big), "--jobs", "2", "--format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=ENV,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(0.6)  # the run takes over a second; the signal lands while it reads
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.decode().strip().splitlines()[-1] == "dsaudit: interrupted"
    assert b"Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        *[
            ["flows", str(SAMPLE), "--format", f]
            for f in ("table", "csv", "json", "jsonl", "parquet")
        ],
        *[
            ["audit", str(SAMPLE), "--format", f]
            for f in ("table", "markdown", "csv", "json", "html")
        ],
        ["report", str(SAMPLE), "-i", str(INVENTORY), "--no-history", "--format", "markdown"],
        ["firewall", "--inventory", str(INVENTORY), "--format", "nftables"],
        ["inventory", "infer", str(SAMPLE)],
    ],
    ids=lambda a: "-".join(a[:1] + a[-1:]),
)
# (audit's parquet output is a directory or stem it creates, so a missing folder is fine there)
def test_an_output_that_cannot_be_written_is_one_line(args: list[str], tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "out"
    proc = _dsaudit(*args, "--output", str(target))
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith(f"dsaudit: error: cannot write {target}"), lines
    assert b"Traceback" not in proc.stderr


def _empty_pcap(path: Path) -> Path:
    path.write_bytes(SAMPLE.read_bytes()[:24])  # a valid header and not one packet
    return path


@pytest.mark.parametrize(
    "args,message",
    [
        (["audit", "{empty}", "-i", str(INVENTORY)], "the capture holds no packets"),
        (["inventory", "infer", "{empty}"], "nothing to infer from"),
        (["report", "{empty}", "-i", str(INVENTORY), "--no-history"], "hold no packets or flows"),
        (
            ["report", str(SAMPLE), "-i", str(INVENTORY), "--no-history", "--until", "2020-01-01"],
            "no file covers the period (1 file(s) outside it)",
        ),
        (
            ["report", str(SAMPLE), "-i", str(INVENTORY), "--no-history", "--since", "2030-01-01"],
            "no packet or flow falls in the period (2030-01-01T00:00:00.000000Z to now)",
        ),
        (["audit", str(SAMPLE), "--vantage", "dsm.example"], "neither an IP address nor span"),
        (["flows", str(SAMPLE), "--tcp-timeout", "0"], "is not in the range x>0"),
    ],
    ids=[
        "empty-audit",
        "empty-infer",
        "empty-report",
        "period-without-files",
        "period-after-the-files",
        "vantage",
        "timeout",
    ],
)
def test_nothing_to_judge_or_a_bad_value_is_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = str(_empty_pcap(tmp_path / "empty.pcap"))
    with pytest.raises(SystemExit) as done:
        main([a.replace("{empty}", empty) for a in args])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_unreadable_capture_among_several_is_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "newest.pcap"
    empty.write_bytes(b"")  # as tcpdump -G leaves the file it has just started
    with pytest.raises(SystemExit) as done:
        main(["flows", str(SAMPLE), "--format", "jsonl"])
    alone = capsys.readouterr().out
    for jobs in ("1", "2"):
        with pytest.raises(SystemExit) as done:
            main(["flows", str(SAMPLE), str(empty), "--format", "jsonl", "--jobs", jobs])
        got = capsys.readouterr()
        assert done.value.code == 0
        assert got.out == alone
        assert (
            got.err
            == f"dsaudit: warning: {empty}: byte 0: empty file: no capture header: left out\n"
        )
    with pytest.raises(SystemExit) as done:
        main(["audit", str(SAMPLE), str(empty), "-i", str(INVENTORY), "--format", "json"])
    captures = json.loads(capsys.readouterr().out)["summary"]["captures"]
    assert [(c["path"], c["packets"] > 0, c["damaged"]) for c in captures] == [
        (str(SAMPLE), True, None),
        (str(empty), False, "byte 0: empty file: no capture header"),
    ]


@pytest.mark.parametrize("second", ["empty", "missing"])
def test_unreadable_captures_with_nothing_else_or_missing_files_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], second: str
) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    first = str(empty) if second == "empty" else str(SAMPLE)
    with pytest.raises(SystemExit) as done:
        main(["flows", first, str(tmp_path / f"{second}.pcap")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    expected = "empty file: no capture header" if second == "empty" else "no such file"
    assert err.strip().splitlines()[-1].endswith(expected)
