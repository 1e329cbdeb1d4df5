# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled walkers that find pcap and pcapng records in a buffer.

Hand-written because walking record headers is inherently sequential (each header says
where the next one starts): a Python loop tops out near 860k records/s, which alone would
use most of the engine's time budget. Cython compiles these loops to C when the package is
built. The arguments are checked once at entry (array sizes, positions inside the buffer);
inside, every read is checked against ``end``: the input is untrusted.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

# Walk outcomes.
cpdef enum:
    NEED_MORE = 0  # ran out of bytes inside a record (more data may follow)
    BATCH_FULL = 1  # output arrays are full
    BAD_RECORD = 2  # a record header is impossible; the file is damaged here
    PYTHON_BLOCK = 3  # pcapng: a block Python must handle (SHB, IDB) starts here

# Counters of timestamps that could not be used, in the ``ts_bad`` array.
cpdef enum:
    TS_OVERFLOW = 0  # beyond what int64 nanoseconds hold (years before 1677 or after 2262)
    TS_MISSING = 1  # a Simple Packet Block: the format gives it no time

cdef int64_t NS = 1000000000
cdef int64_t I64_MAX = 0x7FFFFFFFFFFFFFFF


cdef inline int64_t _u32(const uint8_t[::1] buf, Py_ssize_t pos, bint big) noexcept nogil:
    if big:
        return ((<int64_t>buf[pos] << 24) | (<int64_t>buf[pos + 1] << 16)
                | (<int64_t>buf[pos + 2] << 8) | <int64_t>buf[pos + 3])
    return (<int64_t>buf[pos] | (<int64_t>buf[pos + 1] << 8)
            | (<int64_t>buf[pos + 2] << 16) | (<int64_t>buf[pos + 3] << 24))


cdef inline int64_t _u16(const uint8_t[::1] buf, Py_ssize_t pos, bint big) noexcept nogil:
    if big:
        return (<int64_t>buf[pos] << 8) | <int64_t>buf[pos + 1]
    return <int64_t>buf[pos] | (<int64_t>buf[pos + 1] << 8)


cdef _check_window(const uint8_t[::1] buf, int64_t pos, int64_t end):
    if pos < 0 or end < pos or end > buf.shape[0]:
        raise ValueError(
            f"record walk: window {pos}..{end} is outside the buffer of {buf.shape[0]} bytes"
        )


cdef _check_outputs(Py_ssize_t n, Py_ssize_t k, tuple others):
    for a in others:
        if a.shape[0] != n:
            raise ValueError(f"record walk: output arrays differ in length ({a.shape[0]} != {n})")
    if k < 0 or k > n:
        raise ValueError(f"record walk: start index {k} outside the output arrays ({n})")


def walk_pcap(
    const uint8_t[::1] buf,
    int64_t pos,
    int64_t end,
    bint big,
    bint nsec,
    int64_t max_caplen,
    int32_t linktype,
    int64_t base,
    int64_t[::1] off,
    int32_t[::1] caplen,
    int32_t[::1] wirelen,
    int64_t[::1] ts_ns,
    int32_t[::1] links,
    int64_t[::1] file_off,
    Py_ssize_t k,
):
    """Append records from ``buf[pos:end]`` at index ``k``; return (k, pos, outcome)."""
    _check_window(buf, pos, end)
    cdef Py_ssize_t cap_out = off.shape[0]
    _check_outputs(cap_out, k, (caplen, wirelen, ts_ns, links, file_off))
    if max_caplen < 0 or max_caplen > 0x7FFFFFFF:
        raise ValueError(f"record walk: maximum record length {max_caplen} out of range")
    cdef int64_t cl, sec, frac, wl
    cdef int outcome
    with nogil:
        while True:
            if pos + 16 > end:
                outcome = NEED_MORE
                break
            cl = _u32(buf, pos + 8, big)
            if cl > max_caplen:
                outcome = BAD_RECORD
                break
            if pos + 16 + cl > end:
                outcome = NEED_MORE
                break
            if k >= cap_out:
                outcome = BATCH_FULL
                break
            # Seconds are 32 bits: seconds * 10**9 stays far inside int64.
            sec = _u32(buf, pos, big)
            frac = _u32(buf, pos + 4, big)
            wl = _u32(buf, pos + 12, big)
            off[k] = pos + 16
            caplen[k] = <int32_t>cl
            wirelen[k] = <int32_t>(wl if wl >= cl and wl < 0x7FFFFFFF else cl)
            ts_ns[k] = sec * NS + (frac if nsec else frac * 1000)
            links[k] = linktype
            file_off[k] = base + pos
            k += 1
            pos += 16 + cl
    return k, pos, outcome


