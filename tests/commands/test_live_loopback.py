"""`dsaudit live` on the loopback interface with real sockets (as root, as CI runs it)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dsaudit.cli import cli
from tests.commands.loopback import (
    AGENT,
    BPF,
    CLOSED,
    DATABASE,
    MANAGER,
    RELAY,
    ROOT,
    SILENT_AGENT,
    UNLISTED,
    dsaudit,
    flow_of,
    inventory_text,
    listeners,
    needs_root,
    read_event,
    read_until,
    run_clients,
)

pytestmark = needs_root


def _inventory(tmp_path: Path, heartbeat: str = "10m") -> str:
    path = tmp_path / "loopback.inventory.yaml"
    path.write_text(inventory_text(heartbeat))
    return str(path)


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _check_verdicts(report: dict[str, Any]) -> None:
    for server, port, rule in (
        (MANAGER, 4120, "manager.in.heartbeat-4120"),
        (RELAY, 4122, "relay.in.relay-4122"),
        (DATABASE, 5432, "manager.out.postgresql-5432"),
    ):
        flow = flow_of(report, server, port)
        assert (flow["verdict"], flow["outcome"], flow["rule"]) == (
            "explained",
            "established",
            rule,
        )
        assert not flow["blocked"]
    unlisted = flow_of(report, MANAGER, UNLISTED)
    assert (unlisted["verdict"], unlisted["outcome"]) == ("unexplained", "established")
    closed = flow_of(report, MANAGER, CLOSED)
    assert (closed["verdict"], closed["outcome"], closed["state"]) == (
        "unexplained",
        "rejected",
        "REJ",
    )
    # One SYN, one RST: loopback shows each packet leaving and arriving, once is right.
    assert (closed["packets_c2s"], closed["packets_s2c"]) == (1, 1)
    blocked = flow_of(report, AGENT, 4118)
    assert (blocked["verdict"], blocked["outcome"], blocked["blocked"]) == (
        "explained",
        "rejected",
        True,
    )
    assert any(
        f["kind"] == "unexplained_flow" and f["port"] == UNLISTED for f in report["findings"]
    )
    assert any(
        f["kind"] == "blocked_expected_flow" and f["port"] == 4118 for f in report["findings"]
    )


@pytest.mark.parametrize("engine", ["scapy", "tshark"])
def test_live_classifies_loopback_traffic_and_writes_a_pcap(tmp_path: Path, engine: str) -> None:
    if engine == "tshark" and shutil.which("dumpcap") is None:
        pytest.skip("dumpcap is not installed (apt install tshark)")
    out = tmp_path / "report.json"
    pcap = tmp_path / "session.pcap"
    with listeners():
        proc = dsaudit(
            "live",
            "--interface",
            "lo",
            "--engine",
            engine,
            "--bpf",
            BPF,
            "--duration",
            "3",
            "--inventory",
            _inventory(tmp_path),
            "--format",
            "json",
            "--output",
            str(out),
            "--write",
            str(pcap),
        )
        assert proc.stdout is not None
        started = read_event(proc.stdout, "capture_started")
        run_clients()
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err  # the blocked heartbeat is critical
    assert started["interface"] == "lo" and started["engine"] == engine
    events = _events(rest)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "capture_stopped" and events[-1]["reason"] == "duration"
    unexplained = {
        (e["server"], e["server_port"]) for e in events if e["event"] == "flow_unexplained"
    }
    assert {(MANAGER, UNLISTED), (MANAGER, CLOSED)} <= unexplained
    blocked = [e for e in events if e["event"] == "flow_blocked"]
    assert [(b["server"], b["server_port"], b["outcome"]) for b in blocked] == [
        (AGENT, 4118, "rejected")
    ]
    assert blocked[0]["rule"] == "manager.out.heartbeat-4118"

    report = json.loads(out.read_text())
    _check_verdicts(report)
    live = report["summary"]["live"]
    assert live["stop_reason"] == "duration" and live["packets"] > 0
    assert report["summary"]["captures"][0]["path"] == "iface:lo"

    # The saved pcap holds the same session: `dsaudit flows` finds exactly these flows.
    again = tmp_path / "flows.json"
    result = CliRunner().invoke(cli, ["flows", str(pcap), "--format", "json", "-o", str(again)])
    assert result.exit_code == 0, result.output
    keys = (
        "proto client_ip client_port server_ip server_port packets_c2s packets_s2c "
        "bytes_c2s bytes_s2c state history start end"
    ).split()
    read_back = sorted(tuple(f[k] for k in keys) for f in json.loads(again.read_text()))
    reported = sorted(tuple(f[k] for k in keys) for f in report["flows"])
    assert read_back == reported
    assert sum(f["packets_c2s"] + f["packets_s2c"] for f in report["flows"]) == live["packets"]


def test_sigterm_mid_run_still_reports_and_heartbeats_go_missing(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    with listeners():
        proc = dsaudit(
            "live",
            "--interface",
            "lo",
            "--bpf",
            BPF,
            "--inventory",
            _inventory(tmp_path, heartbeat="2s"),
            "--format",
            "json",
            "--output",
            str(out),
        )
        assert proc.stdout is not None
        read_event(proc.stdout, "capture_started")
        run_clients()

        # Findings arrive while the capture runs: SIGTERM is sent only after reading them.
        # SILENT_AGENT never speaks: once its 2 s interval (and grace) has passed it is missing.
        def seen(events: list[dict[str, Any]]) -> bool:
            kinds = {(e["event"], e.get("agent") or e.get("server_port")) for e in events}
            return {("flow_blocked", 4118), ("heartbeat_missing", SILENT_AGENT)} <= kinds

        before = read_until(proc.stdout, seen)
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    missing = [e for e in before if e.get("agent") == SILENT_AGENT][0]
    assert missing["last_seen"] is None and missing["missed_intervals"] >= 1
    assert "capture_stopped" not in {e["event"] for e in before}
    events = _events(rest)
    assert events[-1]["event"] == "capture_stopped"
    assert events[-1]["reason"] == "terminated"
    assert proc.returncode == 1, err  # blocked and missing expected flows
    report = json.loads(out.read_text())
    assert report["summary"]["live"]["stop_reason"] == "terminated"
    _check_verdicts(report)
    missing_findings = {
        f["host"] for f in report["findings"] if f["kind"] == "missing_expected_flow"
    }
    assert SILENT_AGENT in missing_findings


def test_count_stops_after_n_packets(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    with listeners():
        proc = dsaudit(
            "live",
            "--interface",
            "lo",
            "--bpf",
            f"{BPF} and tcp port 4120",
            "--count",
            "4",
            "--inventory",
            _inventory(tmp_path),
            "--format",
            "json",
            "--output",
            str(out),
        )
        assert proc.stdout is not None
        read_event(proc.stdout, "capture_started")
        # Each conversation is ten packets: the capture must stop inside the first one.
        run_clients(rounds=3)
        rest, err = proc.communicate(timeout=30)
    stopped = _events(rest)[-1]
    assert (stopped["event"], stopped["reason"], stopped["packets"]) == (
        "capture_stopped",
        "count",
        4,
    ), err
    report = json.loads(out.read_text())
    assert report["summary"]["live"]["packets"] == 4
    assert sum(f["packets_c2s"] + f["packets_s2c"] for f in report["flows"]) == 4


# Nothing on this machine sends to this address: a filter that can match no packet.
NOTHING = "host 127.0.0.253 and udp port 7"


def test_a_capture_of_no_packets_is_exit_2_with_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = dsaudit(
        "live",
        "--interface",
        "lo",
        "--bpf",
        NOTHING,
        "--duration",
        "1",
        "--inventory",
        _inventory(tmp_path),
        "--events",
        "none",
        "--format",
        "json",
        "--output",
        str(out),
    )
    run_clients()  # traffic on the interface (refused or not), none of it through the filter
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dsaudit: error: no packets were captured on lo")
    assert NOTHING in lines[0] and "--duration ran out" in lines[0]
    assert not out.exists()  # no report: there was nothing to judge


def test_ctrl_c_before_any_packet_is_exit_2(tmp_path: Path) -> None:
    proc = dsaudit(
        "live",
        "--interface",
        "lo",
        "--bpf",
        NOTHING,
        "--inventory",
        _inventory(tmp_path),
        "--events",
        "jsonl",
    )
    assert proc.stdout is not None
    read_event(proc.stdout, "capture_started")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert err.strip().splitlines()[-1].startswith("dsaudit: error: no packets were captured")
    assert "interrupted" in err


def test_unknown_interface_lists_the_real_ones() -> None:
    proc = dsaudit("live", "--interface", "dsaudit-nope0", "--duration", "1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "dsaudit-nope0" in lines[0]
    assert "lo (127.0.0.1" in lines[0]
    assert out == ""


def _nobody() -> tuple[int, int]:
    uid = pwd.getpwnam("nobody").pw_uid
    for group in ("nogroup", "nobody"):
        try:
            return uid, grp.getgrnam(group).gr_gid
        except KeyError:
            continue
    return uid, uid


# Everything the privilege check needs, imported while still root: where the interpreter
# lives under /root, nobody could not import it after dropping privileges.
_DROP_AND_RUN = """
import os, sys
import dsaudit.cli, dsaudit.commands.live, dsaudit.sources.live.engines, dsaudit.text.safe
import scapy.sendrecv, scapy.supersocket, scapy.arch.common, scapy.libs.structures, scapy.error
os.setgroups([])
os.setgid({gid})
os.setuid({uid})
sys.exit(dsaudit.cli.main(sys.argv[1:]))
"""


def _run_unprivileged(args: list[str]) -> subprocess.CompletedProcess[str]:
    uid, gid = _nobody()
    setpriv = shutil.which("setpriv")
    if setpriv:
        drop = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        probe = subprocess.run(
            [*drop, sys.executable, "-c", "import dsaudit.cli, numpy, scapy"],
            cwd=ROOT,
            capture_output=True,
        )
        if probe.returncode == 0:
            cmd = [*drop, sys.executable, "-m", "dsaudit", *args]
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    code = _DROP_AND_RUN.format(uid=uid, gid=gid)
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def _dumpcap_may_capture_for_anyone() -> bool:
    path = shutil.which("dumpcap")
    assert path is not None
    mode = os.stat(path).st_mode
    if not mode & 0o001:
        return False  # only its group (Debian: wireshark) may run it
    try:
        os.getxattr(path, "security.capability")
    except OSError:
        return bool(mode & 0o4000)
    return True


@pytest.mark.parametrize("engine", ["scapy", "tshark"])
def test_without_privilege_one_line_and_exit_2(engine: str) -> None:
    if engine == "tshark" and shutil.which("dumpcap") is None:
        pytest.skip("dumpcap is not installed (apt install tshark)")
    if engine == "tshark" and _dumpcap_may_capture_for_anyone():
        pytest.skip("dumpcap here is setuid or has capture capabilities: nobody may capture")
    done = _run_unprivileged(["live", "--interface", "lo", "--engine", engine, "--duration", "1"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "root" in lines[0] and "CAP_NET_RAW" in lines[0] and "CAP_NET_ADMIN" in lines[0]
    assert "setcap cap_net_raw,cap_net_admin=eip" in lines[0]
    assert done.stdout == ""
