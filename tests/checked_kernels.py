"""The kernels built with AddressSanitizer, for tests that must catch out-of-bounds access."""

from __future__ import annotations

import importlib.util
import shutil
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


# The first build of a session, which later calls copy: compiling takes a minute or more.
_built: list[Path] = []


def build_checked(dest: Path) -> Path:
    """A copy of the package in ``dest`` whose kernels are instrumented; returns ``dest``."""
    if _built and (_built[0] / "dsaudit").is_dir():
        shutil.copytree(_built[0] / "dsaudit", dest / "dsaudit", dirs_exist_ok=True)
        return dest
    path: Path = _builder().build(dest)
    _built[:] = [path]
    return path


def asan_runtime() -> str:
    """The sanitizer runtime to preload into Python."""
    return str(_builder().asan_runtime())
