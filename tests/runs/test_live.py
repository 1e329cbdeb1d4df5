"""The live loop on synthetic packets and a fake clock: events, heartbeats, expiry, the report."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from dsaudit.catalog import Catalog, load_catalog
from dsaudit.flow_records.builder import FlowBuilder, FlowOptions
from dsaudit.inventory import Inventory, load_inventory
from dsaudit.runs.live import LiveAudit, LiveEvent, LiveOptions, LiveSnapshot, RoleRow
from dsaudit.runs.live_view import JsonLinesSink, render
from dsaudit.sources.batch import PacketBatch
from dsaudit.sources.live.source import SourceStats
from tests.commands.loopback import (
    AGENT,
    BPF,
    DATABASE,
    MANAGER,
    OUTSIDER,
    PROXY,
    RELAY,
    SILENT_AGENT,
    inventory_text,
)
from tests.factories import client_hello
from tests.packets import BASE_TS, LINK_ETHERNET, NS, TcpConversation, tcp_frame, udp_frame

MS = 1_000_000
Frame = tuple[int, bytes]


class FakeSource:
    """A capture that hands over whatever the test queued."""

    engine = "fake"
    iface = "fake0"
    linktype = LINK_ETHERNET
    snaplen = 262144

    def __init__(self) -> None:
        self.pending: list[Frame] = []
        self.at_stop: list[Frame] = []
        self.ended = False
        self._stats = SourceStats()

    def start(self) -> None:
        pass

    def take(self) -> PacketBatch | None:
        frames, self.pending = self.pending, []
        if not frames:
            return None
        self._stats.packets += len(frames)
        return PacketBatch.from_frames(frames, LINK_ETHERNET)

    @property
    def running(self) -> bool:
        return not self.ended

    def stats(self) -> SourceStats:
        return self._stats

    def stop(self) -> None:
        # Frames the capture still held when told to stop: they must not be lost.
        self.pending += self.at_stop
        self.at_stop = []

    def error(self) -> str | None:
        return None


class Recorder:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[LiveEvent] = []
        self.snapshots: list[LiveSnapshot] = []
        self.closed = False

    def emit(self, event: LiveEvent) -> None:
        self.events.append(event)

    def update(self, snapshot: LiveSnapshot) -> None:
        self.snapshots.append(snapshot)

    def close(self) -> None:
        pass

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _inventory(heartbeat: str = "10m") -> Inventory:
    return load_inventory("loopback.inventory.yaml", inventory_text(heartbeat))


def _audit(
    catalog: Catalog, inventory: Inventory | None = None, **options: object
) -> tuple[LiveAudit, FakeSource, Recorder]:
    source, sink = FakeSource(), Recorder()
    audit = LiveAudit(
        source,
        catalog,
        inventory if inventory is not None else _inventory(),
        LiveOptions(**options),  # type: ignore[arg-type]
        sink=sink,
        clock=lambda: BASE_TS,
    )
    return audit, source, sink


def conversation(
    t: int, client: str, server: str, sport: int, dport: int, request: bytes = b"hello"
) -> list[Frame]:
    """A whole TCP conversation: handshake, one exchange, FIN both ways."""
    c, s = (client, server, sport, dport), (server, client, dport, sport)
    n = len(request)
    return [
        (t, tcp_frame(*c, "S", seq=100)),
        (t + 1 * MS, tcp_frame(*s, "SA", seq=500, ack=101)),
        (t + 2 * MS, tcp_frame(*c, "A", seq=101, ack=501)),
        (t + 3 * MS, tcp_frame(*c, "PA", seq=101, ack=501, payload=request)),
        (t + 4 * MS, tcp_frame(*s, "PA", seq=501, ack=101 + n, payload=b"ok")),
        (t + 5 * MS, tcp_frame(*c, "FA", seq=101 + n, ack=503)),
        (t + 6 * MS, tcp_frame(*s, "FA", seq=503, ack=102 + n)),
        (t + 7 * MS, tcp_frame(*c, "A", seq=102 + n, ack=504)),
    ]


def _with_client_port(frame: bytes, client: str, port: int) -> bytes:
    """``frame`` (Ethernet, IPv4 without options, TCP) with the client's port rewritten.

    Checksums go stale; the decoder does not read them. Building each frame with scapy
    instead would make the many-flows test spend its time in scapy.
    """
    src = bytes(int(x) for x in client.split("."))
    at = 34 if frame[26:30] == src else 36  # TCP source port, or destination port
    return frame[:at] + port.to_bytes(2, "big") + frame[at + 2 :]


_TEMPLATES: dict[tuple[str, str, int], list[Frame]] = {}


def many(t: int, client: str, server: str, sport: int, dport: int) -> list[Frame]:
    """:func:`conversation`, built once per (client, server, port) and re-ported."""
    key = (client, server, dport)
    if key not in _TEMPLATES:
        _TEMPLATES[key] = conversation(0, client, server, 1024, dport)
    return [(t + ts, _with_client_port(data, client, sport)) for ts, data in _TEMPLATES[key]]


def rejected(t: int, client: str, server: str, sport: int, dport: int) -> list[Frame]:
    return [
        (t, tcp_frame(client, server, sport, dport, "S", seq=100)),
        (t + MS, tcp_frame(server, client, dport, sport, "RA", seq=0, ack=101)),
    ]


def feed(audit: LiveAudit, frames: list[Frame]) -> None:
    audit.ingest(PacketBatch.from_frames(frames, LINK_ETHERNET))


def test_findings_wait_until_the_flow_has_settled(catalog: Catalog) -> None:
    audit, _, sink = _audit(catalog)
    t0 = BASE_TS
    feed(audit, rejected(t0, AGENT, MANAGER, 40001, 4121))
    feed(audit, [(t0, tcp_frame(MANAGER, AGENT, 40002, 4118, "S", seq=7))])
    feed(audit, [(t0, tcp_frame(AGENT, MANAGER, 40003, 4120, "S", seq=9))])
    audit.evaluate(t0 + NS // 2)
    # The rejected one is final at once; a lone SYN is only a beginning.
    assert sink.kinds() == ["flow_unexplained"]
    assert sink.events[0].data["server_port"] == 4121
    assert sink.events[0].data["outcome"] == "rejected"
    # The heartbeat's SYN-ACK arrives late (a retransmitted SYN would do the same).
    feed(
        audit,
        [
            (t0 + 1500 * MS, tcp_frame(MANAGER, AGENT, 4120, 40003, "SA", seq=1, ack=10)),
            (t0 + 1501 * MS, tcp_frame(AGENT, MANAGER, 40003, 4120, "A", seq=10, ack=2)),
        ],
    )
    audit.evaluate(t0 + 2500 * MS)
    assert sink.kinds() == ["flow_unexplained"]  # 4118 unanswered for 2.5 s: not yet blocked
    audit.evaluate(t0 + 6 * NS)
    assert sink.kinds() == ["flow_unexplained", "flow_blocked"]
    blocked = sink.events[1].data
    assert (blocked["server"], blocked["server_port"], blocked["outcome"]) == (
        AGENT,
        4118,
        "unanswered",
    )
    assert blocked["rule"] == "manager.out.heartbeat-4118"
    # One SYN and nothing else: the capture cannot say why.
    assert blocked["cause"] == "unknown"
    assert "one attempt" in blocked["cause_evidence"]
    audit.evaluate(t0 + 7 * NS)
    assert sink.kinds() == ["flow_unexplained", "flow_blocked"]
    assert audit.verdicts == Counter(explained=2, unexplained=1, blocked=1)


def test_a_flow_is_judged_only_once_its_proxy_target_could_be_known(catalog: Catalog) -> None:
    # Through a proxy a flow is judged by its CONNECT target, which arrives after the
    # handshake: judged at once, agent -> proxy:3128 would be a false "unexplained".
    inventory = load_inventory("p.yaml", inventory_text() + f'  proxy: ["{PROXY}:3128"]\n')
    audit, _, sink = _audit(catalog, inventory)
    t0 = BASE_TS
    c, s = (AGENT, PROXY, 46000, 3128), (PROXY, AGENT, 3128, 46000)
    connect = f"CONNECT {MANAGER}:4120 HTTP/1.1\r\nHost: {MANAGER}:4120\r\n\r\n".encode()
    feed(
        audit,
        [
            (t0, tcp_frame(*c, "S", seq=100)),
            (t0 + MS, tcp_frame(*s, "SA", seq=500, ack=101)),
            (t0 + 2 * MS, tcp_frame(*c, "A", seq=101, ack=501)),
        ],
    )
    audit.evaluate(t0 + NS // 2)
    assert sink.kinds() == [] and audit.judged == 0
    feed(audit, [(t0 + 600 * MS, tcp_frame(*c, "PA", seq=101, ack=501, payload=connect))])
    audit.evaluate(t0 + 3 * NS)
    assert sink.kinds() == []
    assert audit.verdicts == Counter(explained=1)


def test_one_event_per_conversation_however_many_flows(catalog: Catalog) -> None:
    audit, _, sink = _audit(catalog)
    t0 = BASE_TS
    for i in range(5):
        feed(audit, conversation(t0 + i * NS, AGENT, MANAGER, 41000 + i, 9999))
    audit.evaluate(t0 + 10 * NS)
    assert sink.kinds() == ["flow_unexplained"]
    event = sink.events[0].data
    assert (event["finding"], event["reason"], event["severity"]) == (
        "unexplained_flow",
        "no_rule",
        "medium",
    )
    snap = audit.snapshot(t0 + 10 * NS)
    assert snap.unexplained[0]["flows"] == 5
    assert [
        (r.client_role, r.server_role, r.port, r.counts["unexplained"]) for r in snap.roles
    ] == [("agent", "manager", 9999, 5)]


def test_heartbeats_go_missing_as_their_interval_passes(catalog: Catalog) -> None:
    audit, _, sink = _audit(catalog, _inventory("10s"))
    t0 = BASE_TS
    feed(audit, conversation(t0 + NS, AGENT, MANAGER, 42000, 4120))
    audit.evaluate(t0 + 3 * NS)
    assert sink.kinds() == []
    audit.evaluate(t0 + 12 * NS)  # 10 s interval + 1 s grace passed since the start
    missing = {e.data["agent"]: e.data for e in sink.events if e.kind == "heartbeat_missing"}
    # The agent that sent one is fine; the silent agent and the relay (an agent too) are not.
    assert set(missing) == {SILENT_AGENT, RELAY}
    assert missing[SILENT_AGENT]["last_seen"] is None
    assert missing[SILENT_AGENT]["missed_intervals"] == 1
    audit.evaluate(t0 + 12 * NS)
    assert len([k for k in sink.kinds() if k == "heartbeat_missing"]) == 2  # not repeated
    audit.evaluate(t0 + 25 * NS)
    later = [e.data for e in sink.events if e.kind == "heartbeat_missing"][2:]
    assert {(e["agent"], e["missed_intervals"]) for e in later} == {
        (AGENT, 2),
        (SILENT_AGENT, 2),
        (RELAY, 2),
    }
    assert [e for e in later if e["agent"] == AGENT][0]["last_seen"].startswith("2023-11-14")


def test_an_active_flow_survives_expiry_whole_and_named(catalog: Catalog) -> None:
    audit, _, _ = _audit(catalog)  # UDP flows time out after 60 s
    t0 = BASE_TS
    hello = client_hello("dsm.corp.example")
    c, s = (AGENT, MANAGER, 43000, 443), (MANAGER, AGENT, 443, 43000)
    opening = [
        (t0, tcp_frame(*c, "S", seq=100)),
        (t0 + MS, tcp_frame(*s, "SA", seq=500, ack=101)),
        (t0 + 2 * MS, tcp_frame(*c, "A", seq=101, ack=501)),
        (t0 + 3 * MS, tcp_frame(*c, "PA", seq=101, ack=501, payload=hello)),
        (t0 + 30 * NS, tcp_frame(*s, "PA", seq=501, ack=101 + len(hello), payload=b"x" * 10)),
    ]
    # The noise comes first, so the flow that stays is renumbered when the noise leaves.
    noise = [
        (t0 - NS + i * MS, udp_frame(AGENT, OUTSIDER, 50000 + i, 5000, b"ping")) for i in range(100)
    ]
    seq = 101 + len(hello)
    closing = [
        (t0 + 71 * NS, tcp_frame(*c, "PA", seq=seq, ack=511, payload=b"y" * 20)),
        (t0 + 72 * NS, tcp_frame(*c, "FA", seq=seq + 20, ack=511)),
        (t0 + 72 * NS + MS, tcp_frame(*s, "FA", seq=511, ack=seq + 21)),
        (t0 + 72 * NS + 2 * MS, tcp_frame(*c, "A", seq=seq + 21, ack=512)),
    ]
    feed(audit, noise + opening)
    audit.evaluate(t0 + 31 * NS)
    assert audit.expire(t0 + 70 * NS) == 100  # the UDP noise, idle 70 s past its 60 s timeout
    assert audit.builder.table.nflows == 1
    feed(audit, closing)
    final = audit._all_flows().flows

    offline = FlowBuilder(audit.options.flow)
    offline.add_batch(PacketBatch.from_frames(noise + opening + closing, LINK_ETHERNET))
    expected = offline.result([]).flows
    cols = ["packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "state", "history"]
    cols += ["server_name", "name_source", "initiator_evidence", "start", "end"]
    tls_live = final[final["server_port"] == 443]
    tls_offline = expected[expected["server_port"] == 443]
    assert len(tls_live) == 1
    assert tls_live[cols].reset_index(drop=True).equals(tls_offline[cols].reset_index(drop=True))
    assert tls_live["server_name"].iloc[0] == "dsm.corp.example"
    udp = final[final["server_port"] == 5000]
    assert len(udp) == 1 and int(udp["merged_flows"].iloc[0]) == 100
    assert int(udp["packets_c2s"].iloc[0]) == 100
    assert udp["start"].iloc[0] == expected[expected["server_port"] == 5000]["start"].min()


def test_judging_follows_the_builders_own_eviction(catalog: Catalog) -> None:
    # A flood between two sweeps: past max_flows open flows the builder drops the least
    # recently active ones and renumbers the rest; what was judged stays judged.
    audit, _, sink = _audit(catalog, flow=FlowOptions(max_flows=8))
    t0 = BASE_TS
    feed(audit, [(t0, tcp_frame(MANAGER, AGENT, 47000, 4118, "S", seq=1))])  # unanswered
    for i in range(4):
        feed(audit, rejected(t0 + (i + 1) * MS, AGENT, MANAGER, 47100 + i, 9000 + i))
    audit.evaluate(t0 + 3 * NS)
    assert audit.judged == 5 and sink.kinds() == ["flow_unexplained"] * 4
    # The SYN is retransmitted first, so the flows left least recently active, and evicted,
    # are four of the judged ones.
    flood = [(t0 + 3 * NS, tcp_frame(MANAGER, AGENT, 47000, 4118, "S", seq=1))]
    flood += [
        (t0 + 3 * NS + (i + 1) * MS, tcp_frame(AGENT, MANAGER, 47200 + i, 9100, "S"))
        for i in range(6)
    ]
    feed(audit, flood)
    assert audit.builder.stats.flows_evicted > 0
    assert audit.builder.table.nflows <= 8
    audit.evaluate(t0 + 6 * NS)
    # The unanswered flow kept its place in the judging: 5 s after it began it is blocked.
    assert sink.kinds().count("flow_blocked") == 1
    # The judged flows that stayed were not judged again; the new ones were judged once.
    assert audit.judged == 5 + 6
    assert audit.verdicts["unexplained"] == 4 + 6


# ----------------------------------------------------------------------------- routed trunks
REQUEST_VLAN, ANSWER_VLAN = 10, 20


def routed_heartbeat(t: int, cport: int, answer_after_ns: int = MS) -> list[Frame]:
    """A heartbeat on a routed trunk: the agent's packets on one VLAN, the manager's on
    another; the SYN-ACK comes ``answer_after_ns`` after the SYN."""
    conv = TcpConversation(AGENT, MANAGER, cport, 4120, start_ns=t)

    def send(c2s: bool, flags: str, payload: bytes = b"") -> None:
        conv.vlan = REQUEST_VLAN if c2s else ANSWER_VLAN
        conv.send(c2s, flags, payload)

    send(True, "S")
    conv.clock += answer_after_ns - conv.step_ns
    send(False, "SA")
    send(True, "A")
    send(True, "PA", client_hello("dsm.corp.example"))
    send(False, "PA", b"\x16\x03\x03" + bytes(60))
    send(True, "FA")
    send(False, "FA")
    send(True, "A")
    return conv.frames


def _two_hosts() -> Inventory:
    text = f"""deployment:
  version: "11.0"
  communication: agent-initiated
  database: postgresql
  heartbeat_interval: 10m
