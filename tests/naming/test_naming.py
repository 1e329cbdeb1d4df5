"""Peer naming through the pipeline: SNI, STARTTLS, HTTP Host, CONNECT, SOCKS and DNS answers."""

from __future__ import annotations

import random
from typing import Any

import pandas as pd
import pytest

from dsaudit.flow_records.builder import FlowBuilder
from dsaudit.naming.dns_map import DnsMap
from tests.factories import (
    client_hello,
    dns_query,
    dns_response,
    dns_tcp,
    http_request,
    socks4a_request,
    socks5_request,
)
from tests.packets import (
    BASE_TS,
    NS,
    Frame,
    TcpConversation,
    batch_of,
    flows_of,
    tcp_frame,
    udp_frame,
)

C, S = "10.40.0.10", "10.40.0.20"
RESOLVER = "10.40.0.53"


def tcp_flow(df: pd.DataFrame, server_port: int, client: str = C) -> dict[str, Any]:
    """The one TCP flow to ``server_port`` from ``client``, missing values as None."""
    rows = df[(df["proto"] == "tcp") & (df["server_port"] == server_port)]
    rows = rows[rows["client_ip"] == client]
    assert len(rows) == 1, df[["client_ip", "server_ip", "server_port"]]
    return {str(k): None if v is pd.NA else v for k, v in rows.iloc[0].to_dict().items()}


def tls_conversation(hello: bytes, pieces: int, order: list[int] | None = None) -> list[Frame]:
    """Handshake, then the ClientHello in ``pieces`` segments sent in ``order``."""
    c = TcpConversation(C, S, 40000, 443)
    c.handshake()
    segs = c.segments(True, hello, pieces)
    assert len(segs) == pieces
    order = order if order is not None else list(range(pieces))
    for i in order:  # each segment keeps its sequence number; only the timing changes
        c.frames.append((c.clock, segs[i][1]))
        c.clock += c.step_ns
    c.send(False, "A")
    return c.frames


# ----------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("pieces", [1, 2, 6])
def test_sni_from_a_client_hello_in_order(pieces: int) -> None:
    name = "agent-update.example.com"
    row = tcp_flow(flows_of(tls_conversation(client_hello(name), pieces)).flows, 443)
    assert (row["sni"], row["server_name"], row["name_source"]) == (name, name, "sni")


@pytest.mark.parametrize(
    ("pieces", "order"),
    [(2, [1, 0]), (6, [0, 2, 1, 4, 3, 5]), (6, [5, 4, 3, 2, 1, 0]), (6, None)],
    ids=["2-swapped", "6-pairs-swapped", "6-reversed", "6-shuffled"],
)
def test_sni_from_a_client_hello_out_of_order(pieces: int, order: list[int] | None) -> None:
    name = "relay.example.com"
    if order is None:
        order = random.Random(3).sample(range(pieces), pieces)
    frames = tls_conversation(client_hello(name), pieces, order)
    row = tcp_flow(flows_of(frames).flows, 443)
    assert (row["sni"], row["name_source"]) == (name, "sni")


def test_sni_when_the_first_segment_is_only_the_record_header() -> None:
    name = "split-header.example.com"
    hello = client_hello(name)
    c = TcpConversation(C, S, 40000, 443)
    c.handshake()
    c.send(True, "PA", hello[:5])
    c.send(True, "PA", hello[5:])
    row = tcp_flow(flows_of(c.frames).flows, 443)
    assert row["sni"] == name


@pytest.mark.parametrize("pieces", [1, 3])
def test_sni_from_a_client_hello_over_two_tls_records(pieces: int) -> None:
    name = "two-records.example.com"
    hello = client_hello(name, records=2, extra_len=600)
    row = tcp_flow(flows_of(tls_conversation(hello, pieces)).flows, 443)
    assert row["sni"] == name


def test_client_hello_after_smtp_starttls() -> None:
    name = "mail.example.com"
    c = TcpConversation(C, S, 40001, 25)
    c.handshake()
    c.send(False, "PA", b"220 mail.example.com ESMTP ready\r\n")
    c.send(True, "PA", b"EHLO agent.example.com\r\n")
    c.send(False, "PA", b"250-mail.example.com\r\n250 STARTTLS\r\n")
    c.send(True, "PA", b"STARTTLS\r\n")
    c.send(False, "PA", b"220 2.0.0 Ready to start TLS\r\n")
    c.send(True, "PA", client_hello(name))
    row = tcp_flow(flows_of(c.frames).flows, 25)
    assert (row["sni"], row["name_source"]) == (name, "sni")


