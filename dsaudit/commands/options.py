"""Options shared by the commands that audit (audit, live, report), declared once."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar

import click

from dsaudit.errors import DsauditError
from dsaudit.judge.severities import SEVERITIES

F = TypeVar("F", bound=Callable[..., Any])


class AliasedOption(click.Option):
    """An option whose old names still work but no longer show in --help."""

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = hidden_aliases

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = self.opts
        self.opts = [o for o in shown if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def site_option(dest: str, path_type: type[Any] | None = None) -> Callable[[F], F]:
    """--site FILE: a site rules file, the same name in every command. ``--rules`` (what
    audit, report and live called it before 0.2) still works, unlisted, for a release."""
    return click.option(
        "--site",
        "--rules",
        dest,
        cls=AliasedOption,
        hidden_aliases=("--rules",),
        multiple=True,
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=path_type),
        help="A site rules file (added rules, port overrides); repeatable.",
    )


def inventory_options(func: F) -> F:
    """--inventory and --site: the deployment and the site's own rules."""
    func = site_option("rule_files")(func)
    return click.option(
        "--inventory",
        "-i",
        "inventory_path",
        type=click.Path(dir_okay=False),
        help="The deployment's inventory (YAML). Without it, roles are inferred.",
    )(func)


def judgement_options(func: F) -> F:
    """--fail-on, --strict, --vantage and --vlan-key: how the traffic is judged."""
    func = click.option(
        "--vlan-key/--no-vlan-key",
        default=True,
        show_default=True,
        help="Key flows by VLAN ids, as Zeek does (a connection whose answers come on "
        "another VLAN is still joined into one flow); --no-vlan-key ignores VLAN ids.",
    )(func)
    func = click.option(
        "--vantage",
        metavar="ADDRESS|span",
        callback=_vantage,
        help="Where the capture was taken: the capturing host's address, or span for a "
        "mirror port or tap (default: detected from the traffic).",
    )(func)
    func = click.option(
        "--strict",
        is_flag=True,
        help="Count traffic the port table does not speak of (ICMP, DHCP, ...) too.",
    )(func)
    return click.option(
        "--fail-on",
        type=click.Choice(SEVERITIES),
        default="high",
        show_default=True,
        help="Exit 1 when a finding is at least this severe.",
    )(func)


def _vantage(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "span":
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an IP address nor span", ctx=ctx, param=param
        ) from None


def check_output(path: object) -> None:
    """Refuse an output whose folder does not exist before the work, not after a whole audit
    was spent on it. Creating folders is left to the user: a typo must not leave directories
    behind (Parquet's output directory is the exception: its writer creates it)."""
    if path is None or str(path) == "-":
        return
    parent = os.path.dirname(os.path.abspath(str(path)))
    if not os.path.isdir(parent):
        raise DsauditError(f"cannot write {path}: the folder {parent} does not exist")


def output_path(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback form of check_output, run while the options are read."""
    check_output(value)
    return value


# Idle timeouts in seconds: zero or less would end every flow at its first packet.
TIMEOUT = click.FloatRange(min=0, min_open=True)


def timeout_options(func: F) -> F:
    """Idle timeouts after which a flow ends (Zeek's defaults)."""
    func = click.option(
        "--udp-timeout",
        type=TIMEOUT,
        default=60.0,
        show_default=True,
        help="Seconds of silence after which a UDP or ICMP flow ends.",
    )(func)
    return click.option(
        "--tcp-timeout",
        type=TIMEOUT,
        default=300.0,
        show_default=True,
        help="Seconds of silence after which a TCP flow ends.",
    )(func)


def limit_options(func: F) -> F:
    """Memory bounds: flows, DNS answers and TCP reassembly buffers kept at once."""
    func = click.option(
        "--max-reassembly-mb",
        type=click.IntRange(1),
        default=64,
        show_default=True,
        help="Megabytes of TCP payload held for naming; past it the oldest buffers go.",
    )(func)
    func = click.option(
        "--max-dns-entries",
        type=click.IntRange(100),
        default=1_000_000,
        show_default=True,
        help="Client and address pairs the DNS map remembers; older ones are dropped.",
    )(func)
    return click.option(
        "--max-flows",
        type=click.IntRange(1000),
        default=2_000_000,
        show_default=True,
        help="Flows kept in memory; older ones are evicted, summarised and reported.",
    )(func)


class Limits(TypedDict):
    """The FlowOptions fields the limit options set."""

    max_flows: int
    max_dns_entries: int
    max_reassembly_bytes: int


def limits(max_flows: int, max_dns_entries: int, max_reassembly_mb: int) -> Limits:
    """The FlowOptions fields the limit options set."""
    return {
        "max_flows": max_flows,
        "max_dns_entries": max_dns_entries,
        "max_reassembly_bytes": max_reassembly_mb << 20,
    }
