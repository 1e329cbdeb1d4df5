"""Shared pytest options (--update-golden) and a closing line that counts skips for ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = (Path(__file__).resolve().parents[1] / ".." / "shared").resolve()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*.json from the current output (review the diff!)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr or "")


def _skipped_for_shared(reports: list[pytest.TestReport]) -> int:
    """Skips caused by ../shared being absent: the corpus and seed markers name it, and the
    tests parametrized over the corpus's captures have an empty parameter set."""
    if SHARED.is_dir():
        return 0
    count = 0
    for report in reports:
        reason = _skip_reason(report)
        if "shared" in reason or "empty parameter set" in reason:
            count += 1
    return count


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Without this line a clone on its own passes "green" while a fifth of the suite never ran.
    count = _skipped_for_shared(terminalreporter.stats.get("skipped", []))
    if count:
        terminalreporter.write_line(
            f"{count} test{'s' if count != 1 else ''} skipped: {SHARED} (real captures and the "
            "vendor's port table) is not beside the repository; see README.md, Development"
        )
