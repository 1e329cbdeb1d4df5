"""The parts of one DNS message naming needs, as the compiled walk digests them."""

from __future__ import annotations

from dataclasses import dataclass

from dsaudit.decode.dns_wire import digest_wire


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
