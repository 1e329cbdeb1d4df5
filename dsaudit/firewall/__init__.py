"""Firewall, security-group and proxy exports of the catalog for one concrete deployment."""

from __future__ import annotations

import json

from dsaudit.errors import DsauditError
from dsaudit.firewall.cloud import render_aws, render_azure
from dsaudit.firewall.iptables import render_iptables
from dsaudit.firewall.nftables import render_nftables
from dsaudit.firewall.plan import Allow, Endpoint, Plan, build_plan
from dsaudit.firewall.tables import render_csv_plan, render_markdown_plan, render_proxy_allowlist
from dsaudit.inventory import Inventory

__all__ = ["FORMATS", "Allow", "Endpoint", "Plan", "build_plan", "render"]

FORMATS = (
    "nftables",
    "iptables",
    "ip6tables",
    "aws-sg",
    "azure-nsg",
    "csv",
    "markdown",
    "proxy-allowlist",
)


def render(
    plan: Plan,
    inventory: Inventory,
    fmt: str,
    *,
    role: str | None = None,
    direction: str = "inbound",
    policy: str = "accept",
) -> str:
    """The plan in one of FORMATS, as the text to write to a file."""
    if fmt == "nftables":
        return render_nftables(plan, inventory, policy=policy)
    if fmt in ("iptables", "ip6tables"):
        version = 4 if fmt == "iptables" else 6
        return render_iptables(plan, inventory, version=version, policy=policy)
    if fmt == "aws-sg":
        if role is None:
            raise DsauditError("--format aws-sg writes one security group: give --role")
        return json.dumps(render_aws(plan, role, direction), indent=2) + "\n"
    if fmt == "azure-nsg":
        return json.dumps(render_azure(plan, role), indent=2) + "\n"
    if fmt == "csv":
        return render_csv_plan(plan)
    if fmt == "markdown":
        return render_markdown_plan(plan, inventory)
    if fmt == "proxy-allowlist":
        return render_proxy_allowlist(plan, inventory)
    raise DsauditError(f"unknown format {fmt!r}")
