"""What a newcomer meets on the command line: one-line errors, early refusals, help, one
vocabulary for site rules, periodic reports without side effects and readable history diffs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

from dsaudit.cli import cli
from tests.processes import ROOT, dsaudit_process

SAMPLE = str(ROOT / "samples" / "problems.pcap")
HEALTHY = str(ROOT / "samples" / "healthy.pcap")
INVENTORY = str(ROOT / "samples" / "problems.inventory.yaml")


def _one_error_line(proc: object) -> str:
    lines = proc.stderr.splitlines()  # type: ignore[attr-defined]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr  # type: ignore[attr-defined]
    assert proc.stdout == ""  # type: ignore[attr-defined]
    assert lines[0].startswith("dsaudit: error: ") and "Traceback" not in lines[0]
    return lines[0]


def test_a_directory_as_capture_is_one_line() -> None:
    line = _one_error_line(dsaudit_process("audit", str(ROOT / "samples")))
    assert "is a directory" in line and "dsaudit audit --help" in line


def test_a_wrong_format_is_one_line() -> None:
    line = _one_error_line(dsaudit_process("audit", SAMPLE, "--format", "xml"))
    assert "'xml' is not one of" in line and "'json'" in line


def test_an_output_in_a_missing_folder_is_refused_before_the_work(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "x"
    for args in (
        ("audit", SAMPLE, "--inventory", INVENTORY),
        ("flows", SAMPLE),
        ("report", SAMPLE, "--no-history"),
        ("inventory", "infer", SAMPLE),
        ("firewall", "--inventory", INVENTORY),
    ):
        line = _one_error_line(dsaudit_process(*args, "-o", str(target)))
        assert f"cannot write {target}: the folder {target.parent} does not exist" in line
        # Refused while reading the options: no audit ran, so no note about inferred roles.
        assert "note" not in line
    assert not target.parent.exists()


def _commands(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            found += _commands(sub, f"{path} {name}")
    return found


def test_every_option_has_help_text() -> None:
    missing = [
        f"{path} {param.opts[0]}"
        for path, command in _commands(cli, "dsaudit")
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert missing == []


def test_site_rules_are_site_everywhere_and_rules_still_works(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "schema: 1\n"
        "rules:\n"
        "  - id: site.agent.out.backup-9999\n"
        "    role: agent\n    direction: outbound\n    transports: [tcp]\n    ports: [9999]\n"
        "    service: backup\n    peer: internet\n    expectation: optional\n"
        "    purpose_en: Backups.\n"
    )
    for path, command in _commands(cli, "dsaudit"):
        names = {o for p in command.params for o in getattr(p, "opts", [])}
        if names & {"--site", "--rules"}:
            assert "--site" in names, path
            helptext = command.get_help(click.Context(command, info_name=path))
            assert "--site" in helptext and not re.search(r"--rules(?![-\w])", helptext), path
    listed = dsaudit_process("rules", "list", "--site", str(site), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert "site.agent.out.backup-9999" in {r["id"] for r in json.loads(listed.stdout)}
    # The audit reads the file under either name (--rules, its old one, kept for a release):
    # a broken site file is reported, naming the file.
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: []\n")
    for name in ("--site", "--rules"):
        line = _one_error_line(dsaudit_process("audit", HEALTHY, name, str(broken)))
        assert f"{broken}:1: a rules file is missing 'schema'" in line


def test_lint_prints_its_result_on_stdout() -> None:
    proc = dsaudit_process("rules", "lint")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("ok: ")


def test_deployment_line_says_how_updates_arrive() -> None:
    proc = dsaudit_process("audit", SAMPLE, "--inventory", INVENTORY)
    assert "direct updates from Trend Micro" in proc.stdout and "updates via" not in proc.stdout
    healthy = ROOT / "samples" / "healthy.inventory.yaml"
    proc = dsaudit_process("audit", HEALTHY, "--inventory", str(healthy))
    assert "updates from relays" in proc.stdout


def test_report_history_in_a_missing_folder_is_an_error_and_creates_nothing(
    tmp_path: Path,
) -> None:
    store = tmp_path / "nonexistent" / "dir" / "h.sqlite"
    line = _one_error_line(dsaudit_process("report", SAMPLE, "--history", str(store)))
    assert f"the folder {store.parent} does not exist" in line
    assert not (tmp_path / "nonexistent").exists()


def test_report_default_history_folder_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DSAUDIT_HISTORY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    proc = dsaudit_process("report", HEALTHY, "-o", str(tmp_path / "r.json"), "-j", "1")
    assert proc.returncode in (0, 1), proc.stderr
    assert (tmp_path / "data" / "dsaudit" / "history.sqlite").is_file()


def test_report_refuses_an_unknown_output_extension(tmp_path: Path) -> None:
    target = tmp_path / "r.xlsx"
    line = _one_error_line(dsaudit_process("report", SAMPLE, "--no-history", "-o", str(target)))
    assert ".xlsx" in line and "--format" in line
    assert not target.exists()
    # .txt is a table; an explicit --format wins over any extension.
    proc = dsaudit_process("report", SAMPLE, "--no-history", "-o", str(tmp_path / "r.txt"))
    assert (
        proc.returncode == 1 and "Findings, most severe first" in (tmp_path / "r.txt").read_text()
    )


def test_history_diff_defaults_to_the_two_latest_runs_in_pp(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    healthy_inv = str(ROOT / "samples" / "healthy.inventory.yaml")
    for capture in (HEALTHY, SAMPLE, SAMPLE):
        proc = dsaudit_process(
            "report", capture, "--inventory", healthy_inv, "--history", str(store),
            "-o", str(tmp_path / "r.json"), "-j", "1",
        )  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
    latest = dsaudit_process("history", "diff", "--history", str(store))
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout.startswith("run 2 -> run 3\n")
    assert "Compliance changes (0)" in latest.stdout
    one = dsaudit_process("history", "diff", "1", "--history", str(store))
    assert one.stdout.startswith("run 1 -> run 3\n")
    changes = [line for line in one.stdout.splitlines() if line.rstrip().endswith(" pp")]
    assert changes, one.stdout
    for line in changes:
        assert re.search(r"\d+\.\d%\s+\d+\.\d%\s+[-+]\d+\.\d pp$", line), line
    assert "0000000" not in one.stdout
    doc = json.loads(
        dsaudit_process("history", "diff", "1", "--history", str(store), "--format", "json").stdout
    )
    for row in doc["compliance"]:
        if row["change"] is not None:
            assert row["change_pp"] == round(row["change"] * 100, 1)
