"""The audit as plain-text tables with tones: what the terminal and Markdown reports both show."""

from __future__ import annotations

from dataclasses import dataclass, field

from dsaudit.judge.findings import SEVERITIES, AuditResult
from dsaudit.reports import audit_format as fm
from dsaudit.reports import audit_frames as af


@dataclass(frozen=True)
class Cell:
    """Raw (unescaped) text of a cell and an optional tone a renderer may colour it by."""

    text: str
    tone: str | None = None  # "good", "bad", "warn", "muted" or a severity name


@dataclass
class TextTable:
    """A titled table; ``more`` counts rows left out to keep the report short."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    numeric: frozenset[int] = frozenset()
    more: int = 0
    more_hint: str = ""
    empty: str = "none"
    note: str = ""
    footnote: str = ""  # how to read the numbers, said after the table
    wrap: dict[int, int] = field(default_factory=dict)  # column -> width for terminals


@dataclass(frozen=True)
class Limits:
    """Row caps per section (None: everything)."""

    findings: int | None = None
    destinations: int | None = None
    hosts: int | None = None
    heartbeats: int | None = None


TERMINAL_LIMITS = Limits(findings=40, destinations=10, hosts=25, heartbeats=40)
MARKDOWN_LIMITS = Limits(findings=500, destinations=50, hosts=500, heartbeats=500)
TERMINAL_NETWORK_ADDRESSES = 20  # addresses listed per network and kind in the terminal


def _n(value: object) -> Cell:
    return Cell(fm.fmt_count(value))


def _counted(value: object, tone: str) -> Cell:
    """A count that is only alarming when it is not zero."""
    return Cell(fm.fmt_count(value), tone if int(value) else None)  # type: ignore[call-overload]


def _score(value: object) -> Cell:
    if fm.is_missing(value):
        return Cell("n/a", "muted")
    score = float(value)  # type: ignore[arg-type]
    return Cell(fm.fmt_score(score), "good" if score >= 1 else "bad" if score < 0.5 else "warn")


def _cap(rows: list[list[Cell]], limit: int | None) -> tuple[list[list[Cell]], int]:
    if limit is None or len(rows) <= limit:
        return rows, 0
    return rows[:limit], len(rows) - limit


def overview(result: AuditResult, limit: int | None = None) -> list[tuple[str, list[str]]]:
    """Labelled lines under the verdict: captures, span, vantage, inventory, networks,
    flows; ``limit`` caps the addresses listed per network."""
    s = result.summary
    rows = [
        ("Captures", af.describe_captures(s) or ["none"]),
        ("Time span", [af.describe_span(s)]),
        ("Vantage", [af.describe_vantage(s)]),
        ("Inventory", [af.describe_inventory(s)]),
        ("Deployment", [af.describe_deployment(s)]),
    ]
    networks = af.describe_networks(s, limit)
    if networks:
        rows.append(("Networks", networks))
    rows.append(("Flows", [af.describe_flow_counts(result)]))
    return rows


def severity_line(verdict: af.Verdict) -> list[Cell]:
    """``1 critical``, ``2 high``, ... each toned by its severity when non-zero."""
    return [
        Cell(f"{verdict.counts.get(s, 0)} {s}", s if verdict.counts.get(s) else "muted")
        for s in SEVERITIES
    ]


def quality_heading(verdict: af.Verdict) -> str:
    """Whether the capture is good enough, in words."""
    notes = len(verdict.quality_notes)
    if not notes:
        return "Capture quality: no known limits."
    caveat = "a caveat" if notes == 1 else f"{notes} caveats"
    return f"Capture quality: LIMITED. The verdict rests on a capture with {caveat}:"


def compliance_by_role(result: AuditResult) -> TextTable:
    rows = [
        [
            Cell(fm.text(r["role"])),
            _n(r["expected"]),
            _n(r["observed"]),
            _counted(r["blocked"], "bad"),
            _counted(r["missing"], "warn"),
            _counted(r["inconclusive"], "muted"),
            _counted(r["unexplained"], "warn"),
            _score(r["score"]),
        ]
        for r in af.compliance_rows(result, "role")
    ]
    headers = ["role", "expected", "observed", "blocked", "missing", "inconclusive"]
    return TextTable(
        "Compliance per role",
        headers + ["unexplained", "score"],
        rows,
        numeric=frozenset(range(1, 8)),
        empty="no expected flows",
        footnote=ROLE_NOTE if rows else "",
    )


ROLE_NOTE = (
    "unexplained: flows with at least one end a host of the role, each flow once per role "
    "(a flow between two agents counts once; one between an agent and the manager counts "
    "for both roles). score: observed / (observed + blocked + missing); n/a when none was due."
)


def hosts_needing_attention(result: AuditResult, limit: int | None) -> TextTable:
    """Host rows with a blocked, missing or unexplained flow, worst score first."""
    every = af.compliance_rows(result, "host")
    bad = [r for r in every if int(r["blocked"]) + int(r["missing"]) + int(r["unexplained"])]
    bad.sort(key=lambda r: (_score_key(r["score"]), fm.text(r["host"])))
    rows = [
        [
            Cell(fm.text(r["host"])),
            Cell(fm.text(r["role"])),
            _n(r["expected"]),
            _n(r["observed"]),
            _counted(r["blocked"], "bad"),
            _counted(r["missing"], "warn"),
            _counted(r["inconclusive"], "muted"),
            _counted(r["unexplained"], "warn"),
            _score(r["score"]),
        ]
        for r in bad
    ]
    rows, more = _cap(rows, limit)
    headers = ["host", "role", "expected", "observed", "blocked", "missing", "inconclusive"]
    return TextTable(
        "Hosts needing attention",
        headers + ["unexplained", "score"],
        rows,
        numeric=frozenset(range(2, 9)),
        more=more,
        more_hint="hosts",
        empty=f"none of {len(every)} hosts" if every else "no hosts in the inventory",
    )


def _score_key(score: object) -> float:
    return 2.0 if fm.is_missing(score) else float(score)  # type: ignore[arg-type]


def findings(result: AuditResult, limit: int | None) -> TextTable:
    rows = []
    for f in af.finding_rows(result):
        sev = fm.text(f["severity"])
        peer = fm.endpoint(f["peer"], f["port"]) if fm.text(f["peer"]) else fm.text(f["port"])
        rows.append(
            [
                Cell(sev.upper(), sev),
                Cell(fm.kind_title(f["kind"])),
                Cell(fm.text(f["host"])),
                Cell(fm.text(f["rule"])),
                Cell(peer),
                _n(f["count"]),
                Cell(fm.text(f["cause"])),
                Cell(fm.text(f["message"])),
            ]
        )
    rows, more = _cap(rows, limit)
    return TextTable(
        "Findings, most severe first",
        ["severity", "finding", "host", "rule", "peer", "flows", "cause", "message"],
        rows,
        numeric=frozenset({5}),
        more=more,
        more_hint="findings",
        empty="no findings",
        wrap={1: 22, 3: 26, 4: 28, 6: 14, 7: 56},
    )


def unexplained(result: AuditResult, limit: int | None) -> TextTable:
    dests = af.unexplained_destinations(result.flows)
    rows = [
        [
            Cell(d["destination"]),
            Cell(d["proto"]),
            Cell(d["name"]),
            Cell(d["role"]),
            _n(d["flows"]),
            _n(d["clients"]),
            Cell(fm.fmt_bytes(d["bytes"])),
        ]
        for d in dests
    ]
    rows, more = _cap(rows, limit)
    return TextTable(
        "Top unexplained destinations",
        ["destination", "proto", "name", "role", "flows", "clients", "bytes"],
        rows,
        numeric=frozenset({4, 5, 6}),
        more=more,
        more_hint="destinations",
        empty="no unexplained flows",
        wrap={2: 40},
    )


_STATUS_TONE = {"ok": "good", "some failed": "warn", "failing": "bad", "none seen": "bad"}


def heartbeats(result: AuditResult, limit: int | None) -> TextTable:
    interval = (result.summary.get("deployment") or {}).get("heartbeat_interval_s")
    rows = [
        [
            Cell(fm.text(h["agent"])),
            Cell(fm.text(h["direction"])),
            Cell(fm.text(h["port"])),
            _n(h["attempts"]),
            _n(h["established"]),
            _counted(h["failed"], "bad"),
            Cell(fm.fmt_duration(h["median_interval_s"])),
            Cell(fm.fmt_duration(h["max_interval_s"])),
            Cell(fm.fmt_time(h["last_seen"])),
            Cell(h["status"], _STATUS_TONE.get(h["status"])),
        ]
        for h in af.heartbeat_rows(result)
    ]
    rows, more = _cap(rows, limit)
    note = f"Configured heartbeat interval: {fm.fmt_duration(interval)}." if interval else ""
    return TextTable(
        "Heartbeats per agent",
        ["agent", "direction", "port", "attempts", "ok", "failed", "median gap", "max gap"]
        + ["last seen (UTC)", "status"],
        rows,
        numeric=frozenset({2, 3, 4, 5}),
        more=more,
        more_hint="heartbeat rows",
        empty="no heartbeats expected or seen",
        note=note,
    )


def sections(result: AuditResult, limits: Limits) -> list[TextTable]:
    """Every table of the text reports, in reading order."""
    return [
        compliance_by_role(result),
        hosts_needing_attention(result, limits.hosts),
        findings(result, limits.findings),
        unexplained(result, limits.destinations),
        heartbeats(result, limits.heartbeats),
    ]
