"""A realistic AuditResult built in code, with hostile names, for the report tests."""

# The deployment: manager dsm01, relay+agent dsr01, agents web01, db01 and app01, on-premises,
# bidirectional heartbeats every 10 minutes, a 30-minute SPAN capture. db01's heartbeats to the
# manager are rejected or unanswered (blocked), app01's never appear (missing), app01 talks to
# 10.20.0.99:8443 (unexplained), web01 fetches updates from a name the vendor does not list, and
# names taken from packets carry HTML, an attribute breakout, ANSI escapes, a spreadsheet
# formula, pipes, a newline and a bidi override.

from __future__ import annotations

from typing import Any

import pandas as pd

from dsaudit.flow_records.frame import FLOW_DTYPES
from dsaudit.judge.findings import (
    COMPLIANCE_DTYPES,
    EXPECTATION_DTYPES,
    FINDING_DTYPES,
    HEARTBEAT_DTYPES,
    AuditResult,
    typed_frame,
)

# The script would turn the red verdict heading into a reassuring one; the breakout would add
# an image whose error handler renames the page.
SCRIPT_NAME = '<script>document.querySelector("h1").textContent="Compliant"</script>'
ATTR_NAME = '"><img src=x onerror="document.title=\'pwned\'">'
ANSI_NAME = "\x1b[2J\x1b[31mevil.example\x1b[0m"
FORMULA_NAME = "=cmd|' /C calc'!A0"
PIPE_NAME = "a|b|c.example\n| forged | row |\u202emoc.evil"

MANAGER, RELAY = "10.20.0.10", "10.20.0.20"
WEB, DB, APP = "10.20.1.11", "10.20.1.12", "10.20.1.13"
UNKNOWN, UNKNOWN2, DNS = "10.20.0.99", "10.20.0.98", "10.20.0.2"
TREND, MIRROR, EVIL1, EVIL2 = "104.18.20.7", "198.51.100.23", "203.0.113.66", "203.0.113.67"
ROLE = {MANAGER: "manager", RELAY: "relay+agent", WEB: "agent", DB: "agent", APP: "agent"}
ROLE |= {UNKNOWN: "unknown", UNKNOWN2: "unknown", DNS: "dns"}
HOST_ROLE = {"dsm01": "manager", "dsr01": "relay+agent"} | {
    h: "agent" for h in ("web01", "db01", "app01")
}
T0 = pd.Timestamp("2024-05-06T09:00:00Z")

HB_IN, HB_OUT, HB_AGENT = (
    "manager.in.heartbeat-4120",
    "manager.out.heartbeat-4118",
    "agent.in.heartbeat-4118",
)
AGENT_UPD, RELAY_UPD = "agent.out.updates-80-443", "relay.out.updates-80-443"
OK, REJ, NOANS = "established", "rejected", "unanswered"
EXP, UNX, INF = "explained", "unexplained", "infrastructure"
REASON_TEXT = {
    "no_rule": "No rule of the port table covers this port.",
    "unlisted_hostname": "The vendor does not list this name for the port.",
    "localhost_only": "Port 4123 only belongs on the loopback interface.",
}

AUDIT_DTYPES: dict[str, Any] = {
    **FLOW_DTYPES,
    "client_role": "string",
    "server_role": "string",
    "verdict": pd.CategoricalDtype([EXP, UNX, INF]),
    "rule": "string",
    "reason": "string",
    "reason_text": "string",
    "match": "string",
    "blocked": "bool",
    "cause": "string",
    "cause_evidence": "string",
}

# fmt: off
# flow_id, minute, client ip, port, server ip, port, outcome, verdict, rule, reason, name
FLOW_ROWS: list[tuple[Any, ...]] = [
    (1, 1, WEB, 50101, MANAGER, 4120, OK, EXP, HB_IN, None, None),
    (2, 11, WEB, 50102, MANAGER, 4120, OK, EXP, HB_IN, None, None),
    (3, 5, MANAGER, 40001, WEB, 4118, OK, EXP, HB_OUT, None, None),
    (4, 2, DB, 50201, MANAGER, 4120, REJ, EXP, HB_IN, None, None),
    (5, 12, DB, 50202, MANAGER, 4120, NOANS, EXP, HB_IN, None, None),
    (6, 3, WEB, 50103, RELAY, 4122, OK, EXP, "relay.in.relay-4122", None, None),
    (7, 4, RELAY, 50301, TREND, 443, OK, EXP, RELAY_UPD, None, "iaus.trendmicro.com"),
    (8, 6, APP, 50401, UNKNOWN, 8443, OK, UNX, None, "no_rule", "metrics.example.net"),
    (9, 16, APP, 50402, UNKNOWN, 8443, OK, UNX, None, "no_rule", "metrics.example.net"),
    (10, 7, WEB, 50104, MIRROR, 443, OK, UNX, AGENT_UPD, "unlisted_hostname", FORMULA_NAME),
    (11, 8, APP, 50403, EVIL1, 443, OK, UNX, None, "unlisted_hostname", SCRIPT_NAME),
    (12, 9, DB, 50203, EVIL2, 443, OK, UNX, None, "unlisted_hostname", ANSI_NAME),
    (13, 10, WEB, 50105, RELAY, 4123, OK, UNX, None, "localhost_only", None),
    (14, 13, MANAGER, 53001, DNS, 53, OK, INF, "manager.out.dns-53", None, "dns01.corp.example"),
    (15, 14, APP, 50404, UNKNOWN2, 9000, OK, UNX, None, "no_rule", PIPE_NAME),
]
SIZES = {6: 90000, 8: 12000, 9: 8000}  # bytes client to server; the reply is three times that

