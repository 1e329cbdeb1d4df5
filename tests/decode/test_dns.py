"""Tests of the DNS decoder: names, compression limits, partial messages, TCP framing, corpus."""

from __future__ import annotations

import struct

import pytest

from dsaudit.decode.dns import (
    MAX_POINTER_JUMPS,
    RTYPE_NAMES,
    DnsQuestion,
    DnsRecord,
    parse_dns,
    rtype_name,
    split_dns_tcp,
)
from dsaudit.errors import DecodeError
from tests.decode import _corpus
from tests.factories import dns_header, dns_query, dns_response, dns_tcp
from tests.work import dns_steps_run

needs_corpus = pytest.mark.skipif(not _corpus.CORPUS.is_dir(), reason="shared corpus absent")


def test_query_fields() -> None:
    msg = parse_dns(dns_query("WwW.Example.COM", qtype=28, id=0xBEEF))
    assert msg.id == 0xBEEF
    assert not msg.is_response
    assert (msg.opcode, msg.rcode, msg.truncated, msg.partial) == (0, 0, False, False)
    assert msg.questions == (DnsQuestion("WwW.Example.COM", 28, 1),)
    assert msg.answers == ()


def test_response_with_cname_chain_and_addresses() -> None:
    data = dns_response(
        "www.example.com",
        answers=[
            ("edge.example.net", 1, "192.0.2.7", 60),
            ("edge.example.net", 28, "2001:db8::7", 60),
        ],
        cname_chain=["alias.example.org", "edge.example.net"],
        ttl=1980,
        authority_count=4,
        additional_count=2,
    )
    msg = parse_dns(data)
    assert msg.is_response
    assert msg.answers == (
        DnsRecord("www.example.com", 5, 1, 1980, "alias.example.org"),
        DnsRecord("alias.example.org", 5, 1, 1980, "edge.example.net"),
        DnsRecord("edge.example.net", 1, 1, 60, "192.0.2.7"),
        DnsRecord("edge.example.net", 28, 1, 60, "2001:db8::7"),
    )
    assert (msg.authority_count, msg.additional_count) == (4, 2)


def test_compressed_and_uncompressed_decode_alike() -> None:
    args = ("a.example.com", [("b.example.com", 12, "c.example.com", 5)])
    packed = dns_response(*args)
    plain = dns_response(*args, compress=False)
    assert len(packed) < len(plain)
    assert parse_dns(packed) == parse_dns(plain)


def test_flags_rcode_opcode_truncation() -> None:
    msg = parse_dns(dns_response("gone.example", rcode=3, truncated=True))
    assert (msg.rcode, msg.truncated) == (3, True)
    data = bytearray(dns_query("x.example"))
    data[2] |= 0x5 << 3  # opcode 5 (UPDATE)
    assert parse_dns(bytes(data)).opcode == 5


def test_root_name_is_empty_text() -> None:
    msg = parse_dns(dns_query("", qtype=2))
    assert msg.questions[0].name == ""
    answer = dns_response("", answers=[("", 2, "a.root-servers.net", 518400)], qtype=2)
    assert parse_dns(answer).answers[0].name == ""


def test_label_escaping() -> None:
    labels = (b"we ird", b"a.b", b"back\\slash", b"\x00\xff", b"caf\xc3\xa9")
    msg = parse_dns(dns_query(labels))
    assert msg.questions[0].name == "we ird.a\\x2eb.back\\x5cslash.\\x00\\xff.caf\\xc3\\xa9"


def test_other_types_carry_no_data_and_other_classes_no_address() -> None:
    data = dns_response(
        "x.example",
        answers=[("x.example", 16, b"\x05hello", 7), ("x.example", 15, b"\x00\x0a\x00", 7)],
        qtype=16,
    )
    assert [r.data for r in parse_dns(data).answers] == [None, None]
    chaos = bytearray(dns_response("x.example", answers=[("x.example", 1, b"\x01\x02", 7)]))
    # class CH (3) A records are not IPv4 addresses: the 2-byte RDATA must not fail.
    chaos[-10:-8] = b"\x00\x03"
    assert parse_dns(bytes(chaos)).answers[0] == DnsRecord("x.example", 1, 3, 7, None)


def test_mdns_cache_flush_class_still_gives_address() -> None:
    data = bytearray(dns_response("printer.local", answers=[("printer.local", 1, "10.0.0.9", 120)]))
    data[-12:-10] = b"\x80\x01"
    (record,) = parse_dns(bytes(data)).answers
    assert (record.rclass, record.data) == (0x8001, "10.0.0.9")


