"""Time `dsaudit flows` beside tcpdump, tshark, dpkt and scapy on one capture; check its counts."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    CONTENDERS,
    DEFAULT_CACHE,
    Context,
    Run,
    count_packets,
    dsaudit_command,
    dsaudit_flows_available,
    ensure_workload,
    last_error_line,
    load_truth,
    mb,
    pin_prefix,
    run_measured,
    warm_page_cache,
)

# The compiled-core issue's targets (#12): ratios within one run, whole processes.
TARGET_VS_TSHARK = 25.0
TARGET_VS_TCPDUMP = 3.0  # at most this many times tcpdump's time
TARGET_RSS_MB = 250
TARGET_JOBS_2 = 1.6

# Run in a child: where one `dsaudit flows` spends its time, by stage, so the benchmark can
# say what a second job can and cannot overlap. Prints one JSON object.
STAGES = """
import gc, json, sys, time
gc.disable()
t0 = time.perf_counter()
from dsaudit.flow_records import builder, reading
from dsaudit.reports.flow_output import write_flows
from dsaudit.sources.capture_file import CaptureReader
t1 = time.perf_counter()
path, jobs = sys.argv[1], int(sys.argv[2])
flows = builder.FlowBuilder()
for item in reading._decoded(CaptureReader(path), jobs):
    flows.consume(*item)
