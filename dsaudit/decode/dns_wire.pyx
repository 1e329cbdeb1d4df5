# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled DNS wire parser: header, questions, answer records and compressed names.

Hand-written in Cython because a 1M-packet capture carries tens of thousands of DNS
messages and walking their labels byte by byte in Python cost several microseconds each:
most of the naming stage's time. Here the name walk is C working on the message bytes
(escaping labels straight into one text buffer per message); only the finished names and
records become Python objects. The argument is checked at entry (a bytes object); inside,
every read is checked against the message end or the end of the record data holding the
name, pointer chains are bounded (strictly backwards, MAX_POINTER_JUMPS, MAX_NAME_OCTETS),
and every failure is a DecodeError. :mod:`dsaudit.decode.dns` is the public API.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject_GenericSetAttr
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

from dsaudit.errors import DecodeError


cpdef enum:
    HEADER_LENGTH = 12
    MAX_NAME_OCTETS = 255
    # Every jump must go strictly backwards, which already ends any loop; this bounds the
    # work of a chain of pointers that point at pointers (127 = the most labels a name has).
    MAX_POINTER_JUMPS = 127

cdef enum:
    TYPE_A = 1
    TYPE_NS = 2
    TYPE_CNAME = 5
    TYPE_PTR = 12
    TYPE_AAAA = 28
    TYPE_DNAME = 39
    # Compression pointers hold 14-bit offsets: only names that start below can be reused.
    POINTER_REACH = 0x4000
    # Longest text of one name: at most 254 label octets, each at most 4 characters
    # (``\xNN``), with fewer dots than labels; 4 * 254 bounds it.
    NAME_TEXT_MAX = 1024
    # Buffers on the C stack cover ordinary messages; bigger ones allocate.
    STACK_SLOTS = 512
    STACK_ARENA = 4 * NAME_TEXT_MAX
    V4_MAPPED = 0xFFFF00000000

# Outcomes of the wire walk. The TRUNC_ ones mean the message ends before a field it
# declares: a cut capture, which the answer section turns into ``partial``.
cdef enum:
    OK = 0
    TRUNC_NAME
    TRUNC_QUESTION
    TRUNC_RECORD
    TRUNC_RDATA
    BAD_NAME_SHORT
    BAD_NAME_LONG
    BAD_POINTER_FORWARD
    BAD_POINTER_HEADER
    BAD_POINTER_JUMPS
    BAD_LABEL_TYPE
    BAD_NAME_DATA
    BAD_ADDRESS_LENGTH
    NO_MEMORY

# Labels and pointers read by the name walk since import: lets tests bound the work of
# hostile names by counting it, which holds on a loaded machine where a time limit fails.
cdef uint64_t _steps = 0


cdef struct Slot:
    # An already decoded name that starts at this offset: its text in the arena, its
    # octets without the root byte and the pointer jumps it took.
    Py_ssize_t text
    Py_ssize_t length
    int octets
    int jumps


cdef struct Wire:
    const uint8_t *data
    Py_ssize_t n
    Py_ssize_t pos  # where the next question or record starts
    # Decoded names by wire offset, below min(n, POINTER_REACH): most answers point at the
    # question name, so this saves re-walking the same labels. Only clean names go in.
    Slot *slots
    uint8_t *present
    Py_ssize_t nslots
    # The text of every name of the message, one after another.
    char *arena
    Py_ssize_t used
    Py_ssize_t cap
    # Whether slots and arena were allocated (a message too big for the caller's stack
    # buffers) and must be freed.
    bint slots_on_heap
    bint arena_on_heap
    # What an error refers to (the pointer target, the label type, the data length).
    Py_ssize_t detail


cdef inline bint _is_cut(int outcome) noexcept nogil:
    return outcome == TRUNC_NAME or outcome == TRUNC_QUESTION or outcome == TRUNC_RECORD \
        or outcome == TRUNC_RDATA


cdef inline int _short(int jumps, Py_ssize_t limit, Py_ssize_t n) noexcept nogil:
    """The outcome for a name that runs past where it may go."""
    if jumps == 0 and limit == n:
        return TRUNC_NAME
    return BAD_NAME_SHORT


