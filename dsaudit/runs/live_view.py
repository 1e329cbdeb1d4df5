"""What `dsaudit live` shows while it runs: a rich terminal view, or JSON Lines for other tools.

It sits beside the live run, not in dsaudit.reports: it shows that run's own events and
snapshots (dsaudit.runs.live), and the reports are a lower stage.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dsaudit.runs.live import LiveEvent, LiveSnapshot
from dsaudit.text.safe import for_terminal

ROLE_ROWS = 12
FINDING_ROWS = 8


def safe(value: Any) -> Any:
    """``value`` with every string neutralised for a terminal, recursively.

    Events carry host names, SNI and DNS names straight from packets: an escape sequence
    in one must not reach whoever tails the stream.
    """
    if isinstance(value, str):
        return for_terminal(value)
    if isinstance(value, dict):
        return {safe(k): safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe(v) for v in value]
    return value


class JsonLinesSink:
    """One JSON object per line per event, flushed at once, for tools that follow the stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed = False

    def emit(self, event: LiveEvent) -> None:
        """Write the event as one line."""
        if self.closed:
            return
        line = json.dumps(safe(event.as_dict()), ensure_ascii=False, default=str)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            # The reader went away (`| head`): the loop sees ``closed`` and stops.
            self.closed = True

    def update(self, snapshot: LiveSnapshot) -> None:
        """Snapshots are for the terminal view; the stream has the counters events."""

    def close(self) -> None:
        """Nothing to release: the stream belongs to the caller."""


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _t(text: object, style: str = "") -> Text:
    """A cell of plain text (never parsed as markup), made safe for the terminal."""
    return Text(for_terminal("" if text is None else str(text)), style=style)


def _endpoint(ip: object, port: object, role: object = None, name: object = None) -> Text:
    text = _t(f"{ip}:{port}" if port is not None else ip)
    if name:
        text.append_text(_t(f" ({name})", "cyan"))
    if role:
        text.append_text(_t(f" [{role}]", "dim"))
    return text


def render(snap: LiveSnapshot) -> Group:
    """The whole view for one snapshot."""
    stats = snap.stats
    head = Text()
    head.append("dsaudit live ", style="bold")
    head.append_text(_t(snap.iface, "bold cyan"))
    head.append_text(_t(f"  {snap.engine}, {snap.linktype}"))
    if snap.bpf:
        head.append_text(_t(f"  filter: {snap.bpf}"))
    head.append_text(_t(f"  {_clock(snap.elapsed_s)}"))
    if snap.writing:
        head.append_text(_t(f"  writing {snap.writing}", "dim"))
    drops = stats.kernel_drops + stats.engine_drops
    line = Text(
        f"packets {stats.packets}  bytes {_size(stats.bytes)}  drops "
        f"{drops if not stats.drops_final or drops else 'at stop'}  flows: "
        f"{snap.flows_active} open, {snap.flows_judged} judged, {snap.flows_expired} expired  "
    )
    if drops:
        line.stylize("bold red")
    v = snap.verdicts
    line.append(f"explained {v['explained']}  ", style="green")
    line.append(f"unexplained {v['unexplained']}  ", style="yellow" if v["unexplained"] else "")
    line.append(f"blocked {v['blocked']}  ", style="bold red" if v["blocked"] else "")
    line.append(f"infrastructure {v['infrastructure']}", style="dim")
    parts: list[Any] = [head, line, _t(f"inventory: {snap.inventory}", "dim")]

    roles = Table(title="Flows by role", title_justify="left", expand=False)
    for col in ("client", "server", "port", "flows", "explained", "unexplained", "blocked"):
        roles.add_column(col, justify="right" if col not in ("client", "server") else "left")
    for row in snap.roles[:ROLE_ROWS]:
        c = row.counts
        total = sum(n for k, n in c.items() if k != "blocked")
        roles.add_row(
            _t(row.client_role or "?"),
            _t(row.server_role or "?"),
            _t(f"{row.proto}/{row.port if row.port is not None else 'other'}"),
            _t(total),
            _t(c["explained"], "green"),
            _t(c["unexplained"], "yellow" if c["unexplained"] else ""),
            _t(c["blocked"], "bold red" if c["blocked"] else ""),
        )
    if len(snap.roles) > ROLE_ROWS:
        roles.caption = f"{len(snap.roles) - ROLE_ROWS} more rows"
    parts.append(roles)

    if snap.unexplained:
        table = Table(title="Unexplained (newest first)", title_justify="left", style="yellow")
        for col in ("since", "client", "server", "finding", "flows"):
            table.add_column(col)
        for e in snap.unexplained[:FINDING_ROWS]:
            table.add_row(
                _t(str(e["start"])[11:19]),
                _endpoint(e["client"], None, e["client_role"]),
                _endpoint(e["server"], e["server_port"], e["server_role"], e["server_name"]),
                _t(f"{e['finding']}: {e['reason_text'] or ''}"),
                _t(e["flows"]),
            )
        parts.append(table)
    if snap.blocked:
        table = Table(title="Blocked expected flows", title_justify="left", style="red")
        for col in ("since", "client", "server", "rule", "outcome", "flows"):
            table.add_column(col)
        for e in snap.blocked[:FINDING_ROWS]:
            table.add_row(
                _t(str(e["start"])[11:19]),
                _endpoint(e["client"], None, e["client_role"]),
                _endpoint(e["server"], e["server_port"], e["server_role"], e["server_name"]),
                _t(e["rule"]),
                _t(e["outcome"], "bold red"),
                _t(e["flows"]),
            )
        parts.append(table)
    if snap.heartbeats:
        table = Table(title="Missing heartbeats", title_justify="left", style="red")
        for col in ("agent", "last heartbeat", "silent", "missed"):
            table.add_column(col)
        for h in snap.heartbeats[:FINDING_ROWS]:
            table.add_row(
                _t(h["agent"]),
                _t(h["last_seen"] or "none this session"),
                _t(_clock(h["silent_s"])),
                _t(h["missed_intervals"], "bold red"),
            )
        parts.append(table)
    return Group(*parts)


class RichView:
    """A terminal view redrawn once a second from the loop's snapshots."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        # Redrawn only when a snapshot arrives (no refresh thread of its own); the last
        # frame stays on screen above the final report.
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.closed = False
        self._started = False

    def emit(self, event: LiveEvent) -> None:
        """Findings show in the next snapshot; events need no drawing of their own."""

    def update(self, snapshot: LiveSnapshot) -> None:
        """Redraw."""
        if not self._started:
            self.live.start()
            self._started = True
        self.live.update(render(snapshot), refresh=True)

    def close(self) -> None:
        """Leave the last frame on screen and give the terminal back."""
        if self._started:
            self.live.stop()
            self._started = False
