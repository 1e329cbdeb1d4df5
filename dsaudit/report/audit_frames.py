"""Renderer-neutral views of an AuditResult: the verdict, sorted rows and value formatting."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.findings import FINDING_KINDS, SEVERITIES, SEVERITY_RANK, AuditResult
from dsaudit.flows.records import FLOW_COLUMNS

# Columns the audit adds to the flow table, in the order reports show them.
AUDIT_FLOW_COLUMNS = (
    "client_role",
    "server_role",
    "verdict",
    "rule",
    "reason",
    "reason_text",
    "match",
    "blocked",
)
ROLE_ORDER = ("manager", "relay", "agent")
# Most alarming first: when one host/rule cell of the matrix covers several peers, the cell
# shows the status that needs attention.
STATUS_PRIORITY = ("blocked", "missing", "inconclusive", "observed", "not-visible")


# ------------------------------------------------------------------ scalar formatting


def is_missing(value: object) -> bool:
    """True for None, pd.NA, NaT and NaN (never for lists, which pd.isna would map)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def text(value: object) -> str:
    """A cell as plain text: empty when missing, times in UTC, everything else str()."""
    if is_missing(value):
        return ""
    if isinstance(value, pd.Timestamp | np.datetime64):
        return fmt_time(value)
    return str(value)


