"""Tests of the TLS ClientHello decoder, on built messages and on the shared corpus."""

from __future__ import annotations

import re
import struct
import warnings

import pytest

from dsaudit.decode.tls import (
    MAX_HANDSHAKE_LENGTH,
    ClientHello,
    looks_like_client_hello,
    parse_client_hello,
    parse_client_hello_handshake,
)
from dsaudit.errors import DecodeError
from tests.decode import _corpus
from tests.factories import (
    client_hello,
    client_hello_handshake,
    sni_extension,
    tls_extension,
    tls_records,
)

needs_corpus = pytest.mark.skipif(not _corpus.CORPUS.is_dir(), reason="shared corpus absent")


def test_fields_of_a_built_hello() -> None:
    data = client_hello(
        sni="www.Example.com",
        alpn=("h2", "http/1.1"),
        supported_versions=(0x0304, 0x0303),
        ech=True,
        legacy_version=0x0303,
        cipher_suites=(0x1301, 0xC02F),
    )
    hello = parse_client_hello(data)
    assert hello == ClientHello(
        sni="www.Example.com",
        alpn=("h2", "http/1.1"),
        supported_versions=(0x0304, 0x0303),
        legacy_version=0x0303,
        has_ech=True,
        cipher_suites=(0x1301, 0xC02F),
        extension_types=(0, 16, 43, 0xFE0D),
    )
    assert hello.offers_tls13


def test_tls12_hello_without_optional_extensions() -> None:
    hello = parse_client_hello(client_hello(sni=None, alpn=(), supported_versions=None))
    assert hello is not None
    assert hello.sni is None
    assert hello.alpn == ()
    assert hello.supported_versions == ()
    assert not hello.offers_tls13
    assert not hello.has_ech


def test_hello_without_extensions_block() -> None:
    msg = client_hello_handshake(with_extensions_block=False, legacy_version=0x0301)
    hello = parse_client_hello(tls_records(msg))
    assert hello is not None
    assert (hello.sni, hello.legacy_version, hello.extension_types) == (None, 0x0301, ())


@pytest.mark.parametrize("records", [2, 3, 7])
def test_handshake_split_over_records(records: int) -> None:
    data = client_hello(sni="split.example", extra_len=300, records=records)
    assert data.count(b"\x16\x03\x01") >= records
    hello = parse_client_hello(data)
    assert hello is not None and hello.sni == "split.example"


def test_large_hello_over_two_full_records() -> None:
    # 20 KB does not fit one 16 KiB record: a real client must use two.
    msg = client_hello_handshake(sni="big.example", extra_len=20000)
    first, second = msg[:16384], msg[16384:]
    data = tls_records(first) + tls_records(second)
    hello = parse_client_hello(data)
    assert hello is not None and hello.sni == "big.example"


def test_every_prefix_needs_more() -> None:
    data = client_hello(sni="prefix.example", records=2)
    for cut in range(len(data)):
        assert parse_client_hello(data[:cut]) is None, cut
    assert parse_client_hello(data) is not None


def test_bytes_after_the_hello_are_ignored() -> None:
    data = client_hello(sni="a.example") + b"\x14\x03\x03\x00\x01\x01" + b"junk"
    hello = parse_client_hello(data)
    assert hello is not None and hello.sni == "a.example"


def test_sni_escaping_of_odd_bytes() -> None:
    raw = b"ex\x00am\\ple.\xc3\xa9\x7f.com"
    hello = parse_client_hello(client_hello(sni=raw))
    assert hello is not None
    assert hello.sni == "ex\\x00am\\x5cple.\\xc3\\xa9\\x7f.com"
    assert hello.sni.isprintable()


def test_first_host_name_wins_and_other_name_types_are_skipped() -> None:
    entries = struct.pack(">BH", 7, 3) + b"xyz"
    entries += struct.pack(">BH", 0, 5) + b"first"
    entries += struct.pack(">BH", 0, 6) + b"second"
    ext = tls_extension(0, struct.pack(">H", len(entries)) + entries)
    hello = parse_client_hello(client_hello(sni=None, extensions=[ext]))
    assert hello is not None and hello.sni == "first"


def test_duplicate_server_name_extension_keeps_first() -> None:
    hello = parse_client_hello(client_hello(sni="one.example", extensions=[sni_extension("two")]))
    assert hello is not None and hello.sni == "one.example"
    assert hello.extension_types.count(0) == 2


def test_empty_server_name_list_means_no_sni() -> None:
    hello = parse_client_hello(client_hello(sni=None, extensions=[sni_extension()]))
    assert hello is not None and hello.sni is None


