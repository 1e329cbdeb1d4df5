"""`dsaudit history list|show|diff`: look at the runs `dsaudit report` stored."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click
from tabulate import tabulate

from dsaudit.report.safe_text import for_terminal

if TYPE_CHECKING:
    import pandas as pd

_history_option = click.option(
    "--history",
    "history_path",
    type=click.Path(dir_okay=False),
    help="History store (default: $DSAUDIT_HISTORY or ~/.local/share/dsaudit/history.sqlite).",
)
_format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)


def _open(path: str | None) -> Any:
    from dsaudit.errors import DsauditError
    from dsaudit.history import History, default_path

    target = path or default_path()
    if not os.path.exists(target):
        raise DsauditError(f"{target}: no history store yet (run dsaudit report first)")
    return History(target)


def _resolve(store: Any, ref: str) -> Any:
    """A run by id, or ``latest`` / ``previous`` (the one before the latest)."""
    from dsaudit.errors import DsauditError

    if ref in ("latest", "previous"):
        runs = store.runs(limit=2)
        want = 0 if ref == "latest" else 1
        if len(runs) <= want:
            raise DsauditError(f"{store.path}: no {ref} run")
        return runs[want]
    if not ref.isdigit():
        raise DsauditError(f"{ref!r} is not a run id (a number, latest or previous)")
    return store.run(int(ref))


def _table(frame: pd.DataFrame) -> str:
    import pandas as pd

    if frame.empty:
        return "  (none)"
    rows = [[for_terminal("" if pd.isna(v) else str(v)) for v in row] for row in frame.values]
    return tabulate(rows, headers=list(map(str, frame.columns)), disable_numparse=True)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    from dsaudit.report.audit_json import json_value

    return [{str(k): json_value(v) for k, v in r.items()} for r in frame.to_dict("records")]


def _run_dict(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "started_at": run.started_at,
        "period_start": run.period_start,
        "period_end": run.period_end,
        "inventory": run.label,
        "source": run.source,
        "files": len(run.captures),
        "compliant": run.compliant,
        "exit_code": run.exit_code,
        "finding_counts": run.severities(),
    }


@click.group()
def history() -> None:
    """Runs stored by `dsaudit report`: list them, show one, compare two."""


@history.command("list")
@_history_option
@_format_option
@click.option("--inventory", "-i", "inventory_path", help="Only runs of this inventory.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
def list_runs(history_path: str | None, fmt: str, inventory_path: str | None, limit: int) -> None:
    """The stored runs, newest first."""
    with _open(history_path) as store:
        label = os.path.abspath(inventory_path) if inventory_path else None
        runs = [_run_dict(r) for r in store.runs(label=label, limit=limit)]
    if fmt == "json":
        click.echo(json.dumps(runs, indent=2))
        return
    rows = [
        [
            r["id"],
            r["period_start"] or "",
            r["period_end"] or "",
            r["source"],
            r["files"],
            " ".join(f"{n}{s[0].upper()}" for s, n in r["finding_counts"].items() if n) or "-",
            "yes" if r["compliant"] else "no",
            for_terminal(r["inventory"]),
        ]
        for r in runs
    ]
    heads = ["run", "period start", "period end", "source", "files", "findings", "ok", "inventory"]
    click.echo(tabulate(rows, headers=heads, disable_numparse=True) if rows else "no runs")


@history.command("show")
@click.argument("run_ref", metavar="RUN")
@_history_option
@_format_option
def show(run_ref: str, history_path: str | None, fmt: str) -> None:
    """One run: its summary, compliance per role and host, and findings."""
    with _open(history_path) as store:
        run = _resolve(store, run_ref)
        comp = store.table("compliance", run.id)
        found = store.table("findings", run.id)
        beats = store.table("heartbeats", run.id)
    if fmt == "json":
        doc = {
            "run": _run_dict(run),
            "summary": run.summary,
            "compliance": _records(comp),
            "findings": _records(found),
            "heartbeats": _records(beats),
        }
        click.echo(json.dumps(doc, indent=2))
        return
    info = _run_dict(run)
    click.echo("\n".join(f"{k}: {for_terminal(str(v))}" for k, v in info.items()))
    click.echo("\nCompliance\n" + _table(comp.drop(columns=["scope"])))
    click.echo("\nFindings\n" + _table(found[["severity", "kind", "host", "message"]]))


@history.command("diff")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@_history_option
@_format_option
def diff(run_a: str, run_b: str, history_path: str | None, fmt: str) -> None:
    """What changed from RUN_A to RUN_B: findings, compliance, heartbeats."""
    with _open(history_path) as store:
        d = store.diff(_resolve(store, run_a), _resolve(store, run_b))
    cols = ["severity", "kind", "host", "message"]
    if fmt == "json":
        doc = {
            "a": d.a.id,
            "b": d.b.id,
            "new_findings": _records(d.new[cols + ["finding_key"]]),
            "resolved_findings": _records(d.resolved[cols + ["finding_key"]]),
            "compliance": _records(d.compliance),
            "heartbeats_stopped": _records(d.heartbeats_stopped),
            "heartbeats_resumed": _records(d.heartbeats_resumed),
        }
        click.echo(json.dumps(doc, indent=2))
        return
    changed = d.compliance[d.compliance["change"].fillna(1) != 0]
    click.echo(f"run {d.a.id} -> run {d.b.id}")
    click.echo(f"\nNew findings ({len(d.new)})\n" + _table(d.new[cols]))
    click.echo(f"\nResolved findings ({len(d.resolved)})\n" + _table(d.resolved[cols]))
    click.echo(f"\nCompliance changes ({len(changed)})\n" + _table(changed))
    click.echo(
        f"\nHeartbeats that stopped ({len(d.heartbeats_stopped)})\n" + _table(d.heartbeats_stopped)
    )
    click.echo(
        f"\nHeartbeats that resumed ({len(d.heartbeats_resumed)})\n" + _table(d.heartbeats_resumed)
    )
