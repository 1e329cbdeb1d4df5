"""Help and the light commands start without importing pandas (a second saved)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.processes import ROOT

PROBE = """
import json, sys
from click.testing import CliRunner
from dsaudit.cli import cli
result = CliRunner().invoke(cli, sys.argv[1:])
heavy = sorted(m for m in ("pandas", "pyarrow", "scapy") if m in sys.modules)
print(json.dumps({"code": result.exit_code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        *[[name, "--help"] for name in ("flows", "audit", "report", "live", "history", "rules")],
        ["rules", "list"],
        ["firewall", "--inventory", "samples/problems.inventory.yaml", "--format", "nftables"],
        ["inventory", "check", "samples/problems.inventory.yaml"],
    ],
    ids=" ".join,
)
def test_no_heavy_imports(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"code": 0, "heavy": []}, proc.stderr
