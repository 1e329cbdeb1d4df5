# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled decoder: link layer, VLAN tags, tunnels, IPv4/IPv6 (extension headers), TCP/UDP/ICMP.

Hand-written in Cython because per-packet Python (dpkt ~35k packets/s, scapy ~3k) is far
too slow for multi-gigabyte captures, and no maintained C library decodes into columns
Python can use without a per-packet call; this kernel decodes millions of frames per
second. It reads headers only, never trusts a length field, and writes one row of int64
columns per decoded packet: the frame's own packet, then one row per tunnel level (VXLAN,
Geneve, GRE, ERSPAN, IP in IP, MPLS in IP) up to MAX_TUNNEL_DEPTH. Link-layer
encapsulations (802.1Q/802.1ad, MPLS, PPPoE) are opened in place. A frame not decoded to its
innermost packet says why in C_WHY on its last row. The arrays are checked once at entry;
inside, every read is checked against the frame's captured end.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

V4_MAPPED_HI = 0
V4_MAPPED_LO = 0x0000FFFF00000000

cpdef enum:
    VXLAN_PORT = 4789
    GENEVE_PORT = 6081
    L2TP_PORT = 1701

ERR_NAMES = {
    ERR_LINK_SHORT: "link-layer header cut short",
    ERR_LINKTYPE: "unsupported link type",
    ERR_IP_SHORT: "IP header cut short",
    ERR_IP_BAD: "invalid IP header",
    ERR_L4_SHORT: "TCP/UDP/ICMP header cut short",
    ERR_ENCAP_SHORT: "tunnel header cut short",
    ERR_ENCAP_BAD: "invalid encapsulation header",
}

WHY_NAMES = {
    WHY_NOT_IP: "not IP",
    WHY_UNKNOWN_ETHERTYPE: "unknown ethertype",
    WHY_UNSUPPORTED: "unsupported encapsulation",
    WHY_SNAPLEN: "cut by snaplen",
    WHY_MALFORMED: "malformed",
}

TUNNEL_NAMES = {
    TUN_VXLAN: "vxlan",
    TUN_GENEVE: "geneve",
    TUN_GRE: "gre",
    TUN_ERSPAN: "erspan",
    TUN_IP4: "ipip",
    TUN_IP6: "6in4",
    TUN_MPLS_IP: "mpls-in-ip",
}

# Ethertypes of protocols that are not IP: the frame is counted as "not IP" under this name.
NOT_IP_ETHERTYPES = {
    0x0806: "ARP",
    0x8035: "RARP",
    0x88CC: "LLDP",
    0x888E: "EAPOL",
    0x8809: "LACP",
    0x8808: "Ethernet flow control",
    0x88F7: "PTP",
    0x8863: "PPPoE discovery",
    0x8902: "CFM",
    0x9000: "loopback",
    0x8137: "IPX",
    0x8138: "IPX",
    0x809B: "AppleTalk",
    0x80F3: "AARP",
    0x0842: "Wake-on-LAN",
    0x6002: "DEC MOP",
    0x6003: "DECnet",
    0x6004: "DEC LAT",
    0x8892: "PROFINET",
    0x88A4: "EtherCAT",
    0x88AB: "Powerlink",
    0x88B8: "GOOSE",
    0x88BA: "IEC 61850 SV",
    0x88E1: "HomePlug",
    0x88E3: "MRP",
    0x88F5: "MVRP",
    0x88F6: "MMRP",
    0x88FB: "PRP",
    0x8899: "Realtek",
    0x893A: "IEEE 1905.1",
    0x8906: "FCoE",
    0x8914: "FIP",
    0x22F0: "AVTP",
    0x22EA: "SRP",
}
# Ethertypes of encapsulations the decoder does not open.
UNSUPPORTED_ETHERTYPES = {
    0x88E5: "MACsec",
    0x88E7: "PBB (802.1ah)",
    0x894F: "NSH",
    0x8100: "802.1Q tags nested too deep",
    0x88A8: "802.1ad tags nested too deep",
    0x9100: "QinQ tags nested too deep",
}
# 802.3 frames by their LLC DSAP.
LLC_NAMES = {0x42: "STP", 0xAA: "LLC/SNAP", 0xE0: "IPX", 0xF0: "NetBIOS", 0xFE: "OSI"}
# PPP protocols: 0x8000 and above are control protocols (RFC 1661), not IP.
PPP_NAMES = {
    0xC021: "LCP",
    0xC023: "PAP",
    0xC223: "CHAP",
    0xC025: "LQR",
    0x8021: "IPCP",
    0x8057: "IPv6CP",
    0x80FD: "CCP",
    0x8281: "MPLSCP",
    0x00FD: "compressed datagram",
    0x0031: "bridging",
}
IP_PROTO_NAMES = {50: "ESP", 115: "L2TPv3"}
UDP_PORT_NAMES = {L2TP_PORT: "L2TP"}


