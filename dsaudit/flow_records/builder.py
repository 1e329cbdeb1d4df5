"""The capture-to-flows pipeline: sources -> decode -> flow table -> naming -> flow records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dsaudit.decode.batch import decode_batch
from dsaudit.decode.capture_stats import CaptureStats
from dsaudit.decode.ip_fragments import FragmentReassembler, Reassembled
from dsaudit.decode.packet_kernel import (
    C_ERR,
    C_FRAG,
    C_L3_OFF,
    C_PAY_OFF,
    C_TS,
    C_VLAN0,
    C_VLAN1,
    C_WIRE,
    ERR_NAMES,
    N_TALLY,
    T_ARP,
    T_ERRORS,
    T_IPV4,
    T_IPV6,
    T_OTHER_L2,
    T_STOPPED,
    T_TRUNCATED,
    T_TS_MAX,
    T_TS_MIN,
    T_TUNNELLED,
    tally_records,
)
from dsaudit.decode.undecoded import count_reasons
from dsaudit.flow_records.columns import PROTO_NAMES, FlowColumns, flow_columns
from dsaudit.flow_records.vlan_join import join_vlan_halves
from dsaudit.flows.addresses import addr_key, key_to_text
from dsaudit.flows.table import FlowTable, Timeouts
from dsaudit.flows.table_kernel import (
    F_A_HI,
    F_A_LO,
    F_A_PORT,
    F_B_HI,
    F_B_LO,
    F_B_PORT,
    F_BYTES_C,
    F_BYTES_S,
    F_FIRST_TS,
    F_ORIG_IS_A,
    F_PKTS_C,
    F_PKTS_S,
    F_PROTO,
)
from dsaudit.naming.namer import Namer
from dsaudit.sources.batch import LINKTYPE_RAW, PacketBatch
from dsaudit.sources.capture_file import CaptureInfo

if TYPE_CHECKING:
    import pandas as pd


class EvictionSummary:
    """What the flows evicted to bound memory were: flows, packets and bytes per destination."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.groups: dict[tuple[int, int, int, int], list[int]] = {}
        self.other = [0, 0, 0]

    def add(self, rows: np.ndarray) -> None:
        """Count evicted flow-store rows by protocol, server address and server port."""
        if not len(rows):
            return
        orig_a = rows[:, F_ORIG_IS_A] == 1
        keys = np.stack(
            [
                rows[:, F_PROTO],
                np.where(orig_a, rows[:, F_B_HI], rows[:, F_A_HI]),
                np.where(orig_a, rows[:, F_B_LO], rows[:, F_A_LO]),
                np.where(orig_a, rows[:, F_B_PORT], rows[:, F_A_PORT]),
            ],
            axis=1,
        )
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        flows = np.bincount(inverse)
        packets = np.bincount(inverse, weights=rows[:, F_PKTS_C] + rows[:, F_PKTS_S])
        nbytes = np.bincount(inverse, weights=rows[:, F_BYTES_C] + rows[:, F_BYTES_S])
        for i, key in enumerate(map(tuple, uniq.tolist())):
            slot = self.groups.get(key)
            if slot is None and len(self.groups) >= self.limit:
                self.other[0] += int(flows[i])
                self.other[1] += int(packets[i])
                self.other[2] += int(nbytes[i])
                continue
            if slot is None:
                slot = self.groups[key] = [0, 0, 0]
            slot[0] += int(flows[i])
            slot[1] += int(packets[i])
            slot[2] += int(nbytes[i])

    def top(self, n: int = 10) -> list[dict[str, object]]:
        """The destinations that lost the most flows."""
        ranked = sorted(self.groups.items(), key=lambda kv: -kv[1][0])[:n]
        return [
            {
                "proto": PROTO_NAMES.get(k[0], str(k[0])),
                "server": key_to_text(addr_key(k[1], k[2])),
                "port": k[3],
                "flows": v[0],
                "packets": v[1],
                "bytes": v[2],
            }
            for k, v in ranked
        ]


