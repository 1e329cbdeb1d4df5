"""Renderer-neutral views of an AuditResult: the verdict, summary lines and sorted rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dsaudit.flow_records.frame import FLOW_COLUMNS
from dsaudit.judge.findings import INCONCLUSIVE_EXIT, SEVERITIES, SEVERITY_RANK, AuditResult
from dsaudit.reports import audit_format as fm

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
    "cause",
    "cause_evidence",
)
# Most alarming first: when one host/rule cell of the matrix covers several peers, the cell
# shows the status that needs attention.
STATUS_PRIORITY = ("blocked", "missing", "inconclusive", "observed", "not-visible")


# ------------------------------------------------------------------ verdict and summary


@dataclass(frozen=True)
class Verdict:
    """The headline every report opens with."""

    compliant: bool
    exit_code: int
    fail_on: str
    counts: dict[str, int]
    quality_notes: list[str]
    missing: list[str] = field(default_factory=list)  # what an inconclusive capture lacked

    @property
    def inconclusive(self) -> bool:
        return self.exit_code == INCONCLUSIVE_EXIT

    @property
    def label(self) -> str:
        if self.compliant:
            return "COMPLIANT"
        return "INCONCLUSIVE" if self.inconclusive else "NOT COMPLIANT"

    @property
    def tone(self) -> str:
        """pass, warn or fail: how a renderer colours the headline."""
        return "pass" if self.compliant else "warn" if self.inconclusive else "fail"

    def reason(self) -> str:
        """One sentence on why the verdict is what it is."""
        if self.inconclusive:
            lacked = "; ".join(self.missing) or "the capture could not show compliance"
            return f"No verdict: {lacked}."
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
    given_missing = summary.get("inconclusive")
    missing = (
        [fm.text(m) for m in given_missing]
        if isinstance(given_missing, list)
        else list(result.inconclusive)
    )
    return Verdict(compliant, code, fail_on, counts, quality_notes(summary), missing)


def quality_notes(summary: dict[str, Any]) -> list[str]:
    """Everything that limits what the capture can prove: damage, reader warnings, notes.

    A reader's warning about damage says where it is and what was kept, so the bare
    "is damaged" note of the same damage is not said again.
    """
    notes: list[str] = []
    told: set[str] = set()
    for cap in summary.get("captures") or []:
        path = fm.text(cap.get("path"))
        warnings = [fm.text(w) for w in cap.get("warnings") or []]
        damaged = fm.text(cap.get("damaged"))
        if damaged and any(damaged in w for w in warnings):
            told.add(f"{path} is damaged: {damaged}")
        elif damaged:
            notes.append(f"{path} is damaged: {damaged}")
            told.add(notes[-1])
        notes.extend(w if w.startswith(f"{path}: ") else f"{path}: {w}" for w in warnings)
    quality = (summary.get("quality") or {}).get("notes") or []
    notes.extend(fm.text(n) for n in quality if fm.text(n) not in told)
    return notes


def quality_metrics(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Labelled capture-quality numbers, in reading order."""
    q = summary.get("quality") or {}
    rows = [
        ("TCP flows", fm.fmt_count(q.get("tcp_flows"))),
        (
            "TCP flows without a SYN (began before the capture)",
            _with_share(q.get("tcp_without_syn"), q.get("tcp_without_syn_share")),
        ),
        (
            "One-sided flows (only one direction seen)",
            _with_share(q.get("one_sided_flows"), q.get("one_sided_share")),
        ),
        ("Frames cut short by the snap length", fm.fmt_count(q.get("snaplen_cut_frames"))),
        ("Frames that could not be decoded", fm.fmt_count(q.get("undecodable_frames"))),
        (
            "Connections joined across VLANs (request and answer on different VLANs)",
            fm.fmt_count(q["vlan_joined_flows"]) if q.get("vlan_joined_flows") else "",
        ),
        ("Frames not decoded into flows", _not_decoded(q)),
        (
            "Timestamps that cannot be represented (took the time before)",
            _if_any(q.get("timestamps_unrepresentable")),
        ),
        (
            "Packets without a timestamp (took the time before)",
            _if_any(q.get("timestamps_missing")),
        ),
        ("Capture length", fm.fmt_duration(q.get("span_seconds"))),
    ]
    return [(label, value) for label, value in rows if value]