def test_empty_host_name_is_malformed() -> None:
    with pytest.raises(DecodeError, match="empty host_name"):
        parse_client_hello(client_hello(sni=b""))


def test_bare_handshake_message() -> None:
    msg = client_hello_handshake(sni="bare.example")
    hello = parse_client_hello_handshake(msg)
    assert hello == parse_client_hello(tls_records(msg))
    assert hello is not None and hello.sni == "bare.example"
    for cut in range(len(msg)):
        assert parse_client_hello_handshake(msg[:cut]) is None
    assert parse_client_hello_handshake(msg + b"\x0b\x00\x00\x00") == hello


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n", "record type 0x47"),
        (b"G", "record type 0x47"),
        (b"\x80\x2e\x01\x03\x01", "record type 0x80"),  # SSLv2-compatible hello
        (b"\x16\x02", "major version"),
        (b"\x16\x03\x09", "minor version"),
        (b"\x17\x03\x03\x00\x10" + bytes(16), "record type 0x17"),
        (b"\x16\x03\x01\x00\x00", "record length 0"),
        (b"\x16\x03\x01\x50\x00\x01", "record length 20480"),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x46", "handshake type 2"),
        (b"\x16\x03\x01\x00\x01\x0b", "handshake type 11"),
    ],
)
def test_not_a_client_hello(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        parse_client_hello(data)


def test_declared_length_over_cap_fails_without_waiting() -> None:
    too_long = MAX_HANDSHAKE_LENGTH + 1
    data = b"\x16\x03\x01\x40\x00\x01" + too_long.to_bytes(3, "big")
    with pytest.raises(DecodeError, match="exceeds"):
        parse_client_hello(data)
    with pytest.raises(DecodeError, match="exceeds"):
        parse_client_hello_handshake(b"\x01" + too_long.to_bytes(3, "big"))


def test_non_handshake_record_in_the_middle_fails() -> None:
    data = client_hello(records=2)
    first_len = struct.unpack_from(">H", data, 3)[0]
    cut = 5 + first_len
    alert = b"\x15\x03\x03\x00\x02\x02\x28"
    with pytest.raises(DecodeError, match="record type 0x15"):
        parse_client_hello(data[:cut] + alert)


def test_extension_length_mismatches_are_malformed() -> None:
    suites = (0x1301, 0x1302)
    msg = bytearray(client_hello_handshake(sni="x.example", cipher_suites=suites))
    # header 4, version 2, random 32, session id 1 + 32, suites 2 + 4, compression 2
    at = 4 + 2 + 32 + 1 + 32 + 2 + 2 * len(suites) + 2
    assert msg[at - 2 : at] == b"\x01\x00"
    msg[at + 1] ^= 0x01
    with pytest.raises(DecodeError, match="extensions length"):
        parse_client_hello_handshake(bytes(msg))


def test_overlong_extension_is_malformed() -> None:
    ext = struct.pack(">HH", 0x1234, 40) + b"short"
    msg = client_hello_handshake(sni=None, alpn=(), supported_versions=None, extensions=[ext])
    with pytest.raises(DecodeError):
        parse_client_hello_handshake(msg)


@pytest.mark.parametrize(
    "ext",
    [
        tls_extension(16, b"\x00\x03\x00ab"),  # zero-length protocol name
        tls_extension(16, b"\x00\x05\x02h2"),  # list length larger than the extension
        tls_extension(43, b"\x03\x03\x04\x03"),  # odd versions length
        tls_extension(43, b""),
        tls_extension(0, b"\x00\x05\x00\x00\x09ab"),  # host_name longer than the list
    ],
)
def test_malformed_known_extensions(ext: bytes) -> None:
    msg = client_hello_handshake(sni=None, alpn=(), supported_versions=None, extensions=[ext])
    with pytest.raises(DecodeError):
        parse_client_hello_handshake(msg)


def test_session_id_over_32_bytes_is_malformed() -> None:
    with pytest.raises(DecodeError, match="session id"):
        parse_client_hello_handshake(client_hello_handshake(session_id=bytes(33)))


def test_looks_like_client_hello() -> None:
    assert looks_like_client_hello(client_hello())
    assert looks_like_client_hello(client_hello()[:6])
    assert not looks_like_client_hello(client_hello()[:5])
    assert not looks_like_client_hello(b"\x16\x03\x05\x00\x10\x01")
    assert not looks_like_client_hello(b"\x16\x03\x01\x00\x10\x02")
    assert not looks_like_client_hello(b"\x17\x03\x03\x00\x10\x01")
    assert not looks_like_client_hello(b"\x16\x03\x01\x00\x00\x01")
    assert not looks_like_client_hello(b"GET / HTTP/1.1\r\n")


# ------------------------------------------------------------------ shared corpus

# Captures whose ClientHellos all open their TCP stream. Left out on purpose:
# ldap-starttls-sni and smtp-starttls (the hello follows a STARTTLS exchange), and
# tls13-hrr-no-sni is checked separately (its second hello follows a HelloRetryRequest).
CORPUS_TLS = [
    "corrupt-tls-bad-record-after-6",
    "ipv6-tls13-google",
    "mixed-browsing-windows",
    "null-tls-alpn-h2",
    "rawip4-dlt228-tls-sni",
    "sll2-tls13-openjdk",
    "smtp-tls-dns-mixed",
    "tls-no-sni-ja4",
    "tls-sni-split-2-segments",
    "tls-sni-split-mtu300",
    "tls12-sni-gstatic",
    "tls13-ech-outer-sni",
    "tls13-kyber-large-clienthello",
    "tls13-sni-curl-dns",
]


def _stream_hellos(name: str) -> list[ClientHello]:
    hellos = []
    for flow in _corpus.tcp_flows(name):
        data = _corpus.stream(flow.client_segments, flow.client_isn)
        if looks_like_client_hello(data):
            hello = parse_client_hello(data)
            assert hello is not None, f"{name}: {flow.client} hello incomplete"
            hellos.append(hello)
    return hellos


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_TLS)
def test_corpus_hellos_match_tshark(name: str) -> None:
    want = [
        (h["sni"], h["offers_tls13"], int(h["legacy_version"], 16))
        for h in _corpus.truth(name)["tls_client_hellos"]
        if h["transport"] == "tcp"
    ]
    got = [(h.sni, h.offers_tls13, h.legacy_version) for h in _stream_hellos(name)]
    assert got == want


