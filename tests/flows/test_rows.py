"""FlowRows: the flow table's rows read by name."""

from __future__ import annotations

import numpy as np
import pytest

from dsaudit.decode.batch import decode_batch
from dsaudit.flows.rows import FlowRows
from dsaudit.flows.table import FlowTable
from tests.packets import BASE_TS, TcpConversation, batch_of, udp_frame


def _table(frames: list[tuple[int, bytes]]) -> FlowTable:
    table = FlowTable()
    batch = batch_of(frames)
    rec, k = decode_batch(batch)
    table.feed(rec, k, batch.buf)
    return table


def test_named_columns_of_a_closed_and_a_reset_connection() -> None:
    closed = TcpConversation("10.0.0.1", "10.0.0.2", 40000, 4120)
    closed.handshake()
    closed.send(True, "PA", b"hello")
    closed.close()
    reset = TcpConversation("10.0.0.1", "10.0.0.2", 40001, 4120, vlan=20, start_ns=BASE_TS + 10**9)
    reset.handshake()
    reset.send(False, "R")
    udp = [(BASE_TS + 2 * 10**9, udp_frame("10.0.0.1", "10.0.0.3", 5000, 53, b"q"))]
    rows = FlowRows(_table(closed.frames + reset.frames + udp).flows)
    assert len(rows) == 3
    assert rows.proto.tolist() == [6, 6, 17]
    assert rows.fin_c2s.tolist() == [True, False, False]
    assert rows.fin_s2c.tolist() == [True, False, False]
    assert rows.reset.tolist() == [False, True, False]
    assert rows.tagged.tolist() == [False, True, False]
    assert rows.packets_c2s.tolist()[2] == 1 and rows.packets_s2c.tolist()[2] == 0
    assert rows.first_ns.tolist() == [BASE_TS, BASE_TS + 10**9, BASE_TS + 2 * 10**9]
    assert (rows.last_ns >= rows.first_ns).all()


def test_columns_are_views_of_the_table() -> None:
    fs = np.zeros((2, 64), dtype=np.int64)
    rows = FlowRows(fs)
    rows.last_ns[:] = 7
    assert rows.last_ns.tolist() == [7, 7]
    with pytest.raises(ValueError, match="2-D"):
        FlowRows(fs[0])
