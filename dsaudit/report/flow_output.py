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
from dsaudit.flows.columns import COLUMN_KINDS, FLOW_COLUMNS, FlowColumns
from dsaudit.parallel import fork_map
from dsaudit.report.safe_text import for_csv, for_terminal
from dsaudit.report.text_out import write_text

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

    def column(self, values: np.ndarray) -> list[str]:
        return list(map(self.__getitem__, values.tolist()))


def _present(values: np.ndarray) -> np.ndarray:
    """Positions of the cells that are not None."""
    flags = map(operator.is_not, values.tolist(), itertools.repeat(None))
    return np.flatnonzero(np.fromiter(flags, dtype=bool, count=len(values)))


def _time_text(ns: np.ndarray, form: str = "%sZ") -> list[str]:
    """ISO-8601 UTC text to the microsecond, ``Z`` suffixed, put into ``form``."""
    stamps = np.datetime_as_string(ns.astype("datetime64[ns]").astype("datetime64[us]"))
    return list(map(form.__mod__, stamps.tolist()))


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
        return json.dumps(value, ensure_ascii=False)
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


def _sparse_json(values: np.ndarray, empty: str) -> np.ndarray:
    """JSON text of a column that is mostly empty (None): ``empty`` for those, the others
    encoded one by one (they are the few flows with names or DNS)."""
    out = np.full(len(values), empty, dtype=object)
    for i in _present(values).tolist():
        out[i] = _json_value(values[i])
    return out


def _text_json(values: np.ndarray) -> np.ndarray:
    """JSON strings of a text column with few distinct values (states, protocols,
    addresses): each distinct value is encoded once."""
    return _objects(_Encoded(_json_value).column(values))


def _json_cells(flows: FlowColumns, lo: int, hi: int) -> list[np.ndarray]:
    """JSON text of every cell of rows ``lo:hi``, column by column."""
    cells = []
    for name, kind in COLUMN_KINDS.items():
        values = flows[name][lo:hi]
        if kind == "int":
            cells.append(_int_text(values))
        elif kind == "vlan":
            text = _int_text(np.maximum(values, 0))
            text[values < 0] = "null"
            cells.append(text)
        elif kind == "time":
            cells.append(_objects(_time_text(values, '"%sZ"')))
        elif kind == "float":
            cells.append(_float_json(values))
        elif kind == "text":
            cells.append(_text_json(values))
        elif kind == "name":
            cells.append(_sparse_json(values, "null"))
        elif kind == "list":
            cells.append(_sparse_json(values, "[]"))
        else:
            cells.append(np.where(values, "true", "false").astype(object))
    return cells


def json_lines_of(flows: FlowColumns, lo: int, hi: int) -> str:
    """JSON Lines text of rows ``lo:hi``: the same bytes pandas' ``to_json(orient="records",
    lines=True)`` gave for the flows DataFrame."""
    if hi <= lo:
        return ""
    cells = _json_cells(flows, lo, hi)
    grid = np.empty((hi - lo, 2 * len(cells) + 1), dtype=object)
    for j, (name, column) in enumerate(zip(FLOW_COLUMNS, cells, strict=True)):
        grid[:, 2 * j] = ("{" if j == 0 else ",") + json.dumps(name) + ":"
        grid[:, 2 * j + 1] = column
    grid[:, -1] = "}\n"
    return "".join(grid.ravel().tolist())


def _chunks(n: int, jobs: int) -> list[tuple[int, int]]:
    step = min(CHUNK_ROWS, max(1024, -(-n // (4 * max(jobs, 1)))))
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def iter_flow_lines(flows: FlowColumns, jobs: int = 1) -> Iterator[str]:
    """JSON Lines text of the flows, a chunk of rows at a time (bounded memory), rendered by
    ``jobs`` processes side by side."""

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
        stamps = part[col].to_numpy(dtype="datetime64[us]")
        part[col] = np.char.add(np.datetime_as_string(stamps, unit="us"), "Z")
    text: str = part.to_json(orient="records", lines=True, force_ascii=False)
    # pandas' encoder escapes every "/" as "\\/"; since none is left bare, dropping the
    # backslash before each one is exact and keeps ports and URLs readable.
    text = text.replace("\\/", "/")
    return text if text.endswith("\n") else text + "\n"


# ----------------------------------------------------------------------------- table, CSV
def _endpoints(ips: np.ndarray, ports: np.ndarray) -> list[str]:
    return [
        f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        for ip, port in zip(ips.tolist(), ports.tolist(), strict=True)
    ]


def _table(flows: FlowColumns) -> str:
    if not len(flows):
        return "(no flows)\n"
    from tabulate import tabulate

    vlan = flows["vlan"]
    names = flows["server_name"]
    columns: list[list[Any]] = [
        flows["proto"].tolist(),
        _endpoints(flows["client_ip"], flows["client_port"]),
        _endpoints(flows["server_ip"], flows["server_port"]),
        np.where(vlan >= 0, vlan.astype(str), "").tolist(),
        *(flows[c].tolist() for c in TABLE_COLUMNS[4:11]),
        ["" if s is None else for_terminal(s) for s in names.tolist()],
        flows["name_source"].tolist(),
    ]
    rows = [list(r) for r in zip(*columns, strict=True)]
    return tabulate(rows, headers=TABLE_COLUMNS, tablefmt="simple") + "\n"


def _csv_cells(flows: FlowColumns, lo: int, hi: int) -> list[list[Any]]:
    """CSV cells of rows ``lo:hi``, column by column, as pandas' to_csv wrote them."""
    cells: list[list[Any]] = []
    for name, kind in COLUMN_KINDS.items():
        values = flows[name][lo:hi]
        if kind == "vlan":
            cells.append(np.where(values >= 0, values.astype(str), "").tolist())
        elif kind == "time":
            cells.append(_time_text(values))
        elif kind == "float":
            cells.append(values.astype(str).tolist())
        elif kind in ("text", "name"):
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
