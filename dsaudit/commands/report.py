"""`dsaudit report`: audit a period of captures or flow logs, store the run, report trends."""

from __future__ import annotations

import datetime as dt
import os
import sys

import click

from dsaudit.commands.options import (
    inventory_options,
    judgement_options,
    limit_options,
    limits,
    output_path,
)
from dsaudit.errors import DsauditError
from dsaudit.reports.formats import REPORT_FORMATS
from dsaudit.text.safe import for_terminal


@click.command()
@limit_options
@inventory_options
@judgement_options
@click.argument("paths", nargs=-1, required=True)
@click.option("--since", metavar="TIME", help="Period start: ISO-8601 or 24h, 7d ago.")
@click.option("--until", metavar="TIME", help="Period end: ISO-8601 or 1h ago.")
@click.option(
    "--source",
    type=click.Choice(["auto", "pcap", "zeek", "vpc", "suricata"]),
    default="auto",
    show_default=True,
    help="What the files are (auto: detected from their content).",
)
@click.option(
    "--vpc-format",
    metavar="FIELDS",
    help="Fields of header-less VPC flow logs (AWS ${field} syntax or names).",
)
@click.option(
    "--history",
    "history_path",
    type=click.Path(dir_okay=False),
    help="History store (SQLite). Default: $DSAUDIT_HISTORY or "
    "~/.local/share/dsaudit/history.sqlite.",
)
@click.option("--no-history", is_flag=True, help="Neither store this run nor show trends.")
@click.option(
    "--trend-runs",
    type=click.IntRange(2, 1000),
    default=10,
    show_default=True,
    help="Stored runs the compliance trend covers.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(REPORT_FORMATS),
    help="Report format. Default: from the --output extension (.html, .md, .json, .txt), "
    "else table; any other extension is an error.",
)
@click.option(
    "--output",
    "-o",
    callback=output_path,
    type=click.Path(dir_okay=False),
    help="File to write.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 256),
    default=lambda: os.cpu_count() or 1,
    show_default="all cores",
    help="Worker processes that read captures, judge flows and write JSON.",
)
@click.option("--dask", "dask_address", metavar="ADDRESS", help="Read on this Dask scheduler.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
def report(
    paths: tuple[str, ...],
    inventory_path: str | None,
    rule_files: tuple[str, ...],
    since: str | None,
    until: str | None,
    source: str,
    vpc_format: str | None,
    history_path: str | None,
    no_history: bool,
    trend_runs: int,
    fmt: str | None,
    output: str | None,
    fail_on: str,
    strict: bool,
    vantage: str | None,
    vlan_key: bool,
    jobs: int,
    dask_address: str | None,
    progress: bool | None,
    max_flows: int,
    max_dns_entries: int,
    max_reassembly_mb: int,
) -> None:
    """Audit PATHS (files, globs, directories) as one period and report with trends.

    Exit code 0: compliant; 1: findings at or above --fail-on; 2: usage or input error;
    3: inconclusive (no expected flow could be judged, or no Deep Security traffic).
    """
    from dsaudit.catalog import load_catalog
    from dsaudit.flow_records.builder import FlowOptions
    from dsaudit.flow_records.flowlogs.vpc import parse_format
    from dsaudit.inventory import load_inventory
    from dsaudit.judge.inference import infer
    from dsaudit.reports.report_output import format_for, write_report
    from dsaudit.runs.audit import AuditOptions, run_audit
    from dsaudit.runs.history import History, build_trends, check_folder, default_path
    from dsaudit.runs.periodic import parse_when, read_period
    from dsaudit.time_text import iso_now

    # Settle where everything goes before the work: a typo must not cost a whole audit.
    fmt = format_for(fmt, output)
    if not no_history:
        check_folder(history_path or default_path())
    started = iso_now()
    now = dt.datetime.now(dt.UTC)
    since_ns = parse_when(since, now) if since else None
    until_ns = parse_when(until, now) if until else None
    catalog = load_catalog(extra_paths=rule_files)
    inventory = load_inventory(inventory_path) if inventory_path else None
    read = read_period(
        paths,
        source=source,
        since=since_ns,
        until=until_ns,
        jobs=jobs,
        dask=dask_address,
        options=FlowOptions(
            vlan_key=vlan_key, **limits(max_flows, max_dns_entries, max_reassembly_mb)
        ),
        progress=sys.stderr.isatty() if progress is None else progress,
        vpc_fields=parse_format(vpc_format) if vpc_format else None,
    )
    for warning in read.result.warnings_and_notes:
        click.echo(f"dsaudit: warning: {for_terminal(warning)}", err=True)
    # No data is not compliance: monitoring must hear that the audit had nothing to judge.
    if read.result.stats.frames == 0 and not len(read.result.flows):
        raise DsauditError("the files hold no packets or flows: nothing to report")
    label = os.path.abspath(inventory_path) if inventory_path else "inferred"
    note = None
    if inventory is None:
        inventory = infer(read.result.flows).inventory()
        note = "inferred from the traffic (dsaudit inventory infer)"
        click.echo("dsaudit: note: no --inventory given; roles were inferred", err=True)
    result = run_audit(
        read.result,
        catalog,
        inventory,
        AuditOptions(
            strict=strict, vantage=vantage, fail_on=fail_on, inventory_label=note, jobs=jobs
        ),
    )
    period = read.period()
    trends = None
    if not no_history:
        with History(history_path or default_path()) as store:
            run = store.run(store.record(result, period, label, started))
            trends = build_trends(store, run, trend_runs)
        period["run_id"] = run.id
    write_report(result, period, trends, fmt, output, jobs=jobs)
    sys.exit(result.exit_code(fail_on))
