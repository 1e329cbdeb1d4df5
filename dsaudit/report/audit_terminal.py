"""The audit for a terminal: verdict, capture, quality caveats and tables, coloured when wanted."""

from __future__ import annotations

import os
from typing import IO

from tabulate import tabulate

from dsaudit.findings import AuditResult
from dsaudit.report import audit_frames as af
from dsaudit.report import audit_tables as at
from dsaudit.report.safe_text import for_terminal

# SGR parameters per tone; one place so the palette stays consistent across sections.
_SGR = {
    "good": "32",
    "bad": "1;31",
    "warn": "33",
    "muted": "2",
    "critical": "1;97;41",
    "high": "1;31",
    "medium": "33",
    "low": "36",
    "info": "2",
    "title": "1;4",
    "label": "1",
    "pass": "1;97;42",
    "fail": "1;97;41",
    # The verdict badge of an inconclusive audit: neither pass nor fail.
    "warn_badge": "1;30;43",
}


def use_colour(stream: IO[str]) -> bool:
    """Colour only for an interactive terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class _Paint:
    """Wraps already-escaped text in SGR codes, or leaves it alone without colour."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, tone: str | None) -> str:
        code = _SGR.get(tone or "")
        if not self.enabled or code is None or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"


def _table(table: at.TextTable, paint: _Paint) -> list[str]:
    lines = [paint(table.title, "title")]
    if table.note:
        lines.append(for_terminal(table.note))
    if not table.rows:
        lines.append(f"  ({table.empty})")
        return lines
    # Escape first, colour second: data can never smuggle its own escape sequences in.
    body = [[paint(for_terminal(c.text), c.tone) for c in row] for row in table.rows]
    aligns = ["right" if i in table.numeric else "left" for i in range(len(table.headers))]
    widths = [table.wrap.get(i) for i in range(len(table.headers))]
    rendered = tabulate(
        body,
        headers=table.headers,
        tablefmt="simple",
        colalign=aligns,
        disable_numparse=True,
        maxcolwidths=widths if any(widths) else None,
    )
    lines.extend(rendered.splitlines())
    if table.footnote:
        lines += ["", paint(for_terminal(table.footnote), "muted")]
    if table.more:
        hint = "use --format html, json or csv for all of them"
        lines.append(paint(f"  … and {table.more} more {table.more_hint} ({hint})", "muted"))
    return lines


def render_terminal(result: AuditResult, colour: bool = False) -> str:
    """The whole terminal report as one string."""
    paint = _Paint(colour)
    verdict = af.verdict(result)
    # The padding makes a coloured badge; without colour it would only look like a typo.
    label = f" {verdict.label} " if colour else verdict.label
    badge = paint(label, "warn_badge" if verdict.tone == "warn" else verdict.tone)
    lines = [
        f"Deep Security traffic audit: {badge} (exit code {verdict.exit_code})",
        for_terminal(verdict.reason()),
        "Findings: " + " · ".join(paint(c.text, c.tone) for c in at.severity_line(verdict)),
        "",
    ]
    for label, values in at.overview(result, at.TERMINAL_NETWORK_ADDRESSES):
        for i, value in enumerate(values):
            head = paint(f"{label:<11}", "label") if i == 0 else " " * 11
            lines.append(f"{head} {for_terminal(value)}")
    lines.append("")
    heading = at.quality_heading(verdict)
    lines.append(paint(heading, "warn" if verdict.quality_notes else "good"))
    lines.extend(f"  ! {for_terminal(n)}" for n in verdict.quality_notes)
    metrics = af.quality_metrics(result.summary)
    width = max((len(k) for k, _ in metrics), default=0)
    lines.extend(f"    {k:<{width}}  {for_terminal(v)}" for k, v in metrics)
    for table in at.sections(result, at.TERMINAL_LIMITS):
        lines.append("")
        lines.extend(_table(table, paint))
    return "\n".join(lines) + "\n"
