"""Render catalog rules as JSON records, a text table, CSV or Markdown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dsaudit.catalog.schema import Rule, recurs_text
from dsaudit.catalog.textcells import render_csv, render_markdown
from dsaudit.text.fit import render_table

FORMATS = ("table", "json", "csv", "markdown")


def rule_record(rule: Rule) -> dict[str, Any]:
    """The JSON form of a rule: every field, plus derived client/server roles."""
    return {
        "id": rule.id,
        "role": rule.role,
        "direction": rule.direction,
        "transports": list(rule.transports),
        "ports": rule.ports.as_json(),
        "service": rule.service,
        "peer": list(rule.peers),
        "client_roles": list(rule.client_roles),
        "server_roles": list(rule.server_roles),
        "hostnames": list(rule.hostnames.names()),
        "hostnames_by_version": {
            v: list(names) for v, names in rule.hostnames.by_version().items()
        },
        "hostname_entries": [
            {"name": h.name, "text": h.text, "versions": list(h.versions), "example": h.example}
            for h in rule.hostnames.entries
        ],
        "urls": list(rule.urls),
        "expectation": rule.expectation,
        "recurs": rule.recurs,
        "when": rule.when.as_json(),
        "configurable": rule.configurable,
        "proxy": rule.proxy,
        "proxy_min_version": rule.proxy_min_version,
        "localhost_only": rule.localhost_only,
        "counterparts": list(rule.counterparts),
        "purpose_ja": rule.purpose_ja,
        "purpose_en": rule.purpose_en,
        "peer_ja": rule.peer_ja,
        "peer_en": rule.peer_en,
        "notes": [{"kind": n.kind, "en": n.en, "ja": n.ja} for n in rule.notes],
        "ambiguous": rule.ambiguous,
        "seed_marks": rule.seed_marks,
        "origin": rule.origin,
        "source": str(rule.location) if rule.location else None,
    }


_COLUMNS = (
    "id",
    "transports",
    "ports",
    "service",
    "peer",
    "expectation",
    "recurs",
    "when",
    "configurable",
    "proxy",
    "hostnames",
    "purpose",
)


def _row(rule: Rule, version: str | None, sep: str) -> list[str]:
    marks = " [ambiguous]" if rule.ambiguous else ""
    marks += " [localhost only]" if rule.localhost_only else ""
    return [
        rule.id,
        "/".join(rule.transports),
        str(rule.ports),
        rule.service,
        ", ".join(rule.peers),
        rule.expectation,
        # An optional flow is never missing, so how often it recurs would only mislead here.
        "" if rule.expectation == "optional" else recurs_text(rule.recurs),
        str(rule.when),
        rule.configurable,
        rule.proxy,
        sep.join(rule.hostnames.names(version)),
        rule.purpose_en + marks,
    ]


def render(
    rules: Sequence[Rule], fmt: str, version: str | None = None, width: int | None = None
) -> str:
    """The rules in one of FORMATS; with a version, host names are those of that version.
    The table fits ``width`` columns (None: no limit)."""
    if fmt == "json":
        return json.dumps([rule_record(r) for r in rules], ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        header = (*_COLUMNS[:-1], "purpose_en", "purpose_ja", "notes")
        csv_rows = []
        for rule in rules:
            row: list[str] = _row(rule, version, " ")
            row[-1] = rule.purpose_en
            notes = " / ".join(f"{n.kind}: {n.en}" for n in rule.notes)
            csv_rows.append([*row, rule.purpose_ja, notes])
        return render_csv(header, csv_rows)
    if fmt == "markdown":
        return render_markdown(_COLUMNS, [_row(r, version, "\n") for r in rules])
    if fmt == "table":
        # Host names go one per line and, like ids, are never broken: a broken name reads as
        # two. Too wide a row puts its purpose, then its host names, ... under itself.
        rows = [_row(r, version, "\n") for r in rules]
        last = len(_COLUMNS) - 1
        return render_table(_COLUMNS, rows, width, bare=last) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
