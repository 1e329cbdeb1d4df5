"""Joining flows across file boundaries: the rules, then split captures against whole ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dsaudit.decode.capture_stats import CaptureStats
from dsaudit.flow_records.flowlogs.common import seen_bits
from dsaudit.flow_records.merge import continues, join_history, join_rows, merge_parts, merge_stats
from dsaudit.flow_records.parts import PartResult, read_part
from dsaudit.flow_records.reading import read_captures
from dsaudit.flows.addresses import key_from_text
from dsaudit.flows.table import Timeouts
from tests.corpus import capture_path, corpus_names, needs_corpus
from tests.flow_rows import T0, flow, frame
from tests.splitter import safe_cuts, split

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
COMPARED = [
    "proto",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "vlan",
    "inner_vlan",
    "packets_c2s",
    "packets_s2c",
    "bytes_c2s",
    "bytes_s2c",
    "payload_bytes_c2s",
    "payload_bytes_s2c",
    "start",
    "end",
    "state",
    "outcome",
    "initiator_evidence",
    "server_name",
    "name_source",
    "sni",
    "http_host",
    "dns_queries",
    "dns_answers",
    "icmp_errors",
    "history",
]


def _part(rows: list[dict[str, object]], **extra: object) -> PartResult:
    flows = frame([flow(**r) for r in rows])
    first = int(flows["start"].min().value) if len(flows) else None
    return PartResult(flows=flows, captures=[], stats=CaptureStats(first_ts_ns=first), **extra)  # type: ignore[arg-type]


def _row(**fields: object) -> dict[str, object]:
    return {"client_ip": "10.0.0.1", "server_ip": "10.0.0.2", "server_port": 4120, **fields}


# ----------------------------------------------------------------------------- rules


def test_history_letters_and_bits() -> None:
    assert join_history("ShA", "ADaFf") == "ShADaFf"
    assert join_history("", "SS") == "S"
    assert seen_bits("S") == 1 << 1 and seen_bits("s") == 1 << 8
    assert seen_bits("^S?") == seen_bits("S")


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        ({"history": "ShAD"}, {"history": "Dd", "initiator_evidence": "port"}, True),
        ({"history": "ShADFf"}, {"history": "S", "initiator_evidence": "syn"}, False),
        ({"history": "ShADr"}, {"history": "S", "initiator_evidence": "syn"}, False),
        # A SYN repeating an attempt nobody answered is the same connection.
        ({"history": "S", "state": "S0"}, {"history": "S", "initiator_evidence": "syn"}, True),
        # The originator SYNs again after the handshake: a new connection (new ISN).
        ({"history": "ShAD"}, {"history": "Sh", "initiator_evidence": "syn"}, False),
    ],
)
def test_tcp_continuation(
    earlier: dict[str, object], later: dict[str, object], expected: bool
) -> None:
    e = flow(**_row(at=0, **earlier))
    lt = flow(**_row(at=2, **later))
    assert continues(e, lt, Timeouts()) is expected


def test_idle_timeout_ends_a_flow() -> None:
    e = flow(**_row(proto="udp", server_port=53, at=0))
    assert continues(e, flow(**_row(proto="udp", server_port=53, at=60)), Timeouts())
    assert not continues(e, flow(**_row(proto="udp", server_port=53, at=62)), Timeouts())


def test_join_reorients_the_later_part() -> None:
    head = flow(**_row(at=0, history="ShAD", packets_c2s=3, packets_s2c=2, bytes_c2s=300))
    tail = flow(
        client_ip="10.0.0.2",
        client_port=4120,
        server_ip="10.0.0.1",
        server_port=40000,
        at=5,
        history="DdFf",
        packets_c2s=4,
        packets_s2c=1,
        bytes_s2c=70,
        initiator_evidence="port",
        sni="dsm.example",
        server_name="dsm.example",
    )
    out = join_rows([head, tail])
    assert (out["client_ip"], out["client_port"]) == ("10.0.0.1", 40000)
    assert (out["packets_c2s"], out["packets_s2c"]) == (4, 6)
    assert out["bytes_c2s"] == 370
    # The tail's client letters were the responder's: they come back lower case.
    assert out["history"] == "ShADdfF"
    assert out["start"] == T0 and out["end"] == T0 + pd.Timedelta(seconds=6)
    assert (out["server_name"], out["name_source"]) == ("dsm.example", "sni")
    assert out["initiator_evidence"] == "syn"


def test_merge_recomputes_state_and_outcome() -> None:
    a = _part([_row(at=0, history="S", state="S0", outcome="unanswered", packets_s2c=0)])
    b = _part(
        [_row(at=1, history="hAD", state="OTH", outcome="partial", initiator_evidence="synack")]
    )
    out = merge_parts([a, b]).flows
    assert len(out) == 1
    assert (out["state"][0], out["outcome"][0], out["history"][0]) == ("S1", "established", "ShAD")


def test_dns_answer_in_an_earlier_file_names_a_later_flow() -> None:
    client, server = key_from_text("10.0.0.1"), key_from_text("203.0.113.9")
    assert client is not None and server is not None
    answer = (client, server, int(T0.value), "updates.example")
    a = _part([_row(proto="udp", server_ip="10.0.0.53", server_port=53, at=0)], dns=[answer])
    b = _part([_row(server_ip="203.0.113.9", server_port=443, at=400)])
    out = merge_parts([a, b]).flows
    row = out[out["server_ip"] == "203.0.113.9"].iloc[0]
    assert (row["server_name"], row["name_source"]) == ("updates.example", "dns")


def test_icmp_error_in_a_later_file_rejects_an_earlier_attempt() -> None:
    c, s = key_from_text("10.0.0.1"), key_from_text("10.0.0.2")
    assert c is not None and s is not None
    info = {"type": 3, "code": 13, "from": s, "ts": int(T0.value) + 10**9, "family": 4}
    error = (int(T0.value) + 10**9, (-1, -1, 6, c, 40000, s, 4120), info)
    a = _part([_row(at=0, history="S", state="S0", outcome="unanswered", packets_s2c=0)])
    b = _part([_row(client_ip="10.0.0.7", at=0.5)], icmp_errors=[error])
    out = merge_parts([a, b]).flows
    row = out[out["client_ip"] == "10.0.0.1"].iloc[0]
    assert row["outcome"] == "rejected"
    assert row["icmp_errors"][0]["from"] == "10.0.0.2"


def test_stats_add_up() -> None:
    a = CaptureStats(frames=3, undecodable={"x": 1}, first_ts_ns=5, last_ts_ns=9)
    b = CaptureStats(frames=4, undecodable={"x": 2, "y": 1}, first_ts_ns=2, last_ts_ns=7)
    out = merge_stats([a, b, CaptureStats()])
    assert (out.frames, out.undecodable, out.first_ts_ns, out.last_ts_ns) == (
        7,
        {"x": 3, "y": 1},
        2,
        9,
    )


# ----------------------------------------------------------------------------- split captures


def _compare(source: Path, tmp: Path, cuts: int, seed: int, gz: bool = False) -> None:
    whole = read_captures([str(source)]).flows
    paths = split(source, safe_cuts(source, cuts, seed), tmp, compress=gz)
    joined = merge_parts([read_part(str(p)) for p in paths]).flows
    a = whole[COMPARED].astype(str).reset_index(drop=True)
    b = joined[COMPARED].astype(str).reset_index(drop=True)
    # Retransmission letters depend on the sequence numbers seen before, which a part
    # that starts mid-connection lacks; every other letter must agree.
    for df in (a, b):
        df["history"] = df["history"].str.replace("[Tt]", "", regex=True)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("name", ["healthy.pcap", "problems.pcap", "manager-host.pcapng"])
def test_split_sample_equals_whole(name: str, tmp_path: Path) -> None:
    _compare(SAMPLES / name, tmp_path, cuts=7, seed=3, gz=True)


def _readable() -> list[str]:
    skip = ("empty-", "invalid-")
    return [n for n in corpus_names() if not n.startswith(skip)]


@needs_corpus
@pytest.mark.parametrize("name", _readable())
def test_split_corpus_capture_equals_whole(name: str, tmp_path: Path) -> None:
    _compare(capture_path(name), tmp_path, cuts=4, seed=0)
