"""Compiled walkers that find pcap and pcapng records in a buffer.

Hand-written because walking record headers is inherently sequential (each header says
where the next one starts): a Python loop tops out near 860k records/s, which alone would
use most of the engine's time budget. numba compiles these loops to machine code.
Every read is bounds-checked against ``end``: the input is untrusted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Walk outcomes.
NEED_MORE = 0  # ran out of bytes inside a record (more data may follow)
BATCH_FULL = 1  # output arrays are full
BAD_RECORD = 2  # a record header is impossible; the file is damaged here
PYTHON_BLOCK = 3  # pcapng: a block Python must handle (SHB, IDB) starts here


@njit(cache=True, nogil=True, inline="always")
def _u32(buf: np.ndarray, pos: int, big: bool) -> int:
    if big:
        return (
            (np.int64(buf[pos]) << 24)
            | (np.int64(buf[pos + 1]) << 16)
            | (np.int64(buf[pos + 2]) << 8)
            | np.int64(buf[pos + 3])
        )
    return (
        np.int64(buf[pos])
        | (np.int64(buf[pos + 1]) << 8)
        | (np.int64(buf[pos + 2]) << 16)
        | (np.int64(buf[pos + 3]) << 24)
    )


@njit(cache=True, nogil=True, inline="always")
def _u16(buf: np.ndarray, pos: int, big: bool) -> int:
    if big:
        return (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
    return np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)


@njit(cache=True, nogil=True)
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
) -> tuple[int, int, int]:
    """Append records from ``buf[pos:end]`` at index ``k``; return (k, pos, outcome)."""
    cap_out = off.shape[0]
    while True:
        if pos + 16 > end:
            return k, pos, NEED_MORE
        cl = _u32(buf, pos + 8, big)
        if cl > max_caplen:
            return k, pos, BAD_RECORD
        if pos + 16 + cl > end:
            return k, pos, NEED_MORE
        if k >= cap_out:
            return k, pos, BATCH_FULL
        sec = _u32(buf, pos, big)
        frac = _u32(buf, pos + 4, big)
        wl = _u32(buf, pos + 12, big)
        off[k] = pos + 16
        caplen[k] = cl
        wirelen[k] = wl if wl >= cl and wl < 0x7FFFFFFF else cl
        ts_ns[k] = sec * 1_000_000_000 + (frac if nsec else frac * 1000)
        links[k] = linktype
        file_off[k] = base + pos
        k += 1
        pos += 16 + cl


@njit(cache=True, nogil=True)
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
) -> tuple[int, int, int, int]:
    """Append packets from pcapng blocks; return (k, pos, outcome, last_ts).

    Enhanced, Simple and obsolete Packet Blocks are decoded here; every other block type
    except SHB and IDB is skipped by its length. Timestamps are ticks scaled per interface
    by ``if_mul / if_div`` nanoseconds plus ``if_tsoff`` seconds.
    """
    cap_out = off.shape[0]
    nif = if_link.shape[0]
    while True:
        if pos + 12 > end:
            return k, pos, NEED_MORE, last_ts
        btype = _u32(buf, pos, big)
        blen = _u32(buf, pos + 4, big)
        if btype == 0x0A0D0D0A or btype == 1:
            return k, pos, PYTHON_BLOCK, last_ts
        if blen < 12 or blen % 4 != 0 or blen > 0x4000000:
            return k, pos, BAD_RECORD, last_ts
        if pos + blen > end:
            return k, pos, NEED_MORE, last_ts
        if _u32(buf, pos + blen - 4, big) != blen:
            return k, pos, BAD_RECORD, last_ts
        if btype == 6 or btype == 2 or btype == 3:
            if k >= cap_out:
                return k, pos, BATCH_FULL, last_ts
            if btype == 3:
                if blen < 16:
                    return k, pos, BAD_RECORD, last_ts
                iface = 0
                if nif == 0:
                    return k, pos, BAD_RECORD, last_ts
                wl = _u32(buf, pos + 8, big)
                # The data field is padded to 32 bits: the captured length is the packet
                # length cut to the interface's snap length, not the field's size.
                cl = blen - 16
                if wl < cl:
                    cl = wl
                if if_snap[0] > 0 and if_snap[0] < cl:
                    cl = if_snap[0]
                data = pos + 12
                t = last_ts
            else:
                if blen < 32:
                    return k, pos, BAD_RECORD, last_ts
                if btype == 6:
                    iface = _u32(buf, pos + 8, big)
                else:
                    iface = _u16(buf, pos + 8, big)
                hi = _u32(buf, pos + 12, big)
                lo = _u32(buf, pos + 16, big)
                cl = _u32(buf, pos + 20, big)
                wl = _u32(buf, pos + 24, big)
                data = pos + 28
                if cl > blen - 32:
                    return k, pos, BAD_RECORD, last_ts
                if iface >= nif:
                    return k, pos, BAD_RECORD, last_ts
                ticks = (hi << 32) | lo
                shift = if_shift[iface]
                if shift >= 0:
                    # Binary resolution 2**-shift, in integers so nanoseconds stay exact.
                    frac = ticks & ((np.int64(1) << shift) - 1)
                    s = shift
                    if s > 33:
                        frac >>= s - 33
                        s = 33
                    t = (ticks >> shift) * 1_000_000_000 + ((frac * 1_000_000_000) >> s)
                elif if_div[iface] == 1:
                    t = ticks * if_mul[iface]
                else:
                    t = ticks // if_div[iface]
                t += if_tsoff[iface] * 1_000_000_000
                last_ts = t
            if iface >= nif:
                return k, pos, BAD_RECORD, last_ts
            off[k] = data
            caplen[k] = cl
            wirelen[k] = wl if wl >= cl and wl < 0x7FFFFFFF else cl
            ts_ns[k] = t
            links[k] = if_link[iface]
            file_off[k] = base + pos
            k += 1
        pos += blen
