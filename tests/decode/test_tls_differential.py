"""Compiled TLS walkers against a small reference parser written here, on built and broken bytes.

The reference reads each structure with a cursor that refuses to run past its end, which
is a different way of writing the same rules as tls_wire.pyx: a ClientHello joined from
handshake records, the first server_name and supported_versions extension, the first ALPN
extension with a name, and a server flight up to its first alert or encrypted record.
Hellos are built with random extensions, split over records at random points, cut into
stream prefixes and mutated; the compiled result must equal the reference's, and for
unbroken hellos also what the hello was built from.
"""

from __future__ import annotations

import pickle
import random
import struct
import textwrap
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsaudit.decode import tls_wire
from dsaudit.decode.tls import (
    ClientHello,
    alert_text,
    looks_like_client_hello,
    parse_client_hello,
    parse_client_hello_handshake,
    parse_server_flight,
)
from dsaudit.errors import DecodeError
from tests.checked_kernels import checked_runner
from tests.factories import (
    certificate_chain,
    certificate_handshake,
    client_hello_handshake,
    server_hello_handshake,
    tls_extension,
)

MANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Bad(Exception):
    """The reference's verdict: these bytes cannot be a ClientHello."""


class Cursor:
    """Reads fields front to back; running past the end is Bad (the length was announced)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def take(self, n: int) -> bytes:
        if n > len(self.data):
            raise Bad
        out, self.data = self.data[:n], self.data[n:]
        return out

    def number(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vector(self, width: int) -> bytes:
        return self.take(self.number(width))

    def exhausted(self) -> bool:
        return not self.data


def text(raw: bytes) -> str:
    """The documented escaping rule, byte by byte."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x5C else f"\\x{b:02x}" for b in raw)


def numbers(raw: bytes) -> tuple[int, ...]:
    return tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))


def reference_body(body: bytes) -> ClientHello:
    r = Cursor(body)
    legacy = r.number(2)
    r.take(32)  # random
    if legacy >> 8 != 3 or len(r.vector(1)) > 32:  # the session id
        raise Bad
    suites = r.vector(2)
    if not suites or len(suites) % 2 or not r.vector(1):  # at least one compression method
        raise Bad
    sni: bytes | None = None
    alpn: list[bytes] = []
    versions: tuple[int, ...] = ()
    ech = False
    types: list[int] = []
    if not r.exhausted():
        block = Cursor(r.vector(2))
        if not r.exhausted():
            raise Bad
        seen_sni = False
        while not block.exhausted():
            etype = block.number(2)
            ext = Cursor(block.vector(2))
            types.append(etype)
            if etype == 0 and not seen_sni:
                seen_sni = True
                sni = reference_server_name(ext)
            elif etype == 16 and not alpn:
                alpn = reference_alpn(ext)
            elif etype == 43 and not versions:
                listed = ext.vector(1)
                if not listed or len(listed) % 2 or not ext.exhausted():
                    raise Bad
                versions = numbers(listed)
            elif etype == 0xFE0D:
                ech = True
    return ClientHello(
        None if sni is None else text(sni),
        tuple(text(a) for a in alpn),
        versions,
        legacy,
        ech,
        numbers(suites),
        tuple(types),
    )


def reference_server_name(ext: Cursor) -> bytes | None:
    entries = Cursor(ext.vector(2))
    if not ext.exhausted():
        raise Bad
    host = None
    while not entries.exhausted():
        name_type = entries.number(1)
        name = entries.vector(2)
        if name_type == 0 and host is None:
            if not name:
                raise Bad
            host = name
    return host


def reference_alpn(ext: Cursor) -> list[bytes]:
    entries = Cursor(ext.vector(2))
    if not ext.exhausted():
        raise Bad
    names = []
    while not entries.exhausted():
        name = entries.vector(1)
        if not name:
            raise Bad
        names.append(name)
    return names


