"""The codebase's own standards: ruff lint and format, mypy, a docstring on every module."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_lint_is_clean() -> None:
    out = _run("ruff", "check", ".")
    assert out.returncode == 0, out.stdout[-3000:]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_format_is_clean() -> None:
    out = _run("ruff", "format", "--check", ".")
    assert out.returncode == 0, out.stdout[-3000:]


def test_mypy_is_clean() -> None:
    out = _run(sys.executable, "-m", "mypy")
    assert out.returncode == 0, out.stdout[-3000:]


@pytest.mark.parametrize(
    "module",
    sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "dsaudit").rglob("*.py")),
)
def test_every_module_says_its_job_in_one_line(module: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / module).read_text()))
    assert doc, f"{module} has no module docstring"
    assert doc.splitlines()[0].strip(), f"{module}: the docstring's first line is empty"
