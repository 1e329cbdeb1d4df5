# cython: language_level=3, boundscheck=True, wraparound=False, initializedcheck=True
"""Naming's per-event bookkeeping, compiled: per-flow findings, TCP reassembly and the DNS map.

Hand-compiled because it runs once per payload event the flow kernel hands over (tens of
thousands per million packets), and in Python the bookkeeping around the compiled parsers
(objects per flow, segment lists, cache and map updates, numpy reads per event) cost more
than the parsing itself. The record, flow and buffer columns are read through typed
memoryviews with bounds checking left on, and every slice of the capture buffer is clamped
to its length before it is copied.

The flow kernel hands over only the payload packets worth reading (the start of each TCP
stream, the server's answer to a ClientHello, DNS, QUIC Initials, ICMP errors). This module
reassembles just enough of each stream to run the protocol parsers, and keeps a time-aware
map of DNS answers so that a later flow to an answered address carries the name its client
resolved. dsaudit.naming.namer is the import path of :class:`Namer` and :class:`FlowPayload`,
dsaudit.naming.dns_map that of :class:`DnsMap`.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint64_t

from bisect import bisect_right as _bisect_right
from bisect import insort as _insort

import numpy as np

from dsaudit.decode.packet_kernel cimport (
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

from dsaudit.decode import dns as _dns
from dsaudit.decode import http as _http
from dsaudit.decode import quic as _quic
from dsaudit.decode import socks as _socks
from dsaudit.decode import tls as _tls
from dsaudit.decode import tls_wire as _tls_wire
from dsaudit.decode.dns_wire import digest_wire as _digest_wire
from dsaudit.errors import DecodeError
from dsaudit.flows import table_kernel as _table
from dsaudit.flows.addresses import join_host_port as _join_host_port
from dsaudit.flows.addresses import key_from_packed as _key_from_packed
from dsaudit.naming.dns_digest import DnsDigest

cdef enum:
    MAX_SEGMENTS = 64  # per direction; the kernel already caps what it sends
    DNS_CACHE_SIZE = 8192
    MAX_QUERIES = 64  # per flow
    MAX_ANSWERS = 256  # per flow
    CONTENT_ALERT = 21  # a TLS alert record's content type
    MAX_NAMES_PER_ADDRESS = 16

# The flow table's columns and event kinds (its kernel has no .pxd to cimport them from).
cdef Py_ssize_t EV_PAYLOAD = _table.EV_PAYLOAD
cdef Py_ssize_t EV_ICMP_ERROR = _table.EV_ICMP_ERROR
cdef Py_ssize_t F_A_PORT = _table.F_A_PORT
cdef Py_ssize_t F_B_PORT = _table.F_B_PORT
cdef Py_ssize_t F_PROTO = _table.F_PROTO
cdef Py_ssize_t F_LAST_TS = _table.F_LAST_TS
# The most of a stream reassembled: the kernel stops handing over a ClientHello at this size.
cdef Py_ssize_t MAX_STREAM = _table.MAX_HELLO


cdef bytes _slice(const uint8_t[:] buf, int64_t start, int64_t end):
    """A copy of ``buf[start:end]``, clamped to the buffer like a Python slice."""
    cdef int64_t size = buf.shape[0]
    if start < 0:
        start = 0
    if end > size:
        end = size
    if end <= start:
        return b""
    return PyBytes_FromStringAndSize(<const char *>&buf[start], end - start)


cdef inline object _addr_key(int64_t hi, int64_t lo):
    """The kernel's two signed 64-bit halves as one 128-bit key (as addresses.addr_key)."""
    return (<object>(<uint64_t>hi) << 64) | <object>(<uint64_t>lo)


cdef inline int64_t _rel(int64_t seq, int64_t base) noexcept:
    """``seq`` relative to ``base`` modulo 2**32, in [-2**31, 2**31)."""
    return ((seq - base + 0x80000000) & 0xFFFFFFFF) - 0x80000000