# What a tunnel carries.
cdef enum:
    NX_ETH = 1
    NX_IP = 2  # IPv4 or IPv6 by the version nibble
    NX_IP4 = 4
    NX_IP6 = 6
    NX_MPLS = 7

# Link-layer encapsulations opened inside each other (MPLS pseudowires, PPPoE) at most this
# deep: each level is a call, and crafted frames must not exhaust the stack.
cdef int MAX_LINK_NESTING = 4
cdef int MAX_LABELS = 16


cdef struct Next:
    Py_ssize_t off  # where the tunnel's payload starts, -1 for none
    Py_ssize_t end  # its captured end
    int64_t wire  # its length as the headers claim it
    int what  # NX_*
    int kind  # TUN_*


# The ethertype tables above, as C arrays the nogil decoder can search.
cdef int64_t _NOT_IP[64]
cdef int _N_NOT_IP = 0
cdef int64_t _UNSUPPORTED[16]
cdef int _N_UNSUPPORTED = 0
for _e in NOT_IP_ETHERTYPES:
    _NOT_IP[_N_NOT_IP] = _e
    _N_NOT_IP += 1
for _e in UNSUPPORTED_ETHERTYPES:
    _UNSUPPORTED[_N_UNSUPPORTED] = _e
    _N_UNSUPPORTED += 1

cdef int64_t _V4_LO = 0x0000FFFF00000000


cdef inline int64_t _be16(const uint8_t *buf, Py_ssize_t p) noexcept nogil:
    return (<int64_t>buf[p] << 8) | <int64_t>buf[p + 1]


cdef inline int64_t _be32(const uint8_t *buf, Py_ssize_t p) noexcept nogil:
    return ((<int64_t>buf[p] << 24) | (<int64_t>buf[p + 1] << 16)
            | (<int64_t>buf[p + 2] << 8) | <int64_t>buf[p + 3])


