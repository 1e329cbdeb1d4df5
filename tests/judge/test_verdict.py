"""Verdicts on captures taken as real networks are: inventory networks, broadcast, no data.

Every capture here is built in code with scapy; the healthy deployment is the bundled
healthy sample with a gateway, a printer and a workstation of the agents' network added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

from dsaudit.catalog import load_catalog
from dsaudit.flow_records.reading import read_captures
from dsaudit.inventory import load_inventory
from dsaudit.judge.classify import classify_flows
from dsaudit.judge.expectations import deep_security_ports, detect_vantage
from dsaudit.reports.audit_html import render_html
from dsaudit.reports.audit_markdown import render_markdown
from dsaudit.reports.audit_terminal import render_terminal
from dsaudit.runs.audit import AuditOptions, run_audit
from tests.packets import NS, Frame, TcpConversation, flows_of, udp_frame, write_pcap
from tests.processes import ROOT, dsaudit_process

SAMPLES = ROOT / "samples"
GATEWAY = "10.20.1.1"
PRINTER = "10.20.1.50"
WORKSTATION = "10.20.1.60"
MANAGER = "10.20.0.10"
STRAY = "10.20.1.77"  # in the agents' network; the manager tries its heartbeat port
SEVERE = {"critical", "high", "medium", "low"}


def _network_inventory(tmp_path: Path, extra_agents: str = "") -> Path:
    """The healthy sample's inventory with the agents given as their /24 (and ``extra``)."""
    text = (SAMPLES / "healthy.inventory.yaml").read_text()
    listed = "agent: [10.20.0.30, 10.20.1.11, 10.20.1.12, 10.20.1.13]"
    assert listed in text
    text = text.replace(listed, f"agent: [10.20.0.30, 10.20.1.0/24{extra_agents}]")
    path = tmp_path / "networks.inventory.yaml"
    path.write_text(text)
    return path


