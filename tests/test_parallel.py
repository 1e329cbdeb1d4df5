"""fork_map and row_chunks: real forked processes, results in order, errors carried back."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from dsaudit.errors import DsauditError
from dsaudit.parallel import fork_map, row_chunks


def _where(i: int) -> tuple[int, int]:
    return i * i, os.getpid()


def _fail_on_three(i: int) -> int:
    if i == 3:
        raise DsauditError(f"piece {i} is bad")
    return i


def test_results_come_back_in_order_from_other_processes() -> None:
    got = list(fork_map(_where, list(range(40)), jobs=2))
    assert [square for square, _ in got] == [i * i for i in range(40)]
    assert {pid for _, pid in got} - {os.getpid()}, "no piece ran in a child process"


def test_one_job_stays_in_this_process() -> None:
    got = list(fork_map(_where, [1, 2, 3], jobs=1))
    assert got == [(1, os.getpid()), (4, os.getpid()), (9, os.getpid())]
    assert list(fork_map(_where, [], jobs=4)) == []


def test_an_error_in_a_child_is_raised_here() -> None:
    with pytest.raises(DsauditError, match="piece 3 is bad"):
        list(fork_map(_fail_on_three, list(range(8)), jobs=2))


@pytest.mark.parametrize(
    "rows,jobs,pieces",
    [
        (0, 1, 0),
        (10, 2, 1),  # small frames stay whole
        (5000, 1, 4),  # about four pieces a job...
        (5000, 2, 5),  # ...but none under 1024 rows
        (100_000, 2, 13),  # and none over 8192
    ],
)
def test_row_chunks_cover_the_frame_in_order(rows: int, jobs: int, pieces: int) -> None:
    frame = pd.DataFrame({"n": range(rows)})
    chunks = row_chunks(frame, jobs)
    assert len(chunks) == pieces
    assert pd.concat([frame.iloc[:0], *chunks])["n"].tolist() == list(range(rows))
