"""Tests of the QUIC client Initial decoder: RFC vectors, built packets and real captures."""

from __future__ import annotations

import re

import pytest

from dsaudit.decode.quic import (
    QUIC_V1,
    QUIC_V2,
    client_hello_from_crypto,
    client_initial_keys,
    quic_initial_crypto,
)
from dsaudit.decode.tls import ClientHello
from dsaudit.errors import DecodeError
from tests.decode import _corpus
from tests.decode.rfc_vectors import (
    DCID,
    RFC9001_CLIENT_INITIAL,
    RFC9001_CRYPTO_FRAME,
    RFC9369_CLIENT_INITIAL,
    V1_CLIENT_KEYS,
    V2_CLIENT_KEYS,
)
from tests.factories import client_hello_handshake, quic_client_initial

needs_corpus = pytest.mark.skipif(not _corpus.CORPUS.is_dir(), reason="shared corpus absent")


@pytest.mark.parametrize(
    ("version", "expected"), [(QUIC_V1, V1_CLIENT_KEYS), (QUIC_V2, V2_CLIENT_KEYS)]
)
def test_initial_keys_match_rfc(version: int, expected: tuple[str, str, str]) -> None:
    keys = client_initial_keys(DCID, version)
    assert (keys.key.hex(), keys.iv.hex(), keys.hp.hex()) == expected


def test_unknown_version_has_no_keys() -> None:
    with pytest.raises(DecodeError, match="no Initial salt"):
        client_initial_keys(DCID, 0xFF00001D)


@pytest.mark.parametrize("datagram", [RFC9001_CLIENT_INITIAL, RFC9369_CLIENT_INITIAL])
def test_rfc_client_initial_decrypts(datagram: bytes) -> None:
    pieces = quic_initial_crypto(datagram)
    assert pieces == [(0, RFC9001_CRYPTO_FRAME[4:])]
    hello = client_hello_from_crypto(pieces)
    assert hello is not None
    assert (hello.sni, hello.alpn, hello.supported_versions) == (
        "example.com",
        ("alpn",),
        (0x0304,),
    )


@pytest.mark.parametrize("datagram", [RFC9001_CLIENT_INITIAL, RFC9369_CLIENT_INITIAL])
def test_tampered_ciphertext_does_not_authenticate(datagram: bytes) -> None:
    for at in (30, 600, len(datagram) - 1):
        broken = bytearray(datagram)
        broken[at] ^= 0x40
        assert quic_initial_crypto(bytes(broken)) is None


def test_every_cut_of_a_datagram_gives_none() -> None:
    data = RFC9001_CLIENT_INITIAL
    for cut in range(len(data)):
        assert quic_initial_crypto(data[:cut]) is None, cut


def test_coalesced_packet_after_the_initial_is_ignored() -> None:
    assert quic_initial_crypto(RFC9001_CLIENT_INITIAL + b"\xe0" + bytes(60)) == [
        (0, RFC9001_CRYPTO_FRAME[4:])
    ]


@pytest.mark.parametrize(
    "datagram",
    [
        b"\x40" + bytes(40),  # short header
        b"\x80\x00\x00\x00\x00" + bytes(40),  # version negotiation
        b"\xc0\xff\x00\x00\x1d" + bytes(40),  # draft-29: not decoded
        bytes([0xE0]) + RFC9001_CLIENT_INITIAL[1:],  # v1 Handshake type
        bytes([0xC0]) + RFC9369_CLIENT_INITIAL[1:],  # type 0 is Retry in v2
        b"",
    ],
)
def test_not_a_decodable_client_initial(datagram: bytes) -> None:
    assert quic_initial_crypto(datagram) is None


def test_wrong_dcid_keys_do_not_authenticate() -> None:
    data = bytearray(RFC9001_CLIENT_INITIAL)
    data[6] ^= 0x01  # first DCID byte: different keys, as for a server's Initial
    assert quic_initial_crypto(bytes(data)) is None


