"""Classification of flows against the real catalog for small, explicit deployments."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dsaudit.catalog import load_catalog
from dsaudit.inventory import load_inventory
from dsaudit.judge.classify import classify_flows
from tests.flow_rows import flow, frame

INVENTORY = """
deployment:
  version: "11.0"
  mode: on-premises
  communication: {communication}
  database: postgresql
  heartbeat_interval: 10m
  updates: {updates}
hosts:
  manager: [10.20.0.10]
  database: [10.20.0.20]
  relay: [10.20.0.30]
  agent: [10.20.1.0/24]
  dns: [10.20.0.2]
  proxy: ["10.20.0.60:3128"]
names:
  manager: [dsm.corp.example]
"""

MANAGER, DB, RELAY, AGENT, DNS, PROXY = (
    "10.20.0.10",
    "10.20.0.20",
    "10.20.0.30",
    "10.20.1.11",
    "10.20.0.2",
    "10.20.0.60",
)
CLOUD = "203.0.113.7"


def _classify(rows, communication="bidirectional", updates="direct", tmp_path=None):
    text = INVENTORY.format(communication=communication, updates=updates)
    inv = load_inventory("site.yaml", text=text)
    return classify_flows(frame(rows), load_catalog(), inv)


CASES = [
    # (description, flow fields, inventory settings, verdict, rule, reason, match)
    (
        "heartbeat to the manager",
        dict(client_ip=AGENT, server_ip=MANAGER, server_port=4120, server_name="dsm.corp.example"),
        {},
        "explained",
        "manager.in.heartbeat-4120",
        None,
        "port+role",
    ),
    (
        "relay heartbeats like an agent",
        dict(client_ip=RELAY, server_ip=MANAGER, server_port=4120),
        {},
        "explained",
        "manager.in.heartbeat-4120",
        None,
        "port+role",
    ),
    (
        "manager heartbeat to agent",
        dict(client_ip=MANAGER, server_ip=AGENT, server_port=4118),
        {},
        "explained",
        None,
        None,
        "port+role",
    ),
    (
        "4118 when agents initiate",
        dict(client_ip=MANAGER, server_ip=AGENT, server_port=4118),
        {"communication": "agent-initiated"},
        "unexplained",
        None,
        "wrong_direction",
        None,
    ),
    (
        "agent opening the manager's 4118 direction",
        dict(client_ip=AGENT, server_ip=MANAGER, server_port=4118),
        {},
        "unexplained",
        None,
        "wrong_direction",
        None,
    ),
    (
        "direct update by name",
        dict(
            client_ip=AGENT,
            server_ip=CLOUD,
            server_port=443,
            server_name="iaus.activeupdate.trendmicro.com",
        ),
        {},
        "explained",
        "agent.out.updates-80-443",
        None,
        "port+name",
    ),
    (
        "direct update while the site uses relays",
        dict(
            client_ip=AGENT,
            server_ip=CLOUD,
            server_port=443,
            server_name="iaus.activeupdate.trendmicro.com",
        ),
        {"updates": "relay"},
        "unexplained",
        "agent.out.updates-80-443",
        "not_applicable",
        None,
    ),
    (
        "unlisted name on 443",
        dict(
            client_ip=AGENT,
            server_ip=CLOUD,
            server_port=443,
            server_name="updates.evil-example.net",
        ),
        {},
        "unexplained",
        None,
        "unlisted_hostname",
        None,
    ),
    (
        "unnamed 443 to the internet",
        dict(client_ip=AGENT, server_ip=CLOUD, server_port=443),
        {},
        "explained",
        None,
        None,
        "port-only",
    ),
    (
        "unlisted port",
        dict(client_ip=AGENT, server_ip="10.20.0.99", server_port=8443),
        {},
        "unexplained",
        None,
        "no_rule",
        None,
    ),
    (
        "unknown client on a documented port",
        dict(client_ip="10.99.0.5", server_ip=MANAGER, server_port=4120),
        {},
        "unexplained",
        None,
        "unknown_endpoint",
        None,
    ),
    (
        "4123 between two hosts",
        dict(client_ip=AGENT, server_ip=RELAY, server_port=4123),
        {},
        "unexplained",
        "relay.in.local-agent-4123",
        "localhost_only",
        None,
    ),
    (
        "update through the proxy",
        dict(
            client_ip=AGENT,
            server_ip=PROXY,
            server_port=3128,
            connect_target="iaus.activeupdate.trendmicro.com:443",
            server_name="iaus.activeupdate.trendmicro.com",
            name_source="connect",
        ),
        {},
        "explained",
        "agent.out.updates-80-443",
        None,
        "proxy",
    ),
    (
        "database of the configured type",
        dict(client_ip=MANAGER, server_ip=DB, server_port=5432),
        {},
        "explained",
        "manager.out.postgresql-5432",
        None,
        "port+role",
    ),
    (
        "database of another type",
        dict(client_ip=MANAGER, server_ip=DB, server_port=1433),
        {},
        "unexplained",
        "manager.out.mssql-1433",
        "not_applicable",
        None,
    ),
    (
        "DNS",
        dict(proto="udp", client_ip=AGENT, server_ip=DNS, server_port=53),
        {},
        "explained",
        "agent.out.dns-53",
        None,
        "port+role",
    ),
    (
        "DHCP",
        dict(proto="udp", client_ip="0.0.0.0", server_ip="255.255.255.255", server_port=67),
        {},
        "infrastructure",
        None,
        None,
        None,
    ),
    (
        "ICMP echo",
        dict(proto="icmp", client_ip=AGENT, server_ip=MANAGER, client_port=8, server_port=0),
        {},
        "infrastructure",
        None,
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("fields", "settings", "verdict", "rule", "reason", "match"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_verdict(fields, settings, verdict, rule, reason, match) -> None:
    out = _classify([flow(**fields)], **settings).iloc[0]
    assert out["verdict"] == verdict
    if rule is not None:
        assert out["rule"] == rule
    if reason is None:
        assert pd.isna(out["reason"])
    else:
        assert out["reason"] == reason
    if match is not None:
        assert out["match"] == match
    assert isinstance(out["reason_text"], str) and out["reason_text"]


def test_roles_are_reported() -> None:
    out = _classify([flow(client_ip=RELAY, server_ip=MANAGER, server_port=4120)]).iloc[0]
    assert out["client_role"] == "agent+relay"
    assert out["server_role"] == "manager"


def test_blocked_expected_flow_is_flagged() -> None:
    rows = [
        flow(
            client_ip=AGENT,
            server_ip=MANAGER,
            server_port=4120,
            outcome="unanswered",
            state="S0",
            history="S",
            packets_s2c=0,
        ),
        flow(
            client_ip=MANAGER,
            server_ip=AGENT,
            server_port=4118,
            outcome="rejected",
            state="REJ",
            history="Sr",
        ),
        flow(client_ip=AGENT, server_ip="10.20.0.99", server_port=8443, outcome="rejected"),
        flow(
            proto="udp",
            client_ip=AGENT,
            server_ip=DNS,
            server_port=53,
            outcome="one-way",
            packets_s2c=0,
        ),
    ]
    out = _classify(rows)
    assert out["blocked"].tolist() == [True, True, False, True]


def test_open_port_scan_is_one_explained_scan() -> None:
    rows = [
        flow(
            client_ip=MANAGER,
            server_ip=AGENT,
            server_port=1000 + i,
            at=i * 0.05,
            outcome="rejected",
            state="REJ",
        )
        for i in range(40)
    ]
    out = _classify(rows)
    assert set(out["match"]) == {"scan"}
    assert set(out["rule"]) == {"manager.out.port-scan"}
    assert not out["blocked"].any()


def test_few_ports_are_not_a_scan() -> None:
    rows = [
        flow(client_ip=MANAGER, server_ip=AGENT, server_port=1000 + i, at=i * 10.0)
        for i in range(5)
    ]
    out = _classify(rows)
    assert "scan" not in set(out["match"].dropna())
    assert set(out["verdict"]) == {"unexplained"}


def test_strict_counts_infrastructure() -> None:
    text = INVENTORY.format(communication="bidirectional", updates="direct")
    inv = load_inventory("site.yaml", text=text)
    rows = [flow(proto="icmp", client_ip=AGENT, server_ip=MANAGER, client_port=8, server_port=0)]
    out = classify_flows(frame(rows), load_catalog(), inv, strict=True)
    assert out["verdict"].tolist() == ["unexplained"]


def test_site_override_moves_the_heartbeat(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "schema: 1\noverrides:\n  - id: manager.in.heartbeat-4120\n    ports: [14120]\n"
    )
    text = INVENTORY.format(communication="bidirectional", updates="direct")
    inv = load_inventory("inv.yaml", text=text)
    rows = [
        flow(client_ip=AGENT, server_ip=MANAGER, server_port=14120),
        flow(client_ip=AGENT, server_ip=MANAGER, server_port=4120),
    ]
    out = classify_flows(frame(rows), load_catalog(extra_paths=[site]), inv)
    assert out["verdict"].tolist() == ["explained", "unexplained"]


def test_jobs_judge_alike() -> None:
    # Every CASE many times over, plus a scan across chunk boundaries: enough rows that two
    # jobs split them into several chunks judged in separate processes.
    rows = []
    for i in range(3000):
        _, fields, _, *_ = CASES[i % len(CASES)]
        rows.append(flow(**{**fields, "client_port": 20000 + i % 40000}, at=i * 0.01))
    rows += [
        flow(client_ip=MANAGER, server_ip=AGENT, server_port=1000 + i, at=40 + i * 0.05)
        for i in range(40)
    ]
    text = INVENTORY.format(communication="bidirectional", updates="direct")
    inv = load_inventory("site.yaml", text=text)
    one = classify_flows(frame(rows), load_catalog(), inv, jobs=1)
    two = classify_flows(frame(rows), load_catalog(), inv, jobs=2)
    pd.testing.assert_frame_equal(one, two)
    assert set(one["verdict"]) == {"explained", "unexplained", "infrastructure"}
    assert (one["match"] == "scan").sum() >= 40  # the scan, and CASES repeated fast enough
