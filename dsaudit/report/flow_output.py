"""Write the flows DataFrame as a table, CSV, JSON, JSON Lines or Parquet."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import pandas as pd
from tabulate import tabulate

from dsaudit.errors import DsauditError
from dsaudit.report.safe_text import for_csv, for_terminal

FORMATS = ("table", "csv", "json", "jsonl", "parquet")
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


def flows_for_json(df: pd.DataFrame) -> str:
    """JSON Lines text of the flows (one object per line), ISO-8601 UTC times."""
    if df.empty:
        return ""
    out = df.copy()
    for col in ("start", "end"):
        out[col] = out[col].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text: str = out.to_json(orient="records", lines=True, force_ascii=False)
    return text if text.endswith("\n") else text + "\n"


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(no flows)\n"
    view = pd.DataFrame(
        {
            "proto": df["proto"],
            "client": [_endpoint(i, p) for i, p in zip(df["client_ip"], df["client_port"], strict=True)],
            "server": [_endpoint(i, p) for i, p in zip(df["server_ip"], df["server_port"], strict=True)],
        }
    )
    for col in TABLE_COLUMNS[3:]:
        view[col] = df[col]
    view["vlan"] = view["vlan"].astype("string").fillna("")
    view["server_name"] = [for_terminal(s) if isinstance(s, str) else "" for s in df["server_name"]]
    return tabulate(view.values.tolist(), headers=TABLE_COLUMNS, tablefmt="simple") + "\n"


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


def _json(df: pd.DataFrame) -> str:
    lines = flows_for_json(df).splitlines()
    return "[\n" + ",\n".join(lines) + ("\n]\n" if lines else "]\n")


RENDERERS: dict[str, Callable[[pd.DataFrame], str]] = {
    "table": _table,
    "csv": _csv,
    "json": _json,
    "jsonl": flows_for_json,
}


def write_flows(df: pd.DataFrame, fmt: str, output: str | None, notes: list[str]) -> None:
    """Render ``df`` as ``fmt`` to ``output`` (stdout when None or "-")."""
    if fmt == "parquet":
        if output in (None, "-"):
            raise DsauditError("--format parquet needs --output FILE")
        assert output is not None
        parquet_frame(df).to_parquet(output, index=False)
        return
    text = RENDERERS[fmt](df)
    if fmt == "table" and notes:
        text += "\n" + "\n".join(f"warning: {for_terminal(n)}" for n in notes) + "\n"
    _write_text(text, output)


def parquet_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The flows with nested columns in shapes Arrow stores well."""
    out = df.copy()
    out["dns_answers"] = [
        [{"name": a["name"], "type": a["type"], "data": a["data"], "ttl": a["ttl"]} for a in v]
        for v in out["dns_answers"]
    ]
    out["icmp_errors"] = [[json.dumps(e, sort_keys=True) for e in v] for v in out["icmp_errors"]]
    return out


def _write_text(text: str, output: str | None) -> None:
    stream: TextIO
    if output in (None, "-"):
        stream = sys.stdout
        stream.write(text)
        stream.flush()
        return
    assert output is not None
    try:
        with open(output, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    except OSError as exc:
        raise DsauditError(f"cannot write {output}: {exc.strerror or exc}") from None


def describe(value: Any) -> str:
    """Short text of a cell for terminals."""
    return for_terminal(str(value))