cdef int64_t _lowest_seq(list segs) except? -1:
    """The lowest sequence number among segments (modulo 2**32, relative to the first)."""
    cdef int64_t base = segs[0][0]
    if len(segs) == 1:  # most streams name their peer in their first segment
        return base & 0xFFFFFFFF
    cdef int64_t low = _rel(segs[1][0], base), r
    cdef tuple seg
    for seg in segs:
        r = _rel(seg[0], base)
        if r < low:
            low = r
    return (base + low) & 0xFFFFFFFF


cdef bytes _assemble(list segs, object start=None):
    """Contiguous bytes of a TCP direction from ``start`` (or its lowest sequence number)."""
    if not segs:
        return b""
    cdef tuple first = segs[0]
    if len(segs) == 1 and (start is None or start == first[0]):
        return bytes(first[1])  # one segment from where it starts: nothing to order
    cdef int64_t base = first[0] if start is None else start
    cdef tuple seg
    # Ties in sequence order fall back to comparing the bytes, as sorting the pairs does.
    cdef list rel = sorted([(_rel(seg[0], base), seg[1]) for seg in segs])
    cdef int64_t pos = rel[0][0] if start is None else 0
    cdef int64_t r, end
    cdef bytes data
    out = bytearray()
    for seg in rel:
        r = seg[0]
        data = seg[1]
        if r > pos:
            break
        end = r + len(data)
        if end > pos:
            out += data[pos - r :]
            pos = end
        if len(out) >= MAX_STREAM:
            break
    return bytes(out)


cdef Py_ssize_t _held(list segs):
    cdef Py_ssize_t total = 0
    cdef tuple seg
    for seg in segs:
        total += len(<bytes>seg[1])
    return total


cdef object _remember(object held, object ts, object name, Py_ssize_t *dropped):
    """``held`` (one (ts, name) pair, or a list of them oldest first) with (ts, name) added.

    Most addresses are answered once, so one answer stays a bare pair: no list per address.
    Counts in ``dropped`` the oldest answers let go past MAX_NAMES_PER_ADDRESS.
    """
    cdef tuple entry = (ts, name)
    cdef tuple only
    if held is None:
        return entry
    if type(held) is tuple:
        only = <tuple>held
        if only[0] <= ts:
            if only[1] == name:
                return held
            return [only, entry]
        return [entry, only]
    cdef list entries = <list>held
    cdef Py_ssize_t n = len(entries)
    cdef tuple last = entries[n - 1]
    if last[0] <= ts:
        if last[1] != name:
            entries.append(entry)
    else:
        _insort(entries, entry)
    n = len(entries)
    if n > MAX_NAMES_PER_ADDRESS:
        # An address answered with ever new names (or a crafted flood): the oldest
        # answers matter least for flows still to come.
        del entries[: n - MAX_NAMES_PER_ADDRESS]
        dropped[0] += 1
    return entries


cdef object _latest(object held, object ts):
    """The name of the latest answer at or before ``ts`` (ties: as a bisect of the pairs)."""
    if held is None:
        return None
    cdef tuple key = (ts, "\U0010ffff")
    if type(held) is tuple:
        return None if key < held else (<tuple>held)[1]
    cdef list entries = <list>held
    if not entries:
        return None
    cdef Py_ssize_t i = _bisect_right(entries, key)
    return entries[i - 1][1] if i else None