@pytest.mark.parametrize(
    ("datagram", "message"),
    [
        (b"\xc0\x00\x00\x00\x01\x15" + bytes(40), "destination connection ID of 21"),
        (b"\xc0\x00\x00\x00\x01\x00\x15" + bytes(40), "source connection ID of 21"),
        (b"\xc0\x00\x00\x00\x01\x00\x00\x00\x13" + bytes(40), "Length 19"),
    ],
)
def test_impossible_headers(datagram: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        quic_initial_crypto(datagram)


# ---------------------------------------------------------------- built packets


@pytest.mark.parametrize("version", [QUIC_V1, QUIC_V2])
@pytest.mark.parametrize(("pn", "pn_len"), [(0, 1), (1, 2), (300, 2), (5, 3), (7, 4)])
def test_built_initials_round_trip(version: int, pn: int, pn_len: int) -> None:
    msg = client_hello_handshake(sni=f"v{version:x}.example", alpn=("h3",))
    data = quic_client_initial(
        msg,
        version=version,
        pn=pn,
        pn_len=pn_len,
        dcid=bytes(range(20)),
        scid=b"\x01\x02",
        token=b"retry-token",
    )
    assert len(data) == 1200
    pieces = quic_initial_crypto(data)
    assert pieces == [(0, msg)]
    hello = client_hello_from_crypto(pieces)
    assert hello is not None and hello.sni == f"v{version:x}.example"


def test_padding_ping_and_ack_frames_are_skipped() -> None:
    ack = b"\x02\x05\x00\x01\x00\x01\x00"  # largest 5, delay 0, 1 extra range, first 0
    ack_ecn = b"\x03\x05\x00\x00\x00\x01\x02\x03"
    msg = client_hello_handshake(sni="frames.example")
    data = quic_client_initial(
        [(0, msg[:40]), (40, msg[40:])], frames_before=b"\x00\x00\x01" + ack + ack_ecn + b"\x01"
    )
    pieces = quic_initial_crypto(data)
    assert pieces == [(0, msg[:40]), (40, msg[40:])]


def test_walk_stops_at_other_frames() -> None:
    close = b"\x1c\x00\x00\x00"  # CONNECTION_CLOSE
    assert quic_initial_crypto(quic_client_initial(b"hello", frames_before=close)) == []


@pytest.mark.parametrize(
    "frames",
    [
        b"\x06\x00\x40\x64abc",  # CRYPTO frame declaring 100 bytes, carrying 3
        b"\x02\x05\x00\x3f\x00",  # ACK with 63 ranges and no room for them
    ],
)
def test_malformed_frames(frames: bytes) -> None:
    # pad_to=0 keeps PADDING out, so the malformed frame ends the plaintext.
    data = quic_client_initial([], frames_before=frames, pad_to=0)
    with pytest.raises(DecodeError):
        quic_initial_crypto(data)


# ---------------------------------------------------------------- assembling CRYPTO


def test_hello_spanning_two_datagrams() -> None:
    msg = client_hello_handshake(sni="span.example", extra_len=1500)
    first = quic_initial_crypto(quic_client_initial([(0, msg[:1000])]))
    second = quic_initial_crypto(quic_client_initial([(1000, msg[1000:])], pn=1))
    assert first is not None and second is not None
    assert client_hello_from_crypto(first) is None
    assert client_hello_from_crypto(second) is None
    hello = client_hello_from_crypto(second + first)
    assert hello is not None and hello.sni == "span.example"


def test_overlaps_duplicates_and_gaps() -> None:
    msg = client_hello_handshake(sni="overlap.example")
    pieces = [(20, msg[20:90]), (0, msg[:30]), (0, msg[:30]), (85, msg[85:])]
    hello = client_hello_from_crypto(pieces)
    assert hello is not None and hello.sni == "overlap.example"
    assert client_hello_from_crypto([(0, msg[:50]), (60, msg[60:])]) is None
    assert client_hello_from_crypto([]) is None
    with pytest.raises(DecodeError):
        client_hello_from_crypto([(0, b"\x02\x00\x00\x30" + bytes(48))])


# ---------------------------------------------------------------- shared corpus


def _flow_hellos(name: str) -> list[tuple[tuple[str, int], ClientHello | None]]:
    """Per client flow (in order of first Initial), the ClientHello from its Initials."""
    pieces: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
    for seg in _corpus.udp_payloads(name):
        found = quic_initial_crypto(seg.payload)
        if found is not None:
            pieces.setdefault(seg.src, []).extend(found)
    return [(src, client_hello_from_crypto(p)) for src, p in pieces.items()]


@needs_corpus
def test_corpus_google_de_matches_tshark_and_zeek() -> None:
    ((client, hello),) = _flow_hellos("quic-http3-google-de")
    assert hello is not None
    truth = _corpus.truth("quic-http3-google-de")
    assert [hello.sni] == truth["sni"]
    conv = truth["udp_conversations"][0]
    assert client == (conv["a"], conv["a_port"])
    log = next((_corpus.CORPUS / "baselines/quic-http3-google-de").glob("*quic.log"))
    lines = log.read_text().splitlines()
    fields = next(ln for ln in lines if ln.startswith("#fields")).split("\t")[1:]
    row = dict(
        zip(fields, next(ln for ln in lines if not ln.startswith("#")).split("\t"), strict=True)
    )
    assert (hello.sni, hello.alpn[0]) == (row["server_name"], row["client_protocol"])


@needs_corpus
def test_corpus_only_the_client_initial_decrypts() -> None:
    results = [
        (seg.src[1], quic_initial_crypto(seg.payload))
        for seg in _corpus.udp_payloads("quic-http3-google-de")
    ]
    decoded = [port for port, pieces in results if pieces is not None]
    assert decoded == [34347]


@needs_corpus
def test_corpus_blogspot_flows_match_tshark_and_suricata_ja4() -> None:
    truth = _corpus.truth("quic-multi-sni-blogspot")
    hellos = _flow_hellos("quic-multi-sni-blogspot")
    assert [h.sni if h else None for _, h in hellos] == [d["sni"] for d in truth["sni_detail"]]
    baseline = (_corpus.CORPUS / "baselines/quic-multi-sni-blogspot/test.yaml").read_text()
    ja4 = re.search(r"quic\.ja4: (q\w+?)_", baseline)
    assert ja4 is not None
    head = ja4.group(1)  # q13d0310h3
    for _, hello in hellos:
        assert hello is not None and hello.offers_tls13
        assert head[3] == "d"
        suites = [s for s in hello.cipher_suites if s & 0x0F0F != 0x0A0A]
        exts = [e for e in hello.extension_types if e & 0x0F0F != 0x0A0A]
        assert (len(suites), len(exts)) == (int(head[4:6]), int(head[6:8]))
        assert hello.alpn[0] == head[8:10]


@needs_corpus
def test_corpus_snaplen_cut_initials_give_none() -> None:
    payloads = [s.payload for s in _corpus.udp_payloads("null-quic-snaplen-truncated")]
    assert payloads
    assert all(quic_initial_crypto(p) is None for p in payloads)
    assert _corpus.truth("null-quic-snaplen-truncated")["sni"] == []