t2 = time.perf_counter()
result = flows.result([])
t3 = time.perf_counter()
write_flows(result.table, "jsonl", "/dev/null", [])
t4 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "read": t2 - t1, "columns": t3 - t2, "write": t4 - t3}))
"""
ALL_CONTENDERS = ("dsaudit", "tcpdump", "tshark", "dpkt", "scapy")

TSHARK_FIELDS = (
    "frame.time_epoch",
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "tcp.flags",
    "tls.handshake.extensions_server_name",
    "dns.qry.name",
    "dns.a",
    "dns.aaaa",
    "http.host",
)

# Truth keys compared for every flow tool; the first five are the ones the issue asks for.
FLOW_CHECKS = (
    "flows_tcp",
    "flows_udp",
    "distinct_sni",
    "distinct_dns_qnames",
    "distinct_http_hosts",
    "flows_icmp",
    "client_hellos_with_sni",
    "ip_packets",
)


@dataclass
class Contender:
    """One row of the table: a command, the packets it processes, and its measured runs."""

    key: str
    label: str
    argv: list[str]
    packets: int
    pin: bool
    env: dict[str, str] | None = None
    sample_tree: bool = False
    capture_stdout: bool = False
    note: str = ""
    runs: list[Run] = field(default_factory=list)
    error: str | None = None
    summary: dict[str, Any] | None = None

    @property
    def good_runs(self) -> list[Run]:
        return [run for run in self.runs if run.ok]

    @property
    def wall_s(self) -> float | None:
        runs = self.good_runs
        return statistics.median(run.wall_s for run in runs) if runs else None

    @property
    def pps(self) -> float | None:
        wall = self.wall_s
        return self.packets / wall if wall else None

    @property
    def cpu_s(self) -> float | None:
        runs = self.good_runs
        return statistics.median(run.user_s + run.sys_s for run in runs) if runs else None

    @property
    def maxrss_kb(self) -> int | None:
        runs = self.good_runs
        return max(run.maxrss_kb for run in runs) if runs else None

    @property
    def tree_peak_kb(self) -> int | None:
        peaks = [run.tree_peak_kb for run in self.good_runs if run.tree_peak_kb is not None]
        return max(peaks) if peaks else None


# --------------------------------------------------------------------------- setup
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=1_000_000, help="workload size to generate")
    parser.add_argument("--pcap", type=Path, help="use this capture instead of generating one")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per contender (median)")
    parser.add_argument(
        "--scapy-packets", type=int, default=30_000, help="scapy reads only this prefix"
    )
    parser.add_argument(
        "--jobs", default="1,2", help="dsaudit --jobs values; 1 runs pinned without the flag"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--skip", default="", help=f"comma-separated contenders to leave out: {ALL_CONTENDERS}"
    )
    parser.add_argument("--dsaudit-cmd", help="command prefix for dsaudit (default: python -m)")
    parser.add_argument("--no-check", action="store_true", help="skip dsaudit's correctness run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--no-stages", action="store_true", help="skip the per-stage breakdown of dsaudit's time"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child run")
    args = parser.parse_args(argv)
    args.skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    unknown = args.skip - set(ALL_CONTENDERS)
    if unknown:
        parser.error(f"unknown contender(s) in --skip: {', '.join(sorted(unknown))}")
    try:
        args.jobs = sorted({int(j) for j in args.jobs.split(",") if j.strip()})
    except ValueError:
        parser.error("--jobs takes a comma-separated list of integers")
    if args.repeat < 1 or any(j < 1 for j in args.jobs):
        parser.error("--repeat and --jobs values must be at least 1")
    return args


def prefix_truth(
    truth: dict[str, Any] | None, pcap: Path, count: int, cache: Path
) -> tuple[dict[str, Any] | None, str]:
    """Truth for the first `count` packets, when the workload is the generator's.

    The generator's output for N packets is a byte prefix of its output for more packets with
    the same seed, so generating the prefix yields exact counts for scapy's slice. The prefix
    is compared byte for byte before its truth is trusted.
    """
    if truth is None or "seed" not in truth:
        return None, "no generator truth for this capture"
    if count >= truth["packets"]:
        return truth, ""
    prefix = ensure_workload(count, cache, quiet=True)
    with open(prefix, "rb") as small, open(pcap, "rb") as big:
        while chunk := small.read(1 << 20):
            if big.read(len(chunk)) != chunk:
                return None, f"{prefix.name} is not a byte prefix of {pcap.name} (other seed?)"
    return load_truth(prefix), ""


def build_contenders(
    args: argparse.Namespace, pcap: Path, packets: int, notes: list[str]
) -> list[Contender]:
    pin = not args.no_pin
    rows: list[Contender] = []
    python = sys.executable
    if "dsaudit" not in args.skip:
        cmd, env = dsaudit_command(args.dsaudit_cmd)
        problem = dsaudit_flows_available(cmd, env)
        base = cmd + ["flows", str(pcap), "--format", "jsonl", "--output", os.devnull]
        for jobs in args.jobs:
            one = jobs == 1
            row = Contender(
                key=f"dsaudit-j{jobs}",
                label="dsaudit flows" + ("" if one else f" --jobs {jobs}"),
                argv=base if one else base + ["--jobs", str(jobs)],
                packets=packets,
                pin=pin and one,
                env=env,
                sample_tree=not one,
                note="one core" if one else f"{jobs} jobs, unpinned",
            )
            if problem:
                row.error = problem
            rows.append(row)
    if "tcpdump" not in args.skip:
        row = Contender(
            "tcpdump",
            "tcpdump -r -w /dev/null",
            ["tcpdump", "-r", str(pcap), "-w", os.devnull],
            packets,
            pin,
            note="reads and rewrites records only (C)",
        )
        if not shutil.which("tcpdump"):
            row.error = "tcpdump not installed; row skipped"
        rows.append(row)
    if "tshark" not in args.skip:
        argv = ["tshark", "-r", str(pcap), "-n", "-T", "fields"]
        for name in TSHARK_FIELDS:
            argv += ["-e", name]
        row = Contender("tshark", "tshark -T fields", argv, packets, pin, note="15 fields")
        if not shutil.which("tshark"):
            row.error = "tshark not installed; row skipped"
        rows.append(row)
    if "dpkt" not in args.skip:
        rows.append(
            Contender(
                "dpkt",
                "dpkt contender",
                [python, str(CONTENDERS / "dpkt_flows.py"), str(pcap)],
                packets,
                pin,
                capture_stdout=True,
                note="same job in pure Python",
            )
        )
    if "scapy" not in args.skip:
        count = min(args.scapy_packets, packets)
        rows.append(
            Contender(
                "scapy",
                "scapy contender",
                [python, str(CONTENDERS / "scapy_flows.py"), str(pcap), "--count", str(count)],
                count,
                pin,
                capture_stdout=True,
                note=f"first {count:,} packets only",
            )
        )
    if pin and not pin_prefix(True):
        notes.append("taskset unavailable: one-core rows are NOT pinned")
    return rows


# --------------------------------------------------------------------------- correctness
def _norm(name: Any) -> str:
    return str(name).strip().rstrip(".").lower()


def dsaudit_counts(path: Path) -> dict[str, Any]:
    """Count what the truth file counts, from dsaudit's JSON-lines flow records."""
    protos: dict[str, int] = {}
    keys: dict[str, set[tuple[Any, ...]]] = {}
    sni: set[str] = set()
    qnames: set[str] = set()
    hosts: set[str] = set()
    with_sni = ip_packets = other_lines = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            record = json.loads(line)
            proto = record.get("proto") if isinstance(record, dict) else None
            if proto is None:
                other_lines += 1
                continue
            proto = str(proto).lower()
            protos[proto] = protos.get(proto, 0) + 1
            # The generator counts one flow per key for the whole capture; dsaudit may start a
            # new record for the same key (idle timeout, ICMP identifier), so keep both counts.
            ends = sorted(
                [
                    (record.get("client_ip"), record.get("client_port")),
                    (record.get("server_ip"), record.get("server_port")),
                ],
                key=repr,
            )
            keys.setdefault(proto, set()).add((record.get("vlan"), *ends))
            if proto in ("tcp", "udp", "icmp"):
                ip_packets += int(record.get("packets_c2s") or 0)
                ip_packets += int(record.get("packets_s2c") or 0)
            if record.get("sni"):
                with_sni += 1
                sni.add(_norm(record["sni"]))
            if record.get("http_host"):
                hosts.add(_norm(record["http_host"]))
            for name in record.get("dns_queries") or ():
                qnames.add(_norm(name))
    return {
        "flows_total": sum(protos.values()),
        "flows_by_proto": protos,
        "flows_tcp": protos.get("tcp", 0),
        "flows_udp": protos.get("udp", 0),
        "flows_icmp": protos.get("icmp", 0) + protos.get("icmpv6", 0),
        "client_hellos_with_sni": with_sni,
        "distinct_sni": len(sni),
        "distinct_dns_qnames": len(qnames),
        "distinct_http_hosts": len(hosts),
        "ip_packets": ip_packets,
        "non_flow_lines": other_lines,
        "distinct_keys_by_proto": {proto: len(found) for proto, found in keys.items()},
    }


