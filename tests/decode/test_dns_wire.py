"""The compiled DNS walk: naming's digest against parse_dns, hostile names by counted work."""

from __future__ import annotations

import pickle
import random
import socket
import struct
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dsaudit.decode.dns import MAX_POINTER_JUMPS, DnsMessage, parse_dns
from dsaudit.decode.dns_wire import name_steps
from dsaudit.errors import DecodeError
from dsaudit.flows.addresses import key_from_text
from dsaudit.naming.dns_map import DnsDigest
from tests.checked_kernels import checked_runner
from tests.factories import dns_header, dns_query, dns_response
from tests.test_hostile import pointer_chain_message

NAME_TYPES = (2, 5, 12, 39)


def reference_digest(msg: DnsMessage) -> DnsDigest:
    """What naming needs of a message, written plainly from the parsed message."""
    queries = tuple(q.name for q in msg.questions)
    if not msg.is_response:
        return DnsDigest(queries, -1, (), ())
    owner_of_target: dict[str, str] = {}
    for rr in msg.answers:
        if rr.rtype == 5 and rr.data:
            owner_of_target[rr.data.lower()] = rr.name
    addresses = []
    for rr in msg.answers:
        if rr.rtype not in (1, 28) or rr.data is None:
            continue
        asked = rr.name
        visited = {asked.lower()}
        while asked.lower() in owner_of_target:
            asked = owner_of_target[asked.lower()]
            if asked.lower() in visited:
                break
            visited.add(asked.lower())
        key = key_from_text(rr.data)
        assert key is not None, rr
        addresses.append((key, asked))
    answers = tuple((rr.name, rr.rtype, rr.data, rr.ttl) for rr in msg.answers)
    return DnsDigest(queries, msg.rcode, answers, tuple(addresses))


def assert_digest_agrees(data: bytes) -> DnsDigest | None:
    """The compiled digest equals the reference built on parse_dns, or both fail alike."""
    try:
        msg = parse_dns(data)
    except DecodeError as exc:
        with pytest.raises(DecodeError) as caught:
            DnsDigest.from_wire(data)
        assert str(caught.value) == str(exc)
        return None
    digest = DnsDigest.from_wire(data)
    assert digest == reference_digest(msg)
    return digest


# ------------------------------------------------------------------ message generator

# Labels that recur, so owners, CNAME targets and questions coincide (in any case);
# others carry dots, backslashes and bytes that must be escaped.
POOL_LABELS = [b"a", b"A", b"www", b"WWW", b"example", b"Example", b"cdn", b"x.y", b"b\\s"]
POOL_NAMES = [
    [b"a", b"example"],
    [b"A", b"EXAMPLE"],
    [b"cdn", b"example"],
    [b"Cdn", b"Example"],
    [b"edge", b"cdn", b"example"],
    [b"\x00\xff", b"example"],
]
V6_FORMS = [
    bytes(16),
    bytes(15) + b"\x01",
    bytes(10) + b"\xff\xff\xc0\x00\x02\x01",  # ::ffff:192.0.2.1
    bytes(12) + b"\xc0\x00\x02\x01",  # ::192.0.2.1
    bytes(10) + b"\xff\xfe\xc0\x00\x02\x01",
    b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01",
    b"\x20\x01\x0d\xb8\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01",
]


class _Wire:
    """A message under construction, and the offsets worth pointing at."""

    def __init__(self) -> None:
        self.buf = bytearray(12)
        self.targets: list[int] = []
        self.deepest = -1  # the last link of a chain, the hardest name to read


def _name(draw: st.DrawFn, w: _Wire, pooled: bool = False) -> None:
    """Append a name: labels, then the root, a pointer (backwards, to itself or forwards,
    into the header or anywhere) or a reserved label type. ``pooled`` names are mostly
    the few recurring ones, in some case, ending in the root."""
    start = len(w.buf)
    if pooled and draw(st.integers(0, 3)) > 0:
        w.targets.append(start)
        for label in draw(st.sampled_from(POOL_NAMES)):
            w.buf += bytes((len(label),)) + label
        w.buf.append(0)
        return
    labels = draw(
        st.one_of(
            st.sampled_from(POOL_NAMES),
            st.lists(st.sampled_from(POOL_LABELS), max_size=4),
            st.lists(st.binary(min_size=1, max_size=63), max_size=4),
        )
    )
    for label in labels:
        w.targets.append(len(w.buf))
        w.buf += bytes((len(label),)) + label
    earlier = [t for t in w.targets if t < start]
    end = draw(st.sampled_from(["root"] * 4 + ["back"] * 4 + ["deep", "any", "bad"]))
    if end == "deep" and 0 <= w.deepest < start:
        target = w.deepest
    elif end in ("back", "deep") and earlier:
        target = draw(st.sampled_from(earlier))
    elif end == "any":
        target = draw(st.integers(0, len(w.buf) + 2))
    elif end == "bad":
        w.buf.append(draw(st.sampled_from([0x40, 0x80, 0xBF])))
        return
    else:
        w.buf.append(0)
        return
    w.buf += struct.pack(">H", 0xC000 | target & 0x3FFF)


