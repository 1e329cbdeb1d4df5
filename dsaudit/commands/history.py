"""`dsaudit history list|show|diff`: look at the runs `dsaudit report` stored."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from dsaudit.text.fit import output_width, render_table
from dsaudit.text.safe import for_terminal

if TYPE_CHECKING:
    import pandas as pd

_history_option = click.option(
    "--history",
    "history_path",
    type=click.Path(dir_okay=False),
    help="History store (default: $DSAUDIT_HISTORY or ~/.local/share/dsaudit/history.sqlite).",
)
_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON for tools.",
)


def _open(path: str | None) -> Any:
    from dsaudit.errors import DsauditError
    from dsaudit.runs.history import History, default_path

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


def _table(frame: pd.DataFrame, bare: str | None = None) -> str:
    """The frame as a table fitting the terminal; the ``bare`` column (a message) goes under
    its row when the row is too wide."""
    import pandas as pd

    if frame.empty:
        return "  (none)"
    rows = [[for_terminal("" if pd.isna(v) else str(v)) for v in row] for row in frame.values]
    heads = list(map(str, frame.columns))
    last = heads.index(bare) if bare in heads else None
    return render_table(heads, rows, output_width(), bare=last)


def _pct(score: Any) -> str:
    import pandas as pd

    return "" if pd.isna(score) else f"{float(score) * 100:.1f}%"


def _pp(change: Any) -> str:
    """A score change in percentage points, rounded: ``-33.3 pp``, ``+5.0 pp``."""
    import pandas as pd

    return "" if pd.isna(change) else f"{float(change) * 100:+.1f} pp"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    from dsaudit.reports.audit_json import json_value

    return [{str(k): json_value(v) for k, v in r.items()} for r in frame.to_dict("records")]


# What a stored run's exit code says (the report's verdict; 3 is INCONCLUSIVE: nothing to judge).
VERDICTS = {0: "compliant", 1: "not compliant", 3: "inconclusive"}


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
        "verdict": VERDICTS.get(run.exit_code, f"exit {run.exit_code}"),
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
@click.option(
    "--limit", type=click.IntRange(1), default=50, show_default=True, help="At most this many runs."
)
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
            r["verdict"],
            for_terminal(r["inventory"]),
        ]
        for r in runs
    ]
    heads = [
        "run",
        "period start",
        "period end",
        "source",
        "files",
        "findings",
        "verdict",
        "inventory",
    ]
    text = [[str(c) for c in r] for r in rows]
    click.echo(render_table(heads, text, output_width(), right=[0, 4]) if rows else "no runs")


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
    click.echo("\nFindings\n" + _table(found[["severity", "kind", "host", "message"]], "message"))


@history.command("diff")
@click.argument("run_a", required=False, default="previous")
@click.argument("run_b", required=False, default="latest")
@_history_option
@_format_option
def diff(run_a: str, run_b: str, history_path: str | None, fmt: str) -> None:
    """What changed from RUN_A to RUN_B: findings, compliance, heartbeats.

    Without run ids, the two latest runs (previous to latest); with one, that run to the
    latest. Score changes are in percentage points.
    """
    with _open(history_path) as store:
        d = store.diff(_resolve(store, run_a), _resolve(store, run_b))
    cols = ["severity", "kind", "host", "message"]
    if fmt == "json":
        doc = {
            "a": d.a.id,
            "b": d.b.id,
            "new_findings": _records(d.new[cols + ["finding_key"]]),
            "resolved_findings": _records(d.resolved[cols + ["finding_key"]]),
            "compliance": _records(
                d.compliance.assign(change_pp=(d.compliance["change"] * 100).round(1))
            ),
            "heartbeats_stopped": _records(d.heartbeats_stopped),
            "heartbeats_resumed": _records(d.heartbeats_resumed),
        }
        click.echo(json.dumps(doc, indent=2))
        return
    # A score that came or went (n/a on one side) is a change; n/a on both sides is not.
    comp = d.compliance
    na_a, na_b = comp["score_a"].isna(), comp["score_b"].isna()
    changed = comp[(na_a != na_b) | (~na_a & ~na_b & (comp["change"] != 0))].copy()
    for col in ("score_a", "score_b"):
        changed[col] = changed[col].map(_pct).astype(object)
    changed["change"] = changed["change"].map(_pp).astype(object)
    click.echo(f"run {d.a.id} -> run {d.b.id}")
    click.echo(f"\nNew findings ({len(d.new)})\n" + _table(d.new[cols], "message"))
    click.echo(f"\nResolved findings ({len(d.resolved)})\n" + _table(d.resolved[cols], "message"))
    click.echo(f"\nCompliance changes ({len(changed)})\n" + _table(changed))
    click.echo(
        f"\nHeartbeats that stopped ({len(d.heartbeats_stopped)})\n" + _table(d.heartbeats_stopped)
    )
    click.echo(
        f"\nHeartbeats that resumed ({len(d.heartbeats_resumed)})\n" + _table(d.heartbeats_resumed)
    )
