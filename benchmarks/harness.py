"""Shared plumbing for the benchmark scripts: workload files, measured child processes, context."""

from __future__ import annotations

import compileall
import json
import os
import platform
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GEN_PCAP = REPO.parent / "shared" / "bench" / "gen_pcap.py"
DEFAULT_CACHE = REPO / "bench-out"
CONTENDERS = Path(__file__).resolve().parent / "contenders"
SPAWN_CHILD = Path(__file__).resolve().parent / "spawn_child.py"

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAP_HEADER = 24
RECORD_HEADER = 16


# --------------------------------------------------------------------------- workload files
def workload_name(packets: int) -> str:
    if packets % 1_000_000 == 0:
        return f"w{packets // 1_000_000}m"
    if packets % 1000 == 0:
        return f"w{packets // 1000}k"
    return f"w{packets}"


def truth_path(pcap: Path) -> Path:
    return pcap.with_name(pcap.name + ".truth.json")


def load_truth(pcap: Path) -> dict[str, Any] | None:
    path = truth_path(pcap)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        truth: dict[str, Any] = json.load(fh)
    return truth


def _cached_workload_ok(pcap: Path, packets: int) -> bool:
    """True if pcap and truth exist and agree with each other on count and size."""
    truth = load_truth(pcap) if pcap.is_file() else None
    if truth is None or truth.get("packets") != packets:
        return False
    # The exact file size follows from the truth counts, which catches a half-written file.
    expected = PCAP_HEADER + RECORD_HEADER * packets + int(truth.get("bytes", -1))
    return pcap.stat().st_size == expected


def ensure_workload(packets: int, cache_dir: Path, *, quiet: bool = False) -> Path:
    """Return cache_dir/w<N>.pcap, generating it (and its truth file) unless already there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    pcap = cache_dir / f"{workload_name(packets)}.pcap"
    if _cached_workload_ok(pcap, packets):
        return pcap
    if not GEN_PCAP.is_file():
        raise SystemExit(f"workload generator not found: {GEN_PCAP}")
    # Generate under a temporary name so an interrupted run never leaves a plausible cache hit.
    partial = pcap.with_name(pcap.name + ".partial")
    if not quiet:
        print(f"generating {packets:,} packets into {pcap} ...", flush=True)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(GEN_PCAP), str(packets), str(partial)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    truth = load_truth(partial)
    if truth is None:
        raise SystemExit(f"generator wrote no truth file next to {partial}")
    truth["file"] = str(pcap)
    with open(truth_path(pcap), "w", encoding="utf-8") as fh:
        json.dump(truth, fh, indent=1, sort_keys=True)
    truth_path(partial).unlink()
    partial.replace(pcap)
    if not quiet:
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    return pcap


def read_pcap_header(fh: Any) -> tuple[bytes, str, float]:
    header = fh.read(PCAP_HEADER)
    fmt = PCAP_MAGICS.get(header[:4])
    if len(header) < PCAP_HEADER or fmt is None:
        raise SystemExit(f"{fh.name}: not a classic pcap file (pcapng is not supported here)")
    return header, fmt[0], fmt[1]


def count_packets(pcap: Path) -> int:
    """Number of records, walking record headers only (used when no truth file exists)."""
    with open(pcap, "rb") as fh:
        _, endian, _ = read_pcap_header(fh)
        caplen_at = struct.Struct(endian + "8xI4x")
        count = 0
        while True:
            head = fh.read(RECORD_HEADER)
            if len(head) < RECORD_HEADER:
                return count
            fh.seek(caplen_at.unpack(head)[0], os.SEEK_CUR)
            count += 1


def warm_page_cache(path: Path) -> float:
    """Read the file once so no contender pays for the first trip to disk; return seconds."""
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        chunk = bytearray(1 << 22)
        while fh.readinto(chunk):
            pass
    return time.perf_counter() - started


# --------------------------------------------------------------------------- measured runs
@dataclass
class Run:
    """One child process: whole-process wall time and the kernel's accounting for it."""

    argv: list[str]
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kb: int
    exit_code: int
    stderr_tail: str = ""
    tree_peak_kb: int | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pin_prefix(pin: bool) -> list[str]:
    """taskset -c 0 when pinning is asked for and possible; the caller notes when it is not."""
    if pin and shutil.which("taskset") and 0 in os.sched_getaffinity(0):
        return ["taskset", "-c", "0"]
    return []


