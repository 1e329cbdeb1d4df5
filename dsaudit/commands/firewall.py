"""`dsaudit firewall`: allow rules for one deployment, from the catalog and an inventory."""

from __future__ import annotations

from pathlib import Path

import click

from dsaudit.catalog import load_catalog
from dsaudit.catalog.roles import DIRECTIONS, HOST_ROLES
from dsaudit.commands.options import output_path, site_option
from dsaudit.firewall import FORMATS, build_plan, render
from dsaudit.inventory import load_inventory
from dsaudit.reports.text_out import write_text

# Formats whose output has no room for comments: what was left out goes to stderr instead.
_NO_COMMENTS = ("aws-sg", "azure-nsg", "csv")


@click.command()
@click.option(
    "--inventory",
    "inventory_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The deployment's inventory YAML.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="nftables",
    show_default=True,
    help="Rule syntax to write.",
)
@click.option(
    "--role",
    type=click.Choice(HOST_ROLES),
    help="Only the rules of this role's hosts (aws-sg: the security group's role, required).",
)
@click.option(
    "--direction",
    type=click.Choice(DIRECTIONS),
    default="inbound",
    show_default=True,
    help="aws-sg: ingress (inbound) or egress (outbound) permissions.",
)
@click.option(
    "--policy",
    type=click.Choice(("accept", "drop")),
    default="accept",
    show_default=True,
    help="nftables/iptables: policy of the input/forward/output chains.",
)
@click.option("--port-scan", is_flag=True, help="Also allow the manager's all-ports scan.")
@site_option("site_files", Path)
@click.option(
    "--rules-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Vendor catalog directory (default: rules/deep-security, or $DSAUDIT_RULES_DIR).",
)
@click.option(
    "-o",
    "--output",
    callback=output_path,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
def firewall(
    inventory_path: Path,
    fmt: str,
    role: str | None,
    direction: str,
    policy: str,
    port_scan: bool,
    site_files: tuple[Path, ...],
    rules_dir: Path | None,
    output: Path | None,
) -> None:
    """Write allow rules for one deployment (nftables, iptables, AWS, Azure, CSV, Markdown).

    Every rule carries the catalog id and purpose it comes from.  Host names cannot go in
    address rules: internet peers are allowed by address and their names are listed in the
    header (or use --format proxy-allowlist for the proxy).
    """
    catalog = load_catalog(site_files, rules_dir)
    inventory = load_inventory(inventory_path)
    plan = build_plan(catalog, inventory, port_scan=port_scan)
    if role is not None and fmt not in ("aws-sg", "azure-nsg"):
        plan = plan.for_role(role)
    text = render(plan, inventory, fmt, role=role, direction=direction, policy=policy)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_text([text], str(output))
    if fmt in _NO_COMMENTS:
        for rule_id, reason in plan.skipped:
            click.echo(f"dsaudit: not exported: {rule_id}: {reason}", err=True)
