"""Naming: peer names from TLS SNI, HTTP Host, proxy CONNECT, SOCKS and the capture's DNS answers.

The flow kernel hands over only the payload packets worth reading (the start of each TCP
stream, the server's answer to a ClientHello, DNS, QUIC Initials, ICMP errors). This module
reassembles just enough of each stream to run the protocol parsers, and keeps a time-aware
map of DNS answers so that a later flow to an answered address carries the name its client
resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dsaudit.decode import dns as dns_dec
from dsaudit.decode import http as http_dec
from dsaudit.decode import quic as quic_dec
from dsaudit.decode import socks as socks_dec
from dsaudit.decode import tls as tls_dec
from dsaudit.decode.packet_kernel import (
    C_DST_HI,
    C_DST_LO,
    C_ICMP_CODE,
    C_ICMP_REST,
    C_ICMP_TYPE,
    C_L3,
    C_PAY_LEN,
    C_PAY_OFF,
    C_SEQ,
    C_SRC_HI,
    C_SRC_LO,
    C_TS,
    C_VLAN0,
    C_VLAN1,
    L3_IPV4,
)
from dsaudit.errors import DecodeError
from dsaudit.flows.addresses import addr_key, join_host_port, key_from_packed
from dsaudit.flows.table_kernel import (
    EV_ICMP_ERROR,
    EV_PAYLOAD,
    F_A_PORT,
    F_B_PORT,
    F_LAST_TS,
    F_PROTO,
    MAX_HELLO,
)
from dsaudit.naming.dns_map import DnsDigest, DnsMap

MAX_SEGMENTS = 64  # per direction; the kernel already caps what it sends
# The most of a stream reassembled: the kernel stops handing over a ClientHello at this size.
MAX_STREAM = MAX_HELLO
DNS_CACHE_SIZE = 8192


@dataclass(slots=True)
class FlowPayload:
    """What the payload of one flow revealed."""

    sni: str | None = None
    alpn: tuple[str, ...] = ()
    http_host: str | None = None
    http_method: str | None = None
    connect: str | None = None
    connect_status: int | None = None
    socks: str | None = None
    dns_queries: list[str] = field(default_factory=list)
    dns_answers: list[tuple[str, int, str | None, int]] = field(default_factory=list)
    dns_rcodes: list[int] = field(default_factory=list)
    icmp_errors: list[dict[str, object]] = field(default_factory=list)
    starttls: bool = False
    # The server's answer to the ClientHello: an alert ("fatal handshake_failure", or the
    # client's "fatal unknown_ca from the client" refusing that answer), and the issuer of the
    # certificate the server presented (in clear only before TLS 1.3).
    tls_alert: str | None = None
    tls_server_issuer: str | None = None
    # Largest client segment read, for telling a path-MTU stall from a lost ClientHello.
    max_segment_c2s: int = 0
    # Reassembly state, dropped once the flow is named.
    segs: tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]] = field(
        default_factory=lambda: ([], [])
    )
    hello_seq: int | None = None
    hello_done: bool = False  # the ClientHello is read; only the server's answer is left
    text_done: bool = False
    dns_consumed: list[int] = field(default_factory=lambda: [0, 0])
    quic: list[tuple[int, bytes]] = field(default_factory=list)
    done: bool = False


def _lowest_seq(segs: list[tuple[int, bytes]]) -> int:
    """The lowest sequence number among segments (modulo 2**32, relative to the first)."""
    base = segs[0][0]
    if len(segs) == 1:  # most streams name their peer in their first segment
        return base & 0xFFFFFFFF
    rel = min(((s - base + 0x80000000) & 0xFFFFFFFF) - 0x80000000 for s, _ in segs)
    return (base + rel) & 0xFFFFFFFF


def _assemble(segs: list[tuple[int, bytes]], start: int | None = None) -> bytes:
    """Contiguous bytes of a TCP direction from ``start`` (or its lowest sequence number)."""
    if not segs:
        return b""
    if len(segs) == 1 and (start is None or start == segs[0][0]):
        return bytes(segs[0][1])  # one segment from where it starts: nothing to order
    base = segs[0][0] if start is None else start
    rel = sorted((((s - base + 0x80000000) & 0xFFFFFFFF) - 0x80000000, d) for s, d in segs)
    if start is None:
        origin = rel[0][0]
    else:
        origin = 0
    out = bytearray()
    pos = origin
    for r, data in rel:
        if r > pos:
            break
        end = r + len(data)
        if end > pos:
            out += data[pos - r :]
            pos = end
        if len(out) >= MAX_STREAM:
            break
    return bytes(out)


class Namer:
    """Consumes naming events batch by batch and keeps per-flow findings."""

    def __init__(self) -> None:
        self.flows: dict[int, FlowPayload] = {}
        self.dns = DnsMap()
        self.icmp_errors: list[tuple[int, tuple[int, ...], dict[str, object]]] = []
        self._dns_cache: dict[bytes, DnsDigest] = {}
        # Bytes held for TCP reassembly, and the flows holding them, oldest first.
        self.buffered = 0
        self.max_buffered = 64 << 20
        self.buffers_dropped = 0
        self._buffering: dict[int, None] = {}
        self.decode_failures = 0

    def remap(self, mapping: np.ndarray) -> None:
        """Follow the flow table's compaction: old flow index -> new (-1: evicted)."""
        moved = mapping.tolist()
        for f, p in self.flows.items():
            if moved[f] < 0:
                self.buffered -= sum(len(d) for side in p.segs for _, d in side)
        self.flows = {moved[f]: p for f, p in self.flows.items() if moved[f] >= 0}
        self._buffering = {moved[f]: None for f in self._buffering if moved[f] >= 0}

    def _payload(self, f: int) -> FlowPayload:
        p = self.flows.get(f)
        if p is None:
            p = self.flows[f] = FlowPayload()
        return p

    def handle(self, events: np.ndarray, rec: np.ndarray, buf: np.ndarray, fs: np.ndarray) -> None:
        """Read the payload of every event of one batch (before ``buf`` is dropped)."""
        if not len(events):
            return
        rows = events[:, 2]
        # Gather the per-event columns once: numpy scalar indexing per event is slow.
        pay_off = rec[rows, C_PAY_OFF].tolist()
        pay_end = (rec[rows, C_PAY_OFF] + rec[rows, C_PAY_LEN]).tolist()
        seqs = rec[rows, C_SEQ].tolist()
        fl = events[:, 0]
        protos = fs[fl, F_PROTO].tolist()
        dns = ((fs[fl, F_A_PORT] == 53) | (fs[fl, F_B_PORT] == 53)).tolist()
        raw = buf.data
        for i, (f, d, r, kind) in enumerate(events.tolist()):
            if kind == EV_PAYLOAD:
                data = bytes(raw[pay_off[i] : pay_end[i]])
                if protos[i] == 6:
                    self._tcp(f, d, seqs[i], data, rec, r, dns[i])
                elif dns[i]:
                    self._dns_message(self._payload(f), data, rec, r)
                else:
                    self._quic(f, data)
            elif kind == EV_ICMP_ERROR:
                self._icmp_error(rec, r, buf)

    # -- TCP ---------------------------------------------------------------------
    def _tcp(
        self, f: int, d: int, seq: int, data: bytes, rec: np.ndarray, r: int, dns: bool
    ) -> None:
        p = self._payload(f)
        if d == 0 and p.hello_done and p.tls_alert is None:
            # The client refusing the server's answer (a certificate it does not trust) ends
            # the handshake as surely as a server's alert; the flow says which side sent it.
            alert = tls_dec.clear_alert(data)
            if alert is not None:
                p.tls_alert = f"{alert} from the client"
        if p.done:
            return
        segs = p.segs[d]
        if len(segs) >= MAX_SEGMENTS:
            return
        segs.append((seq, data))
        if d == 0 and len(data) > p.max_segment_c2s:
            p.max_segment_c2s = len(data)
        self.buffered += len(data)
        self._buffering[f] = None
        if self.buffered > self.max_buffered:
            self._shed_buffers(keep=f)
        if dns:
            self._dns_tcp(p, d, rec, r)
            return
        if d == 1:
            if p.connect is not None and p.connect_status is None:
                try:
                    p.connect_status = http_dec.parse_http_response_status(_assemble(segs))
                except DecodeError:
                    p.connect_status = -1
            if p.hello_done:
                self._server_flight(f, p)
            return
        if p.hello_done:
            return
        if p.hello_seq is None:
            first = _lowest_seq(segs)
            if tls_dec.looks_like_client_hello(_assemble(segs)[:6]):
                p.hello_seq = first  # at the stream's start, even if it came in pieces
            elif tls_dec.looks_like_client_hello(data):
                p.hello_seq = seq  # after a STARTTLS exchange
                p.starttls = True
        if p.hello_seq is not None:
            try:
                hello = tls_dec.parse_client_hello(_assemble(segs, p.hello_seq))
            except DecodeError:
                self.decode_failures += 1
                p.done = True  # not a ClientHello after all: nothing more to learn here
                self._release(f, p)
                return
            if hello is not None:
                p.sni = hello.sni
                p.alpn = hello.alpn
                p.hello_done = True
                # The client's bytes are read; the server's answer (already here, or still to
                # come from the kernel) may hold an alert or a certificate.
                self.buffered -= sum(len(d) for _, d in segs)
                segs.clear()
                if p.segs[1]:
                    self._server_flight(f, p)
                else:
                    self._buffering.pop(f, None)
            return
        if not p.text_done:
            self._text(p, _assemble(segs))

    def _server_flight(self, f: int, p: FlowPayload) -> None:
        """Read the clear start of the server's TLS stream; done at an alert or encryption."""
        stream = _assemble(p.segs[1])
        if p.connect is not None:
            # The proxy's answer to CONNECT comes first; the TLS records follow its header.
            end = stream.find(b"\r\n\r\n")
            if end < 0:
                return
            stream = stream[end + 4 :]
        if not stream:
            return
        flight = tls_dec.parse_server_flight(stream)
        if flight.issuer is not None:
            p.tls_server_issuer = flight.issuer
        if flight.alert is not None:
            p.tls_alert = flight.alert
        if flight.complete or len(p.segs[1]) >= MAX_SEGMENTS:
            p.done = True
            self._release(f, p)

    def _text(self, p: FlowPayload, stream: bytes) -> None:
        if not stream:
            return
        if http_dec.looks_like_http_request(stream):
            try:
                req = http_dec.parse_http_request(stream)
            except DecodeError:
                p.text_done = True
                return
            if req is None:
                return
            self._finish_text(p)
            p.http_method = req.method
            p.http_host = req.host
            target = http_dec.connect_target(req)
            if target is not None:
                p.connect = join_host_port(*target)
            return
        if socks_dec.looks_like_socks(stream):
            try:
                tgt = socks_dec.parse_socks_client(stream)
            except DecodeError:
                p.text_done = True
                return
            if tgt is not None:
                p.socks = join_host_port(tgt.host, tgt.port)
                self._finish_text(p)

    def _finish_text(self, p: FlowPayload) -> None:
        p.text_done = True
        # Keep collecting only what can still name the flow: a ClientHello after a
        # CONNECT or STARTTLS, and the proxy's answer to a CONNECT.
        self.buffered -= sum(len(d) for _, d in p.segs[0])
        p.segs[0].clear()
        if p.connect is None:
            self.buffered -= sum(len(d) for _, d in p.segs[1])
            p.segs[1].clear()

    def _release(self, f: int, p: FlowPayload) -> None:
        self.buffered -= sum(len(d) for side in p.segs for _, d in side)
        p.segs = ([], [])
        self._buffering.pop(f, None)

    def release_idle(self, fs: np.ndarray, before_ns: int) -> None:
        """Free the reassembly buffers of flows silent since ``before_ns``: they are over."""
        if not self._buffering:
            return
        held = np.fromiter(self._buffering, dtype=np.int64, count=len(self._buffering))
        idle = held[fs[held, F_LAST_TS] < before_ns]
        for f in idle.tolist():
            p = self.flows.get(f)
            if p is not None:
                self._release(f, p)
                p.done = True
            else:
                self._buffering.pop(f, None)

    def _shed_buffers(self, keep: int) -> None:
        """Past the reassembly budget, drop the buffers of the longest-waiting flows."""
        for f in list(self._buffering):
            if self.buffered <= self.max_buffered // 2:
                break
            if f == keep:
                continue
            p = self.flows.get(f)
            if p is not None:
                self._release(f, p)
                p.done = True
                self.buffers_dropped += 1

    # -- DNS -----------------------------------------------------------------------
    def _dns_tcp(self, p: FlowPayload, d: int, rec: np.ndarray, r: int) -> None:
        stream = _assemble(p.segs[d])
        done = p.dns_consumed[d]
        if len(stream) <= done:
            return
        try:
            messages, used = dns_dec.split_dns_tcp(stream[done:])
        except DecodeError:
            self.decode_failures += 1
            return
        p.dns_consumed[d] = done + used
        for msg in messages:
            self._dns_message(p, msg, rec, r)

    def _quic(self, f: int, data: bytes) -> None:
        p = self._payload(f)
        if p.done:
            return
        try:
            pieces = quic_dec.quic_initial_crypto(data)
        except DecodeError:
            pieces = None
        if not pieces:
            return
        p.quic.extend(pieces)
        try:
            hello = quic_dec.client_hello_from_crypto(p.quic)
        except DecodeError:
            p.done = True
            return
        if hello is not None:
            p.sni = hello.sni
            p.alpn = hello.alpn
            p.done = True
            p.quic = []

    def _digest(self, data: bytes) -> DnsDigest | None:
        """What one DNS message says, cached: the same query recurs with only its id changed."""
        key = data[2:]
        hit = self._dns_cache.get(key)
        if hit is not None:
            return hit
        try:
            digest = DnsDigest.from_wire(data)
        except DecodeError:
            self.decode_failures += 1
            return None
        if len(self._dns_cache) >= DNS_CACHE_SIZE:
            self._dns_cache.clear()
        self._dns_cache[key] = digest
        return digest

    def _dns_message(self, p: FlowPayload, data: bytes, rec: np.ndarray, r: int) -> None:
        msg = self._digest(data)
        if msg is None:
            return
        for name in msg.queries:
            if name not in p.dns_queries and len(p.dns_queries) < 64:
                p.dns_queries.append(name)
        if msg.rcode < 0:
            return
        p.dns_rcodes.append(msg.rcode)
        room = 256 - len(p.dns_answers)
        if room > 0:
            p.dns_answers.extend(msg.answers[:room])
        if msg.addresses:
            ts = int(rec[r, C_TS])
            # The client is whoever receives the response.
            client = addr_key(int(rec[r, C_DST_HI]), int(rec[r, C_DST_LO]))
            for addr, name in msg.addresses:
                self.dns.add(client, addr, ts, name)

    # -- ICMP errors -----------------------------------------------------------------
    def _icmp_error(self, rec: np.ndarray, r: int, buf: np.ndarray) -> None:
        off = int(rec[r, C_PAY_OFF])
        quoted = buf[off : off + int(rec[r, C_PAY_LEN])].tobytes()
        itype = int(rec[r, C_ICMP_TYPE])
        code = int(rec[r, C_ICMP_CODE])
        v4 = int(rec[r, C_L3]) == L3_IPV4
        key = _quoted_key(quoted, v4)
        if key is None:
            return
        info: dict[str, object] = {
            "type": itype,
            "code": code,
            "from": addr_key(int(rec[r, C_SRC_HI]), int(rec[r, C_SRC_LO])),
            "ts": int(rec[r, C_TS]),
            "family": 4 if v4 else 6,
        }
        if v4 and itype == 3 and code == 4:
            info["mtu"] = int(rec[r, C_ICMP_REST]) & 0xFFFF
        elif not v4 and itype == 2:
            info["mtu"] = int(rec[r, C_ICMP_REST])
        vlan = (int(rec[r, C_VLAN0]), int(rec[r, C_VLAN1]))
        self.icmp_errors.append((int(rec[r, C_TS]), vlan + key, info))


def _quoted_key(quoted: bytes, v4: bool) -> tuple[int, ...] | None:
    """(proto, src, sport, dst, dport) of the packet an ICMP error quotes."""
    if v4:
        if len(quoted) < 20 or quoted[0] >> 4 != 4:
            return None
        ihl = (quoted[0] & 0x0F) * 4
        proto = quoted[9]
        src = key_from_packed(quoted[12:16])
        dst = key_from_packed(quoted[16:20])
        l4 = quoted[ihl:]
    else:
        if len(quoted) < 40 or quoted[0] >> 4 != 6:
            return None
        proto = quoted[6]
        src = key_from_packed(quoted[8:24])
        dst = key_from_packed(quoted[24:40])
        l4 = quoted[40:]
    if src is None or dst is None:
        return None
    if proto in (6, 17) and len(l4) >= 4:
        sport = int.from_bytes(l4[0:2], "big")
        dport = int.from_bytes(l4[2:4], "big")
    else:
        sport = dport = 0
    return (proto, src, sport, dst, dport)
