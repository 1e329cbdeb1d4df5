"""JSON Lines of flows: any text a capture puts in a cell comes back exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dsaudit.reports.audit_json import flow_lines
from dsaudit.reports.flow_output import json_lines_chunk

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


def test_any_cell_of_an_object_column_is_written() -> None:
    # Missing values of every kind, arrays and nested objects, as other sources may leave them.
    cells = [pd.NA, None, float("nan"), np.array([1, 2]), [{"b": 1, "a": 2}], [], "text"]
    stamps = pd.to_datetime(range(len(cells)), unit="s", utc=True)
    frame = pd.DataFrame(
        {
            "flow_id": range(len(cells)),
            "start": stamps,
            "end": stamps,
            "extra": pd.Series(cells, dtype=object),
        }
    )
    got = [json.loads(line)["extra"] for line in flow_lines(frame)]
    assert got == [None, None, None, [1, 2], [{"a": 2, "b": 1}], [], "text"]
    line = next(x for x in flow_lines(frame) if '"a"' in x)
    assert '"extra":[{"a":2,"b":1}]' in line  # keys sorted inside the cell
