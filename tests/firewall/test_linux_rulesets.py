"""nftables and iptables exports are accepted by the real tools (`nft -c`, `*-restore --test`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dsaudit.catalog import Catalog, load_catalog
from dsaudit.firewall import build_plan, render
from dsaudit.inventory import Inventory, load_inventory

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = [
    ROOT / "examples" / "inventory.yaml",
    ROOT / "tests" / "files" / "inventory" / "ipv6.yaml",
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return path


def _check(command: list[str], text: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    done = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(command)} rejected {name}:\n{done.stderr}\n{text}"


def _render(
    catalog: Catalog, inv: Inventory, fmt: str, *, policy: str = "accept", port_scan: bool = False
) -> str:
    return render(build_plan(catalog, inv, port_scan=port_scan), inv, fmt, policy=policy)


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
@pytest.mark.parametrize("policy", ["accept", "drop"])
def test_nft_accepts_the_ruleset(
    catalog: Catalog, inventory: Path, policy: str, tmp_path: Path
) -> None:
    nft = _tool("nft")
    inv = load_inventory(inventory)
    text = _render(catalog, inv, "nftables", policy=policy, port_scan=True)
    _check([nft, "-c", "-f"], text, tmp_path, "rules.nft")
    rules = [line.strip() for line in text.splitlines() if " accept comment " in line]
    assert rules, "no allow rules written"
    for line in rules:
        comment = re.search(r'comment "([^"]*)"$', line)
        assert comment is not None, line
        assert len(comment.group(1)) <= 128 and comment.group(1).isascii()
        assert re.match(r"^[a-z0-9.+_-]+: ", comment.group(1)), line
    assert "4123" not in "\n".join(rules)
    assert f"policy {policy};" in text


def test_nft_check_really_rejects_a_broken_ruleset(catalog: Catalog, tmp_path: Path) -> None:
    """Guards the test above: a file the tool refuses must fail the check."""
    nft = _tool("nft")
    inv = load_inventory(INVENTORIES[0])
    text = _render(catalog, inv, "nftables").replace("tcp dport 4120", "tcp dport 70000")
    path = tmp_path / "broken.nft"
    path.write_text(text, encoding="utf-8")
    assert subprocess.run([nft, "-c", "-f", str(path)], capture_output=True).returncode != 0


def test_nft_sets_hold_each_roles_addresses(catalog: Catalog) -> None:
    inv = load_inventory(INVENTORIES[0])
    text = _render(catalog, inv, "nftables")
    sets = dict(re.findall(r"set (\w+) \{[^}]*elements = \{ ([^}]*) \}", text))
    assert sets["manager_v4"] == "10.20.0.10"
    assert sets["manager_v6"] == "2001:db8:20::10"
    assert sets["agent_v4"] == "10.20.0.30, 10.20.1.0/24"  # the relay is an agent too
    assert sets["proxy_3128_v4"] == "10.20.0.60"
    assert "vcenter: vcenter.corp.example" in text  # names go to comments, not sets
    assert (
        'ip saddr @agent_v4 ip daddr @manager_v4 tcp dport 4120 accept comment "'
        "manager.in.heartbeat-4120: " in text
    )
    assert "tcp dport { 80, 443 }" in text


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_iptables_restore_accepts_both_families(
    catalog: Catalog, inventory: Path, tmp_path: Path
) -> None:
    inv = load_inventory(inventory)
    v4 = _render(catalog, inv, "iptables", policy="drop", port_scan=True)
    v6 = _render(catalog, inv, "ip6tables", port_scan=True)
    _check([_tool("iptables-restore"), "--test"], v4, tmp_path, "rules.v4")
    _check([_tool("ip6tables-restore"), "--test"], v6, tmp_path, "rules.v6")
    v4_rules = [line for line in v4.splitlines() if line.startswith("-A DSAUDIT")]
    v6_rules = [line for line in v6.splitlines() if line.startswith("-A DSAUDIT")]
    assert v4_rules and v6_rules
    assert not any(":" in re.sub(r'"[^"]*"|--dports? \S+', "", line) for line in v4_rules)
    assert ":INPUT DROP [0:0]" in v4 and ":INPUT ACCEPT [0:0]" in v6
    assert all('-m comment --comment "' in line for line in v4_rules + v6_rules)


def test_iptables_lines_carry_addresses_ports_and_ids(catalog: Catalog) -> None:
    inv = load_inventory(INVENTORIES[0])
    v4 = _render(catalog, inv, "iptables")
    line = next(line for line in v4.splitlines() if "manager.out.postgresql-5432" in line)
    assert line.startswith("-A DSAUDIT -s 10.20.0.10/32 -d 10.20.0.20/32 -p tcp --dport 5432 ")
    assert line.endswith(" -j ACCEPT")
    assert "# " in v4 and "rule(s) for IPv6 are in --format ip6tables" in v4
