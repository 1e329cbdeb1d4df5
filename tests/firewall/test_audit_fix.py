"""`dsaudit audit --fix`: allow rules for exactly the blocked and missing expected flows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.processes import ROOT, dsaudit_process

SAMPLE = ROOT / "samples" / "problems.pcap"
INVENTORY = ROOT / "samples" / "problems.inventory.yaml"


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return path


def _audit_with_fix(tmp_path: Path, dialect: str) -> tuple[dict[str, Any], str]:
    report, rules = tmp_path / "report.json", tmp_path / f"fix.{dialect}"
    done = dsaudit_process(
        "audit",
        str(SAMPLE),
        "--inventory",
        str(INVENTORY),
        "--format",
        "json",
        "--output",
        str(report),
        "--fix",
        dialect,
        "--fix-output",
        str(rules),
    )
    assert done.returncode == 1, done.stderr
    return json.loads(report.read_text()), rules.read_text()


def _wanted(report: dict[str, Any]) -> set[tuple[str, str, int]]:
    """(rule, host, port) of every blocked and missing expected flow of the report."""
    return {
        (f["rule"], f["host"], f["port"])
        for f in report["findings"]
        if f["kind"] in ("blocked_expected_flow", "missing_expected_flow")
    }


def test_nft_accepts_the_fix_and_it_opens_exactly_the_failed_flows(tmp_path: Path) -> None:
    nft = _tool("nft")
    report, text = _audit_with_fix(tmp_path, "nftables")
    path = tmp_path / "fix.nft"
    path.write_text(text)
    checked = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    rules = re.findall(r'dport (\d+) accept comment "([a-z0-9.-]+):', text)
    wanted = _wanted(report)
    assert {(rule, int(port)) for port, rule in rules} == {(r, p) for r, _, p in wanted}
    # Nothing for the unexplained flows (8443, the unlisted host name, 4123 on the wire).
    assert "8443" not in text and "4123" not in text.split("table inet dsaudit {")[1]
    for finding in report["findings"]:
        if finding["kind"] == "blocked_expected_flow":
            assert finding["fix"] and all(" accept comment " in line for line in finding["fix"])
            assert finding["host"] in " ".join(finding["fix"])
        else:
            assert finding["kind"] == "missing_expected_flow" or not finding["fix"]


def test_iptables_restore_accepts_the_fix(tmp_path: Path) -> None:
    restore = _tool("iptables-restore")
    report, text = _audit_with_fix(tmp_path, "iptables")
    path = tmp_path / "fix.rules"
    path.write_text(text)
    checked = subprocess.run([restore, "--test", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    lines = [line for line in text.splitlines() if line.startswith("-A DSAUDIT ")]
    blocked = [f for f in report["findings"] if f["kind"] == "blocked_expected_flow"]
    for finding in blocked:
        flows = [fl for fl in report["flows"] if fl["flow_id"] in finding["flow_ids"]]
        client, server = flows[0]["client_ip"], flows[0]["server_ip"]
        assert any(
            f"-s {client}/32 -d {server}/32 -p {flows[0]['proto']}" in line
            and finding["rule"] in line
            for line in lines
        ), finding["message"]


def test_cloud_fixes_are_json_for_each_security_group(tmp_path: Path) -> None:
    _, aws = _audit_with_fix(tmp_path, "aws-sg")
    groups = json.loads(aws)
    assert {(g["role"], g["direction"]) for g in groups} >= {
        ("agent", "inbound"),
        ("agent", "outbound"),
        ("manager", "inbound"),
    }
    ports = {p["FromPort"] for g in groups for p in g["IpPermissions"]}
    assert ports == {123, 4118, 4120, 5274}
    _, azure = _audit_with_fix(tmp_path, "azure-nsg")
    assert {r["properties"]["destinationPortRange"] for r in json.loads(azure)} == {
        "123",
        "4118",
        "4120",
        "5274",
    }


def test_the_html_report_shows_the_rule_under_each_finding(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    done = dsaudit_process(
        "audit", str(SAMPLE), "--inventory", str(INVENTORY), "--format", "html", "-o", str(page)
    )
    assert done.returncode == 1, done.stderr
    html = page.read_text()
    assert html.count('<pre class="fix">') == 8  # 6 blocked, 2 missing
    assert "<dt>likely cause</dt><dd>rejected by a firewall</dd>" in html
    assert "ip saddr { 10.20.1.13 } ip daddr { 198.51.100.50 } tcp dport 5274 accept" in html


def test_fix_without_a_place_to_write_is_a_usage_error() -> None:
    done = dsaudit_process("audit", str(SAMPLE), "--inventory", str(INVENTORY), "--fix", "nftables")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--fix-output" in done.stderr


V6_INVENTORY = """\
deployment:
  version: "11.0"
  mode: on-premises
  communication: agent-initiated
  database: postgresql