def _chain(draw: st.DrawFn, w: _Wire) -> None:
    """Append a TXT record whose data is a chain: links of one label (or none) each
    followed by a pointer to the link before; every link becomes a pointer target."""
    label = draw(st.sampled_from([b"", b"", b"z", b"zz"]))
    links = draw(st.one_of(st.integers(1, 140), st.sampled_from([84, 85, 126, 127, 128])))
    w.buf += b"\x00" + struct.pack(">HHI", 16, 1, 0)
    at = len(w.buf)
    w.buf += b"\x00\x00"
    first = len(w.buf)
    w.buf += b"\x01a\x00" if not label else bytes((len(label),)) + label + b"\x00"
    w.targets.append(first)
    previous = first
    for _ in range(links):
        here = len(w.buf)
        if label:
            w.buf += bytes((len(label),)) + label
        w.buf += struct.pack(">H", 0xC000 | previous & 0x3FFF)
        w.targets.append(here)
        previous = here
    w.deepest = previous
    struct.pack_into(">H", w.buf, at, len(w.buf) - first)


def _alias(draw: st.DrawFn, w: _Wire) -> None:
    """Append a CNAME between two recurring names and an address record for its target,
    the target's owner name written in the other case."""
    owner, target = draw(st.sampled_from(POOL_NAMES)), draw(st.sampled_from(POOL_NAMES))
    wire_owner = b"".join(bytes((len(x),)) + x for x in owner) + b"\x00"
    wire_target = b"".join(bytes((len(x),)) + x for x in target) + b"\x00"
    w.buf += wire_owner + struct.pack(">HHIH", 5, 1, 60, len(wire_target)) + wire_target
    w.buf += wire_target.swapcase() + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 9])


def _record(draw: st.DrawFn, w: _Wire) -> None:
    rtype = draw(st.sampled_from([1, 1, 28, 28, 5, 5, 2, 12, 39, 16, 6]))
    _name(draw, w, pooled=rtype in (1, 28, 5))
    rclass = draw(st.sampled_from([1, 1, 1, 0x8001, 3]))
    w.buf += struct.pack(">HHI", rtype, rclass, draw(st.integers(0, 2**32 - 1)))
    at = len(w.buf)
    w.buf += b"\x00\x00"
    if rtype in NAME_TYPES:
        _name(draw, w, pooled=rtype == 5)
        slack = draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
    else:
        if rtype == 1:
            data = draw(st.binary(min_size=4, max_size=4))
        elif rtype == 28:
            data = draw(st.one_of(st.sampled_from(V6_FORMS), st.binary(min_size=16, max_size=16)))
        else:
            data = draw(st.binary(max_size=12))
        if draw(st.integers(0, 9)) == 0:
            data = data[:-1]
        w.buf += data
        slack = 0
    struct.pack_into(">H", w.buf, at, max(0, len(w.buf) - at - 2 + slack))


@st.composite
def wire_messages(draw: st.DrawFn) -> bytes:
    """DNS messages as a hostile or broken sender makes them: compression pointers that
    go back, loop, go forward or into the header, long chains, odd labels, counts that
    disagree with the content, cuts and stray bytes."""
    w = _Wire()
    questions = draw(st.integers(0, 3))
    for _ in range(questions):
        _name(draw, w)
        w.buf += struct.pack(">HH", draw(st.sampled_from([1, 28, 5])), 1)
    records = 0
    if draw(st.integers(0, 3)) == 0:
        _chain(draw, w)
        # A record owned by the chain's last link: the longest walk the chain allows.
        w.buf += struct.pack(">HHHIH", 0xC000 | w.deepest & 0x3FFF, 16, 1, 0, 0)
        records += 2
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 2)) == 0:
            _alias(draw, w)
            records += 2
        else:
            _record(draw, w)
            records += 1
    qd = max(0, questions + draw(st.sampled_from([0, 0, 0, 0, 1, -1])))
    an = max(0, records + draw(st.sampled_from([0, 0, 0, 0, 1, -1, 50])))
    flags = draw(st.sampled_from([0, 0x8000])) | draw(st.integers(0, 0x7FFF))
    w.buf[:12] = dns_header(draw(st.integers(0, 0xFFFF)), flags, qd, an, 0, 0)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        w.buf[draw(st.integers(0, len(w.buf) - 1))] = draw(st.integers(0, 255))
    if draw(st.integers(0, 2)) == 0:
        # Mostly cut after the header, where a snaplen cuts real messages.
        del w.buf[len(w.buf) - draw(st.integers(0, len(w.buf))) :]
    return bytes(w.buf)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=wire_messages())
