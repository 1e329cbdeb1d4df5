"""Python side of the flow table: owns the arrays, grows them, and feeds the kernel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dsaudit.decode.packet_kernel import C_TS
from dsaudit.flows.table_kernel import (
    F_LAST_TS,
    FLOWS_FULL,
    FLOWS_LIMIT,
    HASH_FULL,
    N_FCOLS,
    process_records,
    rehash,
)
from dsaudit.time_text import NS

# Ports whose owner is the server when no SYN says otherwise: IANA well-known services
# plus every port the Deep Security matrix documents (the catalog adds its own at run time).
DEFAULT_SERVER_PORTS = (
    list(range(1, 1024))
    + [1080, 1433, 1521, 1723, 2049, 3128, 3268, 3269, 3306, 3389, 4118, 4119, 4120, 4122]
    + [4123, 4789, 5060, 5061, 5274, 5353, 5355, 5432, 5985, 5986, 6514, 8000, 8008, 8080]
    + [8081, 8443, 8888, 9000, 9090, 9200, 9443, 11211, 27017]
    + list(range(11000, 12000))
    + list(range(14000, 15000))
)


def _pow2(n: int, floor: int) -> int:
    """The smallest power of two at least ``n`` and ``floor``."""
    size = floor
    while size < n:
        size *= 2
    return size


@dataclass(frozen=True)
class Timeouts:
    """Idle timeouts in seconds after which a flow ends (Zeek's defaults)."""

    tcp: float = 300.0
    udp: float = 60.0
    other: float = 60.0

    def as_array(self) -> np.ndarray:
        """Nanoseconds, in the order the kernel expects."""
        cap = float(np.iinfo(np.int64).max // 2)  # "never": half of int64 leaves room to add
        return np.array(
            [min(t * NS, cap) for t in (self.tcp, self.udp, self.other)], dtype=np.int64
        )


class FlowTable:
    """All flows of one analysis; flows are appended, the hash finds the live ones."""

    def __init__(
        self,
        timeouts: Timeouts | None = None,
        server_ports: list[int] | None = None,
        capacity: int = 1 << 14,
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        self._tmo = self.timeouts.as_array()
        self.server_ports = np.zeros(65536 + 1, dtype=np.uint8)
        for p in server_ports if server_ports is not None else DEFAULT_SERVER_PORTS:
            if 0 <= p <= 65535:
                self.server_ports[p] = 1
        self.fs = np.zeros((capacity, N_FCOLS), dtype=np.int64)
        self.nflows = 0
        self.htab = np.zeros(1 << 15, dtype=np.int64)
        self.nused = 0
        self.rehashes = 0
        self.evicted = 0

    @property
    def tcp_timeout_ns(self) -> int:
        """The TCP idle timeout in nanoseconds (capped, so "never" stays finite)."""
        return int(self._tmo[0])

    @property
    def flows(self) -> np.ndarray:
        """The flow store rows filled so far (a view)."""
        return self.fs[: self.nflows]

    def feed(
        self,
        rec: np.ndarray,
        nrec: int,
        buf: np.ndarray,
        max_flows: int = 1 << 62,
        on_limit: Callable[[int], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Account records ``rec[:nrec]``; return the naming events they raised.

        When ``max_flows`` flows exist, ``on_limit(now)`` must make room (through
        :meth:`evict_oldest`) and return its index map; events already raised are moved
        along with their flows (those of evicted flows get flow -1).
        """
        ev = np.empty((max(nrec, 1), 4), dtype=np.int64)
        nev = 0
        start = 0
        while True:
            start, self.nflows, self.nused, nev, status = process_records(
                rec,
                start,
                nrec,
                buf,
                self.fs,
                self.nflows,
                self.htab,
                self.nused,
                self.server_ports,
                self._tmo,
                ev,
                nev,
                max_flows if on_limit is not None else 1 << 62,
            )
            if status == FLOWS_LIMIT and on_limit is not None:
                mapping = on_limit(int(rec[start, C_TS]))
                flows = ev[:nev, 0]
                ev[:nev, 0] = np.where(flows >= 0, mapping[np.maximum(flows, 0)], -1)
                if self.nflows >= max_flows:
                    raise RuntimeError("on_limit made no room in the flow table")
            elif status == FLOWS_FULL:
                grown = np.zeros((2 * self.fs.shape[0], N_FCOLS), dtype=np.int64)
                grown[: self.nflows] = self.fs[: self.nflows]
                self.fs = grown
            elif status == HASH_FULL:
                self._make_room(int(rec[start, C_TS]))
            else:
                return ev[:nev]

    def keep(self, rows: np.ndarray) -> np.ndarray:
        """Keep only the flows ``rows`` (ascending indices), renumbered from 0.

        The store shrinks to fit and the hash is rebuilt over the kept flows. Returns the
        old-to-new index map (-1 for a flow that left) for per-flow state kept elsewhere.
        """
        n, m = self.nflows, int(len(rows))
        mapping = np.full(n, -1, dtype=np.int64)
        mapping[rows] = np.arange(m, dtype=np.int64)
        fs = np.zeros((_pow2(2 * m, 1 << 14), N_FCOLS), dtype=np.int64)
        fs[:m] = self.fs[rows]
        htab = np.zeros(_pow2(4 * (m + 1), 1 << 15), dtype=np.int64)
        self.nused = int(rehash(fs, m, htab, np.iinfo(np.int64).min))
        self.fs, self.nflows, self.htab = fs, m, htab
        return mapping

    def evict_oldest(self, keep: int) -> tuple[np.ndarray, np.ndarray]:
        """Drop all but the ``keep`` most recently active flows (to bound memory).

        Returns the old-to-new index map (-1 for an evicted flow) and the evicted rows, so
        the caller can move per-flow state and summarise what was dropped.
        """
        n = self.nflows
        if n <= keep:
            return np.arange(n, dtype=np.int64), self.fs[:0].copy()
        order = np.argsort(self.fs[:n, F_LAST_TS], kind="stable")
        dropped = np.sort(order[: n - keep])
        kept = np.sort(order[n - keep :])
        evicted = self.fs[dropped].copy()
        self.evicted += len(dropped)
        return self.keep(kept), evicted

    def _make_room(self, now: int) -> None:
        # Flows idle past every timeout can never match again: drop them from the hash
        # first, and grow only if the live ones still fill it.
        live_after = now - int(self._tmo.max())
        self.nused = rehash(self.fs, self.nflows, self.htab, live_after)
        self.rehashes += 1
        if 4 * self.nused > self.htab.shape[0]:
            self.htab = np.zeros(2 * self.htab.shape[0], dtype=np.int64)
            self.nused = rehash(self.fs, self.nflows, self.htab, live_after)
