"""The audit as one deterministic JSON document: summary, flows with verdicts, and every table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.findings import AuditResult
from dsaudit.report import audit_format as fm
from dsaudit.report import audit_frames as af
from dsaudit.report.flow_output import iter_json_lines

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


def flow_lines(flows: pd.DataFrame) -> Iterator[str]:
    """Each flow by flow_id as one compact JSON text, serialised as `dsaudit flows` does."""
    if flows.empty:
        return
    ordered = flows.sort_values("flow_id", kind="stable")[af.ordered_flow_columns(flows)]
    nested = [c for c in ordered.columns if ordered[c].dtype == object]
    for text in iter_json_lines(ordered):
        # "\n" is always escaped inside JSON strings, unlike the separators splitlines() knows.
        for line in text.split("\n"):
            if not line:
                continue
            if line.count("{") == 1:
                yield line  # no object inside a cell: nothing to sort, pass it through
                continue
            # Objects inside cells (DNS answers, ICMP errors) get sorted keys; json.loads keeps
            # the record's column order.
            record = json.loads(line)
            for col in nested:
                record[col] = json_value(record[col])
            yield _dump(record)


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


def iter_audit_json(result: AuditResult) -> Iterator[str]:
    """The JSON document in pieces, one record per line, flows streamed a chunk at a time."""
    summary = json.dumps(json_value(result.summary), ensure_ascii=False, indent=2)
    yield "{\n" + f'"summary": {summary}'
    sources: list[tuple[str, Iterator[str]]] = [("flows", flow_lines(result.flows))]
    sources += [(n, map(_dump, table_records(n, getattr(result, n)))) for n in TABLES]
    for name, lines in sources:
        yield f',\n"{name}": ['
        first = True
        for line in lines:
            yield ("\n" if first else ",\n") + line
            first = False
        yield "]" if first else "\n]"
    yield "\n}\n"
