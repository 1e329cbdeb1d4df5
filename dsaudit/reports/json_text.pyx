# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled JSON text of flow cells (names, lists, floats), and rows joined into one string.

Hand-written in Cython because a capture's tens of thousands of DNS flows each carry a list
cell, and the standard encoder's per-call setup and a numpy grid of pieces cost more than
the text itself. Escaping is the standard library's own C escaper (json.encoder, the same
one ``json.dumps(ensure_ascii=False)`` uses); anything but plain text, integers, None and
lists or objects of those goes to the caller's encoder. Floats follow pandas' encoder
digit for digit (the flows' JSON was pandas' before it was this). :func:`join_rows` checks
every piece at entry (a str, or a list of str or an int64 array with one cell per row) and
counts the exact length and widest character before it writes.
"""

from cpython.list cimport PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.math cimport fabs, isfinite
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from json.encoder import encode_basestring

from dsaudit.decode.dns import rtype_name

cdef extern from "Python.h":
    # Borrowed references, read without touching reference counts in the row loops.
    PyObject* _item "PyList_GET_ITEM"(PyObject* lst, Py_ssize_t i)
    Py_ssize_t _size "PyList_GET_SIZE"(PyObject* lst)
    bint _is_list "PyList_CheckExact"(PyObject* o)
    bint _is_str "PyUnicode_CheckExact"(PyObject* o)
    Py_ssize_t _str_len "PyUnicode_GET_LENGTH"(PyObject* o)
    unsigned int _str_kind "PyUnicode_KIND"(PyObject* o)
    void* _str_data "PyUnicode_DATA"(PyObject* o)
    Py_UCS4 _str_maxchar "PyUnicode_MAX_CHAR_VALUE"(PyObject* o)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    unsigned int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    void PyUnicode_WRITE(int kind, void* data, Py_ssize_t index, Py_UCS4 value) nogil
    Py_UCS4 PyUnicode_READ(int kind, void* data, Py_ssize_t index) nogil
    object PyUnicode_DecodeASCII(const char* s, Py_ssize_t size, const char* errors)

cdef enum:
    PIECE_TEXT = 0  # one str for every row
    PIECE_CELLS = 1  # a list of str, one per row
    PIECE_INTS = 2  # int64 per row, written in decimal
    PIECE_INTS_OR_NULL = 3  # the same, but a negative value is written null
    # Longest decimal text of an int64: 19 digits and a sign.
    INT_CHARS = 20


# ------------------------------------------------------------------------------- cells
cdef inline object _escaped(dict seen, str text):
    """The JSON string of ``text``, escaped once per distinct text in ``seen``."""
    escaped = seen.get(text)
    if escaped is None:
        escaped = seen[text] = encode_basestring(text)
    return escaped


def float_cells(const double[::1] values, object fallback):
    """JSON text of floats as pandas' encoder writes them: ten decimals rounded half to odd
    (up past a half, and at a half when the last digit is odd or zero), trailing zeros
    dropped but one kept; ``fallback(value)`` for values it writes otherwise (not finite, at
    least 1e16 in size, or nearer zero than 1e-15)."""
    cdef Py_ssize_t i, n = values.shape[0]
    cdef double v, a, scaled, diff
    cdef uint64_t whole, frac, digits
    cdef int width, size
    cdef char text[64]
    cdef list out = []
    for i in range(n):
        v = values[i]
        a = fabs(v)
        if not isfinite(v) or a > 1e16 - 1 or (v != 0 and a < 1e-15):
            out.append(fallback(v))
            continue
        whole = <uint64_t>a
        scaled = (a - <double>whole) * 1e10
        frac = <uint64_t>scaled
        diff = scaled - <double>frac
        if diff > 0.5 or (diff == 0.5 and (frac == 0 or (frac & 1) == 1)):
            frac += 1
        if frac >= 10000000000ULL:
            frac = 0
            whole += 1
        digits = frac
        width = 10
        if frac == 0:
            width = 1
        else:
            while digits % 10 == 0:
                digits //= 10
                width -= 1
        size = 0
        if v < 0:
            text[0] = 45  # "-"
            size = 1
        size += _digits(text + size, whole, 1)
        text[size] = 46  # "."
        size += 1 + _digits(text + size + 1, digits, width)
        out.append(PyUnicode_DecodeASCII(text, size, NULL))
    return out


cdef inline int _digits(char* out, uint64_t u, int width) noexcept nogil:
    """Write ``u`` in decimal, zero-padded to ``width`` digits; return how many were written
    (at most 20)."""
    cdef char tmp[20]
    cdef int n = 0, i
    while True:
        tmp[n] = <char>(48 + u % 10)
        u //= 10
        n += 1
        if u == 0:
            break
    while n < width and n < 20:
        tmp[n] = 48
        n += 1
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef dict _KEYS = {}


cdef str _key_text(str key):
    """``"key":`` of an object's key, spelled once per distinct key."""
    text = _KEYS.get(key)
    if text is None:
        if len(_KEYS) > 4096:  # keys come from the flows' own dicts: keep the cache small
            _KEYS.clear()
        text = _KEYS[key] = encode_basestring(key) + ":"
    return <str>text


