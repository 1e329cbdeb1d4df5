"""Markdown and terminal sections of a periodic report: the period, its sources and trends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from dsaudit.reports.audit_markdown import md
from dsaudit.reports.trends import Trends, run_label
from dsaudit.text.fit import render_table, wrap_labelled
from dsaudit.text.safe import for_terminal

RECENT = 6  # runs shown as columns in the text tables


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: int = 0) -> list[str]:
    """A Markdown table; the last ``numeric`` columns align right."""
    aligns = ["---"] * (len(headers) - numeric) + ["---:"] * numeric
    out = ["| " + " | ".join(md(h) for h in headers) + " |", "| " + " | ".join(aligns) + " |"]
    out += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return out + [""]


def _score_rows(trends: Trends) -> tuple[list[str], list[list[str]]]:
    labels = [run_label(r) for r in trends.runs][-RECENT:]
    rows = []
    for scope in ("role", "host"):
        for name, values in trends.series(scope):
            rows.append([scope, name] + [_pct(v) for v in values[-RECENT:]])
    return ["scope", "role / host", *labels], rows


def _finding_rows(frame: pd.DataFrame) -> list[list[str]]:
    if frame.empty:
        return []
    return [
        [str(r["severity"]), str(r["kind"]), str(r["host"] or ""), str(r["message"])]
        for r in frame.to_dict("records")
    ]


def _beat_rows(frame: pd.DataFrame) -> list[list[str]]:
    return [
        [str(r["agent"]), str(r["direction"]), str(r["port"]), str(r.get("last_seen") or "")]
        for r in frame.to_dict("records")
    ]


def period_facts(period: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines that describe the period."""
    return [
        ("source", str(period.get("source"))),
        ("period", f"{period.get('start') or '–'} to {period.get('end') or '–'}"),
        ("files read", str(len(period.get("files") or []))),
        ("files outside the period", str(len(period.get("skipped_files") or []))),
    ]


def markdown_sections(period: dict[str, Any], trends: Trends | None) -> list[str]:
    """Markdown lines: the period and sources, then the trends."""
    lines = ["## Period and sources", ""]
    lines += [f"- **{md(k)}:** {md(v)}" for k, v in period_facts(period)]
    lines.append("")
    limits = period.get("limitations") or []
    if limits:
        lines += ["**What this source cannot see:**", ""]
        lines += [f"- {md(x)}" for x in limits] + [""]
    if trends is None:
        return lines
    headers, rows = _score_rows(trends)
    lines += ["## Compliance trend", ""]
    lines += _md_table(headers, rows, numeric=len(headers) - 2)
    since = f"since run {run_label(trends.previous)}" if trends.previous else ""
    for title, frame in (("New findings", trends.new), ("Resolved findings", trends.resolved)):
        lines += [f"## {title} {md(since)}".rstrip(), ""]
        found = _finding_rows(frame)
        if found:
            lines += _md_table(["severity", "kind", "host", "message"], found)
        else:
            lines += ["*None.*" if trends.previous else "*No earlier run to compare.*", ""]
    beats = _beat_rows(trends.heartbeats_stopped)
    lines += ["## Heartbeats that stopped", ""]
    lines += (
        _md_table(["agent", "direction", "port", "last working"], beats)
        if beats
        else ["*None.*", ""]
    )
    return lines


def terminal_sections(
    period: dict[str, Any], trends: Trends | None, width: int | None = None
) -> str:
    """Plain-text tables for a terminal of ``width`` columns (None: no limit)."""
    out = ["", "Period and sources"]
    for k, v in period_facts(period):
        out += wrap_labelled(f"  {k}: ", for_terminal(v), width, len(k) + 4)
    for limit in period.get("limitations") or []:
        out += wrap_labelled("  !", for_terminal(limit), width, 4)
    if trends is not None:
        headers, rows = _score_rows(trends)
        rows = [[for_terminal(c) for c in r] for r in rows]
        right = range(2, len(headers))
        out += ["", "Compliance trend", render_table(headers, rows, width, right=right)]
        for title, frame in (("New findings", trends.new), ("Resolved findings", trends.resolved)):
            found = [[for_terminal(c) for c in r] for r in _finding_rows(frame)]
            out += ["", f"{title} ({len(found)})"]
            if found:
                heads = ["severity", "kind", "host", "message"]
                out.append(render_table(heads, found, width, below=[3, 1], bare=3))
        beats = [[for_terminal(c) for c in r] for r in _beat_rows(trends.heartbeats_stopped)]
        out += ["", f"Heartbeats that stopped ({len(beats)})"]
        if beats:
            heads = ["agent", "direction", "port", "last working"]
            out.append(render_table(heads, beats, width))
    return "\n".join(out) + "\n"
