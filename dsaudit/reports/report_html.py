"""HTML sections of a periodic report: the period and its sources, trend charts, changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from dsaudit.reports.audit_html_sections import esc, h, table
from dsaudit.reports.trends import Trends, run_label

WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 24, 16, 36
PALETTE = ("#2f5bd3", "#b42318", "#1a7f37", "#b54708", "#7a5af8", "#0e9384", "#c11574", "#475467")
SPARK_W, SPARK_H = 140, 26
TREND_STYLE = (
    "svg.trend text { font: 12px system-ui, sans-serif; fill: #5b6475; }"
    " svg.trend .grid { stroke: #d8dde6; stroke-width: 1; }"
    " svg.trend polyline { fill: none; stroke-width: 2.5; }"
    " ul.series { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 6px 18px; }"
    " ul.series li::before { content: ''; display: inline-block; width: 14px; height: 4px;"
    " margin-right: 6px; vertical-align: middle; background: var(--c); }"
)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _x(i: int, n: int) -> float:
    inner = WIDTH - LEFT - RIGHT
    return LEFT + (inner * i / (n - 1) if n > 1 else inner / 2)


def _y(score: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - score)


def line_chart(
    labels: Sequence[str], series: Sequence[tuple[str, list[float | None]]], aria: str
) -> str:
    """Scores (0..1) per run as lines; a run where a series is absent breaks its line."""
    n = len(labels)
    parts = [
        f'<svg class="trend" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{esc(aria)}" width="100%">'
    ]
    for pct in (0, 25, 50, 75, 100):
        y = _num(_y(pct / 100))
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>'
            f'<text x="{LEFT - 8}" y="{y}" text-anchor="end" dominant-baseline="middle">'
            f"{pct}%</text>"
        )
    step = max(1, n // 10)
    for i, label in enumerate(labels):
        if i % step == 0 or i == n - 1:
            # The outermost labels hang inwards so the chart's edges do not cut them.
            anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 else "middle"
            parts.append(
                f'<text x="{_num(_x(i, n))}" y="{HEIGHT - BOTTOM + 20}" '
                f'text-anchor="{anchor}">{esc(label)}</text>'
            )
    for k, (name, values) in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append((_x(i, n), _y(v)))
        for pts in runs:
            if len(pts) > 1:
                coords = " ".join(f"{_num(x)},{_num(y)}" for x, y in pts)
                parts.append(f'<polyline points="{coords}" stroke="{colour}"/>')
        for i, v in enumerate(values):
            if v is not None:
                parts.append(
                    f'<circle cx="{_num(_x(i, n))}" cy="{_num(_y(v))}" r="4" fill="{colour}">'
                    f"<title>{esc(name)}, {esc(labels[i])}: {v:.0%}</title></circle>"
                )
    parts.append("</svg>")
    legend = "".join(
        f'<li style="--c:{PALETTE[k % len(PALETTE)]}">{esc(name)}</li>'
        for k, (name, _) in enumerate(series)
    )
    return "".join(parts) + f'<ul class="series">{legend}</ul>'


def sparkline(values: Sequence[float | None]) -> str:
    """A small line of one host's scores, newest on the right."""
    pts = [(i, v) for i, v in enumerate(values) if v is not None]
    if not pts:
        return ""
    n = max(len(values) - 1, 1)
    coords = " ".join(
        f"{_num(2 + (SPARK_W - 4) * i / n)},{_num(2 + (SPARK_H - 4) * (1 - v))}" for i, v in pts
    )
    return (
        f'<svg class="trend" viewBox="0 0 {SPARK_W} {SPARK_H}" width="{SPARK_W}" '
        f'height="{SPARK_H}" aria-hidden="true"><polyline points="{coords}" '
        f'stroke="{PALETTE[0]}"/></svg>'
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _finding_table(frame: pd.DataFrame, empty: str) -> str:
    if frame.empty:
        return f'<p class="muted">{esc(empty)}</p>'
    heads = [("severity", False), ("kind", False), ("host", False), ("message", False)]
    rows = [
        [
            f'<span class="badge {h(r["severity"])}">{h(r["severity"])}</span>',
            h(r["kind"]),
            f'<span class="mono">{h(r["host"])}</span>',
            h(r["message"]),
        ]
        for r in frame.to_dict("records")
    ]
    return table(heads, rows)


def _beats_table(frame: pd.DataFrame, empty: str) -> str:
    if frame.empty:
        return f'<p class="muted">{esc(empty)}</p>'
    heads = [("agent", False), ("direction", False), ("port", True), ("last working", False)]
    rows = [
        [f'<span class="mono">{h(r["agent"])}</span>', h(r["direction"]), h(r["port"]),
         h(r.get("last_seen"))]
        for r in frame.to_dict("records")
    ]  # fmt: skip
    return table(heads, rows)


def trends_section(trends: Trends) -> str:
    """Compliance over the runs, then what is new and what was resolved since the last run."""
    labels = [run_label(r) for r in trends.runs]
    roles = trends.series("role")
    hosts = trends.series("host")
    chart = (
        line_chart(labels, roles, "compliance per role over the last runs")
        if roles and len(labels) > 1
        else '<p class="muted">One run so far: the chart starts with the next run.</p>'
    )
    heads = [("host", False), ("trend", False)] + [(lab, True) for lab in labels[-6:]]
    rows = [
        [esc(name), sparkline(values)] + [esc(_pct(v)) for v in values[-6:]]
        for name, values in hosts
    ]
    host_table = table(heads, rows) if rows else ""
    prev = trends.previous
    since = f"since run {run_label(prev)}" if prev else "(no earlier run of this inventory)"
    return (
        f"<style>{TREND_STYLE}</style>"
        '<section id="trends"><h2>Trends</h2><p class="lead">Compliance score (observed '
        "expected flows out of those due) per role and per host over the last "
        f"{len(labels)} run(s) of this inventory.</p>{chart}"
        + (f"<h3>Hosts</h3>{host_table}" if host_table else "")
        + f"<h3>New findings {esc(since)}</h3>"
        + _finding_table(trends.new, "Nothing new." if prev else "No earlier run to compare.")
        + f"<h3>Resolved findings {esc(since)}</h3>"
        + _finding_table(trends.resolved, "Nothing resolved." if prev else "–")
        + "<h3>Heartbeats that stopped</h3>"
        + _beats_table(trends.heartbeats_stopped, "Every agent that sent heartbeats still does.")
        + "</section>"
    )


def period_section(period: dict[str, Any]) -> str:
    """The period, the files read and skipped, and what the flow source cannot see."""
    files = period.get("files") or []
    skipped = period.get("skipped_files") or []
    limits = period.get("limitations") or []
    items = "".join(f"<li>{h(x)}</li>" for x in limits)
    facts = [
        ("source", period.get("source")),
        ("period", f"{period.get('start') or '–'} to {period.get('end') or '–'}"),
        ("files read", len(files)),
        ("files outside the period", len(skipped)),
    ]
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{h(v)}</dd>" for k, v in facts)
    return (
        '<section id="period"><h2>Period and sources</h2>'
        f'<dl class="facts">{rows}</dl>'
        + (f'<h3>What this source cannot see</h3><ul class="limits">{items}</ul>' if items else "")
        + "</section>"
    )


def add_sections(page: str, period: dict[str, Any], trends: Trends | None) -> str:
    """The audit page with the period and trend sections before its footer."""
    extra = period_section(period) + (trends_section(trends) if trends else "")
    links = '<a href="#period">Period</a>' + ('<a href="#trends">Trends</a>' if trends else "")
    page = page.replace("</nav>", links + "</nav>", 1)
    cut = page.rfind("<footer>")
    return page[:cut] + extra + page[cut:] if cut >= 0 else page + extra
