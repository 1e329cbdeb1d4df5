"""Property tests of every decoder: the three-outcome contract on any bytes, and round trips."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsaudit.decode._text import escape_label, escape_text
from dsaudit.decode.dns import MAX_POINTER_JUMPS, parse_dns, split_dns_tcp
from dsaudit.decode.http import (
    METHODS,
    connect_target,
    looks_like_http_request,
    parse_http_request,
    parse_http_response_status,
)
from dsaudit.decode.quic import QUIC_V1, QUIC_V2, client_hello_from_crypto, quic_initial_crypto
from dsaudit.decode.socks import SocksTarget, looks_like_socks, parse_socks_client
from dsaudit.decode.tls import (
    looks_like_client_hello,
    parse_client_hello,
    parse_client_hello_handshake,
)
from dsaudit.errors import DecodeError
from tests.factories import (
    RData,
    client_hello,
    client_hello_handshake,
    dns_header,
    dns_query,
    dns_response,
    dns_tcp,
    http_request,
    quic_client_initial,
    socks4_request,
    socks4a_request,
    socks5_request,
)
from tests.work import dns_steps_run

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def escaped(raw: bytes, *, label: bool = False) -> str:
    """Independent per-byte oracle of the documented escaping rule."""
    keep = set(range(0x20, 0x7F)) - {0x5C} - ({0x2E} if label else set())
    return "".join(chr(b) if b in keep else f"\\x{b:02x}" for b in raw)


@FAST
@given(st.binary(max_size=100))
def test_escaping_matches_the_documented_rule(raw: bytes) -> None:
    assert escape_text(raw) == escaped(raw)
    assert escape_label(raw) == escaped(raw, label=True)
    assert escape_text(raw).isprintable()


# ------------------------------------------------------- any bytes: three outcomes


def _parse_then_connect(data: bytes) -> object:
    req = parse_http_request(data)
    return connect_target(req) if req is not None else None


PARSERS: list[Callable[[bytes], object]] = [
    parse_client_hello,
    parse_client_hello_handshake,
    parse_dns,
    split_dns_tcp,
    parse_http_request,
    _parse_then_connect,
    parse_http_response_status,
    parse_socks_client,
    quic_initial_crypto,
    lambda d: client_hello_from_crypto([(0, d)]),
    lambda d: client_hello_from_crypto([(len(d) // 3, d[len(d) // 2 :]), (0, d[: len(d) // 2])]),
]
PREDICATES: list[Callable[[bytes], bool]] = [
    looks_like_client_hello,
    looks_like_http_request,
    looks_like_socks,
]

SEEDS = [
    client_hello(records=2, ech=True),
    client_hello_handshake(sni="seed.example"),
    dns_response("www.example.com", [("e.example.net", 1, "192.0.2.1", 9)], ["e.example.net"]),
    dns_tcp(dns_query("a.example"), dns_query("b.example")),
    http_request("seed.example"),
    http_request("seed.example:443", method="CONNECT", target="seed.example:443"),
    b"HTTP/1.1 200 Connection established\r\n\r\n",
    socks5_request("seed.example", 443, auth=(b"u", b"p")),
    socks4a_request("seed.example", 80, userid=b"me"),
    socks4_request("192.0.2.3", 80),
    quic_client_initial(client_hello_handshake(sni="seed.example"), pad_to=300),
]


@st.composite
def mutated_seeds(draw: st.DrawFn) -> bytes:
    """A valid message with a few bytes overwritten, inserted or cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "truncate", "ff"]))
        at = draw(st.integers(0, len(data)))
        if op == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "truncate":
            del data[at:]
        elif at < len(data):
            data[at : at + 2] = b"\xff\xff"
    return bytes(data)


any_input = st.one_of(
    st.binary(max_size=300),
    mutated_seeds(),
    st.binary(max_size=80).map(lambda b: b"\x16\x03\x01" + b),
    st.binary(max_size=80).map(lambda b: b"\x05\x02\x00\x02" + b),
    st.binary(max_size=80).map(lambda b: dns_header(1, 0x8180, 1, 3) + b),
)


def _check_contract(data: bytes) -> None:
    for parser in PARSERS:
        try:
            parser(data)
        except DecodeError:
            pass
    for predicate in PREDICATES:
        assert isinstance(predicate(data), bool)


