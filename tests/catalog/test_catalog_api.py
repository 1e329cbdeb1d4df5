"""The catalog's query API, the machine-readable fields and site files, on the real catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsaudit.catalog import Catalog, Ports, load_catalog
from dsaudit.catalog.hostnames import normalise_hostname
from dsaudit.errors import CatalogError

FILES = Path(__file__).resolve().parents[1] / "files" / "catalog"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_ports_membership_and_json() -> None:
    ports = Ports.of(80, 443, (11000, 11999))
    assert 443 in ports and 11500 in ports and 11999 in ports
    assert 444 not in ports and 12000 not in ports
    assert ports.as_json() == [80, 443, [11000, 11999]]
    assert Ports(any=True).as_json() == "any"
    assert 65535 in Ports(any=True) and 70000 not in Ports(any=True)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("https://iaus.activeupdate.trendmicro.com/", "iaus.activeupdate.trendmicro.com"),
        ("ds10.icrc.trendmicro.com/tmcss/", "ds10.icrc.trendmicro.com"),
        ("http://reports.internic.net/cgi/whois?whois_nic=[IP]", "reports.internic.net"),
        ("News.DeepSecurity.trendmicro.com/news_ja.atom", "news.deepsecurity.trendmicro.com"),
        ("files.trendmicro.com:443", "files.trendmicro.com"),
    ],
)
def test_seed_texts_normalise_to_exact_host_names(text: str, name: str) -> None:
    assert normalise_hostname(text) == name


@pytest.mark.parametrize("text", ["*.trendmicro.com", "localhost", "10.0.0.1", "https:///x"])
def test_non_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        normalise_hostname(text)


def test_matching_by_transport_and_port(catalog: Catalog) -> None:
    assert [r.id for r in catalog.matching("tcp", 4120)] == [
        "manager.in.heartbeat-4120",
        "manager.out.port-scan",
    ]
    assert [r.id for r in catalog.matching("tcp", 11500, direction="outbound")] == [
        "manager.out.azure-sql-11000-14999",
        "manager.out.port-scan",
    ]
    # UDP 53 is DNS for both roles; the port scan covers UDP too.
    assert {r.id for r in catalog.matching("udp", 53)} == {
        "manager.out.dns-53",
        "agent.out.dns-53",
        "manager.out.port-scan",
    }
    assert catalog.matching("udp", 4120, role="agent") == ()


def test_rules_for_role_direction_and_version(catalog: Catalog) -> None:
    relay = catalog.rules_for("relay")
    assert {r.role for r in relay} == {"relay"} and len(relay) == 4
    with_agent = catalog.rules_for("relay", implied=True)
    assert len(with_agent) == 4 + 18
    assert len(catalog.rules_for("agent", "inbound")) == 4
    ml = "agent.out.machine-learning-80-443"
    assert ml in {r.id for r in catalog.rules_for(version="11.0")}
    assert ml not in {r.id for r in catalog.rules_for(version="10.1")}


def test_client_and_server_roles(catalog: Catalog) -> None:
    hb_in = catalog.get("manager.in.heartbeat-4120")
    assert hb_in.client_roles == ("agent",) and hb_in.server_roles == ("manager",)
    hb_out = catalog.get("manager.out.heartbeat-4118")
    assert hb_out.client_roles == ("manager",) and hb_out.server_roles == ("agent",)
    assert hb_out.counterparts == ("agent.in.heartbeat-4118",)
    assert catalog.get("agent.in.heartbeat-4118").counterparts == ("manager.out.heartbeat-4118",)


def test_conversation_answers_who_may_talk_to_whom(catalog: Catalog) -> None:
    # A relay host plays agent as well, so an agent rule answers for it.
    ids = {r.id for r in catalog.conversation("tcp", 4118, {"manager"}, {"relay", "agent"})}
    assert ids == {"manager.out.heartbeat-4118", "agent.in.heartbeat-4118", "manager.out.port-scan"}
    assert {r.id for r in catalog.conversation("tcp", 4122, {"agent"}, {"relay", "agent"})} == {
        "relay.in.relay-4122"
    }
    assert catalog.conversation("tcp", 4120, {"manager"}, {"agent"}) == (
        catalog.get("manager.out.port-scan"),
    )


def test_rules_by_host_name(catalog: Catalog) -> None:
    assert [r.id for r in catalog.by_hostname("IAUS.activeupdate.trendmicro.com.")] == [
        "manager.out.updates-80-443",
        "relay.out.updates-80-443",
        "agent.out.updates-80-443",
    ]
    assert [r.id for r in catalog.by_hostname("ds110.icrc.trendmicro.com", "11.0")] == [
        "agent.out.spn-80-443"
    ]
    assert catalog.by_hostname("ds110.icrc.trendmicro.com", "10.3") == ()


def test_conditions_are_machine_readable(catalog: Catalog) -> None:
    pg = catalog.get("manager.out.postgresql-5432")
    assert pg.expectation == "required" and pg.when.as_json() == {"database": ["postgresql"]}
    assert pg.when.matches({"database": "postgresql"})
    assert not pg.when.matches({"database": "oracle"})
    assert pg.when.matches({"mode": "on-premises"})  # unknown facts never exclude
    hb = catalog.get("manager.in.heartbeat-4120")
    assert hb.when.matches({"mode": "on-premises", "communication": "agent-initiated"})
    assert not hb.when.matches({"mode": "on-premises", "communication": "manager-initiated"})
    ml = catalog.get("agent.out.machine-learning-80-443")
    assert ml.when.matches({"versions": ("10.1", "11.0")})
    assert not ml.when.matches({"versions": ("10.0", "10.1")})
    assert catalog.get("agent.out.syslog-514").when.as_json() == {"siem": ["direct"]}


def test_seed_notes_and_ambiguities_are_kept(catalog: Catalog) -> None:
    local = catalog.get("relay.in.local-agent-4123")
    assert local.localhost_only and local.configurable == "no"
    assert sum(r.localhost_only for r in catalog) == 1
    assert any("throttled" in n.en for n in catalog.get("manager.out.smtp-25").notes)
    assert any("closed" in n.en for n in catalog.get("manager.out.heartbeat-4118").notes)
    assert any("10.0 and older" in n.en for n in catalog.get("relay.in.relay-4122").notes)
    assert any("all of the agent" in n.en for n in catalog.get("relay.in.relay-4122").notes)
    ambiguous = {r.id for r in catalog if r.ambiguous}
    assert ambiguous == {
        "manager.out.cloud-account-389",
        "manager.in.heartbeat-4120",
        "agent.out.manager-443",
    }
    cloud = catalog.get("manager.out.cloud-account-389")
    assert (cloud.ports, cloud.service) == (Ports.of(389), "HTTPS")


def test_lost_marks_are_unknown_not_yes(catalog: Catalog) -> None:
    # No marks at all in the seed: both cells unknown.
    for rule_id in ("manager.in.heartbeat-4120", "manager.out.relay-4122", "agent.out.spn-80-443"):
        rule = catalog.get(rule_id)
        assert (rule.seed_marks, rule.configurable, rule.proxy) == ("", "unknown", "unknown")
    assert catalog.get("manager.out.updates-80-443").proxy == "socks"
    assert catalog.get("manager.out.dns-53").configurable == "os"
    assert catalog.get("relay.in.relay-4122").proxy == "yes"
    assert catalog.get("agent.out.manager-443").proxy == "unknown"


def test_site_file_adds_rules_and_moves_configurable_ports() -> None:
    catalog = load_catalog([FILES / "site-ok.yaml"])
    assert len(catalog) == 53
    assert catalog.get("site.manager.out.backup-22").origin == "site"
    assert catalog.get("manager.in.heartbeat-4120").ports == Ports.of(14120)
    # The counterpart of an overridden rule moves with it: one conversation, one port.
    assert catalog.get("agent.in.heartbeat-4118").ports == Ports.of(14118)
    assert catalog.get("manager.out.heartbeat-4118").ports == Ports.of(14118)
    assert [r.id for r in catalog.matching("tcp", 4120)] == ["manager.out.port-scan"]
    assert catalog.get("manager.in.heartbeat-4120").overridden_at is not None


@pytest.mark.parametrize(
    "named", ["manager.out.relay-4122", "relay.in.relay-4122", "relay.out.relay-4122"]
)
def test_a_port_override_moves_the_whole_conversation(tmp_path: Path, named: str) -> None:
    # Relay 4122 is three rules (manager and relays connect, relays listen) linked through
    # relay.in.relay-4122: whichever one a site names, all three move.
    site = tmp_path / "site.yaml"
    site.write_text(f"schema: 1\noverrides:\n  - id: {named}\n    ports: [14122]\n")
    catalog = load_catalog([site])
    for rule_id in ("manager.out.relay-4122", "relay.in.relay-4122", "relay.out.relay-4122"):
        assert catalog.get(rule_id).ports == Ports.of(14122), rule_id


def test_a_broken_site_file_raises_one_error_listing_everything() -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog([FILES / "broken-site.yaml"])
    lines = [loc.line for loc, _ in caught.value.problems]
    assert lines == [10, 13, 17, 17, 21, 25, 30, 33, 35, 39, 45, 47, 49]
    assert (
        str(caught.value)
        .splitlines()[0]
        .endswith(
            "broken-site.yaml:10: peer: 'backup_server' is not one of manager, relay, agent, "
            "database, dns, ntp, smtp, syslog, snmp, ldap, vcenter, nsx, esxi, "
            "smart_protection_server, control_manager, web_browser, api_client, web_server, "
            "deployment_tool, proxy, internet"
        )
    )
