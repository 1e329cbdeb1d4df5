"""Read one capture file into a PartResult: its flows plus the DNS answers and ICMP errors seen."""

from __future__ import annotations

import numpy as np

from dsaudit.engine import no_cyclic_gc
from dsaudit.errors import CaptureError
from dsaudit.flows.merge import PartResult, RecordingDnsMap
from dsaudit.pipeline import FlowBuilder, FlowOptions, decode_batch
from dsaudit.sources.capture_file import CaptureReader

LIMITATIONS: list[str] = []  # packets show everything the audit uses


def read_part(path: str, options: FlowOptions | None = None) -> PartResult:
    """Flows of one capture, ready for dsaudit.flows.merge.merge_parts.

    Runs the same pipeline as dsaudit.engine.read_captures, but keeps the DNS answers and
    ICMP errors back from the flow records so the merge can apply them across files.
    """
    builder = FlowBuilder(options)
    dns = RecordingDnsMap()
    builder.namer.dns = dns
    reader = CaptureReader(path)
    with no_cyclic_gc():
        for batch in reader:
            builder.consume(batch, *decode_batch(batch))
    errors = list(builder.namer.icmp_errors)
    builder.namer.icmp_errors = []
    result = builder.result([reader.info])
    return PartResult(
        flows=result.flows,
        captures=result.captures,
        stats=result.stats,
        dns=dns.entries,
        icmp_errors=errors,
    )


def first_packet_ns(path: str) -> int | None:
    """Time of the first packet of a capture, reading as little of it as possible."""
    reader = CaptureReader(path, buffer_bytes=1 << 16, batch_packets=1)
    try:
        for batch in reader:
            if len(batch):
                return int(np.asarray(batch.ts_ns)[0])
    except CaptureError:
        return None
    return None