def _if_any(count: object) -> str:
    return fm.fmt_count(count) if not fm.is_missing(count) and count else ""


def _not_decoded(q: dict[str, Any]) -> str:
    """``12: 8 not IP, 3 unsupported encapsulation, 1 malformed`` (empty when none)."""
    total = q.get("not_decoded_frames")
    reasons = q.get("not_decoded") or {}
    if fm.is_missing(total) or not total or not isinstance(reasons, dict):
        return ""
    parts = [
        f"{fm.fmt_count(sum(d.values()))} {fm.text(r)}"
        for r, d in reasons.items()
        if isinstance(d, dict)
    ]
    return f"{fm.fmt_count(total)}: " + ", ".join(parts) if parts else fm.fmt_count(total)


def _with_share(count: object, share: object) -> str:
    if fm.is_missing(count):
        return ""
    return (
        f"{fm.fmt_count(count)} ({fm.fmt_share(share)})"
        if not fm.is_missing(share)
        else fm.fmt_count(count)
    )


def describe_captures(summary: dict[str, Any]) -> list[str]:
    """One line per capture file: path, format and packets."""
    lines = []
    for cap in summary.get("captures") or []:
        extra = [fm.text(cap.get("format")), f"{fm.fmt_count(cap.get('packets'))} packets"]
        if cap.get("damaged"):
            extra.append("damaged")
        lines.append(f"{fm.text(cap.get('path'))} ({', '.join(e for e in extra if e)})")
    return lines


def describe_span(summary: dict[str, Any]) -> str:
    """``start – end UTC (duration)`` of the capture."""
    span = summary.get("time_span") or {}
    start, end = fm.fmt_time(span.get("start")), fm.fmt_time(span.get("end"))
    if not start:
        return "no packets"
    length = fm.fmt_duration(span.get("seconds"))
    return f"{start} – {end} UTC" + (f" ({length})" if length else "")


def describe_vantage(summary: dict[str, Any]) -> str:
    """Where the capture was taken, and how dsaudit knows."""
    v = summary.get("vantage") or {}
    if v.get("kind") == "host":
        where = f"on host {fm.text(v.get('host'))}" if v.get("host") else "on a host"
    elif v.get("kind") == "span":
        where = "SPAN / mirror port"
    else:
        where = "unknown"
    how = {"detected": "detected", "option": "given on the command line"}.get(
        fm.text(v.get("source")), fm.text(v.get("source"))
    )
    evidence = fm.text(v.get("evidence"))
    detail = "; ".join(x for x in (how, evidence) if x)
    return f"{where} ({detail})" if detail else where


# The inventory's `updates` setting in words ("updates via direct" read as a typo).
_UPDATES = {"direct": "direct updates from Trend Micro", "relay": "updates from relays"}


def describe_deployment(summary: dict[str, Any]) -> str:
    """The deployment the capture was judged against, as one line."""
    d = summary.get("deployment") or {}
    parts = []
    if d.get("version"):
        parts.append(f"Deep Security {fm.text(d['version'])}")
    for key, fmt in (
        ("mode", "{}"),
        ("communication", "{} communication"),
        ("database", "{} database"),
    ):
        if d.get(key):
            parts.append(fmt.format(fm.text(d[key])))
    if d.get("updates"):
        parts.append(_UPDATES.get(fm.text(d["updates"]), f"updates: {fm.text(d['updates'])}"))
    if not fm.is_missing(d.get("heartbeat_interval_s")) and d.get("heartbeat_interval_s"):
        parts.append(f"heartbeat every {fm.fmt_duration(d['heartbeat_interval_s'])}")
    return ", ".join(parts) or "not stated"