class FlowResult:
    """Flows of one analysis plus what was learnt about the captures.

    The flows exist as plain columns (``table``, what ``dsaudit flows`` writes) and as the
    library's typed DataFrame (``flows``); either is made from the other on first use, so
    a run that only writes flows never imports pandas.
    """

    def __init__(
        self,
        flows: pd.DataFrame | None = None,
        captures: list[CaptureInfo] | None = None,
        stats: CaptureStats | None = None,
        table: FlowColumns | None = None,
    ) -> None:
        if flows is None and table is None:
            raise ValueError("FlowResult needs flows or a table")
        self._flows = flows
        self._table = table
        self.captures: list[CaptureInfo] = captures if captures is not None else []
        self.stats = stats if stats is not None else CaptureStats()

    @property
    def flows(self) -> pd.DataFrame:
        """The flows DataFrame (columns and dtypes of FLOW_DTYPES)."""
        if self._flows is None:
            assert self._table is not None
            self._flows = self._table.to_frame()
        return self._flows

    @flows.setter
    def flows(self, frame: pd.DataFrame) -> None:
        self._flows = frame
        self._table = None

    @property
    def table(self) -> FlowColumns:
        """The flows as plain columns, for the writers."""
        if self._table is None:
            from dsaudit.flow_records.frame import columns_of_frame

            self._table = columns_of_frame(self.flows)
        return self._table

    @property
    def warnings(self) -> list[str]:
        """Every capture's damage, in order, then what the memory limits dropped."""
        return [w for c in self.captures for w in c.warnings] + self._limit_warnings()

    @property
    def notes(self) -> list[str]:
        """Every capture's timing notes, in order: times the reader gave packets."""
        return [n for c in self.captures for n in c.notes]

    @property
    def warnings_and_notes(self) -> list[str]:
        """Both, in the order the commands say them: each capture's, then the memory limits'."""
        return [w for c in self.captures for w in c.warnings_and_notes] + self._limit_warnings()

    def _limit_warnings(self) -> list[str]:
        out: list[str] = []
        s = self.stats
        if s.flows_evicted:
            top = s.evicted_top[0] if s.evicted_top else None
            where = f" (most to {top['proto']} {top['server']}:{top['port']})" if top else ""
            out.append(
                f"{s.flows_evicted} flows were evicted to stay within --max-flows{where}: "
                "they are not in the output"
            )
        if s.dns_entries_evicted:
            out.append(f"{s.dns_entries_evicted} DNS answers were dropped at the DNS map's limit")
        if s.reassembly_buffers_dropped:
            out.append(
                f"{s.reassembly_buffers_dropped} flows lost their reassembly buffers at the "
                "memory limit: their names may be missing"
            )
        return out


