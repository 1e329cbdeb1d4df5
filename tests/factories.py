"""Byte builders for tests: well-formed protocol messages (TLS, DNS, HTTP, SOCKS, QUIC) with knobs.

Every builder returns exactly the bytes a peer would put on the wire (the transport
payload: a TCP stream prefix or a UDP datagram), so tests of the decoders and of the
capture engine can wrap them in packets. Builders never validate their inputs more than
needed, which lets tests produce slightly wrong messages on purpose.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dsaudit.decode.quic import QUIC_V1, QUIC_V2, client_initial_keys

# --------------------------------------------------------------------------- TLS

TLS13_SUITES = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F)

Name = str | bytes


def _b(value: Name) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else value


def tls_extension(ext_type: int, body: bytes) -> bytes:
    """One ClientHello extension: type, 16-bit length, body."""
    return struct.pack(">HH", ext_type, len(body)) + body


def sni_extension(*names: Name, name_type: int = 0) -> bytes:
    """server_name extension (RFC 6066) listing ``names``; none gives an empty list."""
    entries = b"".join(struct.pack(">BH", name_type, len(_b(n))) + _b(n) for n in names)
    return tls_extension(0, struct.pack(">H", len(entries)) + entries)


def alpn_extension(*protocols: Name) -> bytes:
    """ALPN extension (RFC 7301) offering ``protocols`` in order."""
    entries = b"".join(bytes((len(_b(p)),)) + _b(p) for p in protocols)
    return tls_extension(16, struct.pack(">H", len(entries)) + entries)


def client_hello_handshake(
    sni: Name | None = "example.com",
    alpn: Sequence[Name] = ("h2", "http/1.1"),
    extra_len: int = 0,
    *,
    supported_versions: Sequence[int] | None = (0x0304, 0x0303),
    ech: bool = False,
    legacy_version: int = 0x0303,
    cipher_suites: Sequence[int] = TLS13_SUITES,
    session_id: bytes = bytes(range(32)),
    extensions: Iterable[bytes] = (),
    with_extensions_block: bool = True,
) -> bytes:
    """A bare ClientHello handshake message (type 1, 24-bit length, body): no record layer.

    ``sni``: host name for the server_name extension, or None for no such extension.
    ``alpn``: ALPN protocol names; empty for no ALPN extension.
    ``extra_len``: size of a padding extension (type 21) added last, to grow the message
    (e.g. past one TLS record or one QUIC packet).
    ``supported_versions``: the supported_versions list, None to omit the extension.
    ``ech``: add an encrypted_client_hello (0xfe0d) extension with a dummy body.
    ``extensions``: further pre-built extensions (see :func:`tls_extension`), appended
    after the ones above. ``with_extensions_block=False`` stops after the compression
    methods, like pre-extension clients.
    """
    exts = []
    if sni is not None:
        exts.append(sni_extension(sni))
    if alpn:
        exts.append(alpn_extension(*alpn))
    if supported_versions is not None:
        versions = b"".join(struct.pack(">H", v) for v in supported_versions)
        exts.append(tls_extension(43, bytes((len(versions),)) + versions))
    if ech:
        exts.append(tls_extension(0xFE0D, b"\x00\x00\x01\x00\x01\x2a\x00\x20" + bytes(32)))
    exts.extend(extensions)
    if extra_len:
        exts.append(tls_extension(21, bytes(extra_len)))
    suites = b"".join(struct.pack(">H", s) for s in cipher_suites)
    body = (
        struct.pack(">H", legacy_version)
        + bytes(range(100, 132))  # random
        + bytes((len(session_id),))
        + session_id
        + struct.pack(">H", len(suites))
        + suites
        + b"\x01\x00"  # one compression method: null
    )
    if with_extensions_block:
        block = b"".join(exts)
        body += struct.pack(">H", len(block)) + block
    return b"\x01" + len(body).to_bytes(3, "big") + body


def tls_records(
    payload: bytes, records: int = 1, *, content_type: int = 0x16, version: int = 0x0301
) -> bytes:
    """Wrap ``payload`` in ``records`` TLS records of near-equal size (at least 1 byte each)."""
    records = max(1, min(records, len(payload)))
    step = -(-len(payload) // records)
    out = bytearray()
    for start in range(0, len(payload), step):
        chunk = payload[start : start + step]
        out += struct.pack(">BHH", content_type, version, len(chunk)) + chunk
    return bytes(out)


def client_hello(
    sni: Name | None = "example.com",
    alpn: Sequence[Name] = ("h2", "http/1.1"),
    extra_len: int = 0,
    records: int = 1,
    *,
    record_version: int = 0x0301,
    supported_versions: Sequence[int] | None = (0x0304, 0x0303),
    ech: bool = False,
    legacy_version: int = 0x0303,
    cipher_suites: Sequence[int] = TLS13_SUITES,
    extensions: Iterable[bytes] = (),
) -> bytes:
    """A ClientHello as a client's TCP stream starts: TLS record layer included.

    ``records`` splits the one handshake message over that many handshake records
    (``records=2`` gives the two-record case that some clients produce with large
    hellos). Other arguments are those of :func:`client_hello_handshake`.
    """
    msg = client_hello_handshake(
        sni,
        alpn,
        extra_len,
        supported_versions=supported_versions,
        ech=ech,
        legacy_version=legacy_version,
        cipher_suites=cipher_suites,
        extensions=extensions,
    )
    return tls_records(msg, records, version=record_version)


def certificate_chain(issuer_cn: str, subject_cn: str = "dsm.corp.example") -> tuple[bytes, bytes]:
    """DER of a leaf for ``subject_cn`` and of the self-signed CA ``issuer_cn`` that signed it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())

    def build(subject: str, key: ec.EllipticCurvePrivateKey, serial: int) -> bytes:
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer_cn))
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=365))
            .sign(ca_key, hashes.SHA256())
        )
        return cert.public_bytes(Encoding.DER)

    return build(subject_cn, leaf_key, 2), build(issuer_cn, ca_key, 1)


