"""Write allow rules as CSV or Markdown for review, and the host names a proxy must allow."""

from __future__ import annotations

from dsaudit.catalog.textcells import render_csv, render_markdown
from dsaudit.firewall.header import header_lines
from dsaudit.firewall.nftables import collapse
from dsaudit.firewall.plan import Allow, Endpoint, Plan
from dsaudit.inventory import Inventory

HEADER = (
    "rule_ids",
    "client_role",
    "client",
    "server_role",
    "server",
    "transport",
    "ports",
    "via_proxy",
    "hostnames",
    "purpose",
)


def _addresses(endpoint: Endpoint, versions: tuple[int, ...], sep: str) -> str:
    if endpoint.any:
        return "any"
    nets = [n for v in versions for n in endpoint.family(v)]
    return sep.join(str(n) for n in collapse(tuple(nets)))


def _row(allow: Allow, sep: str) -> list[str]:
    return [
        " ".join(allow.rule_ids),
        allow.client.key,
        _addresses(allow.client, allow.families(), sep),
        allow.server.key,
        _addresses(allow.server, allow.families(), sep),
        allow.transport,
        str(allow.ports),
        "yes" if allow.via_proxy else "no",
        sep.join(allow.hostnames),
        allow.purpose,
    ]


def render_csv_plan(plan: Plan) -> str:
    return render_csv(HEADER, [_row(a, " ") for a in plan.allows])


def render_markdown_plan(plan: Plan, inventory: Inventory) -> str:
    d = inventory.deployment
    out = [
        "# Deep Security allow rules",
        "",
        f"Deployment: version {d.version}, {d.mode}, communication {d.communication}, "
        f"database {d.database or 'none'}, updates {d.updates}, siem {d.siem}.",
        "",
        render_markdown(HEADER, [_row(a, "\n") for a in plan.allows]),
    ]
    if plan.skipped:
        out += ["## Catalog rules not exported", ""]
        out.append(render_markdown(("rule_id", "reason"), plan.skipped))
    return "\n".join(out)


def render_proxy_allowlist(plan: Plan, inventory: Inventory) -> str:
    """One internet host name per line, each followed by the catalog rules that need it."""
    lines = header_lines(plan, inventory, "#", hostnames=False)
    width = max((len(name) for name, _ in plan.hostnames), default=0)
    lines += [f"{name:<{width}}  # {' '.join(ids)}" for name, ids in plan.hostnames]
    return "\n".join(lines) + "\n"
