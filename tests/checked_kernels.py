"""The kernels built with AddressSanitizer, for tests that must catch out-of-bounds access."""

from __future__ import annotations

import importlib.util
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


def build_checked(dest: Path) -> Path:
    """A copy of the package in ``dest`` whose kernels are instrumented; returns ``dest``."""
    path: Path = _builder().build(dest)
    return path


def asan_runtime() -> str:
    """The sanitizer runtime to preload into Python."""
    return str(_builder().asan_runtime())
