# cython: language_level=3, boundscheck=True, wraparound=False, cdivision=True
"""Compiled per-flow name columns: one pass over the flows whose payload revealed something.

Hand-written in Cython because a capture has tens of thousands of DNS flows and the same
pass in Python (attribute reads, the best name) cost most of the flow columns' time; DNS
answers stay the naming stage's tuples until something asks for them as dicts. It reads
only FlowPayload's public attributes; every index is checked against the columns
(boundscheck stays on: one comparison per flow).
"""

from libc.stdint cimport int64_t, uint8_t

from dsaudit.decode.dns import rcode_name, rtype_name
from dsaudit.flows.addresses import split_host_port


cdef inline object _mnemonic(dict cache, object code, object spell):
    text = cache.get(code)
    if text is None:
        text = cache[code] = spell(code)
    return text


def payload_columns(
    dict flows,
    object[:] server_name,
    object[:] sni,
    object[:] http_host,
    object[:] connect_target,
    object[:] socks_target,
    object[:] dns_queries,
    object[:] dns_answers,
    object[:] dns_rcode,
    object[:] tls_alert,
    object[:] tls_server_issuer,
    int64_t[:] source,
    uint8_t[:] hello,
    int64_t[:] max_segment,
    uint8_t[:] detail,
    const int64_t[:] source_codes,
):
    """Fill the columns' cells of every flow in ``flows`` (flow index -> FlowPayload).

    ``server_name``/``source`` get the best payload name (:func:`payload_name`'s order) and
    ``source_codes[k]`` for its source, k = 0 connect, 1 socks, 2 sni, 3 http_host;
    ``detail`` marks every flow visited. ``dns_queries`` and ``dns_answers`` get the
    payload's own lists (answers as (name, rtype, data, ttl) tuples: :func:`answer_dicts`
    spells them); the last response code is spelled by rcode_name.
    """
    cdef Py_ssize_t f
    cdef dict rcodes = {}
    cdef int64_t code_connect = source_codes[0]
    cdef int64_t code_socks = source_codes[1]
    cdef int64_t code_sni = source_codes[2]
    cdef int64_t code_http = source_codes[3]
    for key, p in flows.items():
        f = key
        tls_alert[f] = p.tls_alert
        tls_server_issuer[f] = p.tls_server_issuer
        hello[f] = p.hello_seq is not None
        max_segment[f] = p.max_segment_c2s
        detail[f] = 1
        codes = p.dns_rcodes
        if codes:
            dns_rcode[f] = _mnemonic(rcodes, codes[-1], rcode_name)
        c = p.connect
        s = p.socks
        t = p.sni
        h = p.http_host
        sni[f] = t
        http_host[f] = h
        connect_target[f] = c
        socks_target[f] = s
        dns_queries[f] = p.dns_queries
        dns_answers[f] = p.dns_answers
        if c:
            server_name[f] = split_host_port(c)[0]
            source[f] = code_connect
        elif s:
            server_name[f] = split_host_port(s)[0]
            source[f] = code_socks
        elif t:
            server_name[f] = t
            source[f] = code_sni
        elif h:
            server_name[f] = split_host_port(h)[0]
            source[f] = code_http


def answer_dicts(list records):
    """Per flow, None or its DNS answers as dicts (name, type, data, ttl): each
    (name, rtype, data, ttl) record of ``records``' lists, its type spelled by rtype_name."""
    cdef dict rtypes = {}
    cdef list out = []
    cdef list answers
    for row in records:
        if row is None:
            out.append(None)
            continue
        answers = []
        for name, rtype, data, ttl in row:
            answers.append(
                {"name": name, "type": _mnemonic(rtypes, rtype, rtype_name), "data": data, "ttl": ttl}
            )
        out.append(answers)
    return out
