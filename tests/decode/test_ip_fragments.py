"""IP fragment reassembly through the pipeline: order, overlap, DNS inside, bounds, timeouts."""

from __future__ import annotations

import random
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from dsaudit.decode.ip_fragments import FragmentReassembler
from dsaudit.flow_records.builder import FlowBuilder, FlowOptions, FlowResult
from tests.factories import client_hello, dns_query, dns_response
from tests.packets import (
    BASE_TS,
    MAC_A,
    MAC_B,
    NS,
    Frame,
    batch_of,
    flows_of,
    scapy_ether,
    tcp_frame,
    udp_frame,
)

CLIENT4, RESOLVER4 = "10.30.0.5", "10.30.0.53"
CLIENT6, RESOLVER6 = "2001:db8:30::5", "2001:db8:30::53"
NAME = "big.example.net"
ANSWERS = [f"203.0.113.{i}" for i in range(1, 121)]  # a response well over one MTU


def big_response() -> bytes:
    return dns_response(NAME, [(NAME, 1, a, 300) for a in ANSWERS], id=0x5151)


def v4_fragments(payload: bytes, size: int = 512) -> list[Packet]:
    pkt = IP(src=RESOLVER4, dst=CLIENT4, id=0x0707) / UDP(sport=53, dport=33333) / Raw(payload)
    return list(fragment(pkt, fragsize=size))


def v6_fragments(payload: bytes, size: int = 512) -> list[Packet]:
    pkt = (
        IPv6(src=RESOLVER6, dst=CLIENT6)
        / IPv6ExtHdrFragment(id=0xABCDEF)
        / UDP(sport=53, dport=33333)
        / Raw(payload)
    )
    return list(fragment6(pkt, size))


def timed(packets: list[Packet], start: int = BASE_TS + NS) -> list[Frame]:
    return [(start + i * 1000, scapy_ether(p)) for i, p in enumerate(packets)]


def dns_flow(result: FlowResult, client: str) -> dict[str, Any]:
    df = result.flows
    rows = df[(df["server_port"] == 53) & (df["client_ip"] == client)]
    assert len(rows) == 1, df
    return {str(k): v for k, v in rows.iloc[0].to_dict().items()}


