"""Run the capture pipeline over files: one thread, or a reader/decoder thread beside it."""

from __future__ import annotations

import gc
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from dsaudit.array_pool import ArrayPool
from dsaudit.decode.batch import decode_batch
from dsaudit.errors import CaptureError, DsauditError
from dsaudit.flow_records.builder import FlowBuilder, FlowOptions, FlowResult
from dsaudit.sources.batch import PacketBatch
from dsaudit.sources.capture_file import (
    CaptureReader,
    file_size,
    left_out,
    refuse_if_all_left_out,
)

_DONE = object()
# The interpreter-lock switch interval while a reader thread runs beside the pipeline.
SWITCH_INTERVAL_S = 0.0005


def _decoded(reader: CaptureReader, jobs: int) -> Iterator[tuple[PacketBatch, np.ndarray, int]]:
    """Batches with their decoded records; with jobs > 1, read and decode ahead in a thread.

    The flow table and naming stay on the calling thread, in capture order, so the
    result does not depend on ``jobs``.
    """
    # The thread that decodes reuses its record arrays (one pool per thread).
    pool = ArrayPool(np.int64, keep=6)
    if jobs <= 1:
        for batch in reader:
            yield (batch, *decode_batch(batch, pool))
        return
    q: queue.Queue[Any] = queue.Queue(maxsize=max(2, jobs))
    stop = threading.Event()

    def work() -> None:
        try:
            for batch in reader:
                if stop.is_set():
                    return
                q.put((batch, *decode_batch(batch, pool)))
            q.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer to re-raise
            q.put(exc)

    thread = threading.Thread(target=work, name="dsaudit-reader", daemon=True)
    # The reader needs the interpreter lock only for moments between compiled calls; at the
    # default 5 ms switch interval it waits behind naming for each of them, and a threaded
    # read took 0.8 s instead of 0.55 s of the reference workload's 1.1 s.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL_S))
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
        sys.setswitchinterval(interval)


def read_captures(
    paths: list[str],
    engine: str = "fast",
    jobs: int = 1,
    options: FlowOptions | None = None,
    progress: bool = False,
) -> FlowResult:
    """Read captures in the order given, as one stream, and return their flows.

    Of several captures, one whose content cannot be read at all (empty, a broken header) is
    left out with a warning, so the others are still judged; a single such capture, or a
    file that cannot be opened, is an error.
    """
    if engine == "tshark":
        from dsaudit.decode.tshark import read_with_tshark

        builder = FlowBuilder(options)
        return builder.result(read_with_tshark(paths, builder))
    if engine != "fast":
        raise DsauditError(f"unknown engine {engine!r}")
    builder = FlowBuilder(options)
    infos = []
    bar = _progress(progress)
    with no_cyclic_gc(), bar as live:
        for path in paths:
            reader = CaptureReader(path)
            task = live.add_task(path, total=file_size(path)) if live is not None else None
            try:
                # The reader refuses a file only before its first packet: nothing of it
                # has reached the builder then.
                for batch, rec, k in _decoded(reader, jobs):
                    builder.consume(batch, rec, k)
                    if live is not None and task is not None:
                        live.update(task, completed=reader.position())
            except CaptureError as exc:
                if len(paths) == 1 or exc.offset is None:
                    raise
                infos.append(left_out(path, f"byte {exc.offset}: {exc.message}"))
                continue
            infos.append(reader.info)
    refuse_if_all_left_out(infos)
    return builder.result(infos)


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector.

    The pipeline allocates millions of small acyclic objects; every full collection walks
    all of them, which cost about a third of the run time. Reference counting still frees
    everything, and the collector resumes afterwards.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
