"""Tests of the HTTP request-head decoder, CONNECT targets, proxy status lines and the corpus."""

from __future__ import annotations

import re

import pytest

from dsaudit.decode.http import (
    MAX_HEADER_BYTES,
    METHODS,
    HttpRequest,
    connect_target,
    looks_like_http_request,
    parse_http_request,
    parse_http_response_status,
)
from dsaudit.errors import DecodeError
from tests.decode import _corpus
from tests.factories import http_request

needs_corpus = pytest.mark.skipif(not _corpus.CORPUS.is_dir(), reason="shared corpus absent")


def test_basic_request() -> None:
    data = http_request("www.Example.com", target="/a?b=c")
    req = parse_http_request(data + b"body bytes")
    assert req == HttpRequest("GET", "/a?b=c", "HTTP/1.1", "www.Example.com", len(data))


@pytest.mark.parametrize("spelling", ["host", "HOST", "hOsT", "Host"])
def test_host_header_name_is_case_insensitive(spelling: str) -> None:
    req = parse_http_request(http_request("h.example", host_header=spelling, host_first=False))
    assert req is not None and req.host == "h.example"


def test_first_host_wins_and_blanks_are_stripped() -> None:
    data = b"GET / HTTP/1.1\r\nHost: \t first.example \t\r\nX-Host: no\r\nHost: second\r\n\r\n"
    req = parse_http_request(data)
    assert req is not None and req.host == "first.example"


def test_header_named_like_host_is_not_host() -> None:
    data = b"GET / HTTP/1.1\r\nX-Forwarded-Host: no.example\r\nHostname: no\r\n\r\n"
    req = parse_http_request(data)
    assert req is not None and req.host is None


def test_missing_and_empty_host() -> None:
    req = parse_http_request(http_request(None, version="HTTP/1.0"))
    assert req is not None and (req.host, req.version) == (None, "HTTP/1.0")
    req = parse_http_request(b"GET / HTTP/1.1\r\nHost:   \r\n\r\n")
    assert req is not None and req.host is None


def test_bare_lf_line_ends() -> None:
    data = http_request("lf.example", newline="\n")
    req = parse_http_request(data)
    assert req is not None
    assert (req.host, req.header_bytes) == ("lf.example", len(data))


def test_head_without_headers() -> None:
    req = parse_http_request(b"OPTIONS * HTTP/1.1\r\n\r\n")
    assert req == HttpRequest("OPTIONS", "*", "HTTP/1.1", None, 22)


def test_blank_lines_in_the_body_do_not_end_the_head() -> None:
    head = http_request("body.example", method="POST")
    for body in (b"a\n\nb", b"\n\n", b"x\r\n\r\ny"):
        req = parse_http_request(head + body)
        assert req is not None and req.header_bytes == len(head)
    lf_head = http_request("lf.example", newline="\n")
    req = parse_http_request(lf_head + b"x\r\n\r\n")
    assert req is not None and req.header_bytes == len(lf_head)


def test_http2_preface_and_ssdp() -> None:
    preface = parse_http_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert preface == HttpRequest("PRI", "*", "HTTP/2.0", None, 18)
    ssdp = b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\n\r\n'
    req = parse_http_request(ssdp)
    assert req is not None and (req.method, req.host) == ("M-SEARCH", "239.255.255.250:1900")


def test_every_prefix_needs_more() -> None:
    data = http_request("prefix.example", method="PROPFIND", target="/dav/")
    for cut in range(len(data)):
        assert parse_http_request(data[:cut]) is None, cut
    assert parse_http_request(data) is not None


def test_host_with_odd_bytes_is_escaped() -> None:
    req = parse_http_request(b"GET /\xff HTTP/1.1\r\nHost: b\xc3\xa4d\\x\x01\r\n\r\n")
    assert req is not None
    assert req.host == "b\\xc3\\xa4d\\x5cx\\x01"
    assert req.target == "/\\xff"