def _ether(pkt: Any, dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    return bytes(Ether(src="02:00:00:00:01:01", dst=dst) / pkt)


def _lan_noise(start_ns: int) -> list[Frame]:
    """What a gateway, a printer and a workstation of the agents' /24 do all day."""
    frames: list[Frame] = []
    t = start_ns
    for i, agent in enumerate(("10.20.1.11", "10.20.1.12", "10.20.1.13")):
        t += 7 * NS
        arp = ARP(op=1, psrc=GATEWAY, pdst=agent, hwsrc="02:00:00:00:01:01")
        frames.append((t, _ether(arp)))
        echo = IP(src=GATEWAY, dst=agent) / ICMP(type=8, id=7, seq=i) / Raw(b"ping")
        reply = IP(src=agent, dst=GATEWAY) / ICMP(type=0, id=7, seq=i) / Raw(b"ping")
        frames += [(t + NS, _ether(echo, "02:00:00:00:00:0b")), (t + 2 * NS, _ether(reply))]
    # DHCP: a client asks by broadcast, the gateway (its relay) answers by broadcast.
    discover = IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / Raw(b"d")
    offer = IP(src=GATEWAY, dst="255.255.255.255") / UDP(sport=67, dport=68) / Raw(b"o")
    frames += [(t + 3 * NS, _ether(discover)), (t + 4 * NS, _ether(offer))]
    # The printer announces itself on the subnet broadcast and by mDNS.
    frames.append((t + 5 * NS, udp_frame(PRINTER, "10.20.1.255", 3289, 3289, b"enpc")))
    frames.append((t + 6 * NS, udp_frame(PRINTER, "224.0.0.251", 5353, 5353, b"mdns")))
    # A workstation of the same /24 (no agent) prints: not Deep Security traffic.
    job = TcpConversation(WORKSTATION, PRINTER, 50000, 9100, start_ns=t + 8 * NS)
    job.handshake()
    job.send(True, "PA", b"%!PS print job")
    job.send(False, "A")
    job.close()
    return frames + job.frames


def _healthy_with_lan(tmp_path: Path, extra: list[Frame] | None = None) -> Path:
    """healthy.pcap plus the LAN noise (and ``extra``), as one time-ordered capture."""
    sample = rdpcap(str(SAMPLES / "healthy.pcap"))
    frames: list[Frame] = [(int(p.time * NS), bytes(p)) for p in sample]
    first = min(ts for ts, _ in frames)
    frames += _lan_noise(first + 60 * NS) + (extra or [])
    frames.sort(key=lambda f: f[0])
    return write_pcap(tmp_path / "lan.pcap", frames, nsec=True)


def _stray_heartbeat(start_ns: int) -> list[Frame]:
    """The manager's heartbeat to an address of the network that answers with a RST."""
    conn = TcpConversation(MANAGER, STRAY, 40000, 4118, start_ns=start_ns)
    conn.send(True, "S")
    conn.send(False, "RA")
    return conn.frames


# ------------------------------------------------------------------ inventory networks


def test_agents_given_as_a_network_with_its_gateway_and_printer_is_compliant(
    tmp_path: Path,
) -> None:
    capture = _healthy_with_lan(tmp_path)
    inventory = _network_inventory(tmp_path)
    proc = dsaudit_process("audit", str(capture), "--inventory", str(inventory), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["summary"]["verdict"] == "COMPLIANT"
    assert not [f for f in doc["findings"] if f["severity"] in SEVERE], doc["findings"]
    (network,) = doc["summary"]["networks"]
    assert (network["role"], network["network"]) == ("agent", "10.20.1.0/24")
    hosts = {h["address"]: h["reason"] for h in network["hosts"]}
    left = {h["address"]: h["reason"] for h in network["left_out"]}
    assert sorted(hosts) == ["10.20.1.11", "10.20.1.12", "10.20.1.13"]
    assert "tcp/4120 to 10.20.0.10" in hosts["10.20.1.11"]
    assert sorted(left) == [GATEWAY, PRINTER, WORKSTATION]
    assert left[GATEWAY].startswith("only infrastructure traffic")
    assert left[PRINTER].startswith("no Deep Security flow")
    assert "tcp/9100" in left[WORKSTATION]
    # Nothing is expected of an address left out, and it keeps no role in the flows.
    assert not {e["host"] for e in doc["expectations"]} & set(left)
    printing = [f for f in doc["flows"] if f["server_port"] == 9100]
    assert [(f["client_role"], f["server_role"], f["verdict"]) for f in printing] == [
        ("unknown", "unknown", "infrastructure")
    ]
    assert "4118, 4120, 4122" in doc["summary"]["host_criterion"]


def test_every_report_says_which_addresses_of_a_network_are_hosts(tmp_path: Path) -> None:
    read = read_captures([str(_healthy_with_lan(tmp_path))])
    inventory = load_inventory(_network_inventory(tmp_path))
    result = run_audit(read, load_catalog(), inventory, AuditOptions())
    for text in (render_terminal(result), render_markdown(result), render_html(result)):
        assert "10.20.1.0/24: 3 taken as hosts, 3 left out" in text
        assert "left out 10.20.1.1: only infrastructure traffic" in text
        assert "host 10.20.1.12: " in text
        assert "Deep Security port (4118, 4120, 4122)" in text


def test_a_network_address_with_deep_security_traffic_is_judged_and_listed_ones_expected(
    tmp_path: Path,
) -> None:
    sample_start = min(int(p.time * NS) for p in rdpcap(str(SAMPLES / "healthy.pcap")))
    capture = _healthy_with_lan(tmp_path, _stray_heartbeat(sample_start + 300 * NS))
    # 10.20.1.14 is listed by itself: it stays expected although it never speaks.
    inventory = _network_inventory(tmp_path, extra_agents=", 10.20.1.14")
    result = run_audit(
        read_captures([str(capture)]), load_catalog(), load_inventory(inventory), AuditOptions()
    )
    findings = result.findings
    blocked = findings[findings["kind"] == "blocked_expected_flow"]
    assert blocked["peer"].tolist() == [STRAY]
    missing = findings[findings["kind"] == "missing_expected_flow"]
    # The stray address earned its role with the heartbeat attempt: it is judged in full.
    assert set(missing["host"]) == {"10.20.1.14", STRAY}
    assert STRAY in {m["address"] for m in result.summary["networks"][0]["hosts"]}
    assert result.summary["exit_code"] == 1


def test_deep_security_ports_come_from_the_catalog() -> None:
    assert deep_security_ports(load_catalog()) == frozenset({4118, 4120, 4122})


# ------------------------------------------------------------------ broadcast


def _inventory_text(agents: str) -> str:
    return f"""deployment:
  database: postgresql
hosts:
  manager: [10.20.0.10]
  agent: [{agents}]
"""


def _verdicts(tmp_path: Path, agents: str, frames: list[Frame]) -> dict[tuple[str, str], str]:
    path = tmp_path / "inv.yaml"
    path.write_text(_inventory_text(agents))
    flows = classify_flows(flows_of(frames).flows, load_catalog(), load_inventory(path))
    return {(str(r.proto), str(r.server_ip)): str(r.verdict) for r in flows.itertuples(index=False)}


def test_broadcast_is_decided_by_the_inventory_networks_and_only_for_udp(tmp_path: Path) -> None:
    t = 1_700_000_000 * NS
    tcp = TcpConversation("10.20.0.10", "10.20.1.255", 40000, 4118, start_ns=t)
    tcp.handshake()
    tcp.close()
    unknown_tcp = TcpConversation("10.20.0.10", "10.99.0.255", 40001, 9999, start_ns=t)
    unknown_tcp.handshake()
    frames = [
        (t, udp_frame("10.20.0.11", "10.20.1.255", 40000, 4000, b"x")),
        (t + NS, udp_frame("10.20.0.11", "10.99.0.255", 40000, 4000, b"x")),
        (t + 2 * NS, udp_frame("10.20.0.11", "10.20.0.255", 40000, 4000, b"x")),
        *tcp.frames,
        *unknown_tcp.frames,
    ]
    # A /23: 10.20.1.255 is its broadcast; 10.20.0.255 is a usable address of it.
    wide = _verdicts(tmp_path, "10.20.0.0/23", frames)
    assert wide[("udp", "10.20.1.255")] == "infrastructure"
    assert wide[("udp", "10.20.0.255")] == "unexplained"
    # A TCP flow is a conversation with one host: judged, never hidden as broadcast.
    assert wide[("tcp", "10.20.1.255")] == "explained"
    assert wide[("tcp", "10.99.0.255")] == "unexplained"
    # An address the inventory knows nothing of is taken for a broadcast by its .255 (UDP).
    assert wide[("udp", "10.99.0.255")] == "infrastructure"
    # Two /24s: now 10.20.0.255 is the broadcast of the first and 10.20.1.255 of the second.
    narrow = _verdicts(tmp_path, "10.20.0.0/24, 10.20.1.0/24", frames)
    assert narrow[("udp", "10.20.0.255")] == "infrastructure"
    assert narrow[("udp", "10.20.1.255")] == "infrastructure"
    # Listed by itself, a .255 is a host, not a broadcast.
    single = _verdicts(tmp_path, "10.20.0.11, 10.20.1.255", frames)
    assert single[("udp", "10.20.1.255")] == "unexplained"


# ------------------------------------------------------------------ no data, no verdict


def _heartbeats(start_ns: int, *, refused: bool = False) -> list[Frame]:
    """An agent's heartbeat to the manager and the manager's to it."""
    up = TcpConversation("10.20.1.11", MANAGER, 50000, 4120, start_ns=start_ns)
    up.handshake()
    up.close()
    down = TcpConversation(MANAGER, "10.20.1.11", 40000, 4118, start_ns=start_ns + 60 * NS)
    if refused:
        down.send(True, "S")
        down.send(False, "RA")
    else:
        down.handshake()
        down.close()
    return up.frames + down.frames


def _short_capture(start_ns: int) -> list[Frame]:
    """A minute in which the agent only fetches from the internet: no expected flow shows,
    and none is due yet."""
    frames: list[Frame] = []
    for i in range(3):
        web = TcpConversation("10.20.1.11", "203.0.113.5", 51000 + i, 80, start_ns=start_ns)
        web.start_ns = web.clock = start_ns + i * 30 * NS
        web.handshake()
        web.close()
        frames += web.frames
    return frames


def _short_inventory(tmp_path: Path) -> Path:
    path = tmp_path / "short.yaml"
    path.write_text(
        "deployment:\n  database: postgresql\n  updates: relay\n"
        "hosts:\n  manager: [10.20.0.10]\n  agent: [10.20.1.11]\n"
    )
    return path


@pytest.mark.parametrize("fmt", ["json", "table", "markdown", "html"])
def test_a_capture_too_short_to_judge_anything_is_inconclusive(tmp_path: Path, fmt: str) -> None:
    capture = write_pcap(tmp_path / "short.pcap", _short_capture(1_700_000_000 * NS), nsec=True)
    inv = _short_inventory(tmp_path)
    proc = dsaudit_process("audit", str(capture), "--inventory", str(inv), "--format", fmt)
    assert proc.returncode == 3, proc.stderr
    out = proc.stdout
    if fmt == "json":
        summary = json.loads(out)["summary"]
        assert summary["verdict"] == "INCONCLUSIVE" and summary["exit_code"] == 3
        assert not summary["compliant"]
        (why,) = summary["inconclusive"]
        assert why.startswith("none of the") and "recur more slowly" in why
        scores = {(c["scope"], c["host"]): c["score"] for c in json.loads(out)["compliance"]}
        assert scores[("role", "")] is None  # nothing was due: no score, not 100%
    else:
        assert "INCONCLUSIVE" in out.upper() and "COMPLIANT" not in out.replace("NOT ", "")
        assert "recur more slowly than the capture is long" in out


def test_a_capture_without_deep_security_traffic_is_inconclusive(tmp_path: Path) -> None:
    t = 1_700_000_000 * NS
    # Half an hour of DNS between machines the inventory does not know.
    frames = [
        (t + i * 120 * NS, udp_frame("10.30.0.5", "10.30.0.2", 40000 + i, 53, b"q"))
        for i in range(16)
    ]
    capture = write_pcap(tmp_path / "other.pcap", frames, nsec=True)
    inv = _short_inventory(tmp_path)
    proc = dsaudit_process(
        "audit", str(capture), "--inventory", str(inv), "--format", "json", "--fail-on", "critical"
    )
    assert proc.returncode == 3, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert any("no Deep Security traffic" in why for why in summary["inconclusive"])
    # The periodic report gives the same verdict and exit code.
    store = tmp_path / "h.sqlite"
    report = dsaudit_process(
        "report", str(capture), "--inventory", str(inv), "--history", str(store),
        "--fail-on", "critical",
    )  # fmt: skip
    assert report.returncode == 3, report.stderr
    assert "INCONCLUSIVE" in report.stdout
    # The history says so too, not "not compliant".
    listed = dsaudit_process("history", "list", "--history", str(store), "--format", "json")
    assert [r["verdict"] for r in json.loads(listed.stdout)] == ["inconclusive"]
    table = dsaudit_process("history", "list", "--history", str(store))
    assert "inconclusive" in table.stdout


def test_findings_win_over_an_inconclusive_capture(tmp_path: Path) -> None:
    frames = _heartbeats(1_700_000_000 * NS, refused=True)
    capture = write_pcap(tmp_path / "refused.pcap", frames, nsec=True)
    inv = _short_inventory(tmp_path)
    proc = dsaudit_process("audit", str(capture), "--inventory", str(inv), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert summary["verdict"] == "NOT COMPLIANT" and summary["inconclusive"] == []


# ------------------------------------------------------------------ scores and counts


def test_scores_are_na_when_nothing_was_due_and_hosts_show_inconclusive(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "short.pcap", _short_capture(1_700_000_000 * NS), nsec=True)
    result = run_audit(
        read_captures([str(capture)]),
        load_catalog(),
        load_inventory(_short_inventory(tmp_path)),
        AuditOptions(),
    )
    comp = result.compliance
    assert comp["score"].isna().all() and (comp["inconclusive"] > 0).all()
    text = render_terminal(result)
    role_table = text.split("Compliance per role")[1].split("Hosts needing attention")[0]
    assert "n/a" in role_table and "100%" not in role_table
    # A host that needs attention shows how many of its expected flows proved nothing.
    refused = write_pcap(tmp_path / "refused.pcap", _heartbeats(1_700_000_000 * NS, refused=True))
    result = run_audit(
        read_captures([str(refused)]),
        load_catalog(),
        load_inventory(_short_inventory(tmp_path)),
        AuditOptions(),
    )
    section = render_terminal(result).split("Hosts needing attention\n")[1].split("\n\n")[0]
    lines = section.splitlines()
    header = lines[0].split()
    assert header[:8] == ["host", "role", "expected", "observed", "blocked", "missing"] + [
        "inconclusive",
        "unexplained",
    ]
    rows = {r.split()[0]: r.split() for r in lines[2:] if r.strip()}
    agent = result.compliance.set_index(["scope", "host"]).loc[("host", "10.20.1.11")]
    assert int(rows["10.20.1.11"][6]) == int(agent["inconclusive"]) > 0


def test_per_role_unexplained_counts_each_flow_once_and_agree_with_the_summary(
    tmp_path: Path,
) -> None:
    t = 1_700_000_000 * NS
    between_agents = TcpConversation("10.20.1.11", "10.20.1.12", 50000, 7777, start_ns=t)
    between_agents.handshake()
    between_agents.close()
    to_manager = TcpConversation("10.20.1.11", MANAGER, 50001, 7778, start_ns=t + NS)
    to_manager.handshake()
    to_manager.close()
    frames = _heartbeats(t + 2 * NS) + between_agents.frames + to_manager.frames
    capture = write_pcap(tmp_path / "counts.pcap", frames, nsec=True)
    inv = tmp_path / "counts.yaml"
    inv.write_text(
        "deployment:\n  database: postgresql\n"
        "hosts:\n  manager: [10.20.0.10]\n  agent: [10.20.1.11, 10.20.1.12]\n"
    )
    options = AuditOptions(vantage="span")
    result = run_audit(read_captures([str(capture)]), load_catalog(), load_inventory(inv), options)
    assert result.summary["flow_counts"]["unexplained"] == 2
    comp = result.compliance
    roles = comp[comp["scope"] == "role"].set_index("role")["unexplained"].to_dict()
    assert roles == {"agent": 2, "manager": 1}
    hosts = comp[comp["scope"] == "host"].set_index("host")["unexplained"].to_dict()
    assert hosts == {"10.20.1.11": 2, "10.20.1.12": 1, MANAGER: 1}
    assert "each flow once per role" in render_terminal(result)


def test_vantage_evidence_never_says_only_100_percent() -> None:
    t = 1_700_000_000 * NS
    frames: list[Frame] = []
    for i in range(4):
        conn = TcpConversation("10.0.0.1", "10.0.0.2", 50000 + i, 443, start_ns=t + i * NS)
        conn.handshake()
        frames += conn.frames
    flows = flows_of(frames).flows
    vantage = detect_vantage(flows)
    assert vantage.kind == "span"
    assert "only" not in vantage.evidence and "100%" not in vantage.evidence
    assert "10.0.0.1 and 10.0.0.2 both take part" in vantage.evidence
    few = detect_vantage(flows.iloc[:2])
    assert "too few" in few.evidence


def test_an_ipv6_network_takes_its_agent_and_leaves_its_router_out(tmp_path: Path) -> None:
    t = 1_700_000_000 * NS
    manager, agent, router = "2001:db8:20::10", "2001:db8:21::11", "2001:db8:21::1"
    frames: list[Frame] = []
    for i in range(4):  # half an hour of heartbeats both ways, every ten minutes
        up = TcpConversation(agent, manager, 50000 + i, 4120, start_ns=t + i * 600 * NS)
        up.handshake()
        up.close()
        down = TcpConversation(manager, agent, 40000 + i, 4118, start_ns=t + i * 600 * NS + NS)
        down.handshake()
        down.close()
        frames += up.frames + down.frames
    ask = IPv6(src=router, dst="ff02::1:ff00:11") / ICMPv6ND_NS(tgt=agent)
    answer = IPv6(src=agent, dst=router) / ICMPv6ND_NA(tgt=agent)
    frames += [(t + 5 * NS, _ether(ask, "33:33:ff:00:00:11")), (t + 6 * NS, _ether(answer))]
    frames.sort(key=lambda f: f[0])
    capture = write_pcap(tmp_path / "v6.pcap", frames, nsec=True)
    inv = tmp_path / "v6.yaml"
    inv.write_text(
        "deployment:\n  database: postgresql\n  updates: direct\n"
        f"hosts:\n  manager: ['{manager}']\n  agent: ['2001:db8:21::/64']\n"
    )
    result = run_audit(
        read_captures([str(capture)]), load_catalog(), load_inventory(inv), AuditOptions()
    )
    (network,) = result.summary["networks"]
    assert [h["address"] for h in network["hosts"]] == [agent]
    assert [h["address"] for h in network["left_out"]] == [router]
    assert network["left_out"][0]["reason"].startswith("only infrastructure traffic")
    assert router not in set(result.expectations["host"])
    # Only the manager's database connection, not in this capture, is missing.
    missing = result.findings[result.findings["kind"] == "missing_expected_flow"]
    assert set(missing["host"]) == {manager} and "postgresql" in missing["message"].iloc[0]
