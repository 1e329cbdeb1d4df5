"""Every row of the vendor's port table is in the catalog, as the seed gives it."""

# The seed table below is one row per line on purpose: it reads like the vendor's table.
# ruff: noqa: E501

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsaudit.catalog import Rule, load_catalog

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "deep-security-ports.ja.txt"

# The 52 rows of the seed, in its order: manager inbound 5, outbound 25; relay inbound 2,
# outbound 2; agent inbound 4, outbound 14.  Ports: "80,443" is the seed's "80または443",
# "a-b" a range, "any" the TCP/UDP "すべて" port-scan row.
SEED_ROWS = """
id                                   role     dir  transports  ports                    peer
manager.in.api-443                   manager  in   tcp         443                      control_manager,api_client
manager.in.console-443               manager  in   tcp         443                      web_browser
manager.in.installer-download-443    manager  in   tcp         443                      agent
manager.in.heartbeat-4120            manager  in   tcp         4120                     agent
manager.in.web-installer-8080        manager  in   tcp         8080                     web_browser
manager.out.smtp-25                  manager  out  tcp         25                       smtp
manager.out.dns-53                   manager  out  udp         53                       dns
manager.out.smart-feedback-80        manager  out  tcp         80                       internet
manager.out.whois-80                 manager  out  tcp         80                       internet
manager.out.license-80-443           manager  out  tcp         80,443                   internet
manager.out.updates-80-443           manager  out  tcp         80,443                   internet
manager.out.download-center-80-443   manager  out  tcp         80,443                   internet
manager.out.ntp-123                  manager  out  udp         123                      ntp
manager.out.snmp-162                 manager  out  udp         162                      snmp
manager.out.ldap-389                 manager  out  tcp         389                      ldap
manager.out.cloud-account-389        manager  out  tcp         389                      internet
manager.out.nsx-443                  manager  out  tcp         443                      nsx
manager.out.vcenter-443              manager  out  tcp         443                      vcenter
manager.out.esxi-443                 manager  out  tcp         443                      esxi
manager.out.syslog-514               manager  out  udp         514                      syslog
manager.out.ldaps-636                manager  out  tcp         636                      ldap
manager.out.mssql-1433               manager  out  tcp         1433                     database
manager.out.oracle-1521              manager  out  tcp         1521                     database
manager.out.postgresql-5432          manager  out  tcp         5432                     database
manager.out.azure-sql-11000-14999    manager  out  tcp         11000-11999,14000-14999  database
manager.out.heartbeat-4118           manager  out  tcp         4118                     agent
manager.out.relay-4122               manager  out  tcp         4122                     relay
manager.out.port-scan                manager  out  tcp,udp     any                      agent
manager.out.csss-80-443              manager  out  tcp         80,443                   internet
manager.out.news-80-443              manager  out  tcp         80,443                   internet
relay.in.relay-4122                  relay    in   tcp         4122                     manager,agent,relay
relay.in.local-agent-4123            relay    in   tcp         4123                     agent
relay.out.updates-80-443             relay    out  tcp         80,443                   internet
relay.out.relay-4122                 relay    out  tcp         4122                     relay
agent.in.ssh-22                      agent    in   tcp         22                       manager,deployment_tool
agent.in.heartbeat-4118              agent    in   tcp         4118                     manager
agent.in.rdp-3389                    agent    in   tcp         3389                     manager
agent.in.winrm-5985                  agent    in   tcp         5985                     deployment_tool
agent.out.dns-53                     agent    out  udp         53                       dns
agent.out.gfr-80                     agent    out  tcp         80                       internet
agent.out.census-80                  agent    out  tcp         80                       internet
agent.out.download-center-80-443     agent    out  tcp         80,443                   internet
agent.out.updates-80-443             agent    out  tcp         80,443                   internet
agent.out.connectivity-test-80-443   agent    out  tcp         80,443                   web_server
agent.out.machine-learning-80-443    agent    out  tcp         80,443                   internet
agent.out.spn-80-443                 agent    out  tcp         80,443                   internet
agent.out.sps-80-443                 agent    out  tcp         80,443                   smart_protection_server
agent.out.ntp-123                    agent    out  udp         123                      ntp
agent.out.manager-443                agent    out  tcp         443                      manager
agent.out.syslog-514                 agent    out  udp         514                      syslog
agent.out.wrs-5274                   agent    out  tcp         5274                     internet
agent.out.sps-wrs-5274               agent    out  tcp         5274                     smart_protection_server
"""