cdef class DnsMap:
    """Answered address -> name, per client and over time, following CNAME chains."""

    # (client, address) -> its answers, and address -> answers whichever client asked: one
    # (ts, name) pair, or a list of them oldest first.
    cdef dict _by_client
    cdef dict _by_addr
    cdef public Py_ssize_t max_entries
    cdef public Py_ssize_t evicted
    # Until the map first sheds, every address a client was told is also in _by_addr.
    cdef bint _shed_once

    def __cinit__(self, *args, **kwargs):
        self._by_client = {}
        self._by_addr = {}
        self._shed_once = False

    def __init__(self, max_entries=1_000_000):
        self.max_entries = max_entries
        self.evicted = 0

    def __len__(self):
        return len(self._by_addr)

    cpdef add(self, client, addr, ts, name):
        """Remember that ``client`` learnt at ``ts`` that ``name`` is at ``addr``."""
        if len(self._by_client) >= self.max_entries:
            self._shed()
        cdef tuple pair = (client, addr)
        cdef Py_ssize_t dropped = 0
        held = self._by_client.get(pair)
        now = _remember(held, ts, name, &dropped)
        if now is not held:
            self._by_client[pair] = now
        held = self._by_addr.get(addr)
        now = _remember(held, ts, name, &dropped)
        if now is not held:
            self._by_addr[addr] = now
        self.evicted += dropped

    cdef _shed(self):
        self._shed_once = True
        # Dicts keep insertion order: the first half are the longest-known pairs.
        cdef list pairs = list(self._by_client)[: len(self._by_client) // 2]
        for pair in pairs:
            del self._by_client[pair]
        cdef list addrs = list(self._by_addr)[: len(self._by_addr) // 2]
        for addr in addrs:
            del self._by_addr[addr]
        self.evicted += len(pairs)

    def addresses(self):
        """Every address some answer named: a flow to any other address has no DNS name."""
        if not self._shed_once:
            return set(self._by_addr)
        return set(self._by_addr) | {addr for _, addr in self._by_client}

    def lookup(self, client, addr, ts):
        """The name ``client`` resolved for ``addr`` most recently before ``ts``.

        Falls back to any client's answer (a capture on a resolver or a SPAN port
        often sees the answer go to a forwarder rather than to the host itself).
        """
        name = _latest(self._by_client.get((client, addr)), ts)
        if name is None:
            name = _latest(self._by_addr.get(addr), ts)
        return name


cdef class FlowPayload:
    """What the payload of one flow revealed."""

    cdef public object sni
    cdef public tuple alpn
    cdef public object http_host
    cdef public object http_method
    cdef public object connect
    cdef public object connect_status
    cdef public object socks
    cdef public list dns_queries
    cdef public list dns_answers
    cdef public list dns_rcodes
    cdef public bint starttls
    # The server's answer to the ClientHello: an alert ("fatal handshake_failure", or the
    # client's "fatal unknown_ca from the client" refusing that answer), and the issuer of the
    # certificate the server presented (in clear only before TLS 1.3).
    cdef public object tls_alert
    cdef public object tls_server_issuer
    # Largest client segment read, for telling a path-MTU stall from a lost ClientHello.
    cdef public Py_ssize_t max_segment_c2s
    # Reassembly state, dropped once the flow is named; None until the flow needs it (most
    # flows are named by their first payload packet, or are DNS).
    cdef public tuple segs
    cdef public object hello_seq
    cdef public bint hello_done  # the ClientHello is read; only the server's answer is left
    cdef public bint text_done
    cdef public list dns_consumed
    cdef public list quic
    cdef public bint done

    def __cinit__(self):
        # Only the mutable defaults: the object fields start as None, the flags false.
        self.alpn = ()
        self.dns_queries = []
        self.dns_answers = []
        self.dns_rcodes = []

    def __init__(
        self,
        sni=None,
        alpn=(),
        http_host=None,
        http_method=None,
        connect=None,
        connect_status=None,
        socks=None,
        dns_queries=None,
        dns_answers=None,
        dns_rcodes=None,
        starttls=False,
        tls_alert=None,
        tls_server_issuer=None,
        max_segment_c2s=0,
        segs=None,
        hello_seq=None,
        hello_done=False,
        text_done=False,
        dns_consumed=None,
        quic=None,
        done=False,
    ):
        self.sni = sni
        self.alpn = alpn
        self.http_host = http_host
        self.http_method = http_method
        self.connect = connect
        self.connect_status = connect_status
        self.socks = socks
        if dns_queries is not None:
            self.dns_queries = dns_queries
        if dns_answers is not None:
            self.dns_answers = dns_answers
        if dns_rcodes is not None:
            self.dns_rcodes = dns_rcodes
        self.starttls = starttls
        self.tls_alert = tls_alert
        self.tls_server_issuer = tls_server_issuer
        self.max_segment_c2s = max_segment_c2s
        self.segs = segs
        self.hello_seq = hello_seq
        self.hello_done = hello_done
        self.text_done = text_done
        self.dns_consumed = dns_consumed
        self.quic = quic
        self.done = done

    def replace(self, **changes):
        """A copy with ``changes``, as ``dataclasses.replace`` copies (lists are shared)."""
        fields = {
            "sni": self.sni,
            "alpn": self.alpn,
            "http_host": self.http_host,
            "http_method": self.http_method,
            "connect": self.connect,
            "connect_status": self.connect_status,
            "socks": self.socks,
            "dns_queries": self.dns_queries,
            "dns_answers": self.dns_answers,
            "dns_rcodes": self.dns_rcodes,
            "starttls": self.starttls,
            "tls_alert": self.tls_alert,
            "tls_server_issuer": self.tls_server_issuer,
            "max_segment_c2s": self.max_segment_c2s,
            "segs": self.segs,
            "hello_seq": self.hello_seq,
            "hello_done": self.hello_done,
            "text_done": self.text_done,
            "dns_consumed": self.dns_consumed,
            "quic": self.quic,
            "done": self.done,
        }
        fields.update(changes)
        return FlowPayload(**fields)


cdef inline tuple _streams(FlowPayload p):
    """The flow's two segment lists (client's, server's), made on first use."""
    if p.segs is None:
        p.segs = ([], [])
    return p.segs


cdef Py_ssize_t _held_by(FlowPayload p):
    """Bytes the flow holds for reassembly."""
    if p.segs is None:
        return 0
    return _held(p.segs[0]) + _held(p.segs[1])


cdef class Namer:
    """Consumes naming events batch by batch and keeps per-flow findings."""

    cdef public dict flows
    # Any DnsMap; a subclass's add (a part recording its answers for the merge) is honoured.
    cdef public DnsMap dns
    cdef public list icmp_errors
    # Bytes held for TCP reassembly, and the flows holding them, oldest first.
    cdef public Py_ssize_t buffered
    cdef public Py_ssize_t max_buffered
    cdef public Py_ssize_t buffers_dropped
    cdef public Py_ssize_t decode_failures
    cdef dict _buffering
    cdef dict _dns_cache

    def __init__(self):
        self.flows = {}
        self.dns = DnsMap()
        self.icmp_errors = []
        self._dns_cache = {}
        self.buffered = 0
        self.max_buffered = 64 << 20
        self.buffers_dropped = 0
        self._buffering = {}
        self.decode_failures = 0

    def remap(self, mapping):
        """Follow the flow table's compaction: old flow index -> new (-1: evicted)."""
        cdef list moved = mapping.tolist()
        cdef FlowPayload p
        for f, p in self.flows.items():
            if moved[f] < 0:
                self.buffered -= _held_by(p)
        self.flows = {moved[f]: p for f, p in self.flows.items() if moved[f] >= 0}
        self._buffering = {moved[f]: None for f in self._buffering if moved[f] >= 0}

    cdef FlowPayload _payload(self, Py_ssize_t f):
        cdef object found = self.flows.get(f)
        cdef FlowPayload p
        if found is None:
            p = FlowPayload.__new__(FlowPayload)
            self.flows[f] = p
            return p
        return <FlowPayload>found

    def handle(self, events, rec, buf, fs):
        """Read the payload of every event of one batch (before ``buf`` is dropped)."""
        if not len(events):
            return
        cdef const int64_t[:, :] ev = events
        cdef const int64_t[:, :] rv = rec
        cdef const int64_t[:, :] fv = fs
        cdef const uint8_t[:] bv = buf
        cdef Py_ssize_t i, f, d, r
        cdef int64_t kind, start
        cdef bint dns
        cdef bytes data
        for i in range(ev.shape[0]):
            f = ev[i, 0]
            d = ev[i, 1]
            r = ev[i, 2]
            kind = ev[i, 3]
            if kind == EV_PAYLOAD:
                start = rv[r, C_PAY_OFF]
                data = _slice(bv, start, start + rv[r, C_PAY_LEN])
                dns = fv[f, F_A_PORT] == 53 or fv[f, F_B_PORT] == 53
                if fv[f, F_PROTO] == 6:
                    self._tcp(f, d, rv[r, C_SEQ], data, rv, r, dns)
                elif dns:
                    self._dns_message(self._payload(f), data, rv, r)
                else:
                    self._quic(f, data)
            elif kind == EV_ICMP_ERROR:
                self._icmp_error(rv, r, bv)

    # -- TCP ---------------------------------------------------------------------
    cdef _tcp(
        self,
        Py_ssize_t f,
        Py_ssize_t d,
        int64_t seq,
        bytes data,
        const int64_t[:, :] rv,
        Py_ssize_t r,
        bint dns,
    ):
        cdef FlowPayload p = self._payload(f)
        cdef Py_ssize_t n = len(data)
        if d == 0 and p.hello_done and p.tls_alert is None and n and data[0] == CONTENT_ALERT:
            # The client refusing the server's answer (a certificate it does not trust) ends
            # the handshake as surely as a server's alert; the flow says which side sent it.
            alert = _tls.clear_alert(data)
            if alert is not None:
                p.tls_alert = f"{alert} from the client"
        if p.done:
            return
        cdef list segs = _streams(p)[d]
        if len(segs) >= MAX_SEGMENTS:
            return
        segs.append((seq, data))
        if d == 0 and n > p.max_segment_c2s:
            p.max_segment_c2s = n
        self.buffered += n
        self._buffering[f] = None
        if self.buffered > self.max_buffered:
            self._shed_buffers(f)
        if dns:
            self._dns_tcp(p, d, rv, r)
            return
        if d == 1:
            if p.connect is not None and p.connect_status is None:
                try:
                    p.connect_status = _http.parse_http_response_status(_assemble(segs))
                except DecodeError:
                    p.connect_status = -1
            if p.hello_done:
                self._server_flight(f, p)
            return
        if p.hello_done:
            return
        if p.hello_seq is None:
            first = _lowest_seq(segs)
            # The check reads only the stream's first 6 bytes.
            if _tls_wire.looks_like_client_hello(_assemble(segs)):
                p.hello_seq = first  # at the stream's start, even if it came in pieces
            elif _tls_wire.looks_like_client_hello(data):
                p.hello_seq = seq  # after a STARTTLS exchange
                p.starttls = True
        if p.hello_seq is not None:
            try:
                # The fields in dsaudit.decode.tls.ClientHello's order: sni, alpn, ...
                hello = _tls_wire.client_hello(_assemble(segs, p.hello_seq))
            except DecodeError:
                self.decode_failures += 1
                p.done = True  # not a ClientHello after all: nothing more to learn here
                self._release(f, p)
                return
            if hello is not None:
                p.sni = hello[0]
                p.alpn = hello[1]
                p.hello_done = True
                # The client's bytes are read; the server's answer (already here, or still to
                # come from the kernel) may hold an alert or a certificate.
                self.buffered -= _held(segs)
                segs.clear()
                if p.segs[1]:
                    self._server_flight(f, p)
                else:
                    self._buffering.pop(f, None)
            return
        if not p.text_done:
            self._text(p, _assemble(segs))

    cdef _server_flight(self, Py_ssize_t f, FlowPayload p):
        """Read the clear start of the server's TLS stream; done at an alert or encryption."""
        cdef bytes stream = _assemble(_streams(p)[1])
        cdef Py_ssize_t end
        if p.connect is not None:
            # The proxy's answer to CONNECT comes first; the TLS records follow its header.
            end = stream.find(b"\r\n\r\n")
            if end < 0:
                return
            stream = stream[end + 4 :]
        if not stream:
            return
        level, description, complete, certificates = _tls_wire.server_flight(stream)
        if certificates:
            # Reading a certificate's issuer is the decoder's (rare: TLS 1.2 and earlier).
            flight = _tls.parse_server_flight(stream)
            if flight.issuer is not None:
                p.tls_server_issuer = flight.issuer
        if level >= 0:
            p.tls_alert = _tls.alert_text(level, description)
        if complete or len(p.segs[1]) >= MAX_SEGMENTS:
            p.done = True
            self._release(f, p)

    cdef _text(self, FlowPayload p, bytes stream):
        if not stream:
            return
        if _http.looks_like_http_request(stream):
            try:
                req = _http.parse_http_request(stream)
            except DecodeError:
                p.text_done = True
                return
            if req is None:
                return
            self._finish_text(p)
            p.http_method = req.method
            p.http_host = req.host
            target = _http.connect_target(req)
            if target is not None:
                p.connect = _join_host_port(*target)
            return
        if _socks.looks_like_socks(stream):
            try:
                tgt = _socks.parse_socks_client(stream)
            except DecodeError:
                p.text_done = True
                return
            if tgt is not None:
                p.socks = _join_host_port(tgt.host, tgt.port)
                self._finish_text(p)

    cdef _finish_text(self, FlowPayload p):
        p.text_done = True
        # Keep collecting only what can still name the flow: a ClientHello after a
        # CONNECT or STARTTLS, and the proxy's answer to a CONNECT.
        cdef list client = _streams(p)[0]
        cdef list server = _streams(p)[1]
        self.buffered -= _held(client)
        client.clear()
        if p.connect is None:
            self.buffered -= _held(server)
            server.clear()

    cdef _release(self, object f, FlowPayload p):
        self.buffered -= _held_by(p)
        p.segs = None
        self._buffering.pop(f, None)

    def release_idle(self, fs, before_ns):
        """Free the reassembly buffers of flows silent since ``before_ns``: they are over."""
        if not self._buffering:
            return
        held = np.fromiter(self._buffering, dtype=np.int64, count=len(self._buffering))
        idle = held[fs[held, F_LAST_TS] < before_ns]
        for f in idle.tolist():
            p = self.flows.get(f)
            if p is not None:
                self._release(f, p)
                (<FlowPayload>p).done = True
            else:
                self._buffering.pop(f, None)

    cdef _shed_buffers(self, object keep):
        """Past the reassembly budget, drop the buffers of the longest-waiting flows."""
        for f in list(self._buffering):
            if self.buffered <= self.max_buffered // 2:
                break
            if f == keep:
                continue
            p = self.flows.get(f)
            if p is not None:
                self._release(f, p)
                (<FlowPayload>p).done = True
                self.buffers_dropped += 1

    # -- DNS -----------------------------------------------------------------------
    cdef _dns_tcp(self, FlowPayload p, Py_ssize_t d, const int64_t[:, :] rv, Py_ssize_t r):
        cdef bytes stream = _assemble(_streams(p)[d])
        if p.dns_consumed is None:
            p.dns_consumed = [0, 0]
        cdef Py_ssize_t done = p.dns_consumed[d]
        if len(stream) <= done:
            return
        try:
            messages, used = _dns.split_dns_tcp(stream[done:])
        except DecodeError:
            self.decode_failures += 1
            return
        p.dns_consumed[d] = done + used
        for msg in messages:
            self._dns_message(p, msg, rv, r)

    cdef _quic(self, Py_ssize_t f, bytes data):
        cdef FlowPayload p = self._payload(f)
        if p.done:
            return
        try:
            pieces = _quic.quic_initial_crypto(data)
        except DecodeError:
            pieces = None
        if not pieces:
            return
        if p.quic is None:
            p.quic = []
        p.quic.extend(pieces)
        try:
            hello = _quic.client_hello_from_crypto(p.quic)
        except DecodeError:
            p.done = True
            return
        if hello is not None:
            p.sni = hello.sni
            p.alpn = hello.alpn
            p.done = True
            p.quic = None

    cdef object _digest(self, bytes data):
        """What one DNS message says, cached: the same query recurs with only its id changed."""
        cdef bytes key = data[2:]
        hit = self._dns_cache.get(key)
        if hit is not None:
            return hit
        try:
            digest = _digest_wire(data, DnsDigest)
        except DecodeError:
            self.decode_failures += 1
            return None
        if len(self._dns_cache) >= DNS_CACHE_SIZE:
            self._dns_cache.clear()
        self._dns_cache[key] = digest
        return digest

    cdef _dns_message(self, FlowPayload p, bytes data, const int64_t[:, :] rv, Py_ssize_t r):
        msg = self._digest(data)
        if msg is None:
            return
        cdef list queries = p.dns_queries
        for name in msg.queries:
            if len(queries) < MAX_QUERIES and name not in queries:
                queries.append(name)
        cdef int rcode = msg.rcode
        if rcode < 0:
            return
        p.dns_rcodes.append(rcode)
        cdef Py_ssize_t room = MAX_ANSWERS - len(p.dns_answers)
        if room > 0:
            p.dns_answers.extend(msg.answers[:room])
        cdef tuple addresses = msg.addresses
        if addresses:
            ts = rv[r, C_TS]
            # The client is whoever receives the response.
            client = _addr_key(rv[r, C_DST_HI], rv[r, C_DST_LO])
            for addr, name in addresses:
                self.dns.add(client, addr, ts, name)

    # -- ICMP errors -----------------------------------------------------------------
    cdef _icmp_error(self, const int64_t[:, :] rv, Py_ssize_t r, const uint8_t[:] bv):
        cdef int64_t off = rv[r, C_PAY_OFF]
        cdef bytes quoted = _slice(bv, off, off + rv[r, C_PAY_LEN])
        cdef int64_t itype = rv[r, C_ICMP_TYPE]
        cdef int64_t code = rv[r, C_ICMP_CODE]
        cdef bint v4 = rv[r, C_L3] == L3_IPV4
        key = _quoted_key(quoted, v4)
        if key is None:
            return
        cdef dict info = {
            "type": itype,
            "code": code,
            "from": _addr_key(rv[r, C_SRC_HI], rv[r, C_SRC_LO]),
            "ts": rv[r, C_TS],
            "family": 4 if v4 else 6,
        }
        if v4 and itype == 3 and code == 4:
            info["mtu"] = rv[r, C_ICMP_REST] & 0xFFFF
        elif not v4 and itype == 2:
            info["mtu"] = rv[r, C_ICMP_REST]
        vlan = (rv[r, C_VLAN0], rv[r, C_VLAN1])
        self.icmp_errors.append((rv[r, C_TS], vlan + key, info))


cdef object _quoted_key(bytes quoted, bint v4):
    """(proto, src, sport, dst, dport) of the packet an ICMP error quotes."""
    cdef Py_ssize_t n = len(quoted), ihl
    cdef int proto
    cdef bytes l4
    if v4:
        if n < 20 or quoted[0] >> 4 != 4:
            return None
        ihl = (quoted[0] & 0x0F) * 4
        proto = quoted[9]
        src = _key_from_packed(quoted[12:16])
        dst = _key_from_packed(quoted[16:20])
        l4 = quoted[ihl:]
    else:
        if n < 40 or quoted[0] >> 4 != 6:
            return None
        proto = quoted[6]
        src = _key_from_packed(quoted[8:24])
        dst = _key_from_packed(quoted[24:40])
        l4 = quoted[40:]
    if src is None or dst is None:
        return None
    cdef int sport = 0, dport = 0
    if (proto == 6 or proto == 17) and len(l4) >= 4:
        sport = (l4[0] << 8) | l4[1]
        dport = (l4[2] << 8) | l4[3]
    return (proto, src, sport, dst, dport)