@dataclass(frozen=True)
class FlowOptions:
    """How packets become flows."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    # Key flows by VLAN ids (as Zeek does). One-way halves of a connection whose two
    # directions came on different VLANs are joined in result() either way (vlan_join).
    vlan_key: bool = True
    server_ports: tuple[int, ...] | None = None
    # Memory bounds: flows kept (older ones are evicted and summarised), DNS answers kept.
    max_flows: int = 2_000_000
    max_dns_entries: int = 1_000_000
    max_reassembly_bytes: int = 64 << 20


class FlowBuilder:
    """Feeds batches through decode, the flow table and naming; builds the flow records."""

    def __init__(self, options: FlowOptions | None = None) -> None:
        self.options = options or FlowOptions()
        ports = self.options.server_ports
        self.table = FlowTable(
            timeouts=self.options.timeouts, server_ports=list(ports) if ports else None
        )
        self.namer = Namer()
        self.fragments = FragmentReassembler()
        self.stats = CaptureStats()
        self.evictions = EvictionSummary()
        # Called with the index map whenever max_flows makes the builder evict flows.
        self.on_evict: list[Callable[[np.ndarray], None]] = []
        self.namer.dns.max_entries = self.options.max_dns_entries
        self.namer.max_buffered = self.options.max_reassembly_bytes

    def add_batch(self, batch: PacketBatch) -> None:
        """Decode and account one batch of frames."""
        self.consume(batch, *decode_batch(batch))

    def consume(self, batch: PacketBatch, rec: np.ndarray, k: int) -> None:
        """Account a batch already decoded by :func:`decode_batch` (any thread may decode)."""
        if len(batch) == 0:
            return
        self._account(batch, rec[:k])
        self._feed(rec, k, batch.buf)

    def feed_records(self, rec: np.ndarray, k: int, buf: np.ndarray) -> None:
        """Feed ``rec[:k]``, records decoded by another engine, to the flow table and naming.

        The caller accounts its frames in :attr:`stats` itself; ``buf`` holds the payload
        bytes the rows point into.
        """
        self._feed(rec, k, buf)

    def _feed(self, rec: np.ndarray, k: int, buf: np.ndarray) -> None:
        if not self.options.vlan_key:
            rec[:k, C_VLAN0] = -1
            rec[:k, C_VLAN1] = -1
        if k and rec[:k, C_FRAG].any():
            rec, k, buf = self._with_reassembled(rec, k, buf)
        events = self.table.feed(
            rec, k, buf, max_flows=self.options.max_flows, on_limit=self._evict
        )
        events = events[events[:, 0] >= 0]
        self.namer.handle(events, rec, buf, self.table.fs)
        if k:
            now = int(rec[k - 1, C_TS])
            self.namer.release_idle(self.table.fs, now - self.table.tcp_timeout_ns)

    def _evict(self, now: int) -> np.ndarray:
        """Keep the flow table within max_flows: summarise and drop the least recent flows."""
        mapping, evicted = self.table.evict_oldest(self.options.max_flows * 3 // 4)
        self.namer.remap(mapping)
        self.evictions.add(evicted)
        self.stats.flows_evicted = self.table.evicted
        for follow in self.on_evict:
            follow(mapping)
        return mapping

    def keep_flows(self, rows: np.ndarray) -> np.ndarray:
        """Keep only flows ``rows`` (a live session expiring idle flows); return the index map.

        Naming state follows the flows; ICMP errors older than every kept flow are dropped,
        since they can only belong to flows that left.
        """
        mapping = self.table.keep(rows)
        self.namer.remap(mapping)
        fs = self.table.flows
        oldest = int(fs[:, F_FIRST_TS].min()) if len(fs) else None
        self.namer.icmp_errors = [
            e for e in self.namer.icmp_errors if oldest is not None and e[0] >= oldest
        ]
        return mapping

    def _with_reassembled(
        self, rec: np.ndarray, k: int, buf: np.ndarray
    ) -> tuple[np.ndarray, int, np.ndarray]:
        """Reassemble fragments and put each whole datagram right after its last fragment.

        The datagram then meets the flow table in capture order, so a fragmented first
        packet still decides who the client is. Its bytes are appended to the buffer.
        """
        rows = np.flatnonzero(rec[:k, C_FRAG]).tolist()
        self.stats.fragments += len(rows)
        whole: list[tuple[int, Reassembled]] = []
        for r in rows:
            done = self.fragments.add(rec, r, buf)
            if done is not None:
                whole.append((r, done))
        self.stats.reassembled = self.fragments.reassembled
        self.stats.fragments_dropped = self.fragments.dropped
        if not whole:
            return rec, k, buf
        extra = PacketBatch.from_frames([(d.ts_ns, d.packet) for _, d in whole], LINKTYPE_RAW)
        rec2, k2 = decode_batch(extra)
        rec2 = rec2[:k2].copy()
        # The rebuilt packets are raw IP: restore what the fragments' link layer said, and
        # point their payload into the combined buffer.
        frame = rec2[:, 0]
        rec2[:, C_VLAN0] = np.array([d.vlan0 for _, d in whole], dtype=np.int64)[frame]
        rec2[:, C_VLAN1] = np.array([d.vlan1 for _, d in whole], dtype=np.int64)[frame]
        rec2[:, C_WIRE] = np.array([d.wire for _, d in whole], dtype=np.int64)[frame]
        for col in (C_PAY_OFF, C_L3_OFF):
            rec2[:, col] += len(buf)
        if not self.options.vlan_key:
            rec2[:, C_VLAN0] = -1
            rec2[:, C_VLAN1] = -1
        after = np.array([r for r, _ in whole], dtype=np.int64)[frame]
        merged = np.insert(rec[:k], after + 1, rec2, axis=0)
        return merged, len(merged), np.concatenate([buf, extra.buf])

    def _account(self, batch: PacketBatch, rec: np.ndarray) -> None:
        s = self.stats
        s.frames += len(batch)
        t = np.zeros(N_TALLY, dtype=np.int64)
        tally_records(rec, len(rec), t)
        s.ipv4 += int(t[T_IPV4])
        s.ipv6 += int(t[T_IPV6])
        s.arp += int(t[T_ARP])
        s.other_l2 += int(t[T_OTHER_L2])
        s.tunnelled += int(t[T_TUNNELLED])
        s.ip_truncated += int(t[T_TRUNCATED])
        s.snaplen_cut_frames += int(np.count_nonzero(batch.caplen < batch.wirelen))
        if t[T_ERRORS]:
            err = rec[:, C_ERR]
            codes, counts = np.unique(err[err != 0], return_counts=True)
            for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
                name = ERR_NAMES.get(code, f"error {code}")
                s.undecodable[name] = s.undecodable.get(name, 0) + count
        if t[T_STOPPED]:
            count_reasons(rec, s.not_decoded)
        if len(rec):
            lo, hi = int(t[T_TS_MIN]), int(t[T_TS_MAX])
            s.first_ts_ns = lo if s.first_ts_ns is None else min(s.first_ts_ns, lo)
            s.last_ts_ns = hi if s.last_ts_ns is None else max(s.last_ts_ns, hi)

    def result(self, captures: list[CaptureInfo], join_vlans: bool = True) -> FlowResult:
        """The finished flow records (``join_vlans=False``: VLAN halves left apart, for a
        part of a capture read in several files; dsaudit.flow_records.merge joins them)."""
        self.stats.payload_decode_failures = self.namer.decode_failures
        self.stats.dns_entries_evicted = self.namer.dns.evicted
        self.stats.reassembly_buffers_dropped = self.namer.buffers_dropped
        frags = self.fragments
        if frags.reassembled or frags.dropped or frags.pending():
            # Datagrams still waiting for fragments when the capture ends never completed.
            self.stats.fragments_dropped = frags.dropped + frags.pending()
        self.stats.evicted_top = self.evictions.top()
        tmo = self.table.timeouts.as_array() if join_vlans else np.full(3, -(1 << 62))
        j = join_vlan_halves(self.table.flows, self.namer, tmo)
        self.stats.vlan_joined_flows = j.count
        table = flow_columns(j.fs, j.namer, j.s2c_vlans, j.joined)
        return FlowResult(table=table, captures=captures, stats=self.stats)


ProgressHook = Callable[[int], None]