def describe_flow_counts(result: AuditResult) -> str:
    """``14 flows: 7 explained, 6 unexplained, ...`` from the summary (or the flows)."""
    counts = result.summary.get("flow_counts")
    if not isinstance(counts, dict):
        tally = result.flows["verdict"].astype(str).value_counts()
        verdicts = {str(k): int(v) for k, v in tally.items()}
        counts = {
            k: int(verdicts.get(k, 0)) for k in ("explained", "unexplained", "infrastructure")
        }
        counts["total"] = len(result.flows)
        counts["blocked_expected"] = int(result.flows["blocked"].sum()) if len(result.flows) else 0
    parts = [
        f"{fm.fmt_count(counts.get(k, 0))} {k}"
        for k in ("explained", "unexplained", "infrastructure")
    ]
    text_ = f"{fm.fmt_count(counts.get('total', 0))} flows: " + ", ".join(parts)
    blocked = int(counts.get("blocked_expected", 0))
    if blocked:
        text_ += f"; {fm.fmt_count(blocked)} expected {'flow' if blocked == 1 else 'flows'} blocked"
    return text_


def generated_by(summary: dict[str, Any]) -> str:
    """``dsaudit 0.1.0, 2024-05-06T10:15:00Z``: which build wrote the report, and when."""
    tool = f"{fm.text(summary.get('tool')) or 'dsaudit'} {fm.text(summary.get('version'))}".strip()
    when = fm.text(summary.get("generated_at"))
    return f"{tool}, {when}" if when else tool


def describe_networks(summary: dict[str, Any], limit: int | None = None) -> list[str]:
    """Per network entry: which of its addresses were taken as hosts and which were left
    out, each with why; ``limit`` caps the addresses listed per network."""
    networks = summary.get("networks") or []
    if not networks:
        return []
    lines = [f"Rule: {fm.text(summary.get('host_criterion'))}."]
    for net in networks:
        hosts, left = net.get("hosts") or [], net.get("left_out") or []
        lines.append(
            f"{fm.text(net.get('role'))} {fm.text(net.get('network'))}: "
            f"{len(hosts)} taken as hosts, {len(left)} left out"
        )
        for word, members in (("host", hosts), ("left out", left)):
            shown = members if limit is None else members[:limit]
            lines.extend(
                f"  {word} {fm.text(m.get('address'))}: {fm.text(m.get('reason'))}" for m in shown
            )
            if len(shown) < len(members):
                lines.append(f"  … and {len(members) - len(shown)} more ({word})")
    return lines


def describe_inventory(summary: dict[str, Any]) -> str:
    """The inventory file the roles came from, or that they were inferred."""
    inv = fm.text(summary.get("inventory"))
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
    return sorted(rows, key=lambda r: (fm.role_key(r["role"]), fm.text(r["host"])))


def heartbeat_rows(result: AuditResult) -> list[dict[str, Any]]:
    """Heartbeats per agent and direction, each with a plain-words ``status``.

    An agent whose heartbeat never appeared may have no row in ``heartbeats`` at all; its
    heartbeat expectation then adds a row with no attempts, so the reports show the agent
    that is silent instead of leaving it out.
    """
    rows = records(result.heartbeats)
    have = {(fm.text(r["agent"]), fm.text(r["direction"]), int(r["port"])) for r in rows}
    for key in _expected_heartbeats(result) - have:
        rows.append(_no_heartbeat(*key))
    rows.sort(key=lambda r: (fm.text(r["agent"]), fm.text(r["direction"]), int(r["port"])))
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


def _expected_heartbeats(result: AuditResult) -> set[tuple[str, str, int]]:
    """(agent, direction, port) of every heartbeat the expectations hold an agent to."""
    out = set()
    for row in records(result.expectations):
        rule, port = fm.text(row["rule"]), fm.text(row["port"])
        side, _, service = rule.partition(".")[2].partition(".")
        if "agent" not in fm.text(row["role"]).split("+") or not service.startswith("heartbeat"):
            continue
        if not port.isdigit():
            continue
        # The rule's owner and direction say who opens the connection.
        towards_agent = (rule.startswith("agent.") and side == "in") or (
            rule.startswith("manager.") and side == "out"
        )
        direction = "manager->agent" if towards_agent else "agent->manager"
        out.add((fm.text(row["host"]), direction, int(port)))
    return out


