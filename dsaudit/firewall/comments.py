"""Comment and description text for firewall rules: ASCII only, quote-free and bounded."""

from __future__ import annotations

import re
import unicodedata

from dsaudit.firewall.plan import Allow


def ascii_text(text: str, allowed: str = r"A-Za-z0-9 .,:;()/+=_\-#@\[\]{}!$*&") -> str:
    """Text reduced to the characters a firewall comment field accepts everywhere."""
    flat = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    flat = flat.replace("'", "")  # no quoting survives every target; "manager's" -> "managers"
    cleaned = re.sub(f"[^{allowed}]", " ", flat)
    return re.sub(r"\s+", " ", cleaned).strip()


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def rule_comment(allow: Allow, limit: int = 128, allowed: str | None = None) -> str:
    """The comment "<catalog ids>: <purpose>", within `limit` characters (nft allows 128)."""
    text = f"{allow.label}: {allow.purpose}"
    if allow.via_proxy:
        text = f"{allow.label}: via proxy: {allow.purpose}"
    return bounded(ascii_text(text) if allowed is None else ascii_text(text, allowed), limit)
