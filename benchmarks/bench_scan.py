"""1M one-packet flows (a SYN scan) through `dsaudit flows --format jsonl`: packets/s and peak RSS.

Every packet is a TCP SYN from one of a few scanners to a new (address, port), so the capture
holds as many flows as packets: the per-flow work after the flow table (flow records, address
text, states, JSON) dominates. ``--in-process`` also times the stages inside one interpreter.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from pathlib import Path

from harness import DEFAULT_CACHE, dsaudit_command, mb, pin_prefix, run_measured

ROOT = Path(__file__).resolve().parents[1]
TARGET_PPS = 150_000
TARGET_RSS_MB = 1200
SCANNERS = 4
PORTS = (22, 23, 80, 443, 445, 3389, 4118, 4119, 4120, 4122, 8080, 8443)


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_scan(path: Path, packets: int) -> None:
    """A pcap of ``packets`` 54-byte TCP SYNs, each to a different (target, port): one flow each.

    Deterministic: scanner ``i % 4`` probes port ``PORTS[i % 12]`` of target
    ``10.(i / 12 / 256 / 256).(..).(..)`` from source port ``20000 + i % 40000``, 10 us apart.
    """
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    ip_head = struct.Struct("!BBHHHBBH4s4s")
    tcp = struct.Struct("!HHIIHHHH")
    rec = struct.Struct("<IIII")
    frame_len = 14 + 20 + 20
    with path.open("wb", buffering=1 << 20) as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i in range(packets):
            target = i // len(PORTS)
            src = bytes((192, 168, 50, 10 + i % SCANNERS))
            dst = bytes((10, (target >> 16) & 0xFF, (target >> 8) & 0xFF, target & 0xFF))
            head = ip_head.pack(0x45, 0, 40, i & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
            head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
            sport, dport, seq = 20000 + i % 40000, PORTS[i % len(PORTS)], (i * 7919) & 0xFFFFFFFF
            seg = tcp.pack(sport, dport, seq, 0, 0x5002, 1024, 0, 0)
            secs, usec = divmod(i * 10, 1_000_000)
            fh.write(rec.pack(1_700_000_000 + secs, usec, frame_len, frame_len))
            fh.write(eth + head + seg)


def ensure_scan(packets: int, cache: Path) -> Path:
    """The cached scan capture of ``packets`` packets, written if missing or of the wrong size."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"scan{packets}.pcap"
    if not path.is_file() or path.stat().st_size != 24 + packets * (16 + 54):
        partial = path.with_name(path.name + ".partial")
        started = time.perf_counter()
        write_scan(partial, packets)
        partial.replace(path)
        print(f"wrote {path} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def in_process(path: Path) -> None:
    """Stage timings inside one warm interpreter (a first small run compiles what needs it)."""
    sys.path.insert(0, str(ROOT))
    from dsaudit.flow_records.reading import read_captures
    from dsaudit.reports.flow_output import write_flows

    read_captures([str(ROOT / "samples" / "problems.pcap")])
    t0 = time.perf_counter()
    result = read_captures([str(path)], jobs=1)
    t1 = time.perf_counter()
    write_flows(result.table, "jsonl", os.devnull, [])
    t2 = time.perf_counter()
    n = len(result.table)
    print(f"in process: read+flows {t1 - t0:.2f} s, jsonl {t2 - t1:.2f} s, {n:,} flows")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="also time the stages")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    path = ensure_scan(args.packets, args.cache_dir)
    if args.in_process:
        in_process(path)
    cmd, env = dsaudit_command(None)
    argv = [*cmd, "flows", str(path), "--format", "jsonl", "--output", os.devnull, "--no-progress"]
    runs = [run_measured(argv, pin=not args.no_pin, env=env) for _ in range(args.repeat)]
    failed = [r for r in runs if not r.ok]
    if failed:
        print(f"dsaudit failed (exit {failed[0].exit_code})", file=sys.stderr)
        return 1
    best = sorted(runs, key=lambda r: r.wall_s)[len(runs) // 2]
    pps = args.packets / best.wall_s
    print(" ".join(pin_prefix(not args.no_pin) + argv))
    print(
        f"median of {len(runs)}: {best.wall_s:.2f} s wall, {pps:,.0f} packets/s "
        f"(target {TARGET_PPS:,}), peak RSS {mb(best.maxrss_kb)} MB (target {TARGET_RSS_MB} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