cdef bint _plain_into(list parts, object item, dict seen) except -1:
    """Append the JSON of ``item`` to ``parts`` when it is plain (text, int, None, or an
    object of those with text keys, each of exactly those types); False otherwise."""
    cdef type kind = type(item)
    cdef bint first
    if kind is str:
        parts.append(_escaped(seen, item))
        return True
    if kind is int:
        parts.append(repr(item))
        return True
    if item is None:
        parts.append("null")
        return True
    if kind is not dict:
        return False
    parts.append("{")
    first = True
    for key, value in (<dict>item).items():
        if type(key) is not str:
            return False
        kind = type(value)
        if not (kind is str or kind is int or value is None):
            return False
        if not first:
            parts.append(",")
        first = False
        parts.append(_key_text(key))
        _plain_into(parts, value, seen)
    parts.append("}")
    return True


def name_cells(list values, object fallback):
    """JSON of name cells: ``null`` for None, an escaped string for text (each distinct one
    escaped once), ``fallback(value)`` for anything else."""
    cdef dict seen = {}
    cdef list out = []
    for value in values:
        if value is None:
            out.append("null")
        elif type(value) is str:
            out.append(_escaped(seen, value))
        else:
            out.append(fallback(value))
    return out


def list_cells(list values, object fallback):
    """JSON of list cells: ``[]`` for None or an empty list, the standard encoder's compact
    text for a list of plain items, ``fallback(value)`` for anything else."""
    cdef dict seen = {}
    cdef list out = []
    cdef list parts
    cdef bint plain
    for value in values:
        if value is None or (type(value) is list and not value):
            out.append("[]")
            continue
        if type(value) is not list:
            out.append(fallback(value))
            continue
        parts = ["["]
        plain = True
        for item in <list>value:
            if len(parts) > 1:
                parts.append(",")
            if not _plain_into(parts, item, seen):
                plain = False
                break
        if plain:
            parts.append("]")
            out.append("".join(parts))
        else:
            out.append(fallback(value))
    return out


# One answer as the standard encoder writes the dict (name, type, data, ttl): each value
# is already JSON text.
# The characters of one answer besides its values: {"name":,"type":,"data":,"ttl":}
cdef Py_ssize_t _ANSWER_FIXED = len('{"name":,"type":,"data":,"ttl":}')


