"""The audit as data files: flows and findings CSVs, and one Parquet file per result table."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

# pyarrow ships no type information; pandas already depends on it for Parquet.
import pyarrow as pa
import pyarrow.parquet as pq

from dsaudit.errors import DsauditError, cannot_write
from dsaudit.judge.findings import AuditResult
from dsaudit.reports import audit_format as fm
from dsaudit.reports import audit_frames as af
from dsaudit.reports.audit_json import json_value
from dsaudit.reports.flow_output import parquet_frame
from dsaudit.text.safe import for_csv, for_terminal
from dsaudit.time_text import iso_texts

# The flows CSV leads with what a reader filters on: who talked to whom and the verdict.
CSV_LEAD_COLUMNS = (
    "flow_id",
    "start",
    "end",
    "proto",
    "client_ip",
    "client_port",
    "client_role",
    "server_ip",
    "server_port",
    "server_role",
    "server_name",
    "verdict",
    "blocked",
    "rule",
    "match",
    "reason",
    "reason_text",
    "outcome",
    "state",
)
PARQUET_TABLES = ("flows", "findings", "compliance", "expectations", "heartbeats")
SUMMARY_KEY = b"dsaudit.summary"
# Parquet keeps a categorical's values in the data pages' dictionary, so a table without rows
# would come back with no categories; they are kept in the schema metadata as well.
CATEGORIES_KEY = b"dsaudit.categories"

# Arrow types for list columns: inferred types collapse to list<null> when every list in a
# file is empty, which would give readers a different schema from run to run.
_DNS_ANSWER = pa.struct(
    [("name", pa.string()), ("type", pa.string()), ("data", pa.string()), ("ttl", pa.int64())]
)
LIST_TYPES: dict[str, dict[str, pa.DataType]] = {
    "flows": {
        "dns_queries": pa.list_(pa.string()),
        "dns_answers": pa.list_(_DNS_ANSWER),
        "icmp_errors": pa.list_(pa.string()),
    },
    "findings": {"flow_ids": pa.list_(pa.int64()), "fix": pa.list_(pa.string())},
    "heartbeats": {"times": pa.list_(pa.string()), "outcomes": pa.list_(pa.string())},
}


# ------------------------------------------------------------------ CSV


def csv_text(text: str) -> str:
    """A text cell: control and bidi characters shown as \\xNN (a CSV gets `cat` to terminals
    too), then a leading formula character neutralised."""
    # Both kinds are non-printable, so most cells skip the regular expressions.
    return for_csv(text if text.isprintable() else for_terminal(text))


def _csv_cell(value: Any) -> Any:
    """A cell for csv.writer: text neutralised against formulas, numbers left as numbers."""
    if isinstance(value, str):
        return csv_text(value)
    if isinstance(value, list | tuple | np.ndarray):
        # Lists become one ";"-separated cell; objects in them as compact JSON.
        parts = (v if isinstance(v, str) else json.dumps(json_value(v)) for v in value)
        return csv_text(";".join(parts))
    if isinstance(value, dict):
        return csv_text(json.dumps(json_value(value), ensure_ascii=False))
    if fm.is_missing(value):
        return ""
    if isinstance(value, pd.Timestamp | np.datetime64):
        return fm.iso_utc(value) or ""
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, bool | int | float) else csv_text(str(value))


def _csv_column(col: pd.Series) -> list[Any]:
    """One column's cells; times and numbers converted for the whole column at once."""
    if isinstance(col.dtype, pd.DatetimeTZDtype) or col.dtype.kind == "M":
        utc = col.dt.tz_convert("UTC") if isinstance(col.dtype, pd.DatetimeTZDtype) else col
        text = iso_texts(utc.to_numpy(dtype="datetime64[us]")).tolist()
        return ["" if missing else t for t, missing in zip(text, col.isna(), strict=True)]
    if col.dtype.kind in "biuf" or pd.api.types.is_bool_dtype(col.dtype):
        # tolist() gives Python numbers; nullable integers give pd.NA and floats NaN.
        return ["" if fm.is_missing(v) else v for v in col.tolist()]
    if isinstance(col.dtype, pd.StringDtype | pd.CategoricalDtype):
        # Text vocabularies: every value is a string or missing.
        return [csv_text(v) if isinstance(v, str) else "" for v in col.tolist()]
    return [_csv_cell(v) for v in col.tolist()]


