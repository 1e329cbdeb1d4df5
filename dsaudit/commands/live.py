"""`dsaudit live`: capture on an interface, report findings as they appear, then audit it all."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from dsaudit.commands.options import (
    check_output,
    inventory_options,
    judgement_options,
    limit_options,
    limits,
    output_path,
    timeout_options,
)
from dsaudit.errors import DsauditError
from dsaudit.reports.formats import AUDIT_FORMATS
from dsaudit.text.safe import for_terminal

if TYPE_CHECKING:
    from dsaudit.runs.live import EventSink


@click.command()
@limit_options
@inventory_options
@judgement_options
@click.option("--interface", "iface", required=True, metavar="IFACE", help="Where to capture.")
@click.option("--bpf", metavar="EXPR", help="Capture filter (tcpdump syntax), run in the kernel.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Stop after S seconds.",
)
@click.option("--count", type=click.IntRange(min=1), metavar="N", help="Stop after N packets.")
@click.option(
    "--write",
    "write_path",
    callback=output_path,
    type=click.Path(dir_okay=False),
    help="Save every captured packet to this pcap (written as it goes, flushed).",
)
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    type=click.Choice(AUDIT_FORMATS),
    help="Format of the final report.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    help="File (or stem for parquet) to write.",
)
@click.option(
    "--engine",
    type=click.Choice(["scapy", "tshark"]),
    default="scapy",
    show_default=True,
    help="scapy: packet socket read by scapy's AsyncSniffer; tshark: Wireshark's dumpcap, "
    "for higher packet rates.",
)
@click.option(
    "--events",
    type=click.Choice(["auto", "view", "jsonl", "none"]),
    default="auto",
    show_default=True,
    help="While running: a terminal view, or JSON Lines on stdout (auto: the view when "
    "stdout is a terminal).",
)
@timeout_options
@click.option(
    "--window",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    metavar="S",
    help="Every S seconds, flows idle past their timeout leave memory (see docs/live.md).",
)
@click.option(
    "--snaplen",
    type=click.IntRange(64, 262144),
    default=262144,
    show_default=True,
    help="Bytes of each packet kept (names come from the first payload bytes).",
)
@click.option(
    "--promisc/--no-promisc",
    default=True,
    show_default=True,
    help="Put the interface in promiscuous mode, to see traffic between other hosts.",
)
def live(
    iface: str,
    bpf: str | None,
    duration: float | None,
    count: int | None,
    inventory_path: str | None,
    rule_files: tuple[str, ...],
    write_path: str | None,
    fmt: str,
    output: str | None,
    engine: str,
    events: str,
    fail_on: str,
    strict: bool,
    vantage: str | None,
    vlan_key: bool,
    tcp_timeout: float,
    udp_timeout: float,
    window: float,
    snaplen: int,
    promisc: bool,
    max_flows: int,
    max_dns_entries: int,
    max_reassembly_mb: int,
) -> None:
    """Capture on IFACE and audit the traffic as it happens.

    Stops on --duration, --count, Ctrl-C or SIGTERM, then prints the same report as
    `dsaudit audit`. Exit code 0: compliant; 1: findings at or above --fail-on;
    2: usage, privilege or input error, or no packet captured; 3: inconclusive (no
    expected flow could be judged, or no Deep Security traffic).
    """
    from dsaudit.sources.live.engines import open_source
    from dsaudit.sources.live.interfaces import list_interfaces

    if fmt != "parquet":  # parquet's --output is a directory or stem its writer creates
        check_output(output)
    # The privilege and interface checks come first: they are the likely failures and
    # need nothing else loaded.
    source = open_source(engine, iface, bpf=bpf, snaplen=snaplen, promisc=promisc, count=count)
    writer = None
    try:
        from dsaudit.catalog import load_catalog
        from dsaudit.flow_records.builder import FlowOptions
        from dsaudit.flows.table import Timeouts
        from dsaudit.inventory import load_inventory
        from dsaudit.reports.audit_output import write_audit
        from dsaudit.runs.live import LiveAudit, LiveOptions
        from dsaudit.sources.pcap_writer import PcapWriter

        catalog = load_catalog(extra_paths=rule_files)
        inventory = load_inventory(inventory_path) if inventory_path else None
        if write_path:
            writer = PcapWriter(write_path, source.linktype, source.snaplen)
        local = [a for i in list_interfaces() if i.name == iface for a in i.addresses]
        options = LiveOptions(
            flow=FlowOptions(
                timeouts=Timeouts(tcp=tcp_timeout, udp=udp_timeout, other=udp_timeout),
                vlan_key=vlan_key,
                **limits(max_flows, max_dns_entries, max_reassembly_mb),
            ),
            duration_s=duration,
            count=count,
            window_s=window,
            strict=strict,
            vantage=vantage,
            fail_on=fail_on,
            bpf=bpf,
        )
        session = LiveAudit(
            source,
            catalog,
            inventory,
            options,
            sink=_sink(events),
            writer=writer,
            local_addresses=local,
        )
        if inventory is None:
            click.echo(
                "dsaudit: note: no --inventory given; roles are inferred from the traffic",
                err=True,
            )
        outcome = session.run()
    except BaseException:
        source.stop()
        raise
    finally:
        if writer is not None:
            writer.close()
    if outcome.error:
        click.echo(
            f"dsaudit: warning: the capture ended early: {for_terminal(outcome.error)}", err=True
        )
    for warning in outcome.flows.warnings_and_notes:
        click.echo(f"dsaudit: warning: {for_terminal(warning)}", err=True)
    if outcome.stats.packets == 0:
        # No packets is not compliance, as with `dsaudit audit` on an empty file.
        raise DsauditError(_no_packets(iface, bpf, outcome.stop_reason, outcome.error))
    to_stdout = output in (None, "-")
    if outcome.stop_reason == "output-closed" and to_stdout:
        # Whoever read stdout has gone (`| head`): there is nobody to print the report to.
        _silence_stdout()
        sys.exit(outcome.result.exit_code(fail_on))
    write_audit(outcome.result, fmt, output)
    sys.exit(outcome.result.exit_code(fail_on))


def _no_packets(iface: str, bpf: str | None, why: str, error: str | None) -> str:
    """The one-line reason a live session that captured nothing gives no verdict."""
    stopped = {
        "duration": "the --duration ran out",
        "interrupted": "it was interrupted",
        "terminated": "it was terminated",
        "error": f"the capture failed ({for_terminal(error)})" if error else "the capture failed",
    }.get(why, "it stopped")
    hint = f" with the filter {bpf!r}" if bpf else ""
    return (
        f"no packets were captured on {iface}{hint} before {stopped}: nothing to audit "
        "(check the interface and the filter)"
    )


def _sink(mode: str) -> EventSink:
    from dsaudit.runs.live import NullSink
    from dsaudit.runs.live_view import JsonLinesSink, RichView

    if mode == "auto":
        mode = "view" if sys.stdout.isatty() else "jsonl"
    if mode == "view":
        return RichView()
    if mode == "jsonl":
        return JsonLinesSink(sys.stdout)
    return NullSink()


def _silence_stdout() -> None:
    # Python flushes stdout at exit; into a closed pipe that is one more error message.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
