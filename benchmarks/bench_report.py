"""Benchmark `dsaudit report` over a day of rotated captures: --jobs 1 against --jobs 2.

The reference workload (../shared/bench/gen_pcap.py, 1M frames) is cut into 20 gzipped
pcap files, as `tcpdump -C` with `-z gzip` would leave them, then reported whole with one and
with two worker processes. Prints the medians and their ratio; asserts nothing about time,
but checks that both runs found the same flows and findings.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GEN = ROOT.parent / "shared" / "bench" / "gen_pcap.py"
PCAP_HEADER = 24
RECORD_HEADER = 16


def workload(cache: Path, packets: int, pcap: Path | None) -> Path:
    """The reference capture: ``pcap`` if given, else generated once into ``cache``."""
    if pcap is not None:
        return pcap
    out = cache / f"w{packets}.pcap"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(GEN), str(packets), str(out)], check=True)
    return out


def split(source: Path, parts: int, out_dir: Path, level: int) -> list[Path]:
    """Cut a classic pcap into ``parts`` gzipped files of (nearly) equal packet counts."""
    data = memoryview(source.read_bytes())
    header = bytes(data[:PCAP_HEADER])
    little = header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    fmt = "<I" if little else ">I"
    offsets = []
    pos = PCAP_HEADER
    while pos + RECORD_HEADER <= len(data):
        offsets.append(pos)
        (caplen,) = struct.unpack_from(fmt, data, pos + 8)
        pos += RECORD_HEADER + caplen
    offsets.append(pos)
    n = len(offsets) - 1
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(parts):
        lo, hi = offsets[k * n // parts], offsets[(k + 1) * n // parts]
        path = out_dir / f"capture-{k:02d}.pcap.gz"
        with gzip.open(path, "wb", compresslevel=level) as fh:
            fh.write(header)
            fh.write(data[lo:hi])
        paths.append(path)
    return paths


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def inventory(files: list[Path], folder: Path) -> Path:
    """An inventory inferred from the first file (the synthetic site has no real one)."""
    path = folder / "inventory.yaml"
    if not path.exists():
        cmd = [sys.executable, "-m", "dsaudit", "inventory", "infer", str(files[0])]
        text = subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=True).stdout
        # An on-premises inventory must name its database; the traffic cannot tell which.
        if "  database:" not in text:
            text = text.replace(
                "  mode: on-premises\n", "  mode: on-premises\n  database: postgresql\n"
            )
        path.write_text(text)
    return path


def run(files: list[Path], jobs: int, out: Path, inv: Path) -> float:
    """Seconds for one `dsaudit report` run (a fresh process, as cron starts it)."""
    cmd = [sys.executable, "-m", "dsaudit", "report", *map(str, files), "--no-history"]
    cmd += ["--inventory", str(inv)]
    cmd += ["--jobs", str(jobs), "--no-progress", "--format", "json", "--output", str(out)]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"dsaudit report failed ({done.returncode}):\n{done.stderr}")
    return took


READ_ONLY = """
import gc, os, sys
gc.disable()
from dsaudit.runs.periodic import read_period
read_period(sys.argv[2:], jobs=int(sys.argv[1]))
os._exit(0)
"""


def run_read_only(files: list[Path], jobs: int) -> float:
    """Seconds for a process that only reads and joins the files: no audit, no report. Its
    speed-up bounds what any speed-up of the audit and the writing can give."""
    cmd = [sys.executable, "-c", READ_ONLY, str(jobs), *map(str, files)]
    start = time.perf_counter()
    subprocess.run(cmd, env=_env(), check=True)
    return time.perf_counter() - start


def digest(path: Path) -> tuple[int, list[str]]:
    doc = json.loads(path.read_text())
    return len(doc["flows"]), [f["message"] for f in doc["findings"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--pcap", type=Path, help="reuse this reference capture")
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gzip-level", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "bench-out")
    ap.add_argument(
        "--read-only",
        action="store_true",
        help="also time reading and joining alone (the bound on the report's speed-up)",
    )
    args = ap.parse_args()
    source = workload(args.cache_dir, args.packets, args.pcap)
    folder = args.cache_dir / f"report-{source.stem}-{args.files}"
    files = sorted(folder.glob("capture-*.pcap.gz"))
    if len(files) != args.files:
        t = time.perf_counter()
        files = split(source, args.files, folder, args.gzip_level)
        print(f"split {source} into {len(files)} files in {time.perf_counter() - t:.1f} s")
    inv = inventory(files, folder)
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} gzipped files, {size / 1e6:.0f} MB, {os.cpu_count()} CPUs")
    times: dict[int, list[float]] = {1: [], 2: []}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for jobs in (1, 2):  # interleaved: machine noise hits both alike
                out = Path(tmp) / f"j{jobs}.json"
                times[jobs].append(run(files, jobs, out, inv))
                results[jobs] = digest(out)
    med = {j: statistics.median(t) for j, t in times.items()}
    for j in (1, 2):
        runs = ", ".join(f"{t:.1f}" for t in times[j])
        print(f"--jobs {j}: median {med[j]:.1f} s  (runs: {runs})")
    print(f"speed-up with two jobs: {med[1] / med[2]:.2f}x  (goal: at least 1.6x)")
    if args.read_only:
        alone: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.repeat):
            for jobs in (1, 2):
                alone[jobs].append(run_read_only(files, jobs))
        bound = {j: statistics.median(t) for j, t in alone.items()}
        print(
            f"reading and joining alone: {bound[1]:.1f} s with one job, {bound[2]:.1f} s with "
            f"two ({bound[1] / bound[2]:.2f}x)"
        )
        # What the rest (judging, writing) must become for the whole to reach the goal.
        rest1 = med[1] - bound[1]
        allowed = med[1] / 1.6 - bound[2]
        need = f"{rest1 / allowed:.2f}x" if allowed > 0 else "more than any speed-up"
        print(
            f"the audit and the writing take {rest1:.1f} s with one job; for 1.6x overall "
            f"they would have to take {max(allowed, 0):.2f} s with two: {need}"
        )
    if results[1] != results[2]:
        sys.exit("the two runs disagree: flows or findings differ")
    print(f"both runs: {results[1][0]} flows, {len(results[1][1])} findings, identical")


if __name__ == "__main__":
    main()