def _no_heartbeat(agent: str, direction: str, port: int) -> dict[str, Any]:
    return {
        "agent": agent,
        "direction": direction,
        "port": port,
        "attempts": 0,
        "established": 0,
        "failed": 0,
        "first_seen": None,
        "last_seen": None,
        "median_interval_s": None,
        "max_interval_s": None,
        "times": [],
        "outcomes": [],
    }


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
                "server_ip": fm.text(ip),
                "server_port": int(grp["server_port"].iloc[0]),
                "proto": fm.text(proto),
                "destination": fm.endpoint(ip, port),
                "name": best[0][0] if best else "",
                "flows": len(grp),
                "clients": int(grp["client_ip"].nunique()),
                "bytes": int(grp["bytes_c2s"].sum() + grp["bytes_s2c"].sum()),
                "role": fm.text(grp["server_role"].iloc[0]),
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
        host, rule = fm.text(row["host"]), fm.text(row["rule"])
        roles.setdefault(host, fm.text(row["role"]))
        cells.setdefault((host, rule), []).append(row)
    hosts = sorted(roles.items(), key=lambda hr: (fm.role_key(hr[1]), hr[0]))
    rules = sorted({rule for _, rule in cells}, key=lambda r: (fm.role_key(r.split(".")[0]), r))
    return hosts, rules, cells


def cell_status(rows: Sequence[dict[str, Any]]) -> str:
    """The status a matrix cell shows: the most alarming of its rows."""
    found = {fm.text(r["status"]) for r in rows}
    return next((s for s in STATUS_PRIORITY if s in found), "not-visible")


class FlowIndex:
    """Look flows up by id, for the evidence behind findings.

    Built once from plain column lists: a report may need the evidence of thousands of
    findings, and a pandas look-up per flow costs more than the whole rest of the report.
    """

    COLUMNS = (
        "flow_id",
        "start",
        "client_ip",
        "client_port",
        "server_ip",
        "server_port",
        "proto",
        "server_name",
        "outcome",
        "verdict",
        "blocked",
    )

    def __init__(self, flows: pd.DataFrame) -> None:
        cols = [c for c in self.COLUMNS if c in flows.columns]
        self._rows: dict[int, dict[str, Any]] = {}
        if flows.empty:
            return
        values = {c: flows[c].tolist() for c in cols}
        for i, fid in enumerate(values["flow_id"]):
            self._rows[int(fid)] = {c: values[c][i] for c in cols}

    def evidence(self, flow_ids: object, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Up to ``limit`` evidence rows (oldest first) and how many more there were."""
        found = [self._rows[i] for i in (int(x) for x in fm.as_list(flow_ids)) if i in self._rows]
        if not found:
            return [], 0
        found.sort(key=lambda r: (r["start"], r["flow_id"]))
        rows = []
        for row in found[:limit]:
            rows.append(
                {
                    "flow_id": int(row["flow_id"]),
                    "time": fm.fmt_time(row["start"]),
                    "client": fm.endpoint(row["client_ip"], row["client_port"]),
                    "server": fm.endpoint(row["server_ip"], row["server_port"]),
                    "proto": fm.text(row["proto"]),
                    "name": fm.text(row["server_name"]),
                    "outcome": fm.text(row["outcome"]),
                    "verdict": fm.text(row.get("verdict")),
                    "blocked": not fm.is_missing(row.get("blocked")) and bool(row.get("blocked")),
                }
            )
        return rows, max(0, len(found) - limit)


def ordered_flow_columns(df: pd.DataFrame) -> list[str]:
    """Flow contract columns, then the audit's, then anything else alphabetically."""
    known = [c for c in FLOW_COLUMNS if c in df.columns]
    known += [c for c in AUDIT_FLOW_COLUMNS if c in df.columns]
    return known + sorted(c for c in df.columns if c not in known)