@FAST
@given(any_input)
def test_any_bytes_give_result_none_or_decode_error(data: bytes) -> None:
    _check_contract(data)


@FAST
@given(mutated_seeds())
def test_mutated_messages_give_result_none_or_decode_error(data: bytes) -> None:
    _check_contract(data)


# ---------------------------------------------------------------- TLS round trips

hostname_bytes = st.binary(min_size=1, max_size=120)
alpn_names = st.lists(st.binary(min_size=1, max_size=20), max_size=4)


@FAST
@given(
    sni=st.one_of(st.none(), hostname_bytes),
    alpn=alpn_names,
    versions=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=6),
    ech=st.booleans(),
    records=st.integers(1, 4),
    extra_len=st.integers(0, 3000),
)
def test_client_hello_round_trip(
    sni: bytes | None,
    alpn: list[bytes],
    versions: list[int],
    ech: bool,
    records: int,
    extra_len: int,
) -> None:
    data = client_hello(
        sni=sni,
        alpn=alpn,
        supported_versions=versions,
        ech=ech,
        records=records,
        extra_len=extra_len,
    )
    hello = parse_client_hello(data)
    assert hello is not None
    assert hello.sni == (None if sni is None else escaped(sni))
    assert hello.alpn == tuple(escaped(a) for a in alpn)
    assert hello.supported_versions == tuple(versions)
    assert hello.has_ech == ech
    assert hello.legacy_version == 0x0303


@FAST
@given(sni=hostname_bytes, records=st.integers(1, 3), cut=st.integers(0, 10_000))
def test_truncated_client_hello_needs_more(sni: bytes, records: int, cut: int) -> None:
    data = client_hello(sni=sni, records=records, extra_len=100)
    cut %= len(data)
    assert parse_client_hello(data[:cut]) is None
    handshake = client_hello_handshake(sni=sni)
    assert parse_client_hello_handshake(handshake[: cut % len(handshake)]) is None


# ---------------------------------------------------------------- DNS round trips


labels = st.lists(st.binary(min_size=1, max_size=20), min_size=0, max_size=4)


@st.composite
def names(draw: st.DrawFn, pool: list[tuple[bytes, ...]] | None = None) -> tuple[bytes, ...]:
    """Random labels, often ending in a suffix of an earlier name so compression applies."""
    head = draw(labels)
    if pool and draw(st.booleans()):
        earlier = draw(st.sampled_from(pool))
        tail = earlier[draw(st.integers(0, len(earlier))) :]
    else:
        tail = tuple(draw(labels))
    name = tuple(head) + tail
    if pool is not None:
        pool.append(name)
    return name


Answer = tuple[tuple[bytes, ...], int, RData, int]


@st.composite
def dns_answers(draw: st.DrawFn) -> tuple[tuple[bytes, ...], list[Answer]]:
    """A question name and answers whose names reuse parts of each other."""
    pool: list[tuple[bytes, ...]] = []
    qname = draw(names(pool))
    out: list[Answer] = []
    for _ in range(draw(st.integers(0, 6))):
        owner = draw(names(pool))
        rtype = draw(st.sampled_from([1, 28, 5, 12, 16]))
        if rtype == 1:
            data: RData = str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
        elif rtype == 28:
            # Small and ::ffff: values reach the dotted special cases of the text form.
            value = draw(st.one_of(st.integers(0, 2**128 - 1), st.integers(0, 2**48)))
            data = str(ipaddress.IPv6Address(value))
        elif rtype == 16:
            data = draw(st.binary(max_size=30))
        else:
            data = draw(names(pool))
        out.append((owner, rtype, data, draw(st.integers(0, 2**32 - 1))))
    # Names over 255 octets are tested elsewhere; keep these valid.
    for name in pool:
        if sum(len(x) + 1 for x in name) + 1 > 255:
            return (), []
    return qname, out


def _ipv6_text(text: str) -> str:
    """The documented AAAA text: RFC 5952, but dotted for IPv4-mapped/-compatible forms."""
    packed = ipaddress.IPv6Address(text).packed
    dotted = str(ipaddress.IPv4Address(packed[12:]))
    if packed[:12] == bytes(12) and packed[12:14] != b"\0\0":
        return "::" + dotted
    if packed[:12] == bytes(10) + b"\xff\xff":
        return "::ffff:" + dotted
    return ipaddress.IPv6Address(packed).compressed


