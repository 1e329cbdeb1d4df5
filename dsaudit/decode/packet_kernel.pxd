# cython: language_level=3
# The record layout the decoder writes, shared with the flow table kernel at compile time.

cpdef enum:
    C_FRAME = 0  # index of the frame in its batch
    C_TS = 1  # nanoseconds since the epoch
    C_WIRE = 2  # frame length on the wire
    C_L3 = 3  # L3_* kind
    C_ERR = 4  # ERR_* (0 = decoded)
    C_VLAN0 = 5  # outer VLAN id or -1
    C_VLAN1 = 6  # inner VLAN id or -1
    C_SRC_HI = 7
    C_SRC_LO = 8
    C_DST_HI = 9
    C_DST_LO = 10
    C_PROTO = 11  # IP protocol number (-1 if none)
    C_SPORT = 12  # TCP/UDP source port
    C_DPORT = 13  # TCP/UDP destination port
    C_FLAGS = 14  # TCP flags
    C_SEQ = 15
    C_ACK = 16
    C_PAY_OFF = 17  # offset of the L4 payload in the batch buffer
    C_PAY_LEN = 18  # payload bytes actually captured
    C_L4_LEN = 19  # payload length claimed by the IP header
    C_FRAG = 20  # 1 if this is a fragment that needs reassembly
    C_IPID = 21
    C_FRAG_OFF = 22  # fragment offset in bytes
    C_MF = 23  # more-fragments flag
    C_L3_OFF = 24  # offset of the IP header
    C_L3_LEN = 25  # captured bytes from the IP header to the end of the IP packet
    C_TUNNEL = 26  # 1 for the inner packet of a tunnel
    C_TRUNC = 27  # 1 if the snaplen cut the IP packet short
    C_WINDOW = 28  # TCP window
    C_TUN_KIND = 29  # TUN_* of the tunnel that carried this packet (0 = none)
    C_TUN_SRC_HI = 30  # source of the IP packet that carried the tunnel
    C_TUN_SRC_LO = 31
    C_TUN_DST_HI = 32  # its destination
    C_TUN_DST_LO = 33
    C_WHY = 34  # WHY_*: why the frame was not decoded to its end, on the row where it stopped
    C_WHY_DETAIL = 35  # D_* space << 32 | value: what the WHY_* is about
    # ICMP and ICMPv6 rows only (zero on others): type, code, and the header's second 32-bit
    # word (echo identifier << 16 | sequence; the next-hop MTU in its low 16 bits for an IPv4
    # fragmentation-needed; the MTU of an IPv6 packet-too-big).
    C_ICMP_TYPE = 36
    C_ICMP_CODE = 37
    C_ICMP_REST = 38
    N_COLS = 39

cpdef enum:
    L3_NONE = 0
    L3_IPV4 = 4
    L3_IPV6 = 6
    L3_ARP = 3
    L3_OTHER = 9  # a link-layer frame that carries no IP (LLDP, STP, ...)

cpdef enum:
    ERR_NONE = 0
    ERR_LINK_SHORT = 1
    ERR_LINKTYPE = 2
    ERR_IP_SHORT = 3
    ERR_IP_BAD = 4
    ERR_L4_SHORT = 5
    ERR_ENCAP_SHORT = 6  # only in C_WHY_DETAIL: a tunnel header inside IP cut short
    ERR_ENCAP_BAD = 7  # only in C_WHY_DETAIL: an invalid encapsulation header

# Tunnels whose inner packet is decoded as a packet of its own (a row with C_TUNNEL = 1).
cpdef enum:
    TUN_NONE = 0
    TUN_VXLAN = 1
    TUN_GENEVE = 2
    TUN_GRE = 3
    TUN_ERSPAN = 4
    TUN_IP4 = 5  # IP protocol 4: IPv4 in IPv4 or IPv6
    TUN_IP6 = 6  # IP protocol 41: IPv6 in IPv4 or IPv6
    TUN_MPLS_IP = 7  # IP protocol 137: MPLS in IP

# Why a frame was not decoded into a flow (to its innermost packet).
cpdef enum:
    WHY_NONE = 0
    WHY_NOT_IP = 1  # ARP, LLDP, STP, PPP control...: a known protocol that is not IP
    WHY_UNKNOWN_ETHERTYPE = 2
    WHY_UNSUPPORTED = 3  # an encapsulation the decoder does not open
    WHY_SNAPLEN = 4  # a header cut by the capture's snap length
    WHY_MALFORMED = 5  # a header cut or invalid although the frame was captured whole

# The space a C_WHY_DETAIL value belongs to (the high 32 bits).
cpdef enum:
    D_NONE = 0
    D_ETHERTYPE = 1
    D_LLC = 2  # 802.3 frame: the DSAP
    D_PPP = 3  # PPP protocol number
    D_IP_PROTO = 4
    D_GRE_TYPE = 5  # GRE protocol type
    D_GRE_ROUTING = 6  # GRE with the (deprecated) routing bit
    D_UDP_PORT = 7  # a UDP encapsulation known by its port (L2TP)
    D_MPLS = 8  # first nibble after the label stack
    D_DEPTH = 9  # tunnels nested deeper than MAX_TUNNEL_DEPTH
    D_LINKTYPE = 10
    D_FAMILY = 11  # BSD loopback address family
    D_GENEVE = 12  # Geneve protocol type
    D_ERSPAN = 13  # ERSPAN type III frame type
    D_ERR = 14  # ERR_* code

cpdef enum:
    MAX_TUNNEL_DEPTH = 3
    ROWS_PER_FRAME = 4  # the outer packet and up to MAX_TUNNEL_DEPTH inner ones
