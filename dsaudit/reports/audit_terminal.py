"""The audit for a terminal: verdict, capture, quality caveats and tables, coloured when wanted."""

from __future__ import annotations

import os
from typing import IO

from dsaudit.judge.findings import AuditResult
from dsaudit.reports import audit_frames as af
from dsaudit.reports import audit_tables as at
from dsaudit.text.fit import Table, wrap, wrap_labelled
from dsaudit.text.safe import for_terminal

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


def _table(table: at.TextTable, paint: _Paint, width: int | None) -> list[str]:
    lines = [paint(table.title, "title")]
    if table.note:
        lines.extend(wrap(for_terminal(table.note), width))
    if not table.rows:
        lines.append(f"  ({table.empty})")
        return lines
    # Escape first, colour last (after the layout): data can never smuggle its own escape
    # sequences in, and padding is measured on the visible text.
    # Too wide a row sheds its free-text columns (the widest wrap hint first) under itself.
    hinted = sorted(table.wrap, key=lambda i: (-table.wrap[i], i))
    rest = [i for i in range(len(table.headers) - 1, 0, -1) if i not in hinted]
    fitted = Table(
        headers=list(table.headers),
        rows=[[for_terminal(c.text) for c in row] for row in table.rows],
        right=frozenset(table.numeric),
        tones=[[c.tone for c in row] for row in table.rows],
        below=hinted + rest,
        # The widest free-text column (the message) reads best on its own lines, unlabelled.
        bare=hinted[0] if hinted and hinted[0] == len(table.headers) - 1 else None,
    )
    lines.extend(fitted.render(width, paint))
    if table.footnote:
        lines.append("")
        lines += [paint(part, "muted") for part in wrap(for_terminal(table.footnote), width)]
    if table.more:
        hint = "use --format html, json or csv for all of them"
        more = f"  … and {table.more} more {table.more_hint} ({hint})"
        lines.extend(paint(line, "muted") for line in wrap(more, width))
    return lines


def render_terminal(result: AuditResult, colour: bool = False, width: int | None = None) -> str:
    """The whole terminal report as one string, fitted to ``width`` columns (None: lines as
    long as they need, for files)."""
    paint = _Paint(colour)
    verdict = af.verdict(result)
    # The padding makes a coloured badge; without colour it would only look like a typo.
    label = f" {verdict.label} " if colour else verdict.label
    badge = paint(label, "warn_badge" if verdict.tone == "warn" else verdict.tone)
    lines = [
        f"Deep Security traffic audit: {badge} (exit code {verdict.exit_code})",
        *wrap(for_terminal(verdict.reason()), width),
        "Findings: " + " · ".join(paint(c.text, c.tone) for c in at.severity_line(verdict)),
        "",
    ]
    for label, values in at.overview(result, at.TERMINAL_NETWORK_ADDRESSES):
        for i, value in enumerate(values):
            text = wrap_labelled(" " * 12, for_terminal(value), width, 12)
            head = paint(f"{label:<11}", "label") if i == 0 else " " * 11
            lines.append(f"{head} {text[0][12:]}")
            lines.extend(text[1:])
    lines.append("")
    heading = at.quality_heading(verdict)
    lines.extend(
        paint(line, "warn" if verdict.quality_notes else "good") for line in wrap(heading, width)
    )
    for note in verdict.quality_notes:
        lines.extend(wrap_labelled("  !", for_terminal(note), width, 4))
    metrics = af.quality_metrics(result.summary)
    keys = max((len(k) for k, _ in metrics), default=0)
    for k, v in metrics:
        lines.extend(wrap_labelled(f"    {k}", for_terminal(v), width, keys + 6))
    for table in at.sections(result, at.TERMINAL_LIMITS):
        lines.append("")
        lines.extend(_table(table, paint, width))
    return "\n".join(lines) + "\n"