# Host names per rule as the seed lists them (normalised); "*" = no version heading.
V11, V102, V100 = ("11.0",), ("10.2", "10.3"), ("10.0", "10.1")
SEED_HOSTNAMES: dict[str, list[tuple[tuple[str, ...], list[str]]]] = {
    "manager.out.smart-feedback-80": [
        (
            (),
            [
                "deepsecurity1100-en.fbs25.trendmicro.com",
                "deepsecurity1100-jp.fbs25.trendmicro.com",
            ],
        )
    ],
    "manager.out.whois-80": [((), ["reports.internic.net"])],
    "manager.out.license-80-443": [((), ["licenseupdate.trendmicro.com"])],
    "manager.out.updates-80-443": [
        ((), ["iaus.activeupdate.trendmicro.com", "ipv6-iaus.trendmicro.com"])
    ],
    "manager.out.download-center-80-443": [((), ["files.trendmicro.com"])],
    "manager.out.csss-80-443": [
        ((), ["gacl.trendmicro.com", "grid-global.trendmicro.com", "grid.trendmicro.com"])
    ],
    "manager.out.news-80-443": [((), ["news.deepsecurity.trendmicro.com"])],
    "relay.out.updates-80-443": [
        ((), ["iaus.activeupdate.trendmicro.com", "ipv6-iaus.trendmicro.com"])
    ],
    "agent.out.gfr-80": [
        (V11, ["deepsec11-en.gfrbridge.trendmicro.com", "deepsec11-jp.gfrbridge.trendmicro.com"]),
        (
            V102,
            [
                "deepsec102-en.gfrbridge.trendmicro.com",
                "deepsec102-jp.gfrbridge.trendmicro.com",
                "deepsec102-cn.gfrbridge.trendmicro.com",
            ],
        ),
        (
            V100,
            [
                "deepsec10-en.grid-gfr.trendmicro.com",
                "deepsec10-jp.grid-gfr.trendmicro.com",
                "deepsec10-cn.grid-gfr.trendmicro.com",
            ],
        ),
    ],
    "agent.out.census-80": [
        (V11, ["ds1100-en-census.trendmicro.com", "ds1100-jp-census.trendmicro.com"]),
        (
            V102,
            [
                "ds1020-en-census.trendmicro.com",
                "ds1020-sc-census.trendmicro.com",
                "ds1020-jp-census.trendmicro.com",
            ],
        ),
        (
            V100,
            [
                "ds1000-en.census.trendmicro.com",
                "ds1000-jp.census.trendmicro.com",
                "ds1000-sc.census.trendmicro.com",
                "ds1000-tc.census.trendmicro.com",
            ],
        ),
    ],
    "agent.out.download-center-80-443": [((), ["files.trendmicro.com"])],
    "agent.out.updates-80-443": [
        ((), ["iaus.activeupdate.trendmicro.com", "ipv6-iaus.trendmicro.com"])
    ],
    "agent.out.machine-learning-80-443": [
        (
            V11,
            [
                "ds110-en-f.trx.trendmicro.com",
                "ds110-jp-f.trx.trendmicro.com",
                "ds110-sc-f.trx.trendmicro.com",
            ],
        ),
        (
            V102,
            [
                "ds102-en-f.trx.trendmicro.com",
                "ds102-jp-f.trx.trendmicro.com",
                "ds102-sc-f.trx.trendmicro.com",
            ],
        ),
    ],
    "agent.out.spn-80-443": [
        (V11, ["ds110.icrc.trendmicro.com", "ds110-jp.icrc.trendmicro.com"]),
        (
            V102,
            [
                "ds102.icrc.trendmicro.com",
                "ds102-jp.icrc.trendmicro.com",
                "ds102-sc.icrc.trendmicro.com.cn",
            ],
        ),
        (
            V100,
            [
                "ds10.icrc.trendmicro.com",
                "ds10-jp.icrc.trendmicro.com",
                "ds10-sc.icrc.trendmicro.com",
            ],
        ),
    ],
    "agent.out.wrs-5274": [
        (V11, ["ds11-0-en.url.trendmicro.com", "ds11-0-jp.url.trendmicro.com"]),
        (
            V102,
            [
                "ds10-2-en.url.trendmicro.com",
                "ds10-2-sc.url.trendmicro.com.cn",
                "ds10-2-jp.url.trendmicro.com",
            ],
        ),
        (
            V100,
            [
                "ds100-en.url.trendmicro.com",
                "ds100-sc.url.trendmicro.com",
                "ds100-jp.url.trendmicro.com",
            ],
        ),
    ],
}


