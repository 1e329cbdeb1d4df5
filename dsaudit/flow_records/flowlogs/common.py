"""What every flow-log source shares: opening logs, typed flow rows, states, DNS naming."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.decode.capture_stats import CaptureStats
from dsaudit.errors import DsauditError
from dsaudit.flow_records.builder import FlowResult
from dsaudit.flow_records.frame import FLOW_DTYPES, empty_flows, payload_name, tcp_states
from dsaudit.flows.addresses import key_from_text
from dsaudit.flows.table_kernel import HISTORY_LETTERS
from dsaudit.naming.dns_map import DnsMap
from dsaudit.sources.capture_file import CaptureInfo


class FlowLogError(DsauditError):
    """A flow log that cannot be read: names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


@dataclass
class SourceResult:
    """Flows from some source plus what that source cannot see, for the report to say."""

    result: FlowResult
    kind: str
    limitations: list[str] = field(default_factory=list)


def open_text(path: str) -> io.TextIOBase:
    """A log file as text, gunzipped when it is gzip data (rotated logs usually are)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - the caller closes the wrapper
    except OSError as exc:
        raise FlowLogError(path, None, exc.strerror or str(exc)) from None
    head = raw.read(2)
    raw.seek(0)
    stream: Any = gzip.GzipFile(fileobj=raw, mode="rb") if head == b"\x1f\x8b" else raw
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=None)


def lines(path: str) -> Iterator[tuple[int, str]]:
    """Numbered lines without their line ends; a damaged gzip stream ends them with an error."""
    with open_text(path) as fh:
        try:
            for n, line in enumerate(fh, 1):
                yield n, line.rstrip("\r\n")
        except (OSError, EOFError) as exc:
            raise FlowLogError(path, None, f"compressed data is damaged ({exc})") from None


def head_text(path: str, size: int = 4096) -> str:
    """The first characters of a (possibly gzipped) file, for detection."""
    try:
        with open_text(path) as fh:
            return fh.read(size)
    except (OSError, EOFError, UnicodeError):
        return ""


def seen_bits(history: str) -> int:
    """The kernel's seen-letter bits of a history string."""
    bits = 0
    for letter in history:
        i = HISTORY_LETTERS.find(letter)
        if i > 0:
            bits |= 1 << i
    return bits


def ip_version(address: str) -> int:
    return 6 if ":" in address else 4


def outcomes(proto: np.ndarray, state: np.ndarray, pkts_c: np.ndarray, pkts_s: np.ndarray) -> Any:
    """dsaudit.flow_records.frame's outcome rules, from states that a log gives or implies."""
    tcp = proto == "tcp"
    return np.select(
        [
            tcp & (state == "REJ"),
            tcp & np.isin(state, ["S0", "RSTOS0", "SH"]),
            tcp & np.isin(state, ["S1", "SF", "S2", "S3", "RSTO", "RSTR"]),
            tcp,
            (pkts_c > 0) & (pkts_s > 0),
        ],
        ["rejected", "unanswered", "established", "partial", "established"],
        default="one-way",
    )


def states_from_history(history: Iterable[str], proto: np.ndarray, pkts_s: np.ndarray) -> Any:
    """Zeek-style states from history letters, by the flow table's rules."""
    seen = np.array([seen_bits(h) for h in history], dtype=np.int64)
    if not len(seen):
        return np.array([], dtype=object)
    return np.where(proto == "tcp", tcp_states(seen, pkts_s), np.where(pkts_s > 0, "SF", "S0"))


def base_row() -> dict[str, Any]:
    """A flow row with every optional column empty."""
    return {
        "vlan": pd.NA,
        "inner_vlan": pd.NA,
        "vlan_s2c": pd.NA,
        "inner_vlan_s2c": pd.NA,
        "vlan_joined": False,
        "payload_bytes_c2s": 0,
        "payload_bytes_s2c": 0,
        "history": "",
        "server_name": None,
        "name_source": "none",
        "sni": None,
        "http_host": None,
        "connect_target": None,
        "socks_target": None,
        "dns_queries": [],
        "dns_answers": [],
        "icmp_errors": [],
        "truncated_packets": 0,
        "tunnel": False,
        "tls_client_hello": False,
        "max_segment_c2s": 0,
        "dns_rcode": None,
        "tunnel_endpoints": None,
        "tls_alert": None,
        "tls_server_issuer": None,
    }


def name_flows(rows: list[dict[str, Any]], dns: DnsMap | None) -> None:
    """Best name per flow, in the engine's order: CONNECT, SOCKS, SNI, Host, then DNS."""
    keys: dict[str, int | None] = {}

    def key(text: str) -> int | None:
        if text not in keys:
            keys[text] = key_from_text(text)
        return keys[text]

    for row in rows:
        best = payload_name(
            row["connect_target"] or None,
            row["socks_target"] or None,
            row["sni"] or None,
            row["http_host"] or None,
        )
        if best is not None:
            row["server_name"], row["name_source"] = best
        elif dns is not None:
            c, s = key(str(row["client_ip"])), key(str(row["server_ip"]))
            ts = int(pd.Timestamp(row["start"]).value)
            name = dns.lookup(c, s, ts) if c is not None and s is not None else None
            if name is not None:
                row["server_name"], row["name_source"] = name, "dns"


def finish(rows: list[dict[str, Any]], files: list[tuple[str, str, int]]) -> FlowResult:
    """Typed flows in start order (outcomes from states unless given); a CaptureInfo per
    log file (``packets`` counts its records); stats with the time span."""
    captures = [CaptureInfo(path=p, format=fmt, packets=n) for p, fmt, n in files]
    if not rows:
        return FlowResult(flows=empty_flows(), captures=captures, stats=CaptureStats())
    frame = pd.DataFrame(rows)
    if "outcome" not in frame:
        frame["outcome"] = outcomes(
            frame["proto"].astype(str).to_numpy(),
            frame["state"].astype(str).to_numpy(),
            frame["packets_c2s"].to_numpy(),
            frame["packets_s2c"].to_numpy(),
        )
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True).dt.as_unit("ns")
    frame["duration"] = (frame["end"] - frame["start"]).dt.total_seconds()
    frame = frame.sort_values("start", kind="stable").reset_index(drop=True)
    frame["flow_id"] = np.arange(len(frame), dtype=np.int64)
    frame = frame[list(FLOW_DTYPES)].astype(FLOW_DTYPES)
    starts = pd.DatetimeIndex(frame["start"]).asi8
    ends = pd.DatetimeIndex(frame["end"]).asi8
    stats = CaptureStats(
        frames=int(frame["packets_c2s"].sum() + frame["packets_s2c"].sum()),
        first_ts_ns=int(starts.min()),
        last_ts_ns=int(ends.max()),
    )
    stats.ipv4 = int(
        frame.loc[frame["ip_version"] == 4, ["packets_c2s", "packets_s2c"]].sum().sum()
    )
    stats.ipv6 = stats.frames - stats.ipv4
    return FlowResult(flows=frame, captures=captures, stats=stats)