# finding_id, kind, severity, host, rule, peer, port, flow ids, message
FINDING_ROWS: list[tuple[Any, ...]] = [
    (4, "unexplained_flow", "medium", "app01", None, UNKNOWN, 8443, [8, 9],
     "app01 talks to 10.20.0.99:8443 (metrics.example.net); no rule explains it."),
    (1, "blocked_expected_flow", "critical", "db01", HB_IN, "dsm01", 4120, [4, 5],
     "db01's heartbeat to dsm01:4120 was rejected or never answered (2 attempts)."),
    (2, "missing_expected_flow", "high", "app01", HB_IN, "dsm01", 4120, [],
     "app01 never sent a heartbeat to dsm01:4120 in 30 min (interval 10 min)."),
    (3, "localhost_only_port_on_wire", "high", "web01", "relay.in.local-agent-4123", "dsr01",
     4123, [13], "web01 reached dsr01 on 4123, a port that belongs on the loopback only."),
    (5, "unlisted_hostname", "medium", "web01", AGENT_UPD, FORMULA_NAME, 443, [10],
     f"web01 fetched updates from {FORMULA_NAME} | not listed."),
    (6, "unlisted_hostname", "medium", "app01", None, SCRIPT_NAME, 443, [11],
     f"app01 reached {SCRIPT_NAME}."),
    (7, "unlisted_hostname", "medium", "db01", None, ANSI_NAME, 443, [12],
     f"db01 reached {ANSI_NAME}."),
    (8, "capture_quality", "info", None, None, None, None, [],
     "18% of TCP flows began before the capture."),
    (9, "unexplained_flow", "medium", "app01", None, UNKNOWN2, 9000, [15],
     f"app01 talks to 10.20.0.98:9000 ({PIPE_NAME}){ATTR_NAME}."),
]

# host, rule, peer role, port, status, flows, established, blocked, last minute, detail
EXPECTATION_ROWS: list[tuple[Any, ...]] = [
    ("dsm01", HB_IN, "agent", "4120", "blocked", 6, 2, 2, 12, ""),
    ("dsm01", HB_OUT, "agent", "4118", "observed", 1, 1, 0, 5, ""),
    ("dsm01", "manager.out.postgresql-5432", "database", "5432", "not-visible", 0, 0, 0, None,
     "The database is not on this capture's segment."),
    ("dsr01", "relay.in.relay-4122", "agent", "4122", "observed", 1, 1, 0, 3, ""),
    ("dsr01", RELAY_UPD, "internet", "80,443", "observed", 1, 1, 0, 4, ""),
    ("dsr01", HB_IN, "manager", "4120", "inconclusive", 0, 0, 0, None,
     "Capture shorter than one heartbeat interval for this host."),
    ("web01", HB_IN, "manager", "4120", "observed", 2, 2, 0, 11, ""),
    ("web01", HB_AGENT, "manager", "4118", "observed", 1, 1, 0, 5, ""),
    ("web01", AGENT_UPD, "relay", "4122", "observed", 1, 1, 0, 3, ""),
    ("db01", HB_IN, "manager", "4120", "blocked", 2, 0, 2, 12, "rejected once, unanswered once"),
    ("db01", HB_AGENT, "manager", "4118", "missing", 0, 0, 0, None, ""),
    ("db01", AGENT_UPD, "relay", "4122", "not-visible", 0, 0, 0, None, ATTR_NAME),
    ("app01", HB_IN, "manager", "4120", "missing", 0, 0, 0, None, f"peer name {SCRIPT_NAME}"),
    ("app01", HB_AGENT, "manager", "4118", "missing", 0, 0, 0, None, ""),
    ("app01", AGENT_UPD, "relay", "4122", "inconclusive", 0, 0, 0, None, ""),
]

