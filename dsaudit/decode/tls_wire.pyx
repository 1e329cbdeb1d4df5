# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled TLS wire walkers: a ClientHello over its records, and a server flight's records.

Compiled because naming parses a ClientHello for every TLS flow (and again for every
segment of a hello split over segments) and walks the server's first records: tens of
thousands of calls per million packets, where the struct-and-slice Python parser this
replaces spent about 5.5 us per hello. Hand-written because TLS libraries (OpenSSL and the
like) read a ClientHello only as the server of a handshake, not as a passive reader of a
stream prefix that must tell "send more" from "not TLS", and dpkt cannot tell them apart.
The walkers read the wire through a ``const uint8_t`` pointer into the caller's ``bytes``
and check every length field against the bytes present before reading past it; nothing
from the capture is trusted. Validation runs in ``nogil`` helpers that only record
offsets; Python objects (names, number tuples) are built only for a hello that parsed.
The GIL is kept: naming runs one thread per process (``--jobs`` forks processes), and
validating a hello takes a fraction of a microsecond. dsaudit.decode.tls is the public
interface and wraps these results.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from dsaudit.decode._text import escape_text, is_plain
from dsaudit.errors import DecodeError

cpdef enum:
    CONTENT_CHANGE_CIPHER_SPEC = 0x14
    CONTENT_ALERT = 0x15
    CONTENT_HANDSHAKE = 0x16
    CONTENT_APPLICATION_DATA = 0x17
    HANDSHAKE_CLIENT_HELLO = 0x01
    HANDSHAKE_CERTIFICATE = 0x0B
    EXT_SERVER_NAME = 0
    EXT_ALPN = 16
    EXT_SUPPORTED_VERSIONS = 43
    EXT_ECH = 0xFE0D
    # Cap on the ClientHello body: real ones stay below ~2 KiB, post-quantum key shares push
    # them to ~8 KiB; anything near 64 KiB is hostile and not worth buffering.
    MAX_HANDSHAKE_LENGTH = 0x10000
    # RFC 8446 caps plaintext records at 2^14; the extra 2 KiB accepts the TLS 1.2
    # ciphertext allowance some stacks apply to every record.
    MAX_RECORD_LENGTH = 0x4000 + 2048
    # A certificate chain of a few KiB is normal; the first certificate alone past this is
    # hostile.
    MAX_CERTIFICATE = 0x10000

# version(2) random(32) session_id_len(1) cipher_suites_len(2)+one(2) compression(1+1)
cdef Py_ssize_t MIN_BODY = 41

# Why a ClientHello was refused; the message (with the one number it shows) is built only
# when DecodeError is raised.
cdef enum:
    OK = 0
    E_RECORD_TYPE
    E_RECORD_MAJOR
    E_RECORD_MINOR
    E_RECORD_VERSION
    E_RECORD_LENGTH
    E_HANDSHAKE_TYPE
    E_HELLO_TOO_LONG
    E_HELLO_TOO_SHORT
    E_HELLO_VERSION
    E_SESSION_ID
    E_SUITES_CUT
    E_SUITES_LENGTH
    E_COMPRESSION_CUT
    E_COMPRESSION_LENGTH
    E_EXTENSIONS_CUT
    E_EXTENSIONS_LENGTH
    E_EXTENSION_HEADER_CUT
    E_EXTENSION_OVERRUN
    E_SNI_LIST
    E_SNI_ENTRY_CUT
    E_SNI_OVERRUN
    E_SNI_EMPTY
    E_ALPN_LIST
    E_ALPN_NAME
    E_VERSIONS_EMPTY
    E_VERSIONS_LENGTH

