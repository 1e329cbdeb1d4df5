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

from harness import warm_page_cache

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


# Run in a child: `dsaudit report`'s own steps, each timed, so the benchmark can say which of
# them a second job shortens and which stay serial. Prints one JSON object.
STAGES = """
import gc, json, os, sys, time
gc.disable()
t = [time.perf_counter()]
from dsaudit.catalog import load_catalog
from dsaudit.flow_records.builder import FlowOptions
from dsaudit.flow_records.merge import merge_parts
from dsaudit.inventory import load_inventory
from dsaudit.reports.report_output import write_report
from dsaudit.runs import audit
from dsaudit.runs.audit import AuditOptions, run_audit
from dsaudit.runs.periodic import read_parts
jobs, inv, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
classify = audit.classify_flows
judging = []
def timed_classify(*args, **kwargs):
    began = time.perf_counter()
    try:
        return classify(*args, **kwargs)
    finally:
        judging.append(time.perf_counter() - began)
audit.classify_flows = timed_classify
catalog, inventory = load_catalog(), load_inventory(inv)
t.append(time.perf_counter())
parts = read_parts(files, FlowOptions(), jobs=jobs)
t.append(time.perf_counter())
order = sorted(range(len(parts)), key=lambda i: (parts[i].first_ts, i))
merged = merge_parts([parts[i] for i in order])
t.append(time.perf_counter())
result = run_audit(merged, catalog, inventory, AuditOptions(jobs=jobs))
t.append(time.perf_counter())
write_report(result, {}, None, "json", os.devnull, jobs=jobs)
t.append(time.perf_counter())
names = ["start-up", "read the files", "join the parts", "audit", "write JSON"]
took = {n: b - a for n, a, b in zip(names, t, t[1:])}
# The audit's classification of each flow runs in worker processes; its findings, the
# expectations and the per-role tables over all flows run in one.
took["classify flows"] = sum(judging)
took["findings, tables"] = took.pop("audit") - took["classify flows"]
took["write JSON"] = took.pop("write JSON")
print(json.dumps(took), flush=True)
os._exit(0)
"""


def stage_times(files: list[Path], jobs: int, inv: Path, repeat: int) -> dict[str, float]:
    """Median seconds of each of `dsaudit report`'s steps with ``jobs`` jobs, in-process."""
    runs = []
    for _ in range(repeat):
        warm(files)
        cmd = [sys.executable, "-c", STAGES, str(jobs), str(inv), *map(str, files)]
        out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


# The steps `--jobs` spreads over processes: files are read in workers, flows classified
# and their JSON records written in forked processes. The rest runs in the main process.
PARALLEL_STEPS = ("read the files", "classify flows", "write JSON")


def print_stages(one: dict[str, float], two: dict[str, float]) -> None:
    """Each step with one job and with two, which of them run in one process, and the best
    a second job could do given those."""
    print("where one report spends its time, by step (median, in-process):")
    for name in one:
        gain = one[name] / two[name] if two[name] > 0 else 0.0
        where = "split over jobs" if name in PARALLEL_STEPS else "one process"
        print(
            f"    {name:<18} {one[name]:6.2f} s   --jobs 2: {two[name]:6.2f} s  ({gain:.2f}x)"
            f"  {where}"
        )
    serial = sum(v for k, v in one.items() if k not in PARALLEL_STEPS)
    total = sum(one.values())
    best = total / (serial + (total - serial) / 2)
    print(
        f"    {serial:.2f} s of {total:.2f} s runs in one process (start-up, joining the parts "
        f"across file boundaries, the findings and per-role tables over all flows), so even "
        f"a perfect split of the rest gives at most {best:.2f}x"
    )


def warm(files: list[Path]) -> None:
    """Read the files once more before a timed run: the machine's memory manager reclaims
    page-cache pages it has not seen used for a while, and a run should not pay for the disk."""
    for path in files:
        warm_page_cache(path)


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
    ap.add_argument(
        "--stages",
        action="store_true",
        help="also time each step of a report in-process, with one job and with two",
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
                warm(files)
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
                warm(files)
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
    if args.stages:
        print_stages(
            stage_times(files, 1, inv, args.repeat), stage_times(files, 2, inv, args.repeat)
        )
    if results[1] != results[2]:
        sys.exit("the two runs disagree: flows or findings differ")
    print(f"both runs: {results[1][0]} flows, {len(results[1][1])} findings, identical")


if __name__ == "__main__":
    main()
