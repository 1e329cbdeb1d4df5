"""`dsaudit inventory`: check an inventory file and show what dsaudit reads from it."""

from __future__ import annotations

from pathlib import Path

import click

from dsaudit.commands.options import output_path
from dsaudit.errors import DsauditError
from dsaudit.inventory import load_inventory


@click.group()
def inventory() -> None:
    """Inventory files: one deployment's settings and hosts per role."""


@inventory.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Check FILE; print the deployment settings (defaults filled in) and hosts per role.

    Problems are reported as FILE:LINE: MESSAGE, all at once, with exit code 2.
    """
    inv = load_inventory(file)
    d = inv.deployment
    click.echo(f"{file}: ok")
    click.echo(
        f"deployment: version {d.version} (agents {', '.join(d.agent_versions)}), {d.mode}, "
        f"communication {d.communication}, database {d.database or 'none'}, "
        f"heartbeat every {d.heartbeat_interval}s, updates {d.updates}, siem {d.siem}"
    )
    for role, entries in inv.hosts.items():
        click.echo(f"{role}: {', '.join(e.text for e in entries)}")
    for role, names in inv.names.items():
        click.echo(f"{role} names: {', '.join(names)}")


@inventory.command("infer")
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--output",
    "-o",
    callback=output_path,
    type=click.Path(dir_okay=False),
    help="Write the YAML here.",
)
def infer_cmd(captures: tuple[str, ...], output: str | None) -> None:
    """Infer an inventory from CAPTURES: roles per address, with evidence and confidence.

    The result is an inventory file to review and correct, then pass to `dsaudit audit`.
    """
    from dsaudit.flow_records.reading import read_captures
    from dsaudit.judge.inference import infer
    from dsaudit.reports.text_out import write_text
    from dsaudit.text.safe import for_terminal

    read = read_captures(list(captures))
    for warning in read.warnings_and_notes:
        click.echo(f"dsaudit: warning: {for_terminal(warning)}", err=True)
    if read.stats.frames == 0:
        raise DsauditError("the capture holds no packets: nothing to infer from")
    write_text([infer(read.flows).to_yaml()], output)