@example(data=dns_response("a.example", [("b.example", 1, "192.0.2.1", 5)], ["b.example"]))
def test_compiled_digest_matches_the_parsed_message(data: bytes) -> None:
    assert_digest_agrees(data)


FAILURES = [
    "ends inside the question section",
    "runs past the end of its record",
    "does not point backwards",
    "lands in the header",
    "too many compression pointers",
    "longer than 255 octets",
    "unsupported label type",
    "data length disagrees",
    "data bytes",
]


def test_generator_reaches_what_the_digest_must_handle() -> None:
    # The property above means little unless the generated messages include these.
    seen: set[str] = set()

    # Derandomized: a fixed sample, so this checks the generator and not its luck.
    @settings(max_examples=1000, deadline=None, database=None, derandomize=True)
    @given(data=wire_messages())
    def survey(data: bytes) -> None:
        try:
            msg = parse_dns(data)
        except DecodeError as exc:
            seen.update(f for f in FAILURES if f in str(exc))
            return
        digest = DnsDigest.from_wire(data)
        if msg.partial:
            seen.add("partial")
        owners = [rr.name for rr in msg.answers if rr.rtype in (1, 28) and rr.data is not None]
        if msg.is_response and any(
            asked != owner for (_, asked), owner in zip(digest.addresses, owners, strict=True)
        ):
            seen.add("via cname")
        if any("\\x" in rr.name for rr in msg.answers):
            seen.add("escaped")

    survey()
    missing = {"partial", "via cname", "escaped", *FAILURES} - seen
    assert not missing, missing


# --------------------------------------------------------------------- fixed cases


def test_cname_chains_fold_case_and_stop_at_loops() -> None:
    data = dns_response(
        "WWW.Example.com",
        [("EDGE.example.NET", 1, "192.0.2.7", 60), ("loop.example", 28, "2001:db8::1", 60)],
        cname_chain=["alias.example.org", "edge.example.net"],
    )
    digest = assert_digest_agrees(data)
    assert digest is not None
    assert digest.addresses[0] == (key_from_text("192.0.2.7"), "WWW.Example.com")
    loop = dns_response(
        "a.example",
        [("b.example", 5, "A.example", 9), ("b.example", 1, "192.0.2.8", 9)],
        cname_chain=["B.example"],
    )
    digest = assert_digest_agrees(loop)
    # a -> B -> A loops: the walk from b.example stops where the loop closes on itself.
    assert digest is not None and digest.addresses == ((key_from_text("192.0.2.8"), "b.example"),)


def test_a_query_digests_to_its_questions_only() -> None:
    digest = DnsDigest.from_wire(dns_query("Q.example", qtype=28))
    assert digest == DnsDigest(("Q.example",), -1, (), ())
    # A query's answers still have to decode, as parse_dns requires.
    bad = bytearray(dns_response("q.example", [("q.example", 1, b"\x01\x02\x03", 5)]))
    bad[2] &= 0x7F
    with pytest.raises(DecodeError, match="A record with 3 data bytes"):
        DnsDigest.from_wire(bytes(bad))


def _address_message(rtype: int, packed: list[bytes]) -> bytes:
    question = b"\x01q\x00" + struct.pack(">HH", rtype, 1)
    records = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 0, len(p)) + p for p in packed)
    return dns_header(1, 0x8180, 1, len(packed)) + question + records


