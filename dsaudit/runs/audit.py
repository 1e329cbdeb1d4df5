"""The audit: flows, then verdicts, expectations, findings and compliance, in that order.

`dsaudit audit` is this run over the flows of its captures; the live loop (dsaudit.runs.live)
and a period (`dsaudit report`, dsaudit.runs.periodic) run it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dsaudit import __version__
from dsaudit.catalog import Catalog
from dsaudit.decode.undecoded import NOT_IP, summary
from dsaudit.firewall.fixes import attach_fixes
from dsaudit.flow_records.builder import FlowResult
from dsaudit.frames import row_dicts
from dsaudit.inventory import Inventory
from dsaudit.judge.causes import add_causes, dns_failures, issuer_mismatches, missing_cause
from dsaudit.judge.classify import classify_flows
from dsaudit.judge.expectations import (
    Membership,
    Vantage,
    build_expectations,
    describe_networks,
    detect_vantage,
    heartbeats,
    host_criterion,
    network_hosts,
)
from dsaudit.judge.findings import (
    COMPLIANCE_DTYPES,
    FINDING_DTYPES,
    FINDING_KINDS,
    INCONCLUSIVE_EXIT,
    SEVERITIES,
    VERDICT_LABELS,
    AuditResult,
    typed_frame,
)
from dsaudit.time_text import iso_now, iso_ns

POOR_NO_SYN_SHARE = 0.5
WEIGHT = "merged_flows"  # a live session's rows say how many expired flows each stands for
POOR_ONE_SIDED_SHARE = 0.3


@dataclass(frozen=True)
class AuditOptions:
    """How strict the audit is and what it may assume."""

    strict: bool = False
    vantage: str | None = None  # an address, "span", or None to detect
    fail_on: str = "high"
    inventory_label: str | None = None
    jobs: int = 1  # processes that may judge flows side by side
    fix: str = "nftables"  # the firewall dialect of each finding's allow rules


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
    # Joining a connection's two VLAN halves loses nothing: counted in the quality table, not
    # a caveat that would call a healthy trunk capture LIMITED.
    joined = int(stats.get("vlan_joined_flows") or 0)  # type: ignore[call-overload]
    not_decoded: dict[str, dict[str, int]] = stats["not_decoded"]  # type: ignore[assignment]
    # ARP, STP and such are in every capture and hide no flow: counted, not a limit.
    hiding = {r: d for r, d in not_decoded.items() if r != NOT_IP}
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
        "vlan_joined_flows": joined,
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
                "cause": first.get("cause"),
                "cause_evidence": _evidence(members),
                "fix": [],
            }
        )
    return rows


def _evidence(members: list[dict[Any, Any]]) -> str | None:
    """The distinct evidence of a group's flows (the first few), for the finding."""
    seen = list(dict.fromkeys(m["cause_evidence"] for m in members if m.get("cause_evidence")))
    if not seen:
        return None
    more = f" (and {len(seen) - 3} more)" if len(seen) > 3 else ""
    return "; ".join(seen[:3]) + more


def _weight(members: list[dict[Any, Any]]) -> int:
    """Flows a group of rows stands for: a live session folds expired flows into one row per
    conversation and says in ``merged_flows`` how many it stands for."""
    return sum(int(m.get(WEIGHT, 1) or 1) for m in members)


def _why(row: Any, group: Any) -> str:
    """client -> server:port: the reason the flow is unexplained."""
    return f"{row['client_ip']} -> {row['server_ip']}:{row['server_port']}: {row['reason_text']}"


def _failure(group: list[dict[Any, Any]]) -> str:
    outcomes = {str(m["outcome"]) for m in group}
    if "rejected" in outcomes:
        return "rejected"
    if outcomes == {"failed"}:
        return "connected, but the TLS handshake failed"
    return "never answered"


def _name(row: Any) -> str:
    name = row["server_name"]
    return f" ({name})" if isinstance(name, str) else ""


