"""Decode a batch of frames into packet records with the compiled kernel."""

from __future__ import annotations

import numpy as np

from dsaudit.array_pool import ArrayPool
from dsaudit.decode.packet_kernel import (
    C_FRAME,
    N_COLS,
    ROWS_PER_FRAME,
    decode_frames,
)
from dsaudit.sources.batch import PacketBatch

# Frames decoded at a time into a scratch array that has room for every tunnel level of each;
# the rows are then packed, so a batch's records take one row per packet, not four per frame.
DECODE_CHUNK = 4096


def decode_batch(batch: PacketBatch, pool: ArrayPool | None = None) -> tuple[np.ndarray, int]:
    """Decode every frame of ``batch``; the compiled kernel releases the GIL.

    With ``pool`` (an int64 ArrayPool of the calling thread), the record and scratch arrays
    are taken from it: a reader decoding batch after batch then reuses the same few.
    """
    n = len(batch)
    scratch = _records(pool, ROWS_PER_FRAME * min(max(n, 1), DECODE_CHUNK))
    if n <= DECODE_CHUNK:
        k = decode_frames(
            batch.buf, batch.off, batch.caplen, batch.wirelen, batch.ts_ns, batch.linktype, scratch
        )
        return scratch, int(k)
    rec = _records(pool, n + n // 16)
    k = 0
    for start in range(0, n, DECODE_CHUNK):
        part = slice(start, start + DECODE_CHUNK)
        got = int(
            decode_frames(
                batch.buf,
                batch.off[part],
                batch.caplen[part],
                batch.wirelen[part],
                batch.ts_ns[part],
                batch.linktype[part],
                scratch,
            )
        )
        if k + got > len(rec):
            # Many tunnelled packets: grow by half again (rare, amortised).
            grown = np.empty((max(k + got, len(rec) * 3 // 2), N_COLS), dtype=np.int64)
            grown[:k] = rec[:k]
            rec = grown
        rec[k : k + got] = scratch[:got]
        rec[k : k + got, C_FRAME] += start
        k += got
    return rec, k


def _records(pool: ArrayPool | None, rows: int) -> np.ndarray:
    if pool is None:
        return np.empty((rows, N_COLS), dtype=np.int64)
    return pool.take((rows, N_COLS))