@pytest.mark.parametrize(
    "data",
    [
        b"GET /bad.html\r\n",  # HTTP/0.9 simple request
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",  # methods are case-sensitive
        b"FETCH / HTTP/1.1\r\n\r\n",
        b"GET / HTTPS/1.1\r\n\r\n",
        b"GET / HTTP/11\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"GE\x00",
        b"GET / FTP/",
        b"GET  ",
    ],
)
def test_not_a_request_line(data: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_http_request(data)


def test_head_size_cap() -> None:
    filler = b"X-Fill: " + b"a" * 100 + b"\r\n"
    data = b"GET / HTTP/1.1\r\n" + filler * (MAX_HEADER_BYTES // len(filler) + 1)
    assert parse_http_request(data[: MAX_HEADER_BYTES - 1]) is None
    with pytest.raises(DecodeError, match="no end of the HTTP head"):
        parse_http_request(data)
    with pytest.raises(DecodeError, match="request line"):
        parse_http_request(b"GET /" + b"a" * MAX_HEADER_BYTES)


def test_head_ending_at_the_search_limit_is_found() -> None:
    line = b"GET / HTTP/1.1\r\n"
    pad = MAX_HEADER_BYTES - len(line) - len(b"X: \r\n") - 1
    data = line + b"X: " + b"a" * pad + b"\r\n\r\n"
    req = parse_http_request(data)
    assert req is not None and req.header_bytes == len(data)


def test_all_registered_methods_parse() -> None:
    for method in METHODS:
        req = parse_http_request(http_request("m.example", method=method))
        assert req is not None and req.method == method
        assert looks_like_http_request(method.encode() + b" / HTTP/1.1\r\n")


def test_looks_like_http_request() -> None:
    assert looks_like_http_request(b"GET / HTTP/1.1\r\n")
    assert looks_like_http_request(b"M-SEARCH * HTTP/1.1\r\n")
    assert not looks_like_http_request(b"GET")
    assert not looks_like_http_request(b"GETX / HTTP/1.1")
    assert not looks_like_http_request(b" GET /")
    assert not looks_like_http_request(b"HTTP/1.1 200 OK\r\n")
    assert not looks_like_http_request(b"\x16\x03\x01\x00")


# ---------------------------------------------------------------- CONNECT


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("example.com:443", ("example.com", 443)),
        ("10.1.2.3:8443", ("10.1.2.3", 8443)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[::1]:1", ("::1", 1)),
        ("h:65535", ("h", 65535)),
    ],
)
def test_connect_target(target: str, expected: tuple[str, int]) -> None:
    req = parse_http_request(http_request(target, method="CONNECT", target=target))
    assert req is not None and connect_target(req) == expected


@pytest.mark.parametrize(
    "target",
    [
        "example.com",
        "example.com:",
        ":443",
        "h:0",
        "h:65536",
        "h:44x",
        "h:١٢",
        "[::1]443",
        "[::1",
        "[nothex]:443",
        "2001:db8::1:443",
        "h:123456",
    ],
)
def test_bad_connect_target(target: str) -> None:
    req = HttpRequest("CONNECT", target, "HTTP/1.1", None, 10)
    with pytest.raises(DecodeError):
        connect_target(req)


def test_connect_target_of_other_methods() -> None:
    req = parse_http_request(http_request("example.com", target="example.com:443"))
    assert req is not None and connect_target(req) is None


# ---------------------------------------------------------------- status line


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"HTTP/1.1 200 Connection established\r\n\r\n", 200),
        (b"HTTP/1.0 407 Proxy Authentication Required\r\n", 407),
        (b"HTTP/1.1 204\r\n", 204),
        (b"HTTP/1.1 502 Bad Gateway\n", 502),
    ],
)
def test_response_status(data: bytes, code: int) -> None:
    assert parse_http_response_status(data) == code
    for cut in range(data.index(b"\n")):
        assert parse_http_response_status(data[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 20 OK\r\n",
        b"HTTP/1.1 099 Low\r\n",
        b"HTTP/1.1 600 High\r\n",
        b"HTTP/1.1 2000 OK\r\n",
        b"HTTP/1.1 2x0 OK\r\n",
        b"HTTP/1.1  200 OK\r\n",
        b"HTTX",
        b"SSH-2.0-x\r\n",
        b"HTTP/1.1 200OK\r\n",
    ],
)
def test_bad_status_line(data: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_http_response_status(data)


# ---------------------------------------------------------------- shared corpus

# Requests on TCP that tshark dissects as HTTP. Left out: vxlan-inner-http (tunnelled;
# the test helper does not decapsulate) and nsec-http-to-ssh-port (tshark does not call
# port 22 HTTP; we do decode it, see below).
CORPUS_HTTP = [
    "http-dns-wikipedia",
    "http-get-basic",
    "ipv6-http",
    "mixed-browsing-windows",
    "null-ipv6-http-localhost",
    "qinqinq-http",
    "sll-http",
    "sll2-http",
    "vlan-http-overlapping-flows",
    "cutoff-http-trailing-partial-header",
]


_CONTENT_LENGTH = re.compile(rb"\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def _stream_requests(name: str) -> list[HttpRequest | None]:
    """Every request head of every client stream, skipping Content-Length bodies."""
    found: list[HttpRequest | None] = []
    for flow in _corpus.tcp_flows(name):
        data = _corpus.stream(flow.client_segments, flow.client_isn)
        while looks_like_http_request(data):
            req = parse_http_request(data)
            found.append(req)
            if req is None:
                break
            length = _CONTENT_LENGTH.search(data, 0, req.header_bytes)
            data = data[req.header_bytes + (int(length.group(1)) if length else 0) :]
    return found


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_HTTP)
def test_corpus_hosts_match_tshark(name: str) -> None:
    want = sorted(
        d["host"] for d in _corpus.truth(name)["http_host_detail"] if d["transport"] == "tcp"
    )
    got = sorted(r.host for r in _stream_requests(name) if r is not None and r.host)
    assert got == want


@needs_corpus
def test_corpus_http09_requests_are_refused() -> None:
    flows = _corpus.tcp_flows("ipv6-atomic-frag-http")
    assert flows
    for flow in flows:
        data = _corpus.stream(flow.client_segments, flow.client_isn)
        assert looks_like_http_request(data)
        with pytest.raises(DecodeError):
            parse_http_request(data)


@needs_corpus
def test_corpus_http_on_ssh_port_matches_zeek() -> None:
    log = _corpus.CORPUS / "baselines/nsec-http-to-ssh-port"
    (path,) = log.glob("*http.log")
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.startswith("C")]
    header = next(
        line.split("\t") for line in path.read_text().splitlines() if line.startswith("uid")
    )
    (row,) = [dict(zip(header, r, strict=True)) for r in rows]
    (req,) = _stream_requests("nsec-http-to-ssh-port")
    assert req is not None
    assert (req.method, req.host, req.target) == (row["method"], row["host"], row["uri"])
