"""The compiled name columns against the plain per-flow rules they replace."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsaudit.decode.dns import rcode_name, rtype_name
from dsaudit.flow_records.columns import NAME_SOURCES, DnsAnswers, payload_name
from dsaudit.flow_records.name_columns import answer_dicts, payload_columns

COLUMNS = (
    *("server_name", "sni", "http_host", "connect_target", "socks_target"),
    *("dns_queries", "dns_answers", "dns_rcode", "tls_alert", "tls_server_issuer"),
)
SOURCE_CODES = np.array([NAME_SOURCES.index(k) for k in ("connect", "socks", "sni", "http_host")])
NONE = NAME_SOURCES.index("none")
# Targets in every shape split_host_port meets: host:port, [v6]:port, bare, empty.
TARGET = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from(["a.test:443", "[2001:db8::1]:8443", "b.test", "c.test:x", "::1"]),
    st.text(max_size=12),
)
ANSWER = st.tuples(st.text(max_size=8), st.integers(0, 70000), st.none() | st.text(max_size=8))


@st.composite
def payload(draw: st.DrawFn) -> SimpleNamespace:
    """An object with FlowPayload's public attributes (all the compiled code may read)."""
    return SimpleNamespace(
        sni=draw(TARGET),
        http_host=draw(TARGET),
        connect=draw(TARGET),
        socks=draw(TARGET),
        dns_queries=draw(st.lists(st.text(max_size=8), max_size=3)),
        dns_answers=[(*a, draw(st.integers(0, 2**31))) for a in draw(st.lists(ANSWER, max_size=3))],
        dns_rcodes=draw(st.lists(st.integers(0, 30), max_size=2)),
        tls_alert=draw(st.none() | st.sampled_from(["fatal handshake_failure", "warning x"])),
        tls_server_issuer=draw(st.none() | st.text(max_size=6)),
        hello_seq=draw(st.none() | st.integers(0, 2**32 - 1)),
        max_segment_c2s=draw(st.integers(0, 65535)),
    )


def reference(flows: dict[int, Any], n: int) -> dict[str, list[Any]]:
    """The per-flow loop the compiled pass replaced, written plainly."""
    out: dict[str, list[Any]] = {k: [None] * n for k in COLUMNS}
    out |= {"source": [NONE] * n, "hello": [0] * n, "max_segment": [0] * n, "detail": [0] * n}
    for f, p in flows.items():
        out["tls_alert"][f] = p.tls_alert
        out["tls_server_issuer"][f] = p.tls_server_issuer
        out["hello"][f] = int(p.hello_seq is not None)
        out["max_segment"][f] = p.max_segment_c2s
        out["detail"][f] = 1
        if p.dns_rcodes:
            out["dns_rcode"][f] = rcode_name(p.dns_rcodes[-1])
        out["sni"][f] = p.sni
        out["http_host"][f] = p.http_host
        out["connect_target"][f] = p.connect
        out["socks_target"][f] = p.socks
        out["dns_queries"][f] = p.dns_queries
        out["dns_answers"][f] = p.dns_answers
        best = payload_name(p.connect, p.socks, p.sni, p.http_host)
        if best is not None:
            out["server_name"][f] = best[0]
            out["source"][f] = NAME_SOURCES.index(best[1])
    return out


def run(flows: dict[int, Any], n: int) -> dict[str, list[Any]]:
    cols = {k: np.full(n, None, dtype=object) for k in COLUMNS}
    source = np.full(n, NONE, dtype=np.int64)
    hello = np.zeros(n, dtype=np.uint8)
    max_segment = np.zeros(n, dtype=np.int64)
    detail = np.zeros(n, dtype=np.uint8)
    payload_columns(
        flows,
        **cols,
        source=source,
        hello=hello,
        max_segment=max_segment,
        detail=detail,
        source_codes=SOURCE_CODES,
    )
    got = {k: v.tolist() for k, v in cols.items()}
    got |= {"source": source.tolist(), "hello": hello.tolist()}
    return got | {"max_segment": max_segment.tolist(), "detail": detail.tolist()}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 9), payload(), max_size=6))
def test_payload_columns_are_the_plain_per_flow_rules(flows: dict[int, Any]) -> None:
    assert run(flows, 10) == reference(flows, 10)


def blank() -> SimpleNamespace:
    return SimpleNamespace(
        **dict.fromkeys(("sni", "http_host", "connect", "socks", "tls_alert"), None),
        **dict.fromkeys(("tls_server_issuer", "hello_seq"), None),
        **{"dns_queries": [], "dns_answers": [], "dns_rcodes": [], "max_segment_c2s": 0},
    )


@pytest.mark.parametrize("index", [-1, 10, 2**40])
def test_a_flow_index_outside_the_columns_is_refused(index: int) -> None:
    assert run({3: blank()}, 10)["detail"][3] == 1
    with pytest.raises(IndexError):
        run({index: blank()}, 10)


ANSWER4 = st.tuples(
    st.text(max_size=8), st.integers(0, 70000), st.none() | st.text(), st.integers()
)


@given(st.lists(st.none() | st.lists(ANSWER4, max_size=3), max_size=5))
def test_answers_read_as_dicts_with_their_type_spelled(records: list[Any]) -> None:
    want = [
        None
        if v is None
        else [{"name": n, "type": rtype_name(t), "data": d, "ttl": ttl} for n, t, d, ttl in v]
        for v in records
    ]
    assert answer_dicts(records) == want
    column = np.empty(len(records), dtype=object)
    for i, v in enumerate(records):
        column[i] = v
    assert DnsAnswers(column).values().tolist() == want
