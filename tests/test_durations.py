"""A span said three ways: exactly (catalog), in one unit (expectation notes), in two (reports)."""

from __future__ import annotations

import pytest

from dsaudit.durations import exact_duration, one_unit_duration, two_unit_duration


@pytest.mark.parametrize(
    ("seconds", "exact", "one", "two"),
    [
        (45, "45 s", "45 s", "45 s"),
        (600, "10 min", "10 min", "10 min"),
        (725, "12 min 5 s", "12 min", "12 min 5 s"),
        (5400, "1 h 30 min", "90 min", "1 h 30 min"),
        (7200, "2 h", "2 h", "2 h"),
        (93784, "26 h 3 min 4 s", "1563 min", "1 d 2 h"),
        (0, "0 s", "0 s", "0 s"),
    ],
)
def test_each_spelling_of_a_whole_span(seconds: int, exact: str, one: str, two: str) -> None:
    assert (exact_duration(seconds), one_unit_duration(seconds), two_unit_duration(seconds)) == (
        exact,
        one,
        two,
    )


def test_short_fractions_keep_a_decimal_only_where_it_tells() -> None:
    assert two_unit_duration(4.5) == "4.5 s"
    assert two_unit_duration(12.4) == "12 s"
    assert two_unit_duration(59.6) == "60 s"
    assert one_unit_duration(100.0) == "100 s"
