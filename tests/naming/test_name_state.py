"""The compiled naming state reads only inside the batch buffer, whatever the rows claim."""

from __future__ import annotations

import numpy as np
import pytest

from dsaudit.decode.packet_kernel import C_PAY_LEN, C_PAY_OFF, C_TS, N_COLS
from dsaudit.flows.table_kernel import EV_PAYLOAD, F_A_PORT, F_PROTO, N_FCOLS
from dsaudit.naming.namer import Namer
from tests.factories import dns_query


def _dns_event(buf: np.ndarray, off: int, length: int) -> Namer:
    """A Namer that read one DNS payload event at ``off``/``length`` of ``buf``."""
    rec = np.zeros((1, N_COLS), dtype=np.int64)
    rec[0, C_PAY_OFF], rec[0, C_PAY_LEN], rec[0, C_TS] = off, length, 1
    fs = np.zeros((1, N_FCOLS), dtype=np.int64)
    fs[0, F_PROTO], fs[0, F_A_PORT] = 17, 53
    events = np.array([[0, 0, 0, EV_PAYLOAD]], dtype=np.int64)
    namer = Namer()
    namer.handle(events, rec, buf, fs)
    return namer


def test_a_payload_inside_the_buffer_is_read() -> None:
    query = dns_query("inside.example")
    buf = np.frombuffer(b"\0" * 7 + query, dtype=np.uint8)
    namer = _dns_event(buf, 7, len(query))
    assert namer.flows[0].dns_queries == ["inside.example"]
    assert namer.decode_failures == 0


@pytest.mark.parametrize(
    ("off", "length"),
    [(7, 10_000), (10_000, 50), (7, -40)],
    ids=["runs-past-the-end", "starts-past-the-end", "negative-length"],
)
def test_a_payload_claimed_outside_the_buffer_is_cut_to_it(off: int, length: int) -> None:
    # Only the bytes the buffer holds are read: the message the batch holds only the start
    # of fails to decode, and is counted as such, instead of bytes beyond it being parsed.
    query = dns_query("cut.example")
    buf = np.frombuffer(b"\0" * 7 + query[:-4], dtype=np.uint8)
    namer = _dns_event(buf, off, length)
    assert namer.decode_failures == 1
    assert namer.flows[0].dns_queries == []


def test_a_row_outside_the_batch_raises_instead_of_reading_past_it() -> None:
    buf = np.zeros(16, dtype=np.uint8)
    rec = np.zeros((1, N_COLS), dtype=np.int64)
    fs = np.zeros((1, N_FCOLS), dtype=np.int64)
    events = np.array([[0, 0, 5, EV_PAYLOAD]], dtype=np.int64)
    with pytest.raises(IndexError):
        Namer().handle(events, rec, buf, fs)
