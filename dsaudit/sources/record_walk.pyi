"""Types of the compiled record walkers (record_walk.pyx)."""

import numpy as np

NEED_MORE: int
BATCH_FULL: int
BAD_RECORD: int
PYTHON_BLOCK: int
TS_OVERFLOW: int
TS_MISSING: int

def walk_pcap(
    buf: np.ndarray,
    pos: int,
    end: int,
    big: bool,
    nsec: bool,
    max_caplen: int,
    linktype: int,
    base: int,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts_ns: np.ndarray,
    links: np.ndarray,
    file_off: np.ndarray,
    k: int,
) -> tuple[int, int, int]: ...
def walk_pcapng(
    buf: np.ndarray,
    pos: int,
    end: int,
    big: bool,
    if_link: np.ndarray,
    if_mul: np.ndarray,
    if_div: np.ndarray,
    if_shift: np.ndarray,
    if_tsoff: np.ndarray,
    if_snap: np.ndarray,
    last_ts: int,
    base: int,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts_ns: np.ndarray,
    links: np.ndarray,
    file_off: np.ndarray,
    k: int,
    ts_bad: np.ndarray,
) -> tuple[int, int, int, int]: ...
