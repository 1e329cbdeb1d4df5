"""QUIC client Initial decoder: removes Initial protection (RFC 9001 5), returns CRYPTO data.

Hand-written on top of the ``cryptography`` package's AES primitives because no
maintained library decrypts a single captured Initial (aioquic only does so inside a
live connection). Key derivation uses stdlib ``hmac`` directly: every output here is
at most one SHA-256 block, so HKDF-Expand is a single HMAC call, and keys are cached
per (version, DCID) because a client reuses its DCID for all its Initials.

Outcomes of :func:`quic_initial_crypto`: a list of CRYPTO pieces; None when the
datagram is not a long-header QUIC v1/v2 Initial, is cut short (snaplen), or does not
authenticate under the client keys (e.g. a server Initial); DecodeError when a header
field is impossible (connection ID over 20 bytes, a Length too small to hold a packet)
or the authenticated payload holds malformed frames.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from dsaudit.decode.tls import MAX_HANDSHAKE_LENGTH, ClientHello, parse_client_hello_handshake
from dsaudit.errors import DecodeError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "QUIC_V1",
    "QUIC_V2",
    "InitialKeys",
    "client_hello_from_crypto",
    "client_initial_keys",
    "quic_initial_crypto",
]

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF

_SALTS = {
    QUIC_V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),  # RFC 9001 5.2
    QUIC_V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),  # RFC 9369 3.3.1
}
_LABEL_PREFIX = {QUIC_V1: b"quic ", QUIC_V2: b"quicv2 "}
# Long-header packet type of Initial: 0 in v1, 1 in v2 (RFC 9369 3.2).
_INITIAL_TYPE = {QUIC_V1: 0, QUIC_V2: 1}
MAX_CID_LENGTH = 20
_SAMPLE_OFFSET = 4  # the sample starts 4 bytes after the packet number field begins
_SAMPLE_LENGTH = 16
_TAG_LENGTH = 16

FRAME_PADDING = 0x00
FRAME_PING = 0x01
FRAME_ACK = 0x02
FRAME_ACK_ECN = 0x03
FRAME_CRYPTO = 0x06

_U32 = struct.Struct(">I")
_NONZERO = re.compile(rb"[^\x00]")


@dataclass(frozen=True, slots=True)
class InitialKeys:
    """AEAD key, IV and header-protection key protecting one side's Initial packets."""

    key: bytes
    iv: bytes
    hp: bytes


class _Short(DecodeError):
    """The datagram ends inside the packet header or payload."""


def client_initial_keys(dcid: bytes, version: int = QUIC_V1) -> InitialKeys:
    """Derive the client Initial keys for a destination connection ID (RFC 9001 5.2)."""
    salt = _SALTS.get(version)
    if salt is None:
        raise DecodeError(f"no Initial salt known for QUIC version {version:#010x}")
    # Imported here: hashlib's start-up costs every run a few milliseconds, and only
    # QUIC traffic needs it.
    import hmac

    initial_secret = hmac.digest(salt, dcid, "sha256")  # HKDF-Extract
    secret = _expand_label(initial_secret, b"client in", 32)
    prefix = _LABEL_PREFIX[version]
    return InitialKeys(
        key=_expand_label(secret, prefix + b"key", 16),
        iv=_expand_label(secret, prefix + b"iv", 12),
        hp=_expand_label(secret, prefix + b"hp", 16),
    )


