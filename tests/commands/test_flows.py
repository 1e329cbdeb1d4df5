"""`dsaudit flows` end to end: formats, outputs, several captures, errors, jobs, hostile names."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsaudit.cli import main
from dsaudit.flow_records.frame import FLOW_COLUMNS, FLOW_DTYPES
from dsaudit.reports.flow_output import TABLE_COLUMNS
from dsaudit.sources.capture_file import DEFAULT_BATCH
from tests.factories import client_hello, dns_query, dns_response, http_request
from tests.packets import (
    BASE_TS,
    NS,
    Frame,
    TcpConversation,
    ng_epb,
    ng_idb,
    ng_shb,
    pcap_bytes,
    pcap_header,
    pcap_record,
    tcp_frame,
    udp_frame,
    write_pcap,
)

ROOT = Path(__file__).resolve().parents[2]
C, S, RESOLVER = "10.70.0.10", "10.70.0.20", "10.70.0.53"
TLS_NAME, WEB_NAME, DNS_NAME = "tls.example.com", "web.example.com", "db.example.com"
DB = "10.70.0.30"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``dsaudit flows ARGS`` in process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(["flows", "--no-progress", *args])
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out, err


def named_frames(start: int = BASE_TS, cport: int = 40000) -> list[Frame]:
    """A TLS flow, an HTTP flow, a DNS exchange and a flow named by it."""
    tls = TcpConversation(C, S, cport, 443, start_ns=start)
    tls.handshake()
    tls.send(True, "PA", client_hello(TLS_NAME))
    tls.close()
    web = TcpConversation(C, S, cport + 1, 80, start_ns=start + NS)
    web.handshake()
    web.send(True, "PA", http_request(WEB_NAME))
    web.send(False, "PA", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    web.close()
    answer = dns_response(DNS_NAME, [(DNS_NAME, 1, DB, 30)], id=9)
    dns = [
        (start + 2 * NS, udp_frame(C, RESOLVER, cport + 2, 53, dns_query(DNS_NAME, id=9))),
        (start + 2 * NS + 500, udp_frame(RESOLVER, C, 53, cport + 2, answer)),
    ]
    db = (start + 3 * NS, tcp_frame(C, DB, cport + 3, 5432, "S"))
    return [*tls.frames, *web.frames, *dns, db]


EXPECTED_NAMES = {443: TLS_NAME, 80: WEB_NAME, 5432: DNS_NAME}


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    return write_pcap(tmp_path / "named.pcap", named_frames(), nsec=True)


def _names_by_port(df: pd.DataFrame) -> dict[int, str]:
    return {
        int(p): n
        for p, n in zip(df["server_port"], df["server_name"], strict=True)
        if isinstance(n, str)
    }


# ----------------------------------------------------------------------------- formats


def test_table_format(capsys: pytest.CaptureFixture[str], capture: Path) -> None:
    code, out, err = run(capsys, str(capture))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == TABLE_COLUMNS
    assert set(lines[1]) <= {"-", " "}
    rows = lines[2:]
    assert len(rows) == 4
    for port, name in EXPECTED_NAMES.items():
        assert any(f":{port} " in r and name in r for r in rows), (port, name)


def test_csv_format(capsys: pytest.CaptureFixture[str], capture: Path) -> None:
    code, out, _ = run(capsys, str(capture), "--format", "csv")
    assert code == 0
    df = pd.read_csv(io.StringIO(out))
    assert list(df.columns) == FLOW_COLUMNS
    assert _names_by_port(df) == EXPECTED_NAMES
    assert df["start"].str.endswith("Z").all()


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_formats(capsys: pytest.CaptureFixture[str], capture: Path, fmt: str) -> None:
    code, out, _ = run(capsys, str(capture), "--format", fmt)
    assert code == 0
    if fmt == "json":
        records = json.loads(out)
    else:
        records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 4
    assert all(list(r) == FLOW_COLUMNS for r in records)
    names = {r["server_port"]: r["server_name"] for r in records if r["server_name"]}
    assert names == EXPECTED_NAMES
    dns = next(r for r in records if r["server_port"] == 53)
    assert dns["dns_queries"] == [DNS_NAME]
    assert dns["dns_answers"] == [{"name": DNS_NAME, "type": "A", "data": DB, "ttl": 30}]
    assert all(r["start"].endswith("Z") and r["end"].endswith("Z") for r in records)


def test_parquet_round_trip(
    capsys: pytest.CaptureFixture[str], capture: Path, tmp_path: Path
) -> None:
    target = tmp_path / "flows.parquet"
    code, out, _ = run(capsys, str(capture), "--format", "parquet", "--output", str(target))
    assert (code, out) == (0, "")
    df = pd.read_parquet(target)
    assert list(df.columns) == FLOW_COLUMNS
    for col, dtype in FLOW_DTYPES.items():
        if col in ("dns_queries", "dns_answers", "icmp_errors"):
            assert df[col].dtype == object
        else:
            assert df[col].dtype == pd.api.types.pandas_dtype(dtype), col
    assert _names_by_port(df) == EXPECTED_NAMES
    dns = df[df["server_port"] == 53].iloc[0]
    assert list(dns["dns_queries"]) == [DNS_NAME]


def test_parquet_needs_an_output_file(capsys: pytest.CaptureFixture[str], capture: Path) -> None:
    code, _, err = run(capsys, str(capture), "--format", "parquet")
    assert code == 2
    assert err.startswith("dsaudit: error:") and len(err.splitlines()) == 1


def test_output_option_writes_the_file(
    capsys: pytest.CaptureFixture[str], capture: Path, tmp_path: Path
) -> None:
    target = tmp_path / "flows.csv"
    code, out, _ = run(capsys, str(capture), "--format", "csv", "-o", str(target))
    assert (code, out) == (0, "")
    assert list(pd.read_csv(target).columns) == FLOW_COLUMNS


def test_several_captures_are_one_stream(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    frames = named_frames()
    half = len(frames) // 2
    a = write_pcap(tmp_path / "a.pcap", frames[:half], nsec=True)
    ng = tmp_path / "b.pcapng"
    ng.write_bytes(
        ng_shb() + ng_idb(tsresol=9) + b"".join(ng_epb(0, ts, f) for ts, f in frames[half:])
    )
    code, out, _ = run(capsys, str(a), str(ng), "--format", "jsonl")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 4
    assert sum(r["packets_c2s"] + r["packets_s2c"] for r in records) == len(frames)
    assert {
        r["server_port"]: r["server_name"] for r in records if r["server_name"]
    } == EXPECTED_NAMES


# ----------------------------------------------------------------------------- errors


def _unreadable(tmp_path: Path, kind: str) -> tuple[Path, int]:
    path = tmp_path / f"{kind}.pcap"
    frame = udp_frame(C, S, 1, 2)
    data = {
        "empty": (b"", 0),
        "garbage": (b"%PDF-1.7\n" + bytes(64), 0),
        "pcap-header-cut": (pcap_header()[:12], 0),
        "pcapng-header-cut": (ng_shb()[:10], 0),
        "first-record-bogus": (pcap_header() + pcap_record(BASE_TS, frame, caplen=1 << 30), 24),
    }[kind]
    path.write_bytes(data[0])
    return path, data[1]


UNREADABLE = ["empty", "garbage", "pcap-header-cut", "pcapng-header-cut", "first-record-bogus"]


@pytest.mark.parametrize("kind", UNREADABLE)
def test_unreadable_capture_is_one_error_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    path, offset = _unreadable(tmp_path, kind)
    code, out, err = run(capsys, str(path))
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dsaudit: error:")
    assert str(path) in lines[0] and f"byte {offset}" in lines[0]


def test_unreadable_capture_from_a_real_process(tmp_path: Path) -> None:
    path, _ = _unreadable(tmp_path, "garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "dsaudit", "flows", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"dsaudit: error: {path}: byte 0:")
    assert "Traceback" not in proc.stderr


def test_damaged_capture_still_writes_flows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    frames = named_frames()
    good = pcap_bytes(frames, nsec=True)
    path = tmp_path / "damaged.pcap"
    path.write_bytes(good + pcap_record(BASE_TS, b"", nsec=True, caplen=0x7FFFFFF0))
    code, out, err = run(capsys, str(path), "--format", "jsonl")
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsaudit: warning:")
    assert str(path) in lines[0] and f"byte {len(good)}" in lines[0]
    records = [json.loads(line) for line in out.splitlines()]
    assert {
        r["server_port"]: r["server_name"] for r in records if r["server_name"]
    } == EXPECTED_NAMES


# ----------------------------------------------------------------------------- jobs


def _busy_capture(path: Path) -> tuple[int, int]:
    """Over two reader batches of packets: many short flows plus named ones.

    Returns the packet count and how many times the named flows were repeated.
    """
    udp_c2s = udp_frame(C, S, 0, 5001, b"\x01" * 18)
    udp_s2c = udp_frame(S, C, 5001, 0, b"\x02" * 30)
    syn = tcp_frame(C, DB, 0, 4120, "S")
    rst = tcp_frame(DB, C, 4120, 0, "RA")
    templates = [(udp_c2s, 34), (udp_s2c, 36), (syn, 34), (rst, 36)]
    flows = 3200
    per_flow = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3]
    chunks: list[bytes] = []
    ts = BASE_TS
    for f in range(flows):
        port = struct.pack(">H", 20000 + f)
        for t in per_flow:
            frame, at = templates[t]
            frame = frame[:at] + port + frame[at + 2 :]
            chunks.append(pcap_record(ts, frame, nsec=True))
            ts += 1_000
        if f % 500 == 0:
            for named_ts, frame in named_frames(ts, 60000 + f):
                chunks.append(pcap_record(named_ts, frame, nsec=True))
            ts += 5 * NS
    path.write_bytes(pcap_header(nsec=True) + b"".join(chunks))
    return len(chunks), len(range(0, flows, 500))


def test_jobs_do_not_change_the_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    capture = tmp_path / "busy.pcap"
    count, repeats = _busy_capture(capture)
    assert count > 2 * DEFAULT_BATCH  # at least three batches
    outputs = {}
    for jobs in ("1", "2"):
        target = tmp_path / f"jobs{jobs}.jsonl"
        code, _, err = run(capsys, str(capture), "--format", "jsonl", "-o", str(target), "-j", jobs)
        assert (code, err) == (0, "")
        outputs[jobs] = target.read_bytes()
    assert outputs["1"] == outputs["2"]
    records = [json.loads(line) for line in outputs["1"].splitlines()]
    assert sum(r["packets_c2s"] + r["packets_s2c"] for r in records) == count
    assert sum(1 for r in records if r["server_name"] == TLS_NAME) == repeats


def test_max_flows_above_the_flow_count_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    capture = tmp_path / "busy.pcap"
    _busy_capture(capture)
    outputs = {}
    for limit in ("2000000", "10000"):
        target = tmp_path / f"limit{limit}.jsonl"
        args = ("--format", "jsonl", "-o", str(target), "--max-flows", limit)
        code, _, _ = run(capsys, str(capture), *args)
        assert code == 0
        outputs[limit] = target.read_bytes()
    assert len(outputs["2000000"].splitlines()) < 10000  # fewer flows than either limit
    assert outputs["10000"] == outputs["2000000"]


# ----------------------------------------------------------------------------- hostile names


def test_hostile_names_are_neutralised(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    evil_sni = b"\x1b[31mred\x07.example\x9b2J"
    formula = '=SUM(1+2)*cmd|"/c calc"!A0'
    tls = TcpConversation(C, S, 40000, 443)
    tls.handshake()
    tls.send(True, "PA", client_hello(evil_sni))
    web = TcpConversation(C, S, 40001, 80, start_ns=BASE_TS + NS)
    web.handshake()
    web.send(True, "PA", http_request(formula))
    labels = [b"\x1b]0;owned\x07", b"\r\n", b"example"]
    answer = dns_response(labels, [(labels, 1, DB, 30)], id=3)
    frames = [
        *tls.frames,
        *web.frames,
        (BASE_TS + 2 * NS, udp_frame(C, RESOLVER, 40002, 53, dns_query(labels, id=3))),
        (BASE_TS + 2 * NS + 1, udp_frame(RESOLVER, C, 53, 40002, answer)),
        (BASE_TS + 3 * NS, tcp_frame(C, DB, 40003, 5432, "S")),
    ]
    capture = write_pcap(tmp_path / "evil.pcap", frames, nsec=True)

    code, table, _ = run(capsys, str(capture))
    assert code == 0
    controls = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} - {"\n"}
    assert not controls & set(table), [c for c in table if c in controls]
    assert "\x1b" not in table and "\x9b" not in table
    assert "red" in table and "owned" in table  # still shown, in escaped form

    code, out, _ = run(capsys, str(capture), "--format", "csv")
    assert code == 0
    df = pd.read_csv(io.StringIO(out), keep_default_na=False)
    web_row = df[df["server_port"] == 80].iloc[0]
    assert web_row["server_name"] == "'" + formula
    assert web_row["http_host"] == "'" + formula
    for col in df.columns:
        for value in df[col].astype(str):
            assert not value.startswith(("=", "+", "@")), (col, value)
            assert "\x1b" not in value


def test_hostile_file_name_in_a_warning(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "dam\x1b[2Jaged.pcap"
    good = pcap_bytes(named_frames(), nsec=True)
    path.write_bytes(good[:-3])
    code, _, err = run(capsys, str(path))
    assert code == 0
    assert "\x1b" not in err and "dsaudit: warning:" in err


def test_ns_timestamps_survive_to_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    frames = [(BASE_TS + 123_456_789, udp_frame(C, RESOLVER, 1, 53, dns_query("t.example")))]
    capture = write_pcap(tmp_path / "t.pcap", frames, nsec=True)
    code, out, _ = run(capsys, str(capture), "--format", "jsonl")
    assert code == 0
    (record,) = [json.loads(line) for line in out.splitlines()]
    expected = np.datetime_as_string(np.datetime64(frames[0][0], "ns"), unit="us") + "Z"
    assert record["start"] == expected
