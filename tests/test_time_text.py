"""The spellings of a time: each output's form, and the scalar and column forms agreeing."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from dsaudit.time_text import NS, clock_ms, day_and_time, iso_now, iso_ns, iso_stamp, iso_texts

# 2023-11-14T22:13:20Z plus 123456789 ns.
WHEN = 1_700_000_000 * NS + 123_456_789


def test_iso_cuts_to_the_microsecond_and_says_utc() -> None:
    assert iso_ns(WHEN) == "2023-11-14T22:13:20.123456Z"
    assert iso_ns(None) is None
    # Before the epoch the cut goes towards the past, as a clock reads.
    assert iso_ns(-1) == "1969-12-31T23:59:59.999999Z"
    assert iso_stamp(pd.Timestamp(WHEN, unit="ns", tz="UTC")) == iso_ns(WHEN)


def test_a_column_is_spelled_as_each_of_its_times() -> None:
    rng = np.random.default_rng(13)
    ns = np.concatenate(
        [
            [0, -1, -999, -1000, -1001, WHEN, np.iinfo(np.int64).max],
            rng.integers(-(2**62), 2**62, 500),
        ]
    ).astype(np.int64)
    texts = iso_texts(ns.astype("datetime64[ns]")).tolist()
    assert texts == [iso_ns(int(n)) for n in ns]
    # The same instants at another resolution give the same text.
    assert iso_texts(ns[:6].astype("datetime64[ns]").astype("datetime64[us]")).tolist() == texts[:6]
    assert iso_texts(np.array(["NaT"], dtype="datetime64[ns]")).tolist() == ["NaTZ"]


def test_clock_and_day_forms() -> None:
    stamp = pd.Timestamp(WHEN, unit="ns", tz="UTC")
    assert clock_ms(stamp) == "22:13:20.123"
    assert clock_ms(iso_ns(WHEN)) == "22:13:20.123"
    assert day_and_time(stamp) == "2023-11-14 22:13:20"


def test_now_is_whole_seconds_utc() -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    text = iso_now()
    after = dt.datetime.now(dt.UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text), text
    said = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert before <= said <= after
