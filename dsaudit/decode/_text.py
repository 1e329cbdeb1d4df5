"""Printable text from untrusted name bytes (SNI, DNS labels, HTTP hosts, SOCKS domains).

Convention shared by every decoder: bytes 0x20-0x7E pass through unchanged except the
backslash; every other byte, and the backslash itself, becomes a four-character ``\\xNN``
escape (lower-case hex), so the result is always printable, never contains a control
character, and maps back to the wire bytes without ambiguity. DNS labels additionally
escape ``.`` so that a dot inside a label cannot be mistaken for a label separator.
Valid UTF-8 is escaped too: hostnames travel as ASCII (IDNA A-labels) on the wire, so a
raw non-ASCII byte is exactly what an auditor should see flagged.
"""

from __future__ import annotations

_PLAIN = bytes(b for b in range(0x20, 0x7F) if b != 0x5C)
_PLAIN_NO_DOT = bytes(b for b in _PLAIN if b != 0x2E)

# str.translate tables keyed by code point of the latin-1 decoded text (= the byte value).
_ESCAPES: dict[int, str] = {b: f"\\x{b:02x}" for b in range(256) if b not in _PLAIN}
_LABEL_ESCAPES: dict[int, str] = {**_ESCAPES, 0x2E: "\\x2e"}


def escape_text(raw: bytes) -> str:
    """Return ``raw`` as text, escaping non-printable bytes and backslashes as ``\\xNN``."""
    # The all-printable check and the ASCII decode both run in C; names are almost
    # always plain, so the translate() slow path is rarely taken.
    if not raw.translate(None, _PLAIN):
        return raw.decode("ascii")
    return raw.decode("latin-1").translate(_ESCAPES)


def escape_label(raw: bytes) -> str:
    """Like :func:`escape_text` but also escapes ``.`` (for one DNS label)."""
    if not raw.translate(None, _PLAIN_NO_DOT):
        return raw.decode("ascii")
    return raw.decode("latin-1").translate(_LABEL_ESCAPES)


def is_plain(raw: bytes) -> bool:
    """True when :func:`escape_text` would return ``raw`` unchanged (as ASCII)."""
    return not raw.translate(None, _PLAIN)