def _table() -> list[dict[str, str]]:
    lines = [line.split() for line in SEED_ROWS.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    return [dict(zip(header, row, strict=True)) for row in rows]


def _ports(rule: Rule) -> str:
    return "any" if rule.ports.any else ",".join(str(r) for r in rule.ports.ranges)


@pytest.fixture(scope="module")
def catalog_rules() -> list[Rule]:
    return list(load_catalog().rules)


def test_the_seed_has_52_rows_and_the_catalog_has_them_in_order(
    catalog_rules: list[Rule],
) -> None:
    table = _table()
    assert len(table) == 52
    assert [r.id for r in catalog_rules] == [row["id"] for row in table]


@pytest.mark.parametrize("row", _table(), ids=lambda row: row["id"])
def test_row(row: dict[str, str], catalog_rules: list[Rule]) -> None:
    rule = next(r for r in catalog_rules if r.id == row["id"])
    actual = {
        "id": rule.id,
        "role": rule.role,
        "dir": "in" if rule.direction == "inbound" else "out",
        "transports": ",".join(rule.transports),
        "ports": _ports(rule),
        "peer": ",".join(rule.peers),
    }
    assert actual == row


def test_host_names_per_rule_and_version(catalog_rules: list[Rule]) -> None:
    actual = {}
    for rule in catalog_rules:
        if not rule.hostnames:
            continue
        groups: list[tuple[tuple[str, ...], list[str]]] = []
        for entry in rule.hostnames.entries:
            if groups and groups[-1][0] == entry.versions:
                if entry.name not in groups[-1][1]:
                    groups[-1][1].append(entry.name)
            else:
                groups.append((entry.versions, [entry.name]))
        actual[rule.id] = groups
    assert actual == SEED_HOSTNAMES


def _seed_text() -> str:
    if not SEED.exists():
        pytest.skip(f"the seed is not beside the repository ({SEED})")
    return SEED.read_text(encoding="utf-8")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_japanese_text_is_the_seeds_own(catalog_rules: list[Rule]) -> None:
    seed = _squash(_seed_text())
    for rule in catalog_rules:
        for line in rule.purpose_ja.splitlines():
            assert _squash(line.split(": ", 1)[-1]) in seed, (rule.id, line)
        for note in rule.notes:
            if note.ja:
                assert _squash(note.ja) in seed, (rule.id, note.ja)
        for entry in rule.hostnames.entries:
            assert entry.text in seed, (rule.id, entry.text)


def test_every_name_in_the_seed_is_in_the_catalog(catalog_rules: list[Rule]) -> None:
    seed = _seed_text()
    names = {
        m.group(0).rstrip(".").lower()
        for m in re.finditer(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|cn)\b", seed)
    }
    # Documentation links, not peers of Deep Security.
    names -= {"docs.aws.amazon.com", "docs.microsoft.com"}
    catalog_names = set().union(*(r.hostnames.flat for r in catalog_rules))
    assert names == catalog_names