cdef inline void _remember(
    Wire *w, Py_ssize_t at, Py_ssize_t text, Py_ssize_t length, int octets, int jumps
) noexcept nogil:
    if at < w.nslots:
        w.slots[at].text = text
        w.slots[at].length = length
        w.slots[at].octets = octets
        w.slots[at].jumps = jumps
        w.present[at] = 1


cdef const char *_HEX = b"0123456789abcdef"


cdef int _read_name(
    Wire *w, Py_ssize_t pos, Py_ssize_t limit, Py_ssize_t *end_out, Py_ssize_t *text_out
) noexcept nogil:
    """Decode the name at ``pos`` into the arena; ``end_out`` gets the offset after it.

    ``limit`` bounds the in-place part of the name (the message end, or the end of the
    record data holding it); after a pointer the message end does. The text starts at
    ``text_out`` and ends at the new ``w.used``.
    """
    global _steps
    cdef const uint8_t *d = w.data
    cdef Py_ssize_t n = w.n
    cdef Py_ssize_t start = pos, end = -1, floor = pos, stop, nxt, target, i, tail
    cdef int octets = 1  # the terminating root label
    cdef int jumps = 0, labels = 0, length
    cdef Py_ssize_t first_target = -1, mark = 0
    cdef int first_labels = 0, first_octets = 0, first_jumps = 0
    cdef Slot *hit
    cdef uint8_t c
    cdef char *grown
    cdef Py_ssize_t base, cur
    cdef char *out
    if w.cap - w.used < NAME_TEXT_MAX:
        if w.arena_on_heap:
            grown = <char *>realloc(w.arena, w.cap * 2)
        else:
            grown = <char *>malloc(w.cap * 2)
            if grown != NULL:
                memcpy(grown, w.arena, w.used)
        if grown == NULL:
            return NO_MEMORY
        w.arena = grown
        w.arena_on_heap = True
        w.cap *= 2
    out = w.arena
    base = cur = w.used
    while True:
        _steps += 1
        stop = limit if jumps == 0 else n
        if pos >= stop:
            return _short(jumps, limit, n)
        length = d[pos]
        if length == 0:
            if end < 0:
                end = pos + 1
            break
        if length < 0x40:
            nxt = pos + 1 + length
            if nxt > stop:
                return _short(jumps, limit, n)
            octets += length + 1
            if octets > MAX_NAME_OCTETS:
                return BAD_NAME_LONG
            if cur > base:
                out[cur] = b'.'
                cur += 1
            for i in range(pos + 1, nxt):
                c = d[i]
                # Printable ASCII passes except the backslash and the dot (a dot inside a
                # label must not read as a separator); see dsaudit.decode._text.
                if 0x20 <= c <= 0x7E and c != 0x5C and c != 0x2E:
                    out[cur] = <char>c
                    cur += 1
                else:
                    out[cur] = b'\\'
                    out[cur + 1] = b'x'
                    out[cur + 2] = _HEX[c >> 4]
                    out[cur + 3] = _HEX[c & 0xF]
                    cur += 4
            labels += 1
            pos = nxt
        elif length >= 0xC0:
            if pos + 2 > stop:
                return _short(jumps, limit, n)
            target = ((length & 0x3F) << 8) | d[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= floor:
                w.detail = target
                return BAD_POINTER_FORWARD
            if target < HEADER_LENGTH:
                w.detail = target
                return BAD_POINTER_HEADER
            jumps += 1
            hit = NULL
            if target < w.nslots and w.present[target]:
                hit = &w.slots[target]
                octets += hit.octets
                jumps += hit.jumps
            if jumps > MAX_POINTER_JUMPS:
                return BAD_POINTER_JUMPS
            if octets > MAX_NAME_OCTETS:
                return BAD_NAME_LONG
            if hit != NULL:
                if hit.length > 0:
                    if cur > base:
                        out[cur] = b'.'
                        cur += 1
                    # The cached text lies before ``base``: the regions never overlap.
                    memcpy(out + cur, out + hit.text, hit.length)
                    cur += hit.length
                break
            if first_target < 0:
                first_target = target
                first_labels = labels
                first_octets = octets
                first_jumps = jumps
                mark = cur
            floor = target
            pos = target
        else:
            w.detail = length >> 6
            return BAD_LABEL_TYPE
    if labels > 0 and d[start] < 0x40:
        _remember(w, start, base, cur - base, octets - 1, jumps)
    if first_target >= 0:
        # The name from the first pointer's target on: what follows the labels before it.
        if first_labels == 0:
            tail = base
        elif cur > mark:
            tail = mark + 1  # past the dot after the labels before the pointer
        else:
            tail = cur
        _remember(w, first_target, tail, cur - tail, octets - first_octets, jumps - first_jumps)
    w.used = cur
    end_out[0] = end
    text_out[0] = base
    return OK


cdef inline uint32_t _u16(const uint8_t *d, Py_ssize_t pos) noexcept nogil:
    return (<uint32_t>d[pos] << 8) | d[pos + 1]


cdef inline uint32_t _u32(const uint8_t *d, Py_ssize_t pos) noexcept nogil:
    return (
        (<uint32_t>d[pos] << 24) | (<uint32_t>d[pos + 1] << 16)
        | (<uint32_t>d[pos + 2] << 8) | d[pos + 3]
    )


cdef str _name_type(int rtype):
    if rtype == TYPE_NS:
        return "NS"
    if rtype == TYPE_CNAME:
        return "CNAME"
    if rtype == TYPE_PTR:
        return "PTR"
    if rtype == TYPE_DNAME:
        return "DNAME"
    if rtype == TYPE_A:
        return "A"
    return "AAAA"


cdef object _failure(int outcome, Wire *w, int rtype):
    """The DecodeError for a walk outcome (TRUNC_ ones included, for the question section)."""
    if outcome == TRUNC_NAME:
        return DecodeError("name runs past the end of the message")
    if outcome == TRUNC_QUESTION:
        return DecodeError("question ends before its type and class")
    if outcome == TRUNC_RECORD:
        return DecodeError("record ends inside its fixed fields")
    if outcome == TRUNC_RDATA:
        return DecodeError("record data runs past the end of the message")
    if outcome == BAD_NAME_SHORT:
        return DecodeError("name runs past the end of its record or message")
    if outcome == BAD_NAME_LONG:
        return DecodeError(f"name longer than {MAX_NAME_OCTETS} octets")
    if outcome == BAD_POINTER_FORWARD:
        return DecodeError(f"compression pointer to {w.detail} does not point backwards")
    if outcome == BAD_POINTER_HEADER:
        return DecodeError(f"compression pointer to {w.detail} lands in the header")
    if outcome == BAD_POINTER_JUMPS:
        return DecodeError("too many compression pointers in one name")
    if outcome == BAD_LABEL_TYPE:
        return DecodeError(f"unsupported label type {w.detail:#x}")
    if outcome == BAD_NAME_DATA:
        return DecodeError(f"{_name_type(rtype)} data length disagrees with its name")
    if outcome == BAD_ADDRESS_LENGTH:
        return DecodeError(f"{_name_type(rtype)} record with {w.detail} data bytes")
    if outcome == NO_MEMORY:
        return MemoryError("DNS name text")
    return AssertionError(f"DNS walk outcome {outcome}")


cdef struct Record:
    Py_ssize_t name  # arena offset of the owner name's text
    Py_ssize_t name_end
    int rtype
    int rclass
    uint32_t ttl
    int kind  # DATA_NONE, DATA_NAME (text in the arena) or DATA_ADDRESS (bytes at rdata)
    Py_ssize_t rdata
    Py_ssize_t text  # arena offset of the data name's text
    Py_ssize_t text_end

cdef enum:
    DATA_NONE = 0
    DATA_NAME
    DATA_ADDRESS


cdef int _read_record(Wire *w, Py_ssize_t *pos, Record *rec) noexcept nogil:
    """Decode the resource record at ``pos[0]`` and move it past the record."""
    cdef const uint8_t *d = w.data
    cdef Py_ssize_t n = w.n, at, end, name_end
    cdef int outcome, rdlength
    outcome = _read_name(w, pos[0], n, &at, &rec.name)
    if outcome != OK:
        return outcome
    rec.name_end = w.used
    if at + 10 > n:
        return TRUNC_RECORD
    rec.rtype = _u16(d, at)
    rec.rclass = _u16(d, at + 2)
    rec.ttl = _u32(d, at + 4)
    rdlength = _u16(d, at + 8)
    at += 10
    end = at + rdlength
    if end > n:
        return TRUNC_RDATA
    rec.kind = DATA_NONE
    rec.rdata = at
    if (
        rec.rtype == TYPE_NS or rec.rtype == TYPE_CNAME or rec.rtype == TYPE_PTR
        or rec.rtype == TYPE_DNAME
    ):
        outcome = _read_name(w, at, end, &name_end, &rec.text)
        if outcome != OK:
            return outcome
        rec.text_end = w.used
        if name_end != end:
            return BAD_NAME_DATA
        rec.kind = DATA_NAME
    elif rec.rclass & 0x7FFF == 1 and (rec.rtype == TYPE_A or rec.rtype == TYPE_AAAA):
        if rdlength != (4 if rec.rtype == TYPE_A else 16):
            w.detail = rdlength
            return BAD_ADDRESS_LENGTH
        rec.kind = DATA_ADDRESS
    pos[0] = end
    return OK


cdef inline str _text(Wire *w, Py_ssize_t start, Py_ssize_t end):
    return PyUnicode_DecodeASCII(w.arena + start, end - start, NULL)


cdef inline Py_ssize_t _dotted(const uint8_t *a, char *out) noexcept nogil:
    """Dotted-decimal text of the 4 bytes at ``a``; returns its length."""
    cdef Py_ssize_t k = 0
    cdef int i, v
    for i in range(4):
        v = a[i]
        if i:
            out[k] = b'.'
            k += 1
        if v >= 100:
            out[k] = <char>(48 + v // 100)
            k += 1
        if v >= 10:
            out[k] = <char>(48 + v // 10 % 10)
            k += 1
        out[k] = <char>(48 + v % 10)
        k += 1
    return k


cdef Py_ssize_t _ipv6_text(const uint8_t *a, char *out) noexcept nogil:
    """IPv6 text of the 16 bytes at ``a`` as inet_ntop writes it; returns its length.

    The rules of the C library's inet_ntop (and so of socket.inet_ntop and tshark): groups
    in lower-case hex without leading zeros; the longest run of two or more zero groups
    (the first of equally long ones) becomes ``::``; ``::a.b.c.d`` and ``::ffff:a.b.c.d``
    keep their IPv4 part dotted. Written here because glibc's goes through printf, which
    cost more than decoding the rest of the message.
    """
    cdef unsigned int words[8]
    cdef int i, shift, nibble
    cdef int best = -1, best_len = 0, run = -1, run_len = 0
    cdef Py_ssize_t k = 0
    for i in range(8):
        words[i] = (<unsigned int>a[2 * i] << 8) | a[2 * i + 1]
        if words[i] == 0:
            if run < 0:
                run = i
                run_len = 0
            run_len += 1
            if run_len > best_len:
                best = run
                best_len = run_len
        else:
            run = -1
    if best_len < 2:
        best = -1
    for i in range(8):
        if best >= 0 and best <= i < best + best_len:
            if i == best:
                out[k] = b':'
                k += 1
            continue
        if i:
            out[k] = b':'
            k += 1
        if i == 6 and best == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
            return k + _dotted(a + 12, out + k)
        for shift in range(12, -4, -4):
            nibble = (words[i] >> shift) & 0xF
            if shift == 0 or words[i] >> shift:
                out[k] = _HEX[nibble]
                k += 1
    if best >= 0 and best + best_len == 8:
        out[k] = b':'
        k += 1
    return k


cdef str _address_text(Wire *w, Record *rec):
    """The address as socket.inet_ntop writes it."""
    cdef char buf[48]  # the longest IPv6 text is 45 characters
    cdef Py_ssize_t k
    if rec.rtype == TYPE_A:
        k = _dotted(w.data + rec.rdata, buf)
    else:
        k = _ipv6_text(w.data + rec.rdata, buf)
    return PyUnicode_DecodeASCII(buf, k, NULL)


cdef object _address_key(Wire *w, Record *rec):
    """The address as dsaudit.flows.addresses keys it: IPv4 as v4-mapped IPv6."""
    cdef const uint8_t *d = w.data + rec.rdata
    cdef uint64_t hi = 0, lo = 0
    cdef int i
    if rec.rtype == TYPE_A:
        return <uint64_t>V4_MAPPED | _u32(d, 0)
    for i in range(8):
        hi = (hi << 8) | d[i]
        lo = (lo << 8) | d[8 + i]
    return (<object>hi << 64) | lo


cdef int _open(
    Wire *w, bytes data, Slot *slots, uint8_t *present, char *arena, Py_ssize_t cap
) except -1:
    """Set ``w`` up for ``data`` (checked here), using the caller's buffers when they suffice."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    w.slots_on_heap = w.arena_on_heap = False
    if n < HEADER_LENGTH:
        raise DecodeError(f"DNS message of {n} bytes is shorter than its header")
    w.data = <const uint8_t *>PyBytes_AS_STRING(data)
    w.n = n
    w.pos = HEADER_LENGTH
    w.nslots = n if n < POINTER_REACH else POINTER_REACH
    if w.nslots <= STACK_SLOTS:
        w.slots = slots
        w.present = present
        memset(present, 0, w.nslots)
    else:
        w.slots = <Slot *>malloc(w.nslots * sizeof(Slot))
        w.present = <uint8_t *>calloc(w.nslots, 1)
        if w.slots == NULL or w.present == NULL:
            free(w.slots)
            free(w.present)
            raise MemoryError("DNS name cache")
        w.slots_on_heap = True
    w.arena = arena
    w.cap = cap
    w.used = 0
    return 0


cdef void _close(Wire *w) noexcept:
    if w.slots_on_heap:
        free(w.slots)
        free(w.present)
    if w.arena_on_heap:
        free(w.arena)


cdef int _question(Wire *w, Py_ssize_t *text, int *qtype, int *qclass) except -1:
    """Decode the next question; raises DecodeError for any failure, a cut included."""
    cdef Py_ssize_t end
    cdef int outcome = _read_name(w, w.pos, w.n, &end, text)
    if outcome == OK and end + 4 > w.n:
        outcome = TRUNC_QUESTION
    if outcome == OK:
        qtype[0] = _u16(w.data, end)
        qclass[0] = _u16(w.data, end + 2)
        w.pos = end + 4
        return 0
    exc = _failure(outcome, w, 0)
    if _is_cut(outcome):
        raise DecodeError(f"DNS message ends inside the question section: {exc}")
    raise exc


cdef bint _record(Wire *w, Record *rec) except -1:
    """Decode the next record: True, or False when the message is cut inside it."""
    cdef int outcome = _read_record(w, &w.pos, rec)
    if outcome == OK:
        return True
    if _is_cut(outcome):
        return False
    raise _failure(outcome, w, rec.rtype)


def parse_wire(bytes data not None):
    """Decode one DNS message: (id, flags, questions, answers, nscount, arcount, partial).

    ``questions`` holds (name, qtype, qclass) and ``answers`` (name, rtype, rclass, ttl,
    data) tuples, as :func:`dsaudit.decode.dns.parse_dns` documents them. Raises
    DecodeError when the header or question section is incomplete or anything is
    malformed; an answer section cut short gives ``partial`` True.
    """
    cdef Slot slots[STACK_SLOTS]
    cdef uint8_t present[STACK_SLOTS]
    cdef char arena[STACK_ARENA]
    cdef Wire w
    cdef Py_ssize_t text
    cdef int qtype, qclass
    cdef uint32_t i
    cdef Record rec
    cdef list questions = []
    cdef list answers = []
    cdef bint partial = False
    _open(&w, data, slots, present, arena, STACK_ARENA)
    try:
        for i in range(_u16(w.data, 4)):
            _question(&w, &text, &qtype, &qclass)
            questions.append((_text(&w, text, w.used), qtype, qclass))
        for i in range(_u16(w.data, 6)):
            if not _record(&w, &rec):
                partial = True
                break
            if rec.kind == DATA_NAME:
                value = _text(&w, rec.text, rec.text_end)
            elif rec.kind == DATA_ADDRESS:
                value = _address_text(&w, &rec)
            else:
                value = None
            answers.append(
                (_text(&w, rec.name, rec.name_end), rec.rtype, rec.rclass, rec.ttl, value)
            )
        return (
            _u16(w.data, 0),
            _u16(w.data, 2),
            questions,
            answers,
            _u16(w.data, 8),
            _u16(w.data, 10),
            partial,
        )
    finally:
        _close(&w)


cdef object _digest(type into, tuple queries, int rcode, tuple answers, tuple addresses):
    # Field by field, as pickle restores a slotted frozen dataclass: its generated
    # __init__ (four object.__setattr__ calls in Python) costs more than the whole walk.
    digest = into.__new__(into)
    PyObject_GenericSetAttr(digest, "queries", queries)
    PyObject_GenericSetAttr(digest, "rcode", rcode)
    PyObject_GenericSetAttr(digest, "answers", answers)
    PyObject_GenericSetAttr(digest, "addresses", addresses)
    return digest


def digest_wire(bytes data not None, type into not None):
    """What naming needs of one DNS message, as an ``into`` (naming's DnsDigest).

    The same as reading :func:`parse_wire`'s result: ``queries``, the question names; for
    a query ``rcode`` -1 and nothing else; for a response the header rcode, ``answers``,
    (name, rtype, data, ttl) of each answer, and ``addresses``, (address key, asked name)
    of each A/AAAA answer, the owner name followed back through the message's CNAMEs
    (compared without case, stopping at a loop). Fails exactly when :func:`parse_wire` does.
    """
    cdef Slot slots[STACK_SLOTS]
    cdef uint8_t present[STACK_SLOTS]
    cdef char arena[STACK_ARENA]
    cdef Wire w
    cdef Py_ssize_t text
    cdef int qtype, qclass
    cdef uint32_t i
    cdef Record rec
    cdef list queries = []
    cdef list answers = []
    cdef list found = []  # (answer index, address key) of the address records
    cdef dict alias_of = {}
    cdef bint response
    cdef int rcode
    cdef set seen
    _open(&w, data, slots, present, arena, STACK_ARENA)
    try:
        response = (_u16(w.data, 2) & 0x8000) != 0
        for i in range(_u16(w.data, 4)):
            _question(&w, &text, &qtype, &qclass)
            queries.append(_text(&w, text, w.used))
        for i in range(_u16(w.data, 6)):
            if not _record(&w, &rec):
                break
            if not response:
                continue  # a query's answers only have to decode
            name = _text(&w, rec.name, rec.name_end)
            if rec.kind == DATA_NAME:
                value = _text(&w, rec.text, rec.text_end)
                if rec.rtype == TYPE_CNAME and value:
                    alias_of[value.lower()] = name
            elif rec.kind == DATA_ADDRESS:
                value = _address_text(&w, &rec)
                found.append((len(answers), _address_key(&w, &rec)))
            else:
                value = None
            answers.append((name, rec.rtype, value, rec.ttl))
        if not response:
            return _digest(into, tuple(queries), -1, (), ())
        rcode = _u16(w.data, 2) & 0xF
    finally:
        _close(&w)
    addresses = []
    for index, key in found:
        name = answers[index][0]
        if alias_of:
            low = name.lower()
            if low in alias_of:
                seen = {low}
                while True:
                    name = alias_of[low]
                    low = name.lower()
                    if low in seen or low not in alias_of:
                        break
                    seen.add(low)
        addresses.append((key, name))
    return _digest(into, tuple(queries), rcode, tuple(answers), tuple(addresses))


def name_steps():
    """Labels and pointers the name walk has read since import (for tests bounding work)."""
    return _steps
