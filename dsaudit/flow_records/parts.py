"""One capture file as a PartResult, and the DNS answers and ICMP errors it carries to others."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.array_pool import ArrayPool
from dsaudit.decode.batch import decode_batch
from dsaudit.decode.capture_stats import CaptureStats
from dsaudit.errors import CaptureError
from dsaudit.flow_records.builder import FlowBuilder, FlowOptions
from dsaudit.flow_records.columns import PAYLOAD_SOURCES
from dsaudit.flow_records.reading import no_cyclic_gc
from dsaudit.flows.addresses import key_from_text, key_to_text
from dsaudit.naming.dns_map import DnsMap
from dsaudit.sources.capture_file import CaptureInfo, CaptureReader
from dsaudit.time_text import iso_ns

PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
DnsEntry = tuple[int, int, int, str]  # (client key, answered address key, ts ns, name)
# as dsaudit.naming.namer.Namer keeps them
IcmpError = tuple[int, tuple[int, ...], dict[str, object]]
FlowKey = tuple[Any, ...]


@dataclass
class FlowIndex:
    """What the merge looks up per flow of a part, worked out where the part was read.

    ``starts`` and ``stops`` are each row's first and last packet times (ns), ``first`` and
    ``last`` the first and last row of each key (dsaudit.flow_records.merge.flow_key).
    """

    starts: list[int]
    stops: list[int]
    first: dict[FlowKey, int]
    last: dict[FlowKey, int]


@dataclass
class PartResult:
    """The flows of one file plus what joining them with the neighbouring files needs.

    ``flows`` carry no ICMP errors and their DNS-derived names are provisional: both are
    decided again over all files, so a DNS answer or an ICMP error in one file reaches a flow
    in another exactly as it would in one continuous capture.
    """

    flows: pd.DataFrame
    captures: list[CaptureInfo]
    stats: CaptureStats
    dns: list[DnsEntry] = field(default_factory=list)
    icmp_errors: list[IcmpError] = field(default_factory=list)
    # Set by dsaudit.flow_records.merge.prepare_part, which restates ``flows`` too; None: the merge
    # does both itself.
    index: FlowIndex | None = None

    @property
    def first_ts(self) -> int:
        """First packet time (ns); files without packets sort last."""
        first = self.stats.first_ts_ns
        return first if first is not None else np.iinfo(np.int64).max


class RecordingDnsMap(DnsMap):
    """A DnsMap that also keeps every answer it was told, in order, for the merge."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[DnsEntry] = []

    def add(self, client: int, addr: int, ts: int, name: str) -> None:
        """Remember the answer and record it."""
        self.entries.append((client, addr, ts, name))
        super().add(client, addr, ts, name)


def read_part(path: str, options: FlowOptions | None = None) -> PartResult:
    """Flows of one capture, ready for dsaudit.flow_records.merge.merge_parts.

    Runs the same pipeline as dsaudit.flow_records.reading.read_captures, but keeps the DNS
    answers and ICMP errors back from the flow records so the merge can apply them across
    files.
    """
    builder = FlowBuilder(options)
    dns = RecordingDnsMap()
    builder.namer.dns = dns
    reader = CaptureReader(path)
    pool = ArrayPool(np.int64)
    with no_cyclic_gc():
        for batch in reader:
            builder.consume(batch, *decode_batch(batch, pool))
    errors = list(builder.namer.icmp_errors)
    builder.namer.icmp_errors = []
    result = builder.result([reader.info], join_vlans=False)
    return PartResult(
        flows=result.flows,
        captures=result.captures,
        stats=result.stats,
        dns=dns.entries,
        icmp_errors=errors,
    )


def first_packet_ns(path: str) -> int | None:
    """Time of the first packet of a capture, reading as little of it as possible."""
    reader = CaptureReader(path, buffer_bytes=1 << 16, batch_packets=1)
    try:
        for batch in reader:
            if len(batch):
                return int(np.asarray(batch.ts_ns)[0])
    except CaptureError:
        return None
    return None


