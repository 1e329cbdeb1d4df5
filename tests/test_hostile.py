"""Hostile captures: names that attack the reports, output paths, YAML, memory and run time."""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import random
import re
import struct
import sys
import traceback
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsaudit.cli import main
from dsaudit.decode.dns import parse_dns
from dsaudit.flow_records.builder import FlowBuilder, FlowOptions
from dsaudit.naming.dns_map import DnsMap
from dsaudit.sources.batch import LINKTYPE_RAW, PacketBatch
from tests.factories import (
    client_hello,
    dns_query,
    dns_response,
    dns_tcp,
    http_request,
    socks5_request,
)
from tests.packets import (
    BASE_TS,
    NS,
    Frame,
    TcpConversation,
    tcp_frame,
    udp_frame,
    write_pcap,
)
from tests.work import dns_steps_run, lines_run

# Bytes an attacker puts where a host name belongs (SNI, Host, CONNECT, SOCKS, DNS labels).
HOSTILE: dict[str, bytes] = {
    "script": b"<script>alert(1)</script>",
    "img": b'"><img src=x onerror=alert(1)>',
    "ansi": b"\x1b[2J\x1b[31mred",
    "osc8": b"\x1b]8;;http://evil\x07click\x1b]8;;\x07",
    "bel-bs": b"bell\x07back\x08\x08",
    "crlf": b"cr\r\nlf",
    "formula": b"=cmd|' /C calc'!A0",
    "plus": b"+cmd|' /C calc'!A0",
    "minus": b"-2+3+cmd|' /C calc'!A0",
    "at": b"@SUM(1+1)*cmd|' /C calc'!A0",
    "tab": b"\t=cmd",
    "cr-first": b"\r=cmd",
    "pipes": b"a|b|c",
    "backticks": b"`rm -rf /`",
    "bidi": "\u202etxt.exe".encode(),
    "nul": b"nul\x00byte",
    "backslash": b"\\x1b[31m",
    "traversal": b"../../etc/passwd",
}
KEYS = list(HOSTILE)
AGENT, MANAGER, RESOLVER = "10.20.1.11", "10.20.0.10", "10.20.0.2"
HTTP_PROXY, SOCKS_PROXY = "10.20.0.60", "10.20.0.61"
INVENTORY = f"""\
deployment:
  version: "11.0"
  mode: on-premises
  communication: bidirectional
  database: postgresql
  updates: direct
hosts:
  manager: [{MANAGER}]
  agent: [{AGENT}]
  dns: [{RESOLVER}]
  proxy: ["{HTTP_PROXY}:3128"]
"""
# What no terminal or Markdown report may contain: C0/C1 controls except the line feed
# (so no ESC, BEL, BS, CR or NUL) and the bidi controls that reorder what a reader sees.
UNSAFE_TEXT = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


# ----------------------------------------------------------------------------- oracles


def shown(raw: bytes, *, label: bool = False) -> str:
    """The documented text of name bytes: 0x20-0x7e kept except the backslash (and a dot
    inside a DNS label); every other byte as ``\\xNN``. Written out byte by byte here."""
    out = []
    for b in raw:
        plain = 0x20 <= b <= 0x7E and b != 0x5C and not (label and b == 0x2E)
        out.append(chr(b) if plain else f"\\x{b:02x}")
    return "".join(out)


