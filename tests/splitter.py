"""Split a capture into several pcapng files at chosen packet boundaries (test helper)."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from dsaudit.sources.capture_file import CaptureReader
from dsaudit.time_text import NS

Packet = tuple[int, int, int, bytes]  # (ts ns, linktype, wire length, captured bytes)


def packets(path: str | Path) -> Iterator[Packet]:
    """Every packet of a capture as the project's reader sees it."""
    for batch in CaptureReader(str(path)):
        buf = np.asarray(batch.buf)
        for off, cap, wire, ts, link in zip(
            batch.off.tolist(),
            batch.caplen.tolist(),
            batch.wirelen.tolist(),
            batch.ts_ns.tolist(),
            batch.linktype.tolist(),
            strict=True,
        ):
            yield ts, link, wire, bytes(buf[off : off + cap])


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    size = 12 + len(body)
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)


def pcapng(frames: Sequence[Packet]) -> bytes:
    """A little-endian pcapng file: one interface per link type, nanosecond timestamps."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    iface: dict[int, int] = {}
    for _, link, _, _ in frames:
        if link not in iface:
            iface[link] = len(iface)
            tsresol = struct.pack("<HHB", 9, 1, 9) + b"\0\0\0" + struct.pack("<HH", 0, 0)
            out.append(_block(1, struct.pack("<HHI", link, 0, 0) + tsresol))
    for ts, link, wire, data in frames:
        head = struct.pack("<IIIII", iface[link], ts >> 32, ts & 0xFFFFFFFF, len(data), wire)
        out.append(_block(6, head + data))
    return b"".join(out)


def pcap(frames: Sequence[Packet]) -> bytes:
    """A classic little-endian nanosecond pcap file (all frames of one link type)."""
    link = frames[0][1] if frames else 1
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, link)]
    for ts, _, wire, data in frames:
        out.append(struct.pack("<IIII", ts // NS, ts % NS, len(data), wire))
        out.append(data)
    return b"".join(out)


def split(
    source: str | Path, cuts: Sequence[int], out_dir: Path, compress: bool = False
) -> list[Path]:
    """Write ``source`` as len(cuts)+1 files, cut before the packet indices in ``cuts``.

    One link type makes classic pcap files, several make pcapng (one interface per type).
    """
    frames = list(packets(source))
    bounds = [0, *sorted(cuts), len(frames)]
    single = len({f[1] for f in frames}) <= 1
    paths = []
    for n, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
        data = pcap(frames[lo:hi]) if single else pcapng(frames[lo:hi])
        ext = "pcap" if single else "pcapng"
        path = out_dir / f"part{n:03d}.{ext}{'.gz' if compress else ''}"
        path.write_bytes(gzip.compress(data, 1) if compress else data)
        paths.append(path)
    return paths


def risky_cuts(path: str | Path, first_payloads: int = 6) -> set[int]:
    """Cut positions that split what the engine must see in one file to name a flow.

    A cut before packet ``i`` is risky when it falls inside an IP-fragmented datagram or
    among the first ``first_payloads`` payload packets of a flow (a ClientHello, an HTTP
    request or a DNS-over-TCP message spread over segments): the merge cannot reassemble
    those across files, as docs/periodic.md says.
    """
    from dsaudit.decode.batch import decode_batch
    from dsaudit.decode.packet_kernel import (
        C_DPORT,
        C_DST_HI,
        C_DST_LO,
        C_FRAG,
        C_FRAME,
        C_PAY_LEN,
        C_PROTO,
        C_SPORT,
        C_SRC_HI,
        C_SRC_LO,
    )

    risky: set[int] = set()
    seen: dict[tuple[int, ...], list[int]] = {}
    base = 0
    for batch in CaptureReader(str(path)):
        rec, k = decode_batch(batch)
        for row in rec[:k].tolist():
            i = base + row[C_FRAME]
            if row[C_FRAG]:
                risky.update((i, i + 1))
                continue
            if row[C_PAY_LEN] <= 0 or row[C_PROTO] not in (6, 17):
                continue
            ends = sorted(
                [(row[C_SRC_HI], row[C_SRC_LO], row[C_SPORT])]
                + [(row[C_DST_HI], row[C_DST_LO], row[C_DPORT])]
            )
            key = (row[C_PROTO], *ends[0], *ends[1])
            hits = seen.setdefault(key, [])
            if len(hits) < first_payloads:
                hits.append(i)
        base += len(batch)
    for hits in seen.values():
        risky.update(range(hits[0] + 1, hits[-1] + 1))
    return risky


def safe_cuts(path: str | Path, count: int, seed: int) -> list[int]:
    """``count`` cut positions drawn with ``seed`` among the ones that are not risky."""
    import random

    total = sum(1 for _ in packets(path))
    allowed = sorted(set(range(1, total)) - risky_cuts(path))
    rnd = random.Random(seed)
    return sorted(rnd.sample(allowed, min(count, len(allowed))))
