"""SOCKS client-stream decoder: the destination a SOCKS4, SOCKS4a or SOCKS5 client asks for.

Hand-written because no maintained Python library parses the client side of a SOCKS
exchange from captured bytes; the format is a handful of fixed fields. Domain names
follow the shared escaping rule of :mod:`dsaudit.decode._text`.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from dsaudit.decode._text import escape_text
from dsaudit.errors import DecodeError

__all__ = ["SocksTarget", "looks_like_socks", "parse_socks_client"]

CMD_CONNECT = 1
CMD_BIND = 2
CMD_UDP_ASSOCIATE = 3
ATYP_IPV4 = 1
ATYP_DOMAIN = 3
ATYP_IPV6 = 4
METHOD_USERNAME_PASSWORD = 2
# SOCKS4 user ids and SOCKS4a host names are NUL-terminated with no declared length;
# 255 bytes bounds the search (real user ids are short, host names stop at 253).
MAX_SOCKS4_FIELD = 255

_SOCKS4_HEAD = struct.Struct(">BBH4s")
_U16 = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class SocksTarget:
    """Destination of a SOCKS request.

    ``version`` is 4 (SOCKS4 and SOCKS4a) or 5. ``host`` is a dotted IPv4, an IPv6
    text without brackets, or a domain name as sent (``is_domain`` True).
    """

    version: int
    command: int
    host: str
    port: int
    is_domain: bool


def looks_like_socks(data: bytes) -> bool:
    """Cheap check that ``data`` starts like a SOCKS4 request or a SOCKS5 greeting.

    SOCKS4 needs the 8-byte header plus one byte; SOCKS5 the whole method list.
    """
    if len(data) < 3:
        return False
    if data[0] == 4:
        return len(data) >= 9 and data[1] in (CMD_CONNECT, CMD_BIND)
    if data[0] == 5:
        count = data[1]
        return 0 < count and len(data) >= 2 + count
    return False


def parse_socks_client(stream: bytes) -> SocksTarget | None:
    """Decode the destination from a connection's client-to-server bytes.

    SOCKS5: greeting, then either the request or (when the greeting offered method 2
    and the next byte is 1) an RFC 1929 username/password exchange before it. Other
    authentication sub-negotiations (GSSAPI) are not decoded: DecodeError. Returns
    None while the bytes stop inside the exchange.
    """
    if not isinstance(stream, bytes):
        stream = bytes(stream)
    if not stream:
        return None
    version = stream[0]
    if version == 4:
        return _socks4(stream)
    if version == 5:
        return _socks5(stream)
    raise DecodeError(f"first byte {version:#04x} is not a SOCKS version")


def _socks4(s: bytes) -> SocksTarget | None:
    if len(s) >= 2 and s[1] not in (CMD_CONNECT, CMD_BIND):
        raise DecodeError(f"SOCKS4 command {s[1]} is neither CONNECT nor BIND")
    if len(s) < 8:
        return None
    _, command, port, addr = _SOCKS4_HEAD.unpack_from(s)
    user_end = _find_nul(s, 8, "user id")
    if user_end < 0:
        return None
    # SOCKS4a: 0.0.0.x with x != 0 means "the host name follows the user id".
    if addr[:3] == b"\0\0\0" and addr[3] != 0:
        host_end = _find_nul(s, user_end + 1, "host name")
        if host_end < 0:
            return None
        if host_end == user_end + 1:
            raise DecodeError("empty SOCKS4a host name")
        return SocksTarget(4, command, escape_text(s[user_end + 1 : host_end]), port, True)
    return SocksTarget(4, command, socket.inet_ntop(socket.AF_INET, addr), port, False)


def _find_nul(s: bytes, start: int, what: str) -> int:
    """Index of the NUL ending a field that starts at ``start``; -1 if not there yet."""
    end = s.find(b"\0", start, start + MAX_SOCKS4_FIELD + 1)
    if end < 0 and len(s) > start + MAX_SOCKS4_FIELD:
        raise DecodeError(f"SOCKS4 {what} longer than {MAX_SOCKS4_FIELD} bytes")
    return end


def _socks5(s: bytes) -> SocksTarget | None:
    n = len(s)
    if n < 2:
        return None
    count = s[1]
    if count == 0:
        raise DecodeError("SOCKS5 greeting offers no authentication method")
    pos = 2 + count
    if n <= pos:
        return None
    if s[pos] == 1:
        if METHOD_USERNAME_PASSWORD not in s[2 : 2 + count]:
            raise DecodeError("SOCKS5 sub-negotiation without username/password offered")
        # RFC 1929: 01 ulen user plen pass
        if n < pos + 2:
            return None
        pos += 2 + s[pos + 1]
        if n <= pos:
            return None
        pos += 1 + s[pos]
        if n <= pos:
            return None
    if s[pos] != 5:
        raise DecodeError(f"SOCKS5 request starts with {s[pos]:#04x}, not 0x05")
    if n < pos + 4:
        if n > pos + 1 and s[pos + 1] not in (CMD_CONNECT, CMD_BIND, CMD_UDP_ASSOCIATE):
            raise DecodeError(f"SOCKS5 command {s[pos + 1]} unknown")
        return None
    _, command, reserved, atyp = s[pos : pos + 4]
    if command not in (CMD_CONNECT, CMD_BIND, CMD_UDP_ASSOCIATE):
        raise DecodeError(f"SOCKS5 command {command} unknown")
    if reserved != 0:
        raise DecodeError("SOCKS5 reserved byte is not zero")
    pos += 4
    if atyp == ATYP_IPV4:
        if n < pos + 6:
            return None
        host = socket.inet_ntop(socket.AF_INET, s[pos : pos + 4])
        pos += 4
    elif atyp == ATYP_IPV6:
        if n < pos + 18:
            return None
        host = socket.inet_ntop(socket.AF_INET6, s[pos : pos + 16])
        pos += 16
    elif atyp == ATYP_DOMAIN:
        if n <= pos:
            return None
        length = s[pos]
        if length == 0:
            raise DecodeError("empty SOCKS5 domain name")
        if n < pos + 1 + length + 2:
            return None
        host = escape_text(s[pos + 1 : pos + 1 + length])
        pos += 1 + length
    else:
        raise DecodeError(f"SOCKS5 address type {atyp} unknown")
    port = _U16.unpack_from(s, pos)[0]
    return SocksTarget(5, command, host, port, atyp == ATYP_DOMAIN)
