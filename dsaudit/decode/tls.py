"""TLS decoders: the ClientHello a client offers, and the alert or certificate a server answers.

The wire is walked by compiled code (tls_wire.pyx, Cython built with the package): naming
parses a hello for every TLS flow and for every segment of a hello split over segments, and
the Python parser this replaced spent about 5.5 us per hello. This module is the interface:
the result types, the alert names and the certificate issuer, which the ``cryptography``
package decodes for the few flows that show a certificate. Hand-written rather than
dpkt.ssl: dpkt cannot tell "send more" from "not TLS" (both are NeedData) and does not join
a hello split over records.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from dsaudit.decode import tls_wire
from dsaudit.decode._text import escape_text
from dsaudit.decode.tls_wire import CONTENT_ALERT as CONTENT_ALERT
from dsaudit.decode.tls_wire import CONTENT_APPLICATION_DATA as CONTENT_APPLICATION_DATA
from dsaudit.decode.tls_wire import CONTENT_CHANGE_CIPHER_SPEC as CONTENT_CHANGE_CIPHER_SPEC
from dsaudit.decode.tls_wire import CONTENT_HANDSHAKE as CONTENT_HANDSHAKE
from dsaudit.decode.tls_wire import EXT_ALPN as EXT_ALPN
from dsaudit.decode.tls_wire import EXT_ECH as EXT_ECH
from dsaudit.decode.tls_wire import EXT_SERVER_NAME as EXT_SERVER_NAME
from dsaudit.decode.tls_wire import EXT_SUPPORTED_VERSIONS as EXT_SUPPORTED_VERSIONS
from dsaudit.decode.tls_wire import HANDSHAKE_CERTIFICATE as HANDSHAKE_CERTIFICATE
from dsaudit.decode.tls_wire import HANDSHAKE_CLIENT_HELLO as HANDSHAKE_CLIENT_HELLO
from dsaudit.decode.tls_wire import MAX_CERTIFICATE as MAX_CERTIFICATE
from dsaudit.decode.tls_wire import MAX_HANDSHAKE_LENGTH as MAX_HANDSHAKE_LENGTH
from dsaudit.decode.tls_wire import MAX_RECORD_LENGTH as MAX_RECORD_LENGTH
from dsaudit.decode.tls_wire import looks_like_client_hello as looks_like_client_hello

__all__ = [
    "ClientHello",
    "MAX_HANDSHAKE_LENGTH",
    "ServerFlight",
    "alert_text",
    "clear_alert",
    "looks_like_client_hello",
    "parse_client_hello",
    "parse_client_hello_handshake",
    "parse_server_flight",
]


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What a ClientHello says about the server the client wants.

    ``sni`` and the ``alpn`` names are text under the shared escaping rule (bytes
    0x20-0x7E except backslash kept, everything else as ``\\xNN``); a normal hostname
    comes through exactly as sent, including its case.
    """

    sni: str | None
    alpn: tuple[str, ...]
    supported_versions: tuple[int, ...]
    legacy_version: int
    has_ech: bool
    cipher_suites: tuple[int, ...] = ()
    extension_types: tuple[int, ...] = ()

    @property
    def offers_tls13(self) -> bool:
        """True when the client lists TLS 1.3 (0x0304) in supported_versions."""
        return 0x0304 in self.supported_versions


def parse_client_hello(data: bytes) -> ClientHello | None:
    """Parse the ClientHello at the start of a TLS byte stream (record layer included).

    The handshake message may span several records and the caller may hold only a
    prefix of the stream. Returns None while more bytes are needed, raises
    DecodeError as soon as the bytes cannot be a ClientHello (SSLv2-style hellos
    included). Bytes after the ClientHello are ignored.
    """
    fields = tls_wire.client_hello(data)
    return None if fields is None else ClientHello(*fields)


def parse_client_hello_handshake(msg: bytes) -> ClientHello | None:
    """Parse a bare ClientHello handshake message (no record layer), e.g. QUIC CRYPTO data.

    Same three outcomes as :func:`parse_client_hello`; bytes after the message are ignored.
    """
    fields = tls_wire.client_hello_handshake(msg)
    return None if fields is None else ClientHello(*fields)


# Alert descriptions of RFC 5246 section 7.2 and RFC 8446 section 6 (plus the RFC 7507
# and RFC 8449 additions); an unknown number is shown as "alert N".
ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}
ALERT_LEVELS = {1: "warning", 2: "fatal"}
MAX_ISSUER_TEXT = 512


@dataclass(frozen=True, slots=True)
class ServerFlight:
    """What the clear-text start of a server's TLS stream says.

    ``alert`` is e.g. ``"fatal handshake_failure"``; ``issuer`` is the RFC 4514 issuer of
    the first certificate of a Certificate message (escaped text; TLS 1.3 encrypts the
    certificate, so it is only seen up to TLS 1.2). ``complete`` means later bytes cannot
    add anything: an alert, encrypted records or bytes that are not TLS.
    """

    alert: str | None
    issuer: str | None
    complete: bool


def alert_text(level: int, description: int) -> str:
    """``"fatal handshake_failure"``-style text for an alert's two bytes."""
    lvl = ALERT_LEVELS.get(level, f"level {level}")
    return f"{lvl} {ALERT_NAMES.get(description, f'alert {description}')}"


def clear_alert(segment: bytes) -> str | None:
    """The alert of a segment that starts with a clear TLS alert record, else None.

    An alert whose body is not two bytes is encrypted (sent after ChangeCipherSpec, or TLS
    1.3) and says nothing readable.
    """
    if segment[:1] != bytes((CONTENT_ALERT,)):
        return None
    # The record walk of a server's flight owns the rule for a clear alert.
    level, description, _, _ = tls_wire.server_flight(segment)
    return alert_text(level, description) if level >= 0 else None


def parse_server_flight(data: bytes) -> ServerFlight:
    """Read the records at the start of a server's TLS stream (record layer included).

    Stops at the first alert, at the first encrypted record (ChangeCipherSpec, application
    data, or an alert whose body is not two clear bytes) and at bytes that are not TLS.
    Never raises: a certificate that does not parse simply has no issuer.
    """
    level, description, complete, certificates = tls_wire.server_flight(data)
    alert = alert_text(level, description) if level >= 0 else None
    issuer: str | None = None
    for der in certificates:
        issuer = _issuer(der)
        if issuer is not None:
            break
    return ServerFlight(alert, issuer, complete)


def _issuer(der: bytes) -> str | None:
    """The issuer of a DER certificate as escaped RFC 4514 text, None if it does not parse."""
    # Imported here: only flows that show a certificate pay for loading the x509 backend.
    from cryptography import x509

    try:
        with warnings.catch_warnings():
            # A captured certificate's flaws (a serial number that is not positive...) are
            # the sender's business: cryptography's deprecation warnings would print a Python
            # warning in the middle of the report.
            warnings.simplefilter("ignore")
            text = x509.load_der_x509_certificate(der).issuer.rfc4514_string()
    except (ValueError, TypeError, x509.InvalidVersion):
        # cryptography's ways of saying the DER is not a certificate it can read: a parse
        # error, an unknown version number, an attribute of the wrong ASN.1 type.
        return None
    raw = text.encode("utf-8", "backslashreplace")[:MAX_ISSUER_TEXT]
    return escape_text(raw)
