"""fork_map and row_chunks: real forked processes, results in order, errors carried back."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dsaudit.errors import DsauditError
from dsaudit.parallel import fork_map, row_chunks
from tests.processes import ROOT


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


KILLER = """
import os, sys
from concurrent.futures.process import BrokenProcessPool
from dsaudit.parallel import fork_map

def piece(i):
    if i == 5:
        os._exit(9)  # as the out-of-memory killer would end it
    return i

try:
    list(fork_map(piece, list(range(20)), jobs=2))
except BrokenProcessPool:
    sys.exit(3)
"""


def test_a_child_that_dies_is_an_error_not_a_hang() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLER], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 3, proc.stderr


def _logged(item: tuple[Path, int]) -> int:
    log, i = item
    with open(log, "a") as fh:
        fh.write(f"{i}\n")
    return i


def test_work_runs_ahead_of_the_consumer_by_two_pieces_a_job(tmp_path: Path) -> None:
    log = tmp_path / "started"
    log.touch()
    pieces = fork_map(_logged, [(log, i) for i in range(40)], jobs=2)
    assert next(pieces) == 0
    time.sleep(0.5)  # a slow consumer: children would run on if nothing held them back
    started = len(log.read_text().split())
    assert started <= 2 * 2 + 1, started  # the window, plus the one refilled for piece 0
    assert list(pieces) == list(range(1, 40))
    assert sorted(map(int, log.read_text().split())) == list(range(40))


def _nested(n: int) -> list[tuple[int, int]]:
    return list(fork_map(_where, list(range(n)), jobs=2))


def test_inside_a_daemonic_worker_the_work_stays_in_that_worker() -> None:
    # multiprocessing.Pool's workers are daemonic and may not start processes of their own.
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_nested, (6,)).get(timeout=60)
    assert [square for square, _ in got] == [i * i for i in range(6)]
    assert len({pid for _, pid in got}) == 1 and got[0][1] != os.getpid()
