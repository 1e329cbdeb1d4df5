"""Application payloads for the sample captures: TLS, PostgreSQL, LDAP, SMTP, syslog, CONNECT."""

from __future__ import annotations

import datetime
import functools
import hashlib
import random
import struct

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

# ---- TLS (RFC 8446 ClientHello offering 1.3 and 1.2; the servers answer with TLS 1.2) ------------

TLS_HANDSHAKE, TLS_CHANGE_CIPHER_SPEC, TLS_APPLICATION_DATA = 22, 20, 23
CIPHER_SUITES = (
    0x1301, 0x1302, 0x1303,  # TLS 1.3 AEAD suites
    0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,  # ECDHE with AEAD
    0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035,  # older suites a Java client still offers
)  # fmt: skip
CHOSEN_SUITE = 0xC02F  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
GCM_OVERHEAD = 8 + 16  # explicit nonce and tag on every TLS 1.2 AES-GCM record
MAX_RECORD = 16384


def _u8(data: bytes) -> bytes:
    return struct.pack("!B", len(data)) + data


def _u16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _u24(data: bytes) -> bytes:
    return struct.pack("!I", len(data))[1:] + data


def _record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BH", content_type, version) + _u16(body)


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + _u24(body)


def _extension(ext_type: int, data: bytes) -> bytes:
    return struct.pack("!H", ext_type) + _u16(data)


def client_hello(
    rng: random.Random, sni: str | None, alpn: tuple[str, ...], padding: int = 0
) -> bytes:
    """A complete ClientHello record: SNI (if any), ALPN, supported_versions, key_share and more;
    ``padding`` bytes more in a padding extension (RFC 7685), as large key shares would add."""
    extensions = []
    if sni is not None:
        entry = b"\x00" + _u16(sni.encode("ascii"))  # name_type host_name
        extensions.append(_extension(0, _u16(entry)))
    extensions += [
        _extension(0x0017, b""),  # extended_master_secret
        _extension(0xFF01, b"\x00"),  # renegotiation_info, initial handshake
        _extension(10, _u16(struct.pack("!4H", 0x001D, 0x0017, 0x0018, 0x0019))),
        _extension(11, _u8(b"\x00")),  # ec_point_formats: uncompressed
        _extension(35, b""),  # session_ticket
    ]
    if alpn:
        extensions.append(_extension(16, _u16(b"".join(_u8(p.encode("ascii")) for p in alpn))))
    signature_schemes = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
    extensions += [
        _extension(5, b"\x01\x00\x00\x00\x00"),  # status_request (OCSP)
        _extension(13, _u16(struct.pack(f"!{len(signature_schemes)}H", *signature_schemes))),
        _extension(51, _u16(struct.pack("!H", 0x001D) + _u16(rng.randbytes(32)))),  # x25519
        _extension(45, _u8(b"\x01")),  # psk_dhe_ke
        _extension(43, _u8(struct.pack("!2H", 0x0304, 0x0303))),
    ]
    if padding:
        extensions.append(_extension(21, bytes(padding)))
    body = (
        struct.pack("!H", 0x0303)
        + rng.randbytes(32)
        + _u8(rng.randbytes(32))  # legacy_session_id, as TLS 1.3 middlebox compatibility wants
        + _u16(struct.pack(f"!{len(CIPHER_SUITES)}H", *CIPHER_SUITES))
        + _u8(b"\x00")
        + _u16(b"".join(extensions))
    )
    # The first record says TLS 1.0, as real clients do for middleboxes (RFC 8446 5.1).
    return _record(TLS_HANDSHAKE, _handshake(1, body), version=0x0301)


def _key(name: str) -> Ed25519PrivateKey:
    # Ed25519 keys come from 32 seed bytes and sign deterministically, so the same certificate
    # comes out on every run; RSA key generation could not be seeded.
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def alert(description: int) -> bytes:
    """A fatal TLS alert record (40: handshake_failure, 48: unknown_ca)."""
    return _record(21, bytes([2, description]))


@functools.cache
def certificate(subject: str, issuer: str) -> bytes:
    """A DER X.509 certificate for `subject`, signed by `issuer`'s key (equal means self-signed)."""
    public = _key(subject).public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public)
        .serial_number(int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big"))
        .not_valid_before(datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2027, 1, 5, tzinfo=datetime.UTC))
    )
    if subject == issuer:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if " " not in subject and any(c.isalpha() for c in subject):  # a host name, not an address
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), False)
    cert = builder.sign(_key(issuer), None)
    return cert.public_bytes(serialization.Encoding.DER)