def test_ipv6_text_is_that_of_inet_ntop_for_every_zero_pattern() -> None:
    # Which groups are zero decides the text (the "::" run, the dotted forms): all 256
    # patterns, the other groups one-digit, four-digit or mixed, with and without ffff in
    # the sixth group, which marks an IPv4-mapped address.
    packed = []
    for zeros in range(256):
        for fill in (1, 0xFFFF, 0xABC, 0x10):
            words = [0 if zeros >> i & 1 else fill for i in range(8)]
            packed.append(struct.pack(">8H", *words))
            words[5] = 0xFFFF
            packed.append(struct.pack(">8H", *words))
    for start in range(0, len(packed), 1000):
        chunk = packed[start : start + 1000]
        data = _address_message(28, chunk)
        texts = [rr.data for rr in parse_dns(data).answers]
        assert texts == [socket.inet_ntop(socket.AF_INET6, p) for p in chunk]
        digest = assert_digest_agrees(data)
        assert digest is not None
        assert [key for key, _ in digest.addresses] == [int.from_bytes(p, "big") for p in chunk]


def test_ipv4_text_and_keys() -> None:
    packed = [bytes([a, b, c, d]) for a, b, c, d in [(0, 10, 100, 255), (9, 99, 199, 1)]]
    data = _address_message(1, packed)
    assert [rr.data for rr in parse_dns(data).answers] == ["0.10.100.255", "9.99.199.1"]
    digest = assert_digest_agrees(data)
    assert digest is not None
    assert [key for key, _ in digest.addresses] == [
        0xFFFF_0000_0000 | int.from_bytes(p, "big") for p in packed
    ]


def test_names_beyond_the_stack_buffers() -> None:
    # A question of four 60-byte labels of escaped bytes (about 1 KB of text each time it
    # is read) and 30 answers pointing at it: the text outgrows the stack arena and the
    # message the stack cache, so both move to the heap mid-message.
    labels = [bytes([0x80 + i]) * 60 for i in range(4)]
    text = ".".join("".join(f"\\x{b:02x}" for b in label) for label in labels)
    answers = [(tuple(labels), 16, b"\x01x", i) for i in range(30)]
    data = dns_response(tuple(labels), answers, qtype=16)
    assert len(data) > 512
    msg = parse_dns(data)
    assert [rr.name for rr in msg.answers] == [text] * 30
    assert_digest_agrees(data)


# ------------------------------------------------------------ hostile names, counted


def _steps(data: bytes) -> tuple[BaseException | DnsMessage, int]:
    before = name_steps()
    try:
        result: BaseException | DnsMessage = parse_dns(data)
    except DecodeError as exc:
        result = exc
    return result, name_steps() - before


def test_step_counter_counts_labels_and_pointers() -> None:
    # Question: 3 labels and the root; the answer's owner: one pointer and a cached hit.
    result, steps = _steps(dns_response("a.b.example", [("a.b.example", 1, "192.0.2.1", 5)]))
    assert isinstance(result, DnsMessage)
    assert steps == 4 + 1


def _with_rdata_blob(blob: bytes, owner_at: int) -> bytes:
    """A response whose first record carries ``blob`` as opaque data and whose second
    record's owner is a pointer to ``blob[owner_at:]``."""
    question = b"\x01q\x07example\x00\x00\x01\x00\x01"
    blob_at = 12 + len(question) + 1 + 10
    first = b"\x00" + struct.pack(">HHIH", 16, 1, 0, len(blob)) + blob
    second = struct.pack(">HHHIH", 0xC000 | (blob_at + owner_at), 16, 1, 0, 0)
    return dns_header(1, 0x8180, 1, 2) + question + first + second


def test_pointer_loop_fails_after_a_few_steps() -> None:
    base = 12 + len(b"\x01q\x07example\x00\x00\x01\x00\x01") + 1 + 10
    # "b" then a pointer to "a", "a" then a pointer back to "b": a two-hop loop.
    blob = b"\x01b" + struct.pack(">H", 0xC000 | (base + 4))
    blob += b"\x01a" + struct.pack(">H", 0xC000 | base)
    result, steps = _steps(_with_rdata_blob(blob, 4))
    assert isinstance(result, DecodeError) and "does not point backwards" in str(result)
    # The question (two labels, the root), the first owner (the root), then the second
    # owner: pointer, "a", pointer, "b" and the pointer that would close the loop.
    assert steps == 3 + 1 + 5, steps