def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def server_hello_handshake(version: int = 0x0303, suite: int = 0xC02F) -> bytes:
    """A TLS 1.2 ServerHello handshake message (no extensions)."""
    body = struct.pack(">H", version) + bytes(32) + b"\x00" + struct.pack(">HB", suite, 0)
    return b"\x02" + _u24(len(body)) + body


def certificate_handshake(*ders: bytes) -> bytes:
    """A TLS 1.0-1.2 Certificate handshake message carrying ``ders``, leaf first."""
    chain = b"".join(_u24(len(d)) + d for d in ders)
    body = _u24(len(chain)) + chain
    return b"\x0b" + _u24(len(body)) + body


def server_flight(*ders: bytes) -> bytes:
    """ServerHello, Certificate and ServerHelloDone in TLS 1.2 handshake records."""
    messages = server_hello_handshake() + certificate_handshake(*ders) + b"\x0e\x00\x00\x00"
    out = bytearray()
    for start in range(0, len(messages), 0x4000):
        out += tls_records(messages[start : start + 0x4000], version=0x0303)
    return bytes(out)


def tls_alert(level: int, description: int) -> bytes:
    """One clear TLS alert record."""
    return tls_records(bytes([level, description]), content_type=0x15, version=0x0303)


# --------------------------------------------------------------------------- DNS

DnsName = str | Sequence[bytes]


def _labels(name: DnsName) -> list[bytes]:
    """Labels of ``name``: a dotted ASCII string ("" or "." for the root) or raw labels."""
    if isinstance(name, str):
        return [label.encode("ascii") for label in name.strip(".").split(".") if label]
    return [bytes(label) for label in name]


class DnsWriter:
    """Appends DNS wire fields to a buffer, compressing names like a real server.

    ``compress=False`` writes every name in full. Compression points at the earliest
    earlier occurrence of the longest matching suffix (always backwards).
    """

    def __init__(self, compress: bool = True) -> None:
        self.buf = bytearray()
        self.compress = compress
        self._suffixes: dict[tuple[bytes, ...], int] = {}

    def name(self, name: DnsName) -> None:
        labels = _labels(name)
        for i in range(len(labels)):
            suffix = tuple(labels[i:])
            if self.compress and suffix in self._suffixes:
                self.buf += struct.pack(">H", 0xC000 | self._suffixes[suffix])
                return
            if len(self.buf) < 0x4000:
                self._suffixes.setdefault(suffix, len(self.buf))
            self.buf += bytes((len(labels[i]),)) + labels[i]
        self.buf += b"\x00"

    def raw(self, data: bytes) -> None:
        self.buf += data


RData = str | bytes | tuple[bytes, ...]


def dns_rdata(writer: DnsWriter, rtype: int, data: RData) -> None:
    """Append RDLENGTH + RDATA.

    ``data``: bytes are written raw whatever the type; otherwise a text address for
    A/AAAA, a name (dotted text or a tuple of raw labels) for NS/CNAME/PTR/DNAME, and
    ASCII text for anything else.
    """
    at = len(writer.buf)
    writer.raw(b"\x00\x00")
    if isinstance(data, bytes):
        writer.raw(data)
    elif isinstance(data, tuple):
        writer.name(data)
    elif rtype == 1:
        writer.raw(ipaddress.IPv4Address(data).packed)
    elif rtype == 28:
        writer.raw(ipaddress.IPv6Address(data).packed)
    elif rtype in (2, 5, 12, 39):
        writer.name(data)
    else:
        writer.raw(data.encode("ascii"))
    struct.pack_into(">H", writer.buf, at, len(writer.buf) - at - 2)