def reference_handshake(msg: bytes) -> ClientHello | None:
    """A bare handshake message: the hello, None while it is incomplete, or Bad."""
    if msg[:1] not in (b"", b"\x01"):
        raise Bad
    if len(msg) < 4:
        return None
    length = int.from_bytes(msg[1:4], "big")
    if not 41 <= length <= 0x10000:
        raise Bad
    if len(msg) < 4 + length:
        return None
    return reference_body(msg[4 : 4 + length])


def reference_stream(stream: bytes) -> ClientHello | None:
    """The hello at the start of a stream of handshake records, None for a prefix, or Bad."""
    joined = b""
    while True:
        header, stream = stream[:5], stream[5:]
        if (
            header[:1] not in (b"", b"\x16")
            or header[1:2] not in (b"", b"\x03")
            or header[2:3] > b"\x04"
        ):
            raise Bad
        if len(header) < 5:
            return None
        length = int.from_bytes(header[3:5], "big")
        if not 0 < length <= 0x4800:
            raise Bad
        joined += stream[:length]
        stream = stream[length:]
        hello = reference_handshake(joined)
        if hello is not None:
            return hello


def outcome(parse: object, data: bytes) -> object:
    """What a parser makes of ``data``: its result, or "bad" for DecodeError / Bad."""
    assert callable(parse)
    try:
        return parse(data)
    except (DecodeError, Bad):
        return "bad"


# ------------------------------------------------------------------------ building hellos


@dataclass
class Built:
    handshake: bytes
    expected: ClientHello


def u16s(values: list[int]) -> bytes:
    return b"".join(struct.pack(">H", v) for v in values)


names = st.binary(min_size=1, max_size=40)


@st.composite
def extensions(draw: st.DrawFn) -> tuple[list[bytes], ClientHello]:
    """Extensions in random order and what the first of each kind says."""
    exts: list[bytes] = []
    sni: bytes | None = None
    seen_sni = False
    alpn: list[bytes] = []
    versions: list[int] = []
    ech = False
    types: list[int] = []
    for _ in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(["sni", "alpn", "versions", "ech", "other"]))
        if kind == "sni":
            hosts = draw(st.lists(st.tuples(st.sampled_from([0, 0, 1, 7]), names), max_size=3))
            entries = b"".join(struct.pack(">BH", t, len(h)) + h for t, h in hosts)
            ext = tls_extension(0, struct.pack(">H", len(entries)) + entries)
            if not seen_sni:
                seen_sni = True
                sni = next((h for t, h in hosts if t == 0), None)
            etype = 0
        elif kind == "alpn":
            protocols = draw(st.lists(names, max_size=4))
            entries = b"".join(bytes((len(p),)) + p for p in protocols)
            ext = tls_extension(16, struct.pack(">H", len(entries)) + entries)
            alpn = alpn or protocols
            etype = 16
        elif kind == "versions":
            listed = draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=8))
            ext = tls_extension(43, bytes((2 * len(listed),)) + u16s(listed))
            versions = versions or listed
            etype = 43
        elif kind == "ech":
            ext = tls_extension(0xFE0D, draw(st.binary(max_size=40)))
            ech = True
            etype = 0xFE0D
        else:
            etype = draw(st.integers(0, 0xFFFF).filter(lambda t: t not in (0, 16, 43, 0xFE0D)))
            ext = tls_extension(etype, draw(st.binary(max_size=60)))
        exts.append(ext)
        types.append(etype)
    fields = ClientHello(
        None if sni is None else text(sni),
        tuple(text(a) for a in alpn),
        tuple(versions),
        0,
        ech,
        (),
        tuple(types),
    )
    return exts, fields