def timestamp(value: object) -> pd.Timestamp | None:
    """A UTC Timestamp from a Timestamp or ISO string, None when missing or unparsable."""
    if is_missing(value) or value == "":
        return None
    try:
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if stamp is pd.NaT:
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def fmt_time(value: object) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC (headings say UTC once rather than every cell)."""
    stamp = timestamp(value)
    return "" if stamp is None else stamp.strftime("%Y-%m-%d %H:%M:%S")


def iso_utc(value: object) -> str | None:
    """ISO-8601 UTC with microseconds and ``Z``: the form `dsaudit flows` writes times in."""
    stamp = timestamp(value)
    return None if stamp is None else stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fmt_duration(seconds: object) -> str:
    """A span for people: ``45 s``, ``12 min 5 s``, ``3 h 20 min``, ``2 d 4 h``."""
    if is_missing(seconds):
        return ""
    total = float(seconds)  # type: ignore[arg-type]
    if total < 60:
        return f"{total:.0f} s" if total >= 10 or total == int(total) else f"{total:.1f} s"
    whole = int(round(total))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"


def fmt_bytes(count: object) -> str:
    """Decimal units, as network people and file managers count them."""
    if is_missing(count):
        return ""
    value = float(count)  # type: ignore[arg-type]
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns


def fmt_count(count: object) -> str:
    """An integer with thousands separators (empty when missing)."""
    return "" if is_missing(count) else f"{int(count):,}"  # type: ignore[call-overload]


def fmt_score(score: object) -> str:
    """A 0..1 compliance score as a whole percentage; a dash when there is none."""
    if is_missing(score):
        return "–"
    return f"{float(score) * 100:.0f}%"  # type: ignore[arg-type]


def fmt_share(share: object) -> str:
    """A 0..1 share as a percentage with one decimal."""
    return "" if is_missing(share) else f"{float(share) * 100:.1f}%"  # type: ignore[arg-type]


def endpoint(ip: object, port: object) -> str:
    """``ip:port``, with brackets around IPv6 addresses; just the address without a port."""
    addr = text(ip)
    if is_missing(port):
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def kind_title(kind: object) -> str:
    """``blocked_expected_flow`` -> ``Blocked expected flow``."""
    words = text(kind).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def kind_description(kind: object) -> str:
    """The catalogue description of a finding kind (empty for kinds this build lacks)."""
    found = FINDING_KINDS.get(text(kind))
    return found.description if found else ""


def role_key(role: object) -> tuple[int, str]:
    """Sort key putting managers, relays and agents first (a ``relay+agent`` is a relay)."""
    name = text(role)
    ranks = [ROLE_ORDER.index(p) for p in name.split("+") if p in ROLE_ORDER]
    return (min(ranks) if ranks else len(ROLE_ORDER), name)


# ------------------------------------------------------------------ verdict and summary


@dataclass(frozen=True)
class Verdict:
    """The headline every report opens with."""

    compliant: bool
    exit_code: int
    fail_on: str
    counts: dict[str, int]
    quality_notes: list[str]

    @property
    def label(self) -> str:
        return "COMPLIANT" if self.compliant else "NOT COMPLIANT"

    def reason(self) -> str:
        """One sentence on why the verdict is what it is."""
        due = [s for s in SEVERITIES if SEVERITY_RANK[s] <= SEVERITY_RANK[self.fail_on]]
        hits = [f"{self.counts[s]} {s}" for s in due if self.counts.get(s)]
        total = sum(self.counts.get(s, 0) for s in due)
        if hits:
            noun = "finding reaches" if total == 1 else "findings reach"
            return f"{total} {noun} the fail-on level ({self.fail_on}): {', '.join(hits)}."
        below = sum(self.counts.values())
        if below:
            noun = "finding" if below == 1 else "findings"
            return f"No finding reaches the fail-on level ({self.fail_on}); {below} lower {noun}."
        return f"No findings; nothing reaches the fail-on level ({self.fail_on})."


def verdict(result: AuditResult) -> Verdict:
    """The verdict from the summary, falling back to the findings for missing keys."""
    summary = result.summary
    fail_on = str(summary.get("fail_on") or "high")
    if fail_on not in SEVERITY_RANK:
        fail_on = "high"
    counts = {s: 0 for s in SEVERITIES}
    given = summary.get("finding_counts")
    if isinstance(given, dict):
        counts.update({s: int(given.get(s, 0)) for s in SEVERITIES})
    elif not result.findings.empty:
        tally = result.findings["severity"].astype(str).value_counts()
        counts.update({s: int(tally.get(s, 0)) for s in SEVERITIES})
    code = int(summary["exit_code"]) if "exit_code" in summary else result.exit_code(fail_on)
    compliant = bool(summary["compliant"]) if "compliant" in summary else code == 0
    return Verdict(compliant, code, fail_on, counts, quality_notes(summary))


def quality_notes(summary: dict[str, Any]) -> list[str]:
    """Everything that limits what the capture can prove: damage, reader warnings, notes."""
    notes: list[str] = []
    for cap in summary.get("captures") or []:
        path = text(cap.get("path"))
        if cap.get("damaged"):
            notes.append(f"{path} is damaged: {text(cap['damaged'])}")
        notes.extend(f"{path}: {text(w)}" for w in cap.get("warnings") or [])
    notes.extend(text(n) for n in (summary.get("quality") or {}).get("notes") or [])
    return notes


def quality_metrics(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Labelled capture-quality numbers, in reading order."""
    q = summary.get("quality") or {}
    rows = [
        ("TCP flows", fmt_count(q.get("tcp_flows"))),
        (
            "TCP flows without a SYN (began before the capture)",
            _with_share(q.get("tcp_without_syn"), q.get("tcp_without_syn_share")),
        ),
        (
            "One-sided flows (only one direction seen)",
            _with_share(q.get("one_sided_flows"), q.get("one_sided_share")),
        ),
        ("Frames cut short by the snap length", fmt_count(q.get("snaplen_cut_frames"))),
        ("Frames that could not be decoded", fmt_count(q.get("undecodable_frames"))),
        ("Capture length", fmt_duration(q.get("span_seconds"))),
    ]
    return [(label, value) for label, value in rows if value]


def _with_share(count: object, share: object) -> str:
    if is_missing(count):
        return ""
    return f"{fmt_count(count)} ({fmt_share(share)})" if not is_missing(share) else fmt_count(count)


def describe_captures(summary: dict[str, Any]) -> list[str]:
    """One line per capture file: path, format and packets."""
    lines = []
    for cap in summary.get("captures") or []:
        extra = [text(cap.get("format")), f"{fmt_count(cap.get('packets'))} packets"]
        if cap.get("damaged"):
            extra.append("damaged")
        lines.append(f"{text(cap.get('path'))} ({', '.join(e for e in extra if e)})")
    return lines


def describe_span(summary: dict[str, Any]) -> str:
    """``start – end UTC (duration)`` of the capture."""
    span = summary.get("time_span") or {}
    start, end = fmt_time(span.get("start")), fmt_time(span.get("end"))
    if not start:
        return "no packets"
    length = fmt_duration(span.get("seconds"))
    return f"{start} – {end} UTC" + (f" ({length})" if length else "")