def answer_cells(list values, object fallback):
    """JSON of dns_answers cells held as naming keeps them, lists of (name, rtype, data,
    ttl) tuples: ``[]`` for None or no answers; else the text the standard encoder gives
    the same answers as dicts (name, type, data, ttl; the type spelled by rtype_name).
    A cell with any other shape or types goes to ``fallback(value)``.

    A cell's text is counted first and then written into one string: formatting each
    answer and joining them cost a microsecond an answer.
    """
    cdef dict seen = {}
    cdef dict types = {}
    cdef list out = []
    cdef list texts  # per answer: escaped name, spelled type, escaped data or "null"
    cdef list ttls
    cdef bint plain
    cdef Py_ssize_t total, i, m, pos
    cdef Py_UCS4 maxchar
    cdef int kind
    cdef void* data_p
    cdef int64_t ttl_v
    for value in values:
        if value is None or (type(value) is list and not value):
            out.append("[]")
            continue
        if type(value) is not list:
            out.append(fallback(value))
            continue
        texts = []
        ttls = []
        plain = True
        for item in <list>value:
            if type(item) is not tuple or len(<tuple>item) != 4:
                plain = False
                break
            name, rtype, data, ttl = <tuple>item
            if not (
                type(name) is str
                and type(rtype) is int
                and (data is None or type(data) is str)
                and type(ttl) is int
            ):
                plain = False
                break
            spelled = types.get(rtype)
            if spelled is None:
                spelled = rtype_name(rtype)
                if type(spelled) is not str:
                    plain = False
                    break
                spelled = types[rtype] = encode_basestring(spelled)
            texts.append(_escaped(seen, name))
            texts.append(spelled)
            texts.append("null" if data is None else _escaped(seen, data))
            # (A TTL past 64 bits, from no real DNS message, is spelled by Python.)
            ttls.append(ttl if -(1 << 63) <= ttl < (1 << 63) else repr(ttl))
        if not plain:
            out.append(fallback(value))
            continue
        m = len(ttls)
        # "[" and "]", a comma between answers, and each answer's fixed text.
        total = 2 + (m - 1) + m * _ANSWER_FIXED
        maxchar = 127
        for text in texts:
            total += _str_len(<PyObject*>text)
            maxchar = max(maxchar, _str_maxchar(<PyObject*>text))
        for ttl in ttls:
            total += _int_len(<int64_t>ttl) if type(ttl) is int else _str_len(<PyObject*>ttl)
        cell = PyUnicode_New(total, maxchar)
        kind = PyUnicode_KIND(cell)
        data_p = PyUnicode_DATA(cell)
        pos = _put_str(kind, data_p, 0, total, <PyObject*>"[")
        for i in range(m):
            if i:
                pos = _put_str(kind, data_p, pos, total, <PyObject*>",")
            pos = _put_str(kind, data_p, pos, total, <PyObject*>'{"name":')
            pos = _put_str(kind, data_p, pos, total, <PyObject*>texts[3 * i])
            pos = _put_str(kind, data_p, pos, total, <PyObject*>',"type":')
            pos = _put_str(kind, data_p, pos, total, <PyObject*>texts[3 * i + 1])
            pos = _put_str(kind, data_p, pos, total, <PyObject*>',"data":')
            pos = _put_str(kind, data_p, pos, total, <PyObject*>texts[3 * i + 2])
            pos = _put_str(kind, data_p, pos, total, <PyObject*>',"ttl":')
            ttl = ttls[i]
            if type(ttl) is int:
                ttl_v = ttl
                pos = _put_int(kind, data_p, pos, total, ttl_v)
            else:
                pos = _put_str(kind, data_p, pos, total, <PyObject*>ttl)
            pos = _put_str(kind, data_p, pos, total, <PyObject*>"}")
        pos = _put_str(kind, data_p, pos, total, <PyObject*>"]")
        if pos != total:
            raise RuntimeError("a DNS answer cell's text did not come to its counted length")
        out.append(cell)
    return out


# ------------------------------------------------------------------------------- rows
cdef inline Py_ssize_t _int_len(int64_t v) noexcept nogil:
    cdef uint64_t u = (<uint64_t>0 - <uint64_t>v) if v < 0 else <uint64_t>v
    cdef Py_ssize_t n = 1 if v >= 0 else 2
    while u >= 10:
        u //= 10
        n += 1
    return n


cdef inline Py_ssize_t _put_int(
    int kind, void* data, Py_ssize_t pos, Py_ssize_t total, int64_t v
) noexcept nogil:
    """Write ``v`` at ``pos``; the position after it, or -1 when it would pass ``total``."""
    cdef char buf[INT_CHARS]
    cdef uint64_t u = (<uint64_t>0 - <uint64_t>v) if v < 0 else <uint64_t>v
    cdef Py_ssize_t k = INT_CHARS
    cdef Py_ssize_t i
    while True:
        k -= 1
        buf[k] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    if v < 0:
        k -= 1
        buf[k] = 45  # "-"
    if pos < 0 or pos + INT_CHARS - k > total:
        return -1
    for i in range(k, INT_CHARS):
        PyUnicode_WRITE(kind, data, pos + i - k, <Py_UCS4>buf[i])
    return pos + INT_CHARS - k


cdef inline Py_ssize_t _put_str(
    int kind, void* data, Py_ssize_t pos, Py_ssize_t total, PyObject* s
) noexcept:
    """Copy the str ``s`` to ``pos``; the position after it, or -1 when ``s`` is not a str,
    is wider than the output or would pass ``total``."""
    if pos < 0 or s == NULL or not _is_str(s):
        return -1
    cdef Py_ssize_t n = _str_len(s)
    cdef int skind = _str_kind(s)
    cdef void* sdata = _str_data(s)
    cdef Py_ssize_t i
    if skind > kind or n > total - pos:
        return -1
    if skind == kind:
        memcpy(<char*>data + pos * kind, sdata, n * kind)
    else:  # a narrower string: every one of its characters fits the output's width
        for i in range(n):
            PyUnicode_WRITE(kind, data, pos + i, PyUnicode_READ(skind, sdata, i))
    return pos + n