@st.composite
def built_hellos(draw: st.DrawFn) -> Built:
    exts, fields = draw(extensions())
    suites = draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20))
    legacy = draw(st.sampled_from([0x0300, 0x0301, 0x0303, 0x03FF]))
    block = bool(exts) or draw(st.booleans())
    msg = client_hello_handshake(
        sni=None,
        alpn=(),
        supported_versions=None,
        legacy_version=legacy,
        cipher_suites=suites,
        session_id=draw(st.binary(max_size=32)),
        extensions=exts,
        with_extensions_block=block,
    )
    expected = ClientHello(
        fields.sni,
        fields.alpn,
        fields.supported_versions,
        legacy,
        fields.has_ech,
        tuple(suites),
        fields.extension_types,
    )
    return Built(msg, expected)


@st.composite
def in_records(draw: st.DrawFn, payload: bytes) -> bytes:
    """``payload`` split into handshake records at random points, each with its own version."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(payload) - 1)), max_size=5))))
    out = bytearray()
    for start, end in zip([0, *cuts], [*cuts, len(payload)], strict=True):
        version = draw(st.sampled_from([0x0300, 0x0301, 0x0303, 0x0304]))
        out += struct.pack(">BHH", 0x16, version, end - start) + payload[start:end]
    return bytes(out)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes overwritten, inserted, flipped or cut off."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        op = draw(st.sampled_from(["set", "small", "insert", "flip", "truncate"]))
        if op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif op == "truncate":
            del out[at:]
        elif at < len(out) and op == "set":
            out[at] = draw(st.integers(0, 255))
        elif at < len(out) and op == "small":
            out[at] = draw(st.sampled_from([0, 1, 2, 3, 4, 0x16, 0x20, 0xFF]))
        elif at < len(out):
            out[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(out)


# --------------------------------------------------------------------------------- tests


@MANY
@given(st.data())
def test_built_hellos_in_records_give_what_they_were_built_from(data: st.DataObject) -> None:
    built = data.draw(built_hellos())
    stream = data.draw(in_records(built.handshake))
    trailer = data.draw(st.sampled_from([b"", b"\x17\x03\x03\x00\x02ab", b"\xff" * 7]))
    assert reference_handshake(built.handshake) == built.expected
    assert parse_client_hello_handshake(built.handshake + trailer) == built.expected
    assert reference_stream(stream) == built.expected
    assert parse_client_hello(stream + trailer) == built.expected
    # Every shorter prefix of the stream, as TCP segments deliver it, asks for more bytes.
    for cut in data.draw(st.lists(st.integers(0, len(stream) - 1), max_size=8)):
        assert parse_client_hello(stream[:cut]) is None
        assert parse_client_hello_handshake(built.handshake[: cut % len(built.handshake)]) is None


@MANY
@given(st.data())
def test_broken_hellos_get_the_references_verdict(data: st.DataObject) -> None:
    built = data.draw(built_hellos())
    stream = data.draw(mutated(data.draw(in_records(built.handshake))))
    assert outcome(parse_client_hello, stream) == outcome(reference_stream, stream)
    assert looks_like_client_hello(stream) == (
        len(stream) >= 6
        and stream[:2] == b"\x16\x03"
        and stream[2] <= 4
        and stream[5] == 1
        and 0 < int.from_bytes(stream[3:5], "big") <= 0x4800
    )
    msg = data.draw(mutated(built.handshake))
    assert outcome(parse_client_hello_handshake, msg) == outcome(reference_handshake, msg)


@st.composite
def near_the_limits(draw: st.DrawFn) -> bytes:
    """A record header and handshake header with values at and around every limit, cut anywhere."""
    record = struct.pack(
        ">BBBH",
        draw(st.sampled_from([0x16, 0x15, 0x17, 0x80])),
        draw(st.sampled_from([3, 2])),
        draw(st.sampled_from([0, 1, 3, 4, 5])),
        draw(st.sampled_from([0, 1, 3, 45, 0x4800, 0x4801, 0xFFFF])),
    )
    handshake = bytes((draw(st.sampled_from([1, 2])),)) + draw(
        st.sampled_from([40, 41, 0x10000, 0x10001]).map(lambda n: n.to_bytes(3, "big"))
    )
    data = record + handshake + draw(st.binary(max_size=60))
    # Cuts inside the two headers are where a partial header must already be judged.
    return data[: draw(st.integers(0, 9) | st.integers(0, len(data)))]


@MANY
@given(
    st.binary(max_size=120).map(lambda b: b"\x16\x03\x01" + b)
    | st.binary(max_size=120)
    | near_the_limits()
    | near_the_limits()
)
def test_arbitrary_bytes_get_the_references_verdict(data: bytes) -> None:
    assert outcome(parse_client_hello, data) == outcome(reference_stream, data)
    assert outcome(parse_client_hello_handshake, data) == outcome(reference_handshake, data)


# --------------------------------------------------------------------------- server side

LEAF, CA = certificate_chain("Differential CA")


def reference_first_certificate(msg: bytes) -> bytes | None:
    """The DER of the first certificate of a Certificate message, if the lengths agree."""
    r = Cursor(msg)
    try:
        chain = Cursor(r.vector(3))
        first = chain.vector(3)
    except Bad:
        return None
    return first if 0 < len(first) <= 0x10000 else None


def reference_flight(stream: bytes) -> tuple[int, int, bool, list[bytes]]:
    """tls_wire.server_flight's result: alert bytes, complete, first certificates."""
    handshake = b""
    certificates: list[bytes] = []
    while len(stream) >= 5:
        ctype, major, length = stream[0], stream[1], int.from_bytes(stream[3:5], "big")
        if major != 3 or length > 0x4800 or ctype not in (0x15, 0x16):
            return -1, -1, True, certificates
        if len(stream) < 5 + length:
            break
        body, stream = stream[5 : 5 + length], stream[5 + length :]
        if ctype == 0x15:
            level, description = (body[0], body[1]) if length == 2 else (-1, -1)
            return level, description, True, certificates
        handshake += body
        while len(handshake) >= 4:
            size = int.from_bytes(handshake[1:4], "big")
            if size > 0x10000:
                return -1, -1, True, certificates
            if len(handshake) < 4 + size:
                break
            if handshake[0] == 11:
                der = reference_first_certificate(handshake[4 : 4 + size])
                if der is not None:
                    certificates.append(der)
            handshake = handshake[4 + size :]
    return -1, -1, False, certificates