hosts:
  manager: ["2001:db8::10"]
  database: ["2001:db8::20"]
  agent: ["2001:db8:1::11", "10.20.1.12"]
"""


def _refused_heartbeats(tmp_path: Path) -> tuple[Path, Path]:
    """An IPv6 agent and an IPv4 one whose heartbeats the manager's port answers with RST."""
    from tests.packets import BASE_TS, NS, tcp_frame, write_pcap

    frames = []
    for i, (agent, manager) in enumerate(
        [("2001:db8:1::11", "2001:db8::10"), ("10.20.1.12", "10.20.0.99")]
    ):
        for k in range(3):
            at = BASE_TS + (i * 10 + k) * NS
            frames.append((at, tcp_frame(agent, manager, 40000 + k, 4120, "S", seq=1000)))
            frames.append((at + 1000, tcp_frame(manager, agent, 4120, 40000 + k, "RA", ack=1001)))
    inventory = tmp_path / "v6.yaml"
    inventory.write_text(V6_INVENTORY.replace('"2001:db8::10"]', '"2001:db8::10", "10.20.0.99"]'))
    return write_pcap(tmp_path / "v6.pcap", frames), inventory


def test_ip6tables_fix_has_the_ipv6_rules_and_iptables_says_where_they_are(
    tmp_path: Path,
) -> None:
    restore = _tool("ip6tables-restore")
    capture, inventory = _refused_heartbeats(tmp_path)
    texts, warnings = {}, {}
    for dialect in ("iptables", "ip6tables"):
        rules = tmp_path / f"fix.{dialect}"
        done = dsaudit_process(
            "audit", str(capture), "--inventory", str(inventory), "--format", "json",
            "-o", str(tmp_path / "report.json"), "--fix", dialect, "--fix-output", str(rules),
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        texts[dialect] = rules.read_text()
        warnings[dialect] = [ln for ln in done.stderr.splitlines() if "fix rule(s)" in ln]
    v6 = [ln for ln in texts["ip6tables"].splitlines() if ln.startswith("-A DSAUDIT ")]
    assert any("-s 2001:db8:1::11/128 -d 2001:db8::10/128 -p tcp --dport 4120" in ln for ln in v6)
    assert not any("10.20." in ln for ln in v6)
    v4 = [ln for ln in texts["iptables"].splitlines() if ln.startswith("-A DSAUDIT ")]
    assert any("-s 10.20.1.12/32 -d 10.20.0.99/32 -p tcp --dport 4120" in ln for ln in v4)
    assert not any("2001:db8" in ln for ln in v4)
    # Each file and the command name the rules only the other family's file has.
    assert "rule(s) for IPv6 are in --fix ip6tables" in texts["iptables"]
    assert "rule(s) for IPv4 are in --fix iptables" in texts["ip6tables"]
    assert warnings["iptables"] == [
        "dsaudit: warning: 1 fix rule(s) are for IPv6 only: see --fix ip6tables"
    ]
    path = tmp_path / "fix.v6"
    path.write_text(texts["ip6tables"])
    checked = subprocess.run([restore, "--test", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