def dns_header(ident: int, flags: int, qd: int, an: int, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack(">6H", ident, flags, qd, an, ns, ar)


def dns_query(
    name: DnsName, qtype: int = 1, id: int = 0x1234, *, rd: bool = True, qclass: int = 1
) -> bytes:
    """A standard query (opcode 0) with one question."""
    w = DnsWriter()
    w.raw(dns_header(id, 0x0100 if rd else 0, 1, 0))
    w.name(name)
    w.raw(struct.pack(">HH", qtype, qclass))
    return bytes(w.buf)


def dns_response(
    name: DnsName,
    answers: Sequence[tuple[DnsName, int, RData, int]] = (),
    cname_chain: Sequence[DnsName] = (),
    *,
    qtype: int = 1,
    id: int = 0x1234,
    rcode: int = 0,
    compress: bool = True,
    ttl: int = 300,
    truncated: bool = False,
    authority_count: int = 0,
    additional_count: int = 0,
) -> bytes:
    """A response to a one-question query for ``name``.

    The answer section holds first the CNAME chain ``name -> cname_chain[0] -> ...``
    (each with ``ttl``), then ``answers`` as ``(owner, rtype, data, ttl)`` with data
    as in :func:`dns_rdata`. The authority/additional counts are written into the
    header only (no records), which the decoder does not walk.
    """
    flags = 0x8180 | rcode | (0x0200 if truncated else 0)
    records: list[tuple[DnsName, int, RData, int]] = []
    owner: DnsName = name
    for target in cname_chain:
        records.append((owner, 5, target if isinstance(target, str) else tuple(target), ttl))
        owner = target
    records.extend(answers)
    w = DnsWriter(compress)
    w.raw(dns_header(id, flags, 1, len(records), authority_count, additional_count))
    w.name(name)
    w.raw(struct.pack(">HH", qtype, 1))
    for rec_owner, rtype, data, rec_ttl in records:
        w.name(rec_owner)
        w.raw(struct.pack(">HHI", rtype, 1, rec_ttl))
        dns_rdata(w, rtype, data)
    return bytes(w.buf)


def dns_tcp(*messages: bytes) -> bytes:
    """DNS over TCP: each message prefixed with its 16-bit length (RFC 1035 4.2.2)."""
    return b"".join(struct.pack(">H", len(m)) + m for m in messages)


# --------------------------------------------------------------------------- HTTP


def http_request(
    host: str | None = "example.com",
    method: str = "GET",
    target: str = "/",
    *,
    version: str = "HTTP/1.1",
    host_header: str = "Host",
    headers: Sequence[tuple[str, str]] = (("User-Agent", "dsaudit-test/1.0"), ("Accept", "*/*")),
    host_first: bool = True,
    newline: str = "\r\n",
    body: bytes = b"",
) -> bytes:
    """An HTTP/1.x request head (plus ``body``) as a client sends it.

    ``host`` None leaves out the Host header; ``host_header`` sets its spelling (e.g.
    "host" or "HOST"); ``host_first=False`` puts it after ``headers``; ``newline``
    "\\n" gives bare-LF line ends. A non-empty ``body`` adds a Content-Length.
    """
    lines = [f"{method} {target} {version}"]
    extra = [f"{k}: {v}" for k, v in headers]
    if body:
        extra.append(f"Content-Length: {len(body)}")
    host_line = [f"{host_header}: {host}"] if host is not None else []
    lines += host_line + extra if host_first else extra + host_line
    return (newline.join(lines) + newline + newline).encode("latin-1") + body


# --------------------------------------------------------------------------- SOCKS


def socks5_request(
    host: str | bytes,
    port: int,
    *,
    command: int = 1,
    methods: Sequence[int] = (0,),
    auth: tuple[bytes, bytes] | None = None,
    atyp: int | None = None,
) -> bytes:
    """A SOCKS5 client's bytes: greeting, optional RFC 1929 login, request.

    ``atyp`` defaults from ``host``: IPv4 text -> 1, IPv6 text -> 4, anything else
    (or bytes) -> 3 (domain). ``auth=(user, password)`` adds method 2 to the greeting
    if missing and inserts the username/password sub-negotiation.
    """
    offered = list(methods)
    if auth is not None and 2 not in offered:
        offered.append(2)
    out = bytes((5, len(offered))) + bytes(offered)
    if auth is not None:
        user, password = auth
        out += bytes((1, len(user))) + user + bytes((len(password),)) + password
    if atyp is None:
        atyp = 3
        if isinstance(host, str):
            try:
                atyp = 1 if ipaddress.ip_address(host).version == 4 else 4
            except ValueError:
                atyp = 3
    if atyp == 1:
        addr = ipaddress.IPv4Address(host).packed
    elif atyp == 4:
        addr = ipaddress.IPv6Address(host).packed
    else:
        raw = _b(host)
        addr = bytes((len(raw),)) + raw
    return out + bytes((5, command, 0, atyp)) + addr + struct.pack(">H", port)


def socks4_request(ip: str, port: int, *, userid: bytes = b"", command: int = 1) -> bytes:
    """A SOCKS4 request: 04 cmd port ip userid NUL."""
    return (
        struct.pack(">BBH", 4, command, port) + ipaddress.IPv4Address(ip).packed + userid + b"\x00"
    )


def socks4a_request(
    host: str | bytes, port: int, *, userid: bytes = b"", command: int = 1, marker: int = 1
) -> bytes:
    """A SOCKS4a request: address 0.0.0.``marker`` then userid NUL, host NUL."""
    return (
        struct.pack(">BBH", 4, command, port)
        + bytes((0, 0, 0, marker))
        + userid
        + b"\x00"
        + _b(host)
        + b"\x00"
    )


# --------------------------------------------------------------------------- QUIC


def _varint(value: int) -> bytes:
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return struct.pack(">H", 0x4000 | value)
    if value < 0x40000000:
        return struct.pack(">I", 0x80000000 | value)
    return struct.pack(">Q", 0xC000000000000000 | value)


def quic_crypto_frame(offset: int, data: bytes) -> bytes:
    """One CRYPTO frame (type 0x06)."""
    return b"\x06" + _varint(offset) + _varint(len(data)) + data


def quic_client_initial(
    crypto: bytes | Sequence[tuple[int, bytes]],
    *,
    dcid: bytes = bytes.fromhex("8394c8f03e515708"),
    scid: bytes = b"",
    version: int = QUIC_V1,
    pn: int = 0,
    pn_len: int = 4,
    token: bytes = b"",
    frames_before: bytes = b"",
    pad_to: int = 1200,
    trailing: bytes = b"",
) -> bytes:
    """A protected client Initial packet, padded so the datagram has ``pad_to`` bytes.

    ``crypto`` is either the CRYPTO stream from offset 0 (one frame) or explicit
    ``(offset, data)`` pieces, one frame each, in the given order. ``frames_before`` is
    raw plaintext frames (e.g. PING b"\\x01") put before them. ``trailing`` is appended
    after the packet (a coalesced second packet, say). Keys follow RFC 9001 5.2 / RFC
    9369 for ``version`` (QUIC_V1 or QUIC_V2).
    """
    pieces = [(0, crypto)] if isinstance(crypto, bytes) else list(crypto)
    plain = frames_before + b"".join(quic_crypto_frame(o, d) for o, d in pieces)
    ptype = 0 if version == QUIC_V1 else 1
    if version not in (QUIC_V1, QUIC_V2):
        raise ValueError("quic_client_initial builds v1 and v2 only")
    pn_bytes = pn.to_bytes(pn_len, "big")
    first = 0xC0 | (ptype << 4) | (pn_len - 1)

    def header_for(payload_len: int) -> bytes:
        length = pn_len + payload_len + 16
        return (
            bytes((first,))
            + struct.pack(">I", version)
            + bytes((len(dcid),))
            + dcid
            + bytes((len(scid),))
            + scid
            + _varint(len(token))
            + token
            # Always two bytes (allowed: varints need not be minimal), so padding
            # never changes the header size.
            + struct.pack(">H", 0x4000 | length)
            + pn_bytes
        )

    # Pad with PADDING frames so the whole datagram reaches pad_to (clients must send
    # >= 1200 bytes); the sample also needs 4 + 16 bytes after the packet number start.
    size = len(header_for(len(plain))) + len(plain) + 16
    if size < pad_to:
        plain += bytes(pad_to - size)
    plain += bytes(max(0, 4 - pn_len - len(plain)))
    header = header_for(len(plain))
    keys = client_initial_keys(dcid, version)
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    sealed = AESGCM(keys.key).encrypt(nonce, plain, header)
    pn_offset = len(header) - pn_len
    sample = sealed[4 - pn_len : 4 - pn_len + 16]
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    protected = bytearray(header + sealed)
    protected[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        protected[pn_offset + i] ^= mask[1 + i]
    return bytes(protected) + trailing
