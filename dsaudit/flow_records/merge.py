"""Join the flows of captures read one file at a time into the flows of one continuous capture."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.decode.capture_stats import CaptureStats
from dsaudit.decode.undecoded import merge_reasons
from dsaudit.flow_records.builder import FlowResult
from dsaudit.flow_records.columns import PAYLOAD_SOURCES, failed_handshakes
from dsaudit.flow_records.flowlogs.common import outcomes, seen_bits, states_from_history
from dsaudit.flow_records.frame import DIRECTION_COUNTERS, FLOW_DTYPES, empty_flows
from dsaudit.flow_records.parts import (
    FlowIndex,
    FlowKey,
    PartResult,
    attach_icmp,
    epoch_ns,
    name_by_dns,
)
from dsaudit.flow_records.reading import no_cyclic_gc
from dsaudit.flow_records.vlan_join import order_history
from dsaudit.flows.table import Timeouts
from dsaudit.frames import row_dicts
from dsaudit.time_text import NS

# Echo request and reply share a flow; the flow records keep the first packet's type only.
ECHO_TYPES = {"icmp": (0, 8), "icmpv6": (128, 129)}
MAX_DNS_QUERIES = 64  # dsaudit.naming keeps at most this many per flow
MAX_DNS_ANSWERS = 256


def merge_stats(stats: Iterable[CaptureStats]) -> CaptureStats:
    """Counters of several files added up; the time span covers them all."""
    out = CaptureStats()
    for s in stats:
        for name in CaptureStats.__dataclass_fields__:
            value = getattr(s, name)
            if name == "undecodable":
                for k, v in value.items():
                    out.undecodable[k] = out.undecodable.get(k, 0) + v
            elif name == "not_decoded":
                merge_reasons(out.not_decoded, value)
            elif name in ("first_ts_ns", "last_ts_ns"):
                if value is None:
                    continue
                cur = getattr(out, name)
                pick = min if name == "first_ts_ns" else max
                setattr(out, name, value if cur is None else pick(cur, value))
            else:
                setattr(out, name, getattr(out, name) + value)
    return out


# ----------------------------------------------------------------------------- history


def join_history(first: str, second: str) -> str:
    """Letters in order of first occurrence across both parts."""
    return first + "".join(c for c in dict.fromkeys(second) if c not in first)


def _closed(history: str) -> bool:
    return ("F" in history and "f" in history) or "R" in history or "r" in history


# ----------------------------------------------------------------------------- keys


def _vlan(value: Any) -> int:
    return -1 if value is pd.NA or pd.isna(value) else int(value)


def _key(
    proto: str, cip: str, cport: int, sip: str, sport: int, v0: int, v1: int
) -> tuple[Any, ...]:
    a, b = (cip, cport), (sip, sport)
    if proto in ECHO_TYPES:
        family = "echo" if cport in ECHO_TYPES[proto] else f"{cport}/{sport}"
        a, b = (cip, 0), (sip, 0)
        return (proto, family, *((a, b) if a <= b else (b, a)), v0, v1)
    return (proto, *((a, b) if a <= b else (b, a)), v0, v1)


def flow_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Direction-free identity of a flow, as the flow table keys it (VLANs, protocol, ends)."""
    return _key(
        str(row["proto"]),
        str(row["client_ip"]),
        int(row["client_port"]),
        str(row["server_ip"]),
        int(row["server_port"]),
        _vlan(row["vlan"]),
        _vlan(row["inner_vlan"]),
    )


