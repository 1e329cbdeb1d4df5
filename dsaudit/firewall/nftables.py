"""Write a deployment's allow rules as a complete nftables ruleset (`nft -f` file)."""

from __future__ import annotations

import ipaddress

from dsaudit.catalog.schema import Ports
from dsaudit.firewall.comments import rule_comment
from dsaudit.firewall.header import header_lines
from dsaudit.firewall.plan import Allow, Endpoint, Plan
from dsaudit.inventory import Inventory, IPNetwork

TABLE = "dsaudit"
CHAIN = "deep_security"


def _set_name(endpoint: Endpoint, version: int) -> str:
    return f"{endpoint.key}_v{version}"


def collapse(networks: tuple[IPNetwork, ...]) -> list[IPNetwork]:
    """Merged, non-overlapping networks: interval sets refuse overlapping elements."""
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def _element(network: IPNetwork) -> str:
    single = network.prefixlen == network.max_prefixlen
    return str(network.network_address) if single else str(network)


def _ports(transport: str, ports: Ports) -> str:
    if ports.any:
        return f"meta l4proto {transport}"
    items = [str(r) for r in ports.ranges]
    if len(items) == 1:
        return f"{transport} dport {items[0]}"
    return f"{transport} dport {{ {', '.join(items)} }}"


def _rule(allow: Allow, version: int) -> str:
    ip = "ip" if version == 4 else "ip6"
    parts = []
    if not allow.client.any:
        parts.append(f"{ip} saddr @{_set_name(allow.client, version)}")
    if not allow.server.any:
        parts.append(f"{ip} daddr @{_set_name(allow.server, version)}")
    parts.append(_ports(allow.transport, allow.ports))
    parts.append(f'accept comment "{rule_comment(allow)}"')
    return " ".join(parts)


def render_nftables(plan: Plan, inventory: Inventory, *, policy: str = "accept") -> str:
    """A ruleset file: one table with a set per role and IP version, a chain of allow rules,
    and input/forward/output base chains that jump to it."""
    sets: dict[str, tuple[int, list[IPNetwork]]] = {}
    rules: list[str] = []
    for allow in plan.allows:
        for version in allow.families():
            for end in (allow.client, allow.server):
                if not end.any:
                    sets[_set_name(end, version)] = (version, collapse(end.family(version)))
            rules.append(_rule(allow, version))
    lines = ["#!/usr/sbin/nft -f", *header_lines(plan, inventory, "#")]
    # Declaring then deleting the table makes the file replace an earlier load of itself.
    lines += [f"table inet {TABLE}", f"delete table inet {TABLE}", "", f"table inet {TABLE} {{"]
    for name, (version, networks) in sets.items():
        lines += [
            f"    set {name} {{",
            f"        type ipv{version}_addr",
            "        flags interval",
            f"        elements = {{ {', '.join(_element(n) for n in networks)} }}",
            "    }",
        ]
    lines += [f"    chain {CHAIN} {{", *(f"        {r}" for r in rules), "    }"]
    for hook in ("input", "forward", "output"):
        lo = {"input": 'iifname "lo" accept', "output": 'oifname "lo" accept'}.get(hook)
        lines += [
            f"    chain {hook} {{",
            f"        type filter hook {hook} priority filter; policy {policy};",
            *([f"        {lo}"] if lo else []),
            "        ct state established,related accept",
            f"        jump {CHAIN}",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"