cdef inline bint _scale(
    uint64_t ticks, int64_t mul, int64_t div, int64_t shift, int64_t tsoff, int64_t *out
) noexcept nogil:
    """Ticks of one interface to nanoseconds; False when the result does not fit int64."""
    cdef uint64_t secs, frac, t
    cdef int64_t s
    if shift >= 0:
        # Binary resolution 2**-shift, in integers so nanoseconds stay exact.
        if shift >= 64:
            secs = 0
            frac = ticks
        else:
            secs = ticks >> shift
            frac = ticks & ((<uint64_t>1 << shift) - 1)
        s = shift
        if s > 33:
            frac >>= s - 33
            s = 33
        if secs > <uint64_t>(I64_MAX // NS):
            return False
        t = secs * <uint64_t>NS + ((frac * <uint64_t>NS) >> s)
    elif div == 1:
        if mul <= 0 or ticks > <uint64_t>(I64_MAX // mul):
            return False
        t = ticks * <uint64_t>mul
    else:
        if div <= 0:
            return False
        t = ticks // <uint64_t>div
    if t > <uint64_t>I64_MAX:
        return False
    # The interface's offset in seconds, which a file may set to anything.
    if tsoff > I64_MAX // NS or tsoff < -(I64_MAX // NS):
        return False
    if tsoff > 0 and <int64_t>t > I64_MAX - tsoff * NS:
        return False
    out[0] = <int64_t>t + tsoff * NS
    return True


def walk_pcapng(
    const uint8_t[::1] buf,
    int64_t pos,
    int64_t end,
    bint big,
    int32_t[::1] if_link,
    int64_t[::1] if_mul,
    int64_t[::1] if_div,
    int64_t[::1] if_shift,
    int64_t[::1] if_tsoff,
    int64_t[::1] if_snap,
    int64_t last_ts,
    int64_t base,
    int64_t[::1] off,
    int32_t[::1] caplen,
    int32_t[::1] wirelen,
    int64_t[::1] ts_ns,
    int32_t[::1] links,
    int64_t[::1] file_off,
    Py_ssize_t k,
    int64_t[::1] ts_bad,
):
    """Append packets from pcapng blocks; return (k, pos, outcome, last_ts).

    Enhanced, Simple and obsolete Packet Blocks are decoded here; every other block type
    except SHB and IDB is skipped by its length. Timestamps are ticks scaled per interface
    by ``if_mul / if_div`` nanoseconds plus ``if_tsoff`` seconds. A packet whose time cannot
    be represented, or has none (Simple Packet Block), takes the last time seen and is
    counted in ``ts_bad`` (``TS_OVERFLOW``, ``TS_MISSING``).
    """
    _check_window(buf, pos, end)
    cdef Py_ssize_t cap_out = off.shape[0]
    _check_outputs(cap_out, k, (caplen, wirelen, ts_ns, links, file_off))
    cdef Py_ssize_t nif = if_link.shape[0]
    _check_outputs(nif, 0, (if_mul, if_div, if_shift, if_tsoff, if_snap))
    if ts_bad.shape[0] < 2:
        raise ValueError("record walk: ts_bad needs two counters")
    cdef int64_t btype, blen, wl, cl, data, t, iface, hi, lo
    cdef int outcome
    with nogil:
        while True:
            if pos + 12 > end:
                outcome = NEED_MORE
                break
            btype = _u32(buf, pos, big)
            blen = _u32(buf, pos + 4, big)
            if btype == 0x0A0D0D0A or btype == 1:
                outcome = PYTHON_BLOCK
                break
            if blen < 12 or blen % 4 != 0 or blen > 0x4000000:
                outcome = BAD_RECORD
                break
            if pos + blen > end:
                outcome = NEED_MORE
                break
            if _u32(buf, pos + blen - 4, big) != blen:
                outcome = BAD_RECORD
                break
            if btype == 6 or btype == 2 or btype == 3:
                if k >= cap_out:
                    outcome = BATCH_FULL
                    break
                if btype == 3:
                    if blen < 16 or nif == 0:
                        outcome = BAD_RECORD
                        break
                    iface = 0
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
                    ts_bad[TS_MISSING] += 1
                else:
                    if blen < 32:
                        outcome = BAD_RECORD
                        break
                    if btype == 6:
                        iface = _u32(buf, pos + 8, big)
                    else:
                        iface = _u16(buf, pos + 8, big)
                    hi = _u32(buf, pos + 12, big)
                    lo = _u32(buf, pos + 16, big)
                    cl = _u32(buf, pos + 20, big)
                    wl = _u32(buf, pos + 24, big)
                    data = pos + 28
                    if cl > blen - 32 or iface >= nif:
                        outcome = BAD_RECORD
                        break
                    if _scale(
                        (<uint64_t>hi << 32) | <uint64_t>lo,
                        if_mul[iface],
                        if_div[iface],
                        if_shift[iface],
                        if_tsoff[iface],
                        &t,
                    ):
                        last_ts = t
                    else:
                        t = last_ts
                        ts_bad[TS_OVERFLOW] += 1
                off[k] = data
                caplen[k] = <int32_t>cl
                wirelen[k] = <int32_t>(wl if wl >= cl and wl < 0x7FFFFFFF else cl)
                ts_ns[k] = t
                links[k] = if_link[iface]
                file_off[k] = base + pos
                k += 1
            pos += blen
    return k, pos, outcome, last_ts