# scope, role, host, expected, observed, blocked, missing, inconclusive, unexplained
COMPLIANCE_ROWS: list[tuple[Any, ...]] = [
    ("role", "manager", "", 3, 1, 1, 0, 0, 0),
    ("role", "relay", "", 3, 2, 0, 0, 1, 1),
    ("role", "agent", "", 9, 4, 1, 3, 1, 4),
    ("host", "manager", "dsm01", 3, 1, 1, 0, 0, 0),
    ("host", "relay+agent", "dsr01", 3, 2, 0, 0, 1, 1),
    ("host", "agent", "web01", 3, 3, 0, 0, 0, 2),
    ("host", "agent", "db01", 3, 0, 1, 1, 0, 1),
    ("host", "agent", "app01", 3, 0, 0, 2, 1, 3),
]

# agent, direction, port, minutes of the attempts, their outcomes
HEARTBEAT_ROWS: list[tuple[Any, ...]] = [
    ("web01", "agent->manager", 4120, [1, 11, 21], [OK, OK, OK]),
    ("web01", "manager->agent", 4118, [5], [OK]),
    ("db01", "agent->manager", 4120, [2, 12, 22], [REJ, NOANS, REJ]),
    ("app01", "agent->manager", 4120, [], []),
    ("dsr01", "agent->manager", 4120, [4, 14, 24], [OK, OK, NOANS]),
]
# fmt: on


def at(minutes: float | None) -> pd.Timestamp | None:
    return None if minutes is None else T0 + pd.Timedelta(minutes=minutes)


def _flow(row: tuple[Any, ...]) -> dict[str, Any]:
    fid, minute, cip, cport, sip, sport, outcome, verdict, rule, reason, name = row
    ok, size = outcome == OK, SIZES.get(fid, 4000)
    if verdict == UNX:
        match = "port-only" if reason == "unlisted_hostname" else None
    else:
        match = "port+name" if name else "port+role"
    return {
        "flow_id": fid, "proto": "udp" if sport == 53 else "tcp", "ip_version": 4,
        "client_ip": cip, "client_port": cport, "server_ip": sip, "server_port": sport,
        "vlan": None, "inner_vlan": None,
        "packets_c2s": 8 if ok else 3, "packets_s2c": 7 if ok else int(outcome == REJ),
        "bytes_c2s": size if ok else 180, "bytes_s2c": 3 * size if ok else 54 * (outcome == REJ),
        "payload_bytes_c2s": size - 400 if ok else 0,
        "payload_bytes_s2c": 3 * size - 400 if ok else 0,
        "start": T0 + pd.Timedelta(minutes=minute),
        "end": T0 + pd.Timedelta(minutes=minute, seconds=2), "duration": 2.0,
        "state": {OK: "SF", REJ: "REJ", NOANS: "S0"}[outcome],
        "history": {OK: "ShADadFf", REJ: "Sr", NOANS: "S"}[outcome],
        "outcome": outcome, "initiator_evidence": "syn",
        "server_name": name, "name_source": "sni" if name else "none", "sni": name,
        "http_host": None, "connect_target": None, "socks_target": None,
        "dns_queries": [name] if name else [],
        "dns_answers": [{"name": name, "type": "A", "data": sip, "ttl": 300}] if name else [],
        "icmp_errors": [], "truncated_packets": 0, "tunnel": False, "tunnel_endpoints": None,
        "tls_alert": None, "tls_server_issuer": None,
        "tls_client_hello": bool(name) and sport != 53, "max_segment_c2s": 517 if name else 0,
        "dns_rcode": None,
        "client_role": ROLE[cip], "server_role": ROLE.get(sip, "internet"),
        "verdict": verdict, "rule": rule, "reason": reason,
        "reason_text": REASON_TEXT.get(reason or "", ""), "match": match,
        "blocked": verdict == EXP and not ok,
        "cause": None if verdict != EXP or ok else (
            "rejected by host" if outcome == REJ else "dropped silently"
        ),
        "cause_evidence": None if verdict != EXP or ok else (
            f"RST from {sip}" if outcome == REJ else "3 SYN(s) over 2.0 s, no answer"
        ),
    }  # fmt: skip


def flows() -> pd.DataFrame:
    return typed_frame([_flow(r) for r in FLOW_ROWS], AUDIT_DTYPES)


def findings() -> pd.DataFrame:
    starts = {r[0]: r[1] for r in FLOW_ROWS}
    rows = []
    for fid, kind, severity, host, rule, peer, port, ids, message in FINDING_ROWS:
        minutes = [starts[i] for i in ids]
        rows.append({
            "finding_id": fid, "kind": kind, "severity": severity, "host": host,
            "role": HOST_ROLE.get(host or ""), "rule": rule, "peer": peer, "port": port,
            "message": message, "flow_ids": ids, "count": len(ids),
            "first_seen": at(min(minutes, default=None)),
            "last_seen": at(max(minutes, default=None)),
            "cause": "rejected by host" if kind == "blocked_expected_flow" else None,
            "cause_evidence": "RST from the server" if kind == "blocked_expected_flow" else None,
            "fix": [],
        })  # fmt: skip
    return typed_frame(rows, FINDING_DTYPES)


