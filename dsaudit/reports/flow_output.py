"""Write flows as a table, CSV, JSON, JSON Lines or Parquet, column by column from the flow
arrays: no pandas (except for Parquet) and no Python loop per flow for the text formats."""

from __future__ import annotations

import csv
import io
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from dsaudit.decode.dns import rtype_name
from dsaudit.errors import DsauditError, cannot_write
from dsaudit.flow_records.columns import (
    COLUMN_KINDS,
    FLOW_COLUMNS,
    Coded,
    DnsAnswers,
    FlowColumns,
)
from dsaudit.flow_records.name_columns import answer_dicts
from dsaudit.reports.json_text import (
    answer_cells,
    float_cells,
    join_rows,
    list_cells,
    name_cells,
)
from dsaudit.reports.text_out import write_text
from dsaudit.text.safe import for_csv, for_terminal
from dsaudit.time_text import NS, iso_texts

if TYPE_CHECKING:
    import pandas as pd

TABLE_COLUMNS = [
    "proto",
    "client",
    "server",
    "vlan",
    "packets_c2s",
    "packets_s2c",
    "bytes_c2s",
    "bytes_s2c",
    "state",
    "outcome",
    "initiator_evidence",
    "server_name",
    "name_source",
]
LIST_COLUMNS = ("dns_queries", "dns_answers", "icmp_errors")
# Rows rendered together: text and temporary objects stay bounded however many flows there
# are, and a chunk's few MB of text stay in the CPU's cache and reuse the last chunk's memory
# (32,768 rows at a time took a third longer to render).
CHUNK_ROWS = 4096
# JSON text of the small numbers most counters hold, made once.
_SMALL = 1 << 16
_small_text: np.ndarray | None = None


# ----------------------------------------------------------------------------- value text
def _int_text(values: np.ndarray) -> np.ndarray:
    """Decimal text of integers, as an object array."""
    global _small_text
    if not len(values):
        return np.empty(0, dtype=object)
    if values.min() >= 0 and values.max() < _SMALL:
        if _small_text is None:
            _small_text = _objects(list(map(str, range(_SMALL))))
        return np.asarray(_small_text[values], dtype=object)
    return _objects(list(map(str, values.tolist())))


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class _Encoded(dict[Any, str]):
    """Text of values by a function, each distinct value encoded once: its lookups run
    through ``map`` in C, and only a value not seen before calls back into Python."""

    def __init__(self, encode: Callable[[Any], str]) -> None:
        super().__init__()
        self.encode = encode

    def __missing__(self, key: Any) -> str:
        text = self[key] = self.encode(key)
        return text

    def column(self, values: np.ndarray | list[Any]) -> list[str]:
        items = values.tolist() if isinstance(values, np.ndarray) else values
        return list(map(self.__getitem__, items))


def _present(values: np.ndarray) -> np.ndarray:
    """Positions of the cells that are not None."""
    flags = map(operator.is_not, values.tolist(), itertools.repeat(None))
    return np.flatnonzero(np.fromiter(flags, dtype=bool, count=len(values)))


def _float_json(values: np.ndarray) -> np.ndarray:
    """JSON text of floats as pandas' encoder writes them (ten decimals, trailing zeros
    dropped, at least one), so output stays byte for byte what it was."""
    return _objects(float_cells(np.ascontiguousarray(values, dtype=np.float64), _float_value))


def _float_value(value: float) -> str:
    """JSON of a float the compiled cells leave to Python: not finite, huge or tiny."""
    return _json_value(float(value))


