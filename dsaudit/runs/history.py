"""The history store: each report run's summary, compliance, findings and heartbeats in SQLite."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dsaudit.errors import DsauditError
from dsaudit.judge.findings import AuditResult
from dsaudit.reports.audit_json import json_value
from dsaudit.reports.trends import DEFAULT_RUNS, Run, Trends

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    period_start TEXT,
    period_end TEXT,
    label TEXT NOT NULL,
    source TEXT NOT NULL,
    captures TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    compliant INTEGER NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS compliance (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    scope TEXT, role TEXT, host TEXT,
    expected INTEGER, observed INTEGER, blocked INTEGER, missing INTEGER,
    inconclusive INTEGER, unexplained INTEGER, score REAL
);
CREATE TABLE IF NOT EXISTS findings (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    finding_key TEXT NOT NULL,
    kind TEXT, severity TEXT, host TEXT, role TEXT, rule TEXT, peer TEXT, port INTEGER,
    message TEXT, count INTEGER, first_seen TEXT, last_seen TEXT
);
CREATE TABLE IF NOT EXISTS heartbeats (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    agent TEXT, direction TEXT, port INTEGER,
    attempts INTEGER, established INTEGER, failed INTEGER, last_seen TEXT
);
CREATE INDEX IF NOT EXISTS compliance_run ON compliance(run_id);
CREATE INDEX IF NOT EXISTS findings_run ON findings(run_id);
CREATE INDEX IF NOT EXISTS heartbeats_run ON heartbeats(run_id);
CREATE INDEX IF NOT EXISTS runs_label ON runs(label, id);
"""
COMPLIANCE_COLS = (
    "scope role host expected observed blocked missing inconclusive unexplained score".split()
)
FINDING_COLS = (
    "finding_key kind severity host role rule peer port message count first_seen last_seen".split()
)
HEARTBEAT_COLS = "agent direction port attempts established failed last_seen".split()
# Kinds whose identity lives in the message (a name, a quality note), with counts masked.
_MESSAGE_KEYED = {"unlisted_hostname", "capture_quality"}
_DIGITS = re.compile(r"\d+(?:\.\d+)?")


def default_path() -> str:
    """$DSAUDIT_HISTORY, else $XDG_DATA_HOME/dsaudit/history.sqlite (~/.local/share/...)."""
    env = os.environ.get("DSAUDIT_HISTORY")
    if env:
        return env
    return standard_path()


def standard_path() -> str:
    """$XDG_DATA_HOME/dsaudit/history.sqlite: the one place whose folder dsaudit creates."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return os.path.join(base, "dsaudit", "history.sqlite")


def check_folder(path: str) -> None:
    """Refuse a history store whose folder does not exist, unless it is the standard place:
    a mistyped --history must not create folders (at the root, as root)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(folder) or os.path.abspath(path) == os.path.abspath(standard_path()):
        return
    raise DsauditError(f"{path}: the folder {folder} does not exist (history store)")


def finding_key(row: dict[str, Any]) -> str:
    """A finding's identity across runs: kind, host, rule, peer and port (and, for kinds
    identified by their text, the message with its numbers masked)."""

    def part(value: Any) -> str:
        return "" if value is None or value is pd.NA or pd.isna(value) else str(value)

    key = "|".join(part(row.get(c)) for c in ("kind", "host", "rule", "peer", "port"))
    if row.get("kind") in _MESSAGE_KEYED:
        key += "|" + _DIGITS.sub("#", part(row.get("message")))
    return key


@dataclass
class HistoryDiff:
    """What changed from run ``a`` to run ``b``."""

    a: Run
    b: Run
    new: pd.DataFrame  # findings of b whose key a lacks
    resolved: pd.DataFrame  # findings of a whose key b lacks
    compliance: pd.DataFrame  # scope, role, host, score_a, score_b, change
    heartbeats_stopped: pd.DataFrame  # agent, direction, port: established in a, not in b
    heartbeats_resumed: pd.DataFrame


