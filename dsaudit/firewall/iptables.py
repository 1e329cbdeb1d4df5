"""Write a deployment's allow rules as an iptables-restore (or ip6tables-restore) file."""

from __future__ import annotations

from dsaudit.catalog.schema import Ports
from dsaudit.firewall.comments import rule_comment
from dsaudit.firewall.header import header_lines
from dsaudit.firewall.nftables import collapse
from dsaudit.firewall.plan import Allow, Endpoint, Plan
from dsaudit.inventory import Inventory

CHAIN = "DSAUDIT"
# iptables' multiport match takes at most 15 ports, a range counting as two.
_MULTIPORT_SLOTS = 15


def _addresses(endpoint: Endpoint, version: int) -> str:
    return ",".join(str(n) for n in collapse(endpoint.family(version)))


def _port_matches(transport: str, ports: Ports) -> list[str]:
    """One match per rule line; several when a port list overflows multiport."""
    if ports.any:
        return [""]
    items = [str(r).replace("-", ":") for r in ports.ranges]
    if len(items) == 1:
        return [f"--dport {items[0]}"]
    chunks: list[list[str]] = [[]]
    used = 0
    for item in items:
        cost = 2 if ":" in item else 1
        if used + cost > _MULTIPORT_SLOTS:
            chunks.append([])
            used = 0
        chunks[-1].append(item)
        used += cost
    return [f"-m multiport --dports {','.join(chunk)}" for chunk in chunks]


def _lines(allow: Allow, version: int) -> list[str]:
    base = [f"-A {CHAIN}"]
    if not allow.client.any:
        base.append(f"-s {_addresses(allow.client, version)}")
    if not allow.server.any:
        base.append(f"-d {_addresses(allow.server, version)}")
    base.append(f"-p {allow.transport}")
    comment = f'-m comment --comment "{rule_comment(allow)}" -j ACCEPT'
    return [
        " ".join([*base, *([m] if m else []), comment])
        for m in _port_matches(allow.transport, allow.ports)
    ]


def render_iptables(
    plan: Plan,
    inventory: Inventory,
    *,
    version: int = 4,
    policy: str = "accept",
    option: str = "--format",
) -> str:
    """A complete filter table for iptables-restore (version 4) or ip6tables-restore (6).

    Loading it replaces the filter table; use `iptables-restore --noflush` to add to one.
    ``option`` is the command-line option that asks for the other family's file.
    """
    tool = "iptables-restore" if version == 4 else "ip6tables-restore"
    other = [a for a in plan.allows if (10 - version) in a.families()]
    lines = [*header_lines(plan, inventory, "#"), f"# Load with: {tool} FILE"]
    if other:
        flag = "ip6tables" if version == 4 else "iptables"
        lines.append(f"# {len(other)} rule(s) for IPv{10 - version} are in {option} {flag}.")
    target = policy.upper()
    lines += ["*filter", f":INPUT {target} [0:0]", f":FORWARD {target} [0:0]"]
    lines += [f":OUTPUT {target} [0:0]", f":{CHAIN} - [0:0]"]
    lines += ["-A INPUT -i lo -j ACCEPT", "-A OUTPUT -o lo -j ACCEPT"]
    for chain in ("INPUT", "FORWARD", "OUTPUT"):
        lines.append(f"-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
        lines.append(f"-A {chain} -j {CHAIN}")
    for allow in plan.allows:
        if version in allow.families():
            lines += _lines(allow, version)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