@needs_corpus
def test_corpus_sni_split_over_two_segments() -> None:
    flow = _corpus.tcp_flows("tls-sni-split-2-segments")[0]
    payloads = [s.payload for s in flow.client_segments if s.payload]
    assert len(payloads) >= 2
    data = _corpus.stream(flow.client_segments, flow.client_isn)
    assert parse_client_hello(payloads[0]) is None
    hello = parse_client_hello(data)
    assert hello is not None and hello.sni == "clients2.google.com"


@needs_corpus
def test_corpus_hrr_first_hello() -> None:
    hellos = _stream_hellos("tls13-hrr-no-sni")
    truth = _corpus.truth("tls13-hrr-no-sni")["tls_client_hellos"]
    assert len(hellos) == 1 and len(truth) == 2
    assert (hellos[0].sni, hellos[0].offers_tls13) == (truth[0]["sni"], truth[0]["offers_tls13"])


@needs_corpus
def test_corpus_ech_outer_hello_flags_ech() -> None:
    hellos = _stream_hellos("tls13-ech-outer-sni")
    assert hellos and all(h.has_ech for h in hellos)
    assert not any(h.has_ech for h in _stream_hellos("tls13-sni-curl-dns"))


def _is_grease(value: int) -> bool:
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


@needs_corpus
def test_corpus_fields_match_arkime_ja3_string() -> None:
    baseline = (_corpus.CORPUS / "baselines/null-tls-alpn-h2/tls-alpn-h2.test").read_text()
    ja3 = re.search(r'"ja3string" : \[\s*"([^"]+)"', baseline)
    assert ja3 is not None
    version, suites, extensions = ja3.group(1).split(",")[:3]
    (hello,) = _stream_hellos("null-tls-alpn-h2")
    assert str(hello.legacy_version) == version
    assert "-".join(str(s) for s in hello.cipher_suites if not _is_grease(s)) == suites
    assert "-".join(str(e) for e in hello.extension_types if not _is_grease(e)) == extensions
    assert hello.alpn[0] == "h2"


@needs_corpus
def test_corpus_counts_match_suricata_ja4() -> None:
    baseline = (_corpus.CORPUS / "baselines/tls-no-sni-ja4/test.yaml").read_text()
    ja4 = re.search(r"tls\.ja4: (t\w+?)_", baseline)
    assert ja4 is not None
    head = ja4.group(1)  # e.g. t12i1810s1: proto, version, SNI flag, counts, ALPN ends
    (hello,) = _stream_hellos("tls-no-sni-ja4")
    assert head[3] == ("d" if hello.sni else "i")
    assert int(head[4:6]) == len([s for s in hello.cipher_suites if not _is_grease(s)])
    assert int(head[6:8]) == len([e for e in hello.extension_types if not _is_grease(e)])
    assert head[8:10] == hello.alpn[0][0] + hello.alpn[0][-1]


