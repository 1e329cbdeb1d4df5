"""Times as text: every spelling dsaudit writes a time in, and nanoseconds per second."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Capture times are int64 nanoseconds since the epoch, UTC.
NS = 1_000_000_000


@overload
def iso_ns(ns: int) -> str: ...
@overload
def iso_ns(ns: None) -> None: ...
def iso_ns(ns: int | None) -> str | None:
    """ISO-8601 UTC to the microsecond, ``Z`` suffixed (``2024-05-06T07:00:00.123456Z``):
    how reports, events and flow outputs write a time. None stays None (a time not known)."""
    if ns is None:
        return None
    return str(np.datetime_as_string(np.datetime64(int(ns), "ns"), unit="us")) + "Z"


def iso_texts(times: np.ndarray) -> np.ndarray:
    """:func:`iso_ns` of every time of a datetime64 array at once (NaT as ``NaTZ``)."""
    return np.char.add(np.datetime_as_string(times.astype("datetime64[us]"), unit="us"), "Z")


def iso_stamp(stamp: pd.Timestamp) -> str:
    """:func:`iso_ns` of a UTC Timestamp, whatever its resolution (nanoseconds cut)."""
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_now() -> str:
    """Now, ISO-8601 UTC to the second: when a report was made."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_and_time(stamp: pd.Timestamp) -> str:
    """``2024-05-06 07:00:00``: for tables whose heading says UTC once."""
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def clock_ms(value: Any) -> str:
    """``07:00:00.123`` of a Timestamp or ISO text: when within a flow something happened."""
    import pandas as pd  # only the reports need it; `dsaudit flows` runs without pandas

    return pd.Timestamp(value).strftime("%H:%M:%S.%f")[:-3]