ORDERS = {
    "in-order": lambda n: list(range(n)),
    "reversed": lambda n: list(range(n))[::-1],
    "shuffled": lambda n: random.Random(7).sample(range(n), n),
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_ipv4_dns_response_in_fragments(order: str) -> None:
    frags = v4_fragments(big_response())
    assert len(frags) >= 3
    frames = timed([frags[i] for i in ORDERS[order](len(frags))])
    query = (BASE_TS, udp_frame(CLIENT4, RESOLVER4, 33333, 53, dns_query(NAME, id=0x5151)))
    later = (BASE_TS + 5 * NS, tcp_frame(CLIENT4, ANSWERS[77], 40000, 443, "S"))
    result = flows_of([query, *frames, later])
    flow = dns_flow(result, CLIENT4)
    assert flow["dns_queries"] == [NAME]
    assert [a["data"] for a in flow["dns_answers"]] == ANSWERS
    assert flow["bytes_s2c"] == sum(len(f) for _, f in frames)
    tcp = result.flows[result.flows["proto"] == "tcp"].iloc[0]
    assert (tcp["server_name"], tcp["name_source"]) == (NAME, "dns")
    assert result.stats.fragments == len(frags)
    assert result.stats.reassembled == 1


@pytest.mark.parametrize("order", list(ORDERS))
def test_ipv6_dns_response_in_fragments(order: str) -> None:
    frags = v6_fragments(big_response())
    assert len(frags) >= 3
    frames = timed([frags[i] for i in ORDERS[order](len(frags))])
    query = (BASE_TS, udp_frame(CLIENT6, RESOLVER6, 33333, 53, dns_query(NAME, id=0x5151)))
    result = flows_of([query, *frames])
    flow = dns_flow(result, CLIENT6)
    assert flow["dns_queries"] == [NAME]
    assert [a["data"] for a in flow["dns_answers"]] == ANSWERS
    assert result.stats.reassembled == 1


def test_overlapping_and_duplicate_fragments() -> None:
    payload = big_response()
    whole = bytes(UDP(sport=53, dport=33333) / Raw(payload))  # checksum aside, as sent
    frags = v4_fragments(payload)
    # A fragment that overlaps the seam of the first two, carrying the same bytes.
    overlap = IP(src=RESOLVER4, dst=CLIENT4, id=0x0707, proto=17, flags="MF", frag=40)
    overlap = overlap / Raw(whole[320 : 320 + 400])
    packets = [frags[1], overlap, frags[0], frags[0], *frags[2:], frags[-1]]
    result = flows_of(timed(packets))
    flow = dns_flow(result, CLIENT4)
    assert [a["data"] for a in flow["dns_answers"]] == ANSWERS
    assert result.stats.reassembled == 1


def test_incomplete_datagram_creates_no_flow() -> None:
    frags = v4_fragments(big_response())
    frames = timed(frags[:1] + frags[2:])
    result = flows_of(frames)
    assert len(result.flows) == 0
    assert result.stats.fragments == len(frames)
    assert result.stats.reassembled == 0


def test_pending_fragments_stay_bounded() -> None:
    builder = FlowBuilder()
    builder.fragments = FragmentReassembler(max_pending=16)
    starts: list[Frame] = []
    for ident in range(200):
        pkt = IP(src=RESOLVER4, dst=CLIENT4, id=ident, flags="MF") / UDP(sport=53, dport=9)
        starts.append((BASE_TS + ident, scapy_ether(pkt / Raw(bytes(64)))))
    builder.add_batch(batch_of(starts))
    assert builder.fragments.pending() <= 16
    assert builder.fragments.dropped >= 200 - 16
    # A complete datagram still gets through afterwards.
    builder.add_batch(batch_of(timed(v4_fragments(big_response()), BASE_TS + 10 * NS)))
    flows = builder.result([]).flows
    assert len(flows) == 1 and len(flows.iloc[0]["dns_answers"]) == len(ANSWERS)


def test_fragments_further_apart_than_the_timeout_are_not_joined() -> None:
    timeout_s = FragmentReassembler().timeout_ns / NS
    frags = v4_fragments(big_response())
    gap = int((timeout_s + 30) * NS)
    frames = [(BASE_TS + i * gap, scapy_ether(p)) for i, p in enumerate(frags)]
    result = flows_of(frames)
    assert result.stats.reassembled == 0
    assert len(result.flows) == 0


def test_a_fragmented_first_datagram_still_names_the_client() -> None:
    # Neither port is a server port: the first datagram's sender is the client, even
    # when that datagram arrives in fragments and the reply in one piece.
    request = IP(src=CLIENT4, dst=RESOLVER4, id=9) / UDP(sport=40000, dport=50000)
    request = request / Raw(bytes(1200))
    frags = list(fragment(request, fragsize=512))
    frames = timed(frags, BASE_TS)
    reply = (frames[-1][0] + 1000, udp_frame(RESOLVER4, CLIENT4, 50000, 40000, b"ok"))
    row = flows_of([*frames, reply]).flows.iloc[0]
    assert (row["client_ip"], row["client_port"]) == (CLIENT4, 40000)
    assert row["initiator_evidence"] == "first-packet"
    assert (row["packets_c2s"], row["packets_s2c"]) == (1, 1)


def test_eviction_while_reassembling_keeps_names_on_the_right_flow() -> None:
    # The table is one flow short of its limit when a reassembled VXLAN datagram (two
    # decoded rows) arrives in the same batch as a ClientHello: the eviction this
    # triggers must not leave the ClientHello's name pointing at a stale flow index.
    limit = 1000
    old = [
        (BASE_TS + i, udp_frame("10.1.0.1", "10.2.0.1", 10000 + i, 5000, b""))
        for i in range(limit - 2)
    ]
    inner = Ether(src=MAC_A, dst=MAC_B) / IP(src="172.16.0.1", dst="172.16.0.2")
    inner = inner / UDP(sport=1, dport=2) / Raw(bytes(600))
    datagram = IP(src="10.9.0.1", dst="10.9.0.2", id=5) / UDP(sport=40000, dport=4789)
    first, second = fragment(datagram / VXLAN(vni=3) / inner, fragsize=400)
    hello = tcp_frame("10.3.0.1", "10.3.0.2", 40000, 443, "PA", 1, 1, client_hello("tls.test"))
    later = [
        (BASE_TS + 20 * NS + i, udp_frame("10.4.0.1", "10.5.0.1", 20000 + i, 5000, b""))
        for i in range(300)
    ]
    builder = FlowBuilder(FlowOptions(max_flows=limit))
    builder.add_batch(batch_of([*old, (BASE_TS + 5 * NS, scapy_ether(first))]))
    builder.add_batch(
        batch_of([(BASE_TS + 10 * NS, hello), (BASE_TS + 10 * NS + 1, scapy_ether(second))])
    )
    builder.add_batch(batch_of(later))
    df = builder.result([]).flows
    assert builder.stats.flows_evicted > 0
    named = df[df["sni"].notna()]
    assert named[["client_ip", "sni"]].values.tolist() == [["10.3.0.1", "tls.test"]]
