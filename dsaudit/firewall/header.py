"""The explanatory header of text firewall exports: deployment, host names, rules left out."""

from __future__ import annotations

from dsaudit.firewall.comments import ascii_text
from dsaudit.firewall.plan import Plan
from dsaudit.inventory import Inventory


def header_lines(
    plan: Plan, inventory: Inventory, mark: str, *, hostnames: bool = True
) -> list[str]:
    """Comment lines (each starting with `mark`) that say what the rules were made from."""
    d = inventory.deployment
    out = [
        f"{mark} Deep Security allow rules written by dsaudit from the port catalog.",
        f"{mark} Inventory: {ascii_text(inventory.path)}",
        f"{mark} Deployment: version {d.version}, {d.mode}, communication {d.communication}, "
        f"database {d.database or 'none'}, updates {d.updates}, siem {d.siem}",
        f"{mark} Each rule's comment names the catalog rule id(s) and purpose "
        "(see `dsaudit rules list`).",
        f"{mark} Port 4123 (relay.in.local-agent-4123) is localhost only: loopback is allowed as "
        "a whole and the port never appears here.",
    ]
    if plan.inventory_names:
        out.append(
            f"{mark} Inventory hosts given by name cannot go in address rules; resolve them "
            "and list addresses:"
        )
        out += [f"{mark}   {role}: {name}" for role, name in plan.inventory_names]
    if plan.hostnames and hostnames:
        out.append(
            f"{mark} Internet peers are allowed by address (any); to restrict by name, allow "
            "these on the proxy (--format proxy-allowlist):"
        )
        out += [f"{mark}   {name}" for name, _ in plan.hostnames]
    if plan.skipped:
        out.append(f"{mark} Catalog rules not exported:")
        out += [f"{mark}   {rule_id}: {ascii_text(reason)}" for rule_id, reason in plan.skipped]
    return out
