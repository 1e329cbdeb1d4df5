"""Write an AuditResult in any report format: the single entry point the audit command calls."""

from __future__ import annotations

import sys
from collections.abc import Callable

from dsaudit.errors import DsauditError
from dsaudit.judge.findings import AuditResult
from dsaudit.reports.audit_files import (
    findings_csv_path,
    iter_findings_csv,
    iter_flows_csv,
    write_parquet,
)
from dsaudit.reports.audit_html import render_html
from dsaudit.reports.audit_json import iter_audit_json
from dsaudit.reports.audit_markdown import render_markdown
from dsaudit.reports.audit_terminal import render_terminal, use_colour
from dsaudit.reports.formats import AUDIT_FORMATS
from dsaudit.reports.text_out import write_text
from dsaudit.text.fit import output_width


def _to_stdout(output: str | None) -> bool:
    return output in (None, "-")


def _table(result: AuditResult, output: str | None, jobs: int) -> list[str]:
    # Colour only on an interactive stdout: a file must never collect escape sequences.
    colour = _to_stdout(output) and use_colour(sys.stdout)
    # A file keeps whole lines (no width to fit); a terminal or $COLUMNS sets one.
    width = output_width() if _to_stdout(output) else None
    write_text([render_terminal(result, colour=colour, width=width)], output)
    return [] if _to_stdout(output) else [str(output)]


def _markdown(result: AuditResult, output: str | None, jobs: int) -> list[str]:
    write_text([render_markdown(result)], output)
    return [] if _to_stdout(output) else [str(output)]


def _csv(result: AuditResult, output: str | None, jobs: int) -> list[str]:
    write_text(iter_flows_csv(result), output)
    if _to_stdout(output):
        return []  # one stream holds one CSV: the flows; --output adds the findings file
    assert output is not None
    findings = findings_csv_path(output)
    write_text(iter_findings_csv(result), findings)
    return [output, findings]


def _json(result: AuditResult, output: str | None, jobs: int) -> list[str]:
    write_text(iter_audit_json(result, jobs), output)
    return [] if _to_stdout(output) else [str(output)]


def _html(result: AuditResult, output: str | None, jobs: int) -> list[str]:
    write_text([render_html(result)], output)
    return [] if _to_stdout(output) else [str(output)]


def _parquet(result: AuditResult, output: str | None, jobs: int) -> list[str]:
    return list(write_parquet(result, output).values())


# Each takes the result, the output path (None: stdout) and the processes it may use.
WRITERS: dict[str, Callable[[AuditResult, str | None, int], list[str]]] = {
    "table": _table,
    "markdown": _markdown,
    "csv": _csv,
    "json": _json,
    "html": _html,
    "parquet": _parquet,
}


def write_audit(result: AuditResult, fmt: str, output: str | None, jobs: int = 1) -> list[str]:
    """Render ``result`` as ``fmt`` to ``output`` (stdout when None or "-"), with up to
    ``jobs`` processes where a format can use them.

    Returns the files written (none for stdout). csv with a file also writes
    ``<stem>.findings.csv``; parquet needs ``output`` (a directory or a stem) and writes one
    file per table plus the summary as JSON. See docs/reports.md.
    """
    writer = WRITERS.get(fmt)
    if writer is None:
        raise DsauditError(f"unknown report format {fmt!r}; use one of {', '.join(AUDIT_FORMATS)}")
    return writer(result, output, jobs)
