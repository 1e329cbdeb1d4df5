"""`dsaudit audit` and `dsaudit inventory infer` end to end on the bundled samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsaudit", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_healthy_sample_is_compliant() -> None:
    out = run("audit", "samples/healthy.pcap", "--inventory", "samples/healthy.inventory.yaml")
    assert out.returncode == 0, out.stderr
    assert "COMPLIANT" in out.stdout and "NOT COMPLIANT" not in out.stdout


def test_problems_sample_fails_and_names_every_planted_problem(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    out = run(
        "audit",
        "samples/problems.pcap",
        "--inventory",
        "samples/problems.inventory.yaml",
        "--format",
        "json",
        "--output",
        str(report),
    )
    assert out.returncode == 1, out.stderr
    data = json.loads(report.read_text())
    kinds = {(f["kind"], f["host"]) for f in data["findings"]}
    assert ("blocked_expected_flow", "10.20.1.12") in kinds  # heartbeat unanswered
    assert ("blocked_expected_flow", "10.20.0.10") in kinds  # 4118 to 10.20.1.13 rejected
    assert ("missing_expected_flow", "10.20.1.14") in kinds  # silent agent
    assert ("localhost_only_port_on_wire", "10.20.1.12") in kinds
    assert ("unexplained_flow", "10.20.1.11") in kinds  # 8443
    assert ("unlisted_hostname", "10.20.1.11") in kinds  # updates.evil-example.net
    assert ("path_mtu_problem", "10.20.0.10") in kinds
    scans = [f for f in data["flows"] if f["match"] == "scan"]
    assert len(scans) == 100 and all(f["verdict"] == "explained" for f in scans)
    proxied = [f for f in data["flows"] if f["match"] == "proxy"]
    assert proxied and proxied[0]["server_name"] == "iaus.activeupdate.trendmicro.com"


@pytest.mark.parametrize(("fail_on", "code"), [("critical", 1), ("info", 1)])
def test_fail_on_sets_the_exit_code(fail_on: str, code: int) -> None:
    out = run(
        "audit",
        "samples/problems.pcap",
        "--inventory",
        "samples/problems.inventory.yaml",
        "--fail-on",
        fail_on,
        "--format",
        "json",
        "--output",
        "/dev/null",
    )
    assert out.returncode == code


def test_healthy_sample_passes_even_at_info() -> None:
    out = run(
        "audit",
        "samples/healthy.pcap",
        "--inventory",
        "samples/healthy.inventory.yaml",
        "--fail-on",
        "info",
        "--format",
        "json",
        "--output",
        "/dev/null",
    )
    assert out.returncode == 0, out.stdout


def test_without_inventory_roles_are_inferred() -> None:
    out = run("audit", "samples/healthy.pcap", "--format", "json")
    assert out.returncode in (0, 1), out.stderr
    assert "inferred" in out.stderr
    data = json.loads(out.stdout)
    assert data["summary"]["inventory"].startswith("inferred")
    roles = {(f["client_ip"], f["client_role"]) for f in data["flows"] if f["server_port"] == 4120}
    assert ("10.20.1.11", "agent") in roles


def test_inventory_infer_writes_a_loadable_inventory(tmp_path: Path) -> None:
    target = tmp_path / "inv.yaml"
    out = run("inventory", "infer", "samples/healthy.pcap", "--output", str(target))
    assert out.returncode == 0, out.stderr
    data = yaml.safe_load(target.read_text())
    assert data["hosts"]["manager"] == ["10.20.0.10"]
    assert "10.20.0.30" in data["hosts"]["relay"]
    assert data["deployment"]["database"] == "postgresql"
    assert "confidence" in target.read_text()
    check = run("inventory", "check", str(target))
    assert check.returncode == 0, check.stderr
    # The inferred inventory audits the sample cleanly apart from what it cannot know.
    audit = run(
        "audit",
        "samples/healthy.pcap",
        "--inventory",
        str(target),
        "--format",
        "json",
        "--output",
        str(tmp_path / "a.json"),
    )
    assert audit.returncode == 0, audit.stdout


def test_bad_inventory_is_one_error_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("deployment:\n  mode: sideways\nhosts:\n  manager: [not-an-address!]\n")
    out = run("audit", "samples/healthy.pcap", "--inventory", str(bad))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"{bad}:2" in out.stderr


def test_unreadable_capture_is_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture at all")
    out = run("audit", str(junk), "--inventory", "samples/healthy.inventory.yaml")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsaudit: error:") and "byte 0" in lines[0]


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json", "html"])
def test_every_format_renders(fmt: str, tmp_path: Path) -> None:
    target = tmp_path / f"report.{fmt}"
    out = run(
        "audit",
        "samples/problems.pcap",
        "--inventory",
        "samples/problems.inventory.yaml",
        "--format",
        fmt,
        "--output",
        str(target),
    )
    assert out.returncode == 1, out.stderr
    if fmt == "csv":
        # The CSV is the flows with their verdicts; the findings go beside it.
        assert "verdict" in target.read_text().splitlines()[0]
        target = target.with_name("report.findings.csv")
    assert "10.20.1.14" in target.read_text()  # the silent agent
