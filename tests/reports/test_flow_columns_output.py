"""`dsaudit flows` writes from flow columns, without pandas: the bytes are those of the
DataFrame path (pandas' to_json and to_csv, the fitted table of the DataFrame)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsaudit.flow_records.columns import FlowColumns
from dsaudit.flow_records.frame import FLOW_DTYPES, columns_of_frame, frame_of_columns
from dsaudit.flow_records.reading import read_captures
from dsaudit.reports.flow_output import (
    RENDERERS,
    TABLE_COLUMNS,
    _csv_field,
    _float_json,
    json_lines_chunk,
)
from dsaudit.text.fit import render_table
from dsaudit.text.safe import for_csv, for_terminal
from tests.corpus import capture_path, corpus_names
from tests.packets import BASE_TS, NS, TcpConversation, tcp_frame, udp_frame, write_pcap
from tests.processes import ROOT

SAMPLES = sorted((ROOT / "samples").glob("*.pcap*"))
# A spread of real captures: DNS, TLS, HTTP, ICMP errors, IPv6, VLANs, tunnels.
CORPUS = [n for n in corpus_names() if any(k in n for k in ("dns", "tls", "http", "icmp", "v6"))]


def frame_csv(df: pd.DataFrame) -> str:
    """CSV of the flows as written from the DataFrame before flow columns existed."""
    out = df.copy()
    out["dns_queries"] = [";".join(v) for v in out["dns_queries"]]
    out["dns_answers"] = [
        ";".join(f"{a['name']} {a['type']} {a['data']}" for a in v) for v in out["dns_answers"]
    ]
    out["icmp_errors"] = [json.dumps(v) if v else "" for v in out["icmp_errors"]]
    for col in out.columns:
        if out[col].dtype == "string" or out[col].dtype == object:
            out[col] = [for_csv(v) if isinstance(v, str) else v for v in out[col]]
    buf = io.StringIO()
    out.to_csv(buf, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    return buf.getvalue()


def frame_table(df: pd.DataFrame) -> str:
    """The table of the flows as written from the DataFrame before flow columns existed."""
    if df.empty:
        return "(no flows)\n"

    def endpoint(ip: str, port: int) -> str:
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    clients = zip(df["client_ip"], df["client_port"], strict=True)
    servers = zip(df["server_ip"], df["server_port"], strict=True)
    view = pd.DataFrame(
        {
            "proto": df["proto"],
            "client": [endpoint(i, p) for i, p in clients],
            "server": [endpoint(i, p) for i, p in servers],
        }
    )
    for col in TABLE_COLUMNS[3:]:
        view[col] = df[col]
    view["vlan"] = view["vlan"].astype("string").fillna("")
    joined = df["vlan_joined"].to_numpy(dtype=bool)
    if joined.any():
        back = df["vlan_s2c"].astype("string").fillna("-")
        view.loc[joined, "vlan"] = view["vlan"].where(view["vlan"] != "", "-") + "/" + back
    view["server_name"] = [for_terminal(s) if isinstance(s, str) else "" for s in df["server_name"]]
    headers = list(TABLE_COLUMNS)
    if df["tunnel_endpoints"].notna().any():
        view["tunnel"] = [
            for_terminal(s) if isinstance(s, str) else "" for s in df["tunnel_endpoints"]
        ]
        headers.append("tunnel")
    rows = [["" if pd.isna(v) else str(v) for v in row] for row in view.itertuples(index=False)]
    numeric = [TABLE_COLUMNS.index(c) for c in ("packets_c2s", "packets_s2c", "bytes_c2s")]
    numeric.append(TABLE_COLUMNS.index("bytes_s2c"))
    return render_table(headers, rows, None, right=numeric) + "\n"


def render(flows: FlowColumns, fmt: str) -> str:
    return "".join(RENDERERS[fmt](flows))


def assert_same_as_frame(table: FlowColumns, df: pd.DataFrame) -> None:
    assert render(table, "jsonl") == (json_lines_chunk(df) if len(df) else "")
    assert render(table, "csv") == frame_csv(df)
    assert render(table, "table") == frame_table(df)


@pytest.mark.parametrize(
    "path", SAMPLES + [capture_path(n) for n in CORPUS], ids=lambda p: Path(p).name
)
def test_columns_write_the_bytes_of_the_dataframe(path: Path) -> None:
    result = read_captures([str(path)])
    df = result.flows
    assert isinstance(df, pd.DataFrame)
    assert {c: df[c].dtype for c in df.columns} == {
        c: pd.api.types.pandas_dtype(t) for c, t in FLOW_DTYPES.items()
    }
    assert_same_as_frame(result.table, df)
    # A DataFrame from elsewhere (the tshark engine, flow logs) goes through the same writers.
    again = columns_of_frame(df)
    for fmt in ("jsonl", "json", "csv", "table"):
        assert render(again, fmt) == render(result.table, fmt), fmt


def test_a_reader_thread_and_chunks_do_not_change_json(tmp_path: Path) -> None:
    # More flows than one chunk holds, out of start order, with names on a few.
    frames = []
    for i in range(40_000):
        ts = BASE_TS + (i * 7919 % 40_000) * 1000
        frames.append((ts, tcp_frame("10.1.0.1", f"10.2.{i % 200}.{i % 250}", 1024 + i, 443, "S")))
    frames.append((BASE_TS, udp_frame("10.1.0.1", "10.1.0.53", 5353, 53, b"\x00" * 12)))
    path = write_pcap(tmp_path / "many.pcap", frames)
    result = read_captures([str(path)])
    one = render(result.table, "jsonl")
    assert render(read_captures([str(path)], jobs=2).table, "jsonl") == one
    assert one == json_lines_chunk(result.flows)
    lines = one.split("\n")[:-1]
    assert render(result.table, "json") == "[\n" + ",\n".join(lines) + "\n]\n"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=0, max_value=1e12, allow_nan=False),
            st.integers(0, 10**15).map(lambda ns: ns / 1e9),
            # Every float, negative, not finite, huge and tiny ones included: the compiled
            # cells must hand exactly the ones pandas writes otherwise to the fallback.
            st.floats(),
            st.floats(min_value=-1e-14, max_value=1e-14),
            st.floats(min_value=9.9e15, max_value=1.1e16),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_floats_as_pandas_writes_them(values: list[float]) -> None:
    arr = np.array(values, dtype=np.float64)
    expected = pd.Series(arr).to_json(orient="values")
    assert "[" + ",".join(_float_json(arr).tolist()) + "]" == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.text(), st.none()), min_size=1, max_size=8))
def test_any_name_text_is_written_as_pandas_writes_it(names: list[str | None]) -> None:
    conv = TcpConversation("10.0.0.1", "10.0.0.2", 40000, 443, start_ns=BASE_TS)
    conv.handshake()
    table = read_frames_table(conv.frames, len(names))
    cells = names + [None] * (len(table) - len(names))
    table.columns["server_name"] = np.array(cells, dtype=object)
    table.detail = None
    assert render(table, "jsonl") == json_lines_chunk(frame_of_columns(table))
    assert render(table, "csv") == frame_csv(frame_of_columns(table))


CSV_TEXT = st.text(alphabet=st.sampled_from([",", '"', "\n", "\r", "\t", " ", "'", "a", "\u2028"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(CSV_TEXT, st.text(st.characters(exclude_categories=()))), min_size=2))
def test_csv_fields_are_quoted_as_the_csv_module_quotes_them(fields: list[str]) -> None:
    # More than one field: the csv module quotes a row that is one empty field, which the
    # flows (42 columns) never are.
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerow(fields)
    assert ",".join(map(_csv_field, fields)) + "\n" == buf.getvalue()


def read_frames_table(frames: list[tuple[int, bytes]], copies: int) -> FlowColumns:
    """Flow columns of ``copies`` flows (the frames repeated on new ports)."""
    from dsaudit.flow_records.builder import FlowBuilder
    from dsaudit.sources.batch import PacketBatch

    builder = FlowBuilder()
    shifted = []
    for k in range(copies):
        for ts, frame in frames:
            shifted.append((ts + k * NS, frame[:34] + (40000 + k).to_bytes(2, "big") + frame[36:]))
    builder.add_batch(PacketBatch.from_frames(shifted, 1))
    return builder.result([]).table


def test_flows_run_imports_no_pandas(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from dsaudit.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "heavy = sorted(m for m in ('pandas', 'rich', 'pyarrow', 'tabulate') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none', file=sys.stderr)\n"
    )
    out = tmp_path / "flows.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", probe, "flows", "--no-progress", "samples/problems.pcap"]
        + ["--format", "jsonl", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "none"
    assert len(out.read_text().splitlines()) == len(read_captures(["samples/problems.pcap"]).flows)