_MESSAGES = {
    E_RECORD_TYPE: "TLS record type {:#04x} where a handshake record belongs",
    E_RECORD_MAJOR: "TLS record major version is not 3",
    E_RECORD_MINOR: "TLS record minor version above 4",
    E_RECORD_VERSION: "TLS record version {:#06x} is not SSL 3.0 to TLS 1.3",
    E_RECORD_LENGTH: "TLS record length {} out of range",
    E_HANDSHAKE_TYPE: "handshake type {} is not ClientHello",
    E_HELLO_TOO_LONG: "ClientHello length {} exceeds " + str(MAX_HANDSHAKE_LENGTH),
    E_HELLO_TOO_SHORT: "ClientHello length {} too short",
    E_HELLO_VERSION: "ClientHello version {:#06x} is not 3.x",
    E_SESSION_ID: "session id length {} above 32",
    E_SUITES_CUT: "ClientHello ends inside the cipher suites",
    E_SUITES_LENGTH: "bad cipher suites length {}",
    E_COMPRESSION_CUT: "ClientHello ends before the compression methods",
    E_COMPRESSION_LENGTH: "bad compression methods length {}",
    E_EXTENSIONS_CUT: "ClientHello ends inside the extensions length",
    E_EXTENSIONS_LENGTH: "extensions length disagrees with the ClientHello length",
    E_EXTENSION_HEADER_CUT: "ClientHello ends inside an extension header",
    E_EXTENSION_OVERRUN: "extension {} overruns the ClientHello",
    E_SNI_LIST: "server_name list length disagrees with the extension length",
    E_SNI_ENTRY_CUT: "server_name entry header truncated",
    E_SNI_OVERRUN: "server_name entry overruns the extension",
    E_SNI_EMPTY: "empty host_name in server_name",
    E_ALPN_LIST: "ALPN list length disagrees with the extension length",
    E_ALPN_NAME: "bad ALPN protocol name length {}",
    E_VERSIONS_EMPTY: "empty supported_versions extension",
    E_VERSIONS_LENGTH: "bad supported_versions length {}",
}

# Bytes that the shared text rule (dsaudit.decode._text) keeps as they are, taken from that
# module so the rule has one definition; a name made only of them is decoded as ASCII here
# and any other name goes through escape_text.
cdef bint _PLAIN[256]
for _b in range(256):
    _PLAIN[_b] = is_plain(bytes((_b,)))


# Where the parts of a validated ClientHello body lie (offsets into the handshake message).
cdef struct Hello:
    int err
    long arg  # the number the error message shows
    int legacy_version
    Py_ssize_t suites_off
    Py_ssize_t n_suites
    Py_ssize_t ext_off  # first extension header, or -1 without an extensions block
    Py_ssize_t end
    Py_ssize_t sni_off  # the host_name, or -1
    Py_ssize_t sni_len
    Py_ssize_t alpn_off  # first name of the ALPN list used
    Py_ssize_t alpn_end
    Py_ssize_t n_alpn
    Py_ssize_t versions_off
    Py_ssize_t n_versions
    bint has_ech


cdef inline long _u16(const uint8_t *b, Py_ssize_t p) noexcept nogil:
    return (<long>b[p] << 8) | <long>b[p + 1]


cdef inline long _u24(const uint8_t *b, Py_ssize_t p) noexcept nogil:
    return (<long>b[p] << 16) | (<long>b[p + 1] << 8) | <long>b[p + 2]


cdef inline int _fail(Hello *h, int err, long arg) noexcept nogil:
    h.err = err
    h.arg = arg
    return err


cdef int _handshake_size(const uint8_t *head, Py_ssize_t *need, Hello *h) noexcept nogil:
    """Total size (header + body) of the ClientHello whose 4-byte header is ``head``."""
    if head[0] != HANDSHAKE_CLIENT_HELLO:
        return _fail(h, E_HANDSHAKE_TYPE, head[0])
    cdef long length = _u24(head, 1)
    if length > MAX_HANDSHAKE_LENGTH:
        return _fail(h, E_HELLO_TOO_LONG, length)
    if length < MIN_BODY:
        return _fail(h, E_HELLO_TOO_SHORT, length)
    need[0] = 4 + length
    return OK