def compare(got: dict[str, Any], truth: dict[str, Any]) -> list[dict[str, Any]]:
    truth = dict(truth)
    truth.setdefault(
        "ip_packets",
        truth.get("tcp_packets", 0) + truth.get("udp_packets", 0) + truth.get("icmp_packets", 0),
    )
    rows = []
    for key in FLOW_CHECKS:
        if key in truth and key in got:
            rows.append(
                {
                    "check": key,
                    "expected": truth[key],
                    "got": got[key],
                    "ok": truth[key] == got[key],
                }
            )
    return rows


def compare_outputs(reference: Path, other: Path) -> str:
    """How another --jobs output relates to the one-job output."""
    with open(reference, "rb") as a, open(other, "rb") as b:
        if a.read() == b.read():
            return "identical"
    with open(reference, "rb") as a, open(other, "rb") as b:
        lines_a, lines_b = sorted(a), sorted(b)
    if lines_a == lines_b:
        return "same records, different order"
    only_a = len(set(lines_a) - set(lines_b))
    only_b = len(set(lines_b) - set(lines_a))
    return f"DIFFERENT: {only_a} records only in --jobs 1, {only_b} only here"


def check_dsaudit(
    rows: list[Contender], truth: dict[str, Any] | None, timeout: float, report: dict[str, Any]
) -> None:
    """Untimed runs writing real output: counts vs truth, --jobs N vs --jobs 1.

    They run before the timed ones, so they also warm any on-disk JIT or import caches.
    """
    runnable = [row for row in rows if row.key.startswith("dsaudit") and row.error is None]
    if not runnable:
        return
    with tempfile.TemporaryDirectory(prefix="dsaudit-bench-") as tmp:
        outputs: dict[str, Path] = {}
        for row in runnable:
            out = Path(tmp) / f"{row.key}.jsonl"
            argv = row.argv[:]
            argv[argv.index("--output") + 1] = str(out)
            print(f"  correctness run: {row.label} -> {out.name}", flush=True)
            run = run_measured(argv, env=row.env, timeout=timeout, pin=row.pin)
            if not run.ok:
                row.error = f"correctness run failed: {last_error_line(run)}"
                report[row.key] = {"error": row.error, "stderr": run.stderr_tail}
                continue
            outputs[row.key] = out
            entry: dict[str, Any] = {"untimed_wall_s": round(run.wall_s, 3)}
            try:
                counts = dsaudit_counts(out)
            except (ValueError, OSError) as exc:
                entry["error"] = f"could not read output: {exc}"
                report[row.key] = entry
                continue
            entry["counts"] = counts
            if truth is not None:
                entry["checks"] = compare(counts, truth)
            report[row.key] = entry
        reference = outputs.get("dsaudit-j1")
        for key, out in outputs.items():
            if key != "dsaudit-j1" and reference is not None:
                report[key]["vs_jobs_1"] = compare_outputs(reference, out)