def _json_value(value: Any) -> str:
    """Compact JSON of one cell value (nested lists and objects included), as pandas'
    encoder writes it: keys in insertion order, floats as :func:`_float_json`, no escaped
    non-ASCII."""
    if value is None:
        return "null"
    if isinstance(value, str):
        text: str = _ENCODER.encode(value)
        return text
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if f != f or f in (float("inf"), float("-inf")):
            return "null"
        if abs(f) > 1e16 - 1 or (f != 0 and abs(f) < 1e-15):
            return f"{f:.10g}"
        return str(_float_json(np.array([f]))[0])
    if isinstance(value, dict):
        pairs = (f"{_json_value(str(k))}:{_json_value(v)}" for k, v in value.items())
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, list | tuple | np.ndarray):
        return "[" + ",".join(_json_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _sparse_json(flows: FlowColumns, name: str, lo: int, hi: int, empty: str) -> Piece:
    """JSON text of a column that is mostly empty (None): ``empty`` for those, the others
    encoded only for the flows with names, DNS or ICMP errors."""
    rows = flows.detail_rows(lo, hi)
    if rows is not None and not len(rows):
        return empty
    col = flows.columns[name]
    if isinstance(col, DnsAnswers):
        return answer_cells(col.records[lo:hi].tolist(), _answers_json)
    values = flows.array(name)[lo:hi]
    # names: str or None, and the same names recur; lists: plain ones by the C escaper
    cells = name_cells if empty == "null" else list_cells
    return cells(values.tolist(), _json_value)


def _answers_json(records: Any) -> str:
    """JSON of a dns_answers cell of naming's tuples that the compiled writer declined."""
    return str(list_cells(answer_dicts([records]), _json_value)[0])


# The standard library's C encoder, made once (json.dumps with options builds one a call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _label_json(coded: Coded) -> np.ndarray:
    """JSON strings of a coded column's labels, made once per column."""
    return _label_text(coded, _json_value)


def _label_text(coded: Coded, spell: Callable[[Any], str]) -> np.ndarray:
    """A coded column's labels spelled by ``spell``, once per column and spelling."""
    key = (id(coded.labels), spell)
    hit = _LABELS.get(key)
    if hit is None or hit[0] is not coded.labels:
        hit = _LABELS[key] = (coded.labels, _objects(list(map(spell, coded.labels.tolist()))))
    return hit[1]


# Labels' text by the labels' identity and the spelling: address columns share theirs, and
# chunks reuse them.
_LABELS: dict[tuple[int, Callable[[Any], str]], tuple[np.ndarray, np.ndarray]] = {}
# One column's text for some rows: the same for all (a str) or one per row (an object array
# or list of str, or an int64 array written in decimal, alone in a tuple when its negative
# values stand for null).
Piece = str | np.ndarray | list[str] | tuple[np.ndarray]


def _same(values: np.ndarray) -> bool:
    return bool(values.min() == values.max())


def _time_json(ns: np.ndarray) -> list[Piece]:
    """ISO-8601 text to the microsecond, as pieces: the second (each distinct one spelled
    once), then the millisecond and microsecond digits from a table."""
    secs, sub = np.divmod(ns, NS)
    usecs = sub // 1000
    useconds, inverse = np.unique(secs, return_inverse=True)
    spelled = np.datetime_as_string(useconds.astype("datetime64[s]")).tolist()
    stamp = _objects(list(map('"%s.'.__mod__, spelled)))[inverse.reshape(-1)]
    return [stamp, _DIGITS3[usecs // 1000], _DIGITS3[usecs % 1000], 'Z"']


_DIGITS3 = _objects([f"{i:03d}" for i in range(1000)])
_JSON_BOOLS = _objects(["false", "true"])
_CSV_BOOLS = _objects(["False", "True"])


def _json_pieces(flows: FlowColumns, name: str, kind: str, lo: int, hi: int) -> list[Piece]:
    """JSON text of one column's cells of rows ``lo:hi``."""
    if kind == "text":
        coded = flows.coded(name)
        codes = coded.codes[lo:hi]
        labels = _label_json(coded)
        return [str(labels[codes[0]])] if _same(codes) else [labels[codes]]
    if kind == "name":
        return [_sparse_json(flows, name, lo, hi, "null")]
    if kind == "list":
        return [_sparse_json(flows, name, lo, hi, "[]")]
    values = flows.array(name)[lo:hi]
    if kind == "time":
        return _time_json(values)
    if kind == "vlan":
        if _same(values):
            return ["null" if values[0] < 0 else str(values[0])]
        return [(np.ascontiguousarray(values, dtype=np.int64),)]  # negative: null
    if kind == "float":
        if _same(values):
            return [str(_float_json(values[:1])[0])]
        return [float_cells(np.ascontiguousarray(values, dtype=np.float64), _float_value)]
    if kind == "bool":
        if _same(values):
            return ["true" if values[0] else "false"]
        return [_JSON_BOOLS[values.astype(np.intp)]]
    return [str(values[0])] if _same(values) else [np.ascontiguousarray(values, dtype=np.int64)]


def json_lines_of(flows: FlowColumns, lo: int, hi: int) -> str:
    """JSON Lines text of rows ``lo:hi``: the same bytes pandas' ``to_json(orient="records",
    lines=True)`` gave for the flows DataFrame."""
    return _rows_json(flows, lo, hi, "}\n", "")


def _rows_json(flows: FlowColumns, lo: int, hi: int, end: str, between: str) -> str:
    """JSON objects of rows ``lo:hi``, each closed by ``end``, ``between`` between them.

    Each row is the concatenation of constant text (keys, punctuation, columns with one
    value in these rows) and per-row cells, which the compiled join writes straight into
    one string.
    """
    if hi <= lo:
        return ""
    pieces: list[Piece] = []
    for j, (name, kind) in enumerate(COLUMN_KINDS.items()):
        pieces.append(("{" if j == 0 else ",") + json.dumps(name) + ":")
        pieces.extend(_json_pieces(flows, name, kind, lo, hi))
    pieces.append(end)
    return _joined(pieces, hi - lo, between)


def _joined(pieces: list[Piece], n: int, between: str) -> str:
    """``n`` rows of ``pieces`` (see :data:`Piece`) written into one string by the compiled
    join, ``between`` between rows."""
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        elif isinstance(piece, np.ndarray) and piece.dtype == object:
            merged.append(piece.tolist())
        else:
            merged.append(piece)
    return join_rows(merged, n, between)


def _chunks(n: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + CHUNK_ROWS, n)) for lo in range(0, n, CHUNK_ROWS)]


def _iter_rows(flows: FlowColumns, end: str, between: str) -> Iterator[str]:
    """:func:`_rows_json` of the flows, a chunk of rows at a time (bounded memory).

    Always in this process: the compiled cells write a million rows in about 0.3 s, and
    forked writers made that three to five times slower (starting them and sending their
    text back cost more than the rendering they shared).
    """
    for lo, hi in _chunks(len(flows)):
        yield _rows_json(flows, lo, hi, end, between)


def iter_flow_lines(flows: FlowColumns) -> Iterator[str]:
    """JSON Lines text of the flows, a chunk of rows at a time (bounded memory)."""
    return _iter_rows(flows, "}\n", "")


def _json(flows: FlowColumns) -> Iterator[str]:
    yield "["
    first = True
    for text in _iter_rows(flows, "}", ",\n"):
        yield ("\n" if first else ",\n") + text
        first = False
    yield "\n]\n"


# ----------------------------------------------------------------------------- DataFrames
def json_lines_chunk(rows: pd.DataFrame) -> str:
    """JSON Lines text of some rows of a flows-like DataFrame (any columns), by pandas."""
    import pandas as pd

    # pandas' encoder boxes Arrow-backed cells one by one; plain objects go a fifth faster.
    part = rows.astype({c: object for c, t in rows.dtypes.items() if isinstance(t, pd.StringDtype)})
    for col in ("start", "end"):
        part[col] = iso_texts(part[col].to_numpy(dtype="datetime64[us]"))
    text: str = part.to_json(orient="records", lines=True, force_ascii=False)
    # pandas' encoder escapes every "/" as "\\/"; since none is left bare, dropping the
    # backslash before each one is exact and keeps ports and URLs readable.
    text = text.replace("\\/", "/")
    return text if text.endswith("\n") else text + "\n"


_NUMERIC = ("packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c")


# ----------------------------------------------------------------------------- table, CSV
def _endpoints(ips: np.ndarray, ports: np.ndarray) -> list[str]:
    return [
        f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        for ip, port in zip(ips.tolist(), ports.tolist(), strict=True)
    ]


def _table(flows: FlowColumns, width: int | None = None) -> str:
    if not len(flows):
        return "(no flows)\n"
    from dsaudit.text.fit import render_table

    vlan = flows["vlan"]
    vlan_text = np.where(vlan >= 0, vlan.astype(str), "")
    joined = flows["vlan_joined"]
    if joined.any():
        # A connection joined across VLANs shows the request's VLAN, then the answer's.
        back = flows["vlan_s2c"]
        back_text = np.where(back >= 0, back.astype(str), "-")
        front = np.where(vlan_text == "", "-", vlan_text)
        vlan_text = np.where(joined, np.char.add(np.char.add(front, "/"), back_text), vlan_text)
    names = flows["server_name"]
    columns: list[list[Any]] = [
        flows["proto"].tolist(),
        _endpoints(flows["client_ip"], flows["client_port"]),
        _endpoints(flows["server_ip"], flows["server_port"]),
        vlan_text.tolist(),
        *([str(v) for v in flows[c].tolist()] for c in TABLE_COLUMNS[4:11]),
        ["" if s is None else for_terminal(s) for s in names.tolist()],
        flows["name_source"].tolist(),
    ]
    headers = list(TABLE_COLUMNS)
    tunnels = flows["tunnel_endpoints"]
    # Only captures with tunnels get the column: most have none, and the table is wide.
    if any(t is not None for t in tunnels.tolist()):
        columns.append(["" if t is None else for_terminal(t) for t in tunnels.tolist()])
        headers.append("tunnel")
    rows = [list(r) for r in zip(*columns, strict=True)]
    numeric = [TABLE_COLUMNS.index(c) for c in _NUMERIC]
    return render_table(headers, rows, width, right=numeric) + "\n"


def _csv_pieces(flows: FlowColumns, lo: int, hi: int) -> list[Piece]:
    """CSV text of rows ``lo:hi``, column by column, as the csv module (and before it pandas'
    to_csv) wrote them: fields quoted as :func:`_csv_field` says."""
    pieces: list[Piece] = []
    for j, (name, kind) in enumerate(COLUMN_KINDS.items()):
        if j:
            pieces.append(",")
        col = flows.columns[name]
        if isinstance(col, DnsAnswers):
            pieces.append(_csv_answers(col.records[lo:hi]))
            continue
        values = flows[name][lo:hi] if kind != "text" else np.empty(0)
        # Digits, ISO times and float text never hold a character the csv module quotes.
        if kind == "vlan":
            text = _int_text(np.maximum(values, 0))
            text[values < 0] = ""
            pieces.append(text)
        elif kind == "time":
            pieces.append(iso_texts(values.astype("datetime64[ns]")).astype(object))
        elif kind == "float":
            pieces.append(values.astype(str).astype(object))
        elif kind == "text":
            coded = flows.coded(name)
            pieces.append(_label_text(coded, _csv_name)[coded.codes[lo:hi]])
        elif kind == "name":
            pieces.append(_Encoded(_csv_name).column(values))
        elif kind == "list":
            pieces.append(_csv_list(name, values))
        elif kind == "bool":
            pieces.append(_CSV_BOOLS[values.astype(np.intp)])
        else:
            pieces.append(np.ascontiguousarray(values, dtype=np.int64))
    pieces.append("\n")
    return pieces


def _csv_quoted() -> str:
    """The characters that make the csv module quote a field (the delimiter, the quote and
    line ends: which line ends differs between Python versions, so it is asked)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for code in range(128):
        writer.writerow([chr(code), "x"])
    lines = buf.getvalue().split("x\n")
    return "".join(chr(code) for code in range(128) if lines[code].startswith('"'))


_CSV_QUOTED = re.compile("[" + re.escape(_csv_quoted()) + "]")


def _csv_field(text: str) -> str:
    """A field as the csv module writes it (QUOTE_MINIMAL, quotes doubled inside quotes)."""
    if _CSV_QUOTED.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_cell(value: str | None) -> str:
    return "" if value is None else for_csv(value)


def _csv_name(value: str | None) -> str:
    return _csv_field(_csv_cell(value))


def _csv_list(name: str, values: np.ndarray) -> list[str]:
    out = [""] * len(values)
    for i in _present(values).tolist():
        v = values[i]
        if name == "dns_queries":
            text = ";".join(v)
        elif name == "dns_answers":
            text = ";".join(f"{a['name']} {a['type']} {a['data']}" for a in v)
        else:
            text = json.dumps(v) if v else ""
        out[i] = _csv_field(for_csv(text))
    return out


def _csv_answers(records: np.ndarray) -> list[str]:
    """CSV fields of dns_answers held as naming's (name, rtype, data, ttl) tuples: the same
    text as the dicts' ``name type data`` joined by ``;``."""
    out = [""] * len(records)
    rows = _present(records)
    types = _Encoded(rtype_name)
    for i, answers in zip(rows.tolist(), records[rows].tolist(), strict=True):
        text = ";".join([f"{nm} {types[t]} {d}" for nm, t, d, _ in answers])
        out[i] = _csv_field(for_csv(text))
    return out


def _csv(flows: FlowColumns) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(FLOW_COLUMNS)
    yield buf.getvalue()
    for lo, hi in _chunks(len(flows)):
        yield _joined(_csv_pieces(flows, lo, hi), hi - lo, "")


def _whole_table(flows: FlowColumns) -> Iterator[str]:
    yield _table(flows)


RENDERERS: dict[str, Callable[[FlowColumns], Iterator[str]]] = {
    "table": _whole_table,
    "csv": _csv,
    "json": _json,
    "jsonl": iter_flow_lines,
}


def write_flows(flows: FlowColumns, fmt: str, output: str | None, notes: list[str]) -> None:
    """Render ``flows`` as ``fmt`` to ``output`` (stdout when None or "-")."""
    if fmt == "parquet":
        if output in (None, "-"):
            raise DsauditError("--format parquet needs --output FILE")
        assert output is not None
        try:
            parquet_frame(flows.to_frame()).to_parquet(output, index=False)
        except OSError as exc:
            raise cannot_write(output, exc) from None
        return
    if fmt == "table":
        from dsaudit.text.fit import output_width

        # A terminal (or $COLUMNS) sets the width; a file gets whole lines.
        width = output_width() if output in (None, "-") else None
        parts: Iterator[str] = iter([_table(flows, width)])
    else:
        parts = RENDERERS[fmt](flows)
    if fmt == "table" and notes:
        tail = "\n" + "\n".join(f"warning: {for_terminal(n)}" for n in notes) + "\n"
        parts = itertools.chain(parts, [tail])
    write_text(parts, output)


def parquet_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The flows with nested columns in shapes Arrow stores well."""
    import pandas as pd

    out = df.copy()
    answers: list[list[dict[str, Any]]] = [
        [{"name": a["name"], "type": a["type"], "data": a["data"], "ttl": a["ttl"]} for a in v]
        for v in out["dns_answers"]
    ]
    out["dns_answers"] = pd.Series(answers, index=out.index, dtype=object)
    out["icmp_errors"] = [[json.dumps(e, sort_keys=True) for e in v] for v in out["icmp_errors"]]
    return out