def wire_bytes(text: str) -> bytes:
    """Inverse of :func:`shown`: the bytes a name's text stands for."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "\\":
            assert text[i + 1] == "x", text
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out.append(ord(text[i]))
            i += 1
    return bytes(out)


def http_host(raw: bytes) -> bytes:
    """A Host value cannot hold a line break; the parser strips blanks around it."""
    return raw.replace(b"\n", b"").strip(b" \t\r")


def connect_host(raw: bytes) -> bytes:
    """A CONNECT target is one token: no blank, no line break, no colon before the port."""
    return raw.replace(b" ", b"").replace(b"\n", b"").replace(b":", b"")


def dns_name(raw: bytes) -> str:
    return shown(raw, label=True) + ".example"


# ----------------------------------------------------------------------------- captures


def tcp_flow(
    client: str, server: str, cport: int, sport: int, start: int, data: bytes
) -> list[Frame]:
    conv = TcpConversation(client, server, cport, sport, start_ns=start)
    conv.handshake()
    if data:
        conv.send(True, "PA", data)
    conv.close()
    return conv.frames


def hostile_frames() -> list[Frame]:
    frames: list[Frame] = []
    t = BASE_TS
    for i, key in enumerate(KEYS):
        raw = HOSTILE[key]
        frames += tcp_flow(AGENT, f"203.0.113.{10 + i}", 40000 + i, 443, t, client_hello(raw))
        request = http_request(http_host(raw).decode("latin-1"))
        frames += tcp_flow(AGENT, f"203.0.113.{60 + i}", 41000 + i, 80, t + NS // 5, request)
        target = connect_host(raw).decode("latin-1") + ":443"
        connect = http_request(target, method="CONNECT", target=target)
        frames += tcp_flow(AGENT, HTTP_PROXY, 42000 + i, 3128, t + 2 * NS // 5, connect)
        socks = socks5_request(raw, 443)
        frames += tcp_flow(AGENT, SOCKS_PROXY, 43000 + i, 1080, t + 3 * NS // 5, socks)
        qname = (raw, b"example")
        answer = dns_response(qname, [(qname, 1, f"198.51.100.{10 + i}", 300)], id=i)
        at = t + 4 * NS // 5
        frames.append((at, udp_frame(AGENT, RESOLVER, 44000 + i, 53, dns_query(qname, id=i))))
        frames.append((at + 1000, udp_frame(RESOLVER, AGENT, 53, 44000 + i, answer)))
        frames += tcp_flow(AGENT, f"198.51.100.{10 + i}", 45000 + i, 8443, at + 2000, b"")
        t += NS
    return sorted(frames, key=lambda f: f[0])


@dataclass
class Hostile:
    capture: Path
    inventory: Path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    folder = tmp_path_factory.mktemp("hostile")
    inventory = folder / "inventory.yaml"
    inventory.write_text(INVENTORY)
    return Hostile(write_pcap(folder / "hostile.pcap", hostile_frames()), inventory)


@dataclass
class Run:
    code: int
    out: str
    err: str


def dsaudit(*args: str) -> Run:
    """``dsaudit ARGS`` in process; an escaping exception comes back as code -1."""
    out, err = io.StringIO(), io.StringIO()
    was_enabled = gc.isenabled()
    code: int
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # noqa: BLE001 - a traceback is what the assertions must catch
        code = -1
        err.write(traceback.format_exc())
    finally:
        if was_enabled:
            gc.enable()
    return Run(code, out.getvalue(), err.getvalue())


def audit(h: Hostile, *args: str) -> Run:
    run = dsaudit("audit", "--no-progress", str(h.capture), "--inventory", str(h.inventory), *args)
    assert run.code in (0, 1), run.err
    return run


def flows(h: Hostile, *args: str) -> Run:
    run = dsaudit("flows", "--no-progress", str(h.capture), *args)
    assert run.code == 0, run.err
    return run


# ----------------------------------------------------------------------------- checks


def assert_inert_text(text: str) -> None:
    bad = UNSAFE_TEXT.search(text)
    assert bad is None, (
        f"{bad.group()!r} at {bad.start()}: {text[max(0, bad.start() - 60) : bad.end() + 60]!r}"
    )


def assert_csv_cells_are_neutral(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) > 1
    for row in rows:
        assert len(row) == len(rows[0]), row
        for cell in row:
            if cell.startswith(CSV_FORMULA):
                assert NUMBER.fullmatch(cell), f"formula cell {cell!r}"
    return rows


def markdown_cells(line: str) -> list[str]:
    """Cells of a Markdown table row; a backslash escapes the character after it."""
    cells: list[str] = []
    cell = ""
    i = 1 if line.startswith("|") else 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cell += line[i : i + 2]
            i += 2
            continue
        if ch == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += ch
        i += 1
    if cell.strip():
        cells.append(cell)
    return cells


def markdown_tables(text: str) -> Iterator[list[str]]:
    block: list[str] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            yield block
            block = []


class Elements(HTMLParser):
    """Every element and attribute of a page, and its text, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def flow_rows(text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


def one(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, len(found))
    return found[0]


# ----------------------------------------------------------------------------- reports


def test_flows_json_keeps_every_hostile_name_exactly(hostile: Hostile) -> None:
    rows = flow_rows(flows(hostile, "--format", "json").out)
    for i, key in enumerate(KEYS):
        raw = HOSTILE[key]
        tls = one(rows, server_ip=f"203.0.113.{10 + i}", server_port=443)
        assert (tls["sni"], tls["server_name"], tls["name_source"]) == (shown(raw),) * 2 + ("sni",)
        assert wire_bytes(tls["sni"]) == raw
        web = one(rows, server_ip=f"203.0.113.{60 + i}", server_port=80)
        assert web["http_host"] == shown(http_host(raw)), key
        assert wire_bytes(web["http_host"]) == http_host(raw)
        tunnel = one(rows, client_port=42000 + i, server_port=3128)
        assert tunnel["connect_target"] == shown(connect_host(raw)) + ":443", key
        assert tunnel["name_source"] == "connect"
        socks = one(rows, client_port=43000 + i, server_port=1080)
        assert socks["socks_target"] == shown(raw) + ":443", key
        assert wire_bytes(socks["socks_target"][: -len(":443")]) == raw
        query = one(rows, client_port=44000 + i, server_port=53)
        assert query["dns_queries"] == [dns_name(raw)], key
        assert query["dns_answers"][0]["name"] == dns_name(raw)
        named = one(rows, server_ip=f"198.51.100.{10 + i}", server_port=8443)
        assert (named["server_name"], named["name_source"]) == (dns_name(raw), "dns"), key


def test_flows_table_shows_names_without_control_characters(hostile: Hostile) -> None:
    out = flows(hostile, "--format", "table").out
    assert_inert_text(out)
    for key in KEYS:
        assert shown(HOSTILE[key]) in out, key


def test_flows_csv_never_starts_a_formula(hostile: Hostile) -> None:
    rows = assert_csv_cells_are_neutral(flows(hostile, "--format", "csv").out)
    header = rows[0]
    sni = [row[header.index("sni")] for row in rows[1:]]
    for key in ("formula", "plus", "minus", "at"):
        assert "'" + shown(HOSTILE[key]) in sni, key
    # A leading tab or CR reaches the CSV as the text "\x09" or "\x0d": nothing to neutralise.
    assert shown(HOSTILE["tab"]) in sni and shown(HOSTILE["cr-first"]) in sni


def test_audit_terminal_report_is_inert(hostile: Hostile) -> None:
    out = audit(hostile).out
    assert_inert_text(out)
    assert "<script>alert(1)</script>" in out  # the names are there, as plain text
    assert "\\x1b[2J" in out


def test_audit_markdown_keeps_its_table_shape(hostile: Hostile) -> None:
    out = audit(hostile, "--format", "markdown").out
    assert_inert_text(out)
    assert re.search(r"(?<!\\)<(?!/?sub>|br>)", out) is None, "an unescaped < opens a tag"
    assert "\\<script>alert(1)\\</script>" in out
    assert re.search(r"(?<!\\)`", out) is None, "an unescaped backtick opens a code span"
    tables = list(markdown_tables(out))
    assert len(tables) >= 4
    for table in tables:
        width = len(markdown_cells(table[0]))
        for line in table:
            assert len(markdown_cells(line)) == width, line
    assert any("a\\|b\\|c" in line for table in tables for line in table)


def test_audit_csv_files_never_start_a_formula(hostile: Hostile, tmp_path: Path) -> None:
    report = tmp_path / "audit.csv"
    audit(hostile, "--format", "csv", "--output", str(report))
    flows_rows = assert_csv_cells_are_neutral(report.read_text(encoding="utf-8"))
    findings = assert_csv_cells_are_neutral((tmp_path / "audit.findings.csv").read_text("utf-8"))
    names = [row[flows_rows[0].index("server_name")] for row in flows_rows[1:]]
    assert "'" + shown(HOSTILE["minus"]) in names
    messages = [row[findings[0].index("message")] for row in findings[1:]]
    assert any(shown(HOSTILE["formula"]) in m for m in messages)
    assert_inert_text(report.read_text(encoding="utf-8"))


def test_audit_html_has_no_element_from_the_capture(hostile: Hostile, tmp_path: Path) -> None:
    report = tmp_path / "audit.html"
    audit(hostile, "--format", "html", "--output", str(report))
    page = Elements()
    page.feed(report.read_text(encoding="utf-8"))
    page.close()
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "img", "iframe", "object", "embed", "form", "input", "base"}
    for tag, attrs in page.tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name, value)
            if name in ("href", "src", "xlink:href", "action"):
                assert (value or "").startswith("#"), (tag, name, value)
    text = "".join(page.text)
    for key in ("script", "img", "formula", "pipes", "ansi"):
        assert shown(HOSTILE[key]) in text, key