messages = st.one_of(
    st.just(server_hello_handshake()),
    st.just(certificate_handshake(LEAF, CA)),
    st.just(certificate_handshake(LEAF[:-30])),
    st.binary(max_size=30).map(lambda b: certificate_handshake(b)),
    st.just(b"\x0e\x00\x00\x00"),
    st.binary(max_size=20).map(lambda b: b"\x0c" + len(b).to_bytes(3, "big") + b),
)


@st.composite
def server_flights(draw: st.DrawFn) -> bytes:
    """Handshake messages over records at random points, then maybe an alert or ciphertext."""
    payload = b"".join(draw(st.lists(messages, min_size=1, max_size=4)))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(payload) - 1), max_size=4))))
    out = bytearray()
    for start, end in zip([0, *cuts], [*cuts, len(payload)], strict=True):
        out += struct.pack(">BHH", 0x16, 0x0303, end - start) + payload[start:end]
    tail = draw(
        st.sampled_from(
            [
                b"",
                b"\x15\x03\x03\x00\x02\x02\x28",  # fatal handshake_failure
                b"\x15\x03\x03\x00\x02\x07\xc8",  # an unknown level and description
                b"\x15\x03\x03\x00\x1a" + bytes(26),  # an encrypted alert
                b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x10" + bytes(16),
                b"\x16\x02\x00\x00\x04",  # not TLS
            ]
        )
    )
    return bytes(out) + tail