def _findings(
    flows: pd.DataFrame,
    expectations: pd.DataFrame,
    quality: dict[str, Any],
    why_missing: Callable[[dict[Any, Any]], tuple[str, str]] | None = None,
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
        endpoint + ["rule", "cause"],
        lambda r, g: (
            f"{r['client_role']} {r['client_ip']} -> {r['server_role']} {r['server_ip']}:"
            f"{r['server_port']}{_name(r)} ({r['rule']}): {_weight(g)} attempt(s) "
            f"{_failure(g)}; likely cause: {r['cause']} ({r['cause_evidence']})"
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
    # Blocked flows carry an issuer mismatch as their cause; the others get it as a finding.
    mismatched = issuer_mismatches(flows)
    if mismatched:
        odd = np.zeros(len(flows), dtype=bool)
        odd[list(mismatched)] = True
        notes = pd.Series(
            [mismatched.get(i) for i in range(len(flows))], index=flows.index, dtype=object
        )
        rows += _group_findings(
            flows.assign(cause_evidence=notes),
            odd & (verdict == "explained") & ~flows["blocked"].to_numpy(dtype=bool),
            "tls_interception",
            endpoint,
            lambda r, g: (
                f"{r['client_role']} {r['client_ip']} -> {r['server_role']} {r['server_ip']}:"
                f"{r['server_port']}{_name(r)}: {r['cause_evidence']}"
            ),
        )
    for status, kind in (
        ("missing", "missing_expected_flow"),
        ("inconclusive", "inconclusive_expected_flow"),
    ):
        sub = expectations[expectations["status"].astype(str) == status]
        for r in sub.to_dict("records"):
            ports = str(r["port"])
            cause, cause_evidence = (None, None)
            if status == "missing" and why_missing is not None:
                cause, cause_evidence = why_missing(r)
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
                    "message": f"{r['role']} {r['host']}: no {r['rule']} flow: {r['detail']}"
                    + (f"; likely cause: {cause} ({cause_evidence})" if cause else ""),
                    "flow_ids": [],
                    "count": 0,
                    "first_seen": pd.NaT,
                    "last_seen": pd.NaT,
                    "cause": cause,
                    "cause_evidence": cause_evidence,
                    "fix": [],
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
                "cause": None,
                "cause_evidence": None,
                "fix": [],
            }
        )
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    rows.sort(
        key=lambda r: (
            rank[r["severity"]],
            r["kind"],
            # Blocked flows of one cause together: the same cause usually has the same remedy.
            str(r["cause"] or ""),
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
    """Per role and per host: expected flows by status, unexplained flows and the score.

    A host's unexplained count is the unexplained flows it takes part in; a role's is the
    unexplained flows with at least one end a host of the role, each flow once (a flow
    between two agents counts once for the agents; one between an agent and the manager
    counts for both roles). The score is None when nothing was due.
    """
    unexpl = flows[flows["verdict"].astype(str) == "unexplained"]
    # A live session folds expired flows into one row that stands for several.
    weight = (
        unexpl[WEIGHT].fillna(1).astype("int64").to_numpy()
        if WEIGHT in unexpl.columns
        else np.ones(len(unexpl), dtype=np.int64)
    )
    client = unexpl["client_ip"].astype(str).to_numpy()
    server = unexpl["server_ip"].astype(str).to_numpy()
    per_host_unexpl: dict[str, int] = {}
    for ends in (client, server):
        tally = pd.Series(weight).groupby(ends).sum()
        for ip, n in tally.items():
            per_host_unexpl[str(ip)] = per_host_unexpl.get(str(ip), 0) + int(n)
    same = client == server
    if same.any():  # a flow from a host to itself is one flow of that host
        for ip, n in pd.Series(weight[same]).groupby(client[same]).sum().items():
            per_host_unexpl[str(ip)] -= int(n)
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
                "score": round(observed / due, 4) if due else None,
            }
        )

    for role, sub in visible.groupby("role", sort=True):
        hosts = list(set(sub["host"].astype(str)))
        either = np.isin(client, hosts) | np.isin(server, hosts)
        row("role", str(role), "", sub, int(weight[either].sum()))
    for keys, sub in visible.groupby(["role", "host"], sort=True):
        role_name, host = str(keys[0]), str(keys[1])
        row("host", role_name, host, sub, per_host_unexpl.get(host, 0))
    return typed_frame(rows, COMPLIANCE_DTYPES)


