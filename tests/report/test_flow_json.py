"""JSON Lines of flows: any text a capture puts in a cell comes back exactly."""

from __future__ import annotations

import json

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dsaudit.report.flow_output import json_lines_chunk

# Slashes and backslashes in every arrangement, plus anything else.
SLASHY = st.text(alphabet=st.sampled_from(["/", "\\", "a", '"', "\n", "\u2028", "é"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(SLASHY, st.text(), st.none()), min_size=1, max_size=20))
def test_any_text_round_trips(values: list[str | None]) -> None:
    n = len(values)
    stamps = pd.to_datetime(range(n), unit="s", utc=True)
    rows = pd.DataFrame(
        {
            "server_name": pd.array(values, dtype="string"),
            "note": pd.Series(values, dtype=object),
            "start": stamps,
            "end": stamps,
        }
    )
    lines = json_lines_chunk(rows).split("\n")
    assert lines[-1] == "" and len(lines) == n + 1
    got = [json.loads(line) for line in lines[:-1]]
    assert [g["server_name"] for g in got] == values
    assert [g["note"] for g in got] == values
    assert got[0]["start"] == "1970-01-01T00:00:00.000000Z"