def test_bad_address_length_is_malformed() -> None:
    data = dns_response("x.example", answers=[("x.example", 1, b"\x01\x02\x03", 5)])
    with pytest.raises(DecodeError, match="A record with 3"):
        parse_dns(data)


def test_cname_rdata_length_must_match_name() -> None:
    data = dns_response("x.example", answers=[("x.example", 5, b"\x01y\x00\x00", 5)])
    with pytest.raises(DecodeError, match="CNAME data length"):
        parse_dns(data)


def test_rtype_names() -> None:
    for code, name in [
        (1, "A"),
        (5, "CNAME"),
        (28, "AAAA"),
        (33, "SRV"),
        (41, "OPT"),
        (64, "SVCB"),
        (65, "HTTPS"),
        (255, "ANY"),
        (6, "SOA"),
        (15, "MX"),
    ]:
        assert RTYPE_NAMES[code] == name
        assert rtype_name(code) == name
    assert rtype_name(65280) == "TYPE65280"


# ---------------------------------------------------------------- truncation


def test_header_shorter_than_12_bytes() -> None:
    with pytest.raises(DecodeError, match="shorter than its header"):
        parse_dns(b"\x00" * 11)


def test_cut_inside_questions_fails() -> None:
    data = dns_query("cut.example.com")
    for cut in range(12, len(data)):
        with pytest.raises(DecodeError, match="question section"):
            parse_dns(data[:cut])


def test_cut_inside_answers_is_partial() -> None:
    data = dns_response(
        "www.example.com",
        answers=[("www.example.com", 1, "192.0.2.1", 5), ("www.example.com", 1, "192.0.2.2", 5)],
    )
    whole = parse_dns(data)
    first_end = len(
        dns_response("www.example.com", answers=[("www.example.com", 1, "192.0.2.1", 5)])
    )
    question_end = len(dns_response("www.example.com"))
    for cut in range(question_end, len(data)):
        msg = parse_dns(data[:cut])
        assert msg.partial
        assert msg.questions == whole.questions
        assert msg.answers == whole.answers[: 1 if cut >= first_end else 0]
    assert not whole.partial


# ------------------------------------------------------- compression hardening


def _with_question_name(wire_name: bytes, *, extra: bytes = b"") -> bytes:
    return dns_header(1, 0x0100, 1, 0) + extra + wire_name + b"\x00\x01\x00\x01"


def test_pointer_to_itself_fails() -> None:
    with pytest.raises(DecodeError, match="does not point backwards"):
        parse_dns(_with_question_name(b"\xc0\x0c"))


def test_forward_pointer_fails() -> None:
    with pytest.raises(DecodeError, match="does not point backwards"):
        parse_dns(_with_question_name(b"\x01a\xc0\x20"))


def test_pointer_into_header_fails() -> None:
    with pytest.raises(DecodeError, match="lands in the header"):
        parse_dns(_with_question_name(b"\xc0\x02"))


def _blob_message(blob: bytes, name_at_blob: int) -> bytes:
    """A response whose first answer carries ``blob`` as opaque RDATA and whose second
    answer's owner name is a pointer to ``blob[name_at_blob:]``.

    Opaque RDATA is never decoded, so ``blob`` can hold hand-made name fragments for
    the second name to point into.
    """
    question = b"\x01q\x07example\x00\x00\x01\x00\x01"
    blob_at = 12 + len(question) + 1 + 10
    first = b"\x00" + struct.pack(">HHIH", 0xFF00, 1, 0, len(blob)) + blob
    second = struct.pack(">H", 0xC000 | (blob_at + name_at_blob)) + struct.pack(
        ">HHIH", 16, 1, 0, 0
    )
    return dns_header(1, 0x8180, 1, 2) + question + first + second


def _blob_offset() -> int:
    return 12 + len(b"\x01q\x07example\x00\x00\x01\x00\x01") + 1 + 10


def test_blob_message_helper_decodes_a_plain_target() -> None:
    msg = parse_dns(_blob_message(b"\x03abc\x00", 0))
    assert msg.answers[1].name == "abc"


def test_loop_through_a_label_fails() -> None:
    # blob: "a" then a pointer back to the blob's own start: an endless name.
    loop = b"\x01a" + struct.pack(">H", 0xC000 | _blob_offset())
    result, steps = dns_steps_run(lambda: parse_dns(_blob_message(loop, 0)))
    assert isinstance(result, DecodeError) and "does not point backwards" in str(result)
    # Refused at the pointer, not walked until the jump limit (127 pointers).
    assert steps < 20, steps


