"""Terminal tables fit the width ($COLUMNS or the terminal) and never break a rule id or address."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsaudit.text.fit import Table, render_table, wrap
from tests.processes import ROOT, dsaudit_process

SAMPLE = str(ROOT / "samples" / "problems.pcap")
INVENTORY = str(ROOT / "samples" / "problems.inventory.yaml")
WIDTHS = (80, 120)


def _tokens(text: str) -> set[str]:
    return {t.strip("(),;:") for t in text.split()}


def _audit_json() -> dict:  # type: ignore[type-arg]
    proc = dsaudit_process("audit", SAMPLE, "--inventory", INVENTORY, "--format", "json")
    doc: dict = json.loads(proc.stdout)  # type: ignore[type-arg]
    return doc


@pytest.mark.parametrize("columns", WIDTHS)
def test_audit_table_fits_and_keeps_ids_and_addresses_whole(
    columns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    proc = dsaudit_process("audit", SAMPLE, "--inventory", INVENTORY)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    tokens = _tokens(proc.stdout)
    findings = _audit_json()["findings"]
    for f in findings:
        if f["rule"]:
            assert f["rule"] in tokens
        if f["peer"] and f["port"] is not None:
            assert f"{f['peer']}:{f['port']}" in tokens
    assert "updates.evil-example.net" in tokens  # a hyphenated name is not split at "-"
    # Every message is there, whole, even if across lines.
    flat = " ".join(proc.stdout.split())
    for f in findings:
        if f["severity"] != "info":
            assert " ".join(f["message"].split()) in flat


def test_audit_to_a_file_keeps_each_row_on_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # $COLUMNS describes the terminal, not the file: a file gets whole lines for grep.
    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "audit.txt"
    proc = dsaudit_process("audit", SAMPLE, "--inventory", INVENTORY, "-o", str(out))
    assert proc.returncode == 1, proc.stderr
    text = out.read_text()
    for f in _audit_json()["findings"]:
        row = next(line for line in text.splitlines() if f["message"] in line)
        assert f["host"] in row and (f["rule"] or "") in row


def test_audit_to_a_pipe_without_columns_is_not_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    proc = dsaudit_process("audit", SAMPLE, "--inventory", INVENTORY)
    lines = proc.stdout.splitlines()
    for f in _audit_json()["findings"]:
        assert any(f["message"] in line and f["severity"].upper() in line for line in lines)


@pytest.mark.parametrize("columns", WIDTHS)
def test_flows_table_fits(columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    proc = dsaudit_process("flows", SAMPLE)
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= columns
    flows = [
        json.loads(x)
        for x in dsaudit_process("flows", SAMPLE, "--format", "jsonl").stdout.split("\n")
        if x
    ]
    tokens = _tokens(proc.stdout)
    for flow in flows:
        assert f"{flow['client_ip']}:{flow['client_port']}" in tokens
        if flow["server_name"]:
            assert flow["server_name"] in tokens


@pytest.mark.parametrize("columns", WIDTHS)
def test_rules_list_fits_and_keeps_host_names_whole(
    columns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    proc = dsaudit_process("rules", "list")
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= columns
    rules = json.loads(dsaudit_process("rules", "list", "--format", "json").stdout)
    tokens = _tokens(proc.stdout)
    for rule in rules:
        assert rule["id"] in tokens
        assert set(rule["hostnames"]) <= tokens


def test_wrap_breaks_only_at_spaces() -> None:
    assert wrap("a long-hyphenated.host-name.example and more", 10) == [
        "a",
        "long-hyphenated.host-name.example",
        "and more",
    ]
    assert wrap("one\ntwo three", 5) == ["one", "two", "three"]
    assert wrap("x" * 50, None) == ["x" * 50]


def test_a_row_too_wide_moves_its_message_under_it() -> None:
    heads = ["id", "n", "message"]
    rows = [["rule.one-4118", "3", "a message long enough that it has to go below the row"]]
    text = render_table(heads, rows, 40, right=[1], bare=2)
    assert text.splitlines() == [
        "id             n",
        "-------------  -",
        "rule.one-4118  3",
        "    a message long enough that it has to",
        "    go below the row",
    ]
    # With room, it stays a column.
    assert render_table(heads, rows, 100, bare=2).splitlines()[2].endswith("the row")


def test_other_moved_columns_are_labelled_and_coloured_values_keep_width() -> None:
    table = Table(
        headers=["agent", "direction", "status"],
        rows=[["10.20.1.12", "agent->manager", "failing"]],
        tones=[[None, None, "bad"]],
    )
    lines = table.render(28, paint=lambda t, tone: f"<{t}>" if tone else t)
    assert lines[2] == "10.20.1.12  agent->manager"
    assert lines[3] == "    status: <failing>"
    # Without a width nothing moves.
    assert table.render(None)[2].split() == ["10.20.1.12", "agent->manager", "failing"]
