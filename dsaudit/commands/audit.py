"""`dsaudit audit`: judge captured traffic against the catalog for one deployment and report."""

from __future__ import annotations

import sys

import click

from dsaudit.commands.options import (
    check_output,
    inventory_options,
    judgement_options,
    limit_options,
    limits,
)
from dsaudit.errors import DsauditError
from dsaudit.reports.formats import AUDIT_FORMATS, FIX_DIALECTS
from dsaudit.text.safe import for_terminal


@click.command()
@limit_options
@inventory_options
@judgement_options
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    type=click.Choice(AUDIT_FORMATS),
    help="Report format (docs/reports.md); table fits the terminal.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    help="File (or stem for parquet) to write.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Read ahead in a thread; judge flows and write JSON in this many processes "
    "(results are identical for any value).",
)
@click.option(
    "--fix",
    "fix",
    type=click.Choice(FIX_DIALECTS),
    default=None,
    help="Also write allow rules for exactly the blocked and missing expected flows.",
)
@click.option(
    "--fix-output",
    type=click.Path(dir_okay=False),
    default=None,
    help="File for the --fix rules (default: standard output, when the report has --output).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
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
    max_dns_entries: int,
    max_reassembly_mb: int,
    fix: str | None,
    fix_output: str | None,
    progress: bool | None,
) -> None:
    """Audit CAPTURES against the Deep Security port catalog.

    Exit code 0: compliant; 1: findings at or above --fail-on; 2: usage or input error
    (an empty capture too); 3: inconclusive (no expected flow could be judged, or no Deep
    Security traffic).
    """
    from dsaudit.catalog import load_catalog
    from dsaudit.flow_records.builder import FlowOptions
    from dsaudit.flow_records.reading import read_captures
    from dsaudit.inventory import load_inventory
    from dsaudit.judge.inference import infer
    from dsaudit.reports.audit_output import write_audit
    from dsaudit.runs.audit import AuditOptions, run_audit

    if fix is not None and fix_output is None and output is None:
        raise DsauditError("--fix needs --fix-output FILE, or --output for the report")
    if fix is None and fix_output is not None:
        raise DsauditError("--fix-output needs --fix DIALECT")
    if fmt != "parquet":  # parquet's --output is a directory or stem its writer creates
        check_output(output)
    if fix_output is not None:
        check_output(fix_output)
    catalog = load_catalog(extra_paths=rule_files)
    inventory = load_inventory(inventory_path) if inventory_path else None
    show = sys.stderr.isatty() if progress is None else progress
    read = read_captures(
        list(captures),
        jobs=jobs,
        options=FlowOptions(
            vlan_key=vlan_key, **limits(max_flows, max_dns_entries, max_reassembly_mb)
        ),
        progress=show,
    )
    for warning in read.warnings_and_notes:
        click.echo(f"dsaudit: warning: {for_terminal(warning)}", err=True)
    # No packets is not compliance: monitoring must hear that there was nothing to judge.
    if read.stats.frames == 0:
        raise DsauditError("the capture holds no packets: nothing to audit")
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
        AuditOptions(
            strict=strict,
            vantage=vantage,
            fail_on=fail_on,
            inventory_label=label,
            jobs=jobs,
            fix=fix or "nftables",
        ),
    )
    write_audit(result, fmt, output, jobs=jobs)
    if fix is not None:
        from dsaudit.firewall.fixes import other_family, plan_fixes, render_fixes
        from dsaudit.reports.text_out import write_text

        plan, _ = plan_fixes(result.findings, result.flows, catalog, inventory)
        text = render_fixes(plan, inventory, fix)
        note = other_family(plan, fix)
        if note is not None:
            click.echo(f"dsaudit: warning: {note}", err=True)
        if fix_output is None:
            click.echo(text, nl=False)
        else:
            write_text([text], fix_output)
    sys.exit(result.exit_code(fail_on))