# --------------------------------------------------------------------------- measuring
def measure(rows: list[Contender], repeat: int, timeout: float, workdir: Path, pcap: Path) -> None:
    """Round-robin the repeats so slow drifts in machine load hit every contender alike.

    The capture is read once more before every run: this machine's memory manager reclaims
    page-cache pages it has not seen used for a while, and a run right after tshark's forty
    seconds found part of the file back on disk (wall time well above its CPU time).
    """
    for rep in range(1, repeat + 1):
        for row in rows:
            if row.error is not None:
                continue
            warm_page_cache(pcap)
            stdout = str(workdir / f"{row.key}.out") if row.capture_stdout else os.devnull
            run = run_measured(
                row.argv,
                pin=row.pin,
                stdout_path=stdout,
                env=row.env,
                timeout=timeout,
                sample_tree=row.sample_tree,
            )
            row.runs.append(run)
            status = f"{run.wall_s:8.2f} s  rss {mb(run.maxrss_kb):>6} MB"
            if not run.ok:
                status += f"  FAILED ({last_error_line(run)})"
                # A failure is reported, not retried: the other contenders still get measured.
                row.error = last_error_line(run)
            print(f"  run {rep}/{repeat}  {row.label:<26}{status}", flush=True)
            if run.ok and row.capture_stdout:
                row.summary = read_summary(Path(stdout))


def read_summary(path: Path) -> dict[str, Any] | None:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("summary "):
                summary: dict[str, Any] = json.loads(line[len("summary ") :])
                return summary
    return None


# --------------------------------------------------------------------------- reporting
def fmt_ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    ratio = value / base
    return f"{ratio:,.1f}x" if ratio >= 1 else f"{ratio:.3f}x"


def table(rows: list[Contender], tshark: Contender | None, dsaudit: Contender | None) -> str:
    head = (
        "| contender | packets | median s | packets/s | CPU s | peak RSS MB "
        "| vs tshark | vs dsaudit | note |"
    )
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        if row.pps is None:
            lines.append(f"| {row.label} | - | - | - | - | - | - | - | {row.error or 'no run'} |")
            continue
        rss = mb(row.maxrss_kb)
        if row.tree_peak_kb is not None:
            rss += f" (tree {mb(row.tree_peak_kb)})"
        lines.append(
            f"| {row.label} | {row.packets:,} | {row.wall_s:,.2f} | {row.pps:,.0f} "
            f"| {row.cpu_s:,.2f} | {rss} "
            f"| {fmt_ratio(row.pps, tshark.pps if tshark else None)} "
            f"| {fmt_ratio(row.pps, dsaudit.pps if dsaudit else None)} | {row.note} |"
        )
    return "\n".join(lines)


def print_checks(title: str, checks: Iterable[dict[str, Any]]) -> bool:
    ok_all = True
    print(title)
    for item in checks:
        mark = "ok" if item["ok"] else "MISMATCH"
        ok_all &= item["ok"]
        expected, got = item["expected"], item["got"]
        print(f"    {item['check']:<24} expected {expected:>10,}  got {got:>10,}  {mark}")
    return ok_all


