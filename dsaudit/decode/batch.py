"""Decode a batch of frames into packet records with the compiled kernel."""

from __future__ import annotations

import numpy as np

from dsaudit.array_pool import ArrayPool
from dsaudit.decode.packet_kernel import (
    N_COLS,
    ROWS_PER_FRAME,
    decode_frames,
)
from dsaudit.sources.batch import PacketBatch


def decode_batch(batch: PacketBatch, pool: ArrayPool | None = None) -> tuple[np.ndarray, int]:
    """Decode every frame of ``batch`` into records, one row per packet; return them and
    their count. The compiled kernel releases the GIL.

    With ``pool`` (an int64 ArrayPool of the calling thread), the record array is taken from
    it: a reader decoding batch after batch then reuses the same few. The array starts a
    sixteenth longer than the batch (room for some tunnels: each inner packet is a row of its
    own) and grows by half when that is not enough.
    """
    n = len(batch)
    rec = _records(pool, max(n + n // 16, ROWS_PER_FRAME))
    args = (batch.buf, batch.off, batch.caplen, batch.wirelen, batch.ts_ns, batch.linktype)
    k, done = decode_frames(*args, rec)
    while done < n:
        # Many tunnelled packets: grow by half again (rare, amortised).
        grown = np.empty((k + max(len(rec) // 2, ROWS_PER_FRAME), N_COLS), dtype=np.int64)
        grown[:k] = rec[:k]
        rec = grown
        got, done = decode_frames(*args, rec[k:], done)
        k += got
    return rec, int(k)


def _records(pool: ArrayPool | None, rows: int) -> np.ndarray:
    if pool is None:
        return np.empty((rows, N_COLS), dtype=np.int64)
    return pool.take((rows, N_COLS))