def _name_text(name: tuple[bytes, ...]) -> str:
    return ".".join(escaped(label, label=True) for label in name)


@FAST
@given(case=dns_answers(), compress=st.booleans(), ident=st.integers(0, 65535))
def test_dns_round_trip(
    case: tuple[tuple[bytes, ...], list[Answer]], compress: bool, ident: int
) -> None:
    qname, answers = case
    data = dns_response(qname, answers, id=ident, compress=compress)
    msg = parse_dns(data)
    assert msg == parse_dns(dns_response(qname, answers, id=ident, compress=not compress))
    assert msg.id == ident and msg.is_response and not msg.partial
    assert msg.questions[0].name == _name_text(qname)
    assert len(msg.answers) == len(answers)
    for record, (owner, rtype, rdata, ttl) in zip(msg.answers, answers, strict=True):
        assert (record.name, record.rtype, record.ttl) == (_name_text(owner), rtype, ttl)
        if rtype == 1:
            assert record.data == rdata
        elif rtype == 28:
            assert isinstance(rdata, str)
            assert record.data == _ipv6_text(rdata)
        elif rtype in (5, 12):
            assert isinstance(rdata, tuple)
            assert record.data == _name_text(rdata)
        else:
            assert record.data is None


@FAST
@given(case=dns_answers(), cut=st.integers(0, 10_000))
def test_dns_cut_after_questions_is_partial_prefix(
    case: tuple[tuple[bytes, ...], list[Answer]], cut: int
) -> None:
    qname, answers = case
    data = dns_response(qname, answers)
    whole = parse_dns(data)
    start = len(dns_response(qname))
    cut = start + cut % (len(data) - start + 1)
    msg = parse_dns(data[:cut])
    assert msg.partial == (cut < len(data) and bool(answers))
    assert msg.questions == whole.questions
    assert msg.answers == whole.answers[: len(msg.answers)]


@FAST
@given(
    cycle=st.lists(st.binary(min_size=1, max_size=10), max_size=8),
    hop=st.integers(0, 8),
)
def test_dns_compression_loops_fail_fast(cycle: list[bytes], hop: int) -> None:
    # Answer 1 carries opaque RDATA: labels, then a pointer back to one of those labels,
    # which closes a cycle; answer 2's owner points at that same label.
    question = b"\x00\x00\x01\x00\x01"
    blob_at = 12 + len(question) + 1 + 10
    starts = [0]
    for label in cycle:
        starts.append(starts[-1] + 1 + len(label))
    blob = b"".join(bytes((len(x),)) + x for x in cycle)
    target = blob_at + starts[min(hop, len(cycle))]
    blob += (0xC000 | target).to_bytes(2, "big")
    first = b"\x00" + (0xFF00).to_bytes(2, "big") + b"\x00\x01" + bytes(4)
    first += len(blob).to_bytes(2, "big") + blob
    second = (0xC000 | target).to_bytes(2, "big") + b"\x00\x10\x00\x01" + bytes(6)
    data = dns_header(1, 0x8180, 1, 2) + question + first + second
    result, steps = dns_steps_run(lambda: parse_dns(data))
    assert isinstance(result, DecodeError), result
    # Four names at most, each stopped within the jump limit.
    assert steps < 4 * (MAX_POINTER_JUMPS + 2), steps


@FAST
@given(st.lists(st.binary(min_size=12, max_size=60), max_size=5), st.integers(0, 400))
def test_split_dns_tcp_keeps_whole_messages(messages: list[bytes], cut: int) -> None:
    stream = dns_tcp(*messages)
    cut = min(cut, len(stream))
    found, used = split_dns_tcp(stream[:cut])
    assert found == messages[: len(found)]
    assert used == sum(len(m) + 2 for m in found)
    assert cut - used < (len(messages[len(found)]) + 2 if len(found) < len(messages) else 1)


# ---------------------------------------------------------------- HTTP round trips

host_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)


def _random_case(data: st.DataObject, word: str) -> str:
    flips = data.draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(word, flips, strict=True))