def targets(
    dsaudit: Contender | None,
    tshark: Contender | None,
    tcpdump: Contender | None,
    jobs2: Contender | None,
) -> list[dict[str, Any]]:
    if dsaudit is None or dsaudit.pps is None or dsaudit.wall_s is None:
        return []
    out = []
    if tshark is not None and tshark.pps:
        ratio = dsaudit.pps / tshark.pps
        out.append(
            {
                "target": f"dsaudit >= {TARGET_VS_TSHARK:.0f}x tshark fields (same run)",
                "value": round(ratio, 1),
                "ok": ratio >= TARGET_VS_TSHARK,
            }
        )
    if tcpdump is not None and tcpdump.wall_s:
        times = dsaudit.wall_s / tcpdump.wall_s
        out.append(
            {
                "target": f"dsaudit within {TARGET_VS_TCPDUMP:.0f}x tcpdump's time (same run)",
                "value": round(times, 2),
                "ok": times <= TARGET_VS_TCPDUMP,
            }
        )
    if jobs2 is not None and jobs2.wall_s:
        gain = dsaudit.wall_s / jobs2.wall_s
        out.append(
            {
                "target": f"--jobs 2 at least {TARGET_JOBS_2}x faster than one job",
                "value": round(gain, 2),
                "ok": gain >= TARGET_JOBS_2,
            }
        )
    rss_mb = (dsaudit.maxrss_kb or 0) / 1024
    out.append(
        {
            "target": f"dsaudit peak RSS < {TARGET_RSS_MB} MB (flow table included here)",
            "value": round(rss_mb),
            "ok": rss_mb < TARGET_RSS_MB,
        }
    )
    return out