def _timeout_ns(proto: str, timeouts: Timeouts) -> int:
    seconds = {"tcp": timeouts.tcp, "udp": timeouts.udp}.get(proto, timeouts.other)
    return int(min(seconds * NS, np.iinfo(np.int64).max // 2))


def continues(earlier: dict[str, Any], later: dict[str, Any], timeouts: Timeouts) -> bool:
    """Whether the flow table, reading both files as one, would have kept one flow.

    ``later`` is the first flow of its key in the later file and ``earlier`` the newest flow
    of that key before it. The idle timeout decides first. For TCP, a later part that opens
    with a bare SYN is a new connection when the earlier one had closed (FIN both ways or a
    RST), or when its originator SYNs again after the connection got going (SYN-ACK or data
    seen): the table compares initial sequence numbers there, which the records do not keep,
    and a repeated SYN after an answer is in practice always a new connection. A SYN that
    repeats an unanswered attempt continues it, as does every packet that is not a bare SYN.
    """
    proto = str(earlier["proto"])
    gap = _ns(later["start"]) - _ns(earlier["end"])
    if gap > _timeout_ns(proto, timeouts):
        return False
    if proto != "tcp" or str(later["initiator_evidence"]) != "syn":
        return True
    hist = str(earlier["history"])
    if _closed(hist):
        return False
    same_side = (later["client_ip"], later["client_port"]) == (
        earlier["client_ip"],
        earlier["client_port"],
    )
    progressed = "h" in hist or "D" in hist
    return not (same_side and "S" in hist and progressed)


def _ns(value: Any) -> int:
    return int(pd.Timestamp(value).value)


# ----------------------------------------------------------------------------- joining


def _oriented(row: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its directions swapped when its client is ``like``'s server."""
    if str(row["proto"]) in ECHO_TYPES:
        swap = row["client_ip"] != like["client_ip"]
    else:
        swap = (row["client_ip"], row["client_port"]) != (like["client_ip"], like["client_port"])
    if not swap:
        return row
    out = dict(row)
    for a, b in (("client_ip", "server_ip"), ("client_port", "server_port")):
        out[a], out[b] = row[b], row[a]
    for col in DIRECTION_COUNTERS:
        if col.endswith("_c2s"):
            other = col[:-4] + "_s2c"
            out[col], out[other] = row[other], row[col]
    out["history"] = str(row["history"]).swapcase()
    return out


def _payload_name(rows: Sequence[dict[str, Any]]) -> tuple[Any, str]:
    """The best payload-derived name of the parts, by the records' order of sources."""
    best: tuple[Any, str] = (None, "none")
    rank = len(PAYLOAD_SOURCES)
    for row in rows:
        src = str(row["name_source"])
        if src in PAYLOAD_SOURCES and PAYLOAD_SOURCES.index(src) < rank:
            rank = PAYLOAD_SOURCES.index(src)
            best = (row["server_name"], src)
    return best


def _first(rows: Sequence[dict[str, Any]], col: str) -> str | None:
    for row in rows:
        value = row[col]
        if isinstance(value, str):
            return value
    return None


def join_rows(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One flow from the pieces of a connection, earliest first, oriented as the first."""
    head = parts[0]
    rows = [head] + [_oriented(r, head) for r in parts[1:]]
    out = dict(head)
    for col in DIRECTION_COUNTERS + ("truncated_packets",):
        out[col] = sum(int(r[col]) for r in rows)
    out["start"] = min(r["start"] for r in rows)
    out["end"] = max(r["end"] for r in rows)
    out["duration"] = (_ns(out["end"]) - _ns(out["start"])) / 1e9
    history = ""
    for r in rows:
        history = join_history(history, str(r["history"]))
    out["history"] = history
    for col in (
        "sni",
        "http_host",
        "connect_target",
        "socks_target",
        "tunnel_endpoints",
        "tls_alert",
        "tls_server_issuer",
    ):
        out[col] = _first(rows, col)
    out["server_name"], out["name_source"] = _payload_name(rows)
    queries: list[str] = []
    for r in rows:
        for q in r["dns_queries"]:
            if q not in queries and len(queries) < MAX_DNS_QUERIES:
                queries.append(q)
    out["dns_queries"] = queries
    out["dns_answers"] = [a for r in rows for a in r["dns_answers"]][:MAX_DNS_ANSWERS]
    out["tunnel"] = any(bool(r["tunnel"]) for r in rows)
    out["tls_client_hello"] = any(bool(r["tls_client_hello"]) for r in rows)
    out["max_segment_c2s"] = max(int(r["max_segment_c2s"]) for r in rows)
    out["dns_rcode"] = _last(rows, "dns_rcode")
    return out


def _last(rows: list[dict[str, Any]], col: str) -> Any:
    """The last piece's value that is there (a DNS flow's latest response code)."""
    for r in reversed(rows):
        if isinstance(r[col], str) and r[col]:
            return r[col]
    return None


def _restated(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with state and outcome again from history and counts (dsaudit.flow_records.frame's
    rules), typed as the flow columns; each row's result depends on that row alone."""
    out = frame.copy()
    if out.empty:
        return out
    proto = out["proto"].astype(str).to_numpy()
    pkts_s = out["packets_s2c"].to_numpy()
    state = states_from_history(out["history"].astype(str), proto, pkts_s)
    out["state"] = state
    outcome = outcomes(proto, state, out["packets_c2s"].to_numpy(), pkts_s)
    seen = np.array([seen_bits(h) for h in out["history"].astype(str)], dtype=np.int64)
    hello = out["tls_client_hello"].to_numpy(dtype=bool)
    alerts = out["tls_alert"].to_numpy(dtype=object)  # pd.NA where none: not a str
    failed = failed_handshakes(
        outcome == "established", hello, out["payload_bytes_s2c"].to_numpy(), seen, alerts
    )
    out["outcome"] = np.where(failed, "failed", outcome)
    return out.astype({"state": FLOW_DTYPES["state"], "outcome": FLOW_DTYPES["outcome"]})


def prepare_part(part: PartResult) -> PartResult:
    """``part`` with its flows restated and indexed, the merge's per-part work done up front.

    Workers call this so the parent, which merges alone, gets less to do. The ICMP-error
    column is emptied to None: merge_parts fills it again for every row, and a list per row
    only costs the parent time to unpickle.
    """
    flows = _restated(part.flows)
    flows["icmp_errors"] = None
    return replace(part, flows=flows, index=index_flows(part.flows))


def _keys(frame: pd.DataFrame) -> list[FlowKey]:
    cols = [frame[c].astype(object).tolist() for c in ("proto", "client_ip", "server_ip")]
    ports = [frame[c].astype(int).tolist() for c in ("client_port", "server_port")]
    vlans = [frame[c].fillna(-1).astype(int).tolist() for c in ("vlan", "inner_vlan")]
    return [
        _key(p, c, cp, s, sp, v0, v1)
        for p, c, s, cp, sp, v0, v1 in zip(*cols, *ports, *vlans, strict=True)
    ]


def index_flows(frame: pd.DataFrame) -> FlowIndex:
    """The per-flow facts _join looks up, so a worker can work them out instead of the parent."""
    first: dict[FlowKey, int] = {}
    last: dict[FlowKey, int] = {}
    for i, key in enumerate(_keys(frame)):
        first.setdefault(key, i)
        last[key] = i
    starts = epoch_ns(frame["start"]).tolist()
    stops = epoch_ns(frame["end"]).tolist()
    return FlowIndex(starts=starts, stops=stops, first=first, last=last)


def _join(parts: Sequence[PartResult], timeouts: Timeouts) -> pd.DataFrame:
    """All parts' flows in one frame with every boundary-crossing connection joined.

    Only a key's first flow in a file can continue a flow of an earlier file, and only the
    key's newest flow there can be continued, so just those rows leave the DataFrames.
    """
    raw: dict[tuple[int, int], dict[str, Any]] = {}
    merged: dict[tuple[int, int], dict[str, Any]] = {}  # chain root -> joined so far
    newest: dict[tuple[Any, ...], tuple[int, int]] = {}  # key -> its newest flow or chain root
    ends: dict[tuple[Any, ...], int] = {}  # key -> end (ns) of that newest flow
    tmo = {p: _timeout_ns(p, timeouts) for p in ("tcp", "udp", "icmp")}
    absorbed: list[set[int]] = []
    for k, part in enumerate(parts):
        index = part.index or index_flows(part.flows)
        first, last, starts, stops = index.first, index.last, index.starts, index.stops
        # The idle timeout rules most keys out before any row leaves its DataFrame.
        cands = [
            (key, i)
            for key, i in first.items()
            if key in ends and starts[i] - ends[key] <= tmo.get(key[0], tmo["icmp"])
        ]
        wanted: dict[int, list[int]] = {}
        for key, _ in cands:
            root = newest[key]
            if root not in merged and root not in raw:
                wanted.setdefault(root[0], []).append(root[1])
        for j, idx in wanted.items():
            raw.update(
                ((j, i), r) for i, r in zip(idx, row_dicts(parts[j].flows, idx), strict=True)
            )
        gone: set[int] = set()
        later_rows = row_dicts(part.flows, [i for _, i in cands])
        for (key, i), later in zip(cands, later_rows, strict=True):
            root = newest[key]
            earlier = merged.get(root) or raw[root]
            if continues(earlier, later, timeouts):
                # Joining is associative, so a long chain grows one piece at a time.
                merged[root] = join_rows([earlier, later])
                gone.add(i)
        absorbed.append(gone)
        for key, i in last.items():
            if i in gone:
                ends[key] = _ns(merged[newest[key]]["end"])
            else:
                newest[key], ends[key] = (k, i), stops[i]
    roots: dict[int, set[int]] = {}
    for j, i in merged:
        roots.setdefault(j, set()).add(i)
    frames = []
    for k, part in enumerate(parts):
        drop = absorbed[k] | roots.get(k, set())
        keep = np.setdiff1d(np.arange(len(part.flows)), np.fromiter(drop, dtype=np.int64))
        # prepare_part restated a worker's flows already; only hand-made parts need it here.
        flows = part.flows if part.index is not None else _restated(part.flows)
        frames.append(flows.iloc[keep].assign(_k=k, _i=keep))
    if merged:
        joined = pd.DataFrame(list(merged.values()), columns=list(FLOW_DTYPES))
        joined = _restated(joined.astype(FLOW_DTYPES)).assign(
            _k=[k for k, _ in merged], _i=[i for _, i in merged]
        )
        frames.append(joined)
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_flows()
    frame = pd.concat(frames, ignore_index=True)
    # The flow table numbers flows by first packet, then by creation: file, then row.
    frame = frame.sort_values(["start", "_k", "_i"], kind="stable").reset_index(drop=True)
    frame = frame.drop(columns=["_k", "_i"])
    frame["flow_id"] = np.arange(len(frame), dtype=np.int64)
    return frame


# ----------------------------------------------------------------------------- VLAN halves


def _side_vlans(row: dict[str, Any]) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """The VLAN ids of a flow's client-to-server and server-to-client packets (None: none)."""
    c2s = (_vlan(row["vlan"]), _vlan(row["inner_vlan"]))
    s2c = (_vlan(row["vlan_s2c"]), _vlan(row["inner_vlan_s2c"])) if row["vlan_joined"] else c2s
    return (c2s if int(row["packets_c2s"]) else None), (s2c if int(row["packets_s2c"]) else None)


def _fits(earlier: dict[str, Any], later: dict[str, Any], timeouts: Timeouts) -> bool:
    """Whether ``later`` carries the missing direction of ``earlier`` (or continues a
    direction on the same VLAN) so that together they are one connection on two VLANs."""
    if not continues(earlier, later, timeouts):
        return False
    e, lt = _side_vlans(earlier), _side_vlans(_oriented(later, earlier))
    sides = [a if a is not None else b for a, b in zip(e, lt, strict=True)]
    agree = all(a is None or b is None or a == b for a, b in zip(e, lt, strict=True))
    return agree and None not in sides and sides[0] != sides[1]


def _join_vlan_halves(frame: pd.DataFrame, timeouts: Timeouts) -> pd.DataFrame:
    """Join, across file boundaries, the pieces of connections whose two directions came on
    different VLANs (each file's flow records joined its own halves already)."""
    one_way = (frame["packets_c2s"] == 0) != (frame["packets_s2c"] == 0)
    cand = np.flatnonzero(one_way.to_numpy(dtype=bool))
    if len(cand) < 2:
        return frame
    rows = row_dicts(frame, cand.tolist())
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, row in enumerate(rows):
        key = _key(
            str(row["proto"]),
            str(row["client_ip"]),
            int(row["client_port"]),
            str(row["server_ip"]),
            int(row["server_port"]),
            0,
            0,
        )
        groups.setdefault(key, []).append(i)
    drop: list[int] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda i: _ns(rows[i]["start"]))
        cur = members[0]
        for nxt in members[1:]:
            if not _fits(rows[cur], rows[nxt], timeouts):
                cur = nxt
                continue
            a, b = rows[cur], rows[nxt]
            c2s, s2c = (_side_vlans(a), _side_vlans(_oriented(b, a)))
            up = c2s[0] if c2s[0] is not None else s2c[0]
            down = c2s[1] if c2s[1] is not None else s2c[1]
            both = join_rows([a, b])
            both["history"] = order_history(str(both["history"]))
            assert up is not None and down is not None
            both["vlan"], both["inner_vlan"] = (None if v < 0 else v for v in up)
            both["vlan_s2c"], both["inner_vlan_s2c"] = (None if v < 0 else v for v in down)
            both["vlan_joined"] = True
            rows[cur] = both
            drop.append(int(cand[nxt]))
    if not drop:
        return frame
    dropped = set(drop)
    changed = [i for i in range(len(rows)) if int(cand[i]) not in dropped]
    updated = pd.DataFrame([rows[i] for i in changed], columns=list(FLOW_DTYPES))
    updated = _restated(updated.astype(FLOW_DTYPES))
    gone = set(drop) | {int(cand[i]) for i in changed}
    rest = [i for i in range(len(frame)) if i not in gone]
    out = pd.concat(
        [frame.iloc[rest].assign(_i=rest), updated.assign(_i=cand[changed])], ignore_index=True
    )
    out = out.sort_values(["start", "_i"], kind="stable").drop(columns=["_i"])
    out = out.reset_index(drop=True)
    out["flow_id"] = np.arange(len(out), dtype=np.int64)
    return out.astype(FLOW_DTYPES)


# ----------------------------------------------------------------------------- entry point


def merge_parts(parts: Sequence[PartResult], timeouts: Timeouts | None = None) -> FlowResult:
    """The flows of ``parts``, in capture order, as if their files had been read as one.

    The caller orders the parts (dsaudit.runs.periodic sorts rotated files by first packet time).
    """
    timeouts = timeouts or Timeouts()
    ordered = list(parts)
    # Like the read itself, the merge makes many small acyclic objects: full collections
    # would walk them all for nothing.
    with no_cyclic_gc():
        frame = _join(ordered, timeouts)
        if not frame.empty:
            frame = _join_vlan_halves(frame, timeouts)
            name_by_dns(frame, (e for p in ordered for e in p.dns))
            attach_icmp(frame, [e for p in ordered for e in p.icmp_errors])
            frame = frame.astype(FLOW_DTYPES)
    captures = [c for p in ordered for c in p.captures]
    stats = merge_stats(p.stats for p in ordered)
    # A connection joined in two files is one connection.
    stats.vlan_joined_flows = int(frame["vlan_joined"].sum()) if not frame.empty else 0
    return FlowResult(flows=frame, captures=captures, stats=stats)