def _ber_len(n: int) -> bytes:
    return bytes((n,)) if n < 0x80 else bytes((0x81, n))


def ldap_start_tls_request(message_id: int = 1) -> bytes:
    oid = b"1.3.6.1.4.1.1466.20037"
    op = b"\x77" + _ber_len(len(oid) + 2) + b"\x80" + _ber_len(len(oid)) + oid
    body = b"\x02\x01" + bytes((message_id,)) + op
    return b"\x30" + _ber_len(len(body)) + body


def ldap_start_tls_response(message_id: int = 1) -> bytes:
    op = b"\x78\x07\x0a\x01\x00\x04\x00\x04\x00"  # success, empty DN and message
    body = b"\x02\x01" + bytes((message_id,)) + op
    return b"\x30" + _ber_len(len(body)) + body


def test_client_hello_after_ldap_start_tls() -> None:
    name = "dc01.corp.example"
    c = TcpConversation(C, S, 40002, 389)
    c.handshake()
    c.send(True, "PA", ldap_start_tls_request())
    c.send(False, "PA", ldap_start_tls_response())
    c.send(True, "PA", client_hello(name))
    row = tcp_flow(flows_of(c.frames).flows, 389)
    assert (row["sni"], row["name_source"]) == (name, "sni")


# ----------------------------------------------------------------------------- HTTP and proxies


@pytest.mark.parametrize(
    ("host", "header", "expected"),
    [
        ("manager.example.com", "Host", "manager.example.com"),
        ("manager.example.com", "host", "manager.example.com"),
        ("manager.example.com:4119", "HOST", "manager.example.com"),
        ("[2001:db8::4]:8080", "Host", "2001:db8::4"),
    ],
    ids=["Host", "host", "with-port", "v6-literal"],
)
def test_http_host(host: str, header: str, expected: str) -> None:
    c = TcpConversation(C, S, 40003, 8080)
    c.handshake()
    c.send(True, "PA", http_request(host, host_header=header))
    c.send(False, "PA", b"HTTP/1.1 204 No Content\r\n\r\n")
    row = tcp_flow(flows_of(c.frames).flows, 8080)
    assert (row["http_host"], row["server_name"], row["name_source"]) == (
        host,
        expected,
        "http_host",
    )


def test_connect_through_a_proxy_then_client_hello() -> None:
    target = "secure.example.org"
    c = TcpConversation(C, S, 40004, 3128)
    c.handshake()
    c.send(True, "PA", http_request(f"{target}:443", method="CONNECT", target=f"{target}:443"))
    c.send(False, "PA", b"HTTP/1.1 200 Connection established\r\n\r\n")
    c.send(True, "PA", client_hello(target))
    row = tcp_flow(flows_of(c.frames).flows, 3128)
    assert row["connect_target"] == f"{target}:443"
    assert (row["server_name"], row["name_source"]) == (target, "connect")
    assert row["sni"] == target


@pytest.mark.parametrize("separate", [False, True], ids=["one-segment", "with-method-reply"])
def test_socks5_domain_target(separate: bool) -> None:
    request = socks5_request("db.example.com", 5432)
    c = TcpConversation(C, S, 40005, 1080)
    c.handshake()
    if separate:
        c.send(True, "PA", request[:3])
        c.send(False, "PA", b"\x05\x00")
        c.send(True, "PA", request[3:])
    else:
        c.send(True, "PA", request)
    c.send(False, "PA", b"\x05\x00\x00\x01" + bytes(6))
    row = tcp_flow(flows_of(c.frames).flows, 1080)
    assert row["socks_target"] == "db.example.com:5432"
    assert (row["server_name"], row["name_source"]) == ("db.example.com", "socks")


def test_socks4a_domain_target() -> None:
    c = TcpConversation(C, S, 40006, 1080)
    c.handshake()
    c.send(True, "PA", socks4a_request("update.example.net", 80, userid=b"agent"))
    c.send(False, "PA", b"\x00\x5a" + bytes(6))
    row = tcp_flow(flows_of(c.frames).flows, 1080)
    assert row["socks_target"] == "update.example.net:80"
    assert (row["server_name"], row["name_source"]) == ("update.example.net", "socks")


