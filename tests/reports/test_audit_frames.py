"""Shared views behind every audit report: verdict fallbacks, heartbeat rows, titles."""

from __future__ import annotations

from dsaudit.reports import audit_format as fm
from dsaudit.reports import audit_frames as af
from tests.reports.audit_data import build_result, empty_result


def test_verdict_falls_back_to_the_findings_without_summary_keys() -> None:
    result = build_result()
    result.summary = {}
    verdict = af.verdict(result)
    assert (verdict.compliant, verdict.exit_code, verdict.fail_on) == (False, 1, "high")
    assert verdict.counts == {"critical": 1, "high": 2, "medium": 5, "low": 0, "info": 1}
    assert verdict.quality_notes == []


def test_verdict_reason_below_the_fail_on_level() -> None:
    result = build_result()
    result.summary = {**result.summary, "fail_on": "critical", "compliant": False}
    assert af.verdict(result).reason() == (
        "1 finding reaches the fail-on level (critical): 1 critical."
    )
    clean = empty_result()
    clean.summary["finding_counts"] = {"critical": 0, "high": 0, "medium": 2, "low": 0, "info": 0}
    assert af.verdict(clean).reason() == (
        "No finding reaches the fail-on level (high); 2 lower findings."
    )


def test_heartbeat_expectations_without_rows_become_silent_agents() -> None:
    rows = {(r["agent"], r["direction"], r["port"]): r for r in af.heartbeat_rows(build_result())}
    # The heartbeats table has 5 rows; app01's and db01's 4118 expectations add two more.
    assert len(rows) == 7
    silent = rows[("db01", "manager->agent", 4118)]
    assert (silent["attempts"], silent["times"], silent["status"]) == (0, [], "none seen")
    # A host that is only a manager owes no agent heartbeat row.
    assert not any(agent == "dsm01" for agent, _, _ in rows)


def test_formatting_helpers() -> None:
    assert fm.kind_title("path_mtu_problem") == "Path MTU problem"
    assert fm.kind_title("blocked_expected_flow") == "Blocked expected flow"
    assert fm.endpoint("2001:db8::1", 443) == "[2001:db8::1]:443"
    assert fm.fmt_duration(1800.0) == "30 min" and fm.fmt_duration(93784) == "1 d 2 h"
    assert fm.fmt_bytes(80000) == "80.0 kB" and fm.fmt_bytes(999) == "999 B"
    assert fm.fmt_score(None) == "n/a" and fm.fmt_score(0.5) == "50%"
    assert fm.iso_utc("2024-05-06T09:00:00+02:00") == "2024-05-06T07:00:00.000000Z"
    assert fm.role_key("relay+agent") < fm.role_key("agent") < fm.role_key("unknown")


def test_damage_told_by_a_warning_is_said_once() -> None:
    damage = "file ends inside record 682: cut short"
    summary = {
        "captures": [
            {
                "path": "a.pcap",
                "damaged": damage,
                "warnings": [f"a.pcap: byte 9: {damage}; kept the 681 packets read before it"],
            },
            {"path": "b.pcap", "damaged": "bad header at byte 4", "warnings": ["snap 96"]},
        ],
        "quality": {
            "notes": [f"a.pcap is damaged: {damage}", "b.pcap is damaged: bad header at byte 4"]
        },
    }
    assert af.quality_notes(summary) == [
        f"a.pcap: byte 9: {damage}; kept the 681 packets read before it",
        "b.pcap is damaged: bad header at byte 4",
        "b.pcap: snap 96",
    ]
