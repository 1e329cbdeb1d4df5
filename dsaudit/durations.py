"""Durations as rules and inventories write them ("10m", "1h30m", 90) and as tables show them."""

from __future__ import annotations

import re
from typing import Any

from dsaudit.errors import brief

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> int:
    """Seconds in "10m", "90s", "1h", "1m30s" or a plain number of seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.match(value.strip())) and any(m.groups()):
        h, mi, s = (int(g) if g else 0 for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
    else:
        raise ValueError(f"{brief(value)} is not a duration like 10m, 90s or 1h")
    if seconds <= 0:
        raise ValueError("the interval must be longer than zero")
    return seconds


def exact_duration(seconds: int) -> str:
    """5400 -> "1 h 30 min", 600 -> "10 min", 86400 -> "24 h": nothing rounded away."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "min"), (secs, "s")]
    return " ".join(f"{n} {unit}" for n, unit in parts if n) or "0 s"
