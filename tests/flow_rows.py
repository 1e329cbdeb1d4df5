"""Build flows DataFrames row by row for tests of the stages after the flow table."""

from __future__ import annotations

from typing import Any

import pandas as pd

from dsaudit.flow_records.flowlogs.common import base_row
from dsaudit.flow_records.frame import FLOW_DTYPES

T0 = pd.Timestamp("2026-03-02T09:00:00Z")


def flow(**fields: Any) -> dict[str, Any]:
    """One flow row with plausible defaults; ``at`` is seconds after T0."""
    at = float(fields.pop("at", 0.0))
    row: dict[str, Any] = base_row()
    row.update(
        {
            "proto": "tcp",
            "ip_version": 4,
            "client_port": 40000,
            "packets_c2s": 5,
            "packets_s2c": 5,
            "bytes_c2s": 500,
            "bytes_s2c": 900,
            "payload_bytes_c2s": 200,
            "payload_bytes_s2c": 600,
            "start": T0 + pd.Timedelta(seconds=at),
            "end": T0 + pd.Timedelta(seconds=at + 1),
            "duration": 1.0,
            "state": "SF",
            "history": "ShADadFf",
            "outcome": "established",
            "initiator_evidence": "syn",
        }
    )
    row.update(fields)
    if row["server_name"] is not None and row["name_source"] == "none":
        row["name_source"] = "sni"
    return row


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A flows DataFrame with the engine's dtypes."""
    df = pd.DataFrame(rows)
    df.insert(0, "flow_id", range(len(df)))
    return df[list(FLOW_DTYPES)].astype(FLOW_DTYPES)
