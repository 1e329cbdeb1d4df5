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
    C_SPORT = 12  # TCP/UDP port, or ICMP type
    C_DPORT = 13  # TCP/UDP port, or ICMP code
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
    N_COLS = 29

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
