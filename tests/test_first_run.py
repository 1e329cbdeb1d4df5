"""A newcomer's first commands: the README's Quick start, CI running it, the skipped-tests line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```console\n(.*?)\n```", section, flags=re.S)


def test_quick_start_is_setup_in_a_venv_then_the_tests() -> None:
    first, tests = _quick_start()  # exactly two commands, as the README promises
    assert first.startswith("./scripts/setup && .venv/bin/dsaudit audit samples/problems.pcap")
    assert tests == ".venv/bin/python -m pytest -q"
    setup = (ROOT / "scripts" / "setup").read_text(encoding="utf-8")
    # Debian's Python refuses pip outside a venv: the install must go into .venv.
    assert re.search(r'"\$python" -m venv \.venv', setup)
    assert ".venv/bin/python -m pip install" in setup and "-e '.[test]'" in setup
    assert ".venv/" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_ci_runs_exactly_the_readme_test_command_after_setup() -> None:
    lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert lines == ["./scripts/setup", _quick_start()[1]]


def test_setup_script_parses() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    proc = subprocess.run([bash, "-n", str(ROOT / "scripts" / "setup")], capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_a_clone_without_shared_says_how_many_tests_it_skipped(tmp_path: Path) -> None:
    # A clone of the test helpers with nothing beside it: ../shared does not exist there.
    tests = tmp_path / "clone" / "tests"
    tests.mkdir(parents=True)
    for name in ("__init__.py", "conftest.py", "corpus.py"):
        shutil.copy(ROOT / "tests" / name, tests / name)
    (tests / "test_some.py").write_text(
        "import pytest\n"
        "from tests.corpus import corpus_names, needs_corpus\n\n"
        "@needs_corpus\n"
        "def test_on_the_corpus():\n    pass\n\n"
        "@pytest.mark.parametrize('name', corpus_names())\n"
        "def test_each_capture(name):\n    pass\n\n"
        "@pytest.mark.skip(reason='unrelated')\n"
        "def test_skipped_for_another_reason():\n    pass\n\n"
        "def test_plain():\n    pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        capture_output=True,
        text=True,
        cwd=tests.parent,
        env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "1 passed, 3 skipped" in lines[-1]
    shared = tmp_path / "shared"
    assert lines[-2] == (
        f"2 tests skipped: {shared} (real captures and the vendor's port table) is not beside "
        "the repository; see README.md, Development"
    )
    assert sum("tests skipped" in line for line in lines) == 1