hosts:
  manager: [{MANAGER}]
  agent: [{AGENT}]
"""
    return load_inventory("routed.inventory.yaml", text)


def test_a_heartbeat_split_across_vlans_is_judged_once_as_the_connection(
    catalog: Catalog,
) -> None:
    audit, _, sink = _audit(catalog, _two_hosts())
    t0 = BASE_TS
    feed(audit, routed_heartbeat(t0, 50100))
    assert audit.builder.table.nflows == 2  # per-VLAN keying: two halves in the table
    audit.evaluate(t0 + NS // 2)
    audit.evaluate(t0 + 3 * NS)
    audit.evaluate(t0 + 6 * NS)
    assert sink.kinds() == []
    # One connection, one verdict, and the heartbeat counts as seen.
    assert audit.judged == 1 and audit.verdicts == Counter(explained=1)
    assert audit.hb.last[AGENT] == t0
    snap = audit.snapshot(t0 + 6 * NS)
    assert [(r.client_role, r.server_role, r.port, dict(r.counts)) for r in snap.roles] == [
        ("agent", "manager", 4120, {"explained": 1})
    ]

    # Closed by a FIN in each half: both leave the table together, as one archived flow.
    assert audit.expire(t0 + 20 * NS) == 1
    assert audit.builder.table.nflows == 0
    archived = audit.archive.frame()
    assert len(archived) == 1 and audit.archive.flows == 1
    row = archived.iloc[0]
    assert (row["client_ip"], row["server_ip"], row["server_port"]) == (AGENT, MANAGER, 4120)
    assert (row["vlan"], row["vlan_s2c"], bool(row["vlan_joined"])) == (10, 20, True)
    assert (row["outcome"], row["state"]) == ("established", "SF")
    assert (row["packets_c2s"], row["packets_s2c"]) == (5, 3)

    # A second heartbeat still in the table when the session ends: joined by the report too.
    feed(audit, routed_heartbeat(t0 + 30 * NS, 50101))
    audit.evaluate(t0 + 40 * NS)
    assert sink.kinds() == []
    assert audit.hb.last[AGENT] == t0 + 30 * NS
    audit.stopped_ns = t0 + 41 * NS
    read = audit._all_flows()
    assert len(read.flows) == 2 and read.flows["vlan_joined"].all()
    result = audit._audit(read, "test")
    above_info = result.findings[result.findings["severity"] != "info"]
    assert above_info.empty, above_info[["kind", "severity"]].to_dict("records")
    assert result.summary["flow_counts"]["blocked_expected"] == 0
    assert result.exit_code() == 0


def test_an_answer_on_another_vlan_within_the_grace_still_joins(catalog: Catalog) -> None:
    audit, _, sink = _audit(catalog, _two_hosts())
    t0 = BASE_TS
    # The SYN-ACK on the other VLAN comes 3 s late (past the 2 s settle time); another SYN on
    # the request VLAN is never answered at all.
    frames = routed_heartbeat(t0, 50200, answer_after_ns=3 * NS)
    lone = (t0 + MS, tcp_frame(AGENT, MANAGER, 50201, 4120, "S", seq=7, vlan=REQUEST_VLAN))
    feed(audit, [f for f in frames if f[0] < t0 + 3 * NS] + [lone])
    audit.evaluate(t0 + 2500 * MS)
    # One-way flows on a VLAN wait for their other half: neither is judged yet.
    assert audit.judged == 0 and sink.kinds() == []
    feed(audit, [f for f in frames if f[0] >= t0 + 3 * NS])
    audit.evaluate(t0 + 4 * NS)
    assert audit.judged == 1 and sink.kinds() == []
    audit.evaluate(t0 + 6 * NS + MS)
    # The joined heartbeat is fine; the SYN nobody answered is still blocked, once.
    assert sink.kinds() == ["flow_blocked"]
    blocked = sink.events[0].data
    assert (blocked["client_port"], blocked["server_port"], blocked["outcome"]) == (
        50201,
        4120,
        "unanswered",
    )
    assert audit.verdicts == Counter(explained=2, blocked=1)
    assert audit.hb.last[AGENT] == t0
    audit.evaluate(t0 + 8 * NS)
    assert sink.kinds() == ["flow_blocked"]


def test_a_tuple_with_both_directions_on_two_vlans_stays_two_flows(catalog: Catalog) -> None:
    audit, _, sink = _audit(catalog, _two_hosts())
    t0 = BASE_TS
    frames: list[Frame] = []
    for vlan, start in ((REQUEST_VLAN, t0), (ANSWER_VLAN, t0 + 500 * MS)):
        conv = TcpConversation(AGENT, MANAGER, 50300, 4120, start_ns=start, vlan=vlan)
        conv.handshake()
        conv.send(True, "PA", b"ping")
        conv.send(False, "PA", b"pong")
        frames += conv.frames  # left open: neither is closed
    feed(audit, sorted(frames, key=lambda f: f[0]))
    audit.evaluate(t0 + 6 * NS)
    assert sink.kinds() == []
    assert audit.judged == 2 and audit.verdicts == Counter(explained=2)
    assert audit.expire(t0 + 400 * NS) == 2  # idle past the TCP timeout
    archived = audit.archive.frame()
    assert audit.archive.flows == 2
    assert sorted(archived["vlan"].tolist()) == [10, 20]
    assert not archived["vlan_joined"].any()


def test_a_lone_half_on_a_vlan_stays_for_its_idle_timeout(catalog: Catalog) -> None:
    audit, _, _ = _audit(catalog, _two_hosts())
    t0 = BASE_TS
    # The client gives up with a RST: closed, so untagged it leaves after the 10 s linger; on
    # a VLAN it may be half of a connection, and stays until its idle timeout.
    for vlan, port in ((None, 50400), (REQUEST_VLAN, 50401)):
        c = (AGENT, MANAGER, port, 4120)
        feed(
            audit,
            [
                (t0, tcp_frame(*c, "S", seq=100, vlan=vlan)),
                (t0 + MS, tcp_frame(*c, "R", seq=101, vlan=vlan)),
            ],
        )
    assert audit.expire(t0 + 15 * NS) == 1
    left = audit.archive.frame()
    assert left["client_port"].tolist() == [50400]
    assert audit.builder.table.nflows == 1
    assert audit.expire(t0 + 301 * NS) == 1
    assert audit.builder.table.nflows == 0


def test_memory_stays_flat_and_the_report_still_counts_every_flow(catalog: Catalog) -> None:
    audit, _, _ = _audit(catalog, heartbeat_keep=20, closed_linger_s=10.0)
    t0 = BASE_TS
    windows, per_window = 40, 56
    table_sizes, archive_sizes = [], []
    frames_fed = 0
    port = 20000
    for w in range(windows):
        t = t0 + w * 20 * NS
        frames: list[Frame] = []
        for _ in range(50):
            frames += many(t, AGENT, MANAGER, port, 4120)
            port += 1
        for _ in range(5):
            frames += many(t, AGENT, MANAGER, port, 9999)
            port += 1
        frames += rejected(t, AGENT, MANAGER, port, 4121)
        port += 1
        frames_fed += len(frames)
        feed(audit, frames)
        audit.evaluate(t + 3 * NS)
        audit.expire(t + 15 * NS)  # everything of this window closed more than 10 s ago
        table_sizes.append(audit.builder.table.nflows)
        archive_sizes.append(len(audit.archive))
        assert len(audit.builder.namer.flows) <= audit.builder.table.nflows
        assert audit.builder.table.fs.shape[0] == 1 << 14
    assert max(table_sizes) == 0
    # Folded per conversation: 20 heartbeats kept one by one, and one row each for the
    # older heartbeats, the unlisted port and the rejected port.
    assert archive_sizes[-1] == 20 + 3
    assert archive_sizes[-1] == archive_sizes[len(archive_sizes) // 2]

    read = audit._all_flows()
    assert int((read.flows["packets_c2s"] + read.flows["packets_s2c"]).sum()) == frames_fed
    assert int(read.flows["merged_flows"].sum()) == windows * per_window
    result = audit._audit(read, "test")
    counts = result.summary["flow_counts"]
    assert counts["total"] == windows * per_window
    assert counts["unexplained"] == windows * 6
    assert counts["explained"] == windows * 50
    unexplained = result.findings[result.findings["kind"] == "unexplained_flow"]
    counted = dict(zip(unexplained["port"].tolist(), unexplained["count"].tolist(), strict=True))
    assert counted[9999] == windows * 5
    assert counted[4121] == windows
    last_beat = read.flows[read.flows["server_port"] == 4120]["start"].max()
    assert result.heartbeats["last_seen"].iloc[0] == last_beat


def test_run_stops_on_duration_and_keeps_what_arrived_at_the_end(catalog: Catalog) -> None:
    source = FakeSource()
    now = [BASE_TS]
    source.pending = conversation(BASE_TS, AGENT, MANAGER, 44000, 9999)
    source.at_stop = conversation(BASE_TS + MS * 50, MANAGER, DATABASE, 44001, 5432)
    out = io.StringIO()
    audit = LiveAudit(
        source,
        catalog,
        _inventory(),
        LiveOptions(duration_s=0.3, poll_s=0.02, evaluate_s=0.05, counters_s=0.1),
        sink=JsonLinesSink(out),
        clock=lambda: now[0],
    )
    now[0] = BASE_TS + 5 * NS
    outcome = audit.run(handle_signals=False)
    assert outcome.stop_reason == "duration"
    ports = sorted(outcome.result.flows["server_port"].tolist())
    assert ports == [5432, 9999]
    assert outcome.stats.packets == 16
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "capture_started" and kinds[-1] == "capture_stopped"
    assert "counters" in kinds and kinds.count("flow_unexplained") == 1
    assert events[-1]["reason"] == "duration" and events[-1]["packets"] == 16
    assert outcome.result.summary["live"]["stop_reason"] == "duration"


def test_run_stops_when_the_count_is_reached(catalog: Catalog) -> None:
    source = FakeSource()
    source.pending = rejected(BASE_TS, AGENT, MANAGER, 45000, 4121)
    source.ended = True  # the backend stops itself after --count packets
    audit = LiveAudit(source, catalog, _inventory(), LiveOptions(count=2, poll_s=0.01))
    outcome = audit.run(handle_signals=False)
    assert outcome.stop_reason == "count"
    assert outcome.stats.packets == 2


def test_json_lines_make_packet_text_safe() -> None:
    out = io.StringIO()
    sink = JsonLinesSink(out)
    evil = "x\x1b]0;owned\x07\u202egnp.exe"
    sink.emit(LiveEvent("flow_unexplained", {"server_name": evil, "nested": [evil]}, BASE_TS))
    line = out.getvalue()
    assert line.count("\n") == 1
    assert "\x1b" not in line and "\u202e" not in line and "\\u001b" not in line
    event = json.loads(line)
    assert event["server_name"] == "x\\x1b]0;owned\\x07\\u202egnp.exe"
    assert event["nested"] == [event["server_name"]]


def test_json_lines_stop_when_the_reader_goes_away() -> None:
    class Gone(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError

    sink = JsonLinesSink(Gone())
    sink.emit(LiveEvent("counters", {}, BASE_TS))
    assert sink.closed


def test_the_view_shows_packet_text_escaped() -> None:
    evil = "dsm\x1b[2J\x1b]0;owned\x07.example"
    snap = LiveSnapshot(
        iface="lo",
        engine="scapy",
        bpf=BPF,
        linktype="ethernet",
        inventory="given",
        elapsed_s=3723.0,
        stats=SourceStats(packets=10, bytes=2000, kernel_drops=3),
        flows_active=2,
        flows_judged=2,
        flows_expired=0,
        verdicts=Counter(explained=1, unexplained=1),
        roles=[RoleRow("agent", "manager", "tcp", 9999, Counter(unexplained=1))],
        unexplained=[
            {
                "start": "2023-11-14T22:13:20.000000Z",
                "client": AGENT,
                "client_role": "agent",
                "server": MANAGER,
                "server_port": 9999,
                "server_role": "manager",
                "server_name": evil,
                "finding": "unexplained_flow",
                "reason_text": "no rule allows agent to reach manager on tcp/9999",
                "flows": 1,
            }
        ],
        blocked=[],
        heartbeats=[
            {"agent": SILENT_AGENT, "last_seen": None, "silent_s": 700.0, "missed_intervals": 1}
        ],
        writing=None,
    )
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None)
    console.print(render(snap))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[2J" not in text and "\x1b]0;" not in text
    assert "dsm\\x1b[2J\\x1b]0;owned\\x07.example" in text
    assert "01:02:03" in text and "packets 10" in text and "drops 3" in text
    assert "Missing heartbeats" in text and "none this session" in text


def test_the_loopback_inventory_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(inventory_text())
    inventory = load_inventory(path)
    assert "agent" in inventory.roles_of(AGENT) and "manager" in inventory.roles_of(MANAGER)
