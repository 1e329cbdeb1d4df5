"""`dsaudit interfaces`: the interfaces `dsaudit live` can capture on, with their addresses."""

from __future__ import annotations

import json

import click
from tabulate import tabulate

from dsaudit.text.safe import for_terminal


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON for tools.",
)
def interfaces(fmt: str) -> None:
    """List capture interfaces with their state, link type and addresses."""
    from dsaudit.sources.live.interfaces import list_interfaces

    found = list_interfaces()
    if fmt == "json":
        rows = [
            {
                "name": i.name,
                "index": i.index,
                "kind": i.kind,
                "mac": i.mac,
                "up": i.up,
                "addresses": list(i.addresses),
            }
            for i in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = [
        [
            for_terminal(i.name),
            "up" if i.up else "down",
            i.kind,
            i.mac,
            "\n".join(i.addresses),
        ]
        for i in found
    ]
    table.append(["any", "", "all interfaces (Linux cooked)", "", ""])
    click.echo(tabulate(table, headers=["interface", "state", "link", "mac", "addresses"]))
