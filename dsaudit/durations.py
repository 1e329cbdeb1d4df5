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


def one_unit_duration(seconds: float) -> str:
    """1800 -> "30 min", 45 -> "45 s", 7200 -> "2 h": rounded to the one unit that reads best."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def two_unit_duration(seconds: float) -> str:
    """``4.5 s``, ``45 s``, ``12 min 5 s``, ``3 h 20 min``, ``2 d 4 h``: the two largest units."""
    if seconds < 60:
        whole = seconds >= 10 or seconds == int(seconds)
        return f"{seconds:.0f} s" if whole else f"{seconds:.1f} s"
    days, rest = divmod(int(round(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"
