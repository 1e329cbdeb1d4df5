"""IP addresses as one Python int (IPv4 as v4-mapped IPv6), and their text forms."""

from __future__ import annotations

import socket
from functools import lru_cache

M64 = (1 << 64) - 1
V4_MAPPED = 0xFFFF_0000_0000


def addr_key(hi: int, lo: int) -> int:
    """Combine the kernel's two signed 64-bit halves into one 128-bit key."""
    return ((hi & M64) << 64) | (lo & M64)


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets so the port stays unambiguous."""
    if ":" in host:
        try:
            socket.inet_pton(socket.AF_INET6, host)
            return f"[{host}]:{port}"
        except (OSError, ValueError):
            pass  # not an address: keep the text as it came
    return f"{host}:{port}"


def split_host_port(target: str) -> tuple[str, int | None]:
    """Host and port of ``host:port``, ``[v6]:port``, or a bare host (a Host header may omit
    the port). Text that only looks like it (one colon, no digits after it) stays whole."""
    if target.startswith("["):
        end = target.find("]")
        if end > 0:
            rest = target[end + 1 :]
            port = int(rest[1:]) if rest[:1] == ":" and rest[1:].isdigit() else None
            return target[1:end], port
        return target, None
    host, sep, port_text = target.rpartition(":")
    if sep and port_text.isdigit() and ":" not in host:
        return host, int(port_text)
    return target, None


def key_from_packed(raw: bytes) -> int | None:
    """Key of a packed 4- or 16-byte address."""
    if len(raw) == 4:
        return V4_MAPPED | int.from_bytes(raw, "big")
    if len(raw) == 16:
        return int.from_bytes(raw, "big")
    return None


def key_from_text(text: str) -> int | None:
    """Key of a textual IPv4 or IPv6 address, or None if it is not one."""
    try:
        if ":" in text:
            return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        return V4_MAPPED | int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=1 << 16)
def key_to_text(key: int) -> str:
    """Canonical text: dotted quad for IPv4, RFC 5952 for IPv6."""
    if key >> 32 == 0xFFFF:
        return socket.inet_ntop(socket.AF_INET, (key & 0xFFFFFFFF).to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, key.to_bytes(16, "big"))