cdef int _server_name(const uint8_t *b, Py_ssize_t pos, Py_ssize_t end, Hello *h) noexcept nogil:
    """Find the first host_name of a server_name extension (RFC 6066 section 3)."""
    if end - pos < 2 or pos + 2 + _u16(b, pos) != end:
        return _fail(h, E_SNI_LIST, 0)
    pos += 2
    cdef long name_type, name_len
    while pos < end:
        if pos + 3 > end:
            return _fail(h, E_SNI_ENTRY_CUT, 0)
        name_type = b[pos]
        name_len = _u16(b, pos + 1)
        pos += 3
        if pos + name_len > end:
            return _fail(h, E_SNI_OVERRUN, 0)
        if name_type == 0 and h.sni_off < 0:
            if name_len == 0:
                return _fail(h, E_SNI_EMPTY, 0)
            h.sni_off = pos
            h.sni_len = name_len
        pos += name_len
    return OK


cdef int _alpn(const uint8_t *b, Py_ssize_t pos, Py_ssize_t end, Hello *h) noexcept nogil:
    """Check the protocol name list of an ALPN extension (RFC 7301 section 3.1)."""
    if end - pos < 2 or pos + 2 + _u16(b, pos) != end:
        return _fail(h, E_ALPN_LIST, 0)
    pos += 2
    cdef Py_ssize_t first = pos, count = 0
    cdef long name_len
    while pos < end:
        name_len = b[pos]
        pos += 1
        if name_len == 0 or pos + name_len > end:
            return _fail(h, E_ALPN_NAME, name_len)
        pos += name_len
        count += 1
    h.alpn_off = first
    h.alpn_end = end
    h.n_alpn = count
    return OK


cdef int _supported_versions(
    const uint8_t *b, Py_ssize_t pos, Py_ssize_t end, Hello *h
) noexcept nogil:
    """Check the version list of a ClientHello supported_versions extension (RFC 8446 4.2.1)."""
    if end - pos < 1:
        return _fail(h, E_VERSIONS_EMPTY, 0)
    cdef long list_len = b[pos]
    if list_len == 0 or list_len & 1 or pos + 1 + list_len != end:
        return _fail(h, E_VERSIONS_LENGTH, list_len)
    h.versions_off = pos + 1
    h.n_versions = list_len >> 1
    return OK


cdef int _parse_body(const uint8_t *b, Py_ssize_t end, Hello *h) noexcept nogil:
    """Validate the ClientHello body in ``b[4:end]``; ``end`` (at least 4 + MIN_BODY) is in ``b``."""
    h.err = OK
    h.end = end
    h.ext_off = -1
    h.sni_off = -1
    h.sni_len = 0
    h.alpn_off = 0
    h.alpn_end = 0
    h.n_alpn = 0
    h.versions_off = 0
    h.n_versions = 0
    h.has_ech = False
    h.legacy_version = _u16(b, 4)
    if b[4] != 3:
        return _fail(h, E_HELLO_VERSION, h.legacy_version)
    cdef long sid_len = b[38]
    if sid_len > 32:
        return _fail(h, E_SESSION_ID, sid_len)
    cdef Py_ssize_t pos = 39 + sid_len
    if pos + 2 > end:
        return _fail(h, E_SUITES_CUT, 0)
    cdef long cs_len = _u16(b, pos)
    pos += 2
    if cs_len == 0 or cs_len & 1 or pos + cs_len > end:
        return _fail(h, E_SUITES_LENGTH, cs_len)
    h.suites_off = pos
    h.n_suites = cs_len >> 1
    pos += cs_len
    if pos >= end:
        return _fail(h, E_COMPRESSION_CUT, 0)
    cdef long comp_len = b[pos]
    pos += 1 + comp_len
    if comp_len == 0 or pos > end:
        return _fail(h, E_COMPRESSION_LENGTH, comp_len)
    if pos == end:
        # Pre-TLS-1.0-extension clients may stop here; nothing more to learn.
        return OK
    if pos + 2 > end:
        return _fail(h, E_EXTENSIONS_CUT, 0)
    if pos + 2 + _u16(b, pos) != end:
        return _fail(h, E_EXTENSIONS_LENGTH, 0)
    pos += 2
    h.ext_off = pos
    cdef bint seen_sni = False
    cdef long etype
    cdef Py_ssize_t eend
    cdef int err
    while pos < end:
        if pos + 4 > end:
            return _fail(h, E_EXTENSION_HEADER_CUT, 0)
        etype = _u16(b, pos)
        eend = pos + 4 + _u16(b, pos + 2)
        pos += 4
        if eend > end:
            return _fail(h, E_EXTENSION_OVERRUN, etype)
        # A repeated extension is illegal (RFC 8446 4.2); keep the first, like Host in
        # HTTP. An ALPN extension with an empty list does not count as the first.
        err = OK
        if etype == EXT_SERVER_NAME:
            if not seen_sni:
                seen_sni = True
                err = _server_name(b, pos, eend, h)
        elif etype == EXT_ALPN:
            if h.n_alpn == 0:
                err = _alpn(b, pos, eend, h)
        elif etype == EXT_SUPPORTED_VERSIONS:
            if h.n_versions == 0:
                err = _supported_versions(b, pos, eend, h)
        elif etype == EXT_ECH:
            h.has_ech = True
        if err != OK:
            return err
        pos = eend
    return OK


