"""A realistic AuditResult built in code: a manager, a relay that is also an agent, agents.

The deployment: manager dsm01, relay+agent dsr01, agents web01, db01 and app01, on-premises,
bidirectional heartbeats.  db01's heartbeats to the manager are rejected (blocked), app01's
never appear (missing), app01 talks to 10.20.0.99:8443 (unexplained), web01 reaches an update
mirror under a name the vendor does not list, and hostile names taken from packets carry
HTML, ANSI escapes, spreadsheet formulas and Markdown pipes.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dsaudit.findings import (
    COMPLIANCE_DTYPES,
    EXPECTATION_DTYPES,
    FINDING_DTYPES,
    HEARTBEAT_DTYPES,
    AuditResult,
    typed_frame,
)
from dsaudit.flows.records import FLOW_DTYPES

# Strings an attacker can put in a capture (SNI, Host header, DNS answers).  The script would
# turn the red verdict heading into a green-sounding one; the attribute breakout would add an
# image whose error handler renames the page.
SCRIPT_NAME = '<script>document.querySelector("h1").textContent="Compliant"</script>'
ATTR_NAME = '"><img src=x onerror="document.title=\'pwned\'">'
ANSI_NAME = "\x1b[2J\x1b[31mevil.example\x1b[0m"
FORMULA_NAME = "=cmd|' /C calc'!A0"
PIPE_NAME = "a|b|c.example\n| forged | row |\u202emoc.evil"

MANAGER, RELAY = "10.20.0.10", "10.20.0.20"
WEB, DB, APP = "10.20.1.11", "10.20.1.12", "10.20.1.13"
T0 = pd.Timestamp("2024-05-06T09:00:00Z")

AUDIT_DTYPES: dict[str, Any] = {
    **FLOW_DTYPES,
    "client_role": "string",
    "server_role": "string",
    "verdict": pd.CategoricalDtype(["explained", "unexplained", "infrastructure"]),
    "rule": "string",
    "reason": "string",
    "reason_text": "string",
    "match": "string",
    "blocked": "bool",
}


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def _flow(
    fid: int,
    minute: float,
    client: tuple[str, int, str],
    server: tuple[str, int, str],
    *,
    outcome: str = "established",
    verdict: str = "explained",
    rule: str | None = None,
    reason: str | None = None,
    reason_text: str = "",
    match: str | None = "port+role",
    name: str | None = None,
    proto: str = "tcp",
    blocked: bool = False,
    size: int = 4000,
) -> dict[str, Any]:
    ok = outcome == "established"
    return {
        "flow_id": fid,
        "proto": proto,
        "ip_version": 4,
        "client_ip": client[0],
        "client_port": client[1],
        "server_ip": server[0],
        "server_port": server[1],
        "vlan": None,
        "inner_vlan": None,
        "packets_c2s": 8 if ok else 3,
        "packets_s2c": 7 if ok else (1 if outcome == "rejected" else 0),
        "bytes_c2s": size if ok else 180,
        "bytes_s2c": size * 3 if ok else (54 if outcome == "rejected" else 0),
        "payload_bytes_c2s": size - 400 if ok else 0,
        "payload_bytes_s2c": size * 3 - 400 if ok else 0,
        "start": at(minute),
        "end": at(minute) + pd.Timedelta(seconds=2),
        "duration": 2.0,
        "state": {"established": "SF", "rejected": "REJ", "unanswered": "S0"}[outcome],
        "history": {"established": "ShADadFf", "rejected": "Sr", "unanswered": "S"}[outcome],
        "outcome": outcome,
        "initiator_evidence": "syn",
        "server_name": name,
        "name_source": "sni" if name else "none",
        "sni": name,
        "http_host": None,
        "connect_target": None,
        "socks_target": None,
        "dns_queries": [name] if name else [],
        "dns_answers": (
            [{"name": name, "type": "A", "data": server[0], "ttl": 300}] if name else []
        ),
        "icmp_errors": [],
        "truncated_packets": 0,
        "tunnel": False,
        "client_role": client[2],
        "server_role": server[2],
        "verdict": verdict,
        "rule": rule,
        "reason": reason,
        "reason_text": reason_text or ("" if reason is None else reason.replace("_", " ")),
        "match": match,
        "blocked": blocked,
    }


def flows() -> pd.DataFrame:
    hb = "manager.in.heartbeat-4120"
    rows = [
        _flow(1, 1, (WEB, 50101, "agent"), (MANAGER, 4120, "manager"), rule=hb),
        _flow(2, 11, (WEB, 50102, "agent"), (MANAGER, 4120, "manager"), rule=hb),
        _flow(3, 5, (MANAGER, 40001, "manager"), (WEB, 4118, "agent"),
              rule="manager.out.heartbeat-4118"),
        _flow(4, 2, (DB, 50201, "agent"), (MANAGER, 4120, "manager"), rule=hb,
              outcome="rejected", blocked=True),
        _flow(5, 12, (DB, 50202, "agent"), (MANAGER, 4120, "manager"), rule=hb,
              outcome="unanswered", blocked=True),
        _flow(6, 3, (WEB, 50103, "agent"), (RELAY, 4122, "relay+agent"),
              rule="relay.in.relay-4122", size=90000),
        _flow(7, 4, (RELAY, 50301, "relay+agent"), ("104.18.20.7", 443, "internet"),
              rule="relay.out.updates-80-443", match="port+name", name="iaus.trendmicro.com"),
        _flow(8, 6, (APP, 50401, "agent"), ("10.20.0.99", 8443, "unknown"), verdict="unexplained",
              reason="no_rule", reason_text="No rule of the port table covers TCP 8443.",
              match=None, name="metrics.example.net", size=12000),
        _flow(9, 16, (APP, 50402, "agent"), ("10.20.0.99", 8443, "unknown"),
              verdict="unexplained", reason="no_rule",
              reason_text="No rule of the port table covers TCP 8443.", match=None,
              name="metrics.example.net", size=8000),
        _flow(10, 7, (WEB, 50104, "agent"), ("198.51.100.23", 443, "internet"),
              rule="agent.out.updates-80-443", verdict="unexplained", reason="unlisted_hostname",
              reason_text=f"The vendor does not list {FORMULA_NAME} for updates.",
              match="port-only", name=FORMULA_NAME),
        _flow(11, 8, (APP, 50403, "agent"), ("203.0.113.66", 443, "internet"),
              verdict="unexplained", reason="unlisted_hostname", match="port-only",
              reason_text="Name not listed.", name=SCRIPT_NAME),
        _flow(12, 9, (DB, 50203, "agent"), ("203.0.113.67", 443, "internet"),
              verdict="unexplained", reason="unlisted_hostname", match="port-only",
              reason_text="Name not listed.", name=ANSI_NAME),
        _flow(13, 10, (WEB, 50105, "agent"), (RELAY, 4123, "relay+agent"), verdict="unexplained",
              reason="localhost_only", match=None,
              reason_text="Port 4123 only belongs on the loopback interface."),
        _flow(14, 13, (MANAGER, 53001, "manager"), ("10.20.0.2", 53, "dns"), proto="udp",
              verdict="infrastructure", rule="manager.out.dns-53", name="dns01.corp.example"),
        _flow(15, 14, (APP, 50404, "agent"), ("10.20.0.98", 9000, "unknown"),
              verdict="unexplained", reason="no_rule", match=None, name=PIPE_NAME,
              reason_text="No rule of the port table covers TCP 9000."),
    ]
    return typed_frame(rows, AUDIT_DTYPES)


def _finding(fid: int, kind: str, severity: str, host: str | None, role: str | None,
             rule: str | None, peer: str | None, port: int | None, message: str,
             ids: list[int], first: float | None, last: float | None) -> dict[str, Any]:
    return {
        "finding_id": fid, "kind": kind, "severity": severity, "host": host, "role": role,
        "rule": rule, "peer": peer, "port": port, "message": message, "flow_ids": ids,
        "count": len(ids), "first_seen": None if first is None else at(first),
        "last_seen": None if last is None else at(last),
    }


def findings() -> pd.DataFrame:
    rows = [
        _finding(4, "unexplained_flow", "medium", "app01", "agent", None, "10.20.0.99", 8443,
                 "app01 talks to 10.20.0.99:8443 (metrics.example.net); no rule explains it.",
                 [8, 9], 6, 16),
        _finding(1, "blocked_expected_flow", "critical", "db01", "agent",
                 "manager.in.heartbeat-4120", "dsm01", 4120,
                 "db01's heartbeat to dsm01:4120 was rejected or never answered (2 attempts).",
                 [4, 5], 2, 12),
        _finding(2, "missing_expected_flow", "high", "app01", "agent",
                 "manager.in.heartbeat-4120", "dsm01", 4120,
                 "app01 never sent a heartbeat to dsm01:4120 in 30 min (interval 10 min).",
                 [], None, None),
        _finding(3, "localhost_only_port_on_wire", "high", "web01", "agent",
                 "relay.in.local-agent-4123", "dsr01", 4123,
                 "web01 reached dsr01 on 4123, a port that belongs on the loopback only.",
                 [13], 10, 10),
        _finding(5, "unlisted_hostname", "medium", "web01", "agent", "agent.out.updates-80-443",
                 FORMULA_NAME, 443, f"web01 fetched updates from {FORMULA_NAME} | not listed.",
                 [10], 7, 7),
        _finding(6, "unlisted_hostname", "medium", "app01", "agent", None, SCRIPT_NAME, 443,
                 f"app01 reached {SCRIPT_NAME}.", [11], 8, 8),
        _finding(7, "unlisted_hostname", "medium", "db01", "agent", None, ANSI_NAME, 443,
                 f"db01 reached {ANSI_NAME}.", [12], 9, 9),
        _finding(8, "capture_quality", "info", None, None, None, None, None,
                 "18% of TCP flows began before the capture.", [], None, None),
        _finding(9, "unexplained_flow", "medium", "app01", "agent", None, "10.20.0.98", 9000,
                 f"app01 talks to 10.20.0.98:9000 ({PIPE_NAME}){ATTR_NAME}.", [15], 14, 14),
    ]
    return typed_frame(rows, FINDING_DTYPES)


def _expect(host: str, role: str, rule: str, peer: str, port: str, status: str, n: int = 0,
            ok: int = 0, bad: int = 0, last: float | None = None, detail: str = "") -> dict[str, Any]:
    return {
        "host": host, "role": role, "rule": rule, "peer_role": peer, "port": port,
        "expectation": "required", "status": status, "flows": n, "established": ok,
        "blocked_flows": bad, "last_seen": None if last is None else at(last), "detail": detail,
    }


def expectations() -> pd.DataFrame:
    hb_in, hb_out = "manager.in.heartbeat-4120", "manager.out.heartbeat-4118"
    rows = [
        _expect("dsm01", "manager", hb_in, "agent", "4120", "blocked", 6, 2, 2, 12),
        _expect("dsm01", "manager", hb_out, "agent", "4118", "observed", 1, 1, 0, 5),
        _expect("dsm01", "manager", "manager.out.postgresql-5432", "database", "5432",
                "not-visible", detail="The database is not on this capture's segment."),
        _expect("dsr01", "relay+agent", "relay.in.relay-4122", "agent", "4122", "observed",
                1, 1, 0, 3),
        _expect("dsr01", "relay+agent", "relay.out.updates-80-443", "internet", "80,443",
                "observed", 1, 1, 0, 4),
        _expect("dsr01", "relay+agent", hb_in, "manager", "4120", "inconclusive",
                detail="Capture shorter than one heartbeat interval for this host."),
        _expect("web01", "agent", hb_in, "manager", "4120", "observed", 2, 2, 0, 11),
        _expect("web01", "agent", "agent.in.heartbeat-4118", "manager", "4118", "observed",
                1, 1, 0, 5),
        _expect("web01", "agent", "agent.out.updates-80-443", "relay", "4122", "observed",
                1, 1, 0, 3),
        _expect("db01", "agent", hb_in, "manager", "4120", "blocked", 2, 0, 2, 12,
                detail="rejected once, unanswered once"),
        _expect("db01", "agent", "agent.in.heartbeat-4118", "manager", "4118", "missing"),
        _expect("db01", "agent", "agent.out.updates-80-443", "relay", "4122", "not-visible",
                detail=ATTR_NAME),
        _expect("app01", "agent", hb_in, "manager", "4120", "missing",
                detail=f"peer name {SCRIPT_NAME}"),
        _expect("app01", "agent", "agent.in.heartbeat-4118", "manager", "4118", "missing"),
        _expect("app01", "agent", "agent.out.updates-80-443", "relay", "4122", "inconclusive"),
    ]
    return typed_frame(rows, EXPECTATION_DTYPES)


def _score(o: int, b: int, m: int) -> float:
    return 1.0 if o + b + m == 0 else o / (o + b + m)


def compliance() -> pd.DataFrame:
    counts = [  # scope, role, host, expected, observed, blocked, missing, inconclusive, unexpl.
        ("role", "manager", "", 3, 1, 1, 0, 0, 0),
        ("role", "relay", "", 3, 2, 0, 0, 1, 1),
        ("role", "agent", "", 9, 4, 1, 3, 1, 4),
        ("host", "manager", "dsm01", 3, 1, 1, 0, 0, 0),
        ("host", "relay+agent", "dsr01", 3, 2, 0, 0, 1, 1),
        ("host", "agent", "web01", 3, 3, 0, 0, 0, 2),
        ("host", "agent", "db01", 3, 0, 1, 1, 0, 1),
        ("host", "agent", "app01", 3, 0, 0, 2, 1, 3),
    ]
    rows = [
        {"scope": s, "role": r, "host": h, "expected": e, "observed": o, "blocked": b,
         "missing": m, "inconclusive": i, "unexplained": u, "score": _score(o, b, m)}
        for s, r, h, e, o, b, m, i, u in counts
    ]
    return typed_frame(rows, COMPLIANCE_DTYPES)


def _beats(agent: str, direction: str, port: int, minutes: list[float],
           outcomes: list[str]) -> dict[str, Any]:
    ok = sum(o == "established" for o in outcomes)
    gaps = [60 * (b - a) for a, b in zip(minutes, minutes[1:], strict=False)]
    return {
        "agent": agent, "direction": direction, "port": port, "attempts": len(minutes),
        "established": ok, "failed": len(minutes) - ok,
        "first_seen": at(minutes[0]) if minutes else None,
        "last_seen": at(minutes[-1]) if minutes else None,
        "median_interval_s": float(pd.Series(gaps).median()) if gaps else None,
        "max_interval_s": max(gaps) if gaps else None,
        "times": [at(m).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for m in minutes],
        "outcomes": outcomes,
    }


def heartbeats() -> pd.DataFrame:
    rows = [
        _beats("web01", "agent->manager", 4120, [1, 11, 21], ["established"] * 3),
        _beats("web01", "manager->agent", 4118, [5], ["established"]),
        _beats("db01", "agent->manager", 4120, [2, 12, 22], ["rejected", "unanswered",
                                                            "rejected"]),
        _beats("app01", "agent->manager", 4120, [], []),
        _beats("dsr01", "agent->manager", 4120, [4, 14, 24], ["established", "established",
                                                             "unanswered"]),
    ]
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
    }


def build_result() -> AuditResult:
    """The full example audit."""
    return AuditResult(flows(), findings(), expectations(), compliance(), heartbeats(), summary())


def empty_result() -> AuditResult:
    """An audit of an empty capture: every table empty, compliant."""
    return AuditResult(
        typed_frame([], AUDIT_DTYPES),
        typed_frame([], FINDING_DTYPES),
        typed_frame([], EXPECTATION_DTYPES),
        typed_frame([], COMPLIANCE_DTYPES),
        typed_frame([], HEARTBEAT_DTYPES),
        {"tool": "dsaudit", "version": "0.1.0", "captures": [], "compliant": True,
         "exit_code": 0, "fail_on": "high",
         "finding_counts": {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}},
    )