def _vlan(value: Any) -> int:
    return -1 if value is pd.NA or pd.isna(value) else int(value)


def name_by_dns(frame: pd.DataFrame, entries: Iterable[DnsEntry]) -> None:
    """DNS names for every flow without a payload name, from the answers of all files."""
    dns = DnsMap()
    for entry in entries:
        dns.add(*entry)
    source = frame["name_source"].astype(str).to_numpy()
    todo = np.flatnonzero(~np.isin(source, PAYLOAD_SOURCES))
    if not len(todo):
        return
    names: list[Any] = []
    keys: dict[str, int | None] = {}

    def key(text: str) -> int | None:
        if text not in keys:
            keys[text] = key_from_text(text)
        return keys[text]

    clients = frame["client_ip"].to_numpy()[todo]
    servers = frame["server_ip"].to_numpy()[todo]
    starts = epoch_ns(frame["start"])[todo]
    for c, s, ts in zip(clients.tolist(), servers.tolist(), starts.tolist(), strict=True):
        ck, sk = key(c), key(s)
        names.append(None if ck is None or sk is None else dns.lookup(ck, sk, ts))
    col = frame["server_name"].astype(object).to_numpy().copy()
    src = source.astype(object).copy()
    col[todo] = names
    src[todo] = ["dns" if n is not None else "none" for n in names]
    frame["server_name"] = col
    frame["name_source"] = src


def epoch_ns(times: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch of a UTC datetime column."""
    return np.asarray(pd.DatetimeIndex(times).as_unit("ns").asi8, dtype=np.int64)


def attach_icmp(frame: pd.DataFrame, errors: Sequence[IcmpError]) -> None:
    """Attach each ICMP error to the flow whose packet it quotes, as the records do."""
    frame["icmp_errors"] = [[] for _ in range(len(frame))]
    if not errors or frame.empty:
        return
    wanted = {(q[0], q[1], q[2], *sorted([(q[3], q[4]), (q[5], q[6])])) for _, q, _ in errors}
    index: dict[tuple[Any, ...], list[int]] = {}
    starts = epoch_ns(frame["start"])
    cols = [
        frame[c].astype(object).tolist()
        for c in ("proto", "client_ip", "client_port", "server_ip", "server_port")
    ]
    vlans = [[_vlan(v) for v in frame[c].astype(object)] for c in ("vlan", "inner_vlan")]
    for f, (proto_name, cip, cport, sip, sport) in enumerate(zip(*cols, strict=True)):
        proto = PROTO_NUMBERS.get(str(proto_name))
        ca, sa = key_from_text(str(cip)), key_from_text(str(sip))
        if proto is None or ca is None or sa is None:
            continue
        ends = sorted([(ca, int(cport)), (sa, int(sport))])
        k = (vlans[0][f], vlans[1][f], proto, *ends)
        if k in wanted:
            index.setdefault(k, []).append(f)
    out = frame["icmp_errors"].tolist()
    rejected = np.zeros(len(frame), dtype=bool)
    for ts, quoted, info in errors:
        v0, v1, proto, src, sport, dst, dport = quoted
        cands = index.get((v0, v1, proto, *sorted([(src, sport), (dst, dport)])))
        if not cands:
            continue
        best = cands[0]
        for f in cands:
            if starts[f] <= ts:
                best = f
        entry = dict(info)
        sender = info["from"]
        entry["from"] = key_to_text(sender) if isinstance(sender, int) else sender
        stamp = info["ts"]
        entry["ts"] = iso_ns(stamp) if isinstance(stamp, int) else stamp
        out[best].append(entry)
        v4 = info["family"] == 4
        if (v4 and info["type"] == 3 and info["code"] != 4) or (not v4 and info["type"] == 1):
            rejected[best] = True
    frame["icmp_errors"] = out
    no_answer = frame["packets_s2c"].to_numpy() == 0
    outcome = frame["outcome"].astype(str).to_numpy()
    frame["outcome"] = np.where(rejected & no_answer, "rejected", outcome)
