"""The flows DataFrame contract: FLOW_DTYPES, ordering, VLAN, tunnel and truncation columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    IPv6,
)
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from dsaudit.flow_records.frame import FLOW_COLUMNS, FLOW_DTYPES, empty_flows
from dsaudit.flow_records.reading import read_captures
from tests.factories import dns_query, dns_response
from tests.packets import (
    BASE_TS,
    MAC_A,
    MAC_B,
    NS,
    Frame,
    TcpConversation,
    ether,
    flows_of,
    pcap_header,
    pcap_record,
    scapy_ether,
    tcp_packet,
    udp_frame,
    write_pcap,
)


def assert_contract(df: pd.DataFrame) -> None:
    assert list(df.columns) == FLOW_COLUMNS
    for col, dtype in FLOW_DTYPES.items():
        assert df[col].dtype == pd.api.types.pandas_dtype(dtype), col


def mixed_frames() -> list[Frame]:
    c = TcpConversation("10.0.0.1", "10.0.0.2", 40000, 4119, vlan=30, start_ns=BASE_TS + 3 * NS)
    c.handshake()
    c.close()
    inner = Ether(src=MAC_A, dst=MAC_B) / tcp_packet("172.16.0.1", "172.16.0.2", 1, 22, "S")
    vxlan = IP(src="10.0.0.7", dst="10.0.0.8") / UDP(sport=50000, dport=4789) / VXLAN(vni=5)
    return [
        *c.frames,
        (BASE_TS + 2 * NS, udp_frame("10.0.0.1", "10.0.0.53", 33000, 53, dns_query("x.test"))),
        (
            BASE_TS + 2 * NS + 5,
            udp_frame(
                "10.0.0.53",
                "10.0.0.1",
                53,
                33000,
                dns_response("x.test", [("x.test", 1, "10.0.0.2", 9)]),
            ),
        ),
        (
            BASE_TS + NS,
            scapy_ether(IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=4)),
        ),
        (
            BASE_TS + NS + 9,
            scapy_ether(IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6EchoReply(id=4)),
        ),
        (BASE_TS, ether(vxlan / inner)),
        (
            BASE_TS + 4 * NS,
            ether(
                tcp_packet("10.0.0.9", "10.0.0.10", 5, 6, "S"), [100, 200], tpids=[0x88A8, 0x8100]
            ),
        ),
        (BASE_TS + 5 * NS, ether(bytes(IP(src="10.0.0.9", dst="10.0.0.11", proto=47)) + bytes(4))),
    ]


def test_flow_columns_and_dtypes(tmp_path: Path) -> None:
    frames = mixed_frames()
    result = read_captures([str(write_pcap(tmp_path / "mixed.pcap", frames, nsec=True))])
    df = result.flows
    assert_contract(df)
    assert df["flow_id"].tolist() == list(range(len(df)))
    assert df["start"].is_monotonic_increasing
    assert df["start"].iloc[0] == pd.Timestamp(min(ts for ts, _ in frames), unit="ns", tz="UTC")
    assert sorted(df["proto"].unique().tolist()) == ["47", "icmpv6", "tcp", "udp"]
    for col in ("dns_queries", "dns_answers", "icmp_errors"):
        assert all(isinstance(v, list) for v in df[col])
    answers = [a for v in df["dns_answers"] for a in v]
    assert answers == [{"name": "x.test", "type": "A", "data": "10.0.0.2", "ttl": 9}]


def test_empty_capture_has_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(pcap_header())
    df = read_captures([str(path)]).flows
    assert len(df) == 0
    assert_contract(df)
    assert_contract(empty_flows())


def test_vlan_tunnel_and_version_columns() -> None:
    df = flows_of(mixed_frames()).flows
    by_server = {r["server_ip"]: r for _, r in df.iterrows()}
    qinq = by_server["10.0.0.10"]
    assert (qinq["vlan"], qinq["inner_vlan"]) == (100, 200)
    assert by_server["10.0.0.2"]["vlan"] == 30 and by_server["10.0.0.2"]["inner_vlan"] is pd.NA
    assert by_server["10.0.0.53"]["vlan"] is pd.NA
    assert bool(by_server["172.16.0.2"]["tunnel"]) is True
    assert bool(by_server["10.0.0.8"]["tunnel"]) is False
    v6 = by_server["2001:db8::2"]
    assert (v6["ip_version"], v6["proto"], v6["client_port"], v6["server_port"]) == (
        6,
        "icmpv6",
        128,
        0,
    )
    assert (v6["packets_c2s"], v6["packets_s2c"], v6["outcome"]) == (1, 1, "established")
    assert set(df.loc[df["ip_version"] == 4, "client_ip"]) >= {"10.0.0.1", "10.0.0.9"}


def test_truncated_packets_are_counted(tmp_path: Path) -> None:
    c = TcpConversation("10.0.0.1", "10.0.0.2", 40000, 443)
    c.handshake()
    c.send(True, "PA", bytes(500))
    c.send(False, "PA", bytes(700))
    path = tmp_path / "snap.pcap"
    with path.open("wb") as fh:
        fh.write(pcap_header(snaplen=96, nsec=True))
        for ts, frame in c.frames:
            fh.write(pcap_record(ts, frame[:96], nsec=True, wirelen=len(frame)))
    result = read_captures([str(path)])
    row = result.flows.iloc[0]
    assert row["truncated_packets"] == 2
    assert row["bytes_c2s"] + row["bytes_s2c"] == sum(len(f) for _, f in c.frames)
    assert (row["payload_bytes_c2s"], row["payload_bytes_s2c"]) == (500, 700)
    assert result.stats.snaplen_cut_frames == 2


def test_icmpv6_port_unreachable_rejects_a_udp_flow() -> None:
    probe = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=40000, dport=5000))
    error = IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6DestUnreach(code=4) / probe
    frames = [
        (BASE_TS, udp_frame("2001:db8::1", "2001:db8::2", 40000, 5000, b"")),
        (BASE_TS + 1, scapy_ether(error)),
    ]
    df = flows_of(frames).flows
    udp = df[df["proto"] == "udp"].iloc[0]
    assert udp["outcome"] == "rejected"
    assert [(e["type"], e["code"], e["from"]) for e in udp["icmp_errors"]] == [
        (1, 4, "2001:db8::2")
    ]


def test_icmpv6_packet_too_big_attaches_its_mtu() -> None:
    probe = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=40000, dport=5000))
    router = "2001:db8::fe"
    error = IPv6(src=router, dst="2001:db8::1") / ICMPv6PacketTooBig(mtu=1280) / probe
    frames = [
        (BASE_TS, udp_frame("2001:db8::1", "2001:db8::2", 40000, 5000, bytes(1400))),
        (BASE_TS + 1, scapy_ether(error)),
    ]
    df = flows_of(frames).flows
    udp = df[df["proto"] == "udp"].iloc[0]
    assert udp["outcome"] == "one-way"
    assert [(e["type"], e["from"], e["mtu"]) for e in udp["icmp_errors"]] == [(2, router, 1280)]


def test_dns_answers_read_as_dicts_in_their_own_flows_row(tmp_path: Path) -> None:
    # The flows are sorted by start after the store: answers must move with their rows.
    answers = [("www.test", 5, "edge.test", 60), ("edge.test", 1, "10.0.0.80", 30)]
    frames = [
        *mixed_frames(),
        (BASE_TS + 6 * NS, udp_frame("10.0.0.1", "10.0.0.54", 33001, 53, dns_query("www.test"))),
        (
            BASE_TS + 6 * NS + 5,
            udp_frame("10.0.0.54", "10.0.0.1", 53, 33001, dns_response("www.test", answers)),
        ),
    ]
    table = read_captures([str(write_pcap(tmp_path / "dns.pcap", frames))]).table
    cells = table.array("dns_answers").tolist()
    assert table["dns_answers"].tolist() == cells
    servers = table["server_ip"].tolist()
    got = {servers[i]: v for i, v in enumerate(cells) if v}
    assert got == {
        "10.0.0.53": [{"name": "x.test", "type": "A", "data": "10.0.0.2", "ttl": 9}],
        "10.0.0.54": [
            {"name": "www.test", "type": "CNAME", "data": "edge.test", "ttl": 60},
            {"name": "edge.test", "type": "A", "data": "10.0.0.80", "ttl": 30},
        ],
    }
    assert table.to_frame()["dns_answers"].tolist() == [v or [] for v in cells]
