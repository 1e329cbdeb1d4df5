"""Finding kinds, severities and the audit result that reports render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dsaudit.judge.severities import SEVERITIES, SEVERITY_RANK


@dataclass(frozen=True)
class FindingKind:
    """What a finding means and how bad it is by default."""

    name: str
    severity: str
    description: str


FINDING_KINDS: dict[str, FindingKind] = {
    k.name: k
    for k in (
        FindingKind(
            "blocked_expected_flow",
            "critical",
            "A documented Deep Security flow was attempted but rejected or never answered: "
            "a firewall, security group or the peer is blocking it.",
        ),
        FindingKind(
            "missing_expected_flow",
            "high",
            "A flow the deployment requires never appeared although the capture was long "
            "enough and placed where it could have seen it.",
        ),
        FindingKind(
            "localhost_only_port_on_wire",
            "high",
            "Port 4123 is for an agent talking to the relay module on the same machine; it "
            "never belongs on the network.",
        ),
        FindingKind(
            "unexpected_direction",
            "high",
            "A documented port used in a direction the deployment does not allow (for "
            "example manager to agent on 4118 when agents initiate).",
        ),
        FindingKind(
            "unexplained_flow",
            "medium",
            "Traffic to or from a Deep Security host that no row of the vendor's port table "
            "explains.",
        ),
        FindingKind(
            "unlisted_hostname",
            "medium",
            "A documented port, but the peer's name is not one the vendor lists for it.",
        ),
        FindingKind(
            "unknown_endpoint",
            "low",
            "A Deep Security port used by or towards an address the inventory does not know.",
        ),
        FindingKind(
            "path_mtu_problem",
            "medium",
            "An ICMP 'fragmentation needed' (or IPv6 'packet too big') for a Deep Security "
            "flow: an MTU problem on the path can stall agent traffic.",
        ),
        FindingKind(
            "tls_interception",
            "medium",
            "A Deep Security TLS service (4119, 4120, 4122 or 443) presented a certificate "
            "whose issuer differs from the one the same service shows elsewhere in the "
            "capture: a TLS-inspecting proxy between agent and manager breaks agent trust.",
        ),
        FindingKind(
            "inconclusive_expected_flow",
            "info",
            "A required flow did not appear, but the capture is shorter than the interval "
            "at which it recurs, so its absence proves nothing.",
        ),
        FindingKind(
            "capture_quality",
            "info",
            "Something about the capture limits what can be concluded from it.",
        ),
    )
}

INCONCLUSIVE_EXIT = 3
# The headline of each exit code an audit can end with (2, bad input, never gets that far).
VERDICT_LABELS = {0: "COMPLIANT", 1: "NOT COMPLIANT", INCONCLUSIVE_EXIT: "INCONCLUSIVE"}

# Column -> dtype of each result table: the contract between the audit and the reports.
FINDING_DTYPES: dict[str, Any] = {
    "finding_id": "int64",
    "kind": "string",
    "severity": pd.CategoricalDtype(SEVERITIES, ordered=True),
    "host": "string",
    "role": "string",
    "rule": "string",
    "peer": "string",
    "port": "Int32",
    "message": "string",
    "flow_ids": "object",  # list[int]: the flows the finding rests on
    "count": "int64",
    "first_seen": "datetime64[ns, UTC]",
    "last_seen": "datetime64[ns, UTC]",
    # Blocked and missing expected flows: the likely cause (dsaudit.judge.causes), the packets it
    # rests on, and the allow rules that would open the flow (the audit's --fix dialect).
    "cause": "string",
    "cause_evidence": "string",
    "fix": "object",  # list[str]
}

EXPECTATION_STATUSES = [
    "observed",
    "blocked",
    "missing",
    "inconclusive",
    "not-visible",
]
EXPECTATION_DTYPES: dict[str, Any] = {
    "host": "string",
    "role": "string",
    "rule": "string",
    "peer_role": "string",
    "port": "string",
    "expectation": "string",
    "status": pd.CategoricalDtype(EXPECTATION_STATUSES),
    "flows": "int64",
    "established": "int64",
    "blocked_flows": "int64",
    "last_seen": "datetime64[ns, UTC]",
    "detail": "string",
}

COMPLIANCE_DTYPES: dict[str, Any] = {
    "scope": "string",  # "role" or "host"
    "role": "string",
    "host": "string",  # empty for a role row
    "expected": "int64",
    "observed": "int64",
    "blocked": "int64",
    "missing": "int64",
    "inconclusive": "int64",
    "unexplained": "int64",
    "score": "float64",  # observed / (observed + blocked + missing), NaN when nothing is due
}

HEARTBEAT_DTYPES: dict[str, Any] = {
    "agent": "string",
    "direction": "string",  # agent->manager or manager->agent
    "port": "int32",
    "attempts": "int64",
    "established": "int64",
    "failed": "int64",
    "first_seen": "datetime64[ns, UTC]",
    "last_seen": "datetime64[ns, UTC]",
    "median_interval_s": "float64",
    "max_interval_s": "float64",
    "times": "object",  # list[str]: ISO start times of every attempt, for the timeline
    "outcomes": "object",  # list[str]: the outcome of each attempt
}


def typed_frame(rows: list[dict[str, Any]], dtypes: dict[str, Any]) -> pd.DataFrame:
    """A DataFrame with exactly these columns and dtypes (empty when there are no rows)."""
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})
    frame = pd.DataFrame(rows, columns=list(dtypes))
    for col, dtype in dtypes.items():
        if str(dtype).startswith("datetime64"):
            # A column of only NaT comes out naive; astype cannot add a zone to it.
            frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame.astype(dtypes)


@dataclass
class AuditResult:
    """Everything one audit concluded, as DataFrames plus a summary; reports render this."""

    flows: pd.DataFrame  # flow columns + client_role, server_role, verdict, rule, reason, match
    findings: pd.DataFrame  # FINDING_DTYPES
    expectations: pd.DataFrame  # EXPECTATION_DTYPES: one row per host x expected rule
    compliance: pd.DataFrame  # COMPLIANCE_DTYPES: per role and per host
    heartbeats: pd.DataFrame  # HEARTBEAT_DTYPES
    summary: dict[str, Any] = field(default_factory=dict)
    # What the capture lacked for a verdict (nothing judged, no Deep Security traffic).
    inconclusive: list[str] = field(default_factory=list)

    def worst_severity(self) -> str | None:
        """The most severe finding's severity, or None without findings."""
        if self.findings.empty:
            return None
        return min(self.findings["severity"].astype(str), key=SEVERITY_RANK.__getitem__)

    def exit_code(self, fail_on: str = "high") -> int:
        """1 when a finding reaches ``fail_on``; else 3 when the capture could not show
        compliance (``inconclusive``); else 0."""
        worst = self.worst_severity()
        if worst is not None and SEVERITY_RANK[worst] <= SEVERITY_RANK[fail_on]:
            return 1
        return INCONCLUSIVE_EXIT if self.inconclusive else 0
