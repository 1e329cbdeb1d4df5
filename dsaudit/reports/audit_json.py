"""The audit as one deterministic JSON document: summary, flows with verdicts, and every table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.judge.findings import AuditResult
from dsaudit.parallel import fork_map, row_chunks
from dsaudit.reports import audit_format as fm
from dsaudit.reports import audit_frames as af
from dsaudit.reports.flow_output import json_lines_chunk

# Top-level keys in document order; every table is a list of records in a fixed row order.
TABLES = ("findings", "compliance", "expectations", "heartbeats")
DOCUMENT_KEYS = ("summary", "flows") + TABLES
_PLAIN = (str, int, bool)


def json_value(value: Any) -> Any:
    """A JSON-ready copy: times as ISO-8601 UTC, missing as null, dict keys sorted."""
    # Exact types: most values are plain already (numpy scalars are not int/bool subclasses).
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, dict):
        return {str(k): json_value(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_value(v) for v in value]
    if fm.is_missing(value):
        return None
    if isinstance(value, pd.Timestamp | np.datetime64):
        return fm.iso_utc(value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if np.isfinite(number) else None
    return value if isinstance(value, str) else str(value)


def _sorted(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """A table in its documented row order, so output never depends on the engine's order."""
    if df.empty:
        return df
    if name == "findings":
        return df.sort_values(["severity", "finding_id"], kind="stable")
    if name == "compliance":
        # Role rows before host rows, like every other report shows them.
        scope = df["scope"].astype(str).map({"role": 0, "host": 1}).fillna(2)
        order = df.assign(_s=scope).sort_values(["_s", "role", "host"], kind="stable")
        return order.drop(columns="_s")
    keys = {
        "expectations": ["host", "rule", "peer_role", "port"],
        "heartbeats": ["agent", "direction", "port"],
    }[name]
    return df.sort_values(keys, kind="stable", na_position="last")


def table_records(name: str, df: pd.DataFrame) -> list[dict[str, Any]]:
    """The records of one result table, in documented order with JSON-ready values."""
    return [{k: json_value(v) for k, v in row.items()} for row in af.records(_sorted(name, df))]


def flow_chunks(flows: pd.DataFrame, jobs: int = 1) -> Iterator[str]:
    """Flows by flow_id as JSON Lines text, serialised as `dsaudit flows` does, a chunk of
    rows at a time; ``jobs`` processes render chunks side by side."""
    if flows.empty:
        return
    ordered = flows.sort_values("flow_id", kind="stable")[af.ordered_flow_columns(flows)]
    yield from fork_map(_render_rows, row_chunks(ordered, jobs), jobs)


def flow_lines(flows: pd.DataFrame, jobs: int = 1) -> Iterator[str]:
    """Each flow by flow_id as one compact JSON text."""
    for text in flow_chunks(flows, jobs):
        # "\n" is always escaped inside JSON strings, unlike the separators splitlines() knows.
        yield from (line for line in text.split("\n") if line)


def _render_rows(rows: pd.DataFrame) -> str:
    nested = [c for c in rows.columns if rows[c].dtype == object]
    if nested:
        rows = rows.copy()
        for col in nested:
            # Objects inside cells (DNS answers, ICMP errors) get sorted keys before the C
            # encoder writes them in their insertion order; empty cells need no copy.
            rows[col] = [_settled(v) for v in rows[col].tolist()]
    return json_lines_chunk(rows)


def _settled(value: Any) -> Any:
    """A cell as json_value gives it, skipping the copy for plain and empty values."""
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, list | tuple | dict) and not value:
        return value
    return json_value(value)


def flow_records(flows: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Flows by flow_id as dicts: every flow column plus the verdict columns."""
    return (json.loads(line) for line in flow_lines(flows))


def audit_to_dict(result: AuditResult) -> dict[str, Any]:
    """The whole audit as plain Python data; the json writer writes exactly this."""
    doc: dict[str, Any] = {
        "summary": json_value(result.summary),
        "flows": list(flow_records(result.flows)),
    }
    for name in TABLES:
        doc[name] = table_records(name, getattr(result, name))
    return doc


def _dump(value: Any) -> str:
    # Compact, like the flow lines pandas writes, so every record looks alike.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def iter_audit_json(result: AuditResult, jobs: int = 1) -> Iterator[str]:
    """The JSON document in pieces, one record per line, flows streamed a chunk at a time
    (rendered by ``jobs`` processes)."""
    summary = json.dumps(json_value(result.summary), ensure_ascii=False, indent=2)
    yield "{\n" + f'"summary": {summary}'
    yield ',\n"flows": ['
    first = True
    for text in flow_chunks(result.flows, jobs):
        # A chunk's lines become array items at once: "\n" never occurs inside a JSON string.
        yield ("\n" if first else ",\n") + text.rstrip("\n").replace("\n", ",\n")
        first = False
    yield "]" if first else "\n]"
    for name in TABLES:
        yield f',\n"{name}": ['
        first = True
        for record in table_records(name, getattr(result, name)):
            yield ("\n" if first else ",\n") + _dump(record)
            first = False
        yield "]" if first else "\n]"
    yield "\n}\n"