cdef object _text(const uint8_t *s, Py_ssize_t k):
    """A name's bytes as text under the shared escaping rule."""
    cdef Py_ssize_t i
    for i in range(k):
        if not _PLAIN[s[i]]:
            return escape_text(PyBytes_FromStringAndSize(<const char *>s, k))
    return PyUnicode_DecodeASCII(<const char *>s, k, NULL)


cdef tuple _u16_tuple(const uint8_t *b, Py_ssize_t pos, Py_ssize_t k):
    cdef tuple out = PyTuple_New(k)
    cdef Py_ssize_t i
    cdef object v
    for i in range(k):
        v = _u16(b, pos + 2 * i)
        Py_INCREF(v)
        PyTuple_SET_ITEM(out, i, v)
    return out


cdef tuple _fields(const uint8_t *b, Hello *h):
    """The ClientHello's fields in dataclass order, from a body _parse_body accepted."""
    cdef object sni = None
    if h.sni_off >= 0:
        sni = _text(b + h.sni_off, h.sni_len)
    cdef tuple alpn = PyTuple_New(h.n_alpn)
    cdef Py_ssize_t i, pos = h.alpn_off, k
    cdef object name
    for i in range(h.n_alpn):
        k = b[pos]
        name = _text(b + pos + 1, k)
        Py_INCREF(name)
        PyTuple_SET_ITEM(alpn, i, name)
        pos += 1 + k
    cdef Py_ssize_t n_ext = 0
    if h.ext_off >= 0:
        pos = h.ext_off
        while pos < h.end:
            n_ext += 1
            pos += 4 + _u16(b, pos + 2)
    cdef tuple types = PyTuple_New(n_ext)
    cdef object etype
    pos = h.ext_off
    for i in range(n_ext):
        etype = _u16(b, pos)
        Py_INCREF(etype)
        PyTuple_SET_ITEM(types, i, etype)
        pos += 4 + _u16(b, pos + 2)
    return (
        sni,
        alpn,
        _u16_tuple(b, h.versions_off, h.n_versions),
        h.legacy_version,
        h.has_ech,
        _u16_tuple(b, h.suites_off, h.n_suites),
        types,
    )


cdef _raise(Hello *h):
    raise DecodeError(_MESSAGES[h.err].format(h.arg))


cdef enum:
    WALK_MORE = 0  # the bytes so far are a prefix of a ClientHello's records
    WALK_FAILED = 1  # they cannot be (h.err says why)
    WALK_DONE = 2  # the whole handshake message is present


