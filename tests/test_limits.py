"""Bounded resources: the flow table and DNS map stay within their limits and say so."""

from __future__ import annotations

import struct

from dsaudit.flow_records.builder import FlowBuilder, FlowOptions
from dsaudit.naming.dns_map import DnsMap
from dsaudit.sources.batch import LINKTYPE_RAW, PacketBatch

T0 = 1_700_000_000_000_000_000


def _syn(i: int, dport: int = 4120) -> bytes:
    src = bytes([10, 1 + (i >> 16) % 200, (i >> 8) & 255, i & 255])
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src, b"\x0a\x00\x00\x0a"
    )
    tcp = struct.pack("!HHIIHHHH", 40000 + i % 20000, dport, i, 0, (5 << 12) | 0x02, 1024, 0, 0)
    return ip + tcp


def test_syn_flood_keeps_the_flow_table_within_its_limit() -> None:
    limit = 20_000
    builder = FlowBuilder(FlowOptions(max_flows=limit))
    total = 120_000
    peak = 0
    for lo in range(0, total, 10_000):
        frames = [(T0 + i * 1000, _syn(i)) for i in range(lo, lo + 10_000)]
        builder.add_batch(PacketBatch.from_frames(frames, LINKTYPE_RAW))
        peak = max(peak, builder.table.nflows)
    result = builder.result([])
    assert peak <= limit
    assert len(result.flows) + result.stats.flows_evicted == total
    top = result.stats.evicted_top[0]
    assert (top["server"], top["port"], top["flows"]) == (
        "10.0.0.10",
        4120,
        result.stats.flows_evicted,
    )
    assert set(result.flows["outcome"].astype(str)) == {"unanswered"}


def test_eviction_keeps_names_of_surviving_flows() -> None:
    # One named flow late in the capture must keep its SNI after evictions moved it.
    from tests.factories import client_hello

    builder = FlowBuilder(FlowOptions(max_flows=2_000))
    frames = [(T0 + i * 1000, _syn(i, 443)) for i in range(6_000)]
    for lo in range(0, 6_000, 1_000):
        builder.add_batch(PacketBatch.from_frames(frames[lo : lo + 1_000], LINKTYPE_RAW))
    hello = client_hello(sni="iaus.activeupdate.trendmicro.com")
    src, dst = b"\x0a\x09\x09\x09", b"\x0a\x00\x00\x0b"
    syn = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, src, dst) + struct.pack(
        "!HHIIHHHH", 50000, 443, 100, 0, (5 << 12) | 0x02, 1024, 0, 0
    )
    data_ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40 + len(hello), 2, 0, 64, 6, 0, src, dst
    ) + struct.pack("!HHIIHHHH", 50000, 443, 101, 1, (5 << 12) | 0x18, 1024, 0, 0)
    builder.add_batch(
        PacketBatch.from_frames([(T0 + 10**10, syn), (T0 + 10**10 + 1, data_ip + hello)], 101)
    )
    flows = builder.result([]).flows
    named = flows[flows["sni"].notna()]
    assert named["sni"].tolist() == ["iaus.activeupdate.trendmicro.com"]
    assert builder.table.evicted > 0


def test_dns_map_addresses_still_holds_an_address_only_a_later_client_was_told() -> None:
    dns = DnsMap(max_entries=4)
    dns.add(client=1, addr=100, ts=0, name="a.example")
    dns.add(client=1, addr=101, ts=1, name="b.example")
    dns.add(client=2, addr=100, ts=2, name="a.example")
    dns.add(client=1, addr=102, ts=3, name="c.example")
    assert dns.addresses() == {100, 101, 102}
    # The map is full: shedding drops the oldest half of each of its two indexes, the
    # address 100 among the addresses but not client 2's later answer for it.
    dns.add(client=1, addr=103, ts=4, name="d.example")
    assert dns.evicted > 0
    assert dns.addresses() == {100, 101, 102, 103}
    assert dns.lookup(2, 100, 10) == "a.example"


def test_dns_map_sheds_old_answers_at_its_limit() -> None:
    dns = DnsMap(max_entries=100)
    for i in range(1_000):
        dns.add(client=1, addr=i, ts=i, name=f"h{i}.example")
    assert dns.evicted > 0
    assert dns.lookup(1, 999, 2_000) == "h999.example"
    assert dns.lookup(1, 0, 2_000) is None