def test_audit_json_is_the_faithful_format(hostile: Hostile) -> None:
    doc = json.loads(audit(hostile, "--format", "json").out)
    rows = doc["flows"]
    for i, key in enumerate(KEYS):
        raw = HOSTILE[key]
        tls = one(rows, server_ip=f"203.0.113.{10 + i}", server_port=443)
        assert tls["server_name"] == shown(raw) and wire_bytes(tls["server_name"]) == raw
        named = one(rows, server_ip=f"198.51.100.{10 + i}", server_port=8443)
        assert named["server_name"] == dns_name(raw)
    messages = " ".join(f["message"] for f in doc["findings"])
    assert shown(HOSTILE["img"]) in messages
    assert shown(HOSTILE["osc8"]) in messages


# ----------------------------------------------------------------------------- output paths

ESCAPING_NAMES = [b"../../etc/passwd", b"/tmp/dsaudit-escape", b"..\\..\\dsaudit-escape", b"a/b"]


def path_frames() -> list[Frame]:
    frames: list[Frame] = []
    for i, raw in enumerate(ESCAPING_NAMES):
        t = BASE_TS + i * NS
        frames += tcp_flow(AGENT, f"203.0.113.{200 + i}", 46000 + i, 443, t, client_hello(raw))
        qname = (raw, b"example")
        answer = dns_response(qname, [(qname, 1, f"198.51.100.{200 + i}", 300)], id=i)
        frames.append((t + 1000, udp_frame(AGENT, RESOLVER, 47000 + i, 53, answer)))
    return frames


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_captured_names_never_become_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in").mkdir()
    capture = write_pcap(tmp_path / "in" / "names.pcap", path_frames())
    inventory = tmp_path / "in" / "inventory.yaml"
    inventory.write_text(INVENTORY)
    out = tmp_path / "out"
    out.mkdir()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    cap, inv = str(capture), str(inventory)
    runs = {
        "flows.txt": ["flows", cap, "-o", str(out / "flows.txt")],
        "flows.csv": ["flows", cap, "--format", "csv", "-o", str(out / "flows.csv")],
        "flows.json": ["flows", cap, "--format", "json", "-o", str(out / "flows.json")],
        "flows.jsonl": ["flows", cap, "--format", "jsonl", "-o", str(out / "flows.jsonl")],
        "flows.parquet": ["flows", cap, "--format", "parquet", "-o", str(out / "flows.parquet")],
        "audit.csv": ["audit", cap, "-i", inv, "--format", "csv", "-o", str(out / "audit.csv")],
        "audit.html": ["audit", cap, "-i", inv, "--format", "html", "-o", str(out / "audit.html")],
        "audit.md": ["audit", cap, "-i", inv, "--format", "markdown", "-o", str(out / "audit.md")],
        "audit.json": ["audit", cap, "-i", inv, "--format", "json", "-o", str(out / "audit.json")],
        "audit.txt": ["audit", cap, "-i", inv, "-o", str(out / "audit.txt")],
        "stem": ["audit", cap, "-i", inv, "--format", "parquet", "-o", str(out / "stem")],
        "dir": ["audit", cap, "-i", inv, "--format", "parquet", "-o", str(out / "dir") + "/"],
        "inferred.yaml": ["inventory", "infer", cap, "-o", str(out / "inferred.yaml")],
        "report.html": [
            "report",
            cap,
            "-i",
            inv,
            "--no-history",
            "-j",
            "1",
            "-o",
            str(out / "report.html"),
        ],
    }
    for name, args in runs.items():
        run = dsaudit(*args)
        assert run.code in (0, 1), (name, run.err)
    tables = ("flows", "findings", "compliance", "expectations", "heartbeats")
    expected = {n for n in runs if n not in ("stem", "dir")}
    expected |= {"audit.findings.csv"}
    expected |= {f"stem.{t}.parquet" for t in tables} | {"stem.summary.json"}
    expected |= {f"dir/{t}.parquet" for t in tables} | {"dir/summary.json"}
    assert files_under(out) == expected
    assert files_under(work) == set()
    assert files_under(tmp_path) == {f"out/{n}" for n in expected} | {
        "in/names.pcap",
        "in/inventory.yaml",
    }
    assert not Path("/tmp/dsaudit-escape").exists()
    # The names did reach the reports, so the paths stayed fixed for a reason.
    names = {row["sni"] for row in json.loads((out / "flows.json").read_text())}
    assert {shown(raw) for raw in ESCAPING_NAMES} <= names


