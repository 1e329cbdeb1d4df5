"""DNS message decoder: questions and answer records, hardened against hostile compression.

Hand-written rather than dpkt.dns (or dnspython): dpkt takes five times as long for a
239-byte response with 12 answers (twice for a query; timeit, CPython 3.11), lets
UnicodeDecodeError escape on mutated input, and neither library returns what a
snaplen-cut message still holds. Here every failure is a DecodeError, pointer chains are
bounded, and a message cut after its questions comes back with ``partial=True``. The wire
walk is compiled (:mod:`dsaudit.decode.dns_wire` says why); this module is the API.

Name text: labels joined by ``.``; the root name is the empty string ``""``; case is
kept as sent; bytes outside 0x20-0x7E, the backslash and a ``.`` inside a label become
``\\xNN`` escapes (see :mod:`dsaudit.decode._text`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dsaudit.decode.dns_wire import (
    HEADER_LENGTH,
    MAX_NAME_OCTETS,
    MAX_POINTER_JUMPS,
    parse_wire,
)
from dsaudit.errors import DecodeError

__all__ = [
    "HEADER_LENGTH",
    "MAX_NAME_OCTETS",
    "MAX_POINTER_JUMPS",
    "DnsMessage",
    "DnsQuestion",
    "DnsRecord",
    "RTYPE_NAMES",
    "parse_dns",
    "rtype_name",
    "split_dns_tcp",
]

RTYPE_NAMES: dict[int, str] = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    17: "RP",
    18: "AFSDB",
    24: "SIG",
    25: "KEY",
    28: "AAAA",
    29: "LOC",
    33: "SRV",
    35: "NAPTR",
    36: "KX",
    37: "CERT",
    39: "DNAME",
    41: "OPT",
    42: "APL",
    43: "DS",
    44: "SSHFP",
    45: "IPSECKEY",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    49: "DHCID",
    50: "NSEC3",
    51: "NSEC3PARAM",
    52: "TLSA",
    53: "SMIMEA",
    55: "HIP",
    59: "CDS",
    60: "CDNSKEY",
    61: "OPENPGPKEY",
    62: "CSYNC",
    63: "ZONEMD",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    249: "TKEY",
    250: "TSIG",
    251: "IXFR",
    252: "AXFR",
    255: "ANY",
    256: "URI",
    257: "CAA",
}

TYPE_A = 1
TYPE_AAAA = 28

_U16 = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    """One entry of the question section."""

    name: str
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One answer record.

    ``data`` is the address text for class-IN A/AAAA, the target name for
    CNAME/PTR/NS/DNAME, and None for every other type. AAAA text is that of
    inet_ntop, as tshark prints it: RFC 5952 compression, except ``::ffff:a.b.c.d``
    (IPv4-mapped) and ``::a.b.c.d`` (IPv4-compatible) in dotted form. ``ttl`` is the unsigned value
    as sent. ``rclass`` keeps the mDNS cache-flush bit.
    """

    name: str
    rtype: int
    rclass: int
    ttl: int
    data: str | None


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """A decoded DNS message (header, questions, answers; other sections only counted).

    ``partial`` is True when the message ends inside the answer section (a capture cut
    by its snaplen): ``answers`` then holds the records that were complete. The
    authority and additional sections are not walked, so a cut there is not flagged.
    ``rcode`` is the 4-bit header value (an EDNS extended rcode is not merged in).
    """

    id: int
    is_response: bool
    opcode: int
    rcode: int
    truncated: bool
    questions: tuple[DnsQuestion, ...]
    answers: tuple[DnsRecord, ...]
    authority_count: int
    additional_count: int
    partial: bool = False


# Response codes of RFC 1035 and RFC 2136 section 2.2.
RCODE_NAMES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}


def rcode_name(rcode: int) -> str:
    """Mnemonic of a DNS response code, or ``RCODEn`` when unassigned."""
    return RCODE_NAMES.get(rcode) or f"RCODE{rcode}"


def rtype_name(rtype: int) -> str:
    """Mnemonic of a record type, or ``TYPEnnn`` (RFC 3597) when unknown."""
    return RTYPE_NAMES.get(rtype) or f"TYPE{rtype}"


def parse_dns(data: bytes) -> DnsMessage:
    """Decode one DNS message (a UDP payload or one message from :func:`split_dns_tcp`).

    Raises DecodeError when the header or question section is incomplete or anything
    is malformed; an answer section cut short yields ``partial=True`` instead.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    ident, flags, questions, answers, nscount, arcount, partial = parse_wire(data)
    return DnsMessage(
        id=ident,
        is_response=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        rcode=flags & 0xF,
        truncated=bool(flags & 0x0200),
        questions=tuple([DnsQuestion(*q) for q in questions]),
        answers=tuple([DnsRecord(*r) for r in answers]),
        authority_count=nscount,
        additional_count=arcount,
        partial=partial,
    )


def split_dns_tcp(stream: bytes) -> tuple[list[bytes], int]:
    """Split a DNS-over-TCP byte stream (RFC 1035 4.2.2) into whole messages.

    Returns the complete messages and the number of bytes they used (length prefixes
    included); an incomplete tail is left for the caller to extend. Raises DecodeError
    for a length prefix below the 12-byte DNS header, which no DNS stream carries.
    """
    if not isinstance(stream, bytes):
        stream = bytes(stream)
    n = len(stream)
    pos = 0
    messages: list[bytes] = []
    while n - pos >= 2:
        length = _U16.unpack_from(stream, pos)[0]
        if length < HEADER_LENGTH:
            raise DecodeError(f"DNS-over-TCP length prefix {length} below the header size")
        end = pos + 2 + length
        if end > n:
            break
        messages.append(stream[pos + 2 : end])
        pos = end
    return messages, pos
