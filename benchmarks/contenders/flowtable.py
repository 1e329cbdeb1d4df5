"""Bidirectional flow table shared by the dpkt and scapy contenders so both do identical work."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any

TCP_SYN = 0x02
TCP_ACK = 0x10
TLS_HANDSHAKE = 0x16
# A ClientHello record is at most 16 KiB plus the 5-byte header; anything longer is not one.
TLS_MAX_RECORD = 16384 + 5
HTTP_METHODS = (b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC")

# Endpoint addresses are whatever the decoder hands out (bytes for dpkt, str for scapy);
# they are only turned into text when the flows are written.
Addr = Any
FlowKey = tuple[int, int, Addr, int, Addr, int]


class Flow:
    """One bidirectional conversation; the first packet's sender is the client."""

    __slots__ = (
        "proto",
        "vlan",
        "client_ip",
        "client_port",
        "server_ip",
        "server_port",
        "packets_c2s",
        "packets_s2c",
        "bytes_c2s",
        "bytes_s2c",
        "start",
        "end",
        "sni",
        "http_host",
        "dns_queries",
        "dns_answers",
        "tls_buf",
        "tls_next_seq",
        "tls_done",
    )

    def __init__(
        self,
        proto: int,
        vlan: int,
        client: tuple[Addr, int],
        server: tuple[Addr, int],
        ts: float,
    ) -> None:
        self.proto = proto
        self.vlan = vlan
        self.client_ip, self.client_port = client
        self.server_ip, self.server_port = server
        self.packets_c2s = self.packets_s2c = 0
        self.bytes_c2s = self.bytes_s2c = 0
        self.start = self.end = ts
        self.sni: str | None = None
        self.http_host: str | None = None
        self.dns_queries: list[str] = []
        self.dns_answers: list[str] = []
        self.tls_buf: bytes | None = None
        self.tls_next_seq = 0
        # Only the opening client record can hold the ClientHello, so one look per flow is enough.
        self.tls_done = proto != 6


