#!/usr/bin/env python3
"""Build a copy of dsaudit whose compiled kernels are instrumented with AddressSanitizer.

Usage: scripts/build_checked_kernels.py DEST. The copy in DEST/dsaudit reports any read or
write outside a buffer as an AddressSanitizer error instead of returning a wrong value. Run
Python against it with the sanitizer's runtime loaded first:

    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
        PYTHONPATH=DEST python ...
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = "-fsanitize=address -fno-omit-frame-pointer -O1 -g"


def asan_runtime() -> str:
    """The path of gcc's AddressSanitizer runtime, for LD_PRELOAD."""
    out = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def build(dest: Path) -> Path:
    """Copy the package to ``dest`` and compile its kernels there with AddressSanitizer."""
    dest.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("*.so", "__pycache__")
    shutil.copytree(ROOT / "dsaudit", dest / "dsaudit", ignore=skip, dirs_exist_ok=True)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    env = {**os.environ, "CFLAGS": FLAGS, "LDFLAGS": "-fsanitize=address"}
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=dest,
        env=env,
        check=True,
        capture_output=True,
    )
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(build(Path(sys.argv[1])))