class TreeSampler(threading.Thread):
    """Polls the summed RSS of every process in the child's session.

    ru_maxrss from wait4 is the largest single process among the child and its reaped
    descendants, not their sum; a multi-process run (--jobs N) needs this sampled total.
    Sampling misses short peaks, so it is a lower bound. The launcher is left out.
    """

    def __init__(self, session: int, exclude: int | None = None, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.session = session
        self.exclude = str(exclude)
        self.interval = interval
        self.peak_kb = 0
        self.page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
        self.stopped = threading.Event()

    def _session_rss_kb(self) -> int:
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or entry.name == self.exclude:
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            # Fields after the parenthesised command: state ppid pgrp session ... rss is 24th.
            rest = stat[stat.rfind(b")") + 2 :].split()
            if len(rest) > 21 and int(rest[3]) == self.session:
                total += int(rest[21]) * self.page_kb
        return total

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.peak_kb = max(self.peak_kb, self._session_rss_kb())

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return self.peak_kb


def run_measured(
    argv: Sequence[str],
    *,
    pin: bool = False,
    stdout_path: str = os.devnull,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    sample_tree: bool = False,
) -> Run:
    """Run argv as its own process and return wall time, CPU and peak RSS for that child alone.

    The command is started by spawn_child.py, which reads the child's rusage with os.wait4 on
    its pid: figures for exactly that child (and whatever it reaped), unlike
    getrusage(RUSAGE_CHILDREN), whose ru_maxrss is the maximum over every child ever waited
    for; and not inflated by the harness's own memory (see spawn_child.py).
    """
    full = pin_prefix(pin) + list(argv)
    timed_out = threading.Event()
    with (
        open(stdout_path, "wb") as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory(prefix="bench-run-") as tmp,
    ):
        result = Path(tmp) / "rusage"
        launcher = [sys.executable, "-I", "-S", str(SPAWN_CHILD), str(result), "--", *full]
        started = time.perf_counter()
        # A new session lets a timeout kill the whole tree and lets the sampler find it.
        proc = subprocess.Popen(launcher, stdout=out, stderr=err, env=env, start_new_session=True)

        def kill_tree() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill_tree) if timeout else None
        sampler = TreeSampler(proc.pid, exclude=proc.pid) if sample_tree else None
        if timer:
            timer.start()
        if sampler:
            sampler.start()
        launcher_code = proc.wait()
        outer_wall = time.perf_counter() - started
        if timer:
            timer.cancel()
        tree_peak = sampler.stop() if sampler else None
        err.seek(0)
        tail = err.read()[-4000:].decode("utf-8", "replace")
        fields = result.read_text(encoding="ascii").split() if result.is_file() else []
    if len(fields) == 5:
        wall, user, system = float(fields[0]), float(fields[1]), float(fields[2])
        maxrss, code = int(fields[3]), int(fields[4])
    else:  # the launcher itself failed or was killed: no rusage for the command
        wall, user, system, maxrss, code = outer_wall, 0.0, 0.0, 0, launcher_code or -1
    return Run(
        argv=full,
        wall_s=wall,
        user_s=user,
        sys_s=system,
        maxrss_kb=maxrss,  # kilobytes on Linux
        exit_code=code,
        stderr_tail=tail,
        tree_peak_kb=tree_peak,
        timed_out=timed_out.is_set(),
    )


def last_error_line(run: Run) -> str:
    if run.timed_out:
        return "timed out"
    lines = [line for line in run.stderr_tail.splitlines() if line.strip()]
    return f"exit {run.exit_code}: {lines[-1] if lines else '(no stderr)'}"


# --------------------------------------------------------------------------- dsaudit
def dsaudit_command(override: str | None) -> tuple[list[str], dict[str, str]]:
    """Command prefix and environment for running dsaudit from this working tree.

    The default, `python -m dsaudit` with the repo first on PYTHONPATH, measures the code in
    the tree rather than whatever version happens to be installed.
    """
    env = dict(os.environ)
    if override:
        return shlex.split(override), env
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # An installed package has its bytecode (pip compiles it); a tree run with
    # PYTHONDONTWRITEBYTECODE set would compile 40 modules from source in every timed run.
    compileall.compile_dir(str(REPO / "dsaudit"), quiet=1)
    return [sys.executable, "-m", "dsaudit"], env


def dsaudit_flows_available(cmd: list[str], env: dict[str, str]) -> str | None:
    """None if `dsaudit flows --help` works, else a one-line reason."""
    try:
        proc = subprocess.run(
            cmd + ["flows", "--help"], capture_output=True, text=True, env=env, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {shlex.join(cmd)}: {exc}"
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        return f"`{shlex.join(cmd)} flows --help` failed: {lines[-1] if lines else proc.returncode}"
    return None


# --------------------------------------------------------------------------- context
def _first_line(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else None


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None


@dataclass
class Context:
    """Where and with what the figures were taken; goes into --json output."""

    when: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    cpu: str = field(default_factory=_cpu_model)
    cpus: int = field(default_factory=lambda: os.cpu_count() or 0)
    python: str = field(default_factory=platform.python_version)
    git_revision: str | None = field(default_factory=_git_revision)
    tshark: str | None = field(default_factory=lambda: _first_line(["tshark", "--version"]))
    tcpdump: str | None = field(default_factory=lambda: _first_line(["tcpdump", "--version"]))
    dpkt: str | None = field(default_factory=lambda: _package_version("dpkt"))
    scapy: str | None = field(default_factory=lambda: _package_version("scapy"))
    taskset: bool = field(default_factory=lambda: bool(pin_prefix(True)))
    loadavg_start: tuple[float, float, float] = field(default_factory=os.getloadavg)
    loadavg_end: tuple[float, float, float] | None = None


def mb(kb: float | None) -> str:
    return "-" if kb is None else f"{kb / 1024:,.0f}"
