"""Body sections of the HTML audit: compliance, findings with evidence, heartbeats, traffic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dsaudit.judge.findings import SEVERITIES, AuditResult
from dsaudit.reports import audit_format as fm
from dsaudit.reports import audit_frames as af
from dsaudit.reports.audit_charts import OUTCOME_FILL, bar_chart, heartbeat_timeline
from dsaudit.reports.audit_tables import ROLE_NOTE
from dsaudit.text.safe import for_html, for_terminal

EVIDENCE_ROWS = 20
CHART_BARS = 15
TABLE_ROWS = 200
STATUS_SYMBOL = {
    "observed": "✓",
    "blocked": "✕",
    "missing": "!",
    "inconclusive": "?",
    "not-visible": "–",
}
STATUS_MEANING = {
    "observed": "observed: the flow happened and was answered",
    "blocked": "blocked: attempted but rejected or never answered",
    "missing": "missing: never attempted although the capture could have seen it",
    "inconclusive": "inconclusive: the capture is too short to expect it",
    "not-visible": "not visible: this capture's vantage point cannot see it",
}


def esc(text: str) -> str:
    """Text from the data as HTML, safe in element content and in quoted attributes.

    Control and bidi characters are shown as \\xNN / \\uNNNN first: a browser would draw
    them as boxes, or (bidi overrides) reorder a name so it reads as another one.
    """
    return for_html(for_terminal(text))


def h(value: object) -> str:
    """Any cell value as escaped HTML text."""
    return esc(fm.text(value))


def table(headers: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table from escaped cell HTML; headers are (title, numeric) pairs."""
    num = ' class="num"'
    head = "".join(f"<th{num if n else ''}>{esc(t)}</th>" for t, n in headers)
    body = []
    for row in rows:
        cells = "".join(
            f"<td{num if headers[i][1] else ''}>{cell}</td>" for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table class="{esc(cls)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _more(shown: int, total: int, what: str) -> str:
    if total <= shown:
        return ""
    return f'<p class="muted">Showing {shown} of {total} {esc(what)}; the JSON has all.</p>'


def _tone(score: object) -> str:
    if fm.is_missing(score):
        return ""
    value = float(score)  # type: ignore[arg-type]
    return "" if value >= 1 else "bad" if value < 0.5 else "warn"


# ------------------------------------------------------------------ compliance


def _role_card(row: dict[str, Any]) -> str:
    score = row["score"]
    width = 0.0 if fm.is_missing(score) else max(0.0, min(float(score), 1.0)) * 100
    counts = (
        f"{fm.fmt_count(row['observed'])} observed · {fm.fmt_count(row['blocked'])} blocked · "
        f"{fm.fmt_count(row['missing'])} missing · {fm.fmt_count(row['inconclusive'])} "
        f"inconclusive · {fm.fmt_count(row['unexplained'])} unexplained"
    )
    return (
        f'<div class="card"><h3>{h(row["role"])}</h3>'
        f'<div class="score">{esc(fm.fmt_score(score))}</div>'
        f'<div class="meter {_tone(score)}"><span style="width:{width:.0f}%"></span></div>'
        f'<div class="counts">{fm.fmt_count(row["expected"])} expected flows: '
        f"{esc(counts)}</div></div>"
    )


def _cell_title(host: str, rule: str, rows: Sequence[dict[str, Any]]) -> str:
    parts = []
    for r in rows:
        part = (
            f"{fm.text(r['status'])} (peer {fm.text(r['peer_role'])}, port {fm.text(r['port'])}, "
            f"{fm.fmt_count(r['flows'])} flows, {fm.fmt_count(r['established'])} established, "
            f"{fm.fmt_count(r['blocked_flows'])} blocked)"
        )
        if fm.text(r["detail"]):
            part += f": {fm.text(r['detail'])}"
        parts.append(part)
    return f"{host} · {rule}: " + "; ".join(parts)


def _legend() -> str:
    items = "".join(
        f'<li><span class="sw st {s}">{STATUS_SYMBOL[s]}</span>{esc(STATUS_MEANING[s])}</li>'
        for s in STATUS_SYMBOL
    )
    return f'<ul class="legend">{items}</ul>'


def _matrix(result: AuditResult) -> str:
    hosts, rules, cells = af.expectation_matrix(result)
    if not hosts:
        return '<p class="muted">No expected flows: the inventory names no Deep Security hosts.</p>'
    per_host = {fm.text(r["host"]): r for r in af.compliance_rows(result, "host")}
    head = "".join(f'<th class="rule" title="{h(r)}"><span>{h(r)}</span></th>' for r in rules)
    body = []
    for host, role in hosts:
        known = per_host.get(host) or {}
        score = known.get("score")
        unsure = fm.fmt_count(known.get("inconclusive", 0))
        tds = []
        for rule in rules:
            rows = cells.get((host, rule))
            if not rows:
                tds.append('<td class="st none"></td>')
                continue
            status = af.cell_status(rows)
            title = esc(_cell_title(host, rule, rows))
            tds.append(
                f'<td class="st {status}" title="{title}">{STATUS_SYMBOL.get(status, "")}</td>'
            )
        body.append(
            f'<tr><th class="host">{h(host)}</th><td class="muted">{h(role)}</td>'
            f'<td class="num">{esc(fm.fmt_score(score))}</td>'
            f'<td class="num">{esc(unsure)}</td>{"".join(tds)}</tr>'
        )
    return (
        _legend() + '<div class="scroll"><table class="matrix"><thead><tr><th>host</th>'
        f'<th>role</th><th class="num">score</th><th class="num">inconclusive</th>{head}'
        "</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def compliance_section(result: AuditResult) -> str:
    cards = "".join(_role_card(r) for r in af.compliance_rows(result, "role"))
    return (
        '<section id="compliance"><h2>Compliance</h2>'
        '<p class="lead">Each Deep Security role must be able to reach its peers on the ports '
        "the vendor documents. The score is the share of due flows that were seen working "
        "(n/a when none was due).</p>"
        f'<p class="lead">{esc(ROLE_NOTE)}</p>'
        + (f'<div class="cards">{cards}</div>' if cards else "")
        + "<h3>Per host and rule</h3>"
        + '<p class="lead">Rows are hosts, columns the documented flows expected of them. '
        "Hover over a cell for the numbers behind it.</p>" + _matrix(result) + "</section>"
    )


# ------------------------------------------------------------------ findings


def _evidence(index: af.FlowIndex, flow_ids: object) -> str:
    rows, more = index.evidence(flow_ids, EVIDENCE_ROWS)
    if not rows:
        return ""
    cells = [
        [
            esc(r["time"]),
            f'<span class="mono">{esc(r["client"])}</span>',
            f'<span class="mono">{esc(r["server"])}</span> {esc(r["proto"])}',
            f'<span class="text">{esc(r["name"])}</span>',
            _outcome(r["outcome"]),
        ]
        for r in rows
    ]
    headers = [("time (UTC)", False), ("client", False), ("server", False)]
    out = table(headers + [("name", False), ("outcome", False)], cells, "evidence")
    if more:
        out += f'<p class="muted">… and {more} more flows.</p>'
    return out


def _outcome(outcome: str) -> str:
    cls = f"outcome-{outcome}" if outcome in OUTCOME_FILL else "outcome-other"
    return f'<span class="{cls}">{esc(outcome)}</span>'


def _finding(row: dict[str, Any], index: af.FlowIndex) -> str:
    sev = fm.text(row["severity"])
    sev_cls = sev if sev in SEVERITIES else "info"
    peer = fm.endpoint(row["peer"], row["port"]) if fm.text(row["peer"]) else fm.text(row["port"])
    facts = [
        ("host", fm.text(row["host"])),
        ("role", fm.text(row["role"])),
        ("rule", fm.text(row["rule"])),
        ("peer", peer),
        ("flows", fm.fmt_count(row["count"]) if int(row["count"]) else ""),
        ("first seen", fm.fmt_time(row["first_seen"])),
        ("last seen", fm.fmt_time(row["last_seen"])),
        ("likely cause", fm.text(row.get("cause"))),
        ("because", fm.text(row.get("cause_evidence"))),
    ]
    dl = "".join(f"<div><dt>{k}</dt><dd>{esc(v)}</dd></div>" for k, v in facts if v)
    return (
        f'<article class="finding {sev_cls}"><h4><span class="badge {sev_cls}">{esc(sev)}'
        f"</span>{h(fm.kind_title(row['kind']))}</h4>"
        f'<p class="message">{h(row["message"])}</p>'
        f'<p class="means">{h(fm.kind_description(row["kind"]))}</p>'
        + (f"<dl>{dl}</dl>" if dl else "")
        + _fix(row.get("fix"))
        + f"{_evidence(index, row['flow_ids'])}</article>"
    )


def _fix(lines: Any) -> str:
    """The allow rules that would open the flow (audit --fix picks the dialect)."""
    if not isinstance(lines, list) or not lines:
        return ""
    body = "\n".join(esc(str(line)) for line in lines)
    return f'<p class="fix-title">Rule that would open it:</p><pre class="fix">{body}</pre>'


# Findings of one severity shown in full, with the flows they rest on; the rest of that
# severity follow as one compact table. A capture of thousands of findings then still opens
# quickly, and nothing is left out: every finding is on the page.
DETAILED_FINDINGS = 100


def _compact(rows: list[dict[str, Any]]) -> str:
    headers = [
        ("finding", False),
        ("host", False),
        ("rule", False),
        ("peer", False),
        ("flows", True),
        ("cause", False),
        ("message", False),
    ]
    cells = [
        [
            h(fm.kind_title(r["kind"])),
            h(r["host"]),
            h(r["rule"]),
            h(fm.endpoint(r["peer"], r["port"]) if fm.text(r["peer"]) else fm.text(r["port"])),
            esc(fm.fmt_count(r["count"]) if int(r["count"]) else ""),
            h(r.get("cause")),
            h(r["message"]),
        ]
        for r in rows
    ]
    return table(headers, cells, "findings-compact")


def findings_section(result: AuditResult) -> str:
    rows = af.finding_rows(result)
    index = af.FlowIndex(result.flows)
    parts = ['<section id="findings"><h2>Findings</h2>']
    if not rows:
        parts.append('<p class="lead">No findings.</p>')
    else:
        parts.append(
            '<p class="lead">Most severe first. Each finding lists the flows it rests on: when '
            "they started, who opened them, where to, and how they ended.</p>"
        )
    for sev in SEVERITIES + [""]:
        group = [r for r in rows if (fm.text(r["severity"]) or "") == sev]
        if sev == "":
            group = [r for r in rows if fm.text(r["severity"]) not in SEVERITIES]
        if not group:
            continue
        title = sev.capitalize() if sev else "Other"
        parts.append(f"<h3>{esc(title)} ({len(group)})</h3>")
        detailed, rest = group[:DETAILED_FINDINGS], group[DETAILED_FINDINGS:]
        parts.extend(_finding(r, index) for r in detailed)
        if rest:
            parts.append(
                f'<p class="muted">The other {len(rest)} {esc(title.lower())} findings, without '
                "their flows (the JSON and CSV reports list every flow):</p>"
            )
            parts.append(_compact(rest))
    parts.append("</section>")
    return "".join(parts)


# ------------------------------------------------------------------ heartbeats and traffic

_STATUS_CLASS = {"ok": "status-ok", "some failed": "status-warn", "failing": "status-bad"}


def heartbeat_section(result: AuditResult) -> str:
    rows = af.heartbeat_rows(result)
    span = result.summary.get("time_span") or {}
    interval = (result.summary.get("deployment") or {}).get("heartbeat_interval_s")
    lead = "Agents and the manager exchange heartbeats at a fixed interval"
    lead += f" (configured: every {fm.fmt_duration(interval)})" if interval else ""
    lead += ". One mark per attempt, coloured by how it ended."
    legend = "".join(
        f'<li><span class="sw" style="background:{fill}"></span>{esc(name)}</li>'
        for name, fill in OUTCOME_FILL.items()
    )
    cells = [
        [
            h(r["agent"]),
            h(r["direction"]),
            h(r["port"]),
            fm.fmt_count(r["attempts"]),
            fm.fmt_count(r["established"]),
            fm.fmt_count(r["failed"]),
            esc(fm.fmt_duration(r["median_interval_s"])),
            esc(fm.fmt_duration(r["max_interval_s"])),
            esc(fm.fmt_time(r["last_seen"])),
            f'<span class="{_STATUS_CLASS.get(r["status"], "status-bad")}">'
            f"{esc(r['status'])}</span>",
        ]
        for r in rows[:TABLE_ROWS]
    ]
    headers = [("agent", False), ("direction", False), ("port", True), ("attempts", True)]
    headers += [("ok", True), ("failed", True), ("median gap", False), ("max gap", False)]
    headers += [("last seen (UTC)", False), ("status", False)]
    body = (
        f'<ul class="legend">{legend}</ul>'
        + heartbeat_timeline(rows[:TABLE_ROWS], span.get("start"), span.get("end"))
        + table(headers, cells)
        + _more(min(len(rows), TABLE_ROWS), len(rows), "heartbeat rows")
        if rows
        else '<p class="muted">No heartbeats were expected or seen.</p>'
    )
    return (
        f'<section id="heartbeats"><h2>Heartbeats</h2><p class="lead">{esc(lead)}</p>'
        f"{body}</section>"
    )


def unexplained_section(result: AuditResult) -> str:
    dests = af.unexplained_destinations(result.flows)
    if not dests:
        body = '<p class="muted">Every flow was explained by the port table.</p>'
    else:
        items = [
            (
                f"{d['destination']} {d['proto']}",
                d["name"] or "(no name seen)",
                float(d["flows"]),
                f"{d['flows']} {'flow' if d['flows'] == 1 else 'flows'} · "
                f"{fm.fmt_bytes(d['bytes'])}",
            )
            for d in dests[:CHART_BARS]
        ]
        cells = [
            [
                f'<span class="mono">{esc(d["destination"])}</span>',
                esc(d["proto"]),
                f'<span class="text">{esc(d["name"])}</span>',
                esc(d["role"]),
                fm.fmt_count(d["flows"]),
                fm.fmt_count(d["clients"]),
                esc(fm.fmt_bytes(d["bytes"])),
            ]
            for d in dests[:TABLE_ROWS]
        ]
        headers = [("destination", False), ("proto", False), ("name", False), ("role", False)]
        headers += [("flows", True), ("clients", True), ("bytes", True)]
        body = (
            bar_chart(items, "Unexplained flows per destination")
            + table(headers, cells)
            + _more(min(len(dests), TABLE_ROWS), len(dests), "destinations")
        )
    return (
        '<section id="unexplained"><h2>Unexplained traffic</h2><p class="lead">Traffic of Deep '
        "Security hosts that no row of the vendor's port table explains, by destination.</p>"
        f"{body}</section>"
    )
