"""`dsaudit flows`: read captures and print their bidirectional flows with peer names."""

from __future__ import annotations

import sys

import click

from dsaudit.commands.options import limit_options, limits, output_path, timeout_options
from dsaudit.errors import DsauditError
from dsaudit.reports.formats import FLOW_FORMATS
from dsaudit.text.safe import for_terminal


@click.command()
@limit_options
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FLOW_FORMATS),
    default="table",
    show_default=True,
    help="Output format; table fits the terminal, parquet needs --output.",
)
@click.option(
    "--output",
    "-o",
    callback=output_path,
    type=click.Path(dir_okay=False),
    help="File to write (default stdout).",
)
@click.option(
    "--engine",
    type=click.Choice(["fast", "tshark"]),
    default="fast",
    show_default=True,
    help="fast: the built-in compiled decoder; tshark: Wireshark's dissectors through pyshark.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="2 or more: read and decode in a second thread, beside the flow table and "
    "naming (results are identical for any value).",
)
@timeout_options
@click.option(
    "--vlan-key/--no-vlan-key",
    default=True,
    show_default=True,
    help="Key flows by VLAN ids, as Zeek does (a connection whose answers come on "
    "another VLAN is still joined into one flow); --no-vlan-key ignores VLAN ids.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
def flows(
    captures: tuple[str, ...],
    fmt: str,
    output: str | None,
    engine: str,
    jobs: int,
    tcp_timeout: float,
    udp_timeout: float,
    vlan_key: bool,
    max_flows: int,
    max_dns_entries: int,
    max_reassembly_mb: int,
    progress: bool | None,
) -> None:
    """Build bidirectional flows from CAPTURES (pcap, pcapng, .gz), read as one stream."""
    from dsaudit.flow_records.builder import FlowOptions
    from dsaudit.flow_records.reading import read_captures
    from dsaudit.flows.table import Timeouts
    from dsaudit.reports.flow_output import write_flows

    options = FlowOptions(
        timeouts=Timeouts(tcp=tcp_timeout, udp=udp_timeout, other=udp_timeout),
        vlan_key=vlan_key,
        **limits(max_flows, max_dns_entries, max_reassembly_mb),
    )
    show = sys.stderr.isatty() if progress is None else progress
    result = read_captures(list(captures), engine=engine, jobs=jobs, options=options, progress=show)
    warnings = result.warnings_and_notes
    # Frames that made no flow (or whose tunnel was not opened) are never left out silently.
    undecoded = result.stats.not_decoded_summary()
    if undecoded is not None:
        warnings.append(undecoded)
    for warning in warnings:
        click.echo(f"dsaudit: warning: {for_terminal(warning)}", err=True)
    if not len(result.table) and result.stats.frames == 0 and result.warnings:
        raise DsauditError("no packets could be read")
    write_flows(result.table, fmt, output, warnings)