def test_two_hop_loop_fails() -> None:
    base = _blob_offset()
    # W at base: "b" -> pointer to Y; Y at base+4: "a" -> pointer to W.
    blob = b"\x01b" + struct.pack(">H", 0xC000 | (base + 4))
    blob += b"\x01a" + struct.pack(">H", 0xC000 | base)
    with pytest.raises(DecodeError, match="does not point backwards"):
        parse_dns(_blob_message(blob, 4))


def test_pointer_chain_depth_is_bounded_and_fast() -> None:
    # 2000 pointers each pointing at the one before: legal direction, absurd depth.
    base = _blob_offset()
    blob = bytearray(b"\x01a\x00")
    prev = base
    for _ in range(2000):
        here = base + len(blob)
        blob += struct.pack(">H", 0xC000 | prev)
        prev = here
    result, steps = dns_steps_run(lambda: parse_dns(_blob_message(bytes(blob), len(blob) - 2)))
    assert isinstance(result, DecodeError) and "too many compression pointers" in str(result)
    # The walk stops after a bounded number of hops, not after all 2000 pointers.
    assert steps <= MAX_POINTER_JUMPS + 10, steps


def _label_chain(links: int, label: bytes = b"z") -> tuple[bytes, int]:
    """``links`` copies of ``label``, each followed by a pointer to the previous one."""
    base = _blob_offset()
    wire = bytes((len(label),)) + label
    blob = bytearray(wire + b"\x00")
    last = 0
    for _ in range(links - 1):
        here = len(blob)
        blob += wire + struct.pack(">H", 0xC000 | (base + last))
        last = here
    return bytes(blob), last


def test_label_chain_up_to_255_octets_decodes() -> None:
    blob, last = _label_chain(127)  # 127 * 2 + 1 = 255 octets, 127 jumps
    name = parse_dns(_blob_message(blob, last)).answers[1].name
    assert name == ".".join(["z"] * 127)


def test_label_chain_over_255_octets_fails() -> None:
    blob, last = _label_chain(84, b"zz")  # 84 * 3 + 1 = 253 octets
    assert parse_dns(_blob_message(blob, last)).answers[1].name == ".".join(["zz"] * 84)
    blob, last = _label_chain(85, b"zz")  # 256 octets
    with pytest.raises(DecodeError, match="longer than 255"):
        parse_dns(_blob_message(blob, last))


def test_label_chain_over_127_jumps_fails() -> None:
    blob, last = _label_chain(128)
    with pytest.raises(DecodeError, match="too many compression pointers"):
        parse_dns(_blob_message(blob, last))


def _pointer_chain(links: int) -> bytes:
    """ "a" at the blob start, then ``links`` pointers, each to the one before."""
    base = _blob_offset()
    blob = bytearray(b"\x01a\x00")
    prev = base
    for _ in range(links):
        here = base + len(blob)
        blob += struct.pack(">H", 0xC000 | prev)
        prev = here
    return bytes(blob)


def _three_answers(blob: bytes, second: bytes, third: bytes) -> bytes:
    """Like _blob_message, but answers 2 and 3 have the given owner-name bytes."""
    question = b"\x01q\x07example\x00\x00\x01\x00\x01"
    first = b"\x00" + struct.pack(">HHIH", 0xFF00, 1, 0, len(blob)) + blob
    tail = struct.pack(">HHIH", 16, 1, 0, 0)
    return dns_header(1, 0x8180, 1, 3) + question + first + second + tail + third + tail


def test_names_reused_from_earlier_records_count_their_jumps() -> None:
    base = _blob_offset()
    blob = _pointer_chain(128)
    link = [base + 3 + 2 * i for i in range(128)]  # offsets of the pointer links
    # Answer 2 walks 101 pointers and is fine; answer 3 walks 28 new ones and then
    # reaches answer 2's name: 129 in all.
    ok = _three_answers(blob, struct.pack(">H", 0xC000 | link[99]), b"\x00")
    assert parse_dns(ok).answers[1].name == "a"
    bad = _three_answers(
        blob, struct.pack(">H", 0xC000 | link[99]), struct.pack(">H", 0xC000 | link[127])
    )
    with pytest.raises(DecodeError, match="too many compression pointers"):
        parse_dns(bad)


