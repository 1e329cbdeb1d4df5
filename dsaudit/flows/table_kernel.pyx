# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled bidirectional flow table: one pass over decoded packets, Zeek-style flow keys.

Hand-written in Cython because no maintained library offers a streaming, VLAN-aware
bidirectional flow meter that Python can drive at millions of packets per second (NFStream
manages 45-70k packets/s here). Open addressing over int64 columns; the table never
shrinks, finished flows simply stop being reachable from the hash. The arrays are checked
once at entry; rows that point outside the payload buffer are refused, not read.
"""

from libc.stdint cimport int64_t, uint8_t, uint64_t

from dsaudit.decode.packet_kernel cimport (
    C_DPORT,
    C_DST_HI,
    C_DST_LO,
    C_ERR,
    C_FLAGS,
    C_FRAG,
    C_ICMP_CODE,
    C_ICMP_REST,
    C_ICMP_TYPE,
    C_L3,
    C_L4_LEN,
    C_PAY_LEN,
    C_PAY_OFF,
    C_PROTO,
    C_SEQ,
    C_SPORT,
    C_SRC_HI,
    C_SRC_LO,
    C_TRUNC,
    C_TS,
    C_TUN_DST_HI,
    C_TUN_DST_LO,
    C_TUN_KIND,
    C_TUN_SRC_HI,
    C_TUN_SRC_LO,
    C_TUNNEL,
    C_VLAN0,
    C_VLAN1,
    C_WIRE,
    L3_IPV4,
    L3_IPV6,
    N_COLS,
)

# Flow store columns.
cpdef enum:
    F_A_HI = 0
    F_A_LO = 1
    F_B_HI = 2
    F_B_LO = 3
    F_A_PORT = 4
    F_B_PORT = 5
    F_PROTO = 6
    F_VLAN0 = 7
    F_VLAN1 = 8
    F_L3 = 9
    F_ORIG_IS_A = 10
    F_EVIDENCE = 11
    F_FIRST_TS = 12
    F_LAST_TS = 13
    F_PKTS_C = 14
    F_PKTS_S = 15
    F_BYTES_C = 16
    F_BYTES_S = 17
    F_PAY_C = 18
    F_PAY_S = 19
    F_SEEN = 20  # bit per history letter
    F_HIST = 21  # history letters in order, 4 bits each
    F_HLEN = 22
    F_ISN_C = 23
    F_SEQEND_C = 24  # highest sequence number + length seen, per direction
    F_SEQEND_S = 25
    F_MODE = 26  # payload-inspection mode
    F_NPAY_C = 27
    F_NPAY_S = 28
    F_NEED = 29  # TLS ClientHello bytes still to collect
    F_TRUNC = 30
    F_ICMP_TC = 31  # ICMP type << 8 | code of the first packet
    F_TUNNEL = 32
    F_SYN_TS = 33
    F_TEXT = 34  # TEXT_* kind of a text stream
    F_TUN_KIND = 35  # TUN_* of the tunnel the first packet came through (0 = none)
    F_TUN_SRC_HI = 36  # the outer endpoints of that tunnel, as in its first packet
    F_TUN_SRC_LO = 37
    F_TUN_DST_HI = 38
    F_TUN_DST_LO = 39
    F_HELLO = 40  # 1 once a ClientHello began: the server's TLS records are worth reading;
    # 2 once they can tell nothing more (encrypted records or an alert followed)
    F_SREC = 41  # where the server's next TLS record header starts, seq + 1 (-1: not followed)
    N_FCOLS = 42

cpdef enum:
    EVIDENCE_SYN = 0
    EVIDENCE_SYNACK = 1
    EVIDENCE_PORT = 2
    EVIDENCE_FIRST = 3

# History letters, originator then responder (Zeek's conn.log history alphabet).
HISTORY_LETTERS = " SHADFRTshadfrt"
cpdef enum:
    H_S = 1
    H_H = 2
    H_A = 3
    H_D = 4
    H_F = 5
    H_R = 6
    H_T = 7
    RESP_OFFSET = 7

# Payload-inspection modes.
cpdef enum:
    M_UNDECIDED = 0
    M_TLS = 1
    M_TEXT = 2
    M_DNS = 3
    M_DONE = 4
    M_QUIC = 5

# What a text stream turned out to be (the first client payload says).
cpdef enum:
    TEXT_OTHER = 1  # SMTP, LDAP, FTP, SOCKS...: keep reading, STARTTLS may follow
    TEXT_HTTP = 2  # an HTTP request: its header block names the peer, then we are done
    TEXT_CONNECT = 3  # a proxy CONNECT: the proxy's answer and a ClientHello follow

# Event kinds handed to the naming stage.
cpdef enum:
    EV_PAYLOAD = 1
    EV_ICMP_ERROR = 2

# Kernel outcomes.
cpdef enum:
    OK = 0
    FLOWS_FULL = 1
    HASH_FULL = 2
    FLOWS_LIMIT = 3  # the configured maximum: the caller evicts before going on
    BAD_ROW = 4  # a record points outside the buffer (never from the decoder)

cpdef enum:
    TEXT_CLIENT_PACKETS = 12
    TLS_PACKETS = 64
    REORDER_PACKETS = 3
    TEXT_SERVER_PACKETS = 2
    DNS_PACKETS = 512
    QUIC_PACKETS = 4
    MAX_HELLO = 70000
    TLS_SERVER_PACKETS = 16  # ServerHello, Certificate and alerts fit well within this
    MAX_TLS_RECORD = 0x4000 + 2048  # a longer record is not TLS (RFC 8446 5.2)

# What the server's records say about its clear-text flight.
cpdef enum:
    FLIGHT_GOING = 0
    FLIGHT_OVER = 1  # encrypted records or a whole alert: later packets cannot add anything
    FLIGHT_UNKNOWN = 2  # out of order, cut or not TLS: stop following, keep handing over

cpdef enum:
    TCP_FIN = 0x01
    TCP_SYN = 0x02
    TCP_RST = 0x04
    TCP_ACK = 0x10


cdef uint64_t _PRIME = 0x100000001B3
cdef uint64_t _OFFSET = 0xCBF29CE484222325
cdef int64_t _U32 = 0xFFFFFFFF
cdef int64_t _HALF = 0x80000000


cdef inline uint64_t _mix(uint64_t h, uint64_t v) noexcept nogil:
    h ^= v
    h *= _PRIME
    h ^= h >> 29
    return h


cdef inline uint64_t _hash(
    int64_t ahi, int64_t alo, int64_t bhi, int64_t blo, int64_t ap, int64_t bp, int64_t pr,
    int64_t v0, int64_t v1,
) noexcept nogil:
    cdef uint64_t h = _OFFSET
    h = _mix(h, <uint64_t>alo)
    h = _mix(h, <uint64_t>blo)
    h = _mix(h, <uint64_t>ahi)
    h = _mix(h, <uint64_t>bhi)
    h = _mix(h, (<uint64_t>ap << 32) | (<uint64_t>bp << 8) | <uint64_t>pr)
    h = _mix(h, (<uint64_t>v0 << 20) ^ <uint64_t>v1)
    return h


cdef extern from *:
    # GCC's and clang's hint to start loading a cache line; it never faults.
    void _prefetch "__builtin_prefetch"(const void *addr) nogil

cdef enum:
    # The flow a record belongs to is looked up this many records ahead: its hash slot is
    # asked for first, and its flow row once the slot has arrived. Both are random reads into
    # tables of megabytes, and waiting for them took a third of the table's time.
    PREFETCH_AHEAD = 8
    PREFETCH_RING = 16  # a power of two above PREFETCH_AHEAD

cdef uint64_t NO_SLOT = <uint64_t>-1


cdef inline bint _key_of(const int64_t *row, int64_t *key, bint *icmp_err) noexcept nogil:
    """Fill ``key``'s flow-key columns from an IP record; True if its source is side A.

    ICMP echo pairs request and reply by identifier; an ICMP error keys on its type and
    code (and says so in ``icmp_err``); protocols without ports key on addresses alone.
    """
    cdef int64_t proto = row[C_PROTO]
    cdef int64_t shi = row[C_SRC_HI], slo = row[C_SRC_LO]
    cdef int64_t dhi = row[C_DST_HI], dlo = row[C_DST_LO]
    cdef int64_t sp = row[C_SPORT], dp = row[C_DPORT], itype
    icmp_err[0] = False
    if proto == 1 or proto == 58:
        itype = row[C_ICMP_TYPE]
        if (proto == 1 and (itype == 8 or itype == 0)) or (
            proto == 58 and (itype == 128 or itype == 129)
        ):
            sp = 0x10000 + ((row[C_ICMP_REST] >> 16) & 0xFFFF)
            dp = sp
        else:
            if proto == 1:
                icmp_err[0] = itype == 3 or itype == 4 or itype == 5 or itype == 11 or itype == 12
            else:
                icmp_err[0] = itype == 1 or itype == 2 or itype == 3 or itype == 4
            sp = itype
            dp = row[C_ICMP_CODE]
    elif proto != 6 and proto != 17:
        sp = 0
        dp = 0
    cdef bint src_is_a = shi < dhi or (shi == dhi and (slo < dlo or (slo == dlo and sp <= dp)))
    if src_is_a:
        key[F_A_HI] = shi; key[F_A_LO] = slo; key[F_A_PORT] = sp
        key[F_B_HI] = dhi; key[F_B_LO] = dlo; key[F_B_PORT] = dp
    else:
        key[F_A_HI] = dhi; key[F_A_LO] = dlo; key[F_A_PORT] = dp
        key[F_B_HI] = shi; key[F_B_LO] = slo; key[F_B_PORT] = sp
    key[F_PROTO] = proto
    key[F_VLAN0] = row[C_VLAN0]
    key[F_VLAN1] = row[C_VLAN1]
    return src_is_a


cdef inline uint64_t _row_slot(
    const int64_t[:, ::1] rec, Py_ssize_t r, uint64_t mask
) noexcept nogil:
    """Record ``r``'s first hash slot, or NO_SLOT when the table will not look it up."""
    cdef const int64_t *row = &rec[r, 0]
    cdef int64_t key[N_FCOLS]
    cdef bint icmp_err
    if row[C_ERR] != 0 or row[C_FRAG] == 1 or (row[C_L3] != L3_IPV4 and row[C_L3] != L3_IPV6):
        return NO_SLOT
    _key_of(row, key, &icmp_err)
    return _hash(
        key[F_A_HI], key[F_A_LO], key[F_B_HI], key[F_B_LO], key[F_A_PORT], key[F_B_PORT],
        key[F_PROTO], key[F_VLAN0], key[F_VLAN1],
    ) & mask