def stage_times(pcap: Path, jobs: int, env: dict[str, str], repeat: int) -> dict[str, float] | None:
    """Median seconds per stage of `dsaudit flows` with ``jobs`` (in a child process)."""
    runs: list[dict[str, float]] = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", STAGES, str(pcap), str(jobs)],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return None
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def print_serial_share(one: dict[str, float], two: dict[str, float]) -> dict[str, float]:
    """What a second job overlaps (reading and decoding beside the flow table and naming) and
    what stays in one thread, with the best --jobs 2 could do if the rest stayed as it is."""
    serial = one["imports"] + one["columns"] + one["write"]
    total = serial + one["read"]
    best = total / (serial + one["read"] / 2)
    print("where one run spends its time, and what --jobs 2 changes (median, in-process):")
    for key, what in (
        ("imports", "imports"),
        ("read", "read, decode, flow table, naming"),
        ("columns", "flow columns"),
        ("write", "JSON Lines"),
    ):
        print(f"    {what:<36} {one[key]:6.2f} s   --jobs 2: {two[key]:6.2f} s")
    print(
        f"    only reading overlaps (a reader thread decodes beside the flow table and naming);"
        f" {serial:.2f} s of {total:.2f} s stays serial, so even a perfect split of the read"
        f" gives at most {best:.2f}x"
    )
    return {"serial_s": serial, "total_s": total, "best_jobs_2": best}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    context = Context()
    notes: list[str] = []
    if args.pcap is not None:
        pcap = args.pcap.resolve()
        if not pcap.is_file():
            raise SystemExit(f"no such capture: {pcap}")
    else:
        pcap = ensure_workload(args.packets, args.cache_dir)
    truth = load_truth(pcap)
    packets = truth["packets"] if truth and "packets" in truth else count_packets(pcap)
    if truth is None:
        notes.append(f"no {pcap.name}.truth.json: correctness checks skipped")

    print(f"capture: {pcap} ({pcap.stat().st_size / 1e6:,.0f} MB, {packets:,} packets)")
    print(f"machine: {context.cpu}, {context.cpus} CPUs, load {context.loadavg_start}")
    print(f"page cache warm-up read: {warm_page_cache(pcap):.1f} s", flush=True)

    rows = build_contenders(args, pcap, packets, notes)
    for row in rows:
        if row.error:
            print(f"  {row.label}: {row.error}")
    dsaudit_report: dict[str, Any] = {}
    if not args.no_check:
        check_dsaudit(rows, truth, args.timeout, dsaudit_report)

    print(f"timed runs ({args.repeat} each, round-robin):", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-flows-") as tmp:
        measure(rows, args.repeat, args.timeout, Path(tmp), pcap)
    context.loadavg_end = os.getloadavg()

    by_key = {row.key: row for row in rows}
    tshark = by_key.get("tshark")
    dsaudit = by_key.get("dsaudit-j1")
    print()
    print(table(rows, tshark, dsaudit))
    print()
    scapy = by_key.get("scapy")
    if scapy is not None and scapy.pps is not None:
        print(
            f"note: scapy figures are for the first {scapy.packets:,} packets only "
            "(its rate on the prefix, not a full-file run)."
        )
    for note in notes:
        print(f"note: {note}")

    # Correctness: dsaudit against the truth file, then the contenders as a sanity reference.
    all_ok = True
    for key, entry in dsaudit_report.items():
        if "error" in entry:
            print(f"{key}: {entry['error']}")
            all_ok = False
            continue
        if "checks" in entry:
            all_ok &= print_checks(f"{key} vs truth:", entry["checks"])
            records = entry["counts"]["flows_by_proto"]
            distinct = entry["counts"]["distinct_keys_by_proto"]
            repeats = {
                p: n - distinct.get(p, n) for p, n in records.items() if n != distinct.get(p)
            }
            if repeats:
                print(
                    "    records reusing an earlier record's key (idle-timeout or similar splits):"
                    f" {repeats}; distinct keys: {distinct}"
                )
        if "vs_jobs_1" in entry:
            print(f"    output vs --jobs 1: {entry['vs_jobs_1']}")
            all_ok &= entry["vs_jobs_1"] == "identical"
    contender_checks: dict[str, Any] = {}
    for key, row in by_key.items():
        if row.summary is None:
            continue
        if key == "scapy":
            row_truth, why = prefix_truth(truth, pcap, row.packets, args.cache_dir)
        else:
            row_truth, why = truth, ""
        if row_truth is None:
            print(f"{key} vs truth: skipped ({why or 'no truth'})")
            continue
        checks = compare(row.summary, row_truth)
        contender_checks[key] = checks
        print_checks(f"{key} contender vs truth (reference only):", checks)

    goals = targets(dsaudit, tshark, by_key.get("tcpdump"), by_key.get("dsaudit-j2"))
    share: dict[str, float] | None = None
    if dsaudit is not None and not args.no_stages:
        cmd_env = dsaudit_command(args.dsaudit_cmd)[1]
        one = stage_times(pcap, 1, cmd_env, args.repeat)
        two = stage_times(pcap, 2, cmd_env, args.repeat)
        if one is not None and two is not None:
            share = print_serial_share(one, two)
    if goals:
        print("targets:")
        for goal in goals:
            print(f"    {'PASS' if goal['ok'] else 'FAIL'}  {goal['target']}: {goal['value']:,}")

    if args.json:
        result = {
            "context": vars(context),
            "capture": {"path": str(pcap), "bytes": pcap.stat().st_size, "packets": packets},
            "settings": {
                "repeat": args.repeat,
                "scapy_packets": args.scapy_packets,
                "jobs": args.jobs,
                "pinned": bool(pin_prefix(not args.no_pin)),
            },
            "rows": [
                {
                    "key": row.key,
                    "label": row.label,
                    "command": shlex.join(row.argv),
                    "pinned": row.pin,
                    "packets": row.packets,
                    "median_wall_s": row.wall_s,
                    "packets_per_s": row.pps,
                    "median_cpu_s": row.cpu_s,
                    "peak_rss_kb": row.maxrss_kb,
                    "tree_peak_rss_kb": row.tree_peak_kb,
                    "vs_tshark": row.pps / tshark.pps
                    if row.pps and tshark and tshark.pps
                    else None,
                    "vs_dsaudit": (
                        row.pps / dsaudit.pps if row.pps and dsaudit and dsaudit.pps else None
                    ),
                    "error": row.error,
                    "note": row.note,
                    "summary": row.summary,
                    "runs": [run.to_json() for run in row.runs],
                }
                for row in rows
            ],
            "dsaudit_correctness": dsaudit_report,
            "contender_correctness": contender_checks,
            "targets": goals,
            "serial_share": share,
            "notes": notes,
            "truth": truth,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1, default=str)
        print(f"figures written to {args.json}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
