"""Write allow rules as AWS security-group IpPermissions and Azure NSG security rules (JSON)."""

from __future__ import annotations

import re
from typing import Any

from dsaudit.catalog.roles import hosts_of_role
from dsaudit.errors import DsauditError
from dsaudit.firewall.comments import bounded, rule_comment
from dsaudit.firewall.nftables import collapse
from dsaudit.firewall.plan import Allow, Endpoint, Plan, port_ranges

# Characters AWS accepts in a security-group rule description (at most 255 of them).
AWS_DESCRIPTION_CHARS = r"a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*"
AWS_DESCRIPTION_MAX = 255
AZURE_DESCRIPTION_MAX = 140
AZURE_NAME_MAX = 80
AZURE_PRIORITY_FIRST = 100
AZURE_PRIORITY_LAST = 4096


def _plays(endpoint: Endpoint, role: str) -> bool:
    """Whether hosts of `role` are on this end (a relay is on every agent end as well)."""
    return role in hosts_of_role(endpoint.role)


def render_aws(plan: Plan, role: str, direction: str) -> list[dict[str, Any]]:
    """IpPermissions for the security group of `role`: ingress (inbound) takes the clients
    as sources; egress (outbound) takes the servers as destinations."""
    permissions: dict[tuple[str, int, int], dict[str, Any]] = {}
    for allow in plan.allows:
        if direction == "inbound" and _plays(allow.server, role):
            peer = allow.client
        elif direction == "outbound" and _plays(allow.client, role):
            peer = allow.server
        else:
            continue
        text = rule_comment(allow, AWS_DESCRIPTION_MAX, AWS_DESCRIPTION_CHARS)
        for pr in port_ranges(allow.ports):
            perm = permissions.setdefault(
                (allow.transport, pr.low, pr.high),
                {
                    "IpProtocol": allow.transport,
                    "FromPort": pr.low,
                    "ToPort": pr.high,
                    "IpRanges": [],
                    "Ipv6Ranges": [],
                },
            )
            # Only IP versions both ends have: a v6 source is no use to a v4-only server.
            for version in allow.families():
                field, key = ("IpRanges", "CidrIp") if version == 4 else ("Ipv6Ranges", "CidrIpv6")
                for net in collapse(peer.family(version)):
                    if all(r[key] != str(net) for r in perm[field]):
                        perm[field].append({key: str(net), "Description": text})
    return [p for p in permissions.values() if p["IpRanges"] or p["Ipv6Ranges"]]


def _azure_prefixes(endpoint: Endpoint, version: int) -> list[str]:
    if endpoint.any:
        return ["Internet"]
    return [str(n) for n in collapse(endpoint.family(version))]


def _azure_ports(allow: Allow) -> dict[str, Any]:
    if allow.ports.any:
        return {"destinationPortRange": "*"}
    items = [str(r) for r in allow.ports.ranges]
    if len(items) == 1:
        return {"destinationPortRange": items[0]}
    return {"destinationPortRanges": items}


def _azure_name(priority: int, direction: str, allow: Allow) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", allow.label)
    name = f"dsaudit-{priority}-{direction[:3].lower()}-{slug}"
    # Names end in a letter, digit or underscore.
    return bounded(name, AZURE_NAME_MAX).rstrip(".-") if len(name) > AZURE_NAME_MAX else name


def render_azure(plan: Plan, role: str | None = None) -> list[dict[str, Any]]:
    """NSG securityRules: each allow as an Outbound rule (client side) and an Inbound rule
    (server side); with a role, only the sides where that role's hosts are."""
    rules: list[dict[str, Any]] = []
    priority = AZURE_PRIORITY_FIRST
    for allow in plan.allows:
        sides = []
        if role is None or _plays(allow.server, role):
            sides.append("Inbound")
        if role is None or _plays(allow.client, role):
            sides.append("Outbound")
        # An NSG rule holds one IP version (the Internet tag goes with either).
        for version in allow.families():
            for direction in sides:
                if priority > AZURE_PRIORITY_LAST:
                    raise DsauditError(
                        f"more than {AZURE_PRIORITY_LAST - AZURE_PRIORITY_FIRST + 1} NSG rules; "
                        "split the export with --role"
                    )
                props: dict[str, Any] = {
                    "description": rule_comment(allow, AZURE_DESCRIPTION_MAX),
                    "protocol": allow.transport.capitalize(),
                    "access": "Allow",
                    "direction": direction,
                    "priority": priority,
                    "sourcePortRange": "*",
                }
                props |= _prefix_field("source", _azure_prefixes(allow.client, version))
                props |= _prefix_field("destination", _azure_prefixes(allow.server, version))
                props |= _azure_ports(allow)
                rules.append({"name": _azure_name(priority, direction, allow), "properties": props})
                priority += 1
    return rules


def _prefix_field(side: str, prefixes: list[str]) -> dict[str, Any]:
    if len(prefixes) == 1:
        return {f"{side}AddressPrefix": prefixes[0]}
    return {f"{side}AddressPrefixes": prefixes}