cdef inline void _prefetch_flow(
    const int64_t[:, ::1] rec,
    Py_ssize_t r,
    const int64_t[::1] htab,
    uint64_t mask,
    const int64_t[:, ::1] fs,
    int64_t nflows,
    uint64_t *ahead,
) noexcept nogil:
    """Ask for record ``r``'s hash slot, and for the flow row of the record half as far
    ahead, whose slot was asked for PREFETCH_AHEAD records ago. Only hints: a slot the
    table changes meanwhile costs a wasted load, never a wrong answer."""
    cdef uint64_t slot = _row_slot(rec, r, mask)
    ahead[r % PREFETCH_RING] = slot
    if slot != NO_SLOT:
        _prefetch(&htab[slot])
    cdef Py_ssize_t half = r - PREFETCH_AHEAD // 2
    cdef int64_t g
    slot = ahead[half % PREFETCH_RING]
    if slot != NO_SLOT:
        g = htab[slot] - 1
        if 0 <= g < nflows:
            _prefetch(&fs[g, 0])
            _prefetch(&fs[g, 0] + 8)


cdef inline bint _same_key(const int64_t *g, const int64_t *k) noexcept nogil:
    return (
        g[F_A_LO] == k[F_A_LO]
        and g[F_B_LO] == k[F_B_LO]
        and g[F_A_PORT] == k[F_A_PORT]
        and g[F_B_PORT] == k[F_B_PORT]
        and g[F_PROTO] == k[F_PROTO]
        and g[F_A_HI] == k[F_A_HI]
        and g[F_B_HI] == k[F_B_HI]
        and g[F_VLAN0] == k[F_VLAN0]
        and g[F_VLAN1] == k[F_VLAN1]
    )


