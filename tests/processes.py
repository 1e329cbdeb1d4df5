"""Run dsaudit as users do: a separate `python -m dsaudit` process from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def dsaudit_process(*args: str, text: bool = True, timeout: float = 120) -> Any:
    """The finished process (a subprocess.CompletedProcess of str, or of bytes)."""
    return subprocess.run(
        [sys.executable, "-m", "dsaudit", *args],
        capture_output=True,
        text=text,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=timeout,
    )
