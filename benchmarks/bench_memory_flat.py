"""Peak memory of `dsaudit flows` on ever larger captures that hold only a few flows.

The flow table grows with the number of flows; everything else (reading, decoding, naming)
must not grow with the file. Captures of N packets spread over four TCP flows isolate that
part: their peak RSS should be the same for 1M and 3M packets.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

from harness import warm_page_cache

ROOT = Path(__file__).resolve().parents[1]


def write_capture(path: Path, packets: int) -> None:
    """A pcap of ``packets`` 1254-byte frames over four TCP flows to port 4120."""
    payload = bytes(1200)
    with path.open("wb", buffering=1 << 20) as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i in range(packets):
            flow = i % 4
            to_server = (i // 4) % 2 == 0
            client, server = bytes([10, 0, 0, 1 + flow]), bytes([10, 0, 1, 1])
            src, dst = (client, server) if to_server else (server, client)
            sport, dport = (40000 + flow, 4120) if to_server else (4120, 40000 + flow)
            tcp = struct.pack(
                "!HHIIHHHH", sport, dport, (i * 1200) & 0xFFFFFFFF, 0, (5 << 12) | 0x18, 500, 0, 0
            )
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1240, i & 0xFFFF, 0, 64, 6, 0, src, dst)
            frame = b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload
            ts = 1_700_000_000 + i / 100_000
            fh.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(frame), len(frame)))
            fh.write(frame)


def measure(path: Path) -> tuple[float, int]:
    """Seconds and peak RSS (KB) of one `dsaudit flows` run on ``path``."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dsaudit",
            "flows",
            str(path),
            "--format",
            "jsonl",
            "-o",
            os.devnull,
        ],
        cwd=ROOT,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"dsaudit failed on {path}")
    return time.perf_counter() - start, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000000,3000000", help="packet counts to try")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--remove", action="store_true", help="delete the captures afterwards")
    args = ap.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    print("| packets | file MB | seconds | packets/s | peak RSS MB |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in (int(s) for s in args.sizes.split(",")):
        path = args.cache_dir / f"fewflows-{n}.pcap"
        if not path.exists():
            write_capture(path, n)
        # Read once first: a capture that left the page cache would time the disk instead.
        warm_page_cache(path)
        seconds, rss = measure(path)
        print(
            f"| {n:,} | {path.stat().st_size / 1e6:,.0f} | {seconds:.2f} | "
            f"{n / seconds:,.0f} | {rss / 1024:,.0f} |"
        )
        if args.remove:
            path.unlink()


if __name__ == "__main__":
    main()