def test_names_reused_from_earlier_records_count_their_octets() -> None:
    blob, last = _label_chain(50, b"zz")  # 151 octets
    second = struct.pack(">H", 0xC000 | (_blob_offset() + last))
    fits = b"\x02yy" * 34 + second  # 102 + 151 + 1 = 254
    assert parse_dns(_three_answers(blob, second, fits)).answers[2].name.count("yy") == 34
    too_long = b"\x02yy" * 35 + second  # 257
    with pytest.raises(DecodeError, match="longer than 255"):
        parse_dns(_three_answers(blob, second, too_long))


def test_name_over_255_octets_fails() -> None:
    labels = [b"x" * 63] * 4  # 4 * 64 + 1 = 257 octets
    with pytest.raises(DecodeError, match="longer than 255"):
        parse_dns(dns_query(labels))
    ok = [b"x" * 63] * 3 + [b"x" * 61]  # exactly 255
    assert len(parse_dns(dns_query(ok)).questions[0].name) == 253


def test_reserved_label_types_fail() -> None:
    with pytest.raises(DecodeError, match="label type"):
        parse_dns(_with_question_name(b"\x41abc\x00"))


def test_huge_counts_with_little_data() -> None:
    header = dns_header(7, 0x8180, 1, 0xFFFF, 0xFFFF, 0xFFFF)
    data = header + b"\x00\x00\x01\x00\x01"
    msg = parse_dns(data)
    assert msg.partial and msg.answers == ()
    with pytest.raises(DecodeError):
        parse_dns(dns_header(7, 0, 0xFFFF, 0) + b"\x00\x00\x01\x00\x01")


# ---------------------------------------------------------------- TCP framing


def test_split_dns_tcp() -> None:
    a, b = dns_query("a.example"), dns_query("b.example", id=2)
    stream = dns_tcp(a, b)
    assert split_dns_tcp(stream) == ([a, b], len(stream))
    for cut in range(len(stream)):
        messages, used = split_dns_tcp(stream[:cut])
        expected = [a] if cut >= len(a) + 2 else []
        assert messages == expected
        assert used == sum(len(m) + 2 for m in expected)
    assert split_dns_tcp(b"") == ([], 0)


def test_split_dns_tcp_rejects_impossible_length() -> None:
    with pytest.raises(DecodeError, match="below the header size"):
        split_dns_tcp(b"\x00\x05hello")


# ---------------------------------------------------------------- shared corpus

CORPUS_DNS = [
    "dns-tcp-aaaa",
    "dns-tcp-multi-request",
    "dns-udp-a-aaaa-mx",
    "dns-udp-cname-chain",
    "dns-udp-nxdomain-soa",
    "http-dns-wikipedia",
    "mixed-browsing-windows",
    "rawip-dlt101-dns-https-ech",
    "rawip-dlt101-ipv4-dns",
    "rawip6-dlt229-dns",
    "smtp-tls-dns-mixed",
    "snaplen-truncated-dns",
    "tls13-sni-curl-dns",
]


def _corpus_messages(name: str) -> list[bytes]:
    messages = [s.payload for s in _corpus.udp_payloads(name, 53)]
    for flow in _corpus.tcp_flows(name):
        if flow.server[1] != 53:
            continue
        for segs, isn in (
            (flow.client_segments, flow.client_isn),
            (flow.server_segments, flow.server_isn),
        ):
            found, _ = split_dns_tcp(_corpus.stream(segs, isn))
            messages.extend(found)
    return messages


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_DNS)
def test_corpus_names_and_answers_match_tshark(name: str) -> None:
    truth = _corpus.truth(name)
    queries: set[str] = set()
    records: set[tuple[str, str, str | None]] = set()
    nxdomain: set[str] = set()
    for raw in _corpus_messages(name):
        msg = parse_dns(raw)
        queries.update(q.name for q in msg.questions)
        records.update(
            (r.name, rtype_name(r.rtype), r.data) for r in msg.answers if r.rtype in (1, 5, 28)
        )
        if msg.is_response and msg.rcode == 3:
            nxdomain.update(q.name for q in msg.questions)
    assert queries == set(truth["dns_queries"])
    want = {(r["name"], r["type"], r["data"]) for r in truth["dns_answers"]["records"]}
    assert records == want
    assert nxdomain == set(truth["dns_nxdomain"])


@needs_corpus
def test_corpus_snaplen_cut_response_is_partial() -> None:
    responses = [parse_dns(p) for p in _corpus_messages("snaplen-truncated-dns")]
    (cut,) = [m for m in responses if m.is_response]
    assert cut.partial
    assert [r.data for r in cut.answers] == ["192.139.46.66"]
