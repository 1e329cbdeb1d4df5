"""First run after a fresh install against warm runs, and the sample audit's wall time.

Installs this tree into a new virtual environment (offline, no build isolation: Cython and
setuptools come from the running Python), then runs the installed console script: the first
`flows` run on the workload right after the install, then warm runs of the same, and warm
runs of `audit samples/problems.pcap`. Nothing asserts: it prints the ratio the compiled-core
issue sets (first run at most 1.5 times a warm one) and the audit's median.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from harness import ensure_workload, mb, run_measured, warm_page_cache

ROOT = Path(__file__).resolve().parents[1]


def install(dest: Path) -> Path:
    """A venv in ``dest`` with this tree installed the way a user installs it."""
    subprocess.run([sys.executable, "-m", "venv", str(dest)], check=True)
    # Dependencies from the running environment (perhaps itself a venv), not its dsaudit.
    (site,) = dest.glob("lib/python*/site-packages")
    paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "running-env.pth").write_text("".join(f"{p}\n" for p in paths))
    src = dest / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", "*.so", "build", "*.egg-info", ".venv", "bench-out"),
    )
    pip = [str(dest / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, "--no-build-isolation", "--no-index", str(src)], check=True)
    return dest / "bin" / "dsaudit"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--pcap", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args()
    pcap = args.pcap or ensure_workload(args.packets, args.cache_dir)
    warm_page_cache(pcap)
    with tempfile.TemporaryDirectory(prefix="dsaudit-install-") as tmp:
        exe = install(Path(tmp) / "venv")
        flows = [str(exe), "flows", str(pcap), "--format", "jsonl", "--output", "/dev/null"]
        first = run_measured(flows)
        warm = [run_measured(flows) for _ in range(args.repeat)]
        audit = [
            str(exe),
            "audit",
            str(ROOT / "samples/problems.pcap"),
            "--inventory",
            str(ROOT / "samples/problems.inventory.yaml"),
            "--output",
            str(Path(tmp) / "report.txt"),
        ]
        audits = [run_measured(audit) for _ in range(args.repeat + 1)][1:]
    for run in [first, *warm]:
        if not run.ok:
            print(f"flows failed: {run.stderr_tail}", file=sys.stderr)
            return 1
    median = statistics.median(r.wall_s for r in warm)
    print(f"first run after install: {first.wall_s:.2f} s, peak RSS {mb(first.maxrss_kb)}")
    print(f"warm run (median of {len(warm)}): {median:.2f} s, peak RSS {mb(warm[0].maxrss_kb)}")
    print(f"first / warm: {first.wall_s / median:.2f} (target at most 1.5)")
    codes = {r.exit_code for r in audits}
    print(
        f"audit samples/problems.pcap warm: {statistics.median(r.wall_s for r in audits):.2f} s "
        f"(exit codes {sorted(codes)}; target under 1 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
