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
ERR_NAMES: dict[int, str]
V4_MAPPED_HI: int
V4_MAPPED_LO: int
VXLAN_PORT: int

def decode_frames(
    buf: np.ndarray,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts_ns: np.ndarray,
    linktype: np.ndarray,
    rec: np.ndarray,
) -> int: ...
