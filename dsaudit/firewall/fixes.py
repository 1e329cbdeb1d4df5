"""Allow rules that would open exactly the blocked and missing expected flows of an audit."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pandas as pd

from dsaudit.catalog import Catalog
from dsaudit.catalog.schema import Ports, Rule
from dsaudit.errors import DsauditError
from dsaudit.firewall.cloud import render_aws, render_azure
from dsaudit.firewall.iptables import render_iptables
from dsaudit.firewall.nftables import render_nftables
from dsaudit.firewall.plan import Allow, Endpoint, Plan, _endpoint
from dsaudit.frames import row_dicts
from dsaudit.inventory import Inventory
from dsaudit.reports.formats import FIX_DIALECTS

FIX_KINDS = ("blocked_expected_flow", "missing_expected_flow")


def _host(address: str, role: str) -> Endpoint | None:
    """One host as an endpoint of its own (the tag keeps its address set apart)."""
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return None
    tag = re.sub(r"[^0-9A-Za-z]", "_", str(net.network_address))
    return Endpoint(role, (net,), tag=tag)


def _role_of(roles: Any, candidates: tuple[str, ...]) -> str:
    mine = [r for r in str(roles or "").split("+") if r]
    for r in mine:
        if r in candidates:
            return r
    return candidates[0] if candidates else (mine[0] if mine else "host")


def _blocked_allows(
    finding: dict[str, Any], flows: pd.DataFrame, rule: Rule
) -> tuple[list[Allow], str]:
    ids = [int(i) for i in finding["flow_ids"]]
    sub = flows[flows["flow_id"].isin(ids)]
    out: list[Allow] = []
    cols = ["client_ip", "client_role", "server_ip", "server_role", "proto", "server_port"]
    for r in row_dicts(sub[cols].drop_duplicates()):
        client = _host(str(r["client_ip"]), _role_of(r["client_role"], rule.client_roles))
        server = _host(str(r["server_ip"]), _role_of(r["server_role"], rule.server_roles))
        if client is None or server is None or str(r["proto"]) not in ("tcp", "udp"):
            continue
        ports = Ports.of(int(r["server_port"])) if rule.ports.any else rule.ports
        out.append(Allow((rule.id,), rule.purpose_en, client, server, str(r["proto"]), ports))
    return out, "" if out else "the blocked flows are not TCP or UDP between addresses"


def _missing_allows(
    finding: dict[str, Any], rule: Rule, inventory: Inventory
) -> tuple[list[Allow], str]:
    host, role = str(finding["host"]), str(finding["role"])
    is_client = role in rule.client_roles
    peers = rule.peers if role == rule.role else (rule.role,)
    me = _host(host, role)
    if me is None:
        return [], f"{host} is not an address: resolve it and list it in the inventory"
    out: list[Allow] = []
    why = ""
    for peer_role in peers:
        peer = _endpoint(inventory, peer_role)
        if not peer.any and not peer.networks:
            why = f"no addresses for {peer_role} in the inventory"
            continue
        client, server = (me, peer) if is_client else (peer, me)
        for transport in rule.transports:
            allow = Allow((rule.id,), rule.purpose_en, client, server, transport, rule.ports)
            if allow.families():
                out.append(allow)
    return out, "" if out else why or "no address family both ends share"


def plan_fixes(
    findings: pd.DataFrame, flows: pd.DataFrame, catalog: Catalog, inventory: Inventory
) -> tuple[Plan, dict[int, list[Allow]]]:
    """One plan with the allow rules of every blocked or missing expected flow, and which
    rules each finding needs; findings no rule can be written for are in ``skipped``."""
    per: dict[int, list[Allow]] = {}
    allows: list[Allow] = []
    skipped: list[tuple[str, str]] = []
    for f in row_dicts(findings[findings["kind"].astype(str).isin(FIX_KINDS)]):
        rule_id = f["rule"]
        if not isinstance(rule_id, str) or rule_id not in catalog:
            continue
        rule = catalog.get(rule_id)
        if f["kind"] == "blocked_expected_flow":
            mine, why = _blocked_allows(f, flows, rule)
        else:
            mine, why = _missing_allows(f, rule, inventory)
        if why:
            skipped.append((rule_id, f"{f['host']}: {why}"))
        per[int(f["finding_id"])] = mine
        for allow in mine:
            if allow not in allows:
                allows.append(allow)
    plan = Plan(allows=tuple(allows), skipped=tuple(skipped), hostnames=(), inventory_names=())
    return plan, per


def _roles(plan: Plan) -> list[str]:
    seen: dict[str, None] = {}
    for a in plan.allows:
        for end in (a.client, a.server):
            if not end.any:
                seen[end.role] = None
    return list(seen)


def render_fixes(plan: Plan, inventory: Inventory, dialect: str) -> str:
    """The allow rules as a file in ``dialect``, written by the firewall export's writers."""
    if dialect == "nftables":
        return render_nftables(plan, inventory)
    if dialect in ("iptables", "ip6tables"):
        return render_iptables(
            plan, inventory, version=4 if dialect == "iptables" else 6, option="--fix"
        )
    if dialect == "aws-sg":
        groups = [
            {"role": role, "direction": direction, "IpPermissions": perms}
            for role in _roles(plan)
            for direction in ("inbound", "outbound")
            if (perms := render_aws(plan, role, direction))
        ]
        return json.dumps(groups, indent=2) + "\n"
    if dialect == "azure-nsg":
        return json.dumps(render_azure(plan), indent=2) + "\n"
    raise DsauditError(f"unknown --fix dialect {dialect!r}; use one of {', '.join(FIX_DIALECTS)}")