cdef int _walk_records(
    const uint8_t *p, Py_ssize_t n, Py_ssize_t *need, Py_ssize_t *first_off,
    Py_ssize_t *first_len, Hello *h,
) noexcept nogil:
    """Walk handshake records until the ClientHello's ``need`` bytes are all present."""
    cdef Py_ssize_t pos = 0, have = 0, chunk, rest, i
    cdef long length
    cdef uint8_t head[4]
    need[0] = -1
    first_off[0] = 0
    first_len[0] = 0
    while True:
        rest = n - pos
        if rest < 5:
            # A partial header can already rule out a handshake record.
            if rest >= 1 and p[pos] != CONTENT_HANDSHAKE:
                _fail(h, E_RECORD_TYPE, p[pos])
                return WALK_FAILED
            if rest >= 2 and p[pos + 1] != 3:
                _fail(h, E_RECORD_MAJOR, 0)
                return WALK_FAILED
            if rest >= 3 and p[pos + 2] > 4:
                _fail(h, E_RECORD_MINOR, 0)
                return WALK_FAILED
            return WALK_MORE
        if p[pos] != CONTENT_HANDSHAKE:
            _fail(h, E_RECORD_TYPE, p[pos])
            return WALK_FAILED
        if p[pos + 1] != 3 or p[pos + 2] > 4:
            _fail(h, E_RECORD_VERSION, _u16(p, pos + 1))
            return WALK_FAILED
        length = _u16(p, pos + 3)
        if length == 0 or length > MAX_RECORD_LENGTH:
            _fail(h, E_RECORD_LENGTH, length)
            return WALK_FAILED
        pos += 5
        chunk = length if length <= n - pos else n - pos
        if chunk > 0:
            if have == 0:
                first_off[0] = pos
                first_len[0] = chunk
                if p[pos] != HANDSHAKE_CLIENT_HELLO:
                    _fail(h, E_HANDSHAKE_TYPE, p[pos])
                    return WALK_FAILED
            i = 0
            while have + i < 4 and i < chunk:
                head[have + i] = p[pos + i]
                i += 1
            have += chunk
            if need[0] < 0 and have >= 4:
                if _handshake_size(head, need, h) != OK:
                    return WALK_FAILED
            if 0 <= need[0] <= have:
                return WALK_DONE
        if chunk < length:
            return WALK_MORE
        pos += length


cdef void _gather(
    const uint8_t *p, Py_ssize_t n, Py_ssize_t need, uint8_t *out
) noexcept nogil:
    """Copy the first ``need`` handshake bytes out of records _walk_records accepted."""
    cdef Py_ssize_t pos = 0, got = 0, take
    while got < need and n - pos >= 5:
        take = _u16(p, pos + 3)
        pos += 5
        if take > n - pos:
            take = n - pos
        if take > need - got:
            take = need - got
        memcpy(out + got, p + pos, take)
        got += take
        pos += _u16(p, pos - 2)