def server_hello_flight(rng: random.Random, alpn: str | None, chain: list[bytes]) -> bytes:
    """ServerHello, Certificate, ServerKeyExchange and ServerHelloDone of a TLS 1.2 ECDHE server."""
    extensions = _extension(0xFF01, b"\x00") + _extension(11, _u8(b"\x00"))
    extensions += _extension(0x0017, b"")
    if alpn is not None:
        extensions += _extension(16, _u16(_u8(alpn.encode("ascii"))))
    hello = (
        struct.pack("!H", 0x0303)
        + rng.randbytes(32)
        + _u8(rng.randbytes(32))
        + struct.pack("!HB", CHOSEN_SUITE, 0)
        + _u16(extensions)
    )
    key_exchange = (
        struct.pack("!BH", 3, 0x001D)  # named_curve x25519
        + _u8(rng.randbytes(32))
        + struct.pack("!H", 0x0807)  # ed25519, the certificates' key type
        + _u16(rng.randbytes(64))
    )
    messages = (
        _handshake(2, hello)
        + _handshake(11, _u24(b"".join(_u24(der) for der in chain)))
        + _handshake(12, key_exchange)
        + _handshake(14, b"")
    )
    return _record(TLS_HANDSHAKE, messages)


def client_finish(rng: random.Random) -> bytes:
    """ClientKeyExchange, ChangeCipherSpec and the encrypted Finished."""
    return (
        _record(TLS_HANDSHAKE, _handshake(16, _u8(rng.randbytes(32))))
        + _record(TLS_CHANGE_CIPHER_SPEC, b"\x01")
        + _record(TLS_HANDSHAKE, rng.randbytes(4 + 12 + GCM_OVERHEAD))
    )


def server_finish(rng: random.Random) -> bytes:
    """The server's ChangeCipherSpec and encrypted Finished."""
    return _record(TLS_CHANGE_CIPHER_SPEC, b"\x01") + _record(
        TLS_HANDSHAKE, rng.randbytes(4 + 12 + GCM_OVERHEAD)
    )


def application_data(rng: random.Random, size: int) -> bytes:
    """Encrypted application data of about `size` plaintext bytes, in records of at most 16 KiB."""
    records = []
    while size > 0:
        chunk = min(size, MAX_RECORD)
        records.append(_record(TLS_APPLICATION_DATA, rng.randbytes(chunk + GCM_OVERHEAD)))
        size -= chunk
    return b"".join(records)


# ---- HTTP CONNECT through a forward proxy --------------------------------------------------------