def quic_initial_crypto(datagram: bytes) -> list[tuple[int, bytes]] | None:
    """CRYPTO frame pieces ``(offset, data)`` of the client Initial that starts ``datagram``.

    Only the first packet of a coalesced datagram is read. Frames are walked until
    one other than PADDING, PING, ACK or CRYPTO; an Initial without CRYPTO frames
    gives an empty list. See the module docstring for None and DecodeError.
    """
    if not isinstance(datagram, bytes):
        datagram = bytes(datagram)
    n = len(datagram)
    if n < 7 or not datagram[0] & 0x80:
        return None
    first = datagram[0]
    version = _U32.unpack_from(datagram, 1)[0]
    if version not in _SALTS or (first >> 4) & 3 != _INITIAL_TYPE[version]:
        return None
    try:
        dcid_len = datagram[5]
        if dcid_len > MAX_CID_LENGTH:
            raise DecodeError(f"destination connection ID of {dcid_len} bytes")
        pos = 6 + dcid_len
        dcid = datagram[6:pos]
        if pos >= n:
            raise _Short("datagram ends inside the source connection ID")
        scid_len = datagram[pos]
        if scid_len > MAX_CID_LENGTH:
            raise DecodeError(f"source connection ID of {scid_len} bytes")
        pos += 1 + scid_len
        token_len, pos = _varint(datagram, pos)
        pos += token_len
        length, pn_offset = _varint(datagram, pos)
    except _Short:
        return None
    if length < _SAMPLE_OFFSET + _SAMPLE_LENGTH:
        raise DecodeError(f"Initial packet Length {length} cannot hold a protected packet")
    end = pn_offset + length
    if end > n:
        return None

    aead, hp, iv = _ciphers(version, dcid)
    sample_at = pn_offset + _SAMPLE_OFFSET
    mask = hp.encryptor().update(datagram[sample_at : sample_at + _SAMPLE_LENGTH])
    first ^= mask[0] & 0x0F
    pn_len = (first & 0x03) + 1
    pn = int.from_bytes(datagram[pn_offset : pn_offset + pn_len], "big")
    pn ^= int.from_bytes(mask[1 : 1 + pn_len], "big")
    pn_bytes = pn.to_bytes(pn_len, "big")
    header = bytes((first,)) + datagram[1:pn_offset] + pn_bytes
    # Initial packet numbers of a client are small, so the truncated value is the full one.
    nonce = (int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big")
    # Imported here: most captures hold no QUIC Initial, and the import costs every run.
    from cryptography.exceptions import InvalidTag

    try:
        plain = aead.decrypt(nonce, datagram[pn_offset + pn_len : end], header)
    except InvalidTag:
        return None
    return _crypto_frames(plain)


def client_hello_from_crypto(pieces: Iterable[tuple[int, bytes]]) -> ClientHello | None:
    """Assemble CRYPTO data contiguous from offset 0 and parse it as a ClientHello.

    ``pieces`` may come from several Initial datagrams of one flow, in any order and
    overlapping. Returns None while the message is still incomplete (a gap or a short
    tail), raises DecodeError when the assembled bytes are not a ClientHello.
    """
    cap = 4 + MAX_HANDSHAKE_LENGTH
    buf = bytearray()
    for offset, data in sorted(pieces, key=_offset_of):
        have = len(buf)
        if offset > have:
            break  # a gap: the rest cannot be contiguous yet
        if offset + len(data) > have:
            buf += data[have - offset :]
        if len(buf) >= cap:
            break
    return parse_client_hello_handshake(bytes(buf))


def _offset_of(piece: tuple[int, bytes]) -> int:
    return piece[0]


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """TLS 1.3 HKDF-Expand-Label with an empty context (RFC 8446 7.1), SHA-256, <= 32 bytes."""
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    import hmac

    return hmac.digest(secret, info + b"\x01", "sha256")[:length]


@lru_cache(maxsize=1024)
def _ciphers(version: int, dcid: bytes) -> tuple[AESGCM, Cipher[modes.ECB], bytes]:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    keys = client_initial_keys(dcid, version)
    return AESGCM(keys.key), Cipher(algorithms.AES(keys.hp), modes.ECB()), keys.iv


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """RFC 9000 16 variable-length integer at ``pos``; returns (value, next offset)."""
    if pos >= len(buf):
        raise _Short("datagram ends inside a variable-length integer")
    first = buf[pos]
    size = 1 << (first >> 6)
    if pos + size > len(buf):
        raise _Short("datagram ends inside a variable-length integer")
    value = first & 0x3F
    for i in range(pos + 1, pos + size):
        value = (value << 8) | buf[i]
    return value, pos + size


def _crypto_frames(plain: bytes) -> list[tuple[int, bytes]]:
    """Walk decrypted Initial frames, collecting CRYPTO data (RFC 9000 19)."""
    pieces: list[tuple[int, bytes]] = []
    pos = 0
    n = len(plain)
    try:
        while pos < n:
            ftype = plain[pos]
            if ftype == FRAME_PADDING:
                found = _NONZERO.search(plain, pos)
                pos = found.start() if found else n
            elif ftype == FRAME_PING:
                pos += 1
            elif ftype == FRAME_ACK or ftype == FRAME_ACK_ECN:
                _, pos = _varint(plain, pos + 1)  # largest acknowledged
                _, pos = _varint(plain, pos)  # ack delay
                ranges, pos = _varint(plain, pos)
                _, pos = _varint(plain, pos)  # first range
                # Each further range takes at least two bytes: refuse counts the data
                # cannot hold before looping over them.
                if ranges > (n - pos) // 2:
                    raise DecodeError(f"ACK frame claims {ranges} ranges")
                for _ in range(2 * ranges + (3 if ftype == FRAME_ACK_ECN else 0)):
                    _, pos = _varint(plain, pos)
            elif ftype == FRAME_CRYPTO:
                offset, pos = _varint(plain, pos + 1)
                length, pos = _varint(plain, pos)
                if pos + length > n:
                    raise DecodeError("CRYPTO frame overruns the packet")
                pieces.append((offset, plain[pos : pos + length]))
                pos += length
            else:
                break
    except _Short:
        raise DecodeError("frame truncated inside a decrypted Initial packet") from None
    return pieces
