"""Neutralise text taken from captures before it reaches a terminal, CSV, Markdown or HTML."""

from __future__ import annotations

import html
import re

# C0/C1 controls and DEL. Escaping ESC (and the 8-bit CSI) as text defuses every ANSI
# sequence, since what follows it is then plain printable characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f]")
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _escape_char(m: re.Match[str]) -> str:
    return f"\\x{ord(m.group(0)):02x}"


def for_terminal(text: str) -> str:
    """Printable on a terminal: escape sequences removed, control characters shown as \\xNN."""
    text = _CONTROL.sub(_escape_char, text)
    return _BIDI.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def for_csv(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    if text.startswith(CSV_FORMULA_PREFIXES):
        return "'" + text
    return text


# Markdown's own escapes, not HTML entities: "->" must read "->", not "-&gt;", in the raw
# text. A backslash before "<" means no tag or autolink can open, before "&" no entity.
_MARKDOWN = str.maketrans({c: "\\" + c for c in "<&|`"})


def for_markdown(text: str) -> str:
    """A single Markdown table cell: pipes escaped, no line breaks, no raw HTML (a backslash
    escape before every "<" and "&")."""
    return for_terminal(text).translate(_MARKDOWN)


def for_html(text: str) -> str:
    """Text content or attribute value in HTML."""
    return html.escape(text, quote=True)