# ----------------------------------------------------------------------------- YAML


def evil_yaml(marker: Path, kind: str) -> str:
    payload = {
        "apply": f'!!python/object/apply:os.system ["touch {marker}"]',
        "exec": f"!!python/object/apply:builtins.exec [\"open('{marker}', 'w').close()\"]",
        "new": f'!!python/object/new:subprocess.Popen [["touch", "{marker}"]]',
        "name": "!!python/name:os.system",
    }[kind]
    return f"deployment: {payload}\nhosts:\n  agent: [10.0.0.1]\nschema: {payload}\nrules: []\n"


@pytest.mark.parametrize("kind", ["apply", "exec", "new", "name"])
def test_python_yaml_tags_are_refused_and_never_run(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(evil_yaml(marker, kind))
    sample = str(Path(__file__).resolve().parents[1] / "samples" / "healthy.pcap")
    commands = [
        ["inventory", "check", str(evil)],
        ["audit", "--no-progress", sample, "--inventory", str(evil)],
        ["audit", "--no-progress", sample, "--site", str(evil)],
        ["rules", "lint", str(evil)],
        ["rules", "list", "--site", str(evil)],
        ["firewall", "--inventory", str(evil)],
    ]
    refused = re.compile(
        re.escape(f"{evil}:1: unsupported YAML ")
        + r"(tag tag:yaml\.org,2002:python/|value: could not determine a constructor for the "
        r"tag 'tag:yaml\.org,2002:python/)"
    )
    for args in commands:
        run = dsaudit(*args)
        assert run.code == 2, (args, run.code, run.err)
        assert "Traceback" not in run.err
        if args[:2] == ["rules", "lint"]:
            # The linter lists every problem on stdout and counts them on stderr.
            assert refused.search(run.out), run.out
            assert re.fullmatch(r"\d+ problems? found\n", run.err), run.err
        else:
            assert run.err.startswith("dsaudit: error: "), run.err
            assert refused.search(run.err), run.err
    assert not marker.exists()


def alias_bomb(levels: int) -> str:
    """A "billion laughs" document: each level is nine aliases of the one before."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, levels + 1):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    top = f"*l{levels}"
    return "\n".join(lines) + (
        f"\ndeployment:\n  version: {top}\n  database: {top}\nhosts:\n  agent: {top}\n"
        f"schema: {top}\nrules: {top}\n"
    )


@pytest.mark.parametrize("command", ["inventory", "rules"])
def test_yaml_alias_bombs_give_a_short_error(tmp_path: Path, command: str) -> None:
    # Six levels expand to 9**6 = 531,441 strings. Loading stays linear (aliases are shared),
    # so the error must stay linear too: a message that prints the expanded value does not.
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(6))
    args = (
        ["inventory", "check", str(bomb)]
        if command == "inventory"
        else ["rules", "lint", str(bomb)]
    )
    run, lines = lines_run(lambda: dsaudit(*args))
    assert isinstance(run, Run), run
    # Linear in the file (a few hundred bytes), not in the 531,441 strings it expands to.
    assert lines < 200_000, lines
    assert run.code == 2, run.err[:500]
    said = len(run.out) + len(run.err)
    assert said < 20_000, f"{said} bytes of error for a {bomb.stat().st_size}-byte file"


# ----------------------------------------------------------------------------- audit contract


def test_traffic_alone_cannot_make_the_audit_refuse_to_report(tmp_path: Path) -> None:
    # Without --inventory the roles come from the traffic. Two packets that make a host look
    # like a manager (it accepts 4120) must not produce an inventory the audit then rejects.
    capture = write_pcap(
        tmp_path / "manager-only.pcap",
        [
            (BASE_TS, tcp_frame("10.0.0.1", "10.0.0.10", 40000, 4120, "S")),
            (BASE_TS + 1000, tcp_frame("10.0.0.10", "10.0.0.1", 4120, 40000, "SA", ack=1)),
        ],
    )
    run = dsaudit("audit", "--no-progress", str(capture))
    assert run.code in (0, 1), run.err


# ----------------------------------------------------------------------------- memory bounds

T0 = 1_700_000_000 * NS
# IPv4 (20 bytes) + UDP (8 bytes, no payload) from 10.0.0.0:49152 to 10.0.0.53:12345.
UDP_TEMPLATE = struct.pack(
    "!BBHHHBBH4s4sHHHH",
    0x45,
    0,
    28,
    0,
    0,
    64,
    17,
    0,
    bytes([10, 0, 0, 0]),
    bytes([10, 0, 0, 53]),
    49152,
    12345,
    8,
    0,
)


def one_packet_flows(first: int, count: int) -> PacketBatch:
    """``count`` UDP datagrams from distinct sources to 10.0.0.53:12345 (raw IPv4, one batch)."""
    frames = np.tile(np.frombuffer(UDP_TEMPLATE, np.uint8), count).reshape(count, 28).copy()
    idx = np.arange(first, first + count, dtype=np.int64)
    frames[:, 13] = (idx >> 16) & 0xFF  # source address 10.a.b.c from the datagram's index
    frames[:, 14] = (idx >> 8) & 0xFF
    frames[:, 15] = idx & 0xFF
    return PacketBatch(
        np.ascontiguousarray(frames).reshape(-1),
        np.arange(count, dtype=np.int64) * 28,
        np.full(count, 28, np.int32),
        np.full(count, 28, np.int32),
        T0 + idx * 1000,
        np.full(count, LINKTYPE_RAW, np.int32),
        np.full(count, -1, np.int64),
    )


def test_a_million_one_packet_flows_stay_within_the_flow_limit() -> None:
    total, limit, step = 1_000_000, 20_000, 32_768
    builder = FlowBuilder(FlowOptions(max_flows=limit))
    builder.add_batch(one_packet_flows(0, 1000))  # compile and warm up outside the trace
    tracemalloc.start()
    try:
        peak_flows = 0
        for first in range(1000, total, step):
            builder.add_batch(one_packet_flows(first, min(step, total - first)))
            peak_flows = max(peak_flows, builder.table.nflows)
        result = builder.result([])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_flows <= limit
    assert len(result.flows) + result.stats.flows_evicted == total
    top = result.stats.evicted_top[0]
    assert (top["proto"], top["server"], top["port"]) == ("udp", "10.0.0.53", 12345)
    assert top["flows"] == result.stats.flows_evicted
    # Unbounded, the table alone would hold 1,000,000 rows of 280 bytes (and its hash).
    assert peak < 64 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


def syn(i: int) -> bytes:
    src = bytes([10, 1, (i >> 8) & 255, i & 255])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src, b"\x0a\0\0\x0a")
    return ip + struct.pack("!HHIIHHHH", 40000 + i % 20000, 4120, i, 0, 0x5002, 1024, 0, 0)


def test_flows_command_says_what_it_evicted(tmp_path: Path) -> None:
    capture = write_pcap(
        tmp_path / "flood.pcap", [(T0 + i * 1000, syn(i)) for i in range(5000)], LINKTYPE_RAW
    )
    for fmt in ("table", "json"):
        run = dsaudit(
            "flows", "--no-progress", str(capture), "--max-flows", "1000", "--format", fmt
        )
        assert run.code == 0, run.err
        said = run.err + (run.out if fmt == "table" else "")
        assert re.search(r"\b4,?000 flows (were )?evicted", said), (fmt, run.err, said[-300:])


def test_dns_map_limit_bounds_the_answers_it_keeps() -> None:
    # One client and one address, answered under a different name each time: every answer is
    # a new entry, however few (client, address) pairs there are.
    limit = 1000
    dns = DnsMap(max_entries=limit)
    names = [f"n{i}.example" for i in range(2)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300_000):
            dns.add(client=1, addr=7, ts=i, name=names[i % 2])
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert dns.lookup(1, 7, 300_000) == names[1]
    # 1000 answers of two interned names fit in well under 1 MB; 300,000 kept do not.
    assert grown < 4 * 1024 * 1024, f"{grown / 1e6:.1f} MB for a limit of {limit} answers"


def tcp_raw(i: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    src = bytes([10, 2, (i >> 8) & 255, i & 255])
    size = 40 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0, 64, 6, 0, src, b"\x0a\0\0\x0a")
    tcp = struct.pack("!HHIIHHHH", 40000, 443, seq, 1, (5 << 12) | flags, 1024, 0, 0)
    return ip + tcp + payload


def test_reassembly_buffers_of_finished_flows_are_released() -> None:
    # Each flow sends 56 KB of a ClientHello that claims 60 KB and never finishes it, then
    # falls silent past the TCP timeout. Its buffered bytes cannot name anything any more.
    hello = client_hello("never.example", extra_len=60_000)
    piece = 7000

    def batch(first: int, count: int) -> PacketBatch:
        frames: list[Frame] = []
        for i in range(first, first + count):
            ts = T0 + i * 400 * NS
            frames.append((ts, tcp_raw(i, 0, 0x02)))
            for k in range(8):
                data = hello[k * piece : (k + 1) * piece]
                frames.append((ts + k + 1, tcp_raw(i, 1 + k * piece, 0x18, data)))
        return PacketBatch.from_frames(frames, LINKTYPE_RAW)

    builder = FlowBuilder()
    builder.add_batch(batch(0, 20))
    tracemalloc.start()
    try:
        builder.add_batch(batch(20, 50))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for first in range(70, 270, 50):
            builder.add_batch(batch(first, 50))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 200 more finished flows: their table rows are a few hundred bytes each.
    assert grown < 3 * 1024 * 1024, f"{grown / 1e6:.1f} MB kept for 200 finished flows"


# ----------------------------------------------------------------------------- run time
# Work is counted in lines of dsaudit's Python run, not seconds (a loaded machine makes any
# time bound flaky): linear work stays within a budget per input unit, work that grows with
# the square of the input blows through it.


def feed_counted(builder: FlowBuilder, batches: Iterator[PacketBatch], budget: int) -> int:
    """Feed ``batches``; fail if more than ``budget`` lines of dsaudit ran."""

    def feed() -> None:
        for batch in batches:
            builder.add_batch(batch)

    result, lines = lines_run(feed)
    assert not isinstance(result, BaseException), result
    assert lines < budget, f"{lines} lines run, budget {budget}"
    return lines


def test_client_hello_in_2000_one_byte_segments() -> None:
    hello = client_hello("split.example", extra_len=2200)
    conv = TcpConversation(AGENT, "203.0.113.5", 40000, 443, start_ns=T0, step_ns=1000)
    conv.handshake()
    segments = conv.segments(True, hello[:2000], 2000)
    assert len(segments) == 2000
    frames = conv.frames + segments
    builder = FlowBuilder()
    feed_counted(builder, iter([PacketBatch.from_frames(frames, 1)]), 400 * len(frames))
    result = builder.result([])
    assert int(result.flows["packets_c2s"].iloc[0]) == 2002


def test_dns_over_tcp_stream_of_10000_messages() -> None:
    messages = [dns_query(f"q{i}.example", id=i) for i in range(10_000)]
    stream = dns_tcp(*messages)
    conv = TcpConversation(AGENT, RESOLVER, 40000, 53, start_ns=T0, step_ns=1000)
    conv.handshake()
    segments = conv.segments(True, stream, len(stream) // 1400 + 1)
    builder = FlowBuilder()
    batch = PacketBatch.from_frames(conv.frames + segments, 1)
    feed_counted(builder, iter([batch]), 200 * len(messages))
    queries = builder.result([]).flows["dns_queries"].iloc[0]
    assert 0 < len(queries) <= 64
    assert list(queries) == [f"q{i}.example" for i in range(len(queries))]


def fragment(offset8: int, more: bool, data: bytes, ident: int = 7) -> bytes:
    flags = (0x2000 if more else 0) | offset8
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(data),
        ident,
        flags,
        64,
        17,
        0,
        b"\x0a\0\0\x01",
        b"\x0a\0\0\x02",
    )
    return ip + data


def test_100000_overlapping_fragments() -> None:
    # The first fragment (with the UDP header) and the last one arrive first; then 8-byte
    # fragments fill the datagram from the front, over and over, while one hole near its end
    # stays open: each fragment must not re-walk everything that came before it.
    total, step = 100_000, 10_000
    head = fragment(0, True, struct.pack("!HHHH", 1000, 53, 8, 0))
    frames = [(T0, head), (T0, fragment(8190, False, bytes(8)))]
    frames += [(T0 + n, fragment(1 + n % 8187, True, bytes(8))) for n in range(total - 2)]
    builder = FlowBuilder()
    batches = (
        PacketBatch.from_frames(frames[i : i + step], LINKTYPE_RAW) for i in range(0, total, step)
    )
    feed_counted(builder, batches, 200 * total)
    assert builder.result([]).stats.fragments == total


def pointer_chain_message(salt: int) -> bytes:
    """A DNS response built to make name decoding work hardest.

    The question is a 127-label name (255 octets). A TXT record's data holds chains of 126
    compression pointers, each pointing at the one before and the first at the question,
    filling the 16 KB that pointers can reach. Then as many records as fit in 64 KB have
    owner names pointing into the chains, deepest first, so every one walks a long chain.
    """
    q = b"".join(b"\x01" + bytes([0x61 + i % 26]) for i in range(127)) + b"\x00"
    msg = bytearray(struct.pack(">6H", salt, 0x8180, 1, 0, 0, 0)) + q + b"\x00\x01\x00\x01"
    head = len(msg) + 12
    chains: list[list[int]] = []
    rdata = bytearray()
    while head + len(rdata) + 252 <= 0x4000:
        chain = []
        for k in range(126):
            at = head + len(rdata)
            rdata += struct.pack(">H", 0xC000 | (12 if k == 0 else at - 2))
            chain.append(at)
        chains.append(chain)
    msg += b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, salt, len(rdata)) + rdata
    count = 1
    for depth in range(125, -1, -1):
        for chain in chains:
            if len(msg) + 12 > 65_000:
                break
            msg += struct.pack(">HHHIH", 0xC000 | chain[depth], 16, 1, salt, 0)
            count += 1
    struct.pack_into(">H", msg, 6, count)
    return bytes(msg)


def test_dns_name_of_127_labels_behind_maximal_pointer_chains() -> None:
    message = pointer_chain_message(1)
    parsed, steps = dns_steps_run(lambda: parse_dns(message))
    assert not isinstance(parsed, BaseException), parsed
    # Work linear in answers times labels: at most 128 labels and pointers read per name.
    assert steps <= 128 * (len(parsed.answers) + 1), (steps, len(parsed.answers))
    assert len(parsed.answers) > 4000
    assert {r.name for r in parsed.answers} == {parsed.questions[0].name}
    assert parsed.questions[0].name.count(".") == 126
    # Four different such datagrams (the cache cannot help) through the whole pipeline.
    frames = [
        (T0 + n * NS, udp_frame(RESOLVER, AGENT, 53, 40000, pointer_chain_message(n)))
        for n in range(4)
    ]
    builder = FlowBuilder()
    # Each datagram costs at most what one parse of it did above: nothing is walked twice,
    # and the Python around the compiled walk does not grow with the records either.
    fed, walked = dns_steps_run(
        lambda: feed_counted(builder, iter([PacketBatch.from_frames(frames, 1)]), 2_000)
    )
    assert not isinstance(fed, BaseException), fed
    assert walked <= 5 * steps, (walked, steps)
    answers = builder.result([]).flows["dns_answers"].iloc[0]
    assert 0 < len(answers) <= 256


# ----------------------------------------------------------------------------- fuzz harnesses


def test_fuzz_harnesses_run_without_atheris() -> None:
    from fuzz import fuzz_capture, fuzz_payloads

    assert "atheris" not in sys.modules  # the harnesses import it only under __main__
    rng = random.Random(7)
    root = Path(__file__).resolve().parents[1]
    captures = [
        (root / "samples" / "manager-host.pcapng").read_bytes()[:6000],
        (root / "samples" / "problems.pcap").read_bytes()[:6000],
    ]
    payloads = [
        client_hello("fuzz.example", records=2),
        dns_response("fuzz.example", [("fuzz.example", 1, "192.0.2.7", 60)]),
        http_request("fuzz.example:443", method="CONNECT", target="fuzz.example:443"),
        socks5_request("fuzz.example", 443),
    ]
    for n in range(300):
        data = bytearray(rng.choice(captures if n % 2 else payloads))
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randrange(1, len(data) + 1)])
        fuzz_payloads.TestOneInput(cut)
        if n % 2:
            fuzz_capture.TestOneInput(cut)
    assert fuzz_capture.check_bytes(captures[0]) > 0
    assert fuzz_capture.check_bytes(b"not a capture") == -1
