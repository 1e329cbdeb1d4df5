#!/usr/bin/env python3
"""Atheris harness: any bytes as a capture file, through reader, decoder, flows and output."""

from __future__ import annotations

import atexit
import os
import re
import sys
import tempfile
from types import SimpleNamespace

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small buffers and batches so that refills and batch boundaries fall inside records,
# blocks and TCP streams even in the short inputs a fuzzer prefers.
BUFFER_BYTES = 512
BATCH_PACKETS = 8
# What may reach a terminal from the table renderer: printable text and line breaks.
UNSAFE_TERMINAL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_api: SimpleNamespace | None = None
_path: str | None = None


def load() -> SimpleNamespace:
    """Import dsaudit (once); under atheris this runs inside instrument_imports()."""
    global _api
    if _api is None:
        if _ROOT not in sys.path:
            sys.path.insert(0, _ROOT)
        from dsaudit.errors import DsauditError
        from dsaudit.flow_records.builder import FlowBuilder
        from dsaudit.reports.flow_output import RENDERERS
        from dsaudit.sources.capture_file import CaptureReader

        _api = SimpleNamespace(
            DsauditError=DsauditError,
            FlowBuilder=FlowBuilder,
            RENDERERS=RENDERERS,
            CaptureReader=CaptureReader,
        )
    return _api


def scratch_path() -> str:
    """One temporary file per process, in memory when /dev/shm is there; removed at exit."""
    global _path
    if _path is None:
        shm = "/dev/shm"
        where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        fd, _path = tempfile.mkstemp(prefix="dsaudit-fuzz-", suffix=".cap", dir=where)
        os.close(fd)
        atexit.register(os.unlink, _path)
    return _path


def check_bytes(data: bytes) -> int:
    """Run ``data`` as a capture file through the whole pipeline; returns the flow count.

    The only exception allowed out of dsaudit is its own DsauditError (a capture that
    cannot be read: -1 is returned); anything else is a bug and propagates, and so does a
    broken invariant (AssertionError).
    """
    api = load()
    path = scratch_path()
    with open(path, "wb") as fh:
        fh.write(data)
    builder = api.FlowBuilder()
    reader = api.CaptureReader(path, buffer_bytes=BUFFER_BYTES, batch_packets=BATCH_PACKETS)
    try:
        for batch in reader:
            builder.add_batch(batch)
    except api.DsauditError:
        return -1
    result = builder.result([reader.info])
    flows, stats = result.flows, result.stats
    assert stats.frames == reader.info.packets, (stats.frames, reader.info.packets)
    # The decoder writes at most two rows (outer and VXLAN inner) per frame or datagram.
    assert len(flows) <= 2 * (stats.frames + stats.reassembled), (len(flows), stats.frames)
    assert len(result.table) == len(flows)
    for fmt, render in api.RENDERERS.items():
        text = "".join(render(result.table))
        if fmt == "table":
            bad = UNSAFE_TERMINAL.search(text)
            assert bad is None, f"raw control character {bad.group()!r} in the table"
    return len(flows)


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris calls
    """One fuzz input: the bytes are the whole capture file (pcap, pcapng or gzip)."""
    check_bytes(data)


if __name__ == "__main__":
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    # The kernels are C extensions: atheris instruments Python bytecode only, so they run
    # without coverage feedback (fuzz/README.md shows how to build them with sanitizers).
    with atheris.instrument_imports(include=["dsaudit"]):
        load()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