def other_family(plan: Plan, dialect: str) -> str | None:
    """For an iptables dialect, a one-line note on the rules only the other family's file has."""
    if dialect not in ("iptables", "ip6tables"):
        return None
    version = 4 if dialect == "iptables" else 6
    other = [a for a in plan.allows if version not in a.families() and a.families()]
    if not other:
        return None
    flag = "ip6tables" if version == 4 else "iptables"
    return f"{len(other)} fix rule(s) are for IPv{10 - version} only: see --fix {flag}"


_NFT_SET = re.compile(r"^\s*set (\S+) \{\n(?:.*\n)*?\s*elements = \{ (.*) \}\n", re.MULTILINE)


def finding_lines(allows: list[Allow], inventory: Inventory, dialect: str) -> list[str]:
    """The rule lines of one finding's allows, each readable on its own."""
    if not allows:
        return []
    plan = Plan(allows=tuple(allows), skipped=(), hostnames=(), inventory_names=())
    text = render_fixes(plan, inventory, dialect)
    if dialect == "nftables":
        sets = {name: elements for name, elements in _NFT_SET.findall(text)}
        lines = [ln.strip() for ln in text.splitlines() if " accept comment " in ln]
        # Address sets written out in place, so one line says everything.
        return [re.sub(r"@(\w+)", lambda m: "{ " + sets.get(m[1], m[0]) + " }", ln) for ln in lines]
    if dialect in ("iptables", "ip6tables"):
        return [ln for ln in text.splitlines() if ln.startswith("-A DSAUDIT ")]
    if dialect == "aws-sg":
        return [
            f"{g['role']} {g['direction']}: {json.dumps(p, separators=(',', ':'))}"
            for g in json.loads(text)
            for p in g["IpPermissions"]
        ]
    return [json.dumps(r, separators=(",", ":")) for r in json.loads(text)]


def attach_fixes(
    findings: pd.DataFrame,
    flows: pd.DataFrame,
    catalog: Catalog,
    inventory: Inventory,
    dialect: str,
) -> pd.DataFrame:
    """``findings`` with each blocked or missing expected flow's allow rules in ``fix``."""
    if findings.empty:
        return findings
    _, per = plan_fixes(findings, flows, catalog, inventory)
    fixes = [finding_lines(per.get(int(i), []), inventory, dialect) for i in findings["finding_id"]]
    out = findings.copy()
    out["fix"] = pd.Series(fixes, index=findings.index, dtype="object")
    return out
