"""The kernels built with AddressSanitizer, for tests that must catch out-of-bounds access."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_checked_kernels", ROOT / "scripts" / "build_checked_kernels.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_built: list[Path] = []


def build_checked(dest: Path) -> Path:
    """A copy of the package whose kernels are instrumented, and its path.

    The first call of a test session builds it in ``dest``; later calls share that copy,
    since the build takes about a minute.
    """
    if not _built or not _built[0].is_dir():
        _built[:] = [_builder().build(dest)]
    return _built[0]


def asan_runtime() -> str:
    """The sanitizer runtime to preload into Python."""
    return str(_builder().asan_runtime())


Runner = Callable[..., subprocess.CompletedProcess[str]]


def checked_runner(
    tmp_path: Path, script: str, *, python_malloc: bool = False, timeout: int = 300
) -> Runner:
    """Run ``script`` (a file's text) with the instrumented kernels first on the path.

    ``python_malloc`` has Python allocate with plain malloc, so that a read past the end of
    a bytes object is caught too. The returned function takes the script's arguments.
    """
    path = tmp_path / "checked_run.py"
    path.write_text(script)
    checked = build_checked(tmp_path / "checked")
    env = {
        **os.environ,
        "LD_PRELOAD": asan_runtime(),
        "ASAN_OPTIONS": "detect_leaks=0",
        "PYTHONPATH": str(checked),
    }
    if python_malloc:
        env["PYTHONMALLOC"] = "malloc"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(path), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=timeout,
        )

    return run
