"""Inline SVG charts for the HTML audit: a heartbeat timeline and a horizontal bar chart."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dsaudit.reports import audit_format as fm
from dsaudit.text.safe import for_html, for_terminal

WIDTH = 960
# Fill colours per attempt outcome; anything else (a value this build does not know) is grey.
OUTCOME_FILL = {
    "established": "#1a7f37",
    "rejected": "#b42318",
    "unanswered": "#dc6803",
    "partial": "#7a5af8",
    "one-way": "#98a2b3",
    "failed": "#912018",
}
OTHER_FILL = "#98a2b3"
_TICK_STEPS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, an ellipsis marking a cut (cut before escaping)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: str, limit: int | None = None) -> str:
    # Same treatment as the rest of the page: controls and bidi shown, then HTML-escaped.
    shown = for_terminal(text)
    return for_html(clip(shown, limit) if limit else shown)


def _num(value: float) -> str:
    """Coordinates with one decimal: small files, no float noise."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _tick_step(seconds: float) -> int:
    for step in _TICK_STEPS:
        if seconds / step <= 8:
            return step
    return 86400 * max(1, math.ceil(seconds / 86400 / 8))


def _tick_label(stamp: pd.Timestamp, step: int, span: float) -> str:
    if span > 86400:
        return stamp.strftime("%m-%d %H:%M")
    return stamp.strftime("%H:%M" if step >= 60 else "%H:%M:%S")


@dataclass(frozen=True)
class Axis:
    """A time axis mapping UTC instants onto the plot's x range."""

    start: pd.Timestamp
    end: pd.Timestamp
    left: float
    right: float

    @property
    def seconds(self) -> float:
        return max((self.end - self.start).total_seconds(), 1.0)

    def x(self, stamp: pd.Timestamp) -> float:
        share = (stamp - self.start).total_seconds() / self.seconds
        return self.left + min(max(share, 0.0), 1.0) * (self.right - self.left)

    def ticks(self, top: float, bottom: float) -> list[str]:
        step = _tick_step(self.seconds)
        first = math.ceil(self.start.timestamp() / step) * step
        out = []
        t = first
        while t <= self.end.timestamp():
            stamp = pd.Timestamp(t, unit="s", tz="UTC")
            x = _num(self.x(stamp))
            out.append(
                f'<line x1="{x}" y1="{_num(top)}" x2="{x}" y2="{_num(bottom)}" class="grid"/>'
                f'<text x="{x}" y="{_num(top - 6)}" text-anchor="middle" class="tick">'
                f"{_esc(_tick_label(stamp, step, self.seconds))}</text>"
            )
            t += step
        return out


def _stamps(values: Sequence[Any]) -> list[pd.Timestamp | None]:
    return [fm.timestamp(v) for v in values]


def time_range(
    rows: Sequence[dict[str, Any]], start: object, end: object
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The capture's span, or failing that the span of the attempts themselves."""
    lo, hi = fm.timestamp(start), fm.timestamp(end)
    if lo is None or hi is None:
        seen = [s for r in rows for s in _stamps(fm.as_list(r["times"])) if s is not None]
        if not seen:
            return None
        lo, hi = min(seen), max(seen)
    if hi <= lo:
        hi = lo + pd.Timedelta(seconds=1)
    return lo, hi


def heartbeat_timeline(rows: Sequence[dict[str, Any]], start: object, end: object) -> str:
    """One band per agent and direction, one mark per attempt coloured by its outcome."""
    span = time_range(rows, start, end)
    if not rows or span is None:
        return ""
    label_w, row_h, top = 220.0, 36.0, 30.0
    axis = Axis(span[0], span[1], label_w + 10, WIDTH - 16)
    height = top + row_h * len(rows) + 8
    parts = [
        f'<svg class="chart timeline" viewBox="0 0 {WIDTH} {_num(height)}" '
        f'role="img" aria-label="Heartbeat attempts over time, one row per agent">'
    ]
    for i, row in enumerate(rows):
        y = top + i * row_h
        if i % 2 == 0:
            parts.append(
                f'<rect x="0" y="{_num(y)}" width="{WIDTH}" height="{_num(row_h)}" class="band"/>'
            )
        sub = f"{fm.text(row['direction'])} :{fm.text(row['port'])}"
        parts.append(
            f'<text x="8" y="{_num(y + 16)}" class="label">{_esc(fm.text(row["agent"]), 28)}</text>'
            f'<text x="8" y="{_num(y + 30)}" class="sublabel">{_esc(sub, 34)}</text>'
        )
        mid = y + row_h / 2
        parts.append(
            f'<line x1="{_num(axis.left)}" y1="{_num(mid)}" x2="{_num(axis.right)}" '
            f'y2="{_num(mid)}" class="track"/>'
        )
        times = _stamps(fm.as_list(row["times"]))
        outcomes = [fm.text(o) for o in fm.as_list(row["outcomes"])]
        if not times:
            parts.append(
                f'<text x="{_num(axis.left + 8)}" y="{_num(mid + 4)}" class="none">'
                "no attempt seen in the capture</text>"
            )
        for j, stamp in enumerate(times):
            if stamp is None:
                continue
            outcome = outcomes[j] if j < len(outcomes) else ""
            fill = OUTCOME_FILL.get(outcome, OTHER_FILL)
            tip = f"{fm.fmt_time(stamp)} UTC: {outcome or 'unknown'}"
            parts.append(
                f'<rect x="{_num(axis.x(stamp) - 3)}" y="{_num(mid - 9)}" width="6" height="18" '
                f'rx="1.5" fill="{fill}"><title>{_esc(tip)}</title></rect>'
            )
    parts.extend(axis.ticks(top, height - 8))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(items: Sequence[tuple[str, str, float, str]], aria_label: str) -> str:
    """Horizontal bars: (label, sublabel, value, value text) per item, largest expected first."""
    if not items:
        return ""
    label_w, row_h, value_w = 300.0, 34.0, 150.0
    peak = max(v for _, _, v, _ in items) or 1.0
    plot = WIDTH - label_w - value_w
    height = row_h * len(items) + 4
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {WIDTH} {_num(height)}" role="img" '
        f'aria-label="{_esc(aria_label)}">'
    ]
    for i, (label, sub, value, shown) in enumerate(items):
        y = i * row_h + 2
        width = max(plot * value / peak, 2.0)
        parts.append(
            f'<text x="0" y="{_num(y + 14)}" class="label mono">{_esc(label, 40)}</text>'
            f'<text x="0" y="{_num(y + 28)}" class="sublabel">{_esc(sub, 48)}</text>'
            f'<rect x="{_num(label_w)}" y="{_num(y + 6)}" width="{_num(width)}" height="20" '
            f'rx="3" class="bar"><title>{_esc(label)} {_esc(sub)}: {_esc(shown)}</title></rect>'
            f'<text x="{_num(label_w + width + 8)}" y="{_num(y + 21)}" class="value">'
            f"{_esc(shown)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
