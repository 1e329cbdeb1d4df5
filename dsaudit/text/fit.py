"""Plain-text tables and prose that fit a terminal's width without breaking a token apart."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

GAP = 2  # spaces between columns, as tabulate's "simple" format
BELOW_INDENT = 4  # columns moved under their row start here
# A column narrower than this reads as a stack of words: move it under the row instead.
MIN_WRAPPED = 12
MIN_BARE = 40  # the same for a message: narrower, it breaks into fragments

Paint = Callable[[str, str | None], str]


def _no_paint(text: str, tone: str | None) -> str:
    return text


def output_width(stream: IO[str] | None = None) -> int | None:
    """The columns to fit: $COLUMNS when set, else the terminal's width when ``stream`` (stdout
    by default) is one, else None: a file or pipe gets whole lines that tools can grep."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    stream = sys.stdout if stream is None else stream
    try:
        if stream.isatty():
            return shutil.get_terminal_size().columns
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        pass
    return None


def wrap(text: str, width: int | None) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken only at spaces: a long host
    name, address or rule id stays whole even when it alone is wider. Newlines are kept."""
    lines: list[str] = []
    for para in text.split("\n"):
        if width is None or len(para) <= width:
            lines.append(para)
            continue
        lines.extend(
            textwrap.wrap(para, width, break_long_words=False, break_on_hyphens=False) or [""]
        )
    return lines


def wrap_labelled(label: str, text: str, width: int | None, indent: int) -> list[str]:
    """``label`` padded to ``indent`` then ``text``, continuation lines indented under it."""
    body = wrap(text, None if width is None else max(width - indent, 20))
    pad = " " * indent
    return [(label.ljust(indent) if i == 0 else pad) + line for i, line in enumerate(body)]


def _longest_token(text: str) -> int:
    return max((len(t) for t in text.split()), default=0)


@dataclass
class Table:
    """Cells are already escaped for the terminal; ``tones`` (same shape) colour them.

    ``below`` lists the columns that may leave the row when it is too wide, in the order
    they leave (default: from the right): each then prints under its row as
    ``header: value``, wrapped to the width, so nothing is ever cut off. The ``bare``
    column (a free-text message) prints without its header, on lines of its own.
    """

    headers: list[str]
    rows: list[list[str]]
    right: frozenset[int] = frozenset()
    tones: list[list[str | None]] | None = None
    below: list[int] = field(default_factory=list)
    bare: int | None = None

    def render(self, width: int | None, paint: Paint = _no_paint) -> list[str]:
        """The table's lines, none wider than ``width`` unless one token is."""
        moved: list[int] = []
        order = self.below or list(range(len(self.headers) - 1, 0, -1))
        while True:
            kept = [i for i in range(len(self.headers)) if i not in moved]
            widths = self._fit(kept, width)
            if widths is not None or len(moved) == len(order):
                break
            moved.append(order[len(moved)])
        if widths is None:  # nothing left to move: the narrowest layout there is
            widths = {i: self._min_width(i) for i in kept}
        return self._lines(kept, widths, moved, width, paint)

    def _natural(self, col: int) -> int:
        cells = [self.headers[col], *(r[col] for r in self.rows)]
        return max(len(line) for c in cells for line in c.split("\n"))

    def _min_width(self, col: int) -> int:
        natural = self._natural(col)
        tokens = max(len(self.headers[col]), *(_longest_token(r[col]) for r in self.rows))
        return min(natural, max(tokens, MIN_BARE if col == self.bare else MIN_WRAPPED))

    def _fit(self, kept: list[int], width: int | None) -> dict[int, int] | None:
        """Column widths for ``kept`` within ``width``, or None when they cannot fit."""
        widths = {i: self._natural(i) for i in kept}
        if width is None:
            return widths
        budget = width - GAP * (len(kept) - 1)
        excess = sum(widths.values()) - budget
        if excess <= 0:
            return widths
        floor = {i: self._min_width(i) for i in kept}
        # Shrink the widest shrinkable column a character at a time: the result is the most
        # even layout, and text columns keep as much of their width as they can.
        while excess > 0:
            slack = [i for i in kept if widths[i] > floor[i]]
            if not slack:
                return None
            widest = max(slack, key=lambda i: (widths[i], i))
            widths[widest] -= 1
            excess -= 1
        return widths

    def _lines(
        self,
        kept: list[int],
        widths: dict[int, int],
        moved: list[int],
        width: int | None,
        paint: Paint,
    ) -> list[str]:
        def line(cells: dict[int, str], tones: dict[int, str | None]) -> str:
            parts = []
            for i in kept:
                text = cells.get(i, "")
                pad = " " * (widths[i] - len(text))
                shown = paint(text, tones.get(i)) if text else text
                parts.append(pad + shown if i in self.right else shown + pad)
            return (" " * GAP).join(parts).rstrip()

        out = [line({i: self.headers[i] for i in kept}, {})]
        out.append((" " * GAP).join("-" * widths[i] for i in kept))
        for r, row in enumerate(self.rows):
            tone_row = self.tones[r] if self.tones else [None] * len(row)
            wrapped = {i: wrap(row[i], widths[i]) for i in kept}
            for k in range(max(len(v) for v in wrapped.values())):
                cells = {i: v[k] for i, v in wrapped.items() if k < len(v)}
                out.append(line(cells, {i: tone_row[i] for i in kept}))
            out.extend(self._below(row, tone_row, moved, width, paint))
        return out

    def _below(
        self,
        row: list[str],
        tones: Sequence[str | None],
        moved: list[int],
        width: int | None,
        paint: Paint,
    ) -> list[str]:
        """The moved cells under their row: the bare column wrapped on its own lines, then
        the others as ``header: value`` packed side by side in column order."""
        inner = None if width is None else width - BELOW_INDENT
        pad = " " * BELOW_INDENT
        out = []
        if self.bare in moved and row[self.bare]:
            out += [pad + paint(t, tones[self.bare]) for t in wrap(row[self.bare], inner)]
        line: list[str] = []
        used = 0
        for i in sorted(moved):
            if i == self.bare or not row[i]:
                continue
            label = f"{self.headers[i]}: "
            size = len(label) + len(row[i])
            if line and (inner is not None and used + GAP + size > inner or "\n" in row[i]):
                out.append(pad + (" " * GAP).join(line))
                line, used = [], 0
            if "\n" in row[i]:  # a list, one item a line: each under the header
                out.append(pad + label.rstrip())
                narrower = None if inner is None else inner - GAP
                out += [pad + " " * GAP + t for t in wrap(row[i], narrower)]
                continue
            if inner is not None and size > inner:
                out += [pad + t for t in wrap(label + row[i], inner)]
                continue
            used += size + (GAP if line else 0)
            line.append(label + paint(row[i], tones[i]))
        if line:
            out.append(pad + (" " * GAP).join(line))
        return out


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int | None,
    right: Sequence[int] = (),
    below: Sequence[int] = (),
    bare: int | None = None,
) -> str:
    """A plain table (no colour) that fits ``width``, as one string without a final newline."""
    table = Table(
        list(headers), [list(r) for r in rows], frozenset(right), below=list(below), bare=bare
    )
    return "\n".join(table.render(width))
