"""The Markdown audit report: same content as the terminal, as tables no data can break."""

from __future__ import annotations

import re

from dsaudit.reports.audit_markdown import md, render_markdown
from tests.reports.audit_data import SCRIPT_NAME, build_result, empty_result

# A pipe that splits cells: not preceded by an odd number of backslashes.
CELL_PIPE = re.compile(r"(?<!\\)(?:\\\\)*\|")


def _tables(text: str) -> list[list[str]]:
    """Consecutive runs of lines starting with a pipe."""
    tables: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def test_headline_and_sections() -> None:
    out = render_markdown(build_result())
    assert out.startswith("# ❌ Deep Security traffic audit: NOT COMPLIANT\n")
    assert "**Exit code 1.** 3 findings reach the fail-on level (high)" in out
    headings = [line for line in out.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Compliance per role",
        "## Hosts needing attention",
        "## Findings, most severe first",
        "## Top unexplained destinations",
        "## Heartbeats per agent",
    ]
    assert "> **Capture quality: LIMITED. The verdict rests on a capture with 3 caveats:**" in out
    assert "| **Vantage** | SPAN / mirror port (detected; conversations" in out
    assert "| 10.20.0.99:8443 | tcp | metrics.example.net | unknown | 2 | 1 | 80.0 kB |" in out


def test_every_row_has_as_many_cells_as_its_header() -> None:
    for table in _tables(render_markdown(build_result())):
        widths = {len(CELL_PIPE.findall(line)) for line in table}
        assert len(widths) == 1, table


def test_hostile_text_is_inert() -> None:
    out = render_markdown(build_result())
    # Every "<" is backslash-escaped, so no tag can open; "->" stays readable.
    assert re.search(r"(?<!\\)<(?!/?sub>|br>)", out) is None and "\x1b" not in out
    assert "\\<script>document.querySelector" in out and "&gt;" not in out
    assert "a\\|b\\|c.example\\x0a\\| forged \\| row \\|\\u202emoc.evil" in out
    assert "=cmd\\|' /C calc'\\!A0" in out
    # No line of the document starts with the forged row: the newline stayed escaped.
    assert not any(line.startswith("| forged") for line in out.splitlines())


def test_md_escapes_links_emphasis_and_a_backslash_before_a_pipe() -> None:
    assert md("[login](http://evil)") == "\\[login\\](http://evil)"
    assert md("*bold* _it_") == "\\*bold\\* \\_it\\_"
    # A trailing backslash must not swallow the escape of the pipe after it.
    cell = md("a\\|b")
    assert len(CELL_PIPE.findall(f"| {cell} |")) == 2
    assert md(SCRIPT_NAME).startswith("\\<script>")
    assert md("agent -> manager & co <b>") == "agent -> manager \\& co \\<b>"


def test_empty_audit() -> None:
    out = render_markdown(empty_result())
    assert out.startswith("# ✅ Deep Security traffic audit: COMPLIANT\n")
    assert "*No findings.*" in out and "Capture quality: no known limits." in out
