"""Inventory loading, validation with file:line errors, and the role look-ups."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dsaudit.cli import main
from dsaudit.errors import InventoryError
from dsaudit.inventory import load_inventory, parse_duration, parse_host_entry

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "tests" / "files" / "inventory"
EXAMPLE = ROOT / "examples" / "inventory.yaml"

ISSUE_EXAMPLE = """\
deployment:
  version: "11.0"
  mode: on-premises              # or as-a-service
  communication: bidirectional   # or agent-initiated, manager-initiated
  database: postgresql           # or mssql, oracle, azure-sql
  heartbeat_interval: 10m
  updates: relay                 # or direct
hosts:
  manager: [10.20.0.10]
  database: [10.20.0.20]
  relay: [10.20.0.30]
  agent: [10.20.1.0/24]
  dns: [10.20.0.2]
  ntp: [10.20.0.3]
  smtp: [10.20.0.25]
  syslog: [10.20.0.40]
  ldap: [10.20.0.50]
  proxy: ["10.20.0.60:3128"]
names:
  manager: [dsm.corp.example]
"""


def test_the_issue_example_loads_with_its_settings() -> None:
    inv = load_inventory("issue.yaml", ISSUE_EXAMPLE)
    d = inv.deployment
    assert (d.version, d.mode, d.communication, d.database, d.updates) == (
        "11.0",
        "on-premises",
        "bidirectional",
        "postgresql",
        "relay",
    )
    assert d.heartbeat_interval == 600
    assert d.siem == "via-manager"  # a syslog host is given
    assert inv.roles_of("10.20.0.10") == {"manager"}
    assert inv.roles_of("10.20.1.77") == {"agent"}
    assert inv.roles_of("10.20.0.30") == {"relay", "agent"}  # a relay is an agent as well
    assert inv.roles_of(ipaddress.ip_address("10.20.0.60")) == {"proxy"}
    assert inv.roles_of("192.0.2.1") == frozenset()
    assert [e.text for e in inv.hosts_for("agent")] == ["10.20.1.0/24", "10.20.0.30"]
    assert [e.text for e in inv.hosts_for("agent", implied=False)] == ["10.20.1.0/24"]
    assert inv.hosts_for("proxy")[0].port == 3128
    assert inv.roles_of_name("DSM.corp.example.") == {"manager"}
    assert inv.facts()["proxy"] == "true"


def test_the_shipped_example_is_valid_and_dual_stack() -> None:
    inv = load_inventory(EXAMPLE)
    assert inv.deployment.agent_versions == ("11.0", "10.3")
    assert inv.roles_of("2001:db8:21::9") == {"agent"}
    assert inv.roles_of("2001:db8:20::10") == {"manager"}
    assert inv.hosts_for("vcenter")[0].hostname == "vcenter.corp.example"
    assert inv.hosts_for("vcenter")[0].network is None


def test_ipv6_entries_and_proxies() -> None:
    inv = load_inventory(FILES / "ipv6.yaml")
    d = inv.deployment
    assert (d.mode, d.communication, d.updates, d.siem) == (
        "as-a-service",
        "agent-initiated",
        "direct",
        "direct",
    )
    assert d.database is None and d.heartbeat_interval == 90
    proxies = inv.hosts_for("proxy")
    assert [(str(p.network) if p.network else p.hostname, p.port) for p in proxies] == [
        ("2001:db8::3128/128", 3128),
        ("proxy.corp.example", 8080),
        ("10.0.0.60/32", 3128),
    ]
    assert inv.roles_of("2001:db8:1::30") == {"relay", "agent"}
    assert inv.roles_of("2001:db8:1:ffff::1") == {"agent"}
    assert inv.roles_of_name("agents.deepsecurity.trendmicro.com") == {"manager"}
    assert inv.facts()["versions"] == ("11.0", "10.0")


@pytest.mark.parametrize(
    ("text", "seconds"), [("10m", 600), ("90s", 90), ("1h", 3600), ("1m30s", 90), (45, 45)]
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "10 minutes", "", "m", -5, True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "role", "network", "hostname", "port"),
    [
        ("10.0.0.1", "manager", "10.0.0.1/32", None, None),
        ("10.0.0.0/8", "agent", "10.0.0.0/8", None, None),
        ("2001:db8::1", "manager", "2001:db8::1/128", None, None),
        ("2001:db8::/32", "agent", "2001:db8::/32", None, None),
        ("DSM.Corp.Example", "manager", None, "dsm.corp.example", None),
        ("10.0.0.60:3128", "proxy", "10.0.0.60/32", None, 3128),
        ("[2001:db8::60]:8080", "proxy", "2001:db8::60/128", None, 8080),
        ("squid.corp:3128", "proxy", None, "squid.corp", 3128),
    ],
)
def test_host_entries(
    text: str, role: str, network: str | None, hostname: str | None, port: int | None
) -> None:
    entry = parse_host_entry(text, role)
    assert (str(entry.network) if entry.network else None, entry.hostname, entry.port) == (
        network,
        hostname,
        port,
    )


def test_every_problem_is_reported_with_its_line() -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory(FILES / "broken.yaml")
    got = [(loc.line, message) for loc, message in caught.value.problems]
    assert got == [
        (2, "an on-premises deployment needs `database` (postgresql, mssql, oracle, azure-sql)"),
        (3, "version: '9.5' is not a version the catalog knows (10.0, 10.1, 10.2, 10.3, 11.0)"),
        (4, "mode must be one of on-premises, as-a-service; got 'on-prem'"),
        (6, "heartbeat_interval: 'ten minutes' is not a duration like 10m, 90s or 1h"),
        (8, "siem: direct needs the SIEM's address under hosts.syslog"),
        (10, "hosts.manager: '10.20.0.10' is listed twice"),
        (11, "hosts.agent: '10.20.1.5/24' is not a network: 10.20.1.5/24 has host bits set"),
        (12, "hosts.relay: '10.20.0.30:4122': only proxy entries take a port"),
        (13, "hosts.proxy: '10.20.0.60': a proxy entry needs its port (address:port)"),
        (14, "hosts.dns: '10.20.0.256' is not a valid IPv4 address"),
        (15, got[10][1]),
        (16, "hosts.ntp: '2001:db8::zz' is not an address, network or host name"),
        (18, "names.manager: 'not a name' is not a host name"),
    ]
    assert got[10][1].startswith("unknown key 'printer' in hosts (known: agent, api_client")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "the file is empty"),
        ("- 1\n- 2\n", 1, "an inventory is a mapping, not a list"),
        ("hosts:\n  agent: [10.0.0.1\n", 3, "YAML syntax error"),
        ("deployment:\n  mode: as-a-service\n  database: mssql\nhosts: {}\n", 3, "no database"),
        ("deployment: {database: mssql}\nhosts:\n  agent: [10.5]\n", 3, "must be quoted text"),
        ("deployment: {database: mssql}\n", 1, "an inventory is missing 'hosts'"),
        ("deployment: !!python/object:os.system {}\nhosts: {}\n", 1, "unsupported YAML tag"),
        ("deployment: {database: mssql}\nhosts: !!python/name:os.system\n", 2, "unsupported"),
        ("deployment: {database: mssql}\nhosts: &h {agent: *h}\n", 2, "recursive YAML alias"),
    ],
)
def test_small_broken_inventories(text: str, line: int, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory("inline.yaml", text)
    (loc, got), *rest = caught.value.problems
    assert rest == [] and loc.line == line and message in got


def test_inventory_check_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["inventory", "check", str(EXAMPLE)])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "communication bidirectional, database postgresql, heartbeat every 600s" in out
    with pytest.raises(SystemExit) as exited:
        main(["inventory", "check", str(FILES / "broken.yaml")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("broken.yaml:") == 13
