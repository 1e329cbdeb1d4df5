"""Fan out independent pieces of work over forked processes, results in order."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pandas as pd

T = TypeVar("T")
R = TypeVar("R")

# The work of the pool being started: forked children inherit it, so pieces such as slices
# of a large DataFrame reach them without being pickled; only results travel back.
_WORK: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def _run(i: int) -> Any:
    assert _WORK is not None
    func, items = _WORK
    return func(items[i])


def fork_map(func: Callable[[T], R], items: Sequence[T], jobs: int) -> Iterator[R]:
    """``func`` over ``items`` in up to ``jobs`` forked processes, yielded in item order.

    Runs in this process for one job, one item, or where fork does not exist. Results are
    pickled back, so they should be compact (text, arrays); an exception in a child is raised
    here.
    """
    global _WORK
    jobs = min(jobs, len(items))
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(func, items)
        return
    _WORK = (func, items)
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            yield from pool.imap(_run, range(len(items)))
    finally:
        _WORK = None


def row_chunks(
    frame: pd.DataFrame, jobs: int, most: int = 8192, least: int = 1024
) -> list[pd.DataFrame]:
    """``frame`` cut into consecutive slices for fork_map: about four per job so that the
    processes finish together, between ``least`` and ``most`` rows each (memory stays
    bounded for one job)."""
    step = min(most, max(least, -(-len(frame) // (4 * max(jobs, 1)))))
    return [frame.iloc[lo : lo + step] for lo in range(0, len(frame), step)]
