"""`dsaudit rules`: list the port catalog and lint rules files."""

from __future__ import annotations

from pathlib import Path

import click

from dsaudit.catalog import load_catalog
from dsaudit.catalog.export import FORMATS, render
from dsaudit.catalog.lint import lint as lint_files
from dsaudit.catalog.roles import DIRECTIONS, DS_ROLES, VERSIONS
from dsaudit.commands.options import site_option
from dsaudit.text.fit import output_width

_RULES_DIR = click.option(
    "--rules-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Vendor catalog directory (default: rules/deep-security, or $DSAUDIT_RULES_DIR).",
)


@click.group()
def rules() -> None:
    """The Deep Security port catalog (rules/deep-security) and site rules files."""


@rules.command("list")
@click.option("--role", type=click.Choice(DS_ROLES), help="Only rules of this role.")
@click.option(
    "--with-implied",
    is_flag=True,
    help="With --role relay, also list the agent rules a relay needs.",
)
@click.option("--direction", type=click.Choice(DIRECTIONS), help="Only this direction.")
@click.option(
    "--version",
    "version",
    type=click.Choice(VERSIONS),
    help="Only rules for this version; host names of this version.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format; table fits the terminal.",
)
@site_option("site_files", Path)
@_RULES_DIR
def list_rules(
    role: str | None,
    with_implied: bool,
    direction: str | None,
    version: str | None,
    fmt: str,
    site_files: tuple[Path, ...],
    rules_dir: Path | None,
) -> None:
    """List catalog rules."""
    catalog = load_catalog(site_files, rules_dir)
    selected = catalog.rules_for(role, direction, version, implied=with_implied)
    click.echo(render(selected, fmt, version, output_width()), nl=False)


@rules.command("lint")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@_RULES_DIR
@click.pass_context
def lint(ctx: click.Context, files: tuple[Path, ...], rules_dir: Path | None) -> None:
    """Check rules files; with no FILES, the vendor catalog.

    Files outside the catalog directory are checked as site files on top of the catalog.
    Every problem is printed as FILE:LINE: MESSAGE on stdout (their count on stderr), and
    the exit code is 2 if there are any; a clean check prints "ok: ..." on stdout.
    """
    result = lint_files(files, rules_dir)
    for loc, message in result.problems:
        click.echo(f"{loc}: {message}")
    if result.problems:
        count = len(result.problems)
        click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        ctx.exit(2)
    # The result of the check, as the problem lines are: stdout, for scripts to read.
    click.echo(f"ok: {result.rules} rules in {len(result.files)} files")