def _inconclusive(expectations: pd.DataFrame, flows: pd.DataFrame) -> list[str]:
    """What the capture lacked for a verdict: no expected flow could be judged, or no
    Deep Security traffic at all. Empty when it lacked neither."""
    reasons: list[str] = []
    status = expectations["status"].astype(str)
    judged = int(status.isin(["observed", "blocked", "missing"]).sum())
    if not len(expectations):
        reasons.append("no expected flow to judge: the inventory names no host it expects one of")
    elif not judged:
        short = int((status == "inconclusive").sum())
        hidden = int((status == "not-visible").sum())
        parts = []
        if short:
            parts.append(f"{short} recur more slowly than the capture is long")
        if hidden:
            parts.append(f"{hidden} cannot be seen from where the capture was taken")
        reasons.append(
            f"none of the {len(expectations)} expected flows could be judged ({'; '.join(parts)})"
        )
    if not int((flows["verdict"].astype(str) == "explained").sum()):
        reasons.append(
            "the capture holds no Deep Security traffic: no flow that the port table explains"
        )
    return reasons


def _without(
    flows: pd.DataFrame,
    read: FlowResult,
    left_out: frozenset[str],
    catalog: Catalog,
    inventory: Inventory,
    options: AuditOptions,
) -> pd.DataFrame:
    """The flows with every flow of a left-out network address judged again without the
    role that address had only through its network."""
    mask = (flows["client_ip"].isin(left_out) | flows["server_ip"].isin(left_out)).to_numpy()
    again = classify_flows(read.flows[mask], catalog, inventory, options.strict, options.jobs)
    return pd.concat([flows[~mask], again]).sort_index()


def run_audit(
    read: FlowResult, catalog: Catalog, inventory: Inventory, options: AuditOptions | None = None
) -> AuditResult:
    """Judge the flows of ``read`` against ``catalog`` for the deployment in ``inventory``."""
    options = options or AuditOptions()
    flows = classify_flows(read.flows, catalog, inventory, options.strict, options.jobs)
    # An address that is a host only through a network entry must earn it with Deep
    # Security traffic; the rest (gateways, printers) lose the role and are judged again.
    members: dict[str, Membership] = network_hosts(flows, catalog, inventory)
    left_out = frozenset(a for a, m in members.items() if not m.taken)
    if left_out:
        inventory = inventory.leaving_out(left_out)
        flows = _without(flows, read, left_out, catalog, inventory, options)
    taken = [a for a, m in members.items() if m.taken]
    vantage: Vantage = detect_vantage(flows, options.vantage)
    quality = _quality(flows, read)
    span = float(quality["span_seconds"] or 0.0)
    expectations = build_expectations(flows, catalog, inventory, vantage, span, taken)
    beats = heartbeats(flows)
    flows = add_causes(flows, inventory)
    failures = dns_failures(flows)
    findings = _findings(
        flows,
        expectations,
        quality,
        lambda r: missing_cause(r["host"], r["role"], r["rule"], catalog, inventory, failures),
    )
    findings = attach_fixes(findings, flows, catalog, inventory, options.fix)
    compliance = _compliance(expectations, flows)
    counts = {s: int((findings["severity"].astype(str) == s).sum()) for s in SEVERITIES}
    verdicts = flows["verdict"].astype(str)
    result = AuditResult(
        flows=flows.drop(columns=["_rules"]),
        findings=findings,
        expectations=expectations,
        compliance=compliance,
        heartbeats=beats,
        inconclusive=_inconclusive(expectations, flows),
    )
    code = result.exit_code(options.fail_on)
    networks = describe_networks(inventory, members, catalog)
    stats = read.stats
    start = stats.first_ts_ns
    end = stats.last_ts_ns
    d = inventory.deployment
    result.summary = {
        "tool": "dsaudit",
        "version": __version__,
        "generated_at": iso_now(),
        "captures": [
            {
                "path": c.path,
                "format": c.format,
                "packets": c.packets,
                "damaged": c.damaged,
                "warnings": c.warnings_and_notes,
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
            "start": iso_ns(start),
            "end": iso_ns(end),
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
        "networks": networks,
        "host_criterion": host_criterion(catalog) if networks else None,
        "verdict": VERDICT_LABELS[code] if code in VERDICT_LABELS else "NOT COMPLIANT",
        "inconclusive": list(result.inconclusive) if code == INCONCLUSIVE_EXIT else [],
        "compliant": code == 0,
        "fail_on": options.fail_on,
        "exit_code": code,
    }
    return result
