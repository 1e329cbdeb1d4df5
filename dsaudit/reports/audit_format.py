"""Scalar formatting shared by the audit reports: missing values, times, sizes, endpoints."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.catalog.roles import DS_ROLES
from dsaudit.durations import two_unit_duration
from dsaudit.judge.findings import FINDING_KINDS
from dsaudit.time_text import day_and_time, iso_stamp


def is_missing(value: object) -> bool:
    """True for None, pd.NA, NaT and NaN (never for lists, which pd.isna would map)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def text(value: object) -> str:
    """A cell as plain text: empty when missing, times in UTC, everything else str()."""
    if is_missing(value):
        return ""
    if isinstance(value, pd.Timestamp | np.datetime64):
        return fmt_time(value)
    return str(value)


def timestamp(value: object) -> pd.Timestamp | None:
    """A UTC Timestamp from a Timestamp or ISO string, None when missing or unparsable."""
    if is_missing(value) or value == "":
        return None
    try:
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if stamp is pd.NaT:
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def fmt_time(value: object) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC (headings say UTC once rather than every cell)."""
    stamp = timestamp(value)
    return "" if stamp is None else day_and_time(stamp)


def iso_utc(value: object) -> str | None:
    """ISO-8601 UTC with microseconds and ``Z``: the form `dsaudit flows` writes times in."""
    stamp = timestamp(value)
    return None if stamp is None else iso_stamp(stamp)


def fmt_duration(seconds: object) -> str:
    """A cell's span for people (``12 min 5 s``), empty when missing."""
    return "" if is_missing(seconds) else two_unit_duration(float(seconds))  # type: ignore[arg-type]


def fmt_bytes(count: object) -> str:
    """Decimal units, as network people and file managers count them."""
    if is_missing(count):
        return ""
    value = float(count)  # type: ignore[arg-type]
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns


def fmt_count(count: object) -> str:
    """An integer with thousands separators (empty when missing)."""
    return "" if is_missing(count) else f"{int(count):,}"  # type: ignore[call-overload]


def fmt_score(score: object) -> str:
    """A 0..1 compliance score as a whole percentage; n/a when nothing was due."""
    if is_missing(score):
        return "n/a"
    return f"{float(score) * 100:.0f}%"  # type: ignore[arg-type]


def fmt_share(share: object) -> str:
    """A 0..1 share as a percentage with one decimal."""
    return "" if is_missing(share) else f"{float(share) * 100:.1f}%"  # type: ignore[arg-type]


def endpoint(ip: object, port: object) -> str:
    """``ip:port``, with brackets around IPv6 addresses; just the address without a port."""
    addr = text(ip)
    if is_missing(port):
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


_ACRONYMS = {"mtu": "MTU", "dns": "DNS", "tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}


def kind_title(kind: object) -> str:
    """``blocked_expected_flow`` -> ``Blocked expected flow``; ``path_mtu_problem`` -> ``Path MTU
    problem``."""
    words = [_ACRONYMS.get(w, w) for w in text(kind).split("_") if w]
    title = " ".join(words)
    return title[:1].upper() + title[1:]


def kind_description(kind: object) -> str:
    """The catalogue description of a finding kind (empty for kinds this build lacks)."""
    found = FINDING_KINDS.get(text(kind))
    return found.description if found else ""


def role_key(role: object) -> tuple[int, str]:
    """Sort key putting managers, relays and agents first (a ``relay+agent`` is a relay)."""
    name = text(role)
    ranks = [DS_ROLES.index(p) for p in name.split("+") if p in DS_ROLES]
    return (min(ranks) if ranks else len(DS_ROLES), name)


def as_list(value: object) -> list[Any]:
    """A list cell (list, tuple or the numpy array Parquet gives back) as a list."""
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    return []