@MANY
@given(st.data())
def test_server_flights_get_the_references_walk(data: st.DataObject) -> None:
    flight = data.draw(server_flights())
    for stream in (
        flight,
        flight[: data.draw(st.integers(0, len(flight)))],
        data.draw(mutated(flight)),
    ):
        walked = reference_flight(stream)
        assert tls_wire.server_flight(stream) == walked
        got = parse_server_flight(stream)
        level, description, complete, _ = walked
        assert got.alert == (alert_text(level, description) if level >= 0 else None)
        assert got.complete == complete


@MANY
@given(st.data())
def test_a_certificate_anywhere_in_the_flight_names_its_issuer(data: st.DataObject) -> None:
    before = data.draw(st.lists(messages, max_size=2).map(b"".join))
    leaf = certificate_handshake(LEAF, CA)
    payload = before + leaf + b"\x0e\x00\x00\x00"
    step = data.draw(st.integers(1, len(payload)))
    stream = b"".join(
        struct.pack(">BHH", 0x16, 0x0303, len(payload[i : i + step])) + payload[i : i + step]
        for i in range(0, len(payload), step)
    )
    got = parse_server_flight(stream)
    # A certificate that comes earlier (the same leaf, or one whose DER does not parse)
    # decides first; the leaf always names the same issuer.
    assert got.issuer == "CN=Differential CA"
    assert (got.alert, got.complete) == (None, False)


# ----------------------------------------------------------------------- bounds checking

CHECKED_RUN = textwrap.dedent(
    """
    import ctypes
    import pickle
    import sys

    if sys.argv[1] == "probe":
        # A read past the end of a buffer must be caught: proves the sanitizer is live.
        ctypes.string_at(ctypes.addressof(ctypes.create_string_buffer(16)), 64)
        sys.exit("AddressSanitizer is not in effect")

    from dsaudit.decode import tls_wire
    from dsaudit.errors import DecodeError

    with open(sys.argv[1], "rb") as f:
        inputs = pickle.load(f)
    for data in inputs:
        for parse in (tls_wire.client_hello, tls_wire.client_hello_handshake):
            try:
                parse(data)
            except DecodeError:
                pass
        tls_wire.looks_like_client_hello(data)
        tls_wire.server_flight(data)
    print("ok", len(inputs))
    """
)


def _broken(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(0, 4)):
        at = rng.randrange(len(out))
        out[at] = rng.choice([rng.randrange(256), 0, 1, 0xFF])
    return bytes(out[: rng.randrange(len(out) + 1)])


def test_walkers_never_read_out_of_bounds(tmp_path: Path) -> None:
    rng = random.Random(20250301)
    hello = client_hello_handshake(sni="checked.example", extra_len=600)
    flight = certificate_handshake(LEAF, CA) + b"\x0e\x00\x00\x00"
    seeds = [hello, server_hello_handshake() + flight]
    # Records of every size from one byte: the hello is joined from many pieces, and each
    # piece may end where a header or length field is still incomplete.
    for step in (1, 2, 3, 5, 40, 700):
        for payload, ctype in ((hello, 0x16), (flight, 0x16)):
            seeds.append(
                b"".join(
                    struct.pack(">BHH", ctype, 0x0303, len(payload[i : i + step]))
                    + payload[i : i + step]
                    for i in range(0, len(payload), step)
                )
            )
    inputs = list(seeds)
    for seed in seeds:
        inputs += [seed[:cut] for cut in range(0, len(seed), max(1, len(seed) // 50))]
        inputs += [_broken(seed, rng) for _ in range(60)]
    inputs += [rng.randbytes(rng.randrange(0, 80)) for _ in range(200)]
    inputs_file = tmp_path / "inputs.pickle"
    inputs_file.write_bytes(pickle.dumps(inputs))
    run = checked_runner(tmp_path, CHECKED_RUN)

    probe = run("probe")
    assert probe.returncode != 0 and "AddressSanitizer" in probe.stderr, probe.stderr[-2000:]
    proc = run(str(inputs_file))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == f"ok {len(inputs)}\n"
    assert "AddressSanitizer" not in proc.stderr
