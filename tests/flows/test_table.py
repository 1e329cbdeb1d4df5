"""The flow table: who is the client, Zeek states and history, flow splits, ICMP, growth."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import Raw

from dsaudit.decode.batch import decode_batch
from dsaudit.flow_records.builder import FlowBuilder, FlowOptions
from dsaudit.flow_records.reading import read_captures
from dsaudit.flows.table import FlowTable, Timeouts
from dsaudit.flows.table_kernel import F_A_PORT, F_B_PORT, F_PKTS_C
from tests.packets import (
    BASE_TS,
    NS,
    Frame,
    TcpConversation,
    batch_of,
    clone_udp_frames,
    flows_of,
    flows_of_file,
    icmp_frame,
    scapy_ether,
    tcp_frame,
    udp_frame,
    write_pcap,
)

C, S = "10.20.0.10", "10.20.0.20"


def conv(cport: int = 40000, sport: int = 4120, **kw: Any) -> TcpConversation:
    return TcpConversation(C, S, cport, sport, **kw)


def only(df: pd.DataFrame) -> dict[str, Any]:
    """The one flow of ``df`` as a dict, missing values as None."""
    assert len(df) == 1, df[["client_ip", "client_port", "server_ip", "server_port"]]
    return {str(k): None if v is pd.NA else v for k, v in df.iloc[0].to_dict().items()}


def endpoints(row: dict[str, Any]) -> tuple[str, int, str, int]:
    return (row["client_ip"], int(row["client_port"]), row["server_ip"], int(row["server_port"]))


# ----------------------------------------------------------------------------- initiator


def test_client_from_syn_even_against_the_ports() -> None:
    # The SYN sender uses port 443 and talks to a high port: the SYN still decides.
    c = TcpConversation(C, S, 443, 50000)
    c.handshake()
    row = only(flows_of(c.frames).flows)
    assert endpoints(row) == (C, 443, S, 50000)
    assert row["initiator_evidence"] == "syn"


def test_client_from_synack_when_the_syn_is_missing() -> None:
    c = conv(cport=40000, sport=50001)
    c.handshake()
    c.send(True, "PA", b"hello")
    row = only(flows_of(c.frames[1:]).flows)
    assert endpoints(row) == (C, 40000, S, 50001)
    assert row["initiator_evidence"] == "synack"
    assert row["history"] == "hAD"
    assert (row["state"], row["outcome"]) == ("S1", "established")


@pytest.mark.parametrize(
    ("proto", "port"),
    [
        ("tcp", 4120),
        ("tcp", 4118),
        ("tcp", 4122),
        ("tcp", 5432),
        ("tcp", 53),
        ("tcp", 443),
        ("udp", 53),
        ("udp", 4122),
        ("udp", 123),
    ],
)
def test_client_from_a_server_port_mid_stream(proto: str, port: int) -> None:
    # The capture starts with a packet from the server side.
    if proto == "tcp":
        frames = [
            (BASE_TS, tcp_frame(S, C, port, 45678, "PA", 9000, 100, b"from server")),
            (BASE_TS + 1, tcp_frame(C, S, 45678, port, "PA", 100, 9011, b"from client")),
        ]
    else:
        frames = [(BASE_TS, udp_frame(S, C, port, 45678, b"\x00" * 12))]
    row = only(flows_of(frames).flows)
    assert endpoints(row) == (C, 45678, S, port)
    assert row["initiator_evidence"] == "port"


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_client_is_the_first_sender_otherwise(proto: str) -> None:
    if proto == "tcp":
        frames = [
            (BASE_TS, tcp_frame(S, C, 50000, 40000, "PA", 1, 1, b"x")),
            (BASE_TS + 1, tcp_frame(C, S, 40000, 50000, "PA", 1, 2, b"y")),
        ]
    else:
        frames = [
            (BASE_TS, udp_frame(S, C, 50000, 40000, b"x")),
            (BASE_TS + 1, udp_frame(C, S, 40000, 50000, b"y")),
        ]
    row = only(flows_of(frames).flows)
    assert endpoints(row) == (S, 50000, C, 40000)
    assert row["initiator_evidence"] == "first-packet"


def test_catalog_ports_given_as_options_decide() -> None:
    frames = [(BASE_TS, udp_frame(S, C, 40000, 50000, b"x"))]
    row = only(flows_of(frames, FlowOptions(server_ports=(40000,))).flows)
    assert endpoints(row) == (C, 50000, S, 40000)
    assert row["initiator_evidence"] == "port"


# ----------------------------------------------------------------------------- states


Scenario = Callable[[TcpConversation], None]


def s_s0(c: TcpConversation) -> None:
    c.send(True, "S")


def s_rej(c: TcpConversation) -> None:
    c.send(True, "S")
    c.send(False, "RA")


def s_rstos0(c: TcpConversation) -> None:
    c.send(True, "S")
    c.send(True, "R")


def s_sh(c: TcpConversation) -> None:
    c.send(True, "S")
    c.send(True, "F")


def s_s1(c: TcpConversation) -> None:
    c.handshake()


def s_sf(c: TcpConversation) -> None:
    c.handshake()
    c.send(True, "PA", b"request")
    c.send(False, "A")
    c.send(False, "PA", b"response")
    c.send(True, "A")
    c.close()


def s_s2(c: TcpConversation) -> None:
    c.handshake()
    c.send(True, "FA")


def s_s3(c: TcpConversation) -> None:
    c.handshake()
    c.send(False, "FA")


def s_rsto(c: TcpConversation) -> None:
    c.handshake()
    c.send(True, "RA")


def s_rstr(c: TcpConversation) -> None:
    c.handshake()
    c.send(False, "R")


def s_oth(c: TcpConversation) -> None:
    c.send(True, "PA", b"midstream")
    c.send(False, "PA", b"reply")


@pytest.mark.parametrize(
    ("scenario", "state", "outcome", "history"),
    [
        (s_s0, "S0", "unanswered", "S"),
        (s_rej, "REJ", "rejected", "Sr"),
        (s_rstos0, "RSTOS0", "unanswered", "SR"),
        (s_sh, "SH", "unanswered", "SF"),
        (s_s1, "S1", "established", "ShA"),
        (s_sf, "SF", "established", "ShADadFf"),
        (s_s2, "S2", "established", "ShAF"),
        (s_s3, "S3", "established", "ShAf"),
        (s_rsto, "RSTO", "established", "ShAR"),
        (s_rstr, "RSTR", "established", "ShAr"),
        (s_oth, "OTH", "partial", "Dd"),
    ],
    ids=lambda v: v.__name__[2:] if callable(v) else None,
)
def test_zeek_states(scenario: Scenario, state: str, outcome: str, history: str) -> None:
    c = conv(cport=40000, sport=50001)  # no server port: only the packets decide
    scenario(c)
    row = only(flows_of(c.frames).flows)
    assert (row["state"], row["outcome"], row["history"]) == (state, outcome, history)
    assert endpoints(row) == (C, 40000, S, 50001)


@pytest.mark.parametrize(("state", "outcome"), [("SF", "established"), ("S0", "one-way")])
def test_udp_outcomes(state: str, outcome: str) -> None:
    frames = [(BASE_TS, udp_frame(C, S, 40000, 5000, b"ask"))]
    if outcome == "established":
        frames.append((BASE_TS + 1, udp_frame(S, C, 5000, 40000, b"answer")))
    row = only(flows_of(frames).flows)
    assert (row["state"], row["outcome"], row["history"]) == (state, outcome, "")


def test_history_marks_a_retransmission() -> None:
    c = conv()
    c.handshake()
    seq = c.cseq
    c.send(True, "PA", b"data")
    c.send(True, "PA", b"data", seq=seq)
    row = only(flows_of(c.frames).flows)
    assert row["history"] == "ShADT"
    assert row["packets_c2s"] == 4


def test_packets_and_bytes_per_direction() -> None:
    c = conv()
    s_sf(c)
    c2s = [f for f in c.frames if f[1][26:30] == bytes(map(int, C.split(".")))]
    s2c = [f for f in c.frames if f not in c2s]
    row = only(flows_of(c.frames).flows)
    assert (row["packets_c2s"], row["packets_s2c"]) == (len(c2s), len(s2c))
    assert row["bytes_c2s"] == sum(len(f) for _, f in c2s)
    assert row["bytes_s2c"] == sum(len(f) for _, f in s2c)
    assert (row["payload_bytes_c2s"], row["payload_bytes_s2c"]) == (
        len(b"request"),
        len(b"response"),
    )
    assert row["start"] == pd.Timestamp(c.frames[0][0], unit="ns", tz="UTC")
    assert row["end"] == pd.Timestamp(c.frames[-1][0], unit="ns", tz="UTC")
    assert row["duration"] == pytest.approx((c.frames[-1][0] - c.frames[0][0]) / NS)


# ----------------------------------------------------------------------------- splits


def test_syn_retransmission_with_the_same_isn_is_one_flow() -> None:
    c = conv(step_ns=NS)
    c.send(True, "S")
    c.send(True, "S", seq=c.client_isn)
    c.send(True, "S", seq=c.client_isn)
    c.send(False, "SA")
    c.send(True, "A")
    row = only(flows_of(c.frames).flows)
    assert row["packets_c2s"] == 4 and row["state"] == "S1"


def test_port_reuse_after_close_with_a_new_isn_is_a_new_flow() -> None:
    first = conv(cport=40000, sport=50001)
    s_sf(first)
    second = conv(cport=40000, sport=50001, client_isn=777_777, start_ns=first.clock + NS)
    s_sf(second)
    df = flows_of(first.frames + second.frames).flows
    assert len(df) == 2
    assert df["state"].tolist() == ["SF", "SF"]
    assert df["packets_c2s"].tolist() == [
        sum(1 for _, f in x.frames if f[26:30] == bytes(map(int, C.split("."))))
        for x in (first, second)
    ]
    assert df["start"].tolist() == [
        pd.Timestamp(first.frames[0][0], unit="ns", tz="UTC"),
        pd.Timestamp(second.frames[0][0], unit="ns", tz="UTC"),
    ]


def test_retry_after_a_rejection_is_a_new_flow() -> None:
    first = conv()
    s_rej(first)
    second = conv(client_isn=99_999, start_ns=first.clock + NS)
    s_s1(second)
    df = flows_of(first.frames + second.frames).flows
    assert df["state"].tolist() == ["REJ", "S1"]


def test_udp_idle_timeout_splits_a_flow() -> None:
    gaps = [0, 1, 10, 11]  # seconds
    frames = [(BASE_TS + g * NS, udp_frame(C, S, 40000, 5000, b"u")) for g in gaps]
    df = flows_of(frames, FlowOptions(timeouts=Timeouts(udp=5))).flows
    assert df["packets_c2s"].tolist() == [2, 2]
    assert flows_of(frames, FlowOptions(timeouts=Timeouts(udp=60))).flows.shape[0] == 1


def test_tcp_idle_timeout_splits_a_flow() -> None:
    c = conv(step_ns=10 * NS)
    c.send(True, "PA", b"one")
    c.send(False, "PA", b"two")
    c.send(True, "PA", b"three")
    df = flows_of(c.frames, FlowOptions(timeouts=Timeouts(tcp=5))).flows
    assert len(df) == 3
    assert len(flows_of(c.frames, FlowOptions(timeouts=Timeouts(tcp=30))).flows) == 1


def test_same_five_tuple_on_two_vlans() -> None:
    frames = [
        (BASE_TS, udp_frame(C, S, 40000, 5000, b"q", vlan=10)),
        (BASE_TS + 1, udp_frame(S, C, 5000, 40000, b"a", vlan=20)),
    ]
    # The table keys them apart; the records join the two one-way halves (vlan_join).
    row = only(flows_of(frames).flows)
    assert (row["vlan"], row["vlan_s2c"], row["client_ip"]) == (10, 20, C)
    assert (row["packets_c2s"], row["packets_s2c"], row["outcome"]) == (1, 1, "established")
    merged = only(flows_of(frames, FlowOptions(vlan_key=False)).flows)
    assert (merged["packets_c2s"], merged["packets_s2c"]) == (1, 1)
    assert merged["outcome"] == "established"


def test_a_flow_continues_across_two_files(tmp_path: Path) -> None:
    c = conv()
    s_sf(c)
    half = len(c.frames) // 2
    a = write_pcap(tmp_path / "a.pcap", c.frames[:half], nsec=True)
    b = write_pcap(tmp_path / "b.pcap", c.frames[half:], nsec=True)
    row = only(read_captures([str(a), str(b)]).flows)
    assert row["state"] == "SF"
    assert row["packets_c2s"] + row["packets_s2c"] == len(c.frames)


def test_ipv6_flow(tmp_path: Path) -> None:
    server = "2001:0db8:0000:0000:0001:0000:0000:0002"
    c = TcpConversation("2001:db8::1", server, 40000, 443)
    s_sf(c)
    row = only(flows_of_file(tmp_path / "v6.pcap", c.frames).flows)
    assert endpoints(row) == ("2001:db8::1", 40000, str(ipaddress.IPv6Address(server)), 443)
    assert row["ip_version"] == 6 and row["state"] == "SF"


# ----------------------------------------------------------------------------- ICMP


def test_icmp_echo_request_and_reply_pair_up() -> None:
    frames = [
        (BASE_TS, icmp_frame(C, S, 8, id=77, seq=1, payload=b"ping")),
        (BASE_TS + 1, icmp_frame(S, C, 0, id=77, seq=1, payload=b"ping")),
        (BASE_TS + 2, icmp_frame(C, S, 8, id=78, seq=1, payload=b"ping")),
    ]
    df = flows_of(frames).flows
    assert len(df) == 2
    pair = df.iloc[0]
    assert (pair["proto"], pair["client_ip"], pair["server_ip"]) == ("icmp", C, S)
    assert (pair["packets_c2s"], pair["packets_s2c"], pair["outcome"]) == (1, 1, "established")
    assert (pair["client_port"], pair["server_port"]) == (8, 0)  # ICMP type and code
    assert df.iloc[1]["outcome"] == "one-way"


def _quote(pkt: bytes) -> bytes:
    return pkt[:28]


def test_icmp_port_unreachable_rejects_a_udp_flow() -> None:
    probe = bytes(IP(src=C, dst=S) / UDP(sport=40000, dport=5000) / Raw(b"hello?"))
    frames = [
        (BASE_TS, udp_frame(C, S, 40000, 5000, b"hello?")),
        (BASE_TS + 5, icmp_frame(S, C, 3, 3, payload=_quote(probe))),
        (BASE_TS + 9, udp_frame(C, "10.20.0.99", 40000, 5000, b"other flow")),
    ]
    df = flows_of(frames).flows
    udp = df[(df["proto"] == "udp") & (df["server_ip"] == S)].iloc[0]
    assert udp["outcome"] == "rejected"
    assert len(udp["icmp_errors"]) == 1
    err = udp["icmp_errors"][0]
    assert (err["type"], err["code"], err["from"]) == (3, 3, S)
    other = df[df["server_ip"] == "10.20.0.99"].iloc[0]
    assert other["outcome"] == "one-way" and list(other["icmp_errors"]) == []


def test_icmp_fragmentation_needed_attaches_with_its_mtu() -> None:
    probe = bytes(IP(src=C, dst=S) / UDP(sport=40000, dport=5000) / Raw(bytes(1400)))
    router = "10.20.0.1"
    too_big = IP(src=router, dst=C) / ICMP(type=3, code=4, nexthopmtu=1280) / _quote(probe)
    frames = [
        (BASE_TS, udp_frame(C, S, 40000, 5000, bytes(1400))),
        (BASE_TS + 5, scapy_ether(too_big)),
    ]
    df = flows_of(frames).flows
    udp = df[df["proto"] == "udp"].iloc[0]
    assert udp["outcome"] == "one-way"
    (err,) = udp["icmp_errors"]
    assert (err["type"], err["code"], err["from"], err["mtu"]) == (3, 4, router, 1280)


def test_icmp_error_for_a_tcp_syn() -> None:
    syn = bytes(IP(src=C, dst=S) / TCP(sport=40000, dport=4120, flags="S"))
    frames = [
        (BASE_TS, tcp_frame(C, S, 40000, 4120, "S")),
        (BASE_TS + 5, icmp_frame("10.20.0.1", C, 3, 1, payload=_quote(syn))),
    ]
    df = flows_of(frames).flows
    tcp = df[df["proto"] == "tcp"].iloc[0]
    assert tcp["outcome"] == "rejected"
    assert [e["code"] for e in tcp["icmp_errors"]] == [1]


# ----------------------------------------------------------------------------- growth


def test_many_flows_grow_the_table_and_hash() -> None:
    # Port 4120 is a server port, so every copy's sender is its client.
    template = udp_frame("10.50.0.0", "10.60.0.1", 1024, 4120, b"")
    count = 100_000
    batch = clone_udp_frames(template, count, sport_at=14 + 20, src_at=14 + 12)
    builder = FlowBuilder()
    builder.add_batch(batch)
    table = builder.table
    assert table.nflows == count
    assert table.htab.shape[0] > 1 << 15 and table.fs.shape[0] >= count
    df = builder.result([]).flows
    assert len(df) == count
    assert int(df["packets_c2s"].sum()) == count
    assert df[["client_ip", "client_port"]].drop_duplicates().shape[0] == count
    # Feeding the same packets again, later, finds every flow again.
    again = clone_udp_frames(template, count, sport_at=14 + 20, src_at=14 + 12)
    again.ts_ns += NS
    builder.add_batch(again)
    assert builder.table.nflows == count
    assert set(builder.result([]).flows["packets_c2s"].tolist()) == {2}


def test_flow_table_small_capacity_grows() -> None:
    table = FlowTable(capacity=4)
    frames: list[Frame] = [(BASE_TS + i, udp_frame(C, S, 40000 + i, 5000, b"")) for i in range(50)]
    batch = batch_of(frames)
    rec, k = decode_batch(batch)
    table.feed(rec, k, batch.buf)
    assert table.nflows == 50
    ports = table.flows[:, F_A_PORT].tolist() + table.flows[:, F_B_PORT].tolist()
    assert ports.count(5000) == 50
    assert np.all(table.flows[:, F_PKTS_C] == 1)


def test_sequence_numbers_wrapping_are_not_retransmissions() -> None:
    c = conv(client_isn=0xFFFF_FF00)
    c.handshake()
    for _ in range(4):
        c.send(True, "PA", bytes(200))
    c.send(False, "A")
    row = only(flows_of(c.frames).flows)
    assert row["history"] == "ShADa"
    assert row["payload_bytes_c2s"] == 800


# ----------------------------------------------------------------------------- memory bound


def test_max_flows_evicts_nothing_below_the_limit() -> None:
    # Ten long UDP conversations, read in three batches, with room for a thousand flows.
    flows, per_flow = 10, 300
    frames = [
        (BASE_TS + (i * flows + f) * 1000, udp_frame(C, S, 40000 + f, 5000, b"u"))
        for i in range(per_flow)
        for f in range(flows)
    ]
    builder = FlowBuilder(FlowOptions(max_flows=1000))
    for start in range(0, len(frames), 1000):
        builder.add_batch(batch_of(frames[start : start + 1000]))
    result = builder.result([])
    assert result.stats.flows_evicted == 0
    assert result.flows["packets_c2s"].tolist() == [per_flow] * flows


def test_max_flows_evicts_the_least_recent_flows_above_the_limit() -> None:
    total = 3000
    frames = [(BASE_TS + i * NS, udp_frame(C, S, 20000 + i, 5000, b"u")) for i in range(total)]
    builder = FlowBuilder(FlowOptions(max_flows=1000))
    for start in range(0, total, 100):
        builder.add_batch(batch_of(frames[start : start + 100]))
    result = builder.result([])
    df = result.flows
    assert 0 < len(df) <= 1000
    assert result.stats.flows_evicted == total - len(df)
    assert df["client_port"].min() == 20000 + total - len(df)  # the newest ones stay
    top = result.stats.evicted_top
    assert [(t["server"], t["port"], t["flows"]) for t in top] == [(S, 5000, total - len(df))]


# ----------------------------------------------------------- the server's answer to a hello


def _server_events(frames: list[Frame]) -> int:
    """Payload events the flow table raises for the server side of the one flow."""
    rec, k = decode_batch(batch_of(frames))
    events = FlowTable().feed(rec, k, batch_of(frames).buf)
    return int((events[:, 1] == 1).sum())


def _tls_answered(answer: list[bytes], order: list[int] | None = None) -> list[Frame]:
    from tests.factories import client_hello

    c = conv(sport=4120)
    c.handshake()
    c.send(True, "PA", client_hello("dsm.corp.example"))
    at = c.sseq
    starts = []
    for seg in answer:
        starts.append(at)
        at = (at + len(seg)) & 0xFFFFFFFF
    for i in order if order is not None else range(len(answer)):
        c.send(False, "PA", answer[i], seq=starts[i])
    return c.frames


def _flight_then_encrypted() -> tuple[list[bytes], int]:
    """A TLS 1.2 server flight, ChangeCipherSpec and 20 records of application data in
    200-byte segments; returns the segments and how many of them naming needs: up to the one
    holding the ChangeCipherSpec header."""
    from tests.factories import certificate_chain, server_flight, tls_records

    flight = server_flight(*certificate_chain("DSM Internal CA"))
    rest = tls_records(b"\x01", content_type=0x14, version=0x0303) + b"".join(
        tls_records(bytes(300), content_type=0x17, version=0x0303) for _ in range(20)
    )
    stream = flight + rest
    assert len(flight) % 200 <= 195  # the header sits whole in one segment
    return [stream[i : i + 200] for i in range(0, len(stream), 200)], len(flight) // 200 + 1


def test_the_server_answer_is_handed_over_only_until_it_turns_encrypted() -> None:
    segs, needed = _flight_then_encrypted()
    assert len(segs) > 16 > needed
    assert _server_events(_tls_answered(segs)) == needed


def test_a_server_alert_ends_the_hand_over() -> None:
    from tests.factories import server_hello_handshake, tls_alert, tls_records

    hello = tls_records(server_hello_handshake(), version=0x0303)
    segs = [hello, tls_alert(2, 48), b"\x17\x03\x03\x00\x04abcd", b"\x17\x03\x03\x00\x04efgh"]
    assert _server_events(_tls_answered(segs)) == 2


def test_an_out_of_order_answer_is_handed_over_up_to_the_limit() -> None:
    # The walk cannot vouch for reordered bytes: naming gets every packet, as before.
    segs, _ = _flight_then_encrypted()
    order = [1, 0, *range(2, len(segs))]
    assert _server_events(_tls_answered(segs, order)) == 16


def test_an_answer_that_is_not_tls_is_handed_over_up_to_the_limit() -> None:
    segs = [b"HTTP/1.1 200 OK\r\n\r\n", *(bytes([0x17, 3, 3, 0, 4]) + b"abcd" for _ in range(20))]
    assert _server_events(_tls_answered(segs)) == 16


def test_the_issuer_behind_the_cut_is_still_read() -> None:
    from tests.factories import client_hello

    segs, _ = _flight_then_encrypted()
    c = conv(sport=4120)
    c.handshake()
    c.send(True, "PA", client_hello("dsm.corp.example"))
    for seg in segs:
        c.send(False, "PA", seg)
    row = only(flows_of(c.frames).flows)
    assert row["sni"] == "dsm.corp.example"
    assert row["tls_server_issuer"] == "CN=DSM Internal CA"