def test_server_flight_reads_the_first_certificates_issuer_from_any_prefix() -> None:
    from dsaudit.decode.tls import parse_server_flight
    from tests.factories import certificate_chain, server_flight

    flight = server_flight(*certificate_chain("Issuing CA, Inc."))
    whole = parse_server_flight(flight)
    # RFC 4514 escapes the comma with a backslash, which the shared text rule escapes again.
    assert whole.issuer == "CN=Issuing CA\\x5c, Inc."
    assert (whole.alert, whole.complete) == (None, False)
    # Every prefix short of the Certificate message's end knows nothing yet, and says so.
    cert_end = flight.index(b"\x0e\x00\x00\x00")
    for cut in range(0, cert_end - 5, 37):
        part = parse_server_flight(flight[:cut])
        assert (part.issuer, part.complete) == (None, False)


def test_server_flight_alerts_and_encrypted_records() -> None:
    from dsaudit.decode.tls import parse_server_flight
    from tests.factories import tls_alert

    assert parse_server_flight(tls_alert(2, 42)).alert == "fatal bad_certificate"
    assert parse_server_flight(tls_alert(1, 0)).alert == "warning close_notify"
    assert parse_server_flight(tls_alert(7, 200)).alert == "level 7 alert 200"
    # TLS 1.3: after the ServerHello comes ChangeCipherSpec, then only ciphertext.
    ccs = b"\x14\x03\x03\x00\x01\x01" + tls_alert(2, 40)
    assert parse_server_flight(ccs) == parse_server_flight(b"\x14\x03\x03\x00\x01\x01")
    assert parse_server_flight(ccs).complete and parse_server_flight(ccs).alert is None


def test_server_flight_with_a_broken_certificate_has_no_issuer() -> None:
    from dsaudit.decode.tls import parse_server_flight
    from tests.factories import certificate_chain, certificate_handshake, tls_records

    leaf, _ = certificate_chain("Some CA")
    for der in (leaf[:-40], b"\x30\x03\x02\x01\x01", leaf[:10] + bytes(len(leaf) - 10)):
        got = parse_server_flight(tls_records(certificate_handshake(der), version=0x0303))
        assert got.issuer is None


def test_a_certificate_cryptography_only_warns_about_gives_its_issuer_quietly(
    recwarn: pytest.WarningsRecorder,
) -> None:
    # A serial number of zero: cryptography loads it but warns (a Python warning printed in the
    # middle of a report); the issuer is still read, and nothing is printed.
    from dsaudit.decode.tls import parse_server_flight
    from tests.factories import certificate_chain, server_flight

    leaf, ca = certificate_chain("DSM Internal CA")
    at = leaf.index(b"\xa0\x03\x02\x01\x02") + 5  # after the version: the serial number
    assert leaf[at : at + 3] == b"\x02\x01\x02"
    serial_zero = leaf[:at] + b"\x02\x01\x00" + leaf[at + 3 :]
    warnings.simplefilter("always")
    got = parse_server_flight(server_flight(serial_zero, ca))
    assert got.issuer == "CN=DSM Internal CA"
    assert [str(w.message) for w in recwarn] == []


def test_server_flight_with_a_certificate_cryptography_refuses_has_no_issuer() -> None:
    # cryptography raises InvalidVersion for an unknown version number and TypeError for a
    # name attribute of the wrong ASN.1 type: a server's bytes must not crash naming.
    from dsaudit.decode.tls import parse_server_flight
    from tests.factories import certificate_chain, certificate_handshake, tls_records

    leaf, _ = certificate_chain("\x00CA")
    at = leaf.index(b"\xa0\x03\x02\x01\x02") + 4  # [0] EXPLICIT INTEGER 2: X.509 v3
    version_7 = leaf[:at] + b"\x07" + leaf[at + 1 :]
    at = leaf.index(b"\x0c\x03\x00CA")  # the issuer CN as a UTF8String
    cn_as_bit_string = leaf[:at] + b"\x03" + leaf[at + 1 :]
    for der in (version_7, cn_as_bit_string):
        got = parse_server_flight(tls_records(certificate_handshake(der), version=0x0303))
        assert (got.alert, got.issuer, got.complete) == (None, None, False)
    # The same certificate unaltered does give its issuer (RFC 4514 writes the NUL as "\\00",
    # and the shared text rule escapes that backslash).
    good = parse_server_flight(tls_records(certificate_handshake(leaf), version=0x0303))
    assert good.issuer == "CN=\\x5c00CA"
