"""`dsaudit rules list` and `dsaudit rules lint`, run through the real CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsaudit.cli import cli, main

FILES = Path(__file__).resolve().parents[1] / "files" / "catalog"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_lint_of_the_vendor_catalog_is_clean() -> None:
    code, out, err = run("rules", "lint")
    assert (code, err) == (0, "")
    assert out == "ok: 52 rules in 3 files\n"


def test_lint_reports_every_problem_with_its_line() -> None:
    code, out, err = run(
        "rules", "lint", str(FILES / "broken-site.yaml"), str(FILES / "syntax-error.yaml")
    )
    assert code == 2
    lines = out.splitlines()
    where = [line.split(": ", 1)[0].rsplit("/", 1)[-1] for line in lines]
    assert where == [
        "broken-site.yaml:10",
        "broken-site.yaml:13",
        "broken-site.yaml:17",
        "broken-site.yaml:17",
        "broken-site.yaml:21",
        "broken-site.yaml:25",
        "broken-site.yaml:30",
        "broken-site.yaml:33",
        "broken-site.yaml:35",
        "broken-site.yaml:39",
        "broken-site.yaml:45",
        "broken-site.yaml:47",
        "broken-site.yaml:49",
        "syntax-error.yaml:6",
    ]
    messages = [line.split(": ", 1)[1] for line in lines]
    assert "a site rule's id must start with 'site.'" in messages[1]
    assert messages[2] == "port 70000 is outside 1-65535"
    assert messages[3] == "port range [9000, 8000] runs backwards"
    assert messages[4] == "a conditional rule needs a `when` saying on what"
    assert messages[5] == "transports: 'sctp' is not one of tcp, udp"
    assert messages[6].startswith("host name '*.cdn.example': wildcards are not allowed")
    assert messages[7].startswith("unknown key 'colour' in a rule")
    assert messages[8] == "database: 'sqlite' is not one of postgresql, mssql, oracle, azure-sql"
    assert messages[9] == "duplicate key 'direction' (first at line 38)"
    assert messages[11].startswith("the port of 'manager.in.console-443' is not configurable")
    assert messages[12] == "override of unknown rule id 'manager.in.no-such-rule'"
    assert messages[13].startswith("YAML syntax error")
    assert err.strip() == "14 problems found"


def test_lint_checks_a_catalog_directory_across_files() -> None:
    code, out, _ = run("rules", "lint", str(FILES / "broken-catalog"))
    assert code == 2
    got = [
        (line.split(": ", 1)[0].rsplit("/", 1)[-1], line.split(": ", 1)[1])
        for line in out.splitlines()
    ]
    assert [g[0] for g in got] == [
        "agent.yaml:15",
        "agent.yaml:27",
        "manager.yaml:4",
        "manager.yaml:4",
        "manager.yaml:17",
        "manager.yaml:17",
        "manager.yaml:17",
        "manager.yaml:26",
    ]
    assert got[0][1].startswith("duplicate rule id 'manager.out.heartbeat-4118' (first at ")
    assert "does not list it back" in got[2][1]
    assert "has other ports or transports (4119 vs 4118)" in got[3][1]
    assert got[4][1] == "a catalog rule is missing 'purpose_ja' (the seed's text)"
    assert got[7][1] == "an ambiguous rule needs a note of kind `ambiguity`"


def test_a_broken_site_file_in_list_is_exit_2_and_no_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["rules", "list", "--site", str(FILES / "broken-site.yaml")])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert captured.err.startswith("dsaudit: error: ")
    assert "broken-site.yaml:49: override of unknown rule id" in captured.err


def test_list_json_has_the_documented_fields() -> None:
    code, out, _ = run("rules", "list", "--format", "json")
    assert code == 0
    records = json.loads(out)
    assert len(records) == 52
    by_id = {r["id"]: r for r in records}
    sql = by_id["manager.out.azure-sql-11000-14999"]
    assert sql["ports"] == [[11000, 11999], [14000, 14999]]
    assert sql["transports"] == ["tcp"] and sql["peer"] == ["database"]
    assert by_id["manager.out.port-scan"]["ports"] == "any"
    assert by_id["manager.out.port-scan"]["transports"] == ["tcp", "udp"]
    gfr = by_id["agent.out.gfr-80"]
    assert len(gfr["hostnames"]) == 8
    assert gfr["hostnames_by_version"]["10.3"] == [
        "deepsec102-en.gfrbridge.trendmicro.com",
        "deepsec102-jp.gfrbridge.trendmicro.com",
        "deepsec102-cn.gfrbridge.trendmicro.com",
    ]
    updates = by_id["manager.out.updates-80-443"]
    assert updates["hostname_entries"][0] == {
        "name": "iaus.activeupdate.trendmicro.com",
        "text": "https://iaus.activeupdate.trendmicro.com/",
        "versions": [],
        "example": False,
    }
    assert updates["when"] == {"updates": ["direct"]} and updates["proxy"] == "socks"
    assert by_id["relay.in.local-agent-4123"]["localhost_only"] is True
    for record in records:
        for key in ("expectation", "configurable", "proxy", "purpose_ja", "purpose_en", "notes"):
            assert key in record
        assert record["purpose_ja"] and record["purpose_en"]


def test_list_filters() -> None:
    _, out, _ = run(
        "rules", "list", "--format", "json", "--role", "agent", "--direction", "inbound"
    )
    assert [r["id"] for r in json.loads(out)] == [
        "agent.in.ssh-22",
        "agent.in.heartbeat-4118",
        "agent.in.rdp-3389",
        "agent.in.winrm-5985",
    ]
    _, out, _ = run("rules", "list", "--format", "json", "--version", "10.0", "--role", "agent")
    assert "agent.out.machine-learning-80-443" not in {r["id"] for r in json.loads(out)}
    _, out, _ = run("rules", "list", "--format", "json", "--role", "relay", "--with-implied")
    assert len(json.loads(out)) == 22


def test_table_shows_the_names_of_the_chosen_version() -> None:
    code, out, _ = run("rules", "list", "--role", "agent", "--version", "10.2")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["id", "transports", "ports"]
    assert "deepsec102-cn.gfrbridge.trendmicro.com" in out
    assert "deepsec11-en.gfrbridge.trendmicro.com" not in out


def test_csv_neutralises_formulas_and_markdown_escapes_pipes() -> None:
    site = str(FILES / "formula-site.yaml")
    _, out, _ = run("rules", "list", "--format", "csv", "--site", site, "--role", "manager")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 31
    row = next(r for r in rows if r["id"] == "site.manager.out.formula-1")
    assert row["service"] == '\'=HYPERLINK("http://evil.example")'
    assert row["purpose_en"] == "'@SUM(A1:A9) | pipes | here"
    _, out, _ = run("rules", "list", "--format", "markdown", "--site", site)
    line = next(line for line in out.splitlines() if "formula-1" in line)
    assert "@SUM(A1:A9) \\| pipes \\| here" in line
    assert line.count(" | ") == 11  # twelve columns, the pipes in the text escaped
