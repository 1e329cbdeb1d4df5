"""Tests of the SOCKS4/4a/5 client-stream decoder."""

from __future__ import annotations

import pytest

from dsaudit.decode.socks import SocksTarget, looks_like_socks, parse_socks_client
from dsaudit.errors import DecodeError
from tests.factories import socks4_request, socks4a_request, socks5_request


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (socks4_request("192.0.2.1", 80), SocksTarget(4, 1, "192.0.2.1", 80, False)),
        (
            socks4_request("10.0.0.1", 21, userid=b"alice", command=2),
            SocksTarget(4, 2, "10.0.0.1", 21, False),
        ),
        (
            socks4a_request("www.Example.com", 443, userid=b"bob"),
            SocksTarget(4, 1, "www.Example.com", 443, True),
        ),
        (
            socks4a_request("x.example", 8080, marker=255),
            SocksTarget(4, 1, "x.example", 8080, True),
        ),
        (socks5_request("example.com", 443), SocksTarget(5, 1, "example.com", 443, True)),
        (socks5_request("198.51.100.7", 22), SocksTarget(5, 1, "198.51.100.7", 22, False)),
        (socks5_request("2001:db8::5", 993), SocksTarget(5, 1, "2001:db8::5", 993, False)),
        (socks5_request("0.0.0.0", 0, command=3), SocksTarget(5, 3, "0.0.0.0", 0, False)),
        (
            socks5_request("auth.example", 80, auth=(b"user", b"secret"), methods=(0, 2)),
            SocksTarget(5, 1, "auth.example", 80, True),
        ),
        (
            socks5_request("empty.example", 80, auth=(b"", b"")),
            SocksTarget(5, 1, "empty.example", 80, True),
        ),
        # Method 2 offered but the server picked "no auth": the request follows directly.
        (
            socks5_request("noauth.example", 80, methods=(0, 2)),
            SocksTarget(5, 1, "noauth.example", 80, True),
        ),
    ],
)
def test_targets(data: bytes, expected: SocksTarget) -> None:
    assert parse_socks_client(data) == expected
    assert parse_socks_client(data + b"GET / HTTP/1.1\r\n") == expected
    assert looks_like_socks(data)


@pytest.mark.parametrize(
    "data",
    [
        socks4_request("192.0.2.1", 80, userid=b"someone"),
        socks4a_request("prefix.example", 443, userid=b"u"),
        socks5_request("prefix.example", 443, auth=(b"user", b"pw")),
        socks5_request("2001:db8::1", 443),
        socks5_request("192.0.2.9", 443),
    ],
)
def test_every_prefix_needs_more(data: bytes) -> None:
    for cut in range(len(data)):
        assert parse_socks_client(data[:cut]) is None, cut
    assert parse_socks_client(data) is not None


def test_domain_escaping() -> None:
    target = parse_socks_client(socks5_request(b"bad\x00\\host\xff", 80))
    assert target is not None and target.host == "bad\\x00\\x5chost\\xff"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x06\x01\x00", "not a SOCKS version"),
        (b"GET / HTTP/1.1", "not a SOCKS version"),
        (b"\x04\x03\x00\x50", "neither CONNECT nor BIND"),
        (b"\x05\x00", "no authentication method"),
        (b"\x05\x01\x00\x04\x01\x00\x01", "not 0x05"),
        (b"\x05\x01\x00\x05\x09", "command 9"),
        (b"\x05\x01\x00\x05\x01\x01\x01", "reserved byte"),
        (b"\x05\x01\x00\x05\x01\x00\x02", "address type 2"),
        (b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50", "empty SOCKS5 domain"),
        (b"\x05\x01\x00\x01\x04user", "sub-negotiation"),  # method 2 never offered
        (b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00", "empty SOCKS4a host"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_socks_client(data)


def test_nul_terminated_fields_are_capped() -> None:
    long_user = b"\x04\x01\x00\x50\xc0\x00\x02\x01" + b"u" * 300
    with pytest.raises(DecodeError, match="user id longer"):
        parse_socks_client(long_user)
    assert parse_socks_client(long_user[:200]) is None
    long_host = b"\x04\x01\x00\x50\x00\x00\x00\x01\x00" + b"h" * 300
    with pytest.raises(DecodeError, match="host name longer"):
        parse_socks_client(long_host)


def test_looks_like_socks() -> None:
    assert looks_like_socks(b"\x05\x01\x00")
    assert looks_like_socks(b"\x05\x02\x00\x02")
    assert not looks_like_socks(b"\x05\x02\x00")  # method list still incomplete
    assert not looks_like_socks(b"\x05\x00\x00")
    assert not looks_like_socks(b"\x04\x01\x00\x50\xc0\x00\x02")
    assert not looks_like_socks(b"\x04\x05\x00\x50\xc0\x00\x02\x01\x00")
    assert not looks_like_socks(b"\x16\x03\x01")
    assert not looks_like_socks(b"")