cdef inline PyObject* _cell(PyObject* cells, Py_ssize_t i) noexcept:
    """Row ``i`` of a list of cells, NULL when it is no longer a list that long."""
    return _item(cells, i) if _is_list(cells) and i < _size(cells) else NULL


def join_rows(list pieces, Py_ssize_t n, str between):
    """The text of ``n`` rows, each the concatenation of ``pieces`` in order, with
    ``between`` between rows. A piece is a str (the same in every row), a list of ``n``
    str (one per row), an int64 array of ``n`` values (written in decimal), or such an
    array alone in a tuple (its negative values written null)."""
    cdef Py_ssize_t m = len(pieces)
    cdef Py_ssize_t i, j, total = 0, pos = 0
    # The output's width is the widest character it holds (CPython's strings are always
    # the narrowest kind that fits): ``between`` counts only when written.
    cdef Py_UCS4 maxchar = _str_maxchar(<PyObject*>between) if n > 1 else 127
    cdef PyObject* s
    cdef PyObject* piece_p
    cdef const int64_t[::1] ints
    cdef int kind
    cdef void* data
    if n <= 0:
        return ""
    cdef int* kinds = <int*>malloc(m * sizeof(int) + 1)
    cdef const int64_t** values = <const int64_t**>malloc(m * sizeof(int64_t*) + 1)
    keep: list = []  # the int arrays' views: their buffers stay put while being read
    try:
        if kinds == NULL or values == NULL:
            raise MemoryError()
        for j in range(m):
            piece = pieces[j]
            values[j] = NULL
            if type(piece) is str:
                kinds[j] = PIECE_TEXT
                total += n * len(<str>piece)
                maxchar = max(maxchar, _str_maxchar(<PyObject*>piece))
            elif type(piece) is list:
                kinds[j] = PIECE_CELLS
                if PyList_GET_SIZE(piece) != n:
                    raise ValueError(f"piece {j} has {len(piece)} cells for {n} rows")
                for i in range(n):
                    s = _item(<PyObject*>piece, i)
                    if not _is_str(s):
                        raise TypeError(f"piece {j}, row {i}: a cell must be a str")
                    total += _str_len(s)
                    maxchar = max(maxchar, _str_maxchar(s))
            else:
                kinds[j] = PIECE_INTS
                if type(piece) is tuple and len(<tuple>piece) == 1:
                    kinds[j] = PIECE_INTS_OR_NULL
                    piece = (<tuple>piece)[0]
                ints = piece
                if ints.shape[0] != n:
                    raise ValueError(f"piece {j} has {ints.shape[0]} values for {n} rows")
                keep.append(ints)
                values[j] = &ints[0]
                if kinds[j] == PIECE_INTS:
                    for i in range(n):
                        total += _int_len(ints[i])
                else:
                    for i in range(n):
                        total += 4 if ints[i] < 0 else _int_len(ints[i])
        total += (n - 1) * len(between)
        out = PyUnicode_New(total, maxchar)
        kind = PyUnicode_KIND(out)
        data = PyUnicode_DATA(out)
        # Every write is checked against the counted length again: nothing may change the
        # pieces in between, but a wrong count must fail, not write past the string.
        for i in range(n):
            if pos < 0:
                break
            if i:
                pos = _put_str(kind, data, pos, total, <PyObject*>between)
            for j in range(m):
                if j >= _size(<PyObject*>pieces):
                    pos = -1
                    break
                piece_p = _item(<PyObject*>pieces, j)
                if kinds[j] == PIECE_TEXT:
                    pos = _put_str(kind, data, pos, total, piece_p)
                elif kinds[j] == PIECE_CELLS:
                    pos = _put_str(kind, data, pos, total, _cell(piece_p, i))
                elif kinds[j] == PIECE_INTS_OR_NULL and values[j][i] < 0:
                    pos = _put_str(kind, data, pos, total, <PyObject*>"null")
                else:
                    pos = _put_int(kind, data, pos, total, values[j][i])
        if pos != total:
            raise RuntimeError("the pieces changed while they were joined")
        return out
    finally:
        free(kinds)
        free(values)
