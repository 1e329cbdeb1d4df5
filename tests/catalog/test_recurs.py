"""`recurs`: how often an expected flow recurs, read from rules files and site overrides."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dsaudit.catalog import Catalog, catalog_files, load_catalog
from dsaudit.catalog.schema import RECURS_DEFAULT_S
from dsaudit.cli import cli
from dsaudit.errors import CatalogError
from dsaudit.inventory import Inventory, load_inventory
from dsaudit.judge.expectations import recurrence

INVENTORY = """
deployment:
  version: "11.0"
  mode: on-premises
  communication: bidirectional
  database: postgresql
  heartbeat_interval: {heartbeat}
  updates: direct
hosts:
  manager: [10.20.0.10]
  database: [10.20.0.20]
  relay: [10.20.0.30]
  agent: [10.20.1.0/24]
"""

# A site rule whose `recurs` sits on line 12, where every problem with it is reported.
SITE_RULE = """\
schema: 1
rules:
  - id: site.agent.out.backup-9000
    role: agent
    direction: outbound
    transports: [tcp]
    ports: [9000]
    service: backup
    peer: deployment_tool
    purpose_en: Nightly backup to the deployment tool.
    expectation: required
    recurs: {recurs}
"""

# What the audit guessed from rule ids, ports and peers before the catalog said it:
# heartbeats follow the inventory, the database every 10 minutes, the rest hourly.
PREVIOUS = {
    "manager.in.heartbeat-4120": "heartbeat",
    "manager.out.updates-80-443": 3600,
    "manager.out.syslog-514": 3600,
    "manager.out.mssql-1433": 600,
    "manager.out.oracle-1521": 600,
    "manager.out.postgresql-5432": 600,
    "manager.out.azure-sql-11000-14999": 600,
    "manager.out.heartbeat-4118": "heartbeat",
    "manager.out.relay-4122": 3600,
    "relay.in.relay-4122": 3600,
    "relay.out.updates-80-443": 3600,
    "agent.in.heartbeat-4118": "heartbeat",
    "agent.out.updates-80-443": 3600,
    "agent.out.manager-443": "heartbeat",
    "agent.out.syslog-514": 3600,
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _inventory(heartbeat: str = "10m") -> Inventory:
    return load_inventory("inv.yaml", text=INVENTORY.format(heartbeat=heartbeat))


def _site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def _lint(path: Path) -> tuple[int, list[tuple[str, str]]]:
    """Exit code and (file:line, message) per problem, as `dsaudit rules lint` prints them."""
    result = CliRunner().invoke(cli, ["rules", "lint", str(path)])
    problems = []
    for line in result.stdout.splitlines():
        where, message = line.split(": ", 1)
        problems.append((where.rsplit("/", 1)[-1], message))
    return result.exit_code, problems


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("heartbeat", "heartbeat"),
        ("10m", 600),
        ("1h", 3600),
        ("90s", 90),
        ("1h30m", 5400),
        ("24h", 86400),
        ("600", 600),
    ],
)
def test_valid_recurs_values(tmp_path: Path, text: str, value: int | str) -> None:
    site = _site(tmp_path, SITE_RULE.format(recurs=text))
    assert load_catalog([site]).get("site.agent.out.backup-9000").recurs == value


def test_absent_recurs_is_the_hourly_default(tmp_path: Path) -> None:
    text = SITE_RULE.format(recurs="x").replace("    recurs: x\n", "")
    rule = load_catalog([_site(tmp_path, text)]).get("site.agent.out.backup-9000")
    assert rule.recurs == RECURS_DEFAULT_S == 3600
    assert recurrence(rule, _inventory()) == 3600.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("weekly", "'weekly' is not a duration like 10m, 90s or 1h"),
        ("10 minutes", "'10 minutes' is not a duration like 10m, 90s or 1h"),
        ("Heartbeat", "'Heartbeat' is not a duration like 10m, 90s or 1h"),
        ("1.5", "1.5 is not a duration like 10m, 90s or 1h"),
        ("true", "True is not a duration like 10m, 90s or 1h"),
        ("null", "None is not a duration like 10m, 90s or 1h"),
        ('""', "'' is not a duration like 10m, 90s or 1h"),
        ("[1h]", "['1h'] is not a duration like 10m, 90s or 1h"),
        ("0s", "the interval must be longer than zero"),
        ("0", "the interval must be longer than zero"),
        ("-5", "the interval must be longer than zero"),
    ],
)
def test_invalid_recurs_values_are_located(tmp_path: Path, text: str, message: str) -> None:
    code, problems = _lint(_site(tmp_path, SITE_RULE.format(recurs=text)))
    assert code == 2
    assert problems == [("site.yaml:12", f"recurs must be `heartbeat` or a duration: {message}")]


def test_catalog_recurs_is_what_the_audit_used_to_guess(catalog: Catalog) -> None:
    expected = {r.id: r.recurs for r in catalog if r.expectation in ("required", "conditional")}
    assert expected == PREVIOUS
    for heartbeat, seconds in (("10m", 600.0), ("2m", 120.0)):
        inventory = _inventory(heartbeat)
        for rule_id, recurs in PREVIOUS.items():
            want = seconds if recurs == "heartbeat" else float(recurs)
            assert recurrence(catalog.get(rule_id), inventory) == want, rule_id


def test_every_expected_vendor_rule_states_recurs() -> None:
    # The default is for site rules; the vendor catalog says it outright so a reader sees it.
    for path in catalog_files():
        for rule in yaml.safe_load(path.read_text())["rules"]:
            if rule["expectation"] != "optional":
                assert "recurs" in rule, f"{path.name}: {rule['id']}"


def test_list_shows_recurs() -> None:
    result = CliRunner().invoke(cli, ["rules", "list", "--format", "json"])
    records = {r["id"]: r for r in json.loads(result.stdout)}
    assert records["manager.out.postgresql-5432"]["recurs"] == 600
    assert records["agent.in.heartbeat-4118"]["recurs"] == "heartbeat"
    assert records["agent.out.census-80"]["recurs"] == 3600
    result = CliRunner().invoke(cli, ["rules", "list", "--format", "csv", "--role", "manager"])
    shown = {row["id"]: row["recurs"] for row in csv.DictReader(io.StringIO(result.stdout))}
    assert shown["manager.out.postgresql-5432"] == "10 min"
    assert shown["manager.out.heartbeat-4118"] == "heartbeat"
    assert shown["manager.out.relay-4122"] == "1 h"
    assert shown["manager.in.console-443"] == ""  # optional: never missing, so never shown


def test_recurs_override_reaches_the_rule_and_its_counterparts(tmp_path: Path) -> None:
    site = _site(
        tmp_path, "schema: 1\noverrides:\n  - id: agent.in.heartbeat-4118\n    recurs: 24h\n"
    )
    before, after = load_catalog(), load_catalog([site])
    inventory = _inventory()
    for rule_id in ("agent.in.heartbeat-4118", "manager.out.heartbeat-4118"):
        assert recurrence(before.get(rule_id), inventory) == 600.0
        rule = after.get(rule_id)
        assert recurrence(rule, inventory) == 86400.0
        assert rule.ports == before.get(rule_id).ports
        assert rule.notes[-1].kind == "site"
        assert rule.notes[-1].en == f"recurs heartbeat overridden to 24 h at {site}:3"
    # Another conversation with the same interval keeps following the inventory.
    assert recurrence(after.get("manager.in.heartbeat-4120"), inventory) == 600.0


def test_one_override_may_change_ports_and_recurs(tmp_path: Path) -> None:
    text = "schema: 1\noverrides:\n  - id: manager.in.heartbeat-4120\n    ports: [14120]\n"
    rule = load_catalog([_site(tmp_path, text + "    recurs: 1h30m\n")]).get(
        "manager.in.heartbeat-4120"
    )
    assert 14120 in rule.ports and rule.recurs == 5400
    assert [n.en.split(" at ")[0] for n in rule.notes if n.kind == "site"] == [
        "ports 4120 overridden to 14120",
        "recurs heartbeat overridden to 1 h 30 min",
    ]


def test_recurs_override_on_a_port_that_is_not_configurable(tmp_path: Path) -> None:
    rule_id = "manager.out.azure-sql-11000-14999"
    site = _site(tmp_path, f"schema: 1\noverrides:\n  - id: {rule_id}\n    recurs: 30m\n")
    rule = load_catalog([site]).get(rule_id)
    assert rule.configurable == "no"
    assert recurrence(rule, _inventory()) == 1800.0
    # Its port stays the vendor's: with `ports` the same override is refused.
    site.write_text(site.read_text() + "    ports: [1433]\n")
    code, problems = _lint(site)
    assert code == 2
    assert [where for where, _ in problems] == ["site.yaml:3"]
    assert problems[0][1].startswith(f"the port of {rule_id!r} is not configurable")


def test_override_needs_ports_or_recurs(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        "schema: 1\n"
        "overrides:\n"
        "  - id: agent.out.updates-80-443\n"
        "  - id: agent.out.syslog-514\n"
        "    recurs: weekly\n",
    )
    code, problems = _lint(site)
    assert code == 2
    assert problems == [
        ("site.yaml:3", "an override needs `ports`, `recurs` or both"),
        (
            "site.yaml:5",
            "recurs must be `heartbeat` or a duration: "
            "'weekly' is not a duration like 10m, 90s or 1h",
        ),
    ]
    with pytest.raises(CatalogError) as caught:
        load_catalog([site])
    assert [loc.line for loc, _ in caught.value.problems] == [3, 5]
