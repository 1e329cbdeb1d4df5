"""What the capture's DNS answers say: address -> name, per client and over time."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from dsaudit.decode.dns_wire import digest_wire

MAX_NAMES_PER_ADDRESS = 16


@dataclass(frozen=True, slots=True)
class DnsDigest:
    """The parts of a DNS message naming needs; ``rcode`` is -1 for a query."""

    queries: tuple[str, ...]
    rcode: int
    answers: tuple[tuple[str, int, str | None, int], ...]
    addresses: tuple[tuple[int, str], ...]  # answered address -> the name the client asked

    @classmethod
    def from_wire(cls, data: bytes) -> DnsDigest:
        """Digest one DNS message, following CNAME chains back to the asked name.

        The compiled walk does it all (:func:`dsaudit.decode.dns_wire.digest_wire`); it
        fails, with a DecodeError, exactly when :func:`dns_dec.parse_dns` would.
        """
        return digest_wire(data, cls)


class DnsMap:
    """Answered address -> name, per client and over time, following CNAME chains."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._by_client: dict[tuple[int, int], list[tuple[int, str]]] = {}
        self._by_addr: dict[int, list[tuple[int, str]]] = {}
        self.max_entries = max_entries
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._by_addr)

    def add(self, client: int, addr: int, ts: int, name: str) -> None:
        """Remember that ``client`` learnt at ``ts`` that ``name`` is at ``addr``."""
        if len(self._by_client) >= self.max_entries:
            self._shed()
        for entries in (
            self._by_client.setdefault((client, addr), []),
            self._by_addr.setdefault(addr, []),
        ):
            if entries and entries[-1][0] <= ts:
                if entries[-1][1] != name:
                    entries.append((ts, name))
            else:
                bisect.insort(entries, (ts, name))
            if len(entries) > MAX_NAMES_PER_ADDRESS:
                # An address answered with ever new names (or a crafted flood): the oldest
                # answers matter least for flows still to come.
                del entries[: len(entries) - MAX_NAMES_PER_ADDRESS]
                self.evicted += 1

    def _shed(self) -> None:
        # Dicts keep insertion order: the first half are the longest-known pairs.
        pairs = list(self._by_client)[: len(self._by_client) // 2]
        for pair in pairs:
            del self._by_client[pair]
        addrs = list(self._by_addr)[: len(self._by_addr) // 2]
        for addr in addrs:
            del self._by_addr[addr]
        self.evicted += len(pairs)

    def addresses(self) -> set[int]:
        """Every address some answer named: a flow to any other address has no DNS name."""
        return set(self._by_addr) | {addr for _, addr in self._by_client}

    @staticmethod
    def _latest(entries: list[tuple[int, str]] | None, ts: int) -> str | None:
        if not entries:
            return None
        i = bisect.bisect_right(entries, (ts, "\U0010ffff"))
        return entries[i - 1][1] if i else None

    def lookup(self, client: int, addr: int, ts: int) -> str | None:
        """The name ``client`` resolved for ``addr`` most recently before ``ts``.

        Falls back to any client's answer (a capture on a resolver or a SPAN port
        often sees the answer go to a forwarder rather than to the host itself).
        """
        name = self._latest(self._by_client.get((client, addr)), ts)
        if name is None:
            name = self._latest(self._by_addr.get(addr), ts)
        return name
