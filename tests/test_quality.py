"""The codebase's own standards: ruff lint and format, mypy, a docstring on every module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


# ruff is a test dependency: run it from this interpreter's environment, which need not be
# on PATH (the README runs .venv/bin/python -m pytest without activating the venv).
def test_ruff_lint_is_clean() -> None:
    out = _run(sys.executable, "-m", "ruff", "check", ".")
    assert out.returncode == 0, out.stdout[-3000:]


def test_ruff_format_is_clean() -> None:
    out = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
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


@pytest.mark.parametrize(
    "module",
    [
        "dsaudit.sources.record_walk",
        "dsaudit.decode.packet_kernel",
        "dsaudit.decode.tls_wire",
        "dsaudit.decode.dns_wire",
        "dsaudit.flows.table_kernel",
        "dsaudit.naming.name_state",
        "dsaudit.flow_records.name_columns",
        "dsaudit.reports.json_text",
    ],
)
def test_kernel_stubs_name_exactly_what_the_compiled_module_exports(module: str) -> None:
    # mypy reads the .pyi; the compiled module is the truth. A name in one and not the other
    # would type-check code that fails at import, or hide a constant from the checker.
    import importlib

    compiled = importlib.import_module(module)
    assert compiled.__file__ is not None and compiled.__file__.endswith(".so")
    stub = Path(compiled.__file__).with_name(module.rsplit(".", 1)[1] + ".pyi")
    tree = ast.parse(stub.read_text())
    declared = {
        n.target.id
        for n in tree.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    } | {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    exported = {
        name
        for name, value in vars(compiled).items()
        if not name.startswith("_")
        and (isinstance(value, int | str | dict) or callable(value))
        and getattr(value, "__module__", module) in (module, "builtins", None)
    }
    assert declared == exported


def test_known_gaps_are_strict_xfails() -> None:
    # docs/security.md lists each known gap with the test that pins it; such a test must be a
    # strict xfail (so fixing the gap fails the suite until the entry is removed), and no
    # strict xfail may exist without its entry.
    import re

    doc = (ROOT / "docs" / "security.md").read_text()
    section = doc[doc.index("Known gaps") : doc.index("## Text from a capture")]
    listed = set(re.findall(r"^- `(?:[\w/]+\.py::)?(test_\w+)`", section, flags=re.M))
    marked: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        marked |= set(
            re.findall(
                r"@pytest\.mark\.xfail\([^)]*strict=True[^)]*\)\s*(?:@[^\n]*\n\s*)*def (test_\w+)",
                path.read_text(),
            )
        )
    assert listed == marked
