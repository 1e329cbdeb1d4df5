"""Write the flows DataFrame as a table, CSV, JSON, JSON Lines or Parquet."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from dsaudit.errors import DsauditError, cannot_write
from dsaudit.parallel import fork_map, row_chunks
from dsaudit.report.safe_text import for_csv, for_terminal
from dsaudit.report.text_out import write_text

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


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def iter_json_lines(df: pd.DataFrame, jobs: int = 1) -> Iterator[str]:
    """JSON Lines text of the flows, a chunk of rows at a time (bounded memory), rendered by
    ``jobs`` processes side by side."""
    yield from fork_map(json_lines_chunk, row_chunks(df, jobs), jobs)


def json_lines_chunk(rows: pd.DataFrame) -> str:
    """JSON Lines text of some flows."""
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


def flows_for_json(df: pd.DataFrame) -> str:
    """JSON Lines text of all flows (one object per line), ISO-8601 UTC times."""
    return "".join(iter_json_lines(df))


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(no flows)\n"
    view = pd.DataFrame(
        {
            "proto": df["proto"],
            "client": [
                _endpoint(i, p) for i, p in zip(df["client_ip"], df["client_port"], strict=True)
            ],
            "server": [
                _endpoint(i, p) for i, p in zip(df["server_ip"], df["server_port"], strict=True)
            ],
        }
    )
    for col in TABLE_COLUMNS[3:]:
        view[col] = df[col]
    view["vlan"] = view["vlan"].astype("string").fillna("")
    view["server_name"] = [for_terminal(s) if isinstance(s, str) else "" for s in df["server_name"]]
    headers = list(TABLE_COLUMNS)
    # Only captures with tunnels get the column: most have none, and the table is wide.
    if "tunnel_endpoints" in df and df["tunnel_endpoints"].notna().any():
        view["tunnel"] = [
            for_terminal(s) if isinstance(s, str) else "" for s in df["tunnel_endpoints"]
        ]
        headers.append("tunnel")
    return tabulate(view.values.tolist(), headers=headers, tablefmt="simple") + "\n"


def _csv(df: pd.DataFrame) -> str:
    out = df.copy()
    for col in ("dns_queries",):
        out[col] = [";".join(v) for v in out[col]]
    out["dns_answers"] = [
        ";".join(f"{a['name']} {a['type']} {a['data']}" for a in v) for v in out["dns_answers"]
    ]
    out["icmp_errors"] = [json.dumps(v) if v else "" for v in out["icmp_errors"]]
    for col in out.columns:
        if out[col].dtype == "string" or out[col].dtype == object:
            out[col] = [for_csv(v) if isinstance(v, str) else v for v in out[col]]
    buf = io.StringIO()
    out.to_csv(buf, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    return buf.getvalue()


def _json(df: pd.DataFrame, jobs: int) -> Iterator[str]:
    yield "["
    first = True
    for text in iter_json_lines(df, jobs):
        lines = text.rstrip("\n").split("\n")
        yield ("\n" if first else ",\n") + ",\n".join(lines)
        first = False
    yield "\n]\n"


def _one(render: Callable[[pd.DataFrame], str]) -> Callable[[pd.DataFrame, int], Iterator[str]]:
    def wrapped(df: pd.DataFrame, jobs: int) -> Iterator[str]:
        yield render(df)

    return wrapped


# Each takes the flows and the processes it may use.
RENDERERS: dict[str, Callable[[pd.DataFrame, int], Iterator[str]]] = {
    "table": _one(_table),
    "csv": _one(_csv),
    "json": _json,
    "jsonl": iter_json_lines,
}


def write_flows(
    df: pd.DataFrame, fmt: str, output: str | None, notes: list[str], jobs: int = 1
) -> None:
    """Render ``df`` as ``fmt`` to ``output`` (stdout when None or "-"), with up to ``jobs``
    processes for the JSON formats."""
    if fmt == "parquet":
        if output in (None, "-"):
            raise DsauditError("--format parquet needs --output FILE")
        assert output is not None
        try:
            parquet_frame(df).to_parquet(output, index=False)
        except OSError as exc:
            raise cannot_write(output, exc) from None
        return
    parts = RENDERERS[fmt](df, jobs)
    if fmt == "table" and notes:
        tail = "\n" + "\n".join(f"warning: {for_terminal(n)}" for n in notes) + "\n"
        parts = itertools.chain(parts, [tail])
    write_text(parts, output)


def parquet_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The flows with nested columns in shapes Arrow stores well."""
    out = df.copy()
    answers: list[list[dict[str, Any]]] = [
        [{"name": a["name"], "type": a["type"], "data": a["data"], "ttl": a["ttl"]} for a in v]
        for v in out["dns_answers"]
    ]
    out["dns_answers"] = pd.Series(answers, index=out.index, dtype=object)
    out["icmp_errors"] = [[json.dumps(e, sort_keys=True) for e in v] for v in out["icmp_errors"]]
    return out
