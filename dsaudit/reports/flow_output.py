"""Write flows as a table, CSV, JSON, JSON Lines or Parquet, column by column from the flow
arrays: no pandas (except for Parquet) and no Python loop per flow for the text formats."""

from __future__ import annotations

import csv
import io
import itertools
import json
import operator
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from dsaudit.errors import DsauditError, cannot_write
from dsaudit.flow_records.columns import COLUMN_KINDS, FLOW_COLUMNS, Coded, FlowColumns
from dsaudit.parallel import fork_map
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
# Rows rendered together: text and temporary objects stay bounded (tens of MB) however
# many flows there are.
CHUNK_ROWS = 32768
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
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v) | (np.abs(v) > 1e16 - 1) | ((v != 0) & (np.abs(v) < 1e-15))
    a = np.where(bad, 0.0, np.abs(v))
    whole = a.astype(np.uint64)
    scaled = (a - whole.astype(np.float64)) * 1e10
    frac = scaled.astype(np.uint64)
    diff = scaled - frac.astype(np.float64)
    # Round half to odd, as that encoder does: up past a half, and at a half if odd or zero.
    up = (diff > 0.5) | ((diff == 0.5) & ((frac == 0) | ((frac & np.uint64(1)) == 1)))
    frac = frac + up.astype(np.uint64)
    over = frac >= np.uint64(10**10)
    frac = np.where(over, np.uint64(0), frac)
    whole = whole + over.astype(np.uint64)
    zeros = np.zeros(len(frac), dtype=np.int64)
    digits = frac.copy()
    for _ in range(10):
        more = (digits % np.uint64(10) == 0) & (digits > 0)
        zeros += more
        digits = np.where(more, digits // np.uint64(10), digits)
    width = np.where(frac == 0, 1, 10 - zeros)
    sign = np.where(v < 0, "-", "")
    parts = zip(sign.tolist(), whole.tolist(), width.tolist(), digits.tolist(), strict=True)
    text = list(map("%s%d.%0*d".__mod__, parts))
    for i in np.flatnonzero(bad).tolist():
        text[i] = _json_value(float(v[i]))
    return _objects(text)


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
    values = flows.array(name)[lo:hi]
    rows = flows.detail_rows(lo, hi)
    if rows is None:
        rows = _present(values)
    if not len(rows):
        return empty
    picked = values[rows].tolist()
    if empty == "null":  # names: str or None, and the same names recur
        text = _Encoded(_json_value).column(picked)
    else:
        text = [
            empty if v is None or (type(v) is list and not v) else _list_json(v) for v in picked
        ]
    out = np.full(hi - lo, empty, dtype=object)
    out[rows] = text
    return out


_PLAIN = frozenset((str, int, type(None)))
_TEXT = frozenset((str,))
# The standard library's C encoder, made once (json.dumps with options builds one a call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _plain(item: Any) -> bool:
    """True for a value the standard encoder writes exactly as pandas' encoder does: text,
    integers, None, and objects of those (floats and booleans are spelled differently)."""
    kind = type(item)
    if kind in _PLAIN:
        return True
    if kind is dict:
        return set(map(type, item)) <= _TEXT and set(map(type, item.values())) <= _PLAIN
    return False


def _list_json(value: Any) -> str:
    """JSON of a list cell: the C encoder when every item is plain, else :func:`_json_value`."""
    if type(value) is list and all(map(_plain, value)):
        text: str = _ENCODER.encode(value)
        return text
    return _json_value(value)


def _label_json(coded: Coded) -> np.ndarray:
    """JSON strings of a coded column's labels, made once per column."""
    key = id(coded.labels)
    hit = _LABELS.get(key)
    if hit is None or hit[0] is not coded.labels:
        hit = _LABELS[key] = (coded.labels, _objects(list(map(_json_value, coded.labels.tolist()))))
    return hit[1]


# Labels' JSON by the labels' identity: address columns share theirs, and chunks reuse them.
_LABELS: dict[int, tuple[np.ndarray, np.ndarray]] = {}
# One column's text for some rows: the same for all (a str) or one per row (an object array).
Piece = str | np.ndarray


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
        text = _int_text(np.maximum(values, 0))
        text[values < 0] = "null"
        return [text]
    if kind == "float":
        return [str(_float_json(values[:1])[0])] if _same(values) else [_float_json(values)]
    if kind == "bool":
        if _same(values):
            return ["true" if values[0] else "false"]
        return [np.where(values, "true", "false").astype(object)]
    return [str(values[0])] if _same(values) else [_int_text(values)]


def json_lines_of(flows: FlowColumns, lo: int, hi: int) -> str:
    """JSON Lines text of rows ``lo:hi``: the same bytes pandas' ``to_json(orient="records",
    lines=True)`` gave for the flows DataFrame.

    Each line is the concatenation of constant text (keys, punctuation, columns with one
    value in these rows) and per-row cells; the cells sit in one grid that a single join
    turns into text.
    """
    if hi <= lo:
        return ""
    pieces: list[Piece] = []
    for j, (name, kind) in enumerate(COLUMN_KINDS.items()):
        pieces.append(("{" if j == 0 else ",") + json.dumps(name) + ":")
        pieces.extend(_json_pieces(flows, name, kind, lo, hi))
    pieces.append("}\n")
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    grid = np.empty((hi - lo, len(merged)), dtype=object)
    for j, piece in enumerate(merged):
        grid[:, j] = piece
    return "".join(grid.ravel().tolist())


def _chunks(n: int, jobs: int) -> list[tuple[int, int]]:
    step = min(CHUNK_ROWS, max(1024, -(-n // (4 * max(jobs, 1)))))
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def iter_flow_lines(flows: FlowColumns, jobs: int = 1) -> Iterator[str]:
    """JSON Lines text of the flows, a chunk of rows at a time (bounded memory), rendered by
    ``jobs`` processes side by side."""
    for name, kind in COLUMN_KINDS.items():
        if kind == "text":
            _label_json(flows.coded(name))  # once here, not in every process

    def render(bounds: tuple[int, int]) -> str:
        return json_lines_of(flows, *bounds)

    yield from fork_map(render, _chunks(len(flows), jobs), jobs)


def _json(flows: FlowColumns, jobs: int) -> Iterator[str]:
    yield "["
    first = True
    for text in iter_flow_lines(flows, jobs):
        lines = text.rstrip("\n").split("\n")
        yield ("\n" if first else ",\n") + ",\n".join(lines)
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


def _csv_cells(flows: FlowColumns, lo: int, hi: int) -> list[list[Any]]:
    """CSV cells of rows ``lo:hi``, column by column, as pandas' to_csv wrote them."""
    cells: list[list[Any]] = []
    for name, kind in COLUMN_KINDS.items():
        values = flows[name][lo:hi] if kind != "text" else np.empty(0)
        if kind == "vlan":
            cells.append(np.where(values >= 0, values.astype(str), "").tolist())
        elif kind == "time":
            cells.append(iso_texts(values.astype("datetime64[ns]")).tolist())
        elif kind == "float":
            cells.append(values.astype(str).tolist())
        elif kind == "text":
            coded = flows.coded(name)
            labels = _objects(list(map(_csv_cell, coded.labels.tolist())))
            cells.append(labels[coded.codes[lo:hi]].tolist())
        elif kind == "name":
            cells.append(_csv_text(values))
        elif kind == "list":
            cells.append(_csv_list(name, values))
        elif kind == "bool":
            cells.append(np.where(values, "True", "False").tolist())
        else:
            cells.append(values.tolist())
    return cells


def _csv_cell(value: str | None) -> str:
    return "" if value is None else for_csv(value)


def _csv_text(values: np.ndarray) -> list[str]:
    return _Encoded(_csv_cell).column(values)


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
        out[i] = for_csv(text)
    return out


def _csv(flows: FlowColumns, jobs: int) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(FLOW_COLUMNS)
    yield buf.getvalue()
    for lo, hi in _chunks(len(flows), 1):
        buf.seek(0)
        buf.truncate()
        writer.writerows(zip(*_csv_cells(flows, lo, hi), strict=True))
        yield buf.getvalue()


def _one(render: Callable[[FlowColumns], str]) -> Callable[[FlowColumns, int], Iterator[str]]:
    def wrapped(flows: FlowColumns, jobs: int) -> Iterator[str]:
        yield render(flows)

    return wrapped


# Each takes the flows and the processes it may use.
RENDERERS: dict[str, Callable[[FlowColumns, int], Iterator[str]]] = {
    "table": _one(_table),
    "csv": _csv,
    "json": _json,
    "jsonl": iter_flow_lines,
}


def write_flows(
    flows: FlowColumns, fmt: str, output: str | None, notes: list[str], jobs: int = 1
) -> None:
    """Render ``flows`` as ``fmt`` to ``output`` (stdout when None or "-"), with up to
    ``jobs`` processes for the JSON formats."""
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
        parts = RENDERERS[fmt](flows, jobs)
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
