"""Which catalog rules a deployment gets, and between which addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsaudit.catalog import Catalog, Ports, load_catalog
from dsaudit.firewall import Plan, build_plan
from dsaudit.inventory import load_inventory

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def inventory_text(deployment: str, hosts: str = "") -> str:
    base_hosts = """\
  manager: [10.0.0.10]
  database: [10.0.0.20]
  relay: [10.0.0.30]
  agent: [10.1.0.0/16]
  dns: [10.0.0.2]
"""
    return f"deployment:\n{deployment}hosts:\n{base_hosts}{hosts}"


def plan_for(catalog: Catalog, deployment: str, hosts: str = "", **kw: bool) -> Plan:
    inv = load_inventory("test.yaml", inventory_text(deployment, hosts))
    return build_plan(catalog, inv, **kw)


def ids(plan: Plan) -> set[str]:
    return {rule_id for allow in plan.allows for rule_id in allow.rule_ids}


def test_database_choice_selects_one_database_rule(catalog: Catalog) -> None:
    for database, rule_id in [
        ("postgresql", "manager.out.postgresql-5432"),
        ("mssql", "manager.out.mssql-1433"),
        ("oracle", "manager.out.oracle-1521"),
        ("azure-sql", "manager.out.azure-sql-11000-14999"),
    ]:
        plan = plan_for(catalog, f"  database: {database}\n")
        db_rules = {i for i in ids(plan) if catalog.get(i).peers == ("database",)}
        assert db_rules == {rule_id}
        allow = next(a for a in plan.allows if a.rule_ids == (rule_id,))
        assert [str(n) for n in allow.client.networks] == ["10.0.0.10/32"]
        assert [str(n) for n in allow.server.networks] == ["10.0.0.20/32"]


def test_communication_mode_picks_the_heartbeats(catalog: Catalog) -> None:
    both = plan_for(catalog, "  database: mssql\n")
    assert {"manager.in.heartbeat-4120", "manager.out.heartbeat-4118"} <= ids(both)
    agent_only = plan_for(catalog, "  database: mssql\n  communication: agent-initiated\n")
    assert "manager.in.heartbeat-4120" in ids(agent_only)
    assert "manager.out.heartbeat-4118" not in ids(agent_only)
    assert ("manager.out.heartbeat-4118", "not for this deployment") in [
        (i, r.split(" (")[0]) for i, r in agent_only.skipped
    ]
    manager_only = plan_for(catalog, "  database: mssql\n  communication: manager-initiated\n")
    assert "manager.in.heartbeat-4120" not in ids(manager_only)


def test_counterparts_become_one_allow_and_relays_count_as_agents(catalog: Catalog) -> None:
    plan = plan_for(catalog, "  database: mssql\n")
    hb = [a for a in plan.allows if a.ports == Ports.of(4118)]
    assert len(hb) == 1
    assert hb[0].rule_ids == ("manager.out.heartbeat-4118", "agent.in.heartbeat-4118")
    assert [str(n) for n in hb[0].server.networks] == ["10.1.0.0/16", "10.0.0.30/32"]


def test_updates_relay_or_direct(catalog: Catalog) -> None:
    relay = plan_for(catalog, "  database: mssql\n  updates: relay\n")
    assert {"relay.in.relay-4122", "relay.out.updates-80-443"} <= ids(relay)
    assert "agent.out.updates-80-443" not in ids(relay)
    direct = plan_for(catalog, "  database: mssql\n  updates: direct\n")
    assert {"agent.out.updates-80-443", "manager.out.updates-80-443"} <= ids(direct)
    assert "relay.in.relay-4122" not in ids(direct)


def test_as_a_service_uses_443_and_an_internet_manager(catalog: Catalog) -> None:
    text = (
        "deployment:\n  mode: as-a-service\nhosts:\n  agent: [10.1.0.0/16]\n"
        "  manager: [agents.deepsecurity.trendmicro.com]\n"
    )
    plan = build_plan(catalog, load_inventory("saas.yaml", text))
    allow = next(a for a in plan.allows if "agent.out.manager-443" in a.rule_ids)
    assert allow.server.any and allow.server.hostnames == ("agents.deepsecurity.trendmicro.com",)
    assert "manager.in.heartbeat-4120" not in ids(plan)
    assert not any(catalog.get(i).peers == ("database",) for i in ids(plan))
    # Trend Micro's manager talking to Trend Micro's cloud is none of this site's business.
    assert not any(a.client.any and a.server.any for a in plan.allows)
    assert (
        dict(plan.skipped)["manager.out.news-80-443"] == "manager to internet: both on the internet"
    )


def test_localhost_only_and_port_scan_are_left_out_unless_asked(catalog: Catalog) -> None:
    plan = plan_for(catalog, "  database: mssql\n")
    skipped = dict(plan.skipped)
    assert skipped["relay.in.local-agent-4123"].startswith("localhost only")
    assert "relay.in.local-agent-4123" not in ids(plan)
    assert "manager.out.port-scan" not in ids(plan)
    scan = plan_for(catalog, "  database: mssql\n", port_scan=True)
    assert {a.transport for a in scan.allows if "manager.out.port-scan" in a.rule_ids} == {
        "tcp",
        "udp",
    }


def test_internet_traffic_goes_through_the_proxy_where_the_seed_allows_it(
    catalog: Catalog,
) -> None:
    plan = plan_for(catalog, "  database: mssql\n", '  proxy: ["10.0.0.60:3128"]\n')
    via = [a for a in plan.allows if a.via_proxy]
    # SOCKS-capable rules only: relay updates, GFR, census, machine learning.
    assert {a.rule_ids[0] for a in via} == {
        "relay.out.updates-80-443",
        "agent.out.gfr-80",
        "agent.out.census-80",
        "agent.out.machine-learning-80-443",
    }
    assert all(a.ports == Ports.of(3128) and a.server.role == "proxy" for a in via)
    # Rules whose proxy support is unknown or "no" stay direct.
    spn = next(a for a in plan.allows if a.rule_ids == ("agent.out.spn-80-443",))
    assert spn.server.any and not spn.via_proxy
    proxy_out = [a for a in plan.allows if a.client.role == "proxy"]
    assert {a.rule_ids[0] for a in proxy_out} == {a.rule_ids[0] for a in via}
    assert dict(plan.hostnames)["ds110-en-f.trx.trendmicro.com"] == (
        "agent.out.machine-learning-80-443",
    )


def test_missing_roles_are_reported_not_invented(catalog: Catalog) -> None:
    plan = plan_for(catalog, "  database: mssql\n", "  vcenter: [vc.corp.example]\n")
    skipped = dict(plan.skipped)
    assert "manager.out.vcenter-443" not in ids(plan)
    assert skipped["manager.out.vcenter-443"] == (
        "manager to vcenter: hosts.vcenter has only host names (give addresses)"
    )
    assert skipped["manager.out.esxi-443"] == "manager to esxi: no hosts.esxi in the inventory"
    assert plan.inventory_names == (("vcenter", "vc.corp.example"),)


def test_site_overrides_move_the_exported_port(catalog: Catalog) -> None:
    site = load_catalog([TESTS / "files" / "catalog" / "site-ok.yaml"])
    plan = plan_for(site, "  database: mssql\n")
    heartbeat = next(a for a in plan.allows if a.rule_ids == ("manager.in.heartbeat-4120",))
    assert heartbeat.ports == Ports.of(14120)
    assert not any(a.ports == Ports.of(4120) for a in plan.allows)


def test_for_role_keeps_the_allows_of_that_roles_hosts(catalog: Catalog) -> None:
    plan = plan_for(catalog, "  database: mssql\n").for_role("database")
    assert [a.rule_ids for a in plan.allows] == [("manager.out.mssql-1433",)]
    relay = plan_for(catalog, "  database: mssql\n").for_role("relay")
    assert "agent.out.dns-53" in ids(relay)  # a relay needs the agent's ports
