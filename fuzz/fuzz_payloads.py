#!/usr/bin/env python3
"""Atheris harness: any bytes through the payload parsers (TLS, DNS, HTTP, SOCKS, QUIC)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_api: SimpleNamespace | None = None


def load() -> SimpleNamespace:
    """Import the parsers (once); under atheris this runs inside instrument_imports()."""
    global _api
    if _api is None:
        if _ROOT not in sys.path:
            sys.path.insert(0, _ROOT)
        from dsaudit.decode import dns, http, quic, socks, tls
        from dsaudit.errors import DecodeError
        from dsaudit.naming.dns_map import DnsDigest
        from tests.factories import quic_client_initial

        _api = SimpleNamespace(
            dns=dns,
            DnsDigest=DnsDigest,
            http=http,
            quic=quic,
            socks=socks,
            tls=tls,
            DecodeError=DecodeError,
            seal=quic_client_initial,
        )
    return _api


def _printable(texts: Iterable[str | None]) -> None:
    """Every name a parser returns is escaped: printable ASCII, nothing a terminal obeys."""
    for text in texts:
        if text is not None:
            assert text.isascii() and text.isprintable(), repr(text)


def _hello(hello: Any) -> None:
    if hello is not None:
        _printable([hello.sni, *hello.alpn])


def _attempt(api: SimpleNamespace, parse: Any, *args: Any) -> Any:
    """Call a parser: its result, or None when it raised the project's DecodeError."""
    try:
        return parse(*args)
    except api.DecodeError:
        return None


def check_payload(data: bytes) -> None:
    """Run ``data`` through every parser; only DecodeError may escape them (and is caught)."""
    api = load()
    tls, dns, http, socks, quic = api.tls, api.dns, api.http, api.socks, api.quic
    for predicate in (tls.looks_like_client_hello, http.looks_like_http_request):
        assert isinstance(predicate(data), bool)
    assert isinstance(socks.looks_like_socks(data), bool)

    _hello(_attempt(api, tls.parse_client_hello, data))
    _hello(_attempt(api, tls.parse_client_hello_handshake, data))
    flight = tls.parse_server_flight(data)  # documented never to raise
    _printable([flight.alert, flight.issuer])

    msg = _attempt(api, dns.parse_dns, data)
    if msg is not None:
        _printable(q.name for q in msg.questions)
        _printable(r.name for r in msg.answers)
        _printable(r.data for r in msg.answers)
    # Naming's compiled digest fails exactly when the parser does.
    digest = _attempt(api, api.DnsDigest.from_wire, data)
    assert (digest is None) == (msg is None)
    if digest is not None:
        _printable(digest.queries)
        _printable(text for answer in digest.answers for text in (answer[0], answer[2]))
        _printable(name for _, name in digest.addresses)
    split = _attempt(api, dns.split_dns_tcp, data)
    if split is not None:
        messages, used = split
        assert 0 <= used <= len(data)
        for one in messages[:8]:
            _attempt(api, dns.parse_dns, one)

    req = _attempt(api, http.parse_http_request, data)
    if req is not None:
        _printable([req.method, req.target, req.version, req.host])
        assert 0 < req.header_bytes <= len(data)
        target = _attempt(api, http.connect_target, req)
        if target is not None:
            _printable([target[0]])
            assert 0 < target[1] <= 0xFFFF
    status = _attempt(api, http.parse_http_response_status, data)
    assert status is None or 100 <= status <= 599

    dest = _attempt(api, socks.parse_socks_client, data)
    if dest is not None:
        _printable([dest.host])
        assert 0 <= dest.port <= 0xFFFF

    pieces = _attempt(api, quic.quic_initial_crypto, data)
    if pieces:
        _hello(_attempt(api, quic.client_hello_from_crypto, pieces))
    # The same bytes as the decrypted frames of a genuine client Initial, so that the frame
    # walker and the CRYPTO reassembly see fuzzed input beyond the AEAD check.
    sealed = api.seal([], frames_before=data[:1100], pad_to=0)
    pieces = _attempt(api, quic.quic_initial_crypto, sealed)
    if pieces:
        _hello(_attempt(api, quic.client_hello_from_crypto, pieces))
        _hello(_attempt(api, quic.client_hello_from_crypto, list(reversed(pieces))))


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris calls
    """One fuzz input: the bytes are a payload (a TCP stream start or a UDP datagram)."""
    check_payload(data)


if __name__ == "__main__":
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    with atheris.instrument_imports(include=["dsaudit"]):
        load()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