def test_long_pointer_chain_stops_at_the_jump_limit() -> None:
    base = 12 + len(b"\x01q\x07example\x00\x00\x01\x00\x01") + 1 + 10
    blob = bytearray(b"\x01a\x00")
    previous = base
    for _ in range(5000):
        here = base + len(blob)
        blob += struct.pack(">H", 0xC000 | previous)
        previous = here
    result, steps = _steps(_with_rdata_blob(bytes(blob), len(blob) - 2))
    assert isinstance(result, DecodeError) and "too many compression pointers" in str(result)
    # The question and the first owner as above, then pointers up to the one over the limit.
    assert steps == 3 + 1 + MAX_POINTER_JUMPS + 1, steps


def test_maximal_pointer_chains_cost_at_most_one_walk_per_record() -> None:
    message = pointer_chain_message(3)
    result, steps = _steps(message)
    assert isinstance(result, DnsMessage), result
    assert len(result.answers) > 4000
    # A name has at most 127 labels and 127 jumps; nothing is walked twice over that.
    assert steps <= (MAX_POINTER_JUMPS + 1) * (len(result.answers) + 1), steps
    assert DnsDigest.from_wire(message).answers[0][0] == result.questions[0].name


# ------------------------------------------------------------------- AddressSanitizer

CHECKED_RUN = textwrap.dedent(
    """
    import ctypes
    import os
    import pickle
    import sys

    if sys.argv[1] == "probe":
        # A read past the end of a bytes object must be caught: proves the sanitizer is live
        # and that bytes objects come from malloc, where it can see their ends.
        data = bytes(40)
        ctypes.string_at(id(data), sys.getsizeof(data) + 64)
        sys.exit("AddressSanitizer is not in effect")

    from dsaudit.decode import dns_wire
    from dsaudit.decode.dns import parse_dns
    from dsaudit.errors import DecodeError
    from dsaudit.naming.dns_map import DnsDigest

    assert dns_wire.__file__.startswith(os.environ["PYTHONPATH"]), dns_wire.__file__
    with open(sys.argv[1], "rb") as f:
        messages = pickle.load(f)
    decoded = 0
    for data in messages:
        for parse in (parse_dns, DnsDigest.from_wire):
            try:
                parse(data)
                decoded += 1
            except DecodeError:
                pass
    print("ok", len(messages), decoded)
    """
)


def _hostile_corpus(rng: random.Random) -> list[bytes]:
    """Ordinary, escaped, chained and maximal messages, then mutations of them."""
    labels = tuple(bytes([0x80 + i]) * 60 for i in range(4))
    seeds = [
        dns_query("www.example.com"),
        dns_response("www.example.com", [("e.example.net", 1, "192.0.2.1", 9)], ["e.example.net"]),
        dns_response("v6.example", [("v6.example", 28, "::ffff:192.0.2.1", 9)], qtype=28),
        dns_response((b"a.b", b"\x00\\", b"x" * 63), [("x.example", 12, "y.example", 1)]),
        dns_response(labels, [(labels, 16, b"\x01x", i) for i in range(30)], qtype=16),
        pointer_chain_message(1),
    ]
    base = 12 + len(b"\x01q\x07example\x00\x00\x01\x00\x01") + 1 + 10
    for links, label in ((60, b"z"), (127, b""), (128, b""), (300, b"zz")):
        blob = bytearray(b"\x01a\x00")
        previous = 0
        for _ in range(links):
            here = len(blob)
            blob += bytes((len(label),)) + label if label else b""
            blob += struct.pack(">H", 0xC000 | (base + previous))
            previous = here
        seeds.append(_with_rdata_blob(bytes(blob), previous))
    out = list(seeds)
    for _ in range(20_000):
        data = bytearray(rng.choice(seeds[:-1] if rng.random() < 0.99 else seeds))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[at] = rng.randrange(256)
            else:
                data[at : at + 2] = struct.pack(
                    ">H", 0xC000 | rng.randrange(len(data) + 2) & 0x3FFF
                )
        out.append(bytes(data[: rng.randrange(len(data) + 1)]))
    return out


def test_dns_walk_never_reads_out_of_bounds(tmp_path: Path) -> None:
    corpus = _hostile_corpus(random.Random(20240602))
    messages = tmp_path / "messages.pickle"
    messages.write_bytes(pickle.dumps(corpus))
    run = checked_runner(tmp_path, CHECKED_RUN, python_malloc=True, timeout=600)

    probe = run("probe")
    assert probe.returncode != 0 and "heap-buffer-overflow" in probe.stderr, probe.stderr[-2000:]
    proc = run(str(messages))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"ok {len(corpus)} ")
    assert "AddressSanitizer" not in proc.stderr