class FlowTable:
    """Flows keyed by (proto, vlan, lower endpoint, higher endpoint) plus name statistics."""

    def __init__(self) -> None:
        self.flows: dict[FlowKey, Flow] = {}
        self.packets = 0
        self.non_ip = 0
        self.decode_errors = 0
        self.client_hellos_with_sni = 0
        self.dns_query_packets = 0
        self.sni_names: set[str] = set()
        self.dns_qnames: set[str] = set()
        self.http_hosts: set[str] = set()

    def packet(
        self,
        ts: float,
        vlan: int,
        proto: int,
        src: Addr,
        sport: int,
        dst: Addr,
        dport: int,
        length: int,
        tcp_flags: int = 0,
    ) -> tuple[Flow, bool]:
        """Account one IP packet; return its flow and whether it travels client to server."""
        if (src, sport) <= (dst, dport):
            key: FlowKey = (proto, vlan, src, sport, dst, dport)
        else:
            key = (proto, vlan, dst, dport, src, sport)
        flow = self.flows.get(key)
        if flow is None:
            # A SYN-ACK seen first means the capture missed the SYN: its receiver is the client.
            if tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
                flow = Flow(proto, vlan, (dst, dport), (src, sport), ts)
            else:
                flow = Flow(proto, vlan, (src, sport), (dst, dport), ts)
            self.flows[key] = flow
        c2s = src == flow.client_ip and sport == flow.client_port
        if c2s:
            flow.packets_c2s += 1
            flow.bytes_c2s += length
        else:
            flow.packets_s2c += 1
            flow.bytes_s2c += length
        flow.end = ts
        return flow, c2s

    def first_tls_record(self, flow: Flow, seq: int, payload: bytes) -> bytes | None:
        """Collect the client's first TLS record across in-order segments; return it when whole.

        Only in-sequence continuation is handled (no reordering, no retransmission repair):
        enough for a clean capture, and the same shortcut for every contender.
        """
        buf = flow.tls_buf
        if buf is None:
            if payload[0] != TLS_HANDSHAKE or len(payload) < 6 or payload[5] != 1:
                flow.tls_done = True
                return None
            buf = payload
        elif seq == flow.tls_next_seq:
            buf += payload
        else:
            flow.tls_done = True
            return None
        need = 5 + int.from_bytes(buf[3:5], "big")
        if len(buf) >= need:
            flow.tls_done = True
            flow.tls_buf = None
            return buf[:need]
        if need > TLS_MAX_RECORD:
            flow.tls_done = True
            return None
        flow.tls_buf = buf
        flow.tls_next_seq = (seq + len(payload)) & 0xFFFFFFFF
        return None

    def add_sni(self, flow: Flow, name: str) -> None:
        flow.sni = name
        self.client_hellos_with_sni += 1
        self.sni_names.add(name.lower())

    def add_http_host(self, flow: Flow, host: str) -> None:
        if flow.http_host is None:
            flow.http_host = host
        self.http_hosts.add(host.lower())

    def add_dns(
        self, flow: Flow, is_query: bool, qnames: Iterable[str], answers: Iterable[str]
    ) -> None:
        for name in qnames:
            name = name.rstrip(".")
            if name not in flow.dns_queries:
                flow.dns_queries.append(name)
            if is_query:
                self.dns_qnames.add(name.lower())
        if is_query:
            self.dns_query_packets += 1
        for answer in answers:
            answer = answer.rstrip(".")
            if answer not in flow.dns_answers:
                flow.dns_answers.append(answer)

    def summary(self, tool: str) -> dict[str, Any]:
        by_proto: dict[int, int] = {}
        for key in self.flows:
            by_proto[key[0]] = by_proto.get(key[0], 0) + 1
        return {
            "tool": tool,
            "packets": self.packets,
            "non_ip": self.non_ip,
            "decode_errors": self.decode_errors,
            "flows_total": len(self.flows),
            "flows_tcp": by_proto.get(6, 0),
            "flows_udp": by_proto.get(17, 0),
            "flows_icmp": by_proto.get(1, 0) + by_proto.get(58, 0),
            "client_hellos_with_sni": self.client_hellos_with_sni,
            "distinct_sni": len(self.sni_names),
            "dns_queries": self.dns_query_packets,
            "distinct_dns_qnames": len(self.dns_qnames),
            "distinct_http_hosts": len(self.http_hosts),
        }

    def write_jsonl(self, out: IO[str], addr_text: Callable[[Addr], str]) -> None:
        """Write one JSON object per flow, with the field names dsaudit uses where they overlap."""
        names = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
        dump = json.dumps
        for flow in self.flows.values():
            record = {
                "proto": names.get(flow.proto, str(flow.proto)),
                "client_ip": addr_text(flow.client_ip),
                "client_port": flow.client_port,
                "server_ip": addr_text(flow.server_ip),
                "server_port": flow.server_port,
                "vlan": flow.vlan,
                "packets_c2s": flow.packets_c2s,
                "packets_s2c": flow.packets_s2c,
                "bytes_c2s": flow.bytes_c2s,
                "bytes_s2c": flow.bytes_s2c,
                "start": flow.start,
                "end": flow.end,
                "sni": flow.sni,
                "http_host": flow.http_host,
                "dns_queries": flow.dns_queries,
                "dns_answers": flow.dns_answers,
            }
            out.write(dump(record))
            out.write("\n")


def http_host_from_headers(payload: bytes) -> str | None:
    """Host header of a request head, matched case-insensitively; a fallback for library parsers."""
    head_end = payload.find(b"\r\n\r\n")
    head = payload if head_end < 0 else payload[:head_end]
    for line in head.split(b"\r\n")[1:]:
        if line[:5].lower() == b"host:":
            return line[5:].strip().decode("latin-1")
    return None


def finish(table: FlowTable, tool: str, output: str, addr_text: Callable[[Addr], str]) -> None:
    """Write the flows, then print the one-line JSON summary the harness reads from stdout."""
    with open(output, "w", encoding="utf-8", buffering=1 << 20) as out:
        table.write_jsonl(out, addr_text)
    sys.stdout.write("summary " + json.dumps(table.summary(tool), sort_keys=True) + "\n")
