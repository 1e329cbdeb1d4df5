"""ArrayPool hands an array out again only when nothing else refers to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsaudit.array_pool import ArrayPool
from dsaudit.decode.batch import decode_batch
from dsaudit.sources.capture_file import CaptureReader
from tests.packets import write_pcap


def test_an_idle_array_is_handed_out_again() -> None:
    pool = ArrayPool(np.int64)
    first = pool.take((4, 3))
    first_id = id(first)
    del first
    again = pool.take((4, 3))
    assert id(again) == first_id
    assert pool.reused == 1


def test_an_array_still_referred_to_is_never_handed_out() -> None:
    pool = ArrayPool(np.uint8)
    held = pool.take(64)
    view = pool.take(64)[8:16]  # only a view of the second array is kept
    memory = memoryview(pool.take(64))
    taken = {id(held), id(view.base), id(memory.obj)}
    assert len(taken) == 3
    fresh = pool.take(64)
    assert id(fresh) not in taken
    assert pool.reused == 0


def test_a_shorter_request_gets_the_leading_rows_of_an_idle_longer_array() -> None:
    pool = ArrayPool(np.int64)
    long = pool.take((100, 3))
    base = id(long)
    del long
    short = pool.take((60, 3))
    assert short.shape == (60, 3)
    assert id(short.base) == base  # the same memory, not a fresh array
    assert pool.reused == 1
    # While that view lives, its array is in use: a second request gets a fresh one.
    other = pool.take((60, 3))
    assert other.base is None or id(other.base) != base
    assert pool.reused == 1


def test_decoding_batches_of_different_lengths_reuses_the_same_record_arrays(
    tmp_path: Path,
) -> None:
    """The reader cuts batches at its buffer's end, so their lengths differ: the decoder's
    record arrays must still come back from the pool rather than be allocated per batch."""
    frames = [bytes(60 + i % 700) for i in range(6000)]
    path = tmp_path / "uneven.pcap"
    write_pcap(path, [(i * 1000, f) for i, f in enumerate(frames)])
    pool = ArrayPool(np.int64)
    lengths = set()
    batches = 0
    for batch in CaptureReader(str(path), buffer_bytes=1 << 16, batch_packets=4096):
        rec, k = decode_batch(batch, pool)
        assert k == len(batch)
        lengths.add(len(batch))
        batches += 1
        del rec
    assert len(lengths) > 5  # the buffer's end cut batches of many lengths
    assert batches - pool.reused <= 3


def test_other_shapes_get_their_own_arrays_and_the_pool_stays_bounded() -> None:
    pool = ArrayPool(np.int64, keep=2)
    shapes = [(n, 2) for n in range(1, 10)]
    for shape in shapes:
        assert pool.take(shape).shape == shape
    assert len(pool._arrays) <= 2


def test_batches_read_earlier_keep_their_bytes_while_buffers_are_reused(tmp_path: Path) -> None:
    """A capture larger than the reader's buffer: every batch still holds its own frames."""
    frames = [bytes([i % 251]) * (200 + i % 50) for i in range(3000)]
    path = tmp_path / "many.pcap"
    write_pcap(path, [(i * 1000, f) for i, f in enumerate(frames)])
    reader = CaptureReader(str(path), buffer_bytes=1 << 16, batch_packets=256)
    batches = list(reader)  # all held at once: no buffer may be reused under them
    got = [
        bytes(b.buf[o : o + c])
        for b in batches
        for o, c in zip(b.off.tolist(), b.caplen.tolist(), strict=True)
    ]
    assert got == frames
    # Consumed one at a time, the reader fills the same few buffers again.
    seen = set()
    for batch in CaptureReader(str(path), buffer_bytes=1 << 16, batch_packets=256):
        seen.add(id(batch.buf))
    assert len(seen) <= 4
