"""Fan out independent pieces of work over forked processes, results in order."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future

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

    Runs in this process for one job, one item, inside a pool's worker, or where fork does
    not exist. Results are
    pickled back, so they should be compact (text, arrays); an exception in a child is raised
    here, and a child that dies (killed, out of memory) raises BrokenProcessPool instead of
    leaving the caller waiting. At most two pieces per job are in flight, so results wait in
    memory only as long as the consumer lags.
    """
    global _WORK
    jobs = min(jobs, len(items))
    # A pool's own worker is daemonic and may not start processes: it does the work itself.
    alone = multiprocessing.current_process().daemon
    if jobs <= 1 or alone or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(func, items)
        return
    # Imported only when processes are really started: one-job runs skip its cost.
    from concurrent.futures import ProcessPoolExecutor

    _WORK = (func, items)
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            pending: deque[Future[Any]] = deque()
            upcoming = iter(range(len(items)))
            for i in islice(upcoming, 2 * jobs):
                pending.append(pool.submit(_run, i))
            while pending:
                result = pending.popleft().result()
                for i in islice(upcoming, 1):
                    pending.append(pool.submit(_run, i))
                yield result
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
