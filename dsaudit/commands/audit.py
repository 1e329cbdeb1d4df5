"""`dsaudit audit`: judge captured traffic against the catalog for one deployment and report."""

from __future__ import annotations

import sys

import click

from dsaudit.findings import SEVERITIES
from dsaudit.report.safe_text import for_terminal


@click.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--inventory",
    "-i",
    "inventory_path",
    type=click.Path(dir_okay=False),
    help="The deployment's inventory (YAML). Without it, roles are inferred.",
)
@click.option(
    "--rules",
    "rule_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A site rules file (extra rules, port overrides); may repeat.",
)
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    type=click.Choice(["table", "markdown", "csv", "json", "html", "parquet"]),
)
@click.option("--output", "-o", type=click.Path(), help="File (or stem for parquet) to write.")
@click.option(
    "--fail-on",
    type=click.Choice(SEVERITIES),
    default="high",
    show_default=True,
    help="Exit 1 when a finding is at least this severe.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Count traffic the port table does not speak of (ICMP, DHCP, ...) too.",
)
@click.option(
    "--vantage",
    metavar="HOST|span",
    help="Where the capture was taken (default: detected from the traffic).",
)
@click.option(
    "--vlan-key/--no-vlan-key", default=True, show_default=True, help="Key flows by VLAN ids."
)
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--max-flows",
    type=click.IntRange(1000),
    default=2_000_000,
    show_default=True,
    help="Flows kept in memory; older ones are evicted, summarised and reported.",
)
@click.option("--progress/--no-progress", default=None)
def audit(
    captures: tuple[str, ...],
    inventory_path: str | None,
    rule_files: tuple[str, ...],
    fmt: str,
    output: str | None,
    fail_on: str,
    strict: bool,
    vantage: str | None,
    vlan_key: bool,
    jobs: int,
    max_flows: int,
    progress: bool | None,
) -> None:
    """Audit CAPTURES against the Deep Security port catalog.

    Exit code 0: compliant; 1: findings at or above --fail-on; 2: usage or input error.
    """
    from dsaudit.audit import AuditOptions, run_audit
    from dsaudit.catalog import load_catalog
    from dsaudit.engine import read_captures
    from dsaudit.inference import infer
    from dsaudit.inventory import load_inventory
    from dsaudit.pipeline import FlowOptions
    from dsaudit.report.audit_output import write_audit

    catalog = load_catalog(extra_paths=rule_files)
    inventory = load_inventory(inventory_path) if inventory_path else None
    show = sys.stderr.isatty() if progress is None else progress
    read = read_captures(
        list(captures),
        jobs=jobs,
        options=FlowOptions(vlan_key=vlan_key, max_flows=max_flows),
        progress=show,
    )
    for warning in read.warnings:
        click.echo(f"dsaudit: warning: {for_terminal(warning)}", err=True)
    label = None
    if inventory is None:
        inventory = infer(read.flows).inventory()
        label = "inferred from the traffic (dsaudit inventory infer)"
        click.echo(
            "dsaudit: note: no --inventory given; roles were inferred from the traffic", err=True
        )
    result = run_audit(
        read,
        catalog,
        inventory,
        AuditOptions(strict=strict, vantage=vantage, fail_on=fail_on, inventory_label=label),
    )
    write_audit(result, fmt, output)
    sys.exit(result.exit_code(fail_on))
