"""Types of the compiled packet decoder (packet_kernel.pyx)."""

import numpy as np

C_FRAME: int
C_TS: int
C_WIRE: int
C_L3: int
C_ERR: int
C_VLAN0: int
C_VLAN1: int
C_SRC_HI: int
C_SRC_LO: int
C_DST_HI: int
C_DST_LO: int
C_PROTO: int
C_SPORT: int
C_DPORT: int
C_FLAGS: int
C_SEQ: int
C_ACK: int
C_PAY_OFF: int
C_PAY_LEN: int
C_L4_LEN: int
C_FRAG: int
C_IPID: int
C_FRAG_OFF: int
C_MF: int
C_L3_OFF: int
C_L3_LEN: int
C_TUNNEL: int
C_TRUNC: int
C_WINDOW: int
C_TUN_KIND: int
C_TUN_SRC_HI: int
C_TUN_SRC_LO: int
C_TUN_DST_HI: int
C_TUN_DST_LO: int
C_WHY: int
C_WHY_DETAIL: int
C_ICMP_TYPE: int
C_ICMP_CODE: int
C_ICMP_REST: int
N_COLS: int
L3_NONE: int
L3_IPV4: int
L3_IPV6: int
L3_ARP: int
L3_OTHER: int
ERR_NONE: int
ERR_LINK_SHORT: int
ERR_LINKTYPE: int
ERR_IP_SHORT: int
ERR_IP_BAD: int
ERR_L4_SHORT: int
ERR_ENCAP_SHORT: int
ERR_ENCAP_BAD: int
ERR_NAMES: dict[int, str]
TUN_NONE: int
TUN_VXLAN: int
TUN_GENEVE: int
TUN_GRE: int
TUN_ERSPAN: int
TUN_IP4: int
TUN_IP6: int
TUN_MPLS_IP: int
TUNNEL_NAMES: dict[int, str]
WHY_NONE: int
WHY_NOT_IP: int
WHY_UNKNOWN_ETHERTYPE: int
WHY_UNSUPPORTED: int
WHY_SNAPLEN: int
WHY_MALFORMED: int
WHY_NAMES: dict[int, str]
D_NONE: int
D_ETHERTYPE: int
D_LLC: int
D_PPP: int
D_IP_PROTO: int
D_GRE_TYPE: int
D_GRE_ROUTING: int
D_UDP_PORT: int
D_MPLS: int
D_DEPTH: int
D_LINKTYPE: int
D_FAMILY: int
D_GENEVE: int
D_ERSPAN: int
D_ERR: int
MAX_TUNNEL_DEPTH: int
ROWS_PER_FRAME: int
NOT_IP_ETHERTYPES: dict[int, str]
UNSUPPORTED_ETHERTYPES: dict[int, str]
LLC_NAMES: dict[int, str]
PPP_NAMES: dict[int, str]
IP_PROTO_NAMES: dict[int, str]
UDP_PORT_NAMES: dict[int, str]
V4_MAPPED_HI: int
V4_MAPPED_LO: int
VXLAN_PORT: int
GENEVE_PORT: int
L2TP_PORT: int

def decode_frames(
    buf: np.ndarray,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts_ns: np.ndarray,
    linktype: np.ndarray,
    rec: np.ndarray,
    start: int = 0,
) -> tuple[int, int]: ...

T_IPV4: int
T_IPV6: int
T_ARP: int
T_OTHER_L2: int
T_TUNNELLED: int
T_TRUNCATED: int
T_ERRORS: int
T_STOPPED: int
T_TS_MIN: int
T_TS_MAX: int
N_TALLY: int

def tally_records(rec: np.ndarray, k: int, out: np.ndarray) -> None: ...