def http_connect(target: str, user_agent: str) -> bytes:
    """The request an agent sends to its proxy before tunnelling TLS to `target` (host:port)."""
    lines = [
        f"CONNECT {target} HTTP/1.1",
        f"Host: {target}",
        f"User-Agent: {user_agent}",
        "Proxy-Connection: Keep-Alive",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


CONNECT_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


# ---- PostgreSQL frontend/backend protocol 3.0 ----------------------------------------------------


def _pg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _cstr(text: str) -> bytes:
    return text.encode("utf-8") + b"\x00"


def pg_startup(user: str, database: str) -> bytes:
    """StartupMessage of a JDBC client."""
    params = b"".join(
        _cstr(k) + _cstr(v)
        for k, v in (
            ("user", user),
            ("database", database),
            ("client_encoding", "UTF8"),
            ("application_name", "PostgreSQL JDBC Driver"),
        )
    )
    body = struct.pack("!I", 196608) + params + b"\x00"
    return struct.pack("!I", len(body) + 4) + body


def pg_md5_challenge(salt: bytes) -> bytes:
    """AuthenticationMD5Password."""
    return _pg(b"R", struct.pack("!I", 5) + salt)


def pg_md5_password(user: str, password: str, salt: bytes) -> bytes:
    """PasswordMessage answering an MD5 challenge (the fabricated password is in the script)."""
    inner = hashlib.md5((password + user).encode()).hexdigest().encode()
    return _pg(b"p", b"md5" + hashlib.md5(inner + salt).hexdigest().encode() + b"\x00")


def pg_ready_after_login(backend_pid: int, secret: int) -> bytes:
    """AuthenticationOk, a few ParameterStatus messages, BackendKeyData, ReadyForQuery."""
    status = b"".join(
        _pg(b"S", _cstr(k) + _cstr(v))
        for k, v in (
            ("server_version", "13.14"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("TimeZone", "UTC"),
        )
    )
    return (
        _pg(b"R", struct.pack("!I", 0))
        + status
        + _pg(b"K", struct.pack("!II", backend_pid, secret))
        + _pg(b"Z", b"I")
    )


def pg_query(sql: str) -> bytes:
    """A simple-protocol Query."""
    return _pg(b"Q", _cstr(sql))


def pg_result(columns: tuple[str, ...], rows: list[tuple[str, ...]], tag: str) -> bytes:
    """RowDescription, DataRows, CommandComplete and ReadyForQuery for text columns."""
    description = struct.pack("!H", len(columns)) + b"".join(
        _cstr(name) + struct.pack("!IHIhiH", 0, 0, 25, -1, -1, 0) for name in columns
    )
    data = b"".join(
        _pg(
            b"D",
            struct.pack("!H", len(row))
            + b"".join(_u32_str(value.encode("utf-8")) for value in row),
        )
        for row in rows
    )
    return _pg(b"T", description) + data + _pg(b"C", _cstr(tag)) + _pg(b"Z", b"I")


def pg_command(tag: str) -> bytes:
    """CommandComplete and ReadyForQuery for a statement that returns no rows."""
    return _pg(b"C", _cstr(tag)) + _pg(b"Z", b"I")


def _u32_str(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


# ---- LDAPv3 (RFC 4511) in BER --------------------------------------------------------------------


def _ber(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _ber_int(value: int, tag: int = 0x02) -> bytes:
    return _ber(tag, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _ber_str(text: str, tag: int = 0x04) -> bytes:
    return _ber(tag, text.encode("utf-8"))


def _ldap_message(message_id: int, operation: bytes) -> bytes:
    return _ber(0x30, _ber_int(message_id) + operation)


def ldap_bind(message_id: int, dn: str, password: str) -> bytes:
    """A simple BindRequest."""
    return _ldap_message(
        message_id, _ber(0x60, _ber_int(3) + _ber_str(dn) + _ber_str(password, 0x80))
    )


def _ldap_result(tag: int) -> bytes:
    return _ber(tag, _ber_int(0, 0x0A) + _ber_str("") + _ber_str(""))


def ldap_bind_ok(message_id: int) -> bytes:
    """A successful BindResponse."""
    return _ldap_message(message_id, _ldap_result(0x61))


def ldap_search(message_id: int, base: str, attributes: tuple[str, ...]) -> bytes:
    """A subtree SearchRequest for computer objects."""
    request = (
        _ber_str(base)
        + _ber_int(2, 0x0A)  # scope wholeSubtree
        + _ber_int(0, 0x0A)  # derefAliases never
        + _ber_int(0)
        + _ber_int(0)
        + _ber(0x01, b"\x00")  # typesOnly false
        + _ber(0xA3, _ber_str("objectClass") + _ber_str("computer"))  # equalityMatch
        + _ber(0x30, b"".join(_ber_str(a) for a in attributes))
    )
    return _ldap_message(message_id, _ber(0x63, request))


def ldap_entry(message_id: int, dn: str, attributes: dict[str, str]) -> bytes:
    """A SearchResultEntry with single-valued attributes."""
    partial = b"".join(
        _ber(0x30, _ber_str(name) + _ber(0x31, _ber_str(value)))
        for name, value in attributes.items()
    )
    return _ldap_message(message_id, _ber(0x64, _ber_str(dn) + _ber(0x30, partial)))


def ldap_search_done(message_id: int) -> bytes:
    """A successful SearchResultDone."""
    return _ldap_message(message_id, _ldap_result(0x65))


def ldap_unbind(message_id: int) -> bytes:
    """UnbindRequest."""
    return _ldap_message(message_id, _ber(0x42, b""))


# ---- SMTP and syslog -----------------------------------------------------------------------------


def smtp_dialogue(
    server: str, client: str, sender: str, recipient: str, message: str
) -> list[tuple[bool, bytes]]:
    """An alert mail as (from_client, bytes) steps, from the greeting to the 221."""
    steps = [
        (False, f"220 {server} ESMTP Postfix"),
        (True, f"EHLO {client}"),
        (False, f"250-{server}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME"),
        (True, f"MAIL FROM:<{sender}>"),
        (False, "250 2.1.0 Ok"),
        (True, f"RCPT TO:<{recipient}>"),
        (False, "250 2.1.5 Ok"),
        (True, "DATA"),
        (False, "354 End data with <CR><LF>.<CR><LF>"),
        (True, message.replace("\n", "\r\n") + "\r\n."),
        (False, "250 2.0.0 Ok: queued as 4F1C2A0B3D"),
        (True, "QUIT"),
        (False, "221 2.0.0 Bye"),
    ]
    return [(from_client, (text + "\r\n").encode("utf-8")) for from_client, text in steps]


def syslog_cef(
    timestamp: str, host: str, event_id: int, name: str, severity: int, extension: str
) -> bytes:
    """A Deep Security Manager event in CEF over syslog (facility local0, informational)."""
    header = f"CEF:0|Trend Micro|Deep Security Manager|20.0.877|{event_id}|{name}|{severity}|"
    return f"<134>{timestamp} {host} {header}{extension}".encode()