# ----------------------------------------------------------------------------- DNS


def udp_dns(
    ts: int, client: str, name: str, addr: str, ident: int, cnames: tuple[str, ...] = ()
) -> list[Frame]:
    """A query and its answer over UDP; the last name of ``cnames`` owns the A record."""
    owner = cnames[-1] if cnames else name
    return [
        (ts, udp_frame(client, RESOLVER, 30000 + ident, 53, dns_query(name, id=ident))),
        (
            ts + 1000,
            udp_frame(
                RESOLVER,
                client,
                53,
                30000 + ident,
                dns_response(name, [(owner, 1, addr, 60)], cnames, id=ident),
            ),
        ),
    ]


def syn(ts: int, client: str, server: str, cport: int, sport: int = 4122) -> Frame:
    return (ts, tcp_frame(client, server, cport, sport, "S"))


def test_dns_over_udp_names_a_later_flow() -> None:
    frames = [*udp_dns(BASE_TS, C, "relay.corp.example", S, 1), syn(BASE_TS + NS, C, S, 41000)]
    df = flows_of(frames).flows
    dns = df[df["server_port"] == 53].iloc[0]
    assert dns["dns_queries"] == ["relay.corp.example"]
    assert [(a["name"], a["type"], a["data"]) for a in dns["dns_answers"]] == [
        ("relay.corp.example", "A", S)
    ]
    row = tcp_flow(df, 4122)
    assert (row["server_name"], row["name_source"]) == ("relay.corp.example", "dns")


def _dns_over_tcp(client_bytes: list[bytes], server_bytes: list[bytes]) -> list[Frame]:
    c = TcpConversation(C, RESOLVER, 42000, 53)
    c.handshake()
    for chunk in client_bytes:
        c.send(True, "PA", chunk)
    for chunk in server_bytes:
        c.send(False, "PA", chunk)
    c.close()
    return c.frames


def test_dns_over_tcp_two_messages_in_one_segment() -> None:
    queries = dns_tcp(dns_query("a.example", id=1), dns_query("b.example", id=2))
    answers = dns_tcp(
        dns_response("a.example", [("a.example", 1, "192.0.2.1", 60)], id=1),
        dns_response("b.example", [("b.example", 1, "192.0.2.2", 60)], id=2),
    )
    frames = _dns_over_tcp([queries], [answers])
    frames.append(syn(frames[-1][0] + NS, C, "192.0.2.2", 41001))
    df = flows_of(frames).flows
    dns = tcp_flow(df, 53)
    assert dns["dns_queries"] == ["a.example", "b.example"]
    assert [a["data"] for a in dns["dns_answers"]] == ["192.0.2.1", "192.0.2.2"]
    assert tcp_flow(df, 4122)["server_name"] == "b.example"


def test_dns_over_tcp_one_message_split_over_two_segments() -> None:
    answer = dns_tcp(dns_response("c.example", [("c.example", 1, "192.0.2.3", 60)], id=3))
    frames = _dns_over_tcp([dns_tcp(dns_query("c.example", id=3))], [answer[:9], answer[9:]])
    df = flows_of(frames).flows
    dns = tcp_flow(df, 53)
    assert [a["data"] for a in dns["dns_answers"]] == ["192.0.2.3"]


def test_dns_names_are_time_aware() -> None:
    t = BASE_TS
    frames = [
        syn(t, C, S, 41000),  # before any answer
        *udp_dns(t + 10 * NS, C, "first.example", S, 1),
        syn(t + 20 * NS, C, S, 41001),
        *udp_dns(t + 30 * NS, C, "second.example", S, 2),
        syn(t + 40 * NS, C, S, 41002),
    ]
    df = flows_of(frames).flows
    names = {
        int(r["client_port"]): (r["server_name"], r["name_source"])
        for _, r in df[df["server_port"] == 4122].iterrows()
    }
    assert names[41000] == (pd.NA, "none")
    assert names[41001] == ("first.example", "dns")
    assert names[41002] == ("second.example", "dns")


