#!/usr/bin/env python3
"""Install this tree into a new virtual environment the way a user does, offline.

Usage: scripts/fresh_install.py DEST. Used by tests/test_install.py and
benchmarks/bench_startup.py. The package is built from a copy of the tree (so the build
writes nothing into it) with pip, without build isolation and without an index: Cython,
setuptools and the dependencies come from the running environment, which the new one sees
through a path line in a .pth file (that adds the folders without running the .pth files
inside them, so the running environment's editable dsaudit stays out).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_COPIED = (".git", "*.so", "build", "*.egg-info", ".venv", "bench-out", "tests")


def install(dest: Path) -> Path:
    """A venv in ``dest`` with this tree built and installed; returns ``dest``.

    Raises RuntimeError with pip's last words when the build or install fails.
    """
    subprocess.run([sys.executable, "-m", "venv", str(dest)], check=True)
    (site,) = dest.glob("lib/python*/site-packages")
    paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "running-env.pth").write_text("".join(f"{p}\n" for p in paths))
    src = dest / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_COPIED))
    pip = [str(dest / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    proc = subprocess.run(
        [*pip, "--no-build-isolation", "--no-index", str(src)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip install failed: {proc.stderr[-3000:]}")
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(install(Path(sys.argv[1])) / "bin" / "dsaudit")