def describe_vantage(summary: dict[str, Any]) -> str:
    """Where the capture was taken, and how dsaudit knows."""
    v = summary.get("vantage") or {}
    if v.get("kind") == "host":
        where = f"on host {text(v.get('host'))}" if v.get("host") else "on a host"
    elif v.get("kind") == "span":
        where = "SPAN / mirror port"
    else:
        where = "unknown"
    how = {"detected": "detected", "option": "given on the command line"}.get(
        text(v.get("source")), text(v.get("source"))
    )
    evidence = text(v.get("evidence"))
    detail = "; ".join(x for x in (how, evidence) if x)
    return f"{where} ({detail})" if detail else where


def describe_deployment(summary: dict[str, Any]) -> str:
    """The deployment the capture was judged against, as one line."""
    d = summary.get("deployment") or {}
    parts = []
    if d.get("version"):
        parts.append(f"Deep Security {text(d['version'])}")
    for key, fmt in (
        ("mode", "{}"),
        ("communication", "{} communication"),
        ("database", "{} database"),
        ("updates", "updates via {}"),
    ):
        if d.get(key):
            parts.append(fmt.format(text(d[key])))
    if not is_missing(d.get("heartbeat_interval_s")) and d.get("heartbeat_interval_s"):
        parts.append(f"heartbeat every {fmt_duration(d['heartbeat_interval_s'])}")
    return ", ".join(parts) or "not stated"


def describe_flow_counts(result: AuditResult) -> str:
    """``14 flows: 7 explained, 6 unexplained, ...`` from the summary (or the flows)."""
    counts = result.summary.get("flow_counts")
    if not isinstance(counts, dict):
        verdicts = result.flows["verdict"].astype(str).value_counts() if len(result.flows) else {}
        counts = {
            k: int(verdicts.get(k, 0)) for k in ("explained", "unexplained", "infrastructure")
        }
        counts["total"] = len(result.flows)
        counts["blocked_expected"] = int(result.flows["blocked"].sum()) if len(result.flows) else 0
    parts = [
        f"{fmt_count(counts.get(k, 0))} {k}" for k in ("explained", "unexplained", "infrastructure")
    ]
    text_ = f"{fmt_count(counts.get('total', 0))} flows: " + ", ".join(parts)
    blocked = int(counts.get("blocked_expected", 0))
    if blocked:
        text_ += f"; {fmt_count(blocked)} expected {'flow' if blocked == 1 else 'flows'} blocked"
    return text_


def generated_by(summary: dict[str, Any]) -> str:
    """``dsaudit 0.1.0, 2024-05-06T10:15:00Z``: which build wrote the report, and when."""
    tool = f"{text(summary.get('tool')) or 'dsaudit'} {text(summary.get('version'))}".strip()
    when = text(summary.get("generated_at"))
    return f"{tool}, {when}" if when else tool


def describe_inventory(summary: dict[str, Any]) -> str:
    """The inventory file the roles came from, or that they were inferred."""
    inv = text(summary.get("inventory"))
    return "inferred from the traffic (no inventory file)" if inv in ("", "inferred") else inv


