"""The compiled JSON cell writer against the standard library's encoder, for any text."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dsaudit.decode.dns import rtype_name
from dsaudit.reports.json_text import answer_cells, join_rows, list_cells, name_cells
from tests.checked_kernels import checked_runner

MANY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Every code point, lone surrogates included: a capture's bytes can decode to any of them.
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)
NASTY = st.text(alphabet=st.sampled_from(['"', "\\", "/", "\x00", "\x1f", "\x7f", "\n", "é"]))
TEXT = st.one_of(ANY_TEXT, NASTY)
INTS = st.integers(min_value=-(2**70), max_value=2**70)
PLAIN_ITEM = st.one_of(
    TEXT,
    INTS,
    st.none(),
    st.dictionaries(TEXT, st.one_of(TEXT, INTS, st.none()), max_size=4),
)
# Items the standard encoder spells differently from pandas: they must go to the fallback.
OTHER_ITEM = st.one_of(
    st.booleans(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.dictionaries(TEXT, st.booleans(), min_size=1, max_size=2),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def fallback(value: Any) -> str:
    return "FALLBACK " + repr(value)


@MANY
@given(st.lists(st.one_of(TEXT, st.none()), max_size=8))
@example(['"\\\ud800\udfff\U0010ffff\x00'])
def test_name_cells_are_the_standard_encoders_strings(values: list[str | None]) -> None:
    assert name_cells(values, fallback) == [dumps(v) for v in values]


def test_name_cells_hand_anything_else_to_the_fallback() -> None:
    class Text(str):
        pass

    values: list[Any] = [1, Text("a"), b"x", "ok", None]
    assert name_cells(values, fallback) == [
        "FALLBACK 1",
        "FALLBACK 'a'",
        "FALLBACK b'x'",
        '"ok"',
        "null",
    ]


@MANY
@given(st.lists(st.one_of(st.none(), st.lists(PLAIN_ITEM, max_size=5)), max_size=6))
def test_plain_list_cells_are_the_standard_encoders_text(values: list[Any]) -> None:
    want = ["[]" if v is None else dumps(v) for v in values]
    assert list_cells(values, fallback) == want


@MANY
@given(
    st.lists(PLAIN_ITEM, max_size=4),
    OTHER_ITEM,
    st.lists(PLAIN_ITEM, max_size=4),
)
def test_a_list_with_any_other_item_goes_whole_to_the_fallback(
    before: list[Any], other: Any, after: list[Any]
) -> None:
    cell = [*before, other, *after]
    assert list_cells([cell, ["x"]], fallback) == [fallback(cell), '["x"]']


def test_other_cells_go_to_the_fallback_and_empty_ones_are_empty_lists() -> None:
    cells: list[Any] = [(), ("a",), "text", 3, [], None]
    assert list_cells(cells, fallback) == [
        "FALLBACK ()",
        "FALLBACK ('a',)",
        "FALLBACK 'text'",
        "FALLBACK 3",
        "[]",
        "[]",
    ]


ANSWER = st.tuples(TEXT, st.integers(0, 65535), st.one_of(TEXT, st.none()), INTS)


@MANY
@given(st.lists(st.one_of(st.none(), st.lists(ANSWER, max_size=4)), max_size=6))
def test_answer_cells_are_the_encoders_text_of_the_answers_as_dicts(values: list[Any]) -> None:
    def as_dicts(answers: list[tuple[str, int, str | None, int]]) -> list[dict[str, Any]]:
        return [
            {"name": n, "type": rtype_name(t), "data": d, "ttl": ttl} for n, t, d, ttl in answers
        ]

    want = ["[]" if v is None else dumps(as_dicts(v)) for v in values]
    assert answer_cells(values, fallback) == want


@pytest.mark.parametrize(
    "cell",
    [
        [("a", 1, "d")],
        [("a", 1, "d", 5, 6)],
        [["a", 1, "d", 5]],
        [("a", True, "d", 5)],
        [("a", 1, b"d", 5)],
        [(None, 1, "d", 5)],
        [("a", 1, "d", 5.0)],
        [("a", 1, "d", 5), "x"],
        ("a", 1, "d", 5),
    ],
)
def test_answers_of_another_shape_go_to_the_fallback(cell: Any) -> None:
    assert answer_cells([cell], fallback) == [fallback(cell)]


INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@st.composite
def rows(draw: st.DrawFn) -> tuple[list[Any], int, str]:
    n = draw(st.integers(0, 6))
    kinds = st.sampled_from(["text", "cells", "ints", "ints or null"])
    pieces: list[Any] = []
    for kind in draw(st.lists(kinds, max_size=6)):
        if kind == "text":
            pieces.append(draw(TEXT))
        elif kind == "cells":
            pieces.append(draw(st.lists(TEXT, min_size=n, max_size=n)))
        else:
            ints = np.array(draw(st.lists(INT64, min_size=n, max_size=n)), dtype=np.int64)
            pieces.append(ints if kind == "ints" else (ints,))
    return pieces, n, draw(st.sampled_from(["", "\n", ",\n", "\u20ac"]))


def reference_join(pieces: list[Any], n: int, between: str) -> str:
    def cell(piece: Any, i: int) -> str:
        if isinstance(piece, tuple):  # an int array whose negative values are null
            return "null" if piece[0][i] < 0 else str(piece[0][i])
        return piece if isinstance(piece, str) else str(piece[i])

    return between.join("".join(cell(p, i) for p in pieces) for i in range(n))


@MANY
@given(rows())
@example(([np.array([-(2**63), 2**63 - 1, 0, -1], dtype=np.int64)], 4, ","))
@example((["a", ["\xe9", "\u20ac", "\U0001f600", "\ud800"], "b"], 4, ""))
@example(([(np.array([-(2**63), -1, 0, 2**63 - 1], dtype=np.int64),), "x"], 4, "\u20ac"))
def test_join_rows_is_the_plain_join(case: tuple[list[Any], int, str]) -> None:
    pieces, n, between = case
    assert join_rows(pieces, n, between) == reference_join(pieces, n, between)


def test_join_rows_refuses_pieces_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        join_rows([["a", "b"]], 3, "")
    with pytest.raises(ValueError):
        join_rows([np.zeros(2, dtype=np.int64)], 3, "")
    with pytest.raises(TypeError):
        join_rows([["a", 1, "c"]], 3, "")
    with pytest.raises((TypeError, ValueError)):
        join_rows([np.zeros(3, dtype=np.float64)], 3, "")
    with pytest.raises((TypeError, ValueError)):
        join_rows([np.zeros(6, dtype=np.int64)[::2]], 3, "")
    with pytest.raises(TypeError):
        join_rows([("a", "b", "c")], 3, "")
    assert join_rows(["x"], 0, "") == ""


CHECKED_RUN = textwrap.dedent(
    """
    import ctypes
    import json
    import os
    import pickle
    import sys

    import numpy as np

    if sys.argv[1] == "probe":
        data = bytes(40)
        ctypes.string_at(id(data), sys.getsizeof(data) + 64)
        sys.exit("AddressSanitizer is not in effect")

    from dsaudit.reports import json_text

    assert json_text.__file__.startswith(os.environ["PYTHONPATH"]), json_text.__file__
    with open(sys.argv[1], "rb") as f:
        cases = pickle.load(f)
    fallback = repr
    done = 0
    for cells, answers, pieces, n, between in cases:
        names = json_text.name_cells(cells, fallback)
        lists = json_text.list_cells([cells, None, [], *[[c] for c in cells]], fallback)
        spelled = json_text.answer_cells(answers, fallback)
        pieces = [np.array(p, dtype=np.int64) if isinstance(p, tuple) else p for p in pieces]
        text = json_text.join_rows([*pieces, names[:n] if len(names) >= n else "x"], n, between)
        done += len(text) + len(lists) + len(spelled) > 0
    print("ok", len(cases), done)
    """
)


def _hostile_cases(rng: random.Random) -> list[Any]:
    """Text of every width (ASCII, Latin-1, BMP, astral, lone surrogates), long and short,
    extreme integers, and lists whose sizes disagree with the row count."""
    alphabet = ["a", '"', "\\", "\x00", "\x1f", "\xe9", "\u20ac", "\ud800", "\U0001f600"]

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 5, 300])))

    cases = []
    for _ in range(300):
        n = rng.randint(0, 8)
        cells = [text() if rng.random() < 0.8 else None for _ in range(rng.randint(0, 10))]
        answers = [
            [(text(), rng.randint(0, 70000), rng.choice([None, text()]), rng.randint(-9, 9**20))]
            for _ in range(rng.randint(0, 4))
        ]
        pieces: list[Any] = []
        for _ in range(rng.randint(0, 5)):
            kind = rng.random()
            if kind < 0.3:
                pieces.append(text())
            elif kind < 0.6:
                pieces.append([text() for _ in range(n)])
            else:
                big = [-(2**63), 2**63 - 1, 0, -1, 10**18]
                pieces.append(tuple(rng.choice(big) for _ in range(n)))
        cases.append((cells, answers, pieces, n, rng.choice(["", ",\n", "\u20ac"])))
    return cases


def test_compiled_cells_stay_in_bounds_under_address_sanitizer(tmp_path: Path) -> None:
    import pickle

    cases = tmp_path / "cases.pickle"
    cases.write_bytes(pickle.dumps(_hostile_cases(random.Random(20261203))))
    run = checked_runner(tmp_path, CHECKED_RUN, python_malloc=True, timeout=600)
    probe = run("probe")
    assert probe.returncode != 0 and "heap-buffer-overflow" in probe.stderr, probe.stderr[-2000:]
    proc = run(str(cases))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok 300 ")
    assert "AddressSanitizer" not in proc.stderr
