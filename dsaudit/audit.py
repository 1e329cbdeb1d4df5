"""The audit: flows, then verdicts, expectations, findings and compliance, in that order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dsaudit import __version__
from dsaudit.catalog import Catalog
from dsaudit.classify import classify_flows
from dsaudit.decode.packet_kernel import WHY_NAMES, WHY_NOT_IP
from dsaudit.decode.undecoded import summary
from dsaudit.expectations import Vantage, build_expectations, detect_vantage, heartbeats
from dsaudit.findings import (
    COMPLIANCE_DTYPES,
    FINDING_DTYPES,
    FINDING_KINDS,
    SEVERITIES,
    AuditResult,
    typed_frame,
)
from dsaudit.frames import row_dicts
from dsaudit.inventory import Inventory
from dsaudit.pipeline import FlowResult

POOR_NO_SYN_SHARE = 0.5
POOR_ONE_SIDED_SHARE = 0.3


@dataclass(frozen=True)
class AuditOptions:
    """How strict the audit is and what it may assume."""

    strict: bool = False
    vantage: str | None = None  # an address, "span", or None to detect
    fail_on: str = "high"
    inventory_label: str | None = None
    jobs: int = 1  # processes that may judge flows side by side


def _quality(flows: pd.DataFrame, read: FlowResult) -> dict[str, Any]:
    tcp = flows[flows["proto"] == "tcp"]
    no_syn = int((~tcp["history"].str.contains("S", regex=False).fillna(False)).sum())
    attempt = tcp["state"].isin(["S0", "REJ", "RSTOS0", "SH"])
    one_sided = int((((tcp["packets_c2s"] == 0) | (tcp["packets_s2c"] == 0)) & ~attempt).sum())
    stats = read.stats.as_dict()
    notes: list[str] = []
    n = max(len(tcp), 1)
    if len(tcp) and no_syn / n >= POOR_NO_SYN_SHARE:
        notes.append(
            f"{no_syn} of {len(tcp)} TCP flows started before the capture (no SYN seen): "
            "who initiated them is inferred from ports, not observed"
        )
    if len(tcp) and one_sided / n >= POOR_ONE_SIDED_SHARE:
        notes.append(
            f"{one_sided} of {len(tcp)} TCP flows show only one direction: the capture point "
            "may see one side of the traffic (asymmetric SPAN), so 'unanswered' may be wrong"
        )
    if stats["snaplen_cut_frames"]:
        notes.append(
            f"{stats['snaplen_cut_frames']} frames were cut by the snap length: names in "
            "their payload may be missing"
        )
    if stats["flows_evicted"]:
        top = stats["evicted_top"][0] if stats["evicted_top"] else None  # type: ignore[index]
        where = f"; most to {top['proto']} {top['server']}:{top['port']}" if top else ""
        notes.append(
            f"{stats['flows_evicted']} flows were evicted to stay within the flow limit "
            f"(--max-flows){where}: they are counted here but not judged one by one"
        )
    if stats.get("reassembly_buffers_dropped"):
        notes.append(
            f"{stats['reassembly_buffers_dropped']} flows lost their TCP reassembly buffers "
            "at the memory limit: their names may be missing"
        )
    if stats["dns_entries_evicted"]:
        notes.append(
            f"{stats['dns_entries_evicted']} DNS answers were forgotten to stay within the "
            "DNS map limit: some later flows may be unnamed"
        )
    if stats["undecodable_total"]:
        notes.append(f"{stats['undecodable_total']} frames could not be decoded")
    not_decoded: dict[str, dict[str, int]] = stats["not_decoded"]  # type: ignore[assignment]
    # ARP, STP and such are in every capture and hide no flow: counted, not a limit.
    hiding = {r: d for r, d in not_decoded.items() if r != WHY_NAMES[WHY_NOT_IP]}
    if hiding:
        line = summary(hiding, int(stats["frames"]))  # type: ignore[call-overload]
        notes.append(f"{line}: traffic inside them is not judged")
    overflow = sum(c.ts_overflow for c in read.captures)
    missing = sum(c.ts_missing for c in read.captures)
    for capture in read.captures:
        if capture.damaged:
            notes.append(f"{capture.path} is damaged: {capture.damaged}")
    return {
        "tcp_flows": int(len(tcp)),
        "tcp_without_syn": no_syn,
        "tcp_without_syn_share": round(no_syn / n, 4) if len(tcp) else 0.0,
        "one_sided_flows": one_sided,
        "one_sided_share": round(one_sided / n, 4) if len(tcp) else 0.0,
        "snaplen_cut_frames": int(stats["snaplen_cut_frames"]),  # type: ignore[call-overload]
        "undecodable_frames": int(stats["undecodable_total"]),  # type: ignore[call-overload]
        "not_decoded_frames": int(stats["not_decoded_total"]),  # type: ignore[call-overload]
        "not_decoded": not_decoded,
        "timestamps_unrepresentable": overflow,
        "timestamps_missing": missing,
        "span_seconds": stats["span_seconds"] or 0.0,
        "frames": stats["frames"],
        "notes": notes,
    }


def _group_findings(
    flows: pd.DataFrame, mask: np.ndarray, kind: str, keys: list[str], message: Any
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sub = flows[mask]
    if sub.empty:
        return rows
    # Positions per group, then plain Python rows: building a DataFrame per group costs
    # milliseconds each, and a large capture has thousands of groups.
    groups = sub.groupby(keys, sort=True, dropna=False).indices
    records = row_dicts(sub)
    for positions in groups.values():
        members = [records[i] for i in positions]
        first = members[0]
        rule = first["rule"]
        rows.append(
            {
                "kind": kind,
                "severity": FINDING_KINDS[kind].severity,
                "host": str(first["client_ip"]),
                "role": str(first["client_role"]),
                "rule": None if rule is None or pd.isna(rule) else str(rule),
                "peer": f"{first['server_ip']}",
                "port": int(first["server_port"]),
                "message": message(first, members),
                "flow_ids": [int(m["flow_id"]) for m in members],
                "count": _weight(members),
                "first_seen": min(m["start"] for m in members),
                "last_seen": max(m["end"] for m in members),
            }
        )
    return rows


def _weight(members: list[dict[Any, Any]]) -> int:
    """Flows a group of rows stands for: a live session folds expired flows into one row per
    conversation and says in ``merged_flows`` how many it stands for."""
    return sum(int(m.get("merged_flows", 1) or 1) for m in members)


def _why(row: Any, group: Any) -> str:
    """client -> server:port: the reason the flow is unexplained."""
    return f"{row['client_ip']} -> {row['server_ip']}:{row['server_port']}: {row['reason_text']}"


def _name(row: Any) -> str:
    name = row["server_name"]
    return f" ({name})" if isinstance(name, str) else ""


def _findings(
    flows: pd.DataFrame, expectations: pd.DataFrame, quality: dict[str, Any]
) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    verdict = flows["verdict"].astype(str).to_numpy()
    reason = flows["reason"].fillna("").to_numpy()
    unexpl = verdict == "unexplained"
    endpoint = ["client_ip", "server_ip", "server_port", "proto"]
    rows += _group_findings(
        flows,
        flows["blocked"].to_numpy(),
        "blocked_expected_flow",
        endpoint + ["rule"],
        lambda r, g: (
            f"{r['client_role']} {r['client_ip']} -> {r['server_role']} {r['server_ip']}:"
            f"{r['server_port']}{_name(r)} ({r['rule']}): {_weight(g)} attempt(s) "
            f"{'rejected' if any(m['outcome'] == 'rejected' for m in g) else 'never answered'}"
        ),
    )
    rows += _group_findings(
        flows,
        unexpl & (reason == "localhost_only"),
        "localhost_only_port_on_wire",
        endpoint,
        _why,
    )
    rows += _group_findings(
        flows,
        unexpl & (reason == "wrong_direction"),
        "unexpected_direction",
        endpoint,
        _why,
    )
    rows += _group_findings(
        flows,
        unexpl & (reason == "unlisted_hostname"),
        "unlisted_hostname",
        endpoint + ["server_name"],
        lambda r, g: (
            f"{r['client_role']} {r['client_ip']} -> {r['server_ip']}:{r['server_port']}"
            f"{_name(r)}: {r['reason_text']}"
        ),
    )
    rows += _group_findings(
        flows,
        unexpl & (reason == "unknown_endpoint"),
        "unknown_endpoint",
        endpoint,
        _why,
    )
    rows += _group_findings(
        flows,
        unexpl & np.isin(reason, ["no_rule", "not_applicable", ""]),
        "unexplained_flow",
        endpoint,
        lambda r, g: (
            f"{r['client_role']} {r['client_ip']} -> {r['server_role']} {r['server_ip']}:"
            f"{r['proto']}/{r['server_port']}{_name(r)}: {r['reason_text']} "
            f"({_weight(g)} flow(s))"
        ),
    )
    mtu = flows["icmp_errors"].map(lambda es: any("mtu" in e for e in es)).to_numpy(dtype=bool)
    rows += _group_findings(
        flows,
        mtu & (verdict == "explained"),
        "path_mtu_problem",
        endpoint,
        lambda r, g: (
            f"{r['client_ip']} -> {r['server_ip']}:{r['server_port']} ({r['rule']}): "
            + "; ".join(
                f"{e['from']} reports next-hop MTU {e['mtu']}"
                for m in g
                for e in m["icmp_errors"]
                if "mtu" in e
            )
        ),
    )
    for status, kind in (
        ("missing", "missing_expected_flow"),
        ("inconclusive", "inconclusive_expected_flow"),
    ):
        sub = expectations[expectations["status"].astype(str) == status]
        for r in sub.to_dict("records"):
            ports = str(r["port"])
            rows.append(
                {
                    "kind": kind,
                    "severity": FINDING_KINDS[kind].severity,
                    "host": r["host"],
                    "role": r["role"],
                    "rule": r["rule"],
                    "peer": r["peer_role"],
                    # The first port the rule lists ("80, 443" -> 80; "any" -> none).
                    "port": int(ports.split(",")[0].split("-")[0]) if ports[:1].isdigit() else None,
                    "message": f"{r['role']} {r['host']}: no {r['rule']} flow: {r['detail']}",
                    "flow_ids": [],
                    "count": 0,
                    "first_seen": pd.NaT,
                    "last_seen": pd.NaT,
                }
            )
    for note in quality["notes"]:
        rows.append(
            {
                "kind": "capture_quality",
                "severity": "info",
                "host": None,
                "role": None,
                "rule": None,
                "peer": None,
                "port": None,
                "message": note,
                "flow_ids": [],
                "count": 0,
                "first_seen": pd.NaT,
                "last_seen": pd.NaT,
            }
        )
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    rows.sort(
        key=lambda r: (
            rank[r["severity"]],
            r["kind"],
            str(r["host"]),
            str(r["rule"]),
            str(r["peer"]),
            r["port"] or 0,
        )
    )
    for i, finding in enumerate(rows):
        finding["finding_id"] = i
    return typed_frame(rows, FINDING_DTYPES)


def _compliance(expectations: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    unexpl = flows[flows["verdict"].astype(str) == "unexplained"]
    per_host_unexpl: dict[str, int] = {}
    for ip in pd.concat([unexpl["client_ip"], unexpl["server_ip"]]):
        per_host_unexpl[ip] = per_host_unexpl.get(ip, 0) + 1
    rows: list[dict[str, Any]] = []
    visible = expectations[expectations["status"].astype(str) != "not-visible"]

    def row(scope: str, role: str, host: str, sub: pd.DataFrame, unexplained: int) -> None:
        status = sub["status"].astype(str)
        observed = int((status == "observed").sum())
        blocked = int((status == "blocked").sum())
        missing = int((status == "missing").sum())
        due = observed + blocked + missing
        rows.append(
            {
                "scope": scope,
                "role": role,
                "host": host,
                "expected": len(sub),
                "observed": observed,
                "blocked": blocked,
                "missing": missing,
                "inconclusive": int((status == "inconclusive").sum()),
                "unexplained": unexplained,
                "score": round(observed / due, 4) if due else 1.0,
            }
        )

    for role, sub in visible.groupby("role", sort=True):
        hosts = sorted(set(sub["host"]))
        row("role", str(role), "", sub, sum(per_host_unexpl.get(h, 0) for h in hosts))
    for keys, sub in visible.groupby(["role", "host"], sort=True):
        role_name, host = str(keys[0]), str(keys[1])
        row("host", role_name, host, sub, per_host_unexpl.get(host, 0))
    return typed_frame(rows, COMPLIANCE_DTYPES)


def run_audit(
    read: FlowResult, catalog: Catalog, inventory: Inventory, options: AuditOptions | None = None
) -> AuditResult:
    """Judge the flows of ``read`` against ``catalog`` for the deployment in ``inventory``."""
    options = options or AuditOptions()
    flows = classify_flows(read.flows, catalog, inventory, options.strict, options.jobs)
    vantage: Vantage = detect_vantage(flows, options.vantage)
    quality = _quality(flows, read)
    span = float(quality["span_seconds"] or 0.0)
    expectations = build_expectations(flows, catalog, inventory, vantage, span)
    beats = heartbeats(flows)
    findings = _findings(flows, expectations, quality)
    compliance = _compliance(expectations, flows)
    counts = {s: int((findings["severity"].astype(str) == s).sum()) for s in SEVERITIES}
    verdicts = flows["verdict"].astype(str)
    result = AuditResult(
        flows=flows.drop(columns=["_rules"]),
        findings=findings,
        expectations=expectations,
        compliance=compliance,
        heartbeats=beats,
    )
    code = result.exit_code(options.fail_on)
    stats = read.stats
    start = stats.first_ts_ns
    end = stats.last_ts_ns
    d = inventory.deployment
    result.summary = {
        "tool": "dsaudit",
        "version": __version__,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "captures": [
            {
                "path": c.path,
                "format": c.format,
                "packets": c.packets,
                "damaged": c.damaged,
                "warnings": list(c.warnings),
            }
            for c in read.captures
        ],
        "inventory": options.inventory_label or inventory.path,
        "deployment": {
            "version": d.version,
            "mode": d.mode,
            "communication": d.communication,
            "database": d.database,
            "updates": d.updates,
            "heartbeat_interval_s": d.heartbeat_interval,
        },
        "time_span": {
            "start": _iso(start),
            "end": _iso(end),
            "seconds": (end - start) / 1e9 if start is not None and end is not None else 0.0,
        },
        "vantage": vantage.as_dict(),
        "quality": quality,
        "flow_counts": {
            "total": int(len(flows)),
            "explained": int((verdicts == "explained").sum()),
            "unexplained": int((verdicts == "unexplained").sum()),
            "infrastructure": int((verdicts == "infrastructure").sum()),
            "blocked_expected": int(flows["blocked"].sum()),
        },
        "finding_counts": counts,
        "compliant": code == 0,
        "fail_on": options.fail_on,
        "exit_code": code,
    }
    return result


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return str(np.datetime_as_string(np.datetime64(ns, "ns"), unit="us")) + "Z"