@FAST
@given(
    data=st.data(),
    host=host_text,
    method=st.sampled_from(sorted(METHODS)),
    target=host_text,
    newline=st.sampled_from(["\r\n", "\n"]),
    host_first=st.booleans(),
    pad=st.sampled_from(["", " ", "\t ", "  "]),
)
def test_http_round_trip(
    data: st.DataObject,
    host: str,
    method: str,
    target: str,
    newline: str,
    host_first: bool,
    pad: str,
) -> None:
    spelling = _random_case(data, "host")
    raw = http_request(
        pad + host + pad,
        method=method,
        target=target,
        host_header=spelling,
        host_first=host_first,
        newline=newline,
    )
    req = parse_http_request(raw + b"trailing body")
    assert req is not None
    assert (req.method, req.target, req.host) == (
        method,
        escaped(target.encode()),
        escaped(host.encode()),
    )
    assert req.header_bytes == len(raw)
    assert looks_like_http_request(raw)
    for cut in data.draw(st.lists(st.integers(0, len(raw) - 1), max_size=5)):
        assert parse_http_request(raw[:cut]) is None


@FAST
@given(
    host=st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,40}[a-z0-9])?", fullmatch=True),
    port=st.integers(1, 65535),
    v6=st.integers(0, 2**128 - 1),
    use_v6=st.booleans(),
)
def test_connect_round_trip(host: str, port: int, v6: int, use_v6: bool) -> None:
    name = str(ipaddress.IPv6Address(v6)) if use_v6 else host
    target = f"[{name}]:{port}" if use_v6 else f"{name}:{port}"
    req = parse_http_request(http_request(target, method="CONNECT", target=target))
    assert req is not None and connect_target(req) == (name, port)


# ---------------------------------------------------------------- SOCKS round trips


@FAST
@given(
    host=st.binary(min_size=1, max_size=255),
    port=st.integers(0, 65535),
    command=st.sampled_from([1, 2, 3]),
    auth=st.one_of(st.none(), st.tuples(st.binary(max_size=255), st.binary(max_size=255))),
    methods=st.lists(st.integers(0, 255), min_size=1, max_size=10),
)
def test_socks5_domain_round_trip(
    host: bytes, port: int, command: int, auth: tuple[bytes, bytes] | None, methods: list[int]
) -> None:
    if auth is None:
        methods = [m for m in methods if m != 2] or [0]
    data = socks5_request(host, port, command=command, auth=auth, methods=methods, atyp=3)
    assert parse_socks_client(data) == SocksTarget(5, command, escaped(host), port, True)


@FAST
@given(
    host=st.binary(min_size=1, max_size=255).filter(lambda b: b"\0" not in b),
    userid=st.binary(max_size=255).filter(lambda b: b"\0" not in b),
    port=st.integers(0, 65535),
    marker=st.integers(1, 255),
    ip=st.integers(0x01000000, 2**32 - 1),
)
def test_socks4_round_trip(host: bytes, userid: bytes, port: int, marker: int, ip: int) -> None:
    data = socks4a_request(host, port, userid=userid, marker=marker)
    assert parse_socks_client(data) == SocksTarget(4, 1, escaped(host), port, True)
    addr = str(ipaddress.IPv4Address(ip))
    assert parse_socks_client(socks4_request(addr, port, userid=userid)) == SocksTarget(
        4, 1, addr, port, False
    )


# ---------------------------------------------------------------- QUIC round trips


@SLOW
@given(
    sni=hostname_bytes,
    version=st.sampled_from([QUIC_V1, QUIC_V2]),
    dcid=st.binary(min_size=0, max_size=20),
    pn=st.integers(0, 255),
    split=st.integers(1, 200),
)
def test_quic_round_trip(sni: bytes, version: int, dcid: bytes, pn: int, split: int) -> None:
    msg = client_hello_handshake(sni=sni, alpn=(b"h3",))
    split = min(split, len(msg) - 1)
    # Out-of-order CRYPTO frames, as Chrome sends them.
    datagram = quic_client_initial(
        [(split, msg[split:]), (0, msg[:split])], version=version, dcid=dcid, pn=pn
    )
    pieces = quic_initial_crypto(datagram)
    assert pieces == [(split, msg[split:]), (0, msg[:split])]
    hello = client_hello_from_crypto(pieces)
    assert hello is not None and hello.sni == escaped(sni)