def test_dns_prefers_what_this_client_resolved() -> None:
    other, third = "10.40.0.11", "10.40.0.12"
    t = BASE_TS
    frames = [
        *udp_dns(t, C, "mine.example", S, 1),
        *udp_dns(t + NS, other, "theirs.example", S, 2),
        syn(t + 2 * NS, C, S, 41000),
        syn(t + 2 * NS + 1, third, S, 41000),
    ]
    df = flows_of(frames).flows
    assert tcp_flow(df, 4122, C)["server_name"] == "mine.example"
    assert tcp_flow(df, 4122, third)["server_name"] == "theirs.example"


def test_cname_chain_maps_back_to_the_asked_name() -> None:
    chain = ("www.edge.example.net", "e7.cdn.example")
    frames = [
        *udp_dns(BASE_TS, C, "www.example.com", S, 5, chain),
        syn(BASE_TS + NS, C, S, 41000, 443),
    ]
    df = flows_of(frames).flows
    dns = df[df["server_port"] == 53].iloc[0]
    assert [a["type"] for a in dns["dns_answers"]] == ["CNAME", "CNAME", "A"]
    row = tcp_flow(df, 443)
    assert (row["server_name"], row["name_source"]) == ("www.example.com", "dns")


def test_sni_wins_over_dns() -> None:
    frames = udp_dns(BASE_TS, C, "dns-name.example", S, 1)
    frames += [(ts + NS, f) for ts, f in tls_conversation(client_hello("sni-name.example"), 1)]
    row = tcp_flow(flows_of(frames).flows, 443)
    assert (row["server_name"], row["name_source"]) == ("sni-name.example", "sni")


def test_dns_map_directly() -> None:
    m = DnsMap()
    m.add(client=1, addr=99, ts=100, name="a")
    m.add(client=2, addr=99, ts=200, name="b")
    m.add(client=1, addr=99, ts=50, name="early")  # arrives late, sorted into place
    assert m.lookup(1, 99, 10) is None
    assert m.lookup(1, 99, 60) == "early"
    assert m.lookup(1, 99, 300) == "a"
    assert m.lookup(3, 99, 150) == "a"
    assert m.lookup(3, 99, 250) == "b"
    assert m.lookup(3, 98, 250) is None


def test_sni_across_the_sequence_number_wrap() -> None:
    name = "wrap.example.com"
    hello = client_hello(name)
    c = TcpConversation(C, S, 40000, 443, client_isn=0xFFFF_FFFF - 40)
    c.handshake()
    for start in range(0, len(hello), 60):
        c.send(True, "PA", hello[start : start + 60])
    row = tcp_flow(flows_of(c.frames).flows, 443)
    assert row["sni"] == name


def test_sni_from_a_client_hello_split_across_two_batches() -> None:
    name = "batches.example.com"
    frames = tls_conversation(client_hello(name), 2)
    builder = FlowBuilder()
    builder.add_batch(batch_of(frames[:4]))
    builder.add_batch(batch_of(frames[4:]))
    row = tcp_flow(builder.result([]).flows, 443)
    assert row["sni"] == name


def test_http_request_split_over_three_segments() -> None:
    request = http_request("split.example.com")
    c = TcpConversation(C, S, 40007, 80)
    c.handshake()
    for piece in (request[:7], request[7:25], request[25:]):
        c.send(True, "PA", piece)
    row = tcp_flow(flows_of(c.frames).flows, 80)
    assert (row["http_host"], row["name_source"]) == ("split.example.com", "http_host")


def test_socks5_with_username_and_password() -> None:
    request = socks5_request("auth.example.com", 443, auth=(b"user", b"secret"))
    greeting_end = 2 + request[1]
    auth_end = greeting_end + 3 + len(b"user") + len(b"secret")
    c = TcpConversation(C, S, 40008, 1080)
    c.handshake()
    c.send(True, "PA", request[:greeting_end])
    c.send(False, "PA", b"\x05\x02")
    c.send(True, "PA", request[greeting_end:auth_end])
    c.send(False, "PA", b"\x01\x00")
    c.send(True, "PA", request[auth_end:])
    row = tcp_flow(flows_of(c.frames).flows, 1080)
    assert (row["socks_target"], row["server_name"]) == ("auth.example.com:443", "auth.example.com")
