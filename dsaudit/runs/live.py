"""The live audit loop: drain the capture, feed the flow builder, judge new flows, emit events.

One thread (the caller's) runs the loop; the capture backend fills its buffer from its own
thread (see :mod:`dsaudit.sources.live`). Every ``poll_s`` the loop takes what was
captured as one :class:`PacketBatch`, appends it to the ``--write`` pcap (flushed) and feeds
it to the same :class:`FlowBuilder` that reads files. Every ``evaluate_s`` it builds flow
records for the flows not yet judged, classifies them with the audit's own
:func:`classify_flows`, and emits an event for each new finding once the flow has settled:

- a flow is *settled* when it was rejected, has closed, or is ``settle_s`` old (its peer
  name, which can change the verdict, arrives within the first packets);
- an expected flow that failed is reported blocked at once when it was rejected, and only
  after ``unanswered_s`` when it is merely unanswered (a SYN may be retransmitted).
- the two one-way halves of a connection split across VLANs (a routed trunk) are joined as
  the final report joins them (:mod:`dsaudit.flow_records.vlan_join`) and judged once; a one-way
  flow on a VLAN waits ``unanswered_s`` for its other half before it is judged alone.

Memory stays flat: every ``window_s`` flows idle past their timeout (TCP closed by FIN or
RST: ``closed_linger_s``) leave the flow table (:meth:`FlowBuilder.keep_flows`) and are
folded into a :class:`FlowArchive`, one row per conversation. The final report audits the
archive rows and the flows still in the table together; see docs/live.md for what is kept.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

import numpy as np
import pandas as pd

from dsaudit.catalog import Catalog
from dsaudit.flow_records.builder import FlowBuilder, FlowOptions, FlowResult
from dsaudit.flow_records.frame import (
    DIRECTION_COUNTERS,
    FLOW_COLUMNS,
    FLOW_DTYPES,
    build_flow_frame,
)
from dsaudit.flow_records.vlan_join import join_pairs, pair_halves
from dsaudit.flows.rows import FlowRows
from dsaudit.inventory import Inventory
from dsaudit.judge.causes import DnsFailure, dns_failures, flow_cause, needed_names
from dsaudit.judge.classify import classify_flows
from dsaudit.judge.expectations import is_heartbeat
from dsaudit.judge.findings import FINDING_KINDS, AuditResult, typed_frame
from dsaudit.judge.inference import infer
from dsaudit.naming.namer import Namer
from dsaudit.runs.audit import WEIGHT, AuditOptions, run_audit
from dsaudit.sources.batch import LINKTYPE_NAMES, PacketBatch
from dsaudit.sources.capture_file import CaptureInfo
from dsaudit.sources.live.source import LiveSource, SourceStats
from dsaudit.sources.pcap_writer import PcapWriter
from dsaudit.time_text import NS, iso_ns

# Row states in the live table: not yet judged; judged, waiting to see whether an
# unanswered expected flow stays unanswered; done.
NEW, PENDING_BLOCK, DONE = 0, 1, 2
CLOSED_STATES = {"SF", "REJ", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR"}
REASON_KIND = {
    "localhost_only": "localhost_only_port_on_wire",
    "wrong_direction": "unexpected_direction",
    "unlisted_hostname": "unlisted_hostname",
    "unknown_endpoint": "unknown_endpoint",
}
MAX_ROLE_ROWS = 10000  # distinct role/port rows in the view before the rest is "other"
MAX_DNS_FAILURES = 32  # failed lookups kept per client for the cause of a blocked flow
RECENT = 50  # findings kept for the view
ARCHIVE_SUM = (*DIRECTION_COUNTERS, "truncated_packets")
ARCHIVE_ICMP_ERRORS = 20


@dataclass(frozen=True)
class LiveOptions:
    """How the loop paces itself, when it stops, and how the audit judges."""

    flow: FlowOptions = field(default_factory=FlowOptions)
    duration_s: float | None = None
    count: int | None = None
    poll_s: float = 0.25
    evaluate_s: float = 1.0
    counters_s: float = 5.0
    window_s: float = 30.0
    settle_s: float = 2.0
    unanswered_s: float = 5.0
    closed_linger_s: float = 10.0
    infer_s: float = 5.0
    heartbeat_keep: int = 288  # individual heartbeat flows kept per agent and port
    strict: bool = False
    vantage: str | None = None
    fail_on: str = "high"
    bpf: str | None = None


@dataclass
class LiveEvent:
    """One line of the JSON Lines stream: ``{"event": kind, "time": ..., **data}``."""

    kind: str
    data: dict[str, Any]
    time_ns: int

    def as_dict(self) -> dict[str, Any]:
        """The event as a JSON object (strings still raw: the sink makes them safe)."""
        return {"event": self.kind, "time": iso_ns(self.time_ns), **self.data}


@dataclass
class RoleRow:
    """Flows between two roles on one port, by verdict."""

    client_role: str
    server_role: str
    proto: str
    port: int | None
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class LiveSnapshot:
    """What the terminal view shows, refreshed about once a second."""

    iface: str
    engine: str
    bpf: str | None
    linktype: str
    inventory: str
    elapsed_s: float
    stats: SourceStats
    flows_active: int
    flows_judged: int
    flows_expired: int
    verdicts: Counter[str]
    roles: list[RoleRow]
    unexplained: list[dict[str, Any]]
    blocked: list[dict[str, Any]]
    heartbeats: list[dict[str, Any]]
    writing: str | None


class EventSink(Protocol):
    """Where events and snapshots go: the rich view, JSON Lines, or nowhere."""

    closed: bool

    def emit(self, event: LiveEvent) -> None:
        """One finding or counter as it is found."""

    def update(self, snapshot: LiveSnapshot) -> None:
        """The current state (about once a second)."""

    def close(self) -> None:
        """The capture stopped; release the terminal."""


class NullSink:
    """Discards everything (``--events none``)."""

    closed = False

    def emit(self, event: LiveEvent) -> None:
        """Nothing."""

    def update(self, snapshot: LiveSnapshot) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""


# ----------------------------------------------------------------------------- eviction


def flow_frame(
    builder: FlowBuilder, rows: np.ndarray, timeouts: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Flow records for some rows of the live table, halves split across VLANs joined.

    The halves are paired over the whole table (:func:`pair_halves`, as the final report
    pairs them), so a row's other half comes along even if it was not asked for. Returns the
    records, the table row of each (its first half when joined) and the table row of its
    other half (-1 if none). ``timeouts`` are the table's idle timeouts in ns (tcp, udp,
    other).

    The rows are ordered by first packet (then row) before building, which is the order
    :func:`build_flow_frame` gives its output; a joined flow takes its first half's place and
    starts with it, so that order holds.
    """
    fs = builder.table.fs
    n = builder.table.nflows
    first, second = pair_halves(fs[:n], timeouts)
    partner = np.full(n, -1, dtype=np.int64)
    partner[first], partner[second] = second, first
    other = partner[rows]
    rows = np.union1d(rows, other[other >= 0])
    rows = rows[np.lexsort((rows, FlowRows(fs).first_ns[rows]))]
    pos = np.full(n, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows), dtype=np.int64)
    inside = pos[first] >= 0  # and so is its other half: rows holds both or neither
    sub = fs[rows]
    view = Namer()
    found = builder.namer.flows
    view.flows = {i: found[f] for i, f in enumerate(rows.tolist()) if f in found}
    view.dns = builder.namer.dns
    view.decode_failures = builder.namer.decode_failures
    view.icmp_errors = builder.namer.icmp_errors
    j = join_pairs(sub, view, pos[first[inside]], pos[second[inside]])
    frame = build_flow_frame(j.fs, j.namer, j.s2c_vlans, j.joined)
    keep = np.ones(len(rows), dtype=bool)
    keep[pos[second[inside]]] = False
    rows = rows[keep]
    starts = frame["start"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if len(frame) != len(rows) or not np.array_equal(starts, FlowRows(j.fs).first_ns):
        raise AssertionError("flow records are no longer in first-packet order")
    return frame, rows, partner[rows]


# ----------------------------------------------------------------------------- archive


def _plain(value: Any) -> Any:
    return None if value is None or value is pd.NA or value is pd.NaT else value


class FlowArchive:
    """Flows that left the live table, folded into one row per conversation.

    A conversation is (proto, client, server, server port, VLANs, outcome, server name).
    Its row sums packets and bytes, spans the first start to the last end, counts the
    flows it stands for in ``merged_flows``, and keeps the most recent flow's client port,
    state, history and names. Heartbeat flows are kept one by one (the last
    ``heartbeat_keep`` per agent, manager and port) so the heartbeat timeline stays exact;
    older ones are folded like the rest.
    """

    def __init__(self, heartbeat_keep: int) -> None:
        self.heartbeat_keep = heartbeat_keep
        self.folded: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.beats: dict[tuple[Any, ...], deque[dict[str, Any]]] = {}
        self.flows = 0

    def __len__(self) -> int:
        return len(self.folded) + sum(len(q) for q in self.beats.values())

    def add(self, classified: pd.DataFrame) -> None:
        """Archive classified flow records (columns of :func:`classify_flows`)."""
        if classified.empty:
            return
        cols = [c for c in FLOW_COLUMNS if c != "flow_id"]
        rules = classified["_rules"].tolist()
        records: list[dict[str, Any]] = classified[cols].to_dict("records")  # type: ignore[assignment]
        for raw, ids in zip(records, rules, strict=True):
            self.flows += 1
            rec = {k: _plain(v) for k, v in raw.items()}
            rec[WEIGHT] = 1
            if is_heartbeat(ids):
                key = (rec["client_ip"], rec["server_ip"], rec["server_port"], rec["proto"])
                queue = self.beats.setdefault(key, deque())
                queue.append(rec)
                if len(queue) > self.heartbeat_keep:
                    self._fold(queue.popleft())
            else:
                self._fold(rec)

    def _fold(self, rec: dict[str, Any]) -> None:
        key = (
            rec["proto"],
            rec["client_ip"],
            rec["server_ip"],
            rec["server_port"],
            rec["vlan"],
            rec["inner_vlan"],
            str(rec["outcome"]),
            rec["server_name"],
        )
        cur = self.folded.get(key)
        if cur is None:
            self.folded[key] = rec
            return
        for col in ARCHIVE_SUM:
            cur[col] = int(cur[col]) + int(rec[col])
        cur[WEIGHT] += rec[WEIGHT]
        cur["tunnel"] = bool(cur["tunnel"]) or bool(rec["tunnel"])
        errors = list(cur["icmp_errors"]) + list(rec["icmp_errors"])
        cur["icmp_errors"] = errors[-ARCHIVE_ICMP_ERRORS:]
        first, last = min(cur["start"], rec["start"]), max(cur["end"], rec["end"])
        if rec["start"] >= cur["start"]:
            # The newest flow describes the conversation now: its port, state and names.
            for col in rec:
                if col not in ARCHIVE_SUM and col not in (WEIGHT, "tunnel", "icmp_errors"):
                    cur[col] = rec[col]
        cur["start"], cur["end"] = first, last
        cur["duration"] = (last - first).total_seconds()

    def frame(self) -> pd.DataFrame:
        """The archive as flow records (flow_id left 0) with a ``merged_flows`` column."""
        rows = list(self.folded.values()) + [r for q in self.beats.values() for r in q]
        rows = [{"flow_id": 0, **r} for r in rows]
        return typed_frame(rows, {**FLOW_DTYPES, WEIGHT: "int64"})


# ----------------------------------------------------------------------------- heartbeats


class HeartbeatWatch:
    """When each agent last sent (or got) a heartbeat, and which are overdue."""

    def __init__(self, interval_s: float, started_ns: int) -> None:
        self.interval_ns = int(interval_s * NS)
        # A heartbeat may run a little late; ten percent (at least a second) is not "missing".
        self.grace_ns = max(NS, self.interval_ns // 10)
        self.started_ns = started_ns
        self.last: dict[str, int | None] = {}
        self.reported: dict[str, int] = {}
        self.restrict: set[str] | None = None

    def watch(self, agent: str) -> None:
        """Expect heartbeats from ``agent`` from the start of the capture."""
        if self.restrict is not None and agent not in self.restrict:
            return
        self.last.setdefault(agent, None)

    def seen(self, agent: str, ts_ns: int) -> None:
        """A heartbeat of ``agent`` at ``ts_ns``."""
        self.watch(agent)
        if agent not in self.last:
            return
        prev = self.last[agent]
        if prev is None or ts_ns > prev:
            self.last[agent] = ts_ns
            self.reported[agent] = 0

    def overdue(self, now_ns: int) -> list[dict[str, Any]]:
        """Agents whose interval has passed without a heartbeat, with how many were missed."""
        out = []
        for agent, last in sorted(self.last.items()):
            since = last if last is not None else self.started_ns
            silent = now_ns - since
            if silent <= self.interval_ns + self.grace_ns:
                continue
            out.append(
                {
                    "agent": agent,
                    "interval_s": self.interval_ns / NS,
                    "last_seen": iso_ns(last),
                    "silent_s": round(silent / NS, 1),
                    "missed_intervals": int((silent - self.grace_ns) // self.interval_ns),
                }
            )
        return out

    def newly_missing(self, now_ns: int) -> list[dict[str, Any]]:
        """Overdue agents that missed another interval since they were last reported."""
        fresh = []
        for entry in self.overdue(now_ns):
            agent = entry["agent"]
            if entry["missed_intervals"] > self.reported.get(agent, 0):
                self.reported[agent] = entry["missed_intervals"]
                fresh.append(entry)
        return fresh


# ----------------------------------------------------------------------------- the loop


@dataclass
class LiveOutcome:
    """How a live session ended and what it concluded."""

    result: AuditResult
    flows: FlowResult
    stop_reason: str
    error: str | None
    stats: SourceStats
    events: Counter[str]


class LiveAudit:
    """Runs one live session: capture, judge as it goes, and audit everything at the end."""

    def __init__(
        self,
        source: LiveSource,
        catalog: Catalog,
        inventory: Inventory | None,
        options: LiveOptions,
        sink: EventSink | None = None,
        writer: PcapWriter | None = None,
        local_addresses: Iterable[str] = (),
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.source = source
        self.catalog = catalog
        self.given_inventory = inventory
        self.inventory: Inventory | None = inventory
        self.options = options
        self.sink: EventSink = sink or NullSink()
        self.writer = writer
        self.clock = clock
        self.local_addresses = set(local_addresses)
        self.builder = FlowBuilder(options.flow)
        self.builder.on_evict.append(self._follow_eviction)
        self.info = CaptureInfo(
            path=f"iface:{source.iface}",
            format="live",
            ts_resolution="nsec",
            snaplen=source.snaplen,
            linktypes={source.linktype},
            interfaces=1,
        )
        self.status = np.zeros(0, dtype=np.int8)
        self.archive = FlowArchive(options.heartbeat_keep)
        self.started_ns = clock()
        self.stopped_ns: int | None = None
        interval = inventory.deployment.heartbeat_interval if inventory else 600
        self.hb = HeartbeatWatch(float(interval), self.started_ns)
        self.events: Counter[str] = Counter()
        self.verdicts: Counter[str] = Counter()
        self.roles: dict[tuple[str, str, str, int | None], RoleRow] = {}
        self.emitted: set[tuple[Any, ...]] = set()
        self.recent_unexplained: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.recent_blocked: dict[tuple[Any, ...], dict[str, Any]] = {}
        # Failed DNS lookups per client, newest last: evidence for a blocked flow's cause.
        self.dns_failed: dict[str, list[DnsFailure]] = {}
        self.judged = 0
        self._tmo = options.flow.timeouts.as_array()
        if inventory is not None:
            self._watch_inventory(inventory)

    # -- inventory and heartbeats ------------------------------------------------------
    def _watch_inventory(self, inventory: Inventory) -> None:
        agents = []
        for entry in inventory.hosts_for("agent"):
            net = entry.network
            if net is not None and net.num_addresses == 1:
                agents.append(str(net.network_address))
        vantage = self.options.vantage
        mine: set[str] = set()
        if vantage and vantage != "span":
            mine = {vantage}
        elif vantage is None:
            mine = set(self.local_addresses)
        # Captured on an agent (not a manager): only that agent's heartbeats can be seen.
        own = {a for a in mine if "agent" in inventory.roles_of(a)}
        if own and not any("manager" in inventory.roles_of(a) for a in mine):
            self.hb.restrict = own
        for agent in agents:
            self.hb.watch(agent)

    def _infer(self) -> None:
        if self.given_inventory is not None:
            return
        flows = self._all_flows().flows
        if flows.empty:
            return
        self.inventory = infer(flows).inventory()
        self._watch_inventory(self.inventory)

    # -- ingest --------------------------------------------------------------------------
    def ingest(self, batch: PacketBatch | None) -> None:
        """Save and account one batch of captured frames."""
        if batch is None or len(batch) == 0:
            return
        if self.writer is not None:
            self.writer.write_batch(batch)
        self.builder.add_batch(batch)
        self.info.packets += len(batch)
        self.info.bytes_read += int(batch.caplen.sum())

    def _follow_eviction(self, mapping: np.ndarray) -> None:
        # The builder dropped open flows to stay within max_flows (counted in its stats as
        # flows_evicted): keep the judging state of the flows that stayed.
        n = len(mapping)
        old = np.zeros(n, dtype=np.int8)
        k = min(n, len(self.status))
        old[:k] = self.status[:k]
        kept = mapping >= 0
        status = np.zeros(max(int(kept.sum()), 1024), dtype=np.int8)
        status[mapping[kept]] = old[kept]
        self.status = status

    def _grow(self) -> int:
        n = self.builder.table.nflows
        if n > len(self.status):
            grown = np.zeros(max(n, 2 * len(self.status), 1024), dtype=np.int8)
            grown[: len(self.status)] = self.status
            self.status = grown
        return n

    # -- judging ---------------------------------------------------------------------------
    def evaluate(self, now_ns: int) -> None:
        """Judge flows not judged yet, emit their findings, and report missing heartbeats."""
        n = self._grow()
        if self.inventory is not None:
            rows = np.flatnonzero(self.status[:n] < DONE)
            if len(rows):
                frame, rows, halves = flow_frame(self.builder, rows, self._tmo)
                self._judge(self._classify(frame), rows, halves, now_ns, force=False)
        for entry in self.hb.newly_missing(now_ns):
            self._emit("heartbeat_missing", entry, now_ns)

    def _classify(self, frame: pd.DataFrame) -> pd.DataFrame:
        assert self.inventory is not None
        return classify_flows(frame, self.catalog, self.inventory, strict=self.options.strict)

    def _judge(
        self, df: pd.DataFrame, rows: np.ndarray, halves: np.ndarray, now_ns: int, force: bool
    ) -> None:
        """Judge records (table rows ``rows``; ``halves``: the other half's row, or -1)."""
        start = df["start"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        age = now_ns - start
        outcome = df["outcome"].astype(str).to_numpy()
        rejected = outcome == "rejected"
        tcp = (df["proto"] == "tcp").to_numpy(dtype=bool)
        closed = df["state"].isin(list(CLOSED_STATES)).to_numpy(dtype=bool) & tcp
        sure = rejected | closed | (age >= int(self.options.unanswered_s * NS)) | force
        settled = rejected | closed | (age >= int(self.options.settle_s * NS)) | force
        # A one-way flow on a VLAN may be half of a connection whose answers come on another
        # VLAN (a routed trunk): it waits as an unanswered flow does, so that its other half
        # can still join it, before it is judged alone.
        one_way = (df["packets_c2s"].to_numpy() == 0) | (df["packets_s2c"].to_numpy() == 0)
        tagged = df["vlan"].notna().to_numpy(dtype=bool) | df["inner_vlan"].notna().to_numpy(
            dtype=bool
        )
        alone = one_way & tagged & ~df["vlan_joined"].to_numpy(dtype=bool)
        settled &= ~alone | (age >= int(self.options.unanswered_s * NS)) | force
        blocked = df["blocked"].to_numpy(dtype=bool)
        # A joined flow is as far along as the further of its halves: a half judged alone
        # before its other half came stays judged, and the other half is not judged again.
        status = self.status[rows]
        paired = halves >= 0
        status[paired] = np.maximum(status[paired], self.status[halves[paired]])
        records: list[dict[str, Any]] = df.to_dict("records")  # type: ignore[assignment]
        for i, rec in enumerate(records):
            st = status[i]
            if st == NEW:
                if not settled[i]:
                    continue
                self._count(rec, now_ns)
                st = PENDING_BLOCK if blocked[i] else DONE
            if st == PENDING_BLOCK:
                if not blocked[i]:
                    st = DONE
                elif sure[i]:
                    self._blocked(rec, now_ns)
                    st = DONE
            self.status[rows[i]] = st
            if paired[i]:
                self.status[halves[i]] = st

    def _count(self, rec: dict[str, Any], now_ns: int) -> None:
        self.judged += 1
        verdict = str(rec["verdict"])
        self.verdicts[verdict] += 1
        croles, sroles = str(rec["client_role"] or ""), str(rec["server_role"] or "")
        port: int | None = int(rec["server_port"])
        key = (croles, sroles, str(rec["proto"]), port)
        if key not in self.roles and len(self.roles) >= MAX_ROLE_ROWS:
            port = None
            key = (croles, sroles, str(rec["proto"]), None)
        row = self.roles.get(key)
        if row is None:
            row = self.roles[key] = RoleRow(croles, sroles, str(rec["proto"]), port)
        row.counts[verdict] += 1
        for role, ip in ((croles, rec["client_ip"]), (sroles, rec["server_ip"])):
            if "agent" in role.split("+"):
                self.hb.watch(str(ip))
        if is_heartbeat(rec["_rules"]) and str(rec["outcome"]) == "established":
            agent = rec["client_ip"] if "agent" in croles.split("+") else rec["server_ip"]
            self.hb.seen(str(agent), int(pd.Timestamp(rec["start"]).value))
        if verdict == "unexplained":
            self._unexplained(rec, now_ns)
        if rec["dns_queries"]:
            for client, failed in dns_failures(pd.DataFrame([rec])).items():
                kept = self.dns_failed.setdefault(client, [])
                kept += failed
                del kept[:-MAX_DNS_FAILURES]

    def _flow_fields(self, rec: dict[str, Any]) -> dict[str, Any]:
        name = rec["server_name"]
        return {
            "proto": rec["proto"],
            "client": rec["client_ip"],
            "client_port": int(rec["client_port"]),
            "client_role": rec["client_role"] or None,
            "server": rec["server_ip"],
            "server_port": int(rec["server_port"]),
            "server_role": rec["server_role"] or None,
            "server_name": name if isinstance(name, str) else None,
            "outcome": str(rec["outcome"]),
            "state": rec["state"],
            "start": iso_ns(int(pd.Timestamp(rec["start"]).value)),
        }

    def _unexplained(self, rec: dict[str, Any], now_ns: int) -> None:
        reason = rec["reason"] if isinstance(rec["reason"], str) else "no_rule"
        kind = REASON_KIND.get(reason, "unexplained_flow")
        name = rec["server_name"] if kind == "unlisted_hostname" else None
        key = (
            kind,
            rec["client_ip"],
            rec["server_ip"],
            int(rec["server_port"]),
            rec["proto"],
            name,
        )
        seen = self.recent_unexplained.get(key)
        if seen is not None:
            seen["flows"] += 1
            return
        data = {
            "finding": kind,
            "severity": FINDING_KINDS[kind].severity,
            **self._flow_fields(rec),
            "rule": rec["rule"] if isinstance(rec["rule"], str) else None,
            "reason": reason,
            "reason_text": rec["reason_text"] if isinstance(rec["reason_text"], str) else None,
        }
        self._remember(self.recent_unexplained, key, {**data, "flows": 1})
        if key not in self.emitted:
            self.emitted.add(key)
            self._emit("flow_unexplained", data, now_ns)

    def _blocked(self, rec: dict[str, Any], now_ns: int) -> None:
        self.verdicts["blocked"] += 1
        self._role_blocked(rec)
        rule = rec["rule"] if isinstance(rec["rule"], str) else None
        key = (
            "blocked",
            rec["client_ip"],
            rec["server_ip"],
            int(rec["server_port"]),
            rec["proto"],
            rule,
        )
        seen = self.recent_blocked.get(key)
        if seen is not None:
            seen["flows"] += 1
            return
        name = rec["server_name"] if isinstance(rec["server_name"], str) else None
        assert self.inventory is not None
        names = needed_names(str(rec["server_role"] or "").split("+"), self.inventory, [name or ""])
        cause, evidence = flow_cause(rec, self.dns_failed.get(str(rec["client_ip"])), names)
        data = {
            "finding": "blocked_expected_flow",
            "severity": FINDING_KINDS["blocked_expected_flow"].severity,
            **self._flow_fields(rec),
            "rule": rule,
            "cause": cause,
            "cause_evidence": evidence,
        }
        self._remember(self.recent_blocked, key, {**data, "flows": 1})
        if key not in self.emitted:
            self.emitted.add(key)
            self._emit("flow_blocked", data, now_ns)

    def _role_blocked(self, rec: dict[str, Any]) -> None:
        """Count a blocked flow on its role row."""
        key = (str(rec["client_role"] or ""), str(rec["server_role"] or ""), str(rec["proto"]))
        row = self.roles.get((*key, int(rec["server_port"]))) or self.roles.get((*key, None))
        if row is not None:
            row.counts["blocked"] += 1

    @staticmethod
    def _remember(
        store: dict[tuple[Any, ...], dict[str, Any]], key: tuple[Any, ...], value: dict[str, Any]
    ) -> None:
        store[key] = value
        while len(store) > RECENT:
            store.pop(next(iter(store)))

    def _emit(self, kind: str, data: dict[str, Any], now_ns: int) -> None:
        self.events[kind] += 1
        self.sink.emit(LiveEvent(kind, data, now_ns))

    # -- expiry ----------------------------------------------------------------------------
    def expire(self, now_ns: int) -> int:
        """Move flows idle past their timeout from the table to the archive; return how many."""
        n = self._grow()
        if n == 0:
            return 0
        fs = self.builder.table.fs[:n]
        flows = FlowRows(fs)
        proto = flows.proto
        timeout = self._tmo[np.where(proto == 6, 0, np.where(proto == 17, 1, 2))]
        last = flows.last_ns.copy()
        fin_c = flows.fin_c2s
        fin_s = flows.fin_s2c
        reset = flows.reset
        both_fin = fin_c & fin_s
        # The halves of a connection split across VLANs leave together, as the connection:
        # idle since the later of their last packets, closed by a FIN of each half or a RST.
        first, second = pair_halves(fs, self._tmo)
        last[first] = last[second] = np.maximum(last[first], last[second])
        fin_any = fin_c | fin_s
        both_fin[first] = both_fin[second] = fin_any[first] & fin_any[second]
        reset[first] = reset[second] = reset[first] | reset[second]
        idle = now_ns - last
        closed = (proto == 6) & (both_fin | reset)
        gone = (idle >= timeout) | (closed & (idle >= int(self.options.closed_linger_s * NS)))
        # A one-way flow on a VLAN without its other half stays for its whole idle timeout,
        # however it ended: an answer on another VLAN joins it until then.
        alone = (flows.packets_c2s > 0) != (flows.packets_s2c > 0)
        alone &= flows.tagged
        alone[first] = alone[second] = False
        gone[alone] = idle[alone] >= timeout[alone]
        rows = np.flatnonzero(gone)
        if not len(rows):
            return 0
        if self.inventory is None:
            self._infer()
        frame, rows, halves = flow_frame(self.builder, rows, self._tmo)
        if self.inventory is not None:
            classified = self._classify(frame)
            self._judge(classified, rows, halves, now_ns, force=True)
        else:
            classified = frame.copy()
            classified["_rules"] = pd.Series([()] * len(frame), index=frame.index, dtype=object)
        self.archive.add(classified)
        keep = np.flatnonzero(~gone)
        self.status = self.status[keep].copy()
        self.builder.keep_flows(keep)
        return int(len(rows))

    # -- snapshots -------------------------------------------------------------------------
    def snapshot(self, now_ns: int) -> LiveSnapshot:
        """The state for the terminal view."""
        roles = sorted(
            self.roles.values(),
            key=lambda r: (
                -r.counts["unexplained"] - r.counts["blocked"],
                -sum(r.counts.values()),
                r.client_role,
                r.server_role,
                r.port or 0,
            ),
        )
        label = "given" if self.given_inventory is not None else "inferred from the traffic"
        return LiveSnapshot(
            iface=self.source.iface,
            engine=self.source.engine,
            bpf=self.options.bpf,
            linktype=LINKTYPE_NAMES.get(self.source.linktype, str(self.source.linktype)),
            inventory=label,
            elapsed_s=(now_ns - self.started_ns) / NS,
            stats=self.source.stats(),
            flows_active=self.builder.table.nflows,
            flows_judged=self.judged,
            flows_expired=self.archive.flows,
            verdicts=Counter(self.verdicts),
            roles=roles,
            unexplained=list(reversed(self.recent_unexplained.values())),
            blocked=list(reversed(self.recent_blocked.values())),
            heartbeats=self.hb.overdue(now_ns),
            writing=self.writer.path if self.writer is not None else None,
        )

    def counters(self, now_ns: int) -> dict[str, Any]:
        """The ``counters`` event's fields."""
        return {
            **self.source.stats().as_dict(),
            "elapsed_s": round((now_ns - self.started_ns) / NS, 3),
            "flows_active": self.builder.table.nflows,
            "flows_judged": self.judged,
            "flows_expired": self.archive.flows,
            "verdicts": dict(self.verdicts),
        }

    # -- the loop --------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, handle_signals: bool = True) -> LiveOutcome:
        """Capture until duration, count, the source ending, ``stop`` or SIGINT/SIGTERM;
        then audit everything captured."""
        stop = stop or threading.Event()
        reason: list[str] = []
        restore: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            reason.append("interrupted" if signum == signal.SIGINT else "terminated")
            stop.set()
            # A second signal ends the process the ordinary way.
            for sig, old in restore.items():
                signal.signal(sig, old)

        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                restore[sig] = signal.signal(sig, on_signal)
        opts = self.options
        error: str | None = None
        try:
            self.source.start()
            self.started_ns = self.hb.started_ns = self.clock()
            began = time.monotonic()
            self._emit(
                "capture_started",
                {
                    "interface": self.source.iface,
                    "engine": self.source.engine,
                    "filter": opts.bpf,
                    "linktype": LINKTYPE_NAMES.get(self.source.linktype, self.source.linktype),
                    "inventory": "given" if self.given_inventory is not None else "inferred",
                    "write": self.writer.path if self.writer is not None else None,
                },
                self.started_ns,
            )
            next_eval = began + opts.evaluate_s
            next_counters = began + opts.counters_s
            next_expire = began + opts.window_s
            next_infer = began
            while not stop.wait(opts.poll_s):
                self.ingest(self.source.take())
                mono = time.monotonic()
                now = self.clock()
                if self.sink.closed:
                    reason.append("output-closed")
                    break
                if opts.duration_s is not None and mono - began >= opts.duration_s:
                    reason.append("duration")
                    break
                if not self.source.running:
                    error = self.source.error()
                    reason.append("error" if error else ("count" if opts.count else "ended"))
                    break
                if self.given_inventory is None and mono >= next_infer:
                    self._infer()
                    next_infer = mono + opts.infer_s
                if mono >= next_eval:
                    self.evaluate(now)
                    self.sink.update(self.snapshot(now))
                    next_eval = mono + opts.evaluate_s
                if mono >= next_counters:
                    self._emit("counters", self.counters(now), now)
                    next_counters = mono + opts.counters_s
                if mono >= next_expire:
                    self.expire(now)
                    next_expire = mono + opts.window_s
        finally:
            self.source.stop()
            self.ingest(self.source.take())
            for sig, old in restore.items():
                signal.signal(sig, old)
        now = self.clock()
        self.stopped_ns = now
        if self.given_inventory is None:
            self._infer()
        self.evaluate(now)
        stats = self.source.stats()
        why = reason[0] if reason else "stopped"
        self._emit("counters", self.counters(now), now)
        self._emit(
            "capture_stopped",
            {"reason": why, "error": error, **stats.as_dict(), "events": dict(self.events)},
            now,
        )
        self.sink.update(self.snapshot(now))
        self.sink.close()
        flows = self._all_flows()
        result = self._audit(flows, why)
        return LiveOutcome(result, flows, why, error, stats, Counter(self.events))

    # -- the final report ------------------------------------------------------------------
    def _all_flows(self) -> FlowResult:
        """Archive rows and the flows still in the table, as one FlowResult."""
        stats = self.source.stats()
        info = self.info
        info.warnings = []
        drops = stats.kernel_drops + stats.engine_drops
        if drops:
            info.warnings.append(
                f"{info.path}: {drops} packets were dropped before dsaudit could read them "
                f"(kernel {stats.kernel_drops}, capture engine {stats.engine_drops}): "
                "flows may be incomplete"
            )
        read = self.builder.result([info])
        archived = self.archive.frame()
        if len(archived):
            live = read.flows.assign(**{WEIGHT: np.ones(len(read.flows), dtype=np.int64)})
            flows = pd.concat([archived, live], ignore_index=True)
            flows = flows.sort_values("start", kind="stable").reset_index(drop=True)
            flows["flow_id"] = np.arange(len(flows), dtype=np.int64)
            read.flows = flows
        return read

    def _audit(self, read: FlowResult, why: str) -> AuditResult:
        # The session watched the interface from start to stop, packets or not: that is the
        # span in which an expected flow had its chance to appear.
        span = read.stats
        span.first_ts_ns = min(t for t in (span.first_ts_ns, self.started_ns) if t is not None)
        ends = (span.last_ts_ns, self.stopped_ns)
        span.last_ts_ns = max(t for t in ends if t is not None)
        inventory = self.given_inventory or self.inventory
        label = None
        if inventory is None or self.given_inventory is None:
            inventory = infer(read.flows).inventory()
            label = "inferred from the traffic (dsaudit inventory infer)"
        opts = self.options
        result = run_audit(
            read,
            self.catalog,
            inventory,
            AuditOptions(
                strict=opts.strict,
                vantage=opts.vantage,
                fail_on=opts.fail_on,
                inventory_label=label,
            ),
        )
        if WEIGHT in result.flows.columns:
            _weigh(result)
        stats = self.source.stats()
        result.summary["live"] = {
            "interface": self.source.iface,
            "engine": self.source.engine,
            "filter": opts.bpf,
            "started": iso_ns(self.started_ns),
            "stopped": iso_ns(self.stopped_ns),
            "stop_reason": why,
            **stats.as_dict(),
            "flows_expired": self.archive.flows,
            "archive_rows": len(self.archive),
            "events": dict(self.events),
            "write": self.writer.path if self.writer is not None else None,
        }
        return result


def _weigh(result: AuditResult) -> None:
    """Counts in findings and the summary in flows, not in archive rows."""
    flows = result.flows
    weight = dict(zip(flows["flow_id"].tolist(), flows[WEIGHT].tolist(), strict=True))
    findings = result.findings
    if len(findings):
        counts = [
            sum(weight.get(i, 1) for i in ids) if len(ids) else int(c)
            for ids, c in zip(findings["flow_ids"], findings["count"], strict=True)
        ]
        findings["count"] = np.asarray(counts, dtype=np.int64)
    w = flows[WEIGHT].to_numpy()
    verdict = flows["verdict"].astype(str).to_numpy()
    counts = result.summary.setdefault("flow_counts", {})
    counts["total"] = int(w.sum())
    for name in ("explained", "unexplained", "infrastructure"):
        counts[name] = int(w[verdict == name].sum())
    counts["blocked_expected"] = int(w[flows["blocked"].to_numpy(dtype=bool)].sum())
    counts["records"] = int(len(flows))
