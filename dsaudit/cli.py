"""Command-line entry point: a thin click group; each subcommand lives in dsaudit.commands."""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any

import click

from dsaudit import __version__
from dsaudit.errors import DsauditError

# dsaudit does no linear algebra, but numpy's OpenBLAS starts a thread per core when numpy
# is imported, and those threads spin for a while: on a two-core machine (or pinned to one)
# that took 5 to 8 per cent of a run. Set before any command imports numpy; a value the
# user set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# name -> "module:attribute"; imported only when the subcommand runs so `dsaudit --help`
# stays fast and a broken optional dependency only breaks its own command.
COMMANDS: dict[str, str] = {
    "flows": "dsaudit.commands.flows:flows",
    "rules": "dsaudit.commands.rules:rules",
    "firewall": "dsaudit.commands.firewall:firewall",
    "audit": "dsaudit.commands.audit:audit",
    "inventory": "dsaudit.commands.inventory:inventory",
    "live": "dsaudit.commands.live:live",
    "interfaces": "dsaudit.commands.interfaces:interfaces",
    "report": "dsaudit.commands.report:report",
    "history": "dsaudit.commands.history:history",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("dsaudit.commands"):
                return None  # command not built yet
            raise
        command: click.Command = getattr(module, attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dsaudit")
def cli() -> None:
    """Audit Trend Micro Deep Security traffic against the vendor's port matrix."""


# click 8.2+ shows a group's help through a UsageError when it is given no subcommand.
_NO_ARGS_IS_HELP: tuple[type[Exception], ...] = tuple(
    t for t in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if t is not None
)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it: never mistaken for findings (1)


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI and leave with its exit code: 0 compliant, 1 findings, 2 a usage or input
    error (one line on stderr), 3 inconclusive (nothing could be judged), 130 interrupted
    (Ctrl-C)."""
    # A one-shot process that builds millions of acyclic objects: the cyclic collector only
    # costs time here (see dsaudit.flow_records.reading.no_cyclic_gc).
    gc.disable()
    # Not click's standalone mode: it reports Ctrl-C with exit code 1, which monitoring would
    # read as "findings".
    try:
        code = cli.main(args=argv, prog_name="dsaudit", standalone_mode=False)
    except DsauditError as exc:
        click.echo(f"dsaudit: error: {click.unstyle(str(exc))}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("dsaudit: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.UsageError as exc:
        if isinstance(exc, _NO_ARGS_IS_HELP):  # a bare group: its help is what was asked for
            exc.show()
            sys.exit(exc.exit_code)
        # One line, as for every other input error: click's usage block buries the message.
        where = exc.ctx.command_path if exc.ctx else "dsaudit"
        message = " ".join(click.unstyle(exc.format_message()).split())
        click.echo(f"dsaudit: error: {message} (see {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # The reader went away (| head): nothing more can be written, and the interpreter
        # must not try again when it flushes stdout on the way out.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def run() -> None:
    """The console script: main(), then leave at once instead of tearing the heap down.

    A large audit leaves gigabytes of small objects behind, and freeing them one by one at
    interpreter shutdown took a quarter of a second or more. Every command has closed its
    files, pools and subprocesses by the time it returns, so only the standard streams need
    flushing. Tests call main() instead and keep their interpreter.
    """
    try:
        main()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # as sys.exit("message") would
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        # A closed reader or stream: let the ordinary shutdown report it as it always has.
        sys.exit(code)
    os._exit(code or 0)
