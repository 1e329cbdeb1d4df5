"""Trends over stored runs: compliance per role and host, and what changed since the last run.

A stored run (:class:`Run`) is defined here, beside the views that show it: the history store
(dsaudit.runs.history) keeps runs and builds the trends from them, so no report imports a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dsaudit.reports.audit_json import json_value

DEFAULT_RUNS = 10
FINDING_FIELDS = ["kind", "severity", "host", "role", "rule", "peer", "port", "message"]


@dataclass(frozen=True)
class Run:
    """One stored report run."""

    id: int
    started_at: str
    finished_at: str
    period_start: str | None
    period_end: str | None
    label: str
    source: str
    captures: list[str]
    exit_code: int
    compliant: bool
    summary: dict[str, Any]

    def severities(self) -> dict[str, int]:
        """Findings per severity."""
        counts: dict[str, int] = self.summary.get("finding_counts") or {}
        return counts


@dataclass
class Trends:
    """Compliance over the last runs (oldest first, the current one last) and the changes."""

    runs: list[Run]
    scores: pd.DataFrame  # scope, role, host, then one score column per run id (NaN: absent)
    previous: Run | None
    new: pd.DataFrame = field(default_factory=pd.DataFrame)
    resolved: pd.DataFrame = field(default_factory=pd.DataFrame)
    heartbeats_stopped: pd.DataFrame = field(default_factory=pd.DataFrame)
    heartbeats_resumed: pd.DataFrame = field(default_factory=pd.DataFrame)

    def series(self, scope: str) -> list[tuple[str, list[float | None]]]:
        """(label, score per run) for every role (scope "role") or host (scope "host")."""
        rows = self.scores[self.scores["scope"] == scope]
        out = []
        for _, row in rows.iterrows():
            label = str(row["role"]) if scope == "role" else f"{row['host']} ({row['role']})"
            values = [None if pd.isna(row[r.id]) else float(row[r.id]) for r in self.runs]
            out.append((label, values))
        return out


def run_label(run: Run) -> str:
    """How a run is named in tables and charts: its id and period end date."""
    when = (run.period_end or run.started_at or "")[:16].replace("T", " ")
    return f"#{run.id} {when}".strip()


def _findings(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    return [
        {k: json_value(row.get(k)) for k in FINDING_FIELDS + ["finding_key"]}
        for row in frame.to_dict("records")
    ]


def trends_dict(trends: Trends) -> dict[str, Any]:
    """The trends as plain JSON-ready data."""
    runs = [
        {
            "id": r.id,
            "period_start": r.period_start,
            "period_end": r.period_end,
            "started_at": r.started_at,
            "compliant": r.compliant,
            "exit_code": r.exit_code,
            "finding_counts": r.severities(),
        }
        for r in trends.runs
    ]
    compliance = [
        {
            "scope": str(row["scope"]),
            "role": str(row["role"]),
            "host": str(row["host"]),
            "scores": [json_value(row[r.id]) for r in trends.runs],
        }
        for _, row in trends.scores.iterrows()
    ]

    def beats(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return [{str(k): json_value(v) for k, v in r.items()} for r in frame.to_dict("records")]

    return {
        "runs": runs,
        "compliance": compliance,
        "previous_run": trends.previous.id if trends.previous else None,
        "new_findings": _findings(trends.new),
        "resolved_findings": _findings(trends.resolved),
        "heartbeats_stopped": beats(trends.heartbeats_stopped),
        "heartbeats_resumed": beats(trends.heartbeats_resumed),
    }
