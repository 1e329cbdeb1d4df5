"""First run after a fresh install against warm runs, and the sample audit's wall time.

Installs this tree into a new virtual environment (offline, no build isolation: Cython and
setuptools come from the running Python), then runs the installed console script: the first
`flows` run on the workload right after the install, then warm runs of the same, and warm
runs of `audit samples/problems.pcap`. Nothing asserts: it prints the ratio the compiled-core
issue sets (first run at most 1.5 times a warm one) and the audit's median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from harness import ensure_workload, mb, run_measured, warm_page_cache

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import fresh_install  # noqa: E402 - scripts/ is not a package; its path is added just above


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
        exe = fresh_install.install(Path(tmp) / "venv") / "bin" / "dsaudit"
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