class History:
    """A SQLite file of report runs; no server, safe for runs that overlap (SQLite locks)."""

    def __init__(self, path: str) -> None:
        self.path = path
        check_folder(path)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.db = sqlite3.connect(path, timeout=60)
            self.db.execute("PRAGMA foreign_keys = ON")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DsauditError(
                    f"{path}: history schema {version} is newer than this dsaudit "
                    f"understands ({SCHEMA_VERSION})"
                )
            with self.db:
                self.db.executescript(SCHEMA)
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise DsauditError(f"{path}: cannot open the history store ({exc})") from None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # -- writing ---------------------------------------------------------------------
    def record(
        self, result: AuditResult, period: dict[str, Any], label: str, started_at: str
    ) -> int:
        """Store one run; returns its id."""
        summary = json_value({**result.summary, "period": period})
        finished = summary.get("generated_at") or started_at
        try:
            with self.db:
                cur = self.db.execute(
                    "INSERT INTO runs (started_at, finished_at, period_start, period_end, label,"
                    " source, captures, exit_code, compliant, summary)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        started_at,
                        finished,
                        period.get("start"),
                        period.get("end"),
                        label,
                        str(period.get("source") or "pcap"),
                        json.dumps(period.get("files") or []),
                        int(summary.get("exit_code") or 0),
                        int(bool(summary.get("compliant"))),
                        json.dumps(summary, sort_keys=True),
                    ),
                )
                run_id = int(cur.lastrowid or 0)
                self._rows("compliance", run_id, COMPLIANCE_COLS, _records(result.compliance))
                findings = _records(result.findings)
                for f in findings:
                    f["finding_key"] = finding_key(f)
                self._rows("findings", run_id, FINDING_COLS, findings)
                self._rows("heartbeats", run_id, HEARTBEAT_COLS, _records(result.heartbeats))
        except sqlite3.Error as exc:
            raise DsauditError(f"{self.path}: cannot store the run ({exc})") from None
        return run_id

    def _rows(self, table: str, run_id: int, cols: list[str], rows: list[dict[str, Any]]) -> None:
        marks = ", ".join("?" * (len(cols) + 1))
        self.db.executemany(
            f"INSERT INTO {table} (run_id, {', '.join(cols)}) VALUES ({marks})",
            [(run_id, *(r.get(c) for c in cols)) for r in rows],
        )

    # -- reading ---------------------------------------------------------------------
    def runs(self, label: str | None = None, limit: int | None = None) -> list[Run]:
        """Runs, newest first; only those of ``label`` when given."""
        sql = "SELECT * FROM runs" + (" WHERE label = ?" if label is not None else "")
        sql += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        cur = self.db.execute(sql, (label,) if label is not None else ())
        return [_run(cur.description, row) for row in cur.fetchall()]

    def run(self, run_id: int) -> Run:
        """One run by id."""
        cur = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise DsauditError(f"{self.path}: no run {run_id}")
        return _run(cur.description, row)

    def previous(self, run: Run) -> Run | None:
        """The run of the same label just before ``run``."""
        cur = self.db.execute(
            "SELECT * FROM runs WHERE label = ? AND id < ? ORDER BY id DESC LIMIT 1",
            (run.label, run.id),
        )
        row = cur.fetchone()
        return _run(cur.description, row) if row is not None else None

    def table(self, name: str, run_id: int) -> pd.DataFrame:
        """The compliance, findings or heartbeats rows of one run."""
        cols = {"compliance": COMPLIANCE_COLS, "findings": FINDING_COLS}.get(name, HEARTBEAT_COLS)
        if name not in ("compliance", "findings", "heartbeats"):
            raise DsauditError(f"no history table {name!r}")
        cur = self.db.execute(
            f"SELECT {', '.join(cols)} FROM {name} WHERE run_id = ? ORDER BY rowid", (run_id,)
        )
        return pd.DataFrame(cur.fetchall(), columns=cols)

    def diff(self, a: Run, b: Run) -> HistoryDiff:
        """New and resolved findings, compliance changes and heartbeats between two runs."""
        fa, fb = self.table("findings", a.id), self.table("findings", b.id)
        new = fb[~fb["finding_key"].isin(set(fa["finding_key"]))].drop_duplicates("finding_key")
        resolved = fa[~fa["finding_key"].isin(set(fb["finding_key"]))].drop_duplicates(
            "finding_key"
        )
        keys = ["scope", "role", "host"]
        ca = self.table("compliance", a.id)[[*keys, "score"]]
        cb = self.table("compliance", b.id)[[*keys, "score"]]
        comp = ca.merge(cb, on=keys, how="outer", suffixes=("_a", "_b"))
        comp["change"] = comp["score_b"] - comp["score_a"]
        ha, hb = self.table("heartbeats", a.id), self.table("heartbeats", b.id)
        return HistoryDiff(
            a=a,
            b=b,
            new=new.reset_index(drop=True),
            resolved=resolved.reset_index(drop=True),
            compliance=comp.sort_values(keys, kind="stable").reset_index(drop=True),
            heartbeats_stopped=_beats_lost(ha, hb),
            heartbeats_resumed=_beats_lost(hb, ha),
        )


def _beats_lost(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Heartbeat channels that worked in ``before`` and have no working attempt in ``after``."""
    keys = ["agent", "direction", "port"]
    working = before[before["established"] > 0][[*keys, "last_seen"]]
    alive = after[after["established"] > 0]
    gone = working.merge(alive[keys], on=keys, how="left", indicator=True)
    gone = gone[gone["_merge"] == "left_only"].drop(columns="_merge")
    return gone.sort_values(keys, kind="stable").reset_index(drop=True)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict("records"):
        out.append({str(k): json_value(v) for k, v in row.items() if k not in ("flow_ids",)})
    return out


def _run(description: Any, row: tuple[Any, ...]) -> Run:
    values = dict(zip([d[0] for d in description], row, strict=True))
    return Run(
        id=int(values["id"]),
        started_at=values["started_at"],
        finished_at=values["finished_at"],
        period_start=values["period_start"],
        period_end=values["period_end"],
        label=values["label"],
        source=values["source"],
        captures=json.loads(values["captures"]),
        exit_code=int(values["exit_code"]),
        compliant=bool(values["compliant"]),
        summary=json.loads(values["summary"]),
    )


def build_trends(history: History, run: Run, limit: int = DEFAULT_RUNS) -> Trends:
    """Trends up to ``run`` among the runs of its label (its inventory)."""
    runs = [r for r in history.runs(label=run.label) if r.id <= run.id][:limit]
    runs.reverse()
    keys = ["scope", "role", "host"]
    wide: pd.DataFrame | None = None
    for r in runs:
        comp = history.table("compliance", r.id)[[*keys, "score"]].rename(columns={"score": r.id})
        wide = comp if wide is None else wide.merge(comp, on=keys, how="outer")
    if wide is None:
        wide = pd.DataFrame(columns=keys)
    scope_rank = wide["scope"].map({"role": 0, "host": 1}).fillna(2)
    wide = wide.assign(_s=scope_rank).sort_values(["_s", "role", "host"], kind="stable")
    trends = Trends(runs=runs, scores=wide.drop(columns="_s").reset_index(drop=True), previous=None)
    prev = history.previous(run)
    if prev is not None:
        diff = history.diff(prev, run)
        trends.previous = prev
        trends.new = diff.new
        trends.resolved = diff.resolved
        trends.heartbeats_stopped = diff.heartbeats_stopped
        trends.heartbeats_resumed = diff.heartbeats_resumed
    return trends
