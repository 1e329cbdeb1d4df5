"""IPv4 and IPv6 fragment reassembly, bounded: enough to learn ports and read DNS in fragments."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from dsaudit.decode.packet_kernel import (
    C_DST_HI,
    C_DST_LO,
    C_FRAG_OFF,
    C_IPID,
    C_L3,
    C_L3_OFF,
    C_MF,
    C_PAY_LEN,
    C_PAY_OFF,
    C_PROTO,
    C_SRC_HI,
    C_SRC_LO,
    C_TS,
    C_VLAN0,
    C_VLAN1,
    C_WIRE,
    L3_IPV4,
)

MAX_DATAGRAM = 65535
MAX_PIECES = 1024  # a datagram in more pieces than this is an attack, not a network


@dataclass(slots=True)
class _Pending:
    first_ts: int
    header: bytes = b""
    pieces: dict[int, bytes] = field(default_factory=dict)
    total: int = -1
    wire: int = 0
    size: int = 0


@dataclass(slots=True)
class Reassembled:
    """A whole datagram rebuilt as a raw IP packet."""

    ts_ns: int
    packet: bytes
    vlan0: int
    vlan1: int
    wire: int


class FragmentReassembler:
    """Collects fragments by (addresses, protocol, id, VLAN) until a datagram is whole."""

    def __init__(self, max_pending: int = 4096, timeout_s: float = 30.0) -> None:
        self.max_pending = max_pending
        self.timeout_ns = int(timeout_s * 1e9)
        self._pending: dict[tuple[int, ...], _Pending] = {}
        self.reassembled = 0
        self.dropped = 0

    def add(self, rec: np.ndarray, r: int, buf: np.ndarray) -> Reassembled | None:
        """Add fragment row ``r``; return the datagram when this fragment completes it."""
        row = rec[r]
        key = (
            int(row[C_L3]),
            int(row[C_SRC_HI]),
            int(row[C_SRC_LO]),
            int(row[C_DST_HI]),
            int(row[C_DST_LO]),
            int(row[C_PROTO]),
            int(row[C_IPID]),
            int(row[C_VLAN0]),
            int(row[C_VLAN1]),
        )
        ts = int(row[C_TS])
        entry = self._pending.get(key)
        if entry is not None and ts - entry.first_ts > self.timeout_ns:
            # Too old to belong with this fragment: the id has been reused since.
            del self._pending[key]
            self.dropped += 1
            entry = None
        if entry is None:
            if len(self._pending) >= self.max_pending:
                self._expire(ts, force=True)
            entry = self._pending[key] = _Pending(first_ts=ts)
        off = int(row[C_FRAG_OFF])
        pay = int(row[C_PAY_OFF])
        data = buf[pay : pay + int(row[C_PAY_LEN])].tobytes()
        if (
            off + len(data) > MAX_DATAGRAM
            or entry.size > 4 * MAX_DATAGRAM
            or len(entry.pieces) >= MAX_PIECES
        ):
            self.dropped += 1
            del self._pending[key]
            return None
        # Overlapping fragments happen (retransmission, evasion): keep the longest per offset.
        if len(data) > len(entry.pieces.get(off, b"")):
            entry.pieces[off] = data
        entry.size += len(data)
        entry.wire += int(row[C_WIRE])
        if off == 0:
            l3 = int(row[C_L3_OFF])
            entry.header = buf[l3 : l3 + (pay - l3 if key[0] == L3_IPV4 else 40)].tobytes()
        if not int(row[C_MF]):
            entry.total = off + len(data)
        # Only try to assemble when the pieces could cover the datagram: otherwise every
        # new fragment would re-sort all the others (quadratic on crafted input).
        if entry.total < 0 or not entry.header or entry.size < entry.total:
            return None
        body = bytearray()
        for o in sorted(entry.pieces):
            if o > len(body):
                return None  # a hole: wait for more
            body += entry.pieces[o][len(body) - o :]
        if len(body) < entry.total:
            return None
        del self._pending[key]
        self.reassembled += 1
        payload = bytes(body[: entry.total])
        hdr = bytearray(entry.header)
        if key[0] == L3_IPV4:
            struct.pack_into("!H", hdr, 2, len(hdr) + len(payload))
            struct.pack_into("!H", hdr, 6, 0)
        else:
            struct.pack_into("!H", hdr, 4, len(payload))
            hdr[6] = key[5]
        return Reassembled(ts, bytes(hdr) + payload, key[7], key[8], entry.wire)

    def _expire(self, now: int, force: bool = False) -> None:
        stale = [k for k, e in self._pending.items() if now - e.first_ts > self.timeout_ns]
        if force and not stale:
            stale = [next(iter(self._pending))]
        for k in stale:
            del self._pending[k]
            self.dropped += 1

    def pending(self) -> int:
        """Datagrams still incomplete."""
        return len(self._pending)