# ------------------------------------------------------------------ row views


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of Python/pandas scalars, in frame order."""
    cols = list(df.columns)
    return [dict(zip(cols, row, strict=True)) for row in df.itertuples(index=False, name=None)]


def finding_rows(result: AuditResult) -> list[dict[str, Any]]:
    """Findings, most severe first, then by kind, host, rule and id."""
    df = result.findings
    if df.empty:
        return []
    ordered = df.assign(_rank=df["severity"].astype(str).map(SEVERITY_RANK).fillna(99))
    ordered = ordered.sort_values(
        ["_rank", "kind", "host", "rule", "finding_id"], kind="stable", na_position="last"
    )
    return records(ordered.drop(columns="_rank"))


def compliance_rows(result: AuditResult, scope: str) -> list[dict[str, Any]]:
    """Compliance rows of one scope ("role" or "host"), managers first."""
    df = result.compliance
    rows = records(df[df["scope"].astype(str) == scope]) if not df.empty else []
    return sorted(rows, key=lambda r: (role_key(r["role"]), text(r["host"])))


def heartbeat_rows(result: AuditResult) -> list[dict[str, Any]]:
    """Heartbeats per agent and direction, each with a plain-words ``status``."""
    rows = sorted(
        records(result.heartbeats),
        key=lambda r: (text(r["agent"]), text(r["direction"]), int(r["port"])),
    )
    for row in rows:
        attempts, failed = int(row["attempts"]), int(row["failed"])
        if attempts == 0:
            row["status"] = "none seen"
        elif failed == 0:
            row["status"] = "ok"
        elif int(row["established"]) == 0:
            row["status"] = "failing"
        else:
            row["status"] = "some failed"
    return rows


def unexplained_destinations(flows: pd.DataFrame) -> list[dict[str, Any]]:
    """Unexplained flows grouped by server address, port and protocol, busiest first."""
    if flows.empty:
        return []
    un = flows[flows["verdict"].astype(str) == "unexplained"]
    out: list[dict[str, Any]] = []
    keys = ["server_ip", "server_port", "proto"]
    for (ip, port, proto), grp in un.groupby(keys, sort=True, dropna=False):
        names = grp["server_name"].dropna().astype(str)
        # The most frequent name, ties broken alphabetically, so the label is stable.
        tally = names.value_counts()
        best = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append(
            {
                "server_ip": text(ip),
                "server_port": int(port),
                "proto": text(proto),
                "destination": endpoint(ip, port),
                "name": best[0][0] if best else "",
                "flows": len(grp),
                "clients": int(grp["client_ip"].nunique()),
                "bytes": int(grp["bytes_c2s"].sum() + grp["bytes_s2c"].sum()),
                "role": text(grp["server_role"].iloc[0]),
            }
        )
    out.sort(key=lambda d: (-d["flows"], -d["bytes"], d["server_ip"], d["server_port"]))
    return out


def expectation_matrix(
    result: AuditResult,
) -> tuple[list[tuple[str, str]], list[str], dict[tuple[str, str], list[dict[str, Any]]]]:
    """Hosts (host, role), rule ids and the expectation rows of each (host, rule) cell."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    roles: dict[str, str] = {}
    for row in records(result.expectations):
        host, rule = text(row["host"]), text(row["rule"])
        roles.setdefault(host, text(row["role"]))
        cells.setdefault((host, rule), []).append(row)
    hosts = sorted(roles.items(), key=lambda hr: (role_key(hr[1]), hr[0]))
    rules = sorted({rule for _, rule in cells}, key=lambda r: (role_key(r.split(".")[0]), r))
    return hosts, rules, cells


def cell_status(rows: Sequence[dict[str, Any]]) -> str:
    """The status a matrix cell shows: the most alarming of its rows."""
    found = {text(r["status"]) for r in rows}
    return next((s for s in STATUS_PRIORITY if s in found), "not-visible")


class FlowIndex:
    """Look flows up by id, for the evidence behind findings."""

    def __init__(self, flows: pd.DataFrame) -> None:
        self._flows = flows
        self._index = pd.Index(flows["flow_id"]) if not flows.empty else pd.Index([])

    def evidence(self, flow_ids: object, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Up to ``limit`` evidence rows (oldest first) and how many more there were."""
        ids = [int(i) for i in as_list(flow_ids)]
        if not ids or self._flows.empty:
            return [], 0
        pos = self._index.get_indexer(ids)
        found = self._flows.iloc[[int(p) for p in pos if p >= 0]]
        found = found.sort_values(["start", "flow_id"], kind="stable")
        rows = []
        for row in records(found.iloc[:limit]):
            rows.append(
                {
                    "flow_id": int(row["flow_id"]),
                    "time": fmt_time(row["start"]),
                    "client": endpoint(row["client_ip"], row["client_port"]),
                    "server": endpoint(row["server_ip"], row["server_port"]),
                    "proto": text(row["proto"]),
                    "name": text(row["server_name"]),
                    "outcome": text(row["outcome"]),
                    "verdict": text(row.get("verdict")),
                    "blocked": not is_missing(row.get("blocked")) and bool(row.get("blocked")),
                }
            )
        return rows, max(0, len(found) - limit)


def as_list(value: object) -> list[Any]:
    """A list cell (list, tuple or the numpy array Parquet gives back) as a list."""
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    return []


def ordered_flow_columns(df: pd.DataFrame) -> list[str]:
    """Flow contract columns, then the audit's, then anything else alphabetically."""
    known = [c for c in FLOW_COLUMNS if c in df.columns]
    known += [c for c in AUDIT_FLOW_COLUMNS if c in df.columns]
    return known + sorted(c for c in df.columns if c not in known)