def client_hello(data):
    """ClientHello fields from the start of a TLS stream (record layer), None for a prefix.

    The fields are those of dsaudit.decode.tls.ClientHello, in its order; raises
    DecodeError as soon as the bytes cannot be a ClientHello.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), need, first_off, first_len
    cdef Hello h
    cdef int outcome = _walk_records(p, n, &need, &first_off, &first_len, &h)
    if outcome == WALK_MORE:
        return None
    if outcome == WALK_FAILED:
        _raise(&h)
    if first_len >= need:
        # The usual case: the whole hello sits in the first record.
        if _parse_body(p + first_off, need, &h) != OK:
            _raise(&h)
        return _fields(p + first_off, &h)
    cdef uint8_t *joined = <uint8_t *>malloc(need)
    if joined == NULL:
        raise MemoryError()
    try:
        _gather(p, n, need, joined)
        if _parse_body(joined, need, &h) != OK:
            _raise(&h)
        return _fields(joined, &h)
    finally:
        free(joined)


def client_hello_handshake(msg):
    """ClientHello fields from a bare handshake message (no record layer), None for a prefix.

    Same outcomes as :func:`client_hello`; bytes after the message are ignored.
    """
    if not isinstance(msg, bytes):
        msg = bytes(msg)
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(msg)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(msg), need = 0
    cdef Hello h
    if n < 4:
        if n > 0 and p[0] != HANDSHAKE_CLIENT_HELLO:
            _fail(&h, E_HANDSHAKE_TYPE, p[0])
            _raise(&h)
        return None
    if _handshake_size(p, &need, &h) != OK:
        _raise(&h)
    if n < need:
        return None
    if _parse_body(p, need, &h) != OK:
        _raise(&h)
    return _fields(p, &h)


def looks_like_client_hello(data):
    """Cheap check of the first 6 bytes: a handshake record whose first message is type 1."""
    if not isinstance(data, bytes):
        data = bytes(data)
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
    if PyBytes_GET_SIZE(data) < 6:
        return False
    cdef long length = _u16(p, 3)
    return (
        p[0] == CONTENT_HANDSHAKE
        and p[1] == 3
        and p[2] <= 4
        and p[5] == HANDSHAKE_CLIENT_HELLO
        and 0 < length <= MAX_RECORD_LENGTH
    )


# Where the walk of a server flight stopped.
cdef enum:
    FLIGHT_OPEN = 0  # out of bytes: later records may still say something
    FLIGHT_COMPLETE = 1  # an alert, encrypted records or bytes that are not TLS
    FLIGHT_CERTIFICATE = 2  # a Certificate message's first certificate is at cert_off


cdef struct Flight:
    Py_ssize_t pos  # next record header in the data
    uint8_t *hs  # handshake bytes of the records so far, joined
    Py_ssize_t hs_len
    Py_ssize_t hs_pos  # next handshake message in hs
    int level  # the alert's two bytes, -1 without an alert
    int description
    Py_ssize_t cert_off
    Py_ssize_t cert_len


cdef int _flight_step(const uint8_t *p, Py_ssize_t n, Flight *f) noexcept nogil:
    """Walk on to the next Certificate message or to where the flight stops saying more."""
    cdef long word_type, size, length, total, first
    cdef const uint8_t *msg
    while True:
        while f.hs_len - f.hs_pos >= 4:
            word_type = f.hs[f.hs_pos]
            size = _u24(f.hs, f.hs_pos + 1)
            if size > MAX_HANDSHAKE_LENGTH:
                return FLIGHT_COMPLETE
            if f.hs_len - f.hs_pos - 4 < size:
                break
            msg = f.hs + f.hs_pos + 4
            f.hs_pos += 4 + size
            # TLS 1.0-1.2 Certificate body: 24-bit chain length, then 24-bit length + DER of
            # each certificate, the server's own first.
            if word_type == HANDSHAKE_CERTIFICATE and size >= 6:
                total = _u24(msg, 0)
                first = _u24(msg, 3)
                if total + 3 <= size and first + 3 <= total and 0 < first <= MAX_CERTIFICATE:
                    f.cert_off = msg + 6 - f.hs
                    f.cert_len = first
                    return FLIGHT_CERTIFICATE
        if n - f.pos < 5:
            return FLIGHT_OPEN
        length = _u16(p, f.pos + 3)
        if p[f.pos + 1] != 3 or length > MAX_RECORD_LENGTH:
            return FLIGHT_COMPLETE
        if p[f.pos] != CONTENT_ALERT and p[f.pos] != CONTENT_HANDSHAKE:
            return FLIGHT_COMPLETE  # encrypted from here on, or not TLS
        if n - f.pos - 5 < length:
            return FLIGHT_OPEN
        if p[f.pos] == CONTENT_ALERT:
            if length == 2:
                f.level = p[f.pos + 5]
                f.description = p[f.pos + 6]
            return FLIGHT_COMPLETE
        memcpy(f.hs + f.hs_len, p + f.pos + 5, length)
        f.hs_len += length
        f.pos += 5 + length


def server_flight(data):
    """Walk the records at the start of a server's TLS stream (record layer included).

    Returns ``(level, description, complete, certificates)``: the alert's two bytes (-1, -1
    without a clear alert), whether later bytes cannot add anything, and the DER bytes of
    the first certificate of every Certificate message seen, in order.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Flight f
    f.pos = 0
    f.hs_len = 0
    f.hs_pos = 0
    f.level = -1
    f.description = -1
    # The joined handshake bytes never outgrow the data they come from.
    f.hs = <uint8_t *>malloc(n + 1)
    if f.hs == NULL:
        raise MemoryError()
    cdef list certificates = []
    cdef int outcome
    try:
        while True:
            outcome = _flight_step(p, n, &f)
            if outcome != FLIGHT_CERTIFICATE:
                break
            certificates.append(
                PyBytes_FromStringAndSize(<const char *>f.hs + f.cert_off, f.cert_len)
            )
    finally:
        free(f.hs)
    return f.level, f.description, outcome == FLIGHT_COMPLETE, certificates