def expectations() -> pd.DataFrame:
    rows = [
        {
            "host": host,
            "role": HOST_ROLE[host],
            "rule": rule,
            "peer_role": peer,
            "port": port,
            "expectation": "required",
            "status": status,
            "flows": n,
            "established": ok,
            "blocked_flows": bad,
            "last_seen": at(last),
            "detail": detail,
        }  # fmt: skip
        for host, rule, peer, port, status, n, ok, bad, last, detail in EXPECTATION_ROWS
    ]
    return typed_frame(rows, EXPECTATION_DTYPES)


def compliance() -> pd.DataFrame:
    names = list(COMPLIANCE_DTYPES)[:-1]
    rows = []
    for values in COMPLIANCE_ROWS:
        row = dict(zip(names, values, strict=True))
        due = row["observed"] + row["blocked"] + row["missing"]
        row["score"] = 1.0 if due == 0 else row["observed"] / due
        rows.append(row)
    return typed_frame(rows, COMPLIANCE_DTYPES)


def heartbeats() -> pd.DataFrame:
    rows = []
    for agent, direction, port, minutes, outcomes in HEARTBEAT_ROWS:
        gaps = [60.0 * (b - a) for a, b in zip(minutes, minutes[1:], strict=False)]
        ok = sum(o == OK for o in outcomes)
        rows.append({
            "agent": agent, "direction": direction, "port": port, "attempts": len(minutes),
            "established": ok, "failed": len(minutes) - ok,
            "first_seen": at(minutes[0] if minutes else None),
            "last_seen": at(minutes[-1] if minutes else None),
            "median_interval_s": float(pd.Series(gaps).median()) if gaps else None,
            "max_interval_s": max(gaps) if gaps else None,
            "times": [f"{at(m):%Y-%m-%dT%H:%M:%S.%fZ}" for m in minutes],
            "outcomes": outcomes,
        })  # fmt: skip
    return typed_frame(rows, HEARTBEAT_DTYPES)


def summary() -> dict[str, Any]:
    return {
        "tool": "dsaudit",
        "version": "0.1.0",
        "generated_at": "2024-05-06T10:15:00Z",
        "captures": [
            {"path": "captures/dsm01-2024-05-06.pcapng", "format": "pcapng", "packets": 18234,
             "damaged": None, "warnings": []},
            {"path": "captures/segment-b.pcap.gz", "format": "pcap", "packets": 912,
             "damaged": "truncated record at byte 1048576",
             "warnings": ["snap length 96 cuts payloads"]},
        ],
        "inventory": "inventory/prod.yaml",
        "deployment": {"version": "11.0", "mode": "on-premises", "communication": "bidirectional",
                       "database": "postgresql", "updates": "relay",
                       "heartbeat_interval_s": 600},
        "time_span": {"start": "2024-05-06T09:00:00Z", "end": "2024-05-06T09:30:00Z",
                      "seconds": 1800.0},
        "vantage": {"kind": "span", "host": None, "source": "detected",
                    "evidence": "conversations between 7 other hosts seen"},
        "quality": {"tcp_flows": 14, "tcp_without_syn": 2, "tcp_without_syn_share": 0.18,
                    "one_sided_flows": 1, "one_sided_share": 0.07, "snaplen_cut_frames": 40,
                    "undecodable_frames": 0, "span_seconds": 1800.0,
                    "notes": ["18% of TCP flows began before the capture: their direction "
                              "is inferred from ports."]},
        "flow_counts": {"total": 15, "explained": 7, "unexplained": 7, "infrastructure": 1,
                        "blocked_expected": 2},
        "finding_counts": {"critical": 1, "high": 2, "medium": 5, "low": 0, "info": 1},
        "compliant": False,
        "fail_on": "high",
        "exit_code": 1,
    }  # fmt: skip


def build_result() -> AuditResult:
    """The full example audit."""
    return AuditResult(flows(), findings(), expectations(), compliance(), heartbeats(), summary())


def empty_result() -> AuditResult:
    """An audit of an empty capture: every table empty, compliant."""
    counts = {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}
    return AuditResult(
        typed_frame([], AUDIT_DTYPES),
        typed_frame([], FINDING_DTYPES),
        typed_frame([], EXPECTATION_DTYPES),
        typed_frame([], COMPLIANCE_DTYPES),
        typed_frame([], HEARTBEAT_DTYPES),
        {"tool": "dsaudit", "version": "0.1.0", "captures": [], "compliant": True,
         "exit_code": 0, "fail_on": "high", "finding_counts": counts},
    )  # fmt: skip
