"""The terminal audit report: content, order, capture caveats, escaping and when it colours."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from dsaudit.reports.audit_output import write_audit
from dsaudit.reports.audit_terminal import render_terminal
from tests.reports.audit_data import build_result, empty_result

SGR = re.compile(r"\x1b\[[0-9;]*m")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _section(text: str, title: str) -> list[str]:
    """The lines of one titled section, up to the next blank line."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def test_header_states_verdict_exit_code_capture_and_vantage() -> None:
    out = render_terminal(build_result())
    first = out.splitlines()[0]
    assert first == "Deep Security traffic audit: NOT COMPLIANT (exit code 1)"
    assert "3 findings reach the fail-on level (high): 1 critical, 2 high." in out
    assert "Findings: 1 critical · 2 high · 5 medium · 0 low · 1 info" in out
    assert "captures/dsm01-2024-05-06.pcapng (pcapng, 18,234 packets)" in out
    assert "captures/segment-b.pcap.gz (pcap, 912 packets, damaged)" in out
    assert "Vantage     SPAN / mirror port (detected; conversations between 7 other" in out
    assert "2024-05-06 09:00:00 – 2024-05-06 09:30:00 UTC (30 min)" in out


def test_poor_capture_says_so_next_to_the_verdict() -> None:
    out = render_terminal(build_result())
    assert "Capture quality: LIMITED. The verdict rests on a capture with 3 caveats:" in out
    assert "  ! captures/segment-b.pcap.gz is damaged: truncated record at byte 1048576" in out
    assert "TCP flows without a SYN (began before the capture)  2 (18.0%)" in out
    # The caveat comes before any table, where a reader of the verdict cannot miss it.
    assert out.index("LIMITED") < out.index("Compliance per role")


def test_clean_capture_and_empty_audit() -> None:
    out = render_terminal(empty_result())
    assert out.startswith("Deep Security traffic audit: COMPLIANT (exit code 0)\n")
    assert "Capture quality: no known limits." in out
    for empty in ("(no findings)", "(no unexplained flows)", "(no expected flows)"):
        assert empty in out


def test_compliance_per_role_in_role_order() -> None:
    rows = _section(render_terminal(build_result()), "Compliance per role")
    assert rows[0].split()[0] == "role" and rows[0].split()[-1] == "score"
    assert [r.split()[0] for r in rows[2:]] == ["manager", "relay", "agent"]
    assert rows[2].split() == ["manager", "3", "1", "1", "0", "0", "0", "50%"]


def test_findings_most_severe_first() -> None:
    rows = _section(render_terminal(build_result()), "Findings, most severe first")
    severities = [r.split()[0] for r in rows[2:] if r[:1].strip()]
    assert severities == ["CRITICAL", "HIGH", "HIGH"] + ["MEDIUM"] * 5 + ["INFO"]
    assert "Blocked expected flow" in rows[2] and "db01" in rows[2]


def test_top_unexplained_destinations_by_count_then_bytes() -> None:
    rows = _section(render_terminal(build_result()), "Top unexplained destinations")
    first = rows[2].split()
    assert first[:3] == ["10.20.0.99:8443", "tcp", "metrics.example.net"]
    assert first[-5:] == ["unknown", "2", "1", "80.0", "kB"]
    # Ties on count are broken by bytes, then address: the relay's 4123 flow came second.
    assert rows[3].startswith("10.20.0.20:4123")


def test_heartbeats_per_agent_with_status() -> None:
    rows = _section(render_terminal(build_result()), "Heartbeats per agent")
    assert rows[0] == "Configured heartbeat interval: 10 min."
    by_agent = {(r.split()[0], r.split()[1]): r for r in rows[3:]}
    assert by_agent[("app01", "agent->manager")].endswith("none seen")
    assert by_agent[("db01", "agent->manager")].rstrip().endswith("failing")
    assert by_agent[("dsr01", "agent->manager")].rstrip().endswith("some failed")
    assert by_agent[("web01", "manager->agent")].rstrip().endswith("ok")
    # db01's 4118 heartbeat has no row in the heartbeats table; its missing expectation adds one.
    assert by_agent[("db01", "manager->agent")].split()[2:6] == ["4118", "0", "0", "0"]
    assert by_agent[("db01", "manager->agent")].rstrip().endswith("none seen")
    assert len(by_agent) == 7


def test_hostile_names_cannot_drive_the_terminal() -> None:
    out = render_terminal(build_result(), colour=False)
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[2J\\x1b[31mevil.example\\x1b[0m" in out
    # A newline in a name is shown, not obeyed: no row of the table starts with the forgery.
    assert "a|b|c.example\\x0a| forged | row" in out
    assert not any(line.startswith("| forged") for line in out.splitlines())


def test_colour_only_ours_and_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    tty = _Tty()
    monkeypatch.setattr("sys.stdout", tty)
    write_audit(build_result(), "table", None)
    coloured = tty.getvalue()
    assert "\x1b[1;97;41m NOT COMPLIANT \x1b[0m" in coloured
    # Every escape sequence is one of our SGR codes; the hostile ones stay text.
    assert SGR.sub("", coloured).count("\x1b") == 0
    # Colour changes no layout: the same lines as without it, fitted to the terminal.
    assert SGR.sub("", coloured) == render_terminal(build_result(), width=100).replace(
        "NOT COMPLIANT", " NOT COMPLIANT "
    )


def test_no_colour_with_no_color_pipe_or_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    tty = _Tty()
    monkeypatch.setattr("sys.stdout", tty)
    write_audit(build_result(), "table", "-")
    assert "\x1b" not in tty.getvalue()
    monkeypatch.delenv("NO_COLOR")
    target = tmp_path / "audit.txt"
    assert write_audit(build_result(), "table", str(target)) == [str(target)]
    assert "\x1b" not in target.read_text(encoding="utf-8")
    monkeypatch.undo()
    write_audit(build_result(), "table", None)  # captured stdout is not a terminal
    assert "\x1b" not in capsys.readouterr().out


def test_long_sections_are_capped_with_a_pointer() -> None:
    result = build_result()
    findings = result.findings
    many = findings.loc[findings.index.repeat(6)].reset_index(drop=True)
    many["finding_id"] = range(1, len(many) + 1)
    result.findings = many
    out = render_terminal(result)
    assert "… and 14 more findings (use --format html, json or csv for all of them)" in out
