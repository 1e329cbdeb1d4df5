"""AWS IpPermissions and Azure NSG security rules: shape and documented constraints."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dsaudit.catalog import Catalog, load_catalog
from dsaudit.errors import DsauditError
from dsaudit.firewall import build_plan, render
from dsaudit.inventory import Inventory, load_inventory

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "inventory.yaml"
IPV6 = ROOT / "tests" / "files" / "inventory" / "ipv6.yaml"

# AWS: "a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*", up to 255 characters.
AWS_DESCRIPTION = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]{0,255}$")
# Azure: 1-80 characters; letters, digits, underscores, periods, hyphens; starts with a letter
# or digit, ends with a letter, digit or underscore.
AZURE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
AZURE_PORT = re.compile(r"^(\*|\d{1,5}|\d{1,5}-\d{1,5})$")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def export(catalog: Catalog, inv: Inventory, fmt: str, **kw: Any) -> Any:
    return json.loads(render(build_plan(catalog, inv, port_scan=True), inv, fmt, **kw))


def check_aws(permissions: list[dict[str, Any]]) -> None:
    seen = set()
    for perm in permissions:
        assert set(perm) == {"IpProtocol", "FromPort", "ToPort", "IpRanges", "Ipv6Ranges"}
        assert perm["IpProtocol"] in ("tcp", "udp")
        assert 0 <= perm["FromPort"] <= perm["ToPort"] <= 65535
        key = (perm["IpProtocol"], perm["FromPort"], perm["ToPort"])
        assert key not in seen
        seen.add(key)
        assert perm["IpRanges"] or perm["Ipv6Ranges"]
        for rng, field, version in [
            *((r, "CidrIp", 4) for r in perm["IpRanges"]),
            *((r, "CidrIpv6", 6) for r in perm["Ipv6Ranges"]),
        ]:
            assert set(rng) == {field, "Description"}
            assert ipaddress.ip_network(rng[field]).version == version
            assert AWS_DESCRIPTION.match(rng["Description"]), rng["Description"]
        cidrs = [r["CidrIp"] for r in perm["IpRanges"]]
        cidrs += [r["CidrIpv6"] for r in perm["Ipv6Ranges"]]
        assert len(cidrs) == len(set(cidrs)), "AWS refuses a duplicate CIDR in one permission"


@pytest.mark.parametrize("inventory", [EXAMPLE, IPV6], ids=lambda p: p.name)
@pytest.mark.parametrize("role", ["manager", "relay", "agent", "database", "proxy"])
@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_aws_permissions_have_the_cli_shape(
    catalog: Catalog, inventory: Path, role: str, direction: str
) -> None:
    check_aws(export(catalog, load_inventory(inventory), "aws-sg", role=role, direction=direction))


def test_aws_manager_ingress_content(catalog: Catalog) -> None:
    perms = export(catalog, load_inventory(EXAMPLE), "aws-sg", role="manager")
    by_port = {(p["IpProtocol"], p["FromPort"], p["ToPort"]): p for p in perms}
    heartbeat = by_port[("tcp", 4120, 4120)]
    assert [r["CidrIp"] for r in heartbeat["IpRanges"]] == ["10.20.0.30/32", "10.20.1.0/24"]
    assert [r["CidrIpv6"] for r in heartbeat["Ipv6Ranges"]] == ["2001:db8:21::/64"]
    assert heartbeat["IpRanges"][0]["Description"].startswith("manager.in.heartbeat-4120: ")
    console = by_port[("tcp", 443, 443)]
    assert "10.30.0.0/24" in [r["CidrIp"] for r in console["IpRanges"]]  # web browsers
    assert ("tcp", 4118, 4118) not in by_port  # the manager initiates that one


def test_aws_relay_group_gets_agent_ports_and_egress_to_the_internet(catalog: Catalog) -> None:
    inv = load_inventory(EXAMPLE)
    ingress = export(catalog, inv, "aws-sg", role="relay")
    assert {("tcp", 4118, 4118), ("tcp", 4122, 4122)} <= {
        (p["IpProtocol"], p["FromPort"], p["ToPort"]) for p in ingress
    }
    egress = export(catalog, inv, "aws-sg", role="agent", direction="outbound")
    wrs = next(p for p in egress if p["FromPort"] == 5274)
    # The internet (Smart Protection Network) and the site's Smart Protection Server.
    assert [r["CidrIp"] for r in wrs["IpRanges"]] == ["0.0.0.0/0", "10.20.0.70/32"]
    assert [r["CidrIpv6"] for r in wrs["Ipv6Ranges"]] == ["::/0"]


def test_aws_needs_a_role(catalog: Catalog) -> None:
    inv = load_inventory(EXAMPLE)
    with pytest.raises(DsauditError, match="give --role"):
        render(build_plan(catalog, inv), inv, "aws-sg")


def _prefixes(props: dict[str, Any], side: str) -> list[str]:
    single, many = f"{side}AddressPrefix", f"{side}AddressPrefixes"
    assert (single in props) != (many in props), f"exactly one of {single}/{many}"
    return [props[single]] if single in props else props[many]


def check_azure(rules: list[dict[str, Any]]) -> None:
    priorities = [r["properties"]["priority"] for r in rules]
    assert len(priorities) == len(set(priorities))
    names = [r["name"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) == {"name", "properties"}
        assert AZURE_NAME.match(rule["name"]), rule["name"]
        p = rule["properties"]
        assert 100 <= p["priority"] <= 4096
        assert p["protocol"] in ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*")
        assert p["access"] == "Allow" and p["direction"] in ("Inbound", "Outbound")
        assert p["sourcePortRange"] == "*"
        assert len(p["description"]) <= 140
        versions = set()
        for side in ("source", "destination"):
            for prefix in _prefixes(p, side):
                if prefix not in ("Internet", "*"):
                    versions.add(ipaddress.ip_network(prefix).version)
        assert len(versions) <= 1, "an NSG rule may not mix IPv4 and IPv6"
        assert ("destinationPortRange" in p) != ("destinationPortRanges" in p)
        ports = p.get("destinationPortRanges") or [p["destinationPortRange"]]
        for port in ports:
            assert AZURE_PORT.match(port), port
            if port != "*":
                low, _, high = port.partition("-")
                assert 0 <= int(low) <= int(high or low) <= 65535


@pytest.mark.parametrize("inventory", [EXAMPLE, IPV6], ids=lambda p: p.name)
@pytest.mark.parametrize("role", [None, "manager", "agent"])
def test_azure_rules_meet_the_documented_constraints(
    catalog: Catalog, inventory: Path, role: str | None
) -> None:
    rules = export(catalog, load_inventory(inventory), "azure-nsg", role=role)
    assert rules
    check_azure(rules)


def test_azure_content(catalog: Catalog) -> None:
    rules = export(catalog, load_inventory(EXAMPLE), "azure-nsg")
    sql = [r["properties"] for r in rules if "postgresql-5432" in r["name"]]
    assert [p["direction"] for p in sql] == ["Inbound", "Outbound"]
    assert sql[0]["sourceAddressPrefix"] == "10.20.0.10/32"
    assert sql[0]["destinationAddressPrefix"] == "10.20.0.20/32"
    assert sql[0]["destinationPortRange"] == "5432" and sql[0]["protocol"] == "Tcp"
    csss = next(r["properties"] for r in rules if "csss" in r["name"])
    assert csss["destinationAddressPrefix"] == "Internet"
    assert csss["destinationPortRanges"] == ["80", "443"]
    scan = next(r["properties"] for r in rules if "port-scan" in r["name"])
    assert scan["destinationPortRange"] == "*"