def iter_csv(df: pd.DataFrame, columns: list[str], chunk: int = 8192) -> Iterator[str]:
    """CSV text of ``df[columns]`` with a header, a chunk of rows at a time."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_text(c) for c in columns])
    for lo in range(0, len(df), chunk):
        part = df.iloc[lo : lo + chunk]
        writer.writerows(zip(*(_csv_column(part[c]) for c in columns), strict=True))
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


def flow_csv_columns(flows: pd.DataFrame) -> list[str]:
    lead = [c for c in CSV_LEAD_COLUMNS if c in flows.columns]
    return lead + [c for c in af.ordered_flow_columns(flows) if c not in lead]


def iter_flows_csv(result: AuditResult) -> Iterator[str]:
    """The flows with their verdicts, by flow_id."""
    flows = (
        result.flows.sort_values("flow_id", kind="stable") if len(result.flows) else result.flows
    )
    return iter_csv(flows, flow_csv_columns(flows))


def iter_findings_csv(result: AuditResult) -> Iterator[str]:
    """The findings, most severe first, flow_ids joined with ";"."""
    rows = pd.DataFrame(af.finding_rows(result), columns=list(result.findings.columns))
    return iter_csv(rows, list(result.findings.columns))


def findings_csv_path(output: str) -> str:
    """``report.csv`` -> ``report.findings.csv`` (any other name just gets the suffix)."""
    stem = output[:-4] if output.lower().endswith(".csv") else output
    return stem + ".findings.csv"


# ------------------------------------------------------------------ Parquet


def parquet_paths(output: str) -> dict[str, str]:
    """Where each table goes: ``DIR/flows.parquet``... or ``STEM.flows.parquet``...

    ``output`` is a directory when it exists as one or ends with a path separator
    (created then); otherwise it is a stem, with a trailing ``.parquet`` dropped.
    """
    names = PARQUET_TABLES + ("summary",)
    ext = {n: ".json" if n == "summary" else ".parquet" for n in names}
    if os.path.isdir(output) or output.endswith(("/", os.sep)):
        return {n: os.path.join(output, n + ext[n]) for n in names}
    stem = output[: -len(".parquet")] if output.endswith(".parquet") else output
    return {n: f"{stem}.{n}{ext[n]}" for n in names}


def arrow_table(name: str, df: pd.DataFrame, summary_json: str) -> pa.Table:
    """One result table as Arrow, list columns typed explicitly, the summary in its metadata."""
    frame = parquet_frame(df) if name == "flows" and len(df) else df
    if name == "flows":
        frame = frame[af.ordered_flow_columns(frame)]
    frame = frame.copy()
    lists = LIST_TYPES.get(name, {})
    for col in lists:
        if col in frame.columns:
            # An explicit object Series: a bare [] for an empty frame would turn into float64.
            values = [fm.as_list(v) for v in frame[col]]
            frame[col] = pd.Series(values, index=frame.index, dtype=object)
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    for col, typ in lists.items():
        if col in frame.columns:
            schema = schema.set(schema.get_field_index(col), pa.field(col, typ))
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    cats = {
        col: {"categories": [str(c) for c in dtype.categories], "ordered": bool(dtype.ordered)}
        for col, dtype in frame.dtypes.items()
        if isinstance(dtype, pd.CategoricalDtype)
    }
    meta = dict(table.schema.metadata or {})
    meta[SUMMARY_KEY] = summary_json.encode("utf-8")
    meta[CATEGORIES_KEY] = json.dumps(cats, sort_keys=True).encode("utf-8")
    return table.replace_schema_metadata(meta)


def read_parquet_table(path: str) -> pd.DataFrame:
    """A table written by :func:`write_parquet`, categories restored even when it is empty."""
    table = pq.read_table(path)
    frame = table.to_pandas()
    cats = json.loads((table.schema.metadata or {}).get(CATEGORIES_KEY, b"{}"))
    for col, spec in cats.items():
        if col in frame.columns:
            dtype = pd.CategoricalDtype(spec["categories"], ordered=spec["ordered"])
            frame[col] = frame[col].astype(object).astype(dtype)
    return frame


def read_parquet_summary(path: str) -> dict[str, Any]:
    """The audit summary stored in a Parquet file's metadata."""
    meta = pq.read_schema(path).metadata or {}
    summary: dict[str, Any] = json.loads(meta.get(SUMMARY_KEY, b"{}"))
    return summary


def write_parquet(result: AuditResult, output: str | None) -> dict[str, str]:
    """Write every table as Parquet plus the summary as JSON; returns the paths written."""
    if output in (None, "-"):
        raise DsauditError("--format parquet needs --output DIR/ or --output STEM")
    assert output is not None
    paths = parquet_paths(output)
    summary_json = json.dumps(json_value(result.summary), ensure_ascii=False, indent=2)
    try:
        parent = os.path.dirname(paths["flows"])
        if parent:
            os.makedirs(parent, exist_ok=True)
        for name in PARQUET_TABLES:
            pq.write_table(arrow_table(name, getattr(result, name), summary_json), paths[name])
        with open(paths["summary"], "w", encoding="utf-8") as fh:
            fh.write(summary_json + "\n")
    except OSError as exc:
        raise cannot_write(output, exc) from None
    return paths