cdef inline int64_t _be64(const uint8_t *buf, Py_ssize_t p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | buf[p + i]
    return <int64_t>v


cdef inline void _clear(int64_t *row, int64_t frame, int64_t ts, int64_t wire) noexcept nogil:
    cdef int c
    for c in range(N_COLS):
        row[c] = 0
    row[C_FRAME] = frame
    row[C_TS] = ts
    row[C_WIRE] = wire
    row[C_VLAN0] = -1
    row[C_VLAN1] = -1
    row[C_PROTO] = -1


cdef inline void _why(int64_t *row, int64_t why, int64_t space, int64_t value) noexcept nogil:
    row[C_WHY] = why
    row[C_WHY_DETAIL] = (space << 32) | (value & <int64_t>0xFFFFFFFF)


cdef inline void _next(
    Next *nx, int what, int kind, Py_ssize_t off, Py_ssize_t end, Py_ssize_t claimed_end
) noexcept nogil:
    nx.off = off
    nx.end = end if end < claimed_end else claimed_end
    nx.wire = claimed_end - off if claimed_end > off else 0
    nx.what = what
    nx.kind = kind


cdef void _gre(
    const uint8_t *buf, int64_t *row, Py_ssize_t p, Py_ssize_t end, Py_ssize_t claimed_end,
    Next *nx,
) noexcept nogil:
    """GRE (RFC 2784/2890) and the ERSPAN types it carries."""
    cdef int64_t flags, ptype, ft
    cdef Py_ssize_t q
    if p + 4 > end:
        _why(row, WHY_SNAPLEN, D_ERR, ERR_ENCAP_SHORT)
        return
    flags = buf[p]
    ptype = _be16(buf, p + 2)
    if (buf[p + 1] & 0x07) != 0:
        # Version 1 is PPTP's enhanced GRE: PPP, mostly compressed or encrypted.
        _why(row, WHY_UNSUPPORTED, D_GRE_TYPE, ptype)
        return
    if flags & 0x40:
        _why(row, WHY_UNSUPPORTED, D_GRE_ROUTING, ptype)
        return
    q = p + 4
    if flags & 0x80:
        q += 4  # checksum and reserved
    if flags & 0x20:
        q += 4  # key
    if flags & 0x10:
        q += 4  # sequence number
    if q > end:
        _why(row, WHY_SNAPLEN, D_ERR, ERR_ENCAP_SHORT)
        return
    if ptype == 0x0800:
        _next(nx, NX_IP4, TUN_GRE, q, end, claimed_end)
    elif ptype == 0x86DD:
        _next(nx, NX_IP6, TUN_GRE, q, end, claimed_end)
    elif ptype == 0x6558:
        _next(nx, NX_ETH, TUN_GRE, q, end, claimed_end)
    elif ptype == 0x8847 or ptype == 0x8848:
        _next(nx, NX_MPLS, TUN_GRE, q, end, claimed_end)
    elif ptype == 0x88BE:
        # ERSPAN type II has an 8-byte header and sets the GRE sequence bit; type I has neither.
        if flags & 0x10:
            q += 8
        if q > end:
            _why(row, WHY_SNAPLEN, D_ERR, ERR_ENCAP_SHORT)
            return
        _next(nx, NX_ETH, TUN_ERSPAN, q, end, claimed_end)
    elif ptype == 0x22EB:
        # ERSPAN type III: 12 bytes, then 8 platform-specific bytes when the O flag is set.
        if q + 12 > end:
            _why(row, WHY_SNAPLEN, D_ERR, ERR_ENCAP_SHORT)
            return
        ft = (buf[q + 10] >> 2) & 0x1F
        if buf[q + 11] & 0x01:
            q += 8
        q += 12
        if q > end:
            _why(row, WHY_SNAPLEN, D_ERR, ERR_ENCAP_SHORT)
            return
        if ft == 0:
            _next(nx, NX_ETH, TUN_ERSPAN, q, end, claimed_end)
        elif ft == 2:
            _next(nx, NX_IP, TUN_ERSPAN, q, end, claimed_end)
        else:
            _why(row, WHY_UNSUPPORTED, D_ERSPAN, ft)
    else:
        _why(row, WHY_UNSUPPORTED, D_GRE_TYPE, ptype)


cdef void _l4(
    const uint8_t *buf, int64_t *row, int64_t proto, Py_ssize_t p, Py_ssize_t end,
    int64_t claimed, Next *nx,
) noexcept nogil:
    """Decode TCP/UDP/ICMP at ``p``; a tunnel's payload is left in ``nx``."""
    cdef int64_t hl, want, have, ulen, n, ptype, sport, dport
    cdef Py_ssize_t pay, inner
    row[C_PROTO] = proto
    if proto == 6:
        if p + 20 > end:
            row[C_ERR] = ERR_L4_SHORT
            return
        hl = (<int64_t>buf[p + 12] >> 4) * 4
        if hl < 20:
            row[C_ERR] = ERR_L4_SHORT
            return
        row[C_SPORT] = _be16(buf, p)
        row[C_DPORT] = _be16(buf, p + 2)
        row[C_SEQ] = _be32(buf, p + 4)
        row[C_ACK] = _be32(buf, p + 8)
        row[C_FLAGS] = buf[p + 13]
        row[C_WINDOW] = _be16(buf, p + 14)
        pay = p + hl
        if pay > end:
            pay = end  # options cut by the snap length: no payload captured
            row[C_TRUNC] = 1
        want = claimed - hl
        if want < 0:
            want = 0
        have = end - pay
        if have < 0:
            have = 0
        row[C_PAY_OFF] = pay
        row[C_L4_LEN] = want
        row[C_PAY_LEN] = want if want < have else have
        return
    if proto == 17:
        if p + 8 > end:
            row[C_ERR] = ERR_L4_SHORT
            return
        sport = _be16(buf, p)
        dport = _be16(buf, p + 2)
        row[C_SPORT] = sport
        row[C_DPORT] = dport
        ulen = _be16(buf, p + 4)
        if 8 <= ulen <= claimed:
            claimed = ulen  # bytes past the UDP length are not its payload
        want = claimed - 8
        if want < 0:
            want = 0
        have = end - p - 8
        if have < 0:
            have = 0
        row[C_PAY_OFF] = p + 8
        row[C_L4_LEN] = want
        n = want if want < have else have
        row[C_PAY_LEN] = n
        if dport == VXLAN_PORT and n >= 8 + 14 and (buf[p + 8] & 0x08):
            _next(nx, NX_ETH, TUN_VXLAN, p + 16, p + 8 + n, p + 8 + want)
        elif dport == GENEVE_PORT and n >= 8 and (buf[p + 8] >> 6) == 0:
            inner = p + 16 + (buf[p + 8] & 0x3F) * 4
            ptype = _be16(buf, p + 10)
            if inner > p + 8 + n:
                _why(row, WHY_SNAPLEN, D_ERR, ERR_ENCAP_SHORT)
            elif ptype == 0x6558:
                _next(nx, NX_ETH, TUN_GENEVE, inner, p + 8 + n, p + 8 + want)
            elif ptype == 0x0800:
                _next(nx, NX_IP4, TUN_GENEVE, inner, p + 8 + n, p + 8 + want)
            elif ptype == 0x86DD:
                _next(nx, NX_IP6, TUN_GENEVE, inner, p + 8 + n, p + 8 + want)
            else:
                _why(row, WHY_UNSUPPORTED, D_GENEVE, ptype)
        elif (dport == L2TP_PORT or sport == L2TP_PORT) and n >= 2 and (
            (buf[p + 9] & 0x0F) == 2 or (buf[p + 9] & 0x0F) == 3
        ):
            _why(row, WHY_UNSUPPORTED, D_UDP_PORT, L2TP_PORT)
        return
    if proto == 1 or proto == 58:
        if p + 4 > end:
            row[C_ERR] = ERR_L4_SHORT
            return
        row[C_ICMP_TYPE] = buf[p]
        row[C_ICMP_CODE] = buf[p + 1]
        if p + 8 <= end:
            row[C_ICMP_REST] = _be32(buf, p + 4)
        want = claimed - 8
        if want < 0:
            want = 0
        pay = p + 8 if p + 8 <= end else end
        have = end - pay
        row[C_PAY_OFF] = pay
        row[C_L4_LEN] = want
        row[C_PAY_LEN] = want if want < have else have
        return
    # Other IP protocols (GRE, ESP, SCTP, ...): no ports.
    row[C_PAY_OFF] = p
    row[C_L4_LEN] = claimed if claimed > 0 else 0
    n = end - p
    row[C_PAY_LEN] = n if n > 0 else 0
    if claimed < 0:
        claimed = 0
    if proto == 47:
        _gre(buf, row, p, end, p + claimed, nx)
    elif proto == 4:
        _next(nx, NX_IP4, TUN_IP4, p, end, p + claimed)
    elif proto == 41:
        _next(nx, NX_IP6, TUN_IP6, p, end, p + claimed)
    elif proto == 137:
        _next(nx, NX_MPLS, TUN_MPLS_IP, p, end, p + claimed)
    elif proto == 50 or proto == 115:
        _why(row, WHY_UNSUPPORTED, D_IP_PROTO, proto)


cdef void _ipv4(
    const uint8_t *buf, int64_t *row, Py_ssize_t p, Py_ssize_t end, Next *nx
) noexcept nogil:
    cdef int64_t vihl, ihl, total, proto, fragword, frag_off, mf
    cdef Py_ssize_t ip_end
    row[C_L3] = L3_IPV4
    if p + 20 > end:
        row[C_ERR] = ERR_IP_SHORT
        return
    vihl = buf[p]
    ihl = (vihl & 0x0F) * 4
    if (vihl >> 4) != 4 or ihl < 20:
        row[C_ERR] = ERR_IP_BAD
        return
    if p + ihl > end:
        row[C_ERR] = ERR_IP_SHORT
        return
    total = _be16(buf, p + 2)
    if total == 0:
        total = end - p  # segmentation offload: the header leaves it zero
    if total < ihl:
        row[C_ERR] = ERR_IP_BAD
        return
    ip_end = p + total
    if ip_end > end:
        row[C_TRUNC] = 1
        ip_end = end
    row[C_SRC_HI] = 0
    row[C_SRC_LO] = _V4_LO | _be32(buf, p + 12)
    row[C_DST_HI] = 0
    row[C_DST_LO] = _V4_LO | _be32(buf, p + 16)
    row[C_L3_OFF] = p
    row[C_L3_LEN] = ip_end - p
    proto = buf[p + 9]
    fragword = _be16(buf, p + 6)
    frag_off = (fragword & 0x1FFF) * 8
    mf = (fragword >> 13) & 1
    row[C_IPID] = _be16(buf, p + 4)
    if frag_off != 0 or mf:
        row[C_PROTO] = proto
        row[C_FRAG] = 1
        row[C_FRAG_OFF] = frag_off
        row[C_MF] = mf
        row[C_PAY_OFF] = p + ihl
        row[C_L4_LEN] = total - ihl
        row[C_PAY_LEN] = ip_end - p - ihl
        return
    _l4(buf, row, proto, p + ihl, ip_end, total - ihl, nx)


cdef void _ipv6(
    const uint8_t *buf, int64_t *row, Py_ssize_t p, Py_ssize_t end, Next *nx
) noexcept nogil:
    cdef int64_t plen, nh, remaining, hlen, fo, frag_off, mf, ident, nxt, n
    cdef Py_ssize_t ip_end, q
    cdef int step
    row[C_L3] = L3_IPV6
    if p + 40 > end:
        row[C_ERR] = ERR_IP_SHORT
        return
    if (buf[p] >> 4) != 6:
        row[C_ERR] = ERR_IP_BAD
        return
    plen = _be16(buf, p + 4)
    if plen == 0:
        plen = end - p - 40  # jumbogram or offload: use what was captured
    ip_end = p + 40 + plen
    if ip_end > end:
        row[C_TRUNC] = 1
        ip_end = end
    row[C_SRC_HI] = _be64(buf, p + 8)
    row[C_SRC_LO] = _be64(buf, p + 16)
    row[C_DST_HI] = _be64(buf, p + 24)
    row[C_DST_LO] = _be64(buf, p + 32)
    row[C_L3_OFF] = p
    row[C_L3_LEN] = ip_end - p
    nh = buf[p + 6]
    q = p + 40
    remaining = plen
    # Extension headers, bounded: a chain longer than this is crafted input.
    for step in range(16):
        if nh == 0 or nh == 43 or nh == 60 or nh == 135 or nh == 139 or nh == 140:
            if q + 8 > ip_end:
                row[C_ERR] = ERR_IP_SHORT
                return
            hlen = (<int64_t>buf[q + 1] + 1) * 8
            nh = buf[q]
            q += hlen
            remaining -= hlen
        elif nh == 51:  # AH: length in 4-octet units minus 2
            if q + 8 > ip_end:
                row[C_ERR] = ERR_IP_SHORT
                return
            hlen = (<int64_t>buf[q + 1] + 2) * 4
            nh = buf[q]
            q += hlen
            remaining -= hlen
        elif nh == 44:
            if q + 8 > ip_end:
                row[C_ERR] = ERR_IP_SHORT
                return
            fo = _be16(buf, q + 2)
            frag_off = fo & 0xFFF8
            mf = fo & 1
            ident = _be32(buf, q + 4)
            nxt = buf[q]
            q += 8
            remaining -= 8
            if frag_off == 0 and mf == 0:
                nh = nxt  # atomic fragment (RFC 6946): not really fragmented
                continue
            row[C_PROTO] = nxt
            row[C_FRAG] = 1
            row[C_IPID] = ident
            row[C_FRAG_OFF] = frag_off
            row[C_MF] = mf
            row[C_PAY_OFF] = q
            row[C_L4_LEN] = remaining if remaining > 0 else 0
            n = ip_end - q
            row[C_PAY_LEN] = n if n > 0 else 0
            return
        else:
            break
        if remaining < 0 or q > ip_end:
            row[C_ERR] = ERR_IP_BAD
            return
    _l4(buf, row, nh, q, ip_end, remaining, nx)


cdef void _not_ip(int64_t *row, int64_t l3, int64_t why, int64_t space, int64_t value) noexcept nogil:
    row[C_L3] = l3
    _why(row, why, space, value)


cdef inline bint _pw_ethertype(int64_t etype) noexcept nogil:
    return (etype == 0x0800 or etype == 0x86DD or etype == 0x8100 or etype == 0x88A8
            or etype == 0x0806 or etype == 0x8847)


cdef void _mpls(
    const uint8_t *buf, int64_t *row, Py_ssize_t p, Py_ssize_t end, int lvl, Next *nx
) noexcept nogil:
    """An MPLS label stack, then IPv4/IPv6 by the version nibble or a pseudowire's Ethernet."""
    cdef int i, nib
    for i in range(MAX_LABELS):
        if p + 4 > end:
            row[C_ERR] = ERR_LINK_SHORT
            return
        p += 4
        if buf[p - 2] & 0x01:  # bottom of stack
            break
    else:
        _not_ip(row, L3_OTHER, WHY_MALFORMED, D_ERR, ERR_ENCAP_BAD)
        return
    if p >= end:
        row[C_ERR] = ERR_LINK_SHORT
        return
    nib = buf[p] >> 4
    if nib == 4:
        _ipv4(buf, row, p, end, nx)
    elif nib == 6:
        _ipv6(buf, row, p, end, nx)
    elif nib == 0:
        # An Ethernet pseudowire (RFC 4448), with or without its 4-byte control word: the
        # ethertype where each reading puts it decides, as Wireshark's heuristic does.
        if p + 18 <= end and _pw_ethertype(_be16(buf, p + 16)):
            _ethernet(buf, row, p + 4, end, lvl + 1, nx)
        elif p + 14 <= end and _pw_ethertype(_be16(buf, p + 12)):
            _ethernet(buf, row, p, end, lvl + 1, nx)
        elif p + 18 > end:
            row[C_ERR] = ERR_LINK_SHORT
        else:
            _not_ip(row, L3_OTHER, WHY_UNSUPPORTED, D_MPLS, nib)
    else:
        _not_ip(row, L3_OTHER, WHY_UNSUPPORTED, D_MPLS, nib)


cdef void _pppoe(
    const uint8_t *buf, int64_t *row, Py_ssize_t p, Py_ssize_t end, int lvl, Next *nx
) noexcept nogil:
    """A PPPoE session frame (RFC 2516) and the PPP packet in it."""
    cdef int64_t proto
    cdef Py_ssize_t q, stop
    if p + 8 > end:
        row[C_ERR] = ERR_LINK_SHORT
        return
    if buf[p] != 0x11 or buf[p + 1] != 0:
        _not_ip(row, L3_OTHER, WHY_MALFORMED, D_ERR, ERR_ENCAP_BAD)
        return
    stop = p + 6 + _be16(buf, p + 4)
    if stop < end:
        end = stop  # Ethernet padding is not part of the PPP packet
    q = p + 6
    if q >= end:
        row[C_ERR] = ERR_LINK_SHORT
        return
    if buf[q] & 0x01:
        proto = buf[q]  # protocol field compression: one byte
        q += 1
    else:
        if q + 2 > end:
            row[C_ERR] = ERR_LINK_SHORT
            return
        proto = _be16(buf, q)
        q += 2
    if proto == 0x0021:
        _ipv4(buf, row, q, end, nx)
    elif proto == 0x0057:
        _ipv6(buf, row, q, end, nx)
    elif proto == 0x0281:
        _mpls(buf, row, q, end, lvl + 1, nx)
    elif proto >= 0x8000:
        _not_ip(row, L3_OTHER, WHY_NOT_IP, D_PPP, proto)
    else:
        _not_ip(row, L3_OTHER, WHY_UNSUPPORTED, D_PPP, proto)


cdef void _ethertype(
    const uint8_t *buf, int64_t *row, int64_t etype, Py_ssize_t p, Py_ssize_t end, int lvl,
    Next *nx,
) noexcept nogil:
    cdef int i
    if etype == 0x0800:
        _ipv4(buf, row, p, end, nx)
        return
    if etype == 0x86DD:
        _ipv6(buf, row, p, end, nx)
        return
    if etype == 0x0806:
        _not_ip(row, L3_ARP, WHY_NOT_IP, D_ETHERTYPE, etype)
        return
    if etype < 0x0600:
        # An 802.3 length (or a Linux cooked capture's 802.2 protocol): LLC, STP and such.
        _not_ip(row, L3_OTHER, WHY_NOT_IP, D_LLC, buf[p] if p < end else 0x100)
        return
    if lvl >= MAX_LINK_NESTING:
        _not_ip(row, L3_OTHER, WHY_UNSUPPORTED, D_DEPTH, lvl)
        return
    if etype == 0x8847 or etype == 0x8848:
        _mpls(buf, row, p, end, lvl, nx)
        return
    if etype == 0x8864:
        _pppoe(buf, row, p, end, lvl, nx)
        return
    for i in range(_N_NOT_IP):
        if _NOT_IP[i] == etype:
            _not_ip(row, L3_OTHER, WHY_NOT_IP, D_ETHERTYPE, etype)
            return
    for i in range(_N_UNSUPPORTED):
        if _UNSUPPORTED[i] == etype:
            _not_ip(row, L3_OTHER, WHY_UNSUPPORTED, D_ETHERTYPE, etype)
            return
    _not_ip(row, L3_OTHER, WHY_UNKNOWN_ETHERTYPE, D_ETHERTYPE, etype)


cdef void _ethernet(
    const uint8_t *buf, int64_t *row, Py_ssize_t p, Py_ssize_t end, int lvl, Next *nx
) noexcept nogil:
    cdef int64_t etype, vid
    cdef int depth = 0
    if p + 14 > end:
        row[C_ERR] = ERR_LINK_SHORT
        return
    etype = _be16(buf, p + 12)
    p += 14
    # 802.1Q, 802.1ad and the old 0x9100 QinQ tag, to any depth (bounded).
    while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and depth < 8:
        if p + 4 > end:
            row[C_ERR] = ERR_LINK_SHORT
            return
        vid = _be16(buf, p) & 0x0FFF
        # VID 0 is a priority tag (802.1p), not a VLAN.
        if vid != 0:
            if row[C_VLAN0] < 0:
                row[C_VLAN0] = vid
            elif row[C_VLAN1] < 0:
                row[C_VLAN1] = vid
        etype = _be16(buf, p + 2)
        p += 4
        depth += 1
    _ethertype(buf, row, etype, p, end, lvl, nx)


cdef void _by_version(
    const uint8_t *buf, int64_t *row, Py_ssize_t p, Py_ssize_t end, Next *nx
) noexcept nogil:
    cdef int v
    if p >= end:
        row[C_ERR] = ERR_LINK_SHORT
        return
    v = buf[p] >> 4
    if v == 4:
        _ipv4(buf, row, p, end, nx)
    elif v == 6:
        _ipv6(buf, row, p, end, nx)
    else:
        row[C_ERR] = ERR_IP_BAD


cdef void _null_family(
    const uint8_t *buf, int64_t *row, Py_ssize_t p, Py_ssize_t end, bint big, Next *nx
) noexcept nogil:
    cdef int64_t fam
    if p + 4 > end:
        row[C_ERR] = ERR_LINK_SHORT
        return
    if big:
        fam = _be32(buf, p)
    else:
        fam = (<int64_t>buf[p] | (<int64_t>buf[p + 1] << 8)
               | (<int64_t>buf[p + 2] << 16) | (<int64_t>buf[p + 3] << 24))
    if fam > 0xFFFF:
        # Written on a machine of the other byte order.
        fam = ((fam >> 24) & 0xFF) | ((fam >> 8) & 0xFF00)
    if fam == 2:
        _ipv4(buf, row, p + 4, end, nx)
    elif fam == 24 or fam == 28 or fam == 30 or fam == 10:
        _ipv6(buf, row, p + 4, end, nx)
    else:
        _not_ip(row, L3_OTHER, WHY_NOT_IP, D_FAMILY, fam)


cdef void _link(
    const uint8_t *buf, int64_t *row, int64_t link, Py_ssize_t p, Py_ssize_t end, Next *nx
) noexcept nogil:
    if link == 1:
        _ethernet(buf, row, p, end, 0, nx)
    elif link == 0:
        _null_family(buf, row, p, end, False, nx)
    elif link == 108:
        _null_family(buf, row, p, end, True, nx)
    elif link == 101 or link == 12 or link == 14:
        _by_version(buf, row, p, end, nx)
    elif link == 228:
        _ipv4(buf, row, p, end, nx)
    elif link == 229:
        _ipv6(buf, row, p, end, nx)
    elif link == 113:
        if p + 16 > end:
            row[C_ERR] = ERR_LINK_SHORT
            return
        _ethertype(buf, row, _be16(buf, p + 14), p + 16, end, 0, nx)
    elif link == 276:
        if p + 20 > end:
            row[C_ERR] = ERR_LINK_SHORT
            return
        _ethertype(buf, row, _be16(buf, p), p + 20, end, 0, nx)
    else:
        row[C_ERR] = ERR_LINKTYPE


cdef void _inner(const uint8_t *buf, int64_t *row, Next *nx) noexcept nogil:
    """Decode the payload of the tunnel ``nx`` into ``row``; ``nx`` becomes the next level."""
    cdef int what = nx.what
    cdef Py_ssize_t p = nx.off
    cdef Py_ssize_t end = nx.end
    nx.off = -1
    if what == NX_ETH:
        _ethernet(buf, row, p, end, 0, nx)
    elif what == NX_IP4:
        _ipv4(buf, row, p, end, nx)
    elif what == NX_IP6:
        _ipv6(buf, row, p, end, nx)
    elif what == NX_MPLS:
        _mpls(buf, row, p, end, 0, nx)
    else:
        _by_version(buf, row, p, end, nx)


cdef void _reason(int64_t *row, bint cut, int64_t link) noexcept nogil:
    """Why the frame whose last row is ``row`` was not decoded to its end (if it was not)."""
    cdef int64_t err = row[C_ERR]
    if err != 0 and row[C_WHY] == WHY_NONE:
        if err == ERR_LINKTYPE:
            _why(row, WHY_UNSUPPORTED, D_LINKTYPE, link)
        elif err == ERR_IP_BAD:
            _why(row, WHY_MALFORMED, D_ERR, err)
        else:
            _why(row, WHY_SNAPLEN, D_ERR, err)
    if row[C_WHY] == WHY_SNAPLEN and not cut:
        row[C_WHY] = WHY_MALFORMED  # cut short although the frame was captured whole


cdef extern from *:
    # GCC's and clang's hint to start loading a cache line; it never faults.
    void _prefetch "__builtin_prefetch"(const void *addr) nogil

cdef enum:
    # Frames ahead whose first bytes are asked for while one is decoded.
    PREFETCH_AHEAD = 8


def decode_frames(
    const uint8_t[::1] buf,
    const int64_t[::1] off,
    const int32_t[::1] caplen,
    const int32_t[::1] wirelen,
    const int64_t[::1] ts_ns,
    const int32_t[::1] linktype,
    int64_t[:, ::1] rec,
    Py_ssize_t start=0,
):
    """Decode frames ``start``, ``start + 1``... into ``rec`` while it has room for all the
    rows one frame can take (ROWS_PER_FRAME); return (rows written, next frame to decode).

    Most frames take one row, so a record array a little longer than the frame count holds
    a whole batch; the caller grows it and calls again from the returned frame when not.
    C_FRAME holds each frame's index in the arrays.
    """
    cdef Py_ssize_t n = off.shape[0]
    if (caplen.shape[0] != n or wirelen.shape[0] != n or ts_ns.shape[0] != n
            or linktype.shape[0] != n):
        raise ValueError("decode_frames: the per-frame arrays differ in length")
    if rec.shape[1] != N_COLS:
        raise ValueError(f"decode_frames: records need {N_COLS} columns, not {rec.shape[1]}")
    if start < 0 or start > n:
        raise ValueError(f"decode_frames: start frame {start} outside the {n} frames")
    if start < n and rec.shape[0] < ROWS_PER_FRAME:
        raise ValueError(
            f"decode_frames: {rec.shape[0]} record rows (one frame may need {ROWS_PER_FRAME})"
        )
    cdef Py_ssize_t room = rec.shape[0] - ROWS_PER_FRAME
    cdef Py_ssize_t blen = buf.shape[0]
    cdef const uint8_t *b = &buf[0] if blen > 0 else NULL
    cdef Py_ssize_t i = start, p, end
    cdef Py_ssize_t k = 0
    cdef int64_t *row
    cdef int64_t *outer
    cdef int depth
    cdef Next nx
    if blen == 0:
        # Nothing to read: every frame is empty.
        while i < n and k <= room:
            row = &rec[k, 0]
            _clear(row, i, ts_ns[i], wirelen[i])
            row[C_ERR] = ERR_LINK_SHORT
            _reason(row, caplen[i] < wirelen[i], linktype[i])
            k += 1
            i += 1
        return k, i
    cdef Py_ssize_t ahead
    with nogil:
        while i < n and k <= room:
            # The walk that found these frames has long left them: a batch is tens of MB,
            # and reading a frame's first bytes stalled on memory for most of the decoding
            # time. Asking for the frame PREFETCH_AHEAD frames on hides that wait.
            if i + PREFETCH_AHEAD < n:
                ahead = off[i + PREFETCH_AHEAD]
                if 0 <= ahead < blen - 64:
                    _prefetch(b + ahead)
                    _prefetch(b + ahead + 64)
            p = off[i]
            row = &rec[k, 0]
            _clear(row, i, ts_ns[i], wirelen[i])
            k += 1
            if p < 0 or p > blen or caplen[i] < 0:
                row[C_ERR] = ERR_LINK_SHORT  # a frame outside the buffer: nothing to read
                _why(row, WHY_MALFORMED, D_ERR, ERR_LINK_SHORT)
                i += 1
                continue
            end = p + caplen[i]
            if end > blen:
                end = blen
            nx.off = -1
            _link(b, row, linktype[i], p, end, &nx)
            # Each tunnel's payload is a packet of its own (as Zeek and tshark see it),
            # which remembers the endpoints of the packet that carried it.
            depth = 0
            while nx.off >= 0:
                if depth == MAX_TUNNEL_DEPTH:
                    _why(row, WHY_UNSUPPORTED, D_DEPTH, depth)
                    break
                outer = row
                row = &rec[k, 0]
                _clear(row, i, ts_ns[i], nx.wire)
                k += 1
                row[C_TUNNEL] = 1
                row[C_TUN_KIND] = nx.kind
                row[C_TUN_SRC_HI] = outer[C_SRC_HI]
                row[C_TUN_SRC_LO] = outer[C_SRC_LO]
                row[C_TUN_DST_HI] = outer[C_DST_HI]
                row[C_TUN_DST_LO] = outer[C_DST_LO]
                _inner(b, row, &nx)
                depth += 1
            _reason(row, caplen[i] < wirelen[i], linktype[i])
            i += 1
    return k, i


cpdef enum:
    # Slots of the counts tally_records() adds up.
    T_IPV4 = 0
    T_IPV6 = 1
    T_ARP = 2
    T_OTHER_L2 = 3
    T_TUNNELLED = 4
    T_TRUNCATED = 5
    T_ERRORS = 6  # rows with a decode error
    T_STOPPED = 7  # rows that carry a reason in C_WHY
    T_TS_MIN = 8
    T_TS_MAX = 9
    N_TALLY = 10


def tally_records(const int64_t[:, ::1] rec, Py_ssize_t k, int64_t[::1] out):
    """Count decoded records ``rec[:k]`` into ``out`` (N_TALLY slots) in one pass.

    The per-batch statistics otherwise take a dozen whole-column passes over strided rows.
    Counts are added; the time slots hold the batch's earliest and latest stamps (zero when
    ``k`` is 0).
    """
    if rec.shape[1] != N_COLS:
        raise ValueError(f"tally_records: records need {N_COLS} columns, not {rec.shape[1]}")
    if k < 0 or k > rec.shape[0]:
        raise ValueError(f"tally_records: {k} rows asked of {rec.shape[0]}")
    if out.shape[0] < N_TALLY:
        raise ValueError(f"tally_records: the tally needs {N_TALLY} slots")
    cdef Py_ssize_t i
    cdef const int64_t *row
    cdef int64_t l3, lo, hi
    cdef int64_t c4 = 0, c6 = 0, arp = 0, other = 0, tun = 0, trunc = 0, errs = 0, stopped = 0
    if k == 0:
        out[T_TS_MIN] = 0
        out[T_TS_MAX] = 0
        return
    lo = rec[0, C_TS]
    hi = lo
    with nogil:
        for i in range(k):
            row = &rec[i, 0]
            l3 = row[C_L3]
            if row[C_ERR] == 0:
                if l3 == L3_IPV4:
                    c4 += 1
                elif l3 == L3_IPV6:
                    c6 += 1
            else:
                errs += 1
            if l3 == L3_ARP:
                arp += 1
            elif l3 == L3_OTHER:
                other += 1
            if row[C_TUNNEL] != 0:
                tun += 1
            if row[C_TRUNC] != 0:
                trunc += 1
            if row[C_WHY] != 0:
                stopped += 1
            if row[C_TS] < lo:
                lo = row[C_TS]
            elif row[C_TS] > hi:
                hi = row[C_TS]
    out[T_IPV4] += c4
    out[T_IPV6] += c6
    out[T_ARP] += arp
    out[T_OTHER_L2] += other
    out[T_TUNNELLED] += tun
    out[T_TRUNCATED] += trunc
    out[T_ERRORS] += errs
    out[T_STOPPED] += stopped
    out[T_TS_MIN] = lo
    out[T_TS_MAX] = hi