cdef inline void _add_letter(int64_t *fl, int64_t letter) noexcept nogil:
    cdef int64_t bit = (<int64_t>1) << letter
    cdef int64_t n
    if fl[F_SEEN] & bit:
        return
    fl[F_SEEN] |= bit
    n = fl[F_HLEN]
    if n < 14:
        fl[F_HIST] |= letter << (4 * n)
        fl[F_HLEN] = n + 1


cdef inline bint _closed(const int64_t *fl) noexcept nogil:
    cdef int64_t seen = fl[F_SEEN]
    cdef bint fin_both = ((seen >> H_F) & 1) and ((seen >> (H_F + RESP_OFFSET)) & 1)
    cdef bint rst = ((seen >> H_R) & 1) or ((seen >> (H_R + RESP_OFFSET)) & 1)
    return fin_both or rst


cdef inline bint _is_client_hello(const uint8_t *buf, Py_ssize_t p, int64_t n) noexcept nogil:
    return n >= 6 and buf[p] == 0x16 and buf[p + 1] == 3 and buf[p + 5] == 1


cdef int64_t _hello_need(const uint8_t *buf, Py_ssize_t p, int64_t n) noexcept nogil:
    cdef int64_t rec_len = (<int64_t>buf[p + 3] << 8) | <int64_t>buf[p + 4]
    cdef int64_t need = 5 + rec_len
    cdef int64_t hs
    if n >= 9:
        hs = (<int64_t>buf[p + 6] << 16) | (<int64_t>buf[p + 7] << 8) | <int64_t>buf[p + 8]
        if hs + 4 > rec_len and rec_len > 0:
            # The handshake continues in further records, each with a 5-byte header.
            need = hs + 4 + 5 * ((hs + 4 + rec_len - 1) // rec_len)
    if need > MAX_HELLO:
        need = MAX_HELLO
    return need


cdef int _server_flight(
    int64_t *fl, const uint8_t *buf, Py_ssize_t p, int64_t seq, int64_t caplen, int64_t paylen,
    int64_t prev_end,
) noexcept nogil:
    """Follow the server's TLS record headers through one in-order segment.

    The naming stage reads the server's answer to a ClientHello until an alert or the first
    encrypted record; following the headers here stops the hand-over right there instead of
    after TLS_SERVER_PACKETS packets. Anything this walk cannot vouch for (a gap, a cut
    segment, a header split across segments, bytes that are not TLS) keeps the old
    behaviour: every packet up to the limit is handed over and the naming stage decides.
    """
    cdef int64_t nxt = fl[F_SREC]
    cdef int64_t pos, ctype, version, length
    if nxt < 0:
        return FLIGHT_UNKNOWN
    if caplen != paylen:
        return FLIGHT_UNKNOWN
    if nxt == 0:
        pos = 0  # the first segment of the answer starts with a record
    else:
        if prev_end == 0 or ((prev_end - 1) & _U32) != seq:
            return FLIGHT_UNKNOWN  # not the next bytes of the stream
        pos = ((nxt - 1) - seq) & _U32
        if pos >= _HALF:
            return FLIGHT_UNKNOWN
    while pos < caplen:
        if pos + 5 > caplen:
            return FLIGHT_UNKNOWN  # a header split across segments
        ctype = buf[p + pos]
        version = buf[p + pos + 1]
        length = (<int64_t>buf[p + pos + 3] << 8) | <int64_t>buf[p + pos + 4]
        if version != 3 or length > MAX_TLS_RECORD:
            return FLIGHT_UNKNOWN
        if ctype == 0x15:
            if pos + 5 + length <= caplen:
                return FLIGHT_OVER
            return FLIGHT_UNKNOWN
        if ctype != 0x16:
            return FLIGHT_OVER  # ChangeCipherSpec or application data: encrypted from here
        pos += 5 + length
    fl[F_SREC] = ((seq + pos) & _U32) + 1
    return FLIGHT_GOING


cdef int64_t _text_kind(const uint8_t *buf, Py_ssize_t p, int64_t n) noexcept nogil:
    cdef uint8_t a, b, c
    if n >= 8 and buf[p] == 0x43 and buf[p + 1] == 0x4F and buf[p + 2] == 0x4E and buf[p + 7] == 0x20:
        return TEXT_CONNECT  # "CONNECT "
    if n >= 4:
        a = buf[p]
        b = buf[p + 1]
        c = buf[p + 2]
        # GET, POST, HEAD, PUT, DELETE, OPTIONS, PATCH, TRACE
        if (
            (a == 0x47 and b == 0x45 and c == 0x54)
            or (a == 0x50 and (b == 0x4F or b == 0x55 or b == 0x41))
            or (a == 0x48 and b == 0x45)
            or (a == 0x44 and b == 0x45)
            or (a == 0x4F and b == 0x50)
            or (a == 0x54 and b == 0x52)
        ):
            return TEXT_HTTP
    return TEXT_OTHER


cdef bint _has_blank_line(const uint8_t *buf, Py_ssize_t p, int64_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(p, p + n - 3):
        if buf[i] == 13 and buf[i + 1] == 10 and buf[i + 2] == 13 and buf[i + 3] == 10:
            return True
    return False


cdef inline bint _looks_texty(uint8_t b) noexcept nogil:
    # A request line or command (HTTP, SMTP, FTP, IMAP, POP3), SOCKS 4/5, or LDAP's BER SEQUENCE.
    return (0x41 <= b <= 0x5A) or (0x61 <= b <= 0x7A) or b == 4 or b == 5 or b == 0x30


cdef inline void _event(int64_t *ev, Py_ssize_t nev, int64_t f, int64_t d, int64_t r,
                        int64_t kind) noexcept nogil:
    ev[4 * nev] = f
    ev[4 * nev + 1] = d
    ev[4 * nev + 2] = r
    ev[4 * nev + 3] = kind


cdef _check_table(int64_t[:, ::1] fs, int64_t nflows, int64_t[::1] htab):
    if fs.shape[1] != N_FCOLS:
        raise ValueError(f"flow table: the store needs {N_FCOLS} columns, not {fs.shape[1]}")
    if nflows < 0 or nflows > fs.shape[0]:
        raise ValueError(f"flow table: {nflows} flows in a store of {fs.shape[0]} rows")
    cdef Py_ssize_t size = htab.shape[0]
    if size < 2 or (size & (size - 1)) != 0:
        raise ValueError(f"flow table: the hash size {size} is not a power of two")


def process_records(
    const int64_t[:, ::1] rec,
    Py_ssize_t start,
    Py_ssize_t nrec,
    const uint8_t[::1] buf,
    int64_t[:, ::1] fs,
    int64_t nflows,
    int64_t[::1] htab,
    int64_t nused,
    const uint8_t[::1] server_ports,
    const int64_t[::1] timeouts,
    int64_t[:, ::1] ev,
    Py_ssize_t nev,
    int64_t max_flows,
):
    """Feed records ``start..nrec`` into the table; return (next, nflows, nused, nev, outcome)."""
    _check_table(fs, nflows, htab)
    if rec.shape[1] != N_COLS:
        raise ValueError(f"flow table: records need {N_COLS} columns, not {rec.shape[1]}")
    if start < 0 or start > nrec or nrec > rec.shape[0]:
        raise ValueError(f"flow table: records {start}..{nrec} outside {rec.shape[0]} rows")
    if server_ports.shape[0] < 65537:
        raise ValueError("flow table: server_ports needs an entry per port (65537)")
    if timeouts.shape[0] != 3:
        raise ValueError("flow table: timeouts holds tcp, udp and other")
    if ev.shape[1] != 4 or nev < 0 or nev + (nrec - start) > ev.shape[0]:
        raise ValueError("flow table: the event array cannot hold an event per record")
    cdef uint64_t mask = <uint64_t>htab.shape[0] - 1
    cdef Py_ssize_t fcap = fs.shape[0]
    cdef Py_ssize_t hsize = htab.shape[0]
    cdef Py_ssize_t blen = buf.shape[0]
    cdef const uint8_t *b = &buf[0] if blen > 0 else NULL
    cdef int64_t *evp = &ev[0, 0] if ev.shape[0] > 0 else NULL
    cdef Py_ssize_t r, p
    cdef int64_t l3, proto, v0, v1
    cdef int64_t ahi, alo, ap, bhi, blo, bp, f, g, ts, flags, tmo, seen, progressed
    cdef int64_t rsp, rdp, evidence, t, d, paylen, caplen, off, seq, seg_end, prev, mode
    cdef uint64_t slot
    cdef bint icmp_err, src_is_a, syn_only, new, src_is_orig, client_is_src, s_srv, d_srv
    cdef bint retrans, emit
    cdef int flight
    cdef const int64_t *row
    cdef int64_t *fl
    cdef int64_t key[N_FCOLS]
    cdef int c
    cdef int outcome = OK
    # The hash slots of the records PREFETCH_AHEAD on, by record number modulo the ring.
    cdef uint64_t ahead[PREFETCH_RING]
    for c in range(PREFETCH_RING):
        ahead[c] = NO_SLOT
    with nogil:
        if start + PREFETCH_AHEAD < nrec:
            for r in range(start, start + PREFETCH_AHEAD):
                ahead[r % PREFETCH_RING] = _row_slot(rec, r, mask)
        r = start
        while r < nrec:
            if r + PREFETCH_AHEAD < nrec:
                _prefetch_flow(rec, r + PREFETCH_AHEAD, htab, mask, fs, nflows, ahead)
            row = &rec[r, 0]
            if row[C_ERR] != 0:
                r += 1
                continue
            l3 = row[C_L3]
            if l3 != L3_IPV4 and l3 != L3_IPV6:
                r += 1
                continue
            if row[C_FRAG] == 1:
                r += 1
                continue  # reassembled beforehand; the whole datagram follows as its own row
            if nflows >= fcap:
                outcome = FLOWS_FULL
                break
            if nflows >= max_flows:
                outcome = FLOWS_LIMIT
                break
            if 2 * (nused + 1) > hsize:
                outcome = HASH_FULL
                break
            caplen = row[C_PAY_LEN]
            if caplen < 0 or (caplen > 0 and (row[C_PAY_OFF] < 0 or row[C_PAY_OFF] + caplen > blen)):
                outcome = BAD_ROW
                break
            proto = row[C_PROTO]
            src_is_a = _key_of(row, key, &icmp_err)
            ahi = key[F_A_HI]
            alo = key[F_A_LO]
            bhi = key[F_B_HI]
            blo = key[F_B_LO]
            ap = key[F_A_PORT]
            bp = key[F_B_PORT]
            v0 = key[F_VLAN0]
            v1 = key[F_VLAN1]
            slot = _hash(ahi, alo, bhi, blo, ap, bp, proto, v0, v1) & mask
            f = -1
            while htab[slot] != 0:
                g = htab[slot] - 1
                if g < 0 or g >= nflows:
                    break  # not a slot this table wrote
                if _same_key(&fs[g, 0], key):
                    f = g
                    break
                slot = (slot + 1) & mask
            if f < 0 and htab[slot] != 0:
                outcome = BAD_ROW
                break
            ts = row[C_TS]
            flags = row[C_FLAGS] if proto == 6 else 0
            syn_only = (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN
            if f >= 0:
                fl = &fs[f, 0]
                # A flow ends when idle too long or when a new connection reuses its ports.
                tmo = timeouts[0] if proto == 6 else (timeouts[1] if proto == 17 else timeouts[2])
                new = ts - fl[F_LAST_TS] > tmo
                if not new and syn_only:
                    src_is_orig = src_is_a == (fl[F_ORIG_IS_A] == 1)
                    seen = fl[F_SEEN]
                    if src_is_orig and (seen & ((<int64_t>1) << H_S)):
                        # A SYN with a new initial sequence number after the old connection
                        # closed or got going is a new connection; the same ISN is a retry.
                        progressed = seen & (
                            ((<int64_t>1) << (H_H + RESP_OFFSET)) | ((<int64_t>1) << H_D)
                        )
                        new = row[C_SEQ] != fl[F_ISN_C] and (_closed(fl) or progressed != 0)
                    elif _closed(fl):
                        new = True
                if new:
                    f = -1
            else:
                nused += 1
            if f < 0:
                f = nflows
                nflows += 1
                fl = &fs[f, 0]
                for c in range(N_FCOLS):
                    fl[c] = 0
                fl[F_A_HI] = ahi
                fl[F_A_LO] = alo
                fl[F_B_HI] = bhi
                fl[F_B_LO] = blo
                fl[F_A_PORT] = ap
                fl[F_B_PORT] = bp
                fl[F_PROTO] = proto
                fl[F_VLAN0] = v0
                fl[F_VLAN1] = v1
                fl[F_L3] = l3
                fl[F_FIRST_TS] = ts
                fl[F_LAST_TS] = ts
                fl[F_TUNNEL] = row[C_TUNNEL]
                fl[F_TUN_KIND] = row[C_TUN_KIND]
                fl[F_TUN_SRC_HI] = row[C_TUN_SRC_HI]
                fl[F_TUN_SRC_LO] = row[C_TUN_SRC_LO]
                fl[F_TUN_DST_HI] = row[C_TUN_DST_HI]
                fl[F_TUN_DST_LO] = row[C_TUN_DST_LO]
                fl[F_ISN_C] = -1
                fl[F_SYN_TS] = -1
                # Who started it: SYN, then SYN-ACK, then well-known ports, then the first packet.
                rsp = row[C_SPORT]
                rdp = row[C_DPORT]
                client_is_src = True
                evidence = EVIDENCE_FIRST
                if proto == 6 and syn_only:
                    evidence = EVIDENCE_SYN
                elif proto == 6 and (flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK):
                    evidence = EVIDENCE_SYNACK
                    client_is_src = False
                elif (proto == 6 or proto == 17) and 0 <= rsp <= 65535 and 0 <= rdp <= 65535:
                    s_srv = server_ports[rsp] != 0
                    d_srv = server_ports[rdp] != 0
                    if d_srv and not s_srv:
                        evidence = EVIDENCE_PORT
                    elif s_srv and not d_srv:
                        evidence = EVIDENCE_PORT
                        client_is_src = False
                    elif rsp != rdp and (rsp < 1024) != (rdp < 1024):
                        evidence = EVIDENCE_PORT
                        client_is_src = rdp < 1024
                elif proto == 1 or proto == 58:
                    t = row[C_ICMP_TYPE]
                    if t == 0 or t == 129:
                        evidence = EVIDENCE_PORT  # an echo reply: the other side asked
                        client_is_src = False
                    elif t == 8 or t == 128:
                        evidence = EVIDENCE_PORT
                    fl[F_ICMP_TC] = (t << 8) | row[C_ICMP_CODE]
                fl[F_EVIDENCE] = evidence
                fl[F_ORIG_IS_A] = 1 if client_is_src == src_is_a else 0
                if proto == 6:
                    if ap == 53 or bp == 53:
                        fl[F_MODE] = M_DNS
                    else:
                        fl[F_MODE] = M_UNDECIDED
                elif proto == 17:
                    if ap == 53 or bp == 53:
                        fl[F_MODE] = M_DNS
                    elif ap == 443 or bp == 443:
                        fl[F_MODE] = M_QUIC
                    else:
                        fl[F_MODE] = M_DONE
                else:
                    fl[F_MODE] = M_DONE
                htab[slot] = f + 1
            else:
                fl = &fs[f, 0]
            # Account the packet.
            d = 0 if src_is_a == (fl[F_ORIG_IS_A] == 1) else 1
            if ts > fl[F_LAST_TS]:
                fl[F_LAST_TS] = ts
            if ts < fl[F_FIRST_TS]:
                fl[F_FIRST_TS] = ts
            fl[F_PKTS_C + d] += 1
            fl[F_BYTES_C + d] += row[C_WIRE]
            paylen = row[C_L4_LEN]
            fl[F_PAY_C + d] += paylen
            fl[F_TRUNC] += row[C_TRUNC]
            if proto == 6:
                off = RESP_OFFSET * d
                seq = row[C_SEQ]
                if flags & TCP_SYN:
                    if flags & TCP_ACK:
                        _add_letter(fl, H_H + off)
                    else:
                        _add_letter(fl, H_S + off)
                        if d == 0 and fl[F_ISN_C] < 0:
                            fl[F_ISN_C] = seq
                            fl[F_SYN_TS] = ts
                retrans = False
                prev = 0
                if paylen > 0:
                    # Sequence ends are stored plus one so that zero means "none seen yet".
                    seg_end = ((seq + paylen) & _U32) + 1
                    prev = fl[F_SEQEND_C + d]
                    if prev != 0 and ((seg_end - prev) & _U32) >= _HALF:
                        retrans = True
                    elif prev != 0 and seg_end == prev:
                        retrans = True
                    else:
                        fl[F_SEQEND_C + d] = seg_end
                    if retrans:
                        _add_letter(fl, H_T + off)
                    _add_letter(fl, H_D + off)
                elif (flags & TCP_ACK) and not (flags & (TCP_SYN | TCP_FIN | TCP_RST)):
                    _add_letter(fl, H_A + off)
                if flags & TCP_FIN:
                    _add_letter(fl, H_F + off)
                if flags & TCP_RST:
                    _add_letter(fl, H_R + off)
                # Retransmitted or reordered segments are still handed over: reassembly in the
                # naming stage drops duplicates, and a reordered ClientHello needs them.
                if caplen > 0:
                    mode = fl[F_MODE]
                    emit = False
                    p = row[C_PAY_OFF]
                    if mode == M_DNS:
                        emit = fl[F_NPAY_C + d] < DNS_PACKETS
                    elif d == 0:
                        if mode == M_UNDECIDED or mode == M_TEXT:
                            if _is_client_hello(b, p, caplen):
                                fl[F_MODE] = M_TLS
                                fl[F_HELLO] = 1
                                fl[F_NEED] = _hello_need(b, p, caplen) - paylen
                                emit = True
                            elif mode == M_UNDECIDED:
                                if b[p] == 0x16:
                                    # A ClientHello whose first segment is too short to size it.
                                    fl[F_MODE] = M_TLS
                                    fl[F_HELLO] = 1
                                    fl[F_NEED] = MAX_HELLO
                                    emit = True
                                elif caplen < 6 or _looks_texty(b[p]):
                                    fl[F_MODE] = M_TEXT
                                    fl[F_TEXT] = _text_kind(b, p, caplen)
                                    emit = True
                                elif fl[F_NPAY_C] < REORDER_PACKETS:
                                    # Perhaps a later segment overtook the stream's first one.
                                    emit = True
                                else:
                                    fl[F_MODE] = M_DONE
                            elif fl[F_NPAY_C] < TEXT_CLIENT_PACKETS:
                                emit = True
                            else:
                                fl[F_MODE] = M_DONE
                            # A plain HTTP request is named by its header block; once that has
                            # ended, the rest of the connection cannot add a name.
                            if (
                                fl[F_MODE] == M_TEXT
                                and fl[F_TEXT] == TEXT_HTTP
                                and _has_blank_line(b, p, caplen)
                            ):
                                fl[F_MODE] = M_DONE
                        elif mode == M_TLS:
                            emit = fl[F_NPAY_C] < TLS_PACKETS
                            if not retrans:
                                fl[F_NEED] -= paylen
                        elif (
                            fl[F_HELLO] != 0
                            and caplen >= 7
                            and b[p] == 0x15
                            and b[p + 1] == 3
                            and fl[F_NPAY_C] < TLS_PACKETS
                        ):
                            # After its ClientHello, the client's clear alert: it refused the
                            # server's certificate or parameters (TLS 1.2 and earlier).
                            emit = True
                        if fl[F_MODE] == M_TLS and fl[F_NEED] <= 0:
                            fl[F_MODE] = M_DONE
                    elif fl[F_HELLO] == 1:
                        # The server's answer to a ClientHello: its alerts and, before TLS 1.3,
                        # its certificate travel in clear at the start of its stream.
                        emit = fl[F_NPAY_S] < TLS_SERVER_PACKETS
                        if emit and fl[F_TEXT] != TEXT_CONNECT:
                            # (Behind a CONNECT the proxy's HTTP answer comes first.)
                            flight = _server_flight(fl, b, p, seq, caplen, paylen, prev)
                            if flight == FLIGHT_OVER:
                                fl[F_HELLO] = 2
                            elif flight == FLIGHT_UNKNOWN:
                                fl[F_SREC] = -1
                    elif mode == M_TEXT and fl[F_TEXT] == TEXT_CONNECT:
                        # Only a proxy's answer to CONNECT is worth reading on the server side.
                        emit = fl[F_NPAY_S] < TEXT_SERVER_PACKETS
                    if emit:
                        fl[F_NPAY_C + d] += 1
                        _event(evp, nev, f, d, r, EV_PAYLOAD)
                        nev += 1
            elif proto == 17 and caplen > 0:
                mode = fl[F_MODE]
                if (mode == M_DNS and fl[F_NPAY_C + d] < DNS_PACKETS) or (
                    mode == M_QUIC and d == 0 and fl[F_NPAY_C] < QUIC_PACKETS
                ):
                    fl[F_NPAY_C + d] += 1
                    _event(evp, nev, f, d, r, EV_PAYLOAD)
                    nev += 1
            elif icmp_err:
                _event(evp, nev, f, d, r, EV_ICMP_ERROR)
                nev += 1
            r += 1
    if outcome == BAD_ROW:
        raise ValueError(
            f"flow table: record {r} points outside the buffer or the hash holds a foreign slot"
        )
    if outcome == OK:
        r = nrec
    return r, nflows, nused, nev, outcome


def rehash(int64_t[:, ::1] fs, int64_t nflows, int64_t[::1] htab, int64_t live_after):
    """Rebuild ``htab`` from flows whose last packet is at or after ``live_after``.

    Only the newest flow per key is kept reachable; older ones are finished anyway.
    Returns the number of used slots.
    """
    _check_table(fs, nflows, htab)
    cdef uint64_t mask = <uint64_t>htab.shape[0] - 1
    cdef Py_ssize_t i
    cdef int64_t f, g, used = 0
    cdef uint64_t slot
    cdef const int64_t *fl
    cdef bint dup
    with nogil:
        for i in range(htab.shape[0]):
            htab[i] = 0
        for f in range(nflows - 1, -1, -1):
            fl = &fs[f, 0]
            if fl[F_LAST_TS] < live_after:
                continue
            slot = _hash(
                fl[F_A_HI], fl[F_A_LO], fl[F_B_HI], fl[F_B_LO], fl[F_A_PORT], fl[F_B_PORT],
                fl[F_PROTO], fl[F_VLAN0], fl[F_VLAN1],
            ) & mask
            dup = False
            while htab[slot] != 0:
                g = htab[slot] - 1
                if _same_key(&fs[g, 0], fl):
                    dup = True
                    break
                slot = (slot + 1) & mask
            if not dup:
                if used + 1 >= htab.shape[0]:
                    break  # full: the caller grows the hash and rehashes
                htab[slot] = f + 1
                used += 1
    return used
