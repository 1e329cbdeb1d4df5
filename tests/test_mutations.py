"""Damaged captures: every sample and corpus file cut short and bit-flipped, through the CLI."""

from __future__ import annotations

import contextlib
import gc
import gzip
import io
import json
import random
import re
import struct
import subprocess
import traceback
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dsaudit.cli import main
from dsaudit.sources.capture_file import CaptureInfo, CaptureReader
from tests.corpus import PCAPS
from tests.processes import dsaudit_process

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))
CORPUS_FILES = sorted(PCAPS.iterdir()) if PCAPS.is_dir() else []
# A handful of corpus files also get the gzip treatment (all samples do).
GZIP_CORPUS = {"dns-tcp-multi-request.pcap", "pcapng-2-interfaces-dns.pcapng", "sll2-http.pcap"}

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\x4d\x3c\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\xa1\xb2\x3c\x4d": ">",
}
PCAPNG_SHB = 0x0A0D0D0A
PACKET_BLOCKS = (2, 3, 6)  # obsolete, simple and enhanced packet blocks
# libpcap's limit on a record's captured length unless the file's snaplen is larger.
LIBPCAP_MAX_CAPLEN = 262144


# ----------------------------------------------------------------------------- oracle


@dataclass
class Layout:
    """Where a capture's records are, found by a tiny independent struct walk.

    ``records`` holds ``(start, end, data_start, data_end)`` of every packet record that is
    whole and sane; ``boundaries`` every offset at which a block or record ends (packet or
    not), starting with the end of the file header; ``damage`` the offset where the walk
    had to stop (None when it reached the end cleanly).
    """

    fmt: str | None
    header_end: int = 0
    records: list[tuple[int, int, int, int]] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)
    damage: int | None = None

    def whole_before(self, cut: int) -> tuple[int, int | None]:
        """For a file cut at ``cut``: (packets a reader keeps, where the damage starts).

        The damage offset is None when the cut falls exactly between two records.
        """
        limit = cut if self.damage is None else min(cut, self.damage)
        packets = sum(1 for _, end, _, _ in self.records if end <= limit)
        last = max(b for b in self.boundaries if b <= limit)
        return packets, (None if last == cut else last)


def pcap_layout(data: bytes) -> Layout:
    e = PCAP_MAGICS[data[:4]]
    if len(data) < 24 or struct.unpack_from(e + "H", data, 4)[0] != 2:
        return Layout("pcap", damage=0)
    snaplen = struct.unpack_from(e + "I", data, 16)[0]
    max_caplen = max(LIBPCAP_MAX_CAPLEN, snaplen if snaplen < 1 << 30 else 0)
    out = Layout("pcap", header_end=24, boundaries=[24])
    pos = 24
    while pos < len(data):
        if pos + 16 > len(data):
            out.damage = pos
            break
        caplen = struct.unpack_from(e + "I", data, pos + 8)[0]
        end = pos + 16 + caplen
        if caplen > max_caplen or end > len(data):
            out.damage = pos
            break
        out.records.append((pos, end, pos + 16, end))
        out.boundaries.append(end)
        pos = end
    return out


def pcapng_layout(data: bytes) -> Layout:
    out = Layout("pcapng")
    pos = 0
    e = "<"
    interfaces = 0
    while pos < len(data):
        if pos + 12 > len(data):
            out.damage = pos
            break
        if struct.unpack_from("<I", data, pos)[0] == PCAPNG_SHB:
            bom = data[pos + 8 : pos + 12]
            if bom not in (b"\x1a\x2b\x3c\x4d", b"\x4d\x3c\x2b\x1a"):
                out.damage = pos
                break
            e = ">" if bom == b"\x1a\x2b\x3c\x4d" else "<"
            interfaces = 0
        btype, blen = struct.unpack_from(e + "II", data, pos)
        end = pos + blen
        if blen < 12 or blen % 4 or end > len(data):
            out.damage = pos
            break
        if struct.unpack_from(e + "I", data, end - 4)[0] != blen:
            out.damage = pos
            break
        if btype == 1:
            interfaces += 1
        elif btype in PACKET_BLOCKS:
            if btype == 3:
                data_at, size = pos + 12, blen - 16
            else:
                data_at = pos + 28
                size = struct.unpack_from(e + "I", data, pos + 20)[0]
                iface = struct.unpack_from(e + ("I" if btype == 6 else "H"), data, pos + 8)[0]
                if size > blen - 32 or iface >= interfaces:
                    out.damage = pos
                    break
            if not interfaces:
                out.damage = pos
                break
            out.records.append((pos, end, data_at, data_at + size))
        if pos == 0:
            out.header_end = end
        out.boundaries.append(end)
        pos = end
    if out.header_end == 0:
        out.damage = 0
    if not out.boundaries:
        out.boundaries.append(0)
    return out


def layout(data: bytes) -> Layout:
    if data[:4] in PCAP_MAGICS:
        return pcap_layout(data)
    if len(data) >= 4 and struct.unpack_from("<I", data)[0] == PCAPNG_SHB:
        return pcapng_layout(data)
    return Layout(None, damage=0)


# ----------------------------------------------------------------------------- running


@dataclass
class Run:
    code: int
    out: str
    err: str


def dsaudit(*args: str) -> Run:
    """``dsaudit ARGS`` in process, as the console script runs it (main() and its SystemExit).

    An exception other than SystemExit is what a user would see as a traceback: it is
    returned as exit code -1 with the traceback as stderr, so the assertions catch it.
    """
    out, err = io.StringIO(), io.StringIO()
    was_enabled = gc.isenabled()
    code: int
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # noqa: BLE001 - reported by the assertions as a traceback
        code = -1
        err.write(traceback.format_exc())
    finally:
        if was_enabled:
            gc.enable()  # main() turns the collector off for its one-shot process
    return Run(code, out.getvalue(), err.getvalue())


def flows(path: Path) -> Run:
    return dsaudit("flows", "--no-progress", str(path), "--format", "json")


def read_whole(path: Path) -> tuple[int, CaptureInfo]:
    """Packets the library's reader yields before it stops (the damage kept out), and what
    it says of the file."""
    reader = CaptureReader(str(path))
    return sum(len(batch) for batch in reader), reader.info


def packets_read(path: Path) -> int:
    return read_whole(path)[0]


def assert_contract(run: Run, path: Path, *, damaged: bool = True) -> None:
    """Exit code 0, 1 or 2; never a traceback; an error is one line naming the file."""
    assert run.code in (0, 1, 2), (run.code, run.err[-2000:])
    assert "Traceback" not in run.err, run.err[-2000:]
    if run.code == 2:
        lines = run.err.splitlines()
        assert len(lines) == 1, run.err
        assert lines[0].startswith("dsaudit: error: "), lines
        assert str(path) in lines[0], lines
        if damaged:
            assert re.search(r": byte \d+: ", lines[0]), lines
    else:
        for line in run.err.splitlines():
            assert line.startswith(("dsaudit: warning: ", "dsaudit: note: ")), line


def warned_offsets(run: Run, path: Path) -> list[int]:
    """Byte offsets of the damage warnings about ``path``."""
    prefix = f"dsaudit: warning: {path}: byte "
    return [
        int(line[len(prefix) :].split(":")[0])
        for line in run.err.splitlines()
        if line.startswith(prefix)
    ]


# ----------------------------------------------------------------------------- mutations


def cut_points(lay: Layout, size: int) -> Iterator[tuple[str, int]]:
    """Where to cut: in the file header, in a record header, in record data, at the end - 1."""
    yield "file-header", min(10, max(size - 1, 0))
    if lay.records:
        start, _, data_start, data_end = lay.records[len(lay.records) // 2]
        yield "record-header", start + 5
        if data_end - data_start > 2:
            yield "record-data", (data_start + data_end) // 2
    if size > 1:
        yield "end-minus-one", size - 1


def length_field(lay: Layout, start: int, data: bytes) -> int:
    """Offset of the most significant byte of a record's length (pcap caplen, block length)."""
    if lay.fmt == "pcap":
        big = PCAP_MAGICS[data[:4]] == ">"
        return start + (8 if big else 11)
    e = "<"
    for pos in lay.boundaries:
        if pos <= start and struct.unpack_from("<I", data, pos)[0] == PCAPNG_SHB:
            e = ">" if data[pos + 8 : pos + 12] == b"\x1a\x2b\x3c\x4d" else "<"
    return start + (4 if e == ">" else 7)


def flipped(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def data_positions(lay: Layout, rng: random.Random, count: int) -> list[int]:
    """Offsets inside packet data (never a record or block header)."""
    spans = [(a, b) for _, _, a, b in lay.records if b > a]
    picks = []
    for _ in range(count if spans else 0):
        a, b = rng.choice(spans)
        picks.append(rng.randrange(a, b))
    return picks


# ----------------------------------------------------------------------------- tests

ALL_FILES = SAMPLE_FILES + CORPUS_FILES


def _id(p: Path) -> str:
    return p.name


@pytest.mark.parametrize("source", ALL_FILES, ids=_id)
def test_truncated_capture_keeps_every_packet_before_the_cut(source: Path, tmp_path: Path) -> None:
    data = source.read_bytes()
    lay = layout(data)
    for where, cut in cut_points(lay, len(data)):
        path = tmp_path / f"{where}{source.suffix}"
        path.write_bytes(data[:cut])
        run = flows(path)
        assert_contract(run, path)
        if lay.fmt is None or cut < lay.header_end or lay.damage == 0:
            assert run.code == 2, (where, run.err)
            continue
        packets, broken_at = lay.whole_before(cut)
        if packets == 0:
            # Nothing readable before the damage: an unreadable file, not a damaged one.
            assert run.code == 2, (where, run.err)
            assert f": byte {broken_at}: " in run.err, (where, broken_at, run.err)
            continue
        assert run.code == 0, (where, run.err)
        assert warned_offsets(run, path) == ([] if broken_at is None else [broken_at]), (
            where,
            broken_at,
            run.err,
        )
        assert packets_read(path) == packets, where
        prefix = tmp_path / f"{where}-prefix{source.suffix}"
        prefix.write_bytes(data[: cut if broken_at is None else broken_at])
        clean = flows(prefix)
        # An intact prefix is no damaged file (notes on times are not damage).
        assert clean.code == 0 and read_whole(prefix)[1].warnings == [], clean.err
        assert json.loads(run.out) == json.loads(clean.out), where


@pytest.mark.parametrize("source", ALL_FILES, ids=_id)
def test_flipped_bytes_give_a_report_or_one_clear_error(source: Path, tmp_path: Path) -> None:
    data = source.read_bytes()
    lay = layout(data)
    rng = random.Random(f"dsaudit-mutations:{source.name}")
    # The magic: never a capture any more.
    path = tmp_path / f"magic{source.suffix}"
    path.write_bytes(flipped(data, 0))
    run = flows(path)
    assert_contract(run, path)
    assert run.code == 2 and ": byte 0: " in run.err, run.err
    # Header fields after the magic (version, snaplen, link type, pcapng BOM...): anything
    # may happen, as long as the contract holds.
    for at in (4, 9, 20):
        if at < len(data):
            path = tmp_path / f"header-{at}{source.suffix}"
            path.write_bytes(flipped(data, at))
            assert_contract(flows(path), path)
    if lay.fmt is None or lay.damage == 0 or not lay.records:
        return
    # The length of a middle record made absurd: the damage starts exactly there.
    index = len(lay.records) // 2
    start = lay.records[index][0]
    path = tmp_path / f"length{source.suffix}"
    path.write_bytes(flipped(data, length_field(lay, start, data)))
    run = flows(path)
    assert_contract(run, path)
    kept = sum(1 for s, _, _, _ in lay.records if s < start)
    if kept == 0:
        assert run.code == 2 and f": byte {start}: " in run.err, run.err
    else:
        assert run.code == 0, run.err
        assert warned_offsets(run, path) == [start], (start, run.err)
        assert packets_read(path) == kept
    # Bytes inside packet data: the record structure is intact, every packet is read.
    for n, at in enumerate(data_positions(lay, rng, 3)):
        path = tmp_path / f"data-{n}{source.suffix}"
        path.write_bytes(flipped(data, at))
        run = flows(path)
        assert_contract(run, path)
        assert run.code == 0, (at, run.err)
        assert warned_offsets(run, path) == warned_offsets(flows(source), source), at
        assert packets_read(path) == packets_read(source), at
        json.loads(run.out)


GZIP_FILES = SAMPLE_FILES + [p for p in CORPUS_FILES if p.name in GZIP_CORPUS]


def inflate_prefix(blob: bytes) -> bytes:
    """Every byte zlib produces from a gzip stream before it finds the stream cut or corrupt.

    Fed in 4 KiB steps; the step that fails is replayed a byte at a time from a copy of the
    decompressor, so the output right up to the failing input byte is kept.
    """
    d = zlib.decompressobj(31)
    out = bytearray()
    for i in range(0, len(blob), 4096):
        chunk = blob[i : i + 4096]
        before = d.copy()
        try:
            out += d.decompress(chunk)
        except zlib.error:
            for j in range(len(chunk)):
                try:
                    out += before.decompress(chunk[j : j + 1])
                except zlib.error:
                    break
            break
    return bytes(out)


def common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    i = next((i for i in range(0, n, 4096) if a[i : i + 4096] != b[i : i + 4096]), n)
    while i < n and a[i] == b[i]:
        i += 1
    return i


@pytest.mark.parametrize("source", GZIP_FILES, ids=_id)
def test_cut_gzip_keeps_what_decompresses(source: Path, tmp_path: Path) -> None:
    data = source.read_bytes()
    blob = gzip.compress(data, mtime=0)
    lay = layout(data)
    cuts = {"gz-header": 5, "gz-middle": len(blob) // 2, "gz-end-minus-one": len(blob) - 1}
    for where, cut in cuts.items():
        path = tmp_path / f"{where}{source.suffix}.gz"
        path.write_bytes(blob[:cut])
        run = flows(path)
        assert_contract(run, path)
        inflated = len(inflate_prefix(blob[:cut]))
        expected = sum(1 for _, end, _, _ in lay.records if end <= inflated)
        if expected == 0:
            assert run.code == 2, (where, run.err)
            continue
        assert run.code == 0, (where, run.err)
        assert len(warned_offsets(run, path)) == 1, (where, run.err)
        assert "compressed stream ends early" in run.err, (where, run.err)
        assert packets_read(path) == expected, where


@pytest.mark.parametrize("source", GZIP_FILES, ids=_id)
def test_gzip_with_a_bad_crc_keeps_every_packet(source: Path, tmp_path: Path) -> None:
    # Every record decompresses; only the member's CRC-32 (trailer bytes -8..-5) is wrong.
    data = source.read_bytes()
    blob = gzip.compress(data, mtime=0)
    path = tmp_path / f"gz-crc{source.suffix}.gz"
    path.write_bytes(flipped(blob, len(blob) - 6))
    assert inflate_prefix(flipped(blob, len(blob) - 6)) == data
    run = flows(path)
    assert_contract(run, path)
    assert run.code == 0, run.err
    assert len(warned_offsets(run, path)) == 1, run.err
    assert packets_read(path) == len(layout(data).records)


@pytest.mark.parametrize("source", GZIP_FILES, ids=_id)
def test_gzip_with_a_flipped_byte_keeps_the_packets_before_it(source: Path, tmp_path: Path) -> None:
    data = source.read_bytes()
    blob = gzip.compress(data, mtime=0)
    lay = layout(data)
    rng = random.Random(f"dsaudit-gzip:{source.name}")
    for n in range(3):
        at = rng.randrange(20, len(blob) - 8)
        damaged = flipped(blob, at)
        path = tmp_path / f"gz-flip-{n}{source.suffix}.gz"
        path.write_bytes(damaged)
        run = flows(path)
        assert_contract(run, path)
        # The records that decompress to exactly their original bytes come before any
        # garbage the flipped byte produces: the reader must keep at least those.
        intact = common_prefix(inflate_prefix(damaged), data)
        before = sum(1 for _, end, _, _ in lay.records if end <= intact)
        if before:
            assert run.code == 0, (at, before, run.err)
            assert packets_read(path) >= before, (at, before)
            json.loads(run.out)


AUDITED = [p for p in SAMPLE_FILES if (SAMPLES / f"{p.stem}.inventory.yaml").exists()]


@pytest.mark.parametrize("source", AUDITED, ids=_id)
def test_audit_of_damaged_samples_exits_0_1_or_2(source: Path, tmp_path: Path) -> None:
    data = source.read_bytes()
    lay = layout(data)
    inventory = SAMPLES / f"{source.stem}.inventory.yaml"
    rng = random.Random(f"dsaudit-audit:{source.name}")
    variants = {
        "cut-record": data[: lay.records[len(lay.records) // 3][0] + 9],
        "cut-data": data[: lay.records[len(lay.records) // 2][2] + 3],
        "length": flipped(data, length_field(lay, lay.records[len(lay.records) // 4][0], data)),
        "gzip-cut": gzip.compress(data, mtime=0)[: len(data) // 5],
    }
    for n, at in enumerate(data_positions(lay, rng, 4)):
        variants[f"data-{n}"] = flipped(data, at)
    for name, content in variants.items():
        path = tmp_path / f"{name}{source.suffix}"
        path.write_bytes(content)
        run = dsaudit(
            "audit", "--no-progress", str(path), "--inventory", str(inventory), "--format", "json"
        )
        assert_contract(run, path)
        assert run.code in (0, 1), (name, run.err)
        report = json.loads(run.out)
        captured = report["summary"]["captures"][0]
        assert captured["packets"] == packets_read(path), name
        if name.startswith("cut") or name == "length":
            assert captured["damaged"], name


# ----------------------------------------------------------------------------- real processes


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = dsaudit_process(*args)
    return result


def test_real_processes_report_damage_without_a_traceback(tmp_path: Path) -> None:
    healthy = (SAMPLES / "healthy.pcap").read_bytes()
    lay = layout(healthy)
    start = lay.records[len(lay.records) // 2][0]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(healthy[: start + 20])
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"\x00" * 64)
    gz = tmp_path / "flipped.pcapng.gz"
    gz.write_bytes(flipped(gzip.compress((SAMPLES / "manager-host.pcapng").read_bytes()), 200))

    proc = _cli("flows", "--no-progress", str(cut), "--format", "json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"dsaudit: warning: {cut}: byte {start}: "), proc.stderr
    assert len(json.loads(proc.stdout)) > 0

    proc = _cli("flows", "--no-progress", str(garbage), "--format", "json")
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("dsaudit: error: "), proc
    assert f"{garbage}: byte 0: " in proc.stderr

    proc = _cli("flows", "--no-progress", str(gz))
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr
    assert str(gz) in proc.stderr

    inventory = SAMPLES / "healthy.inventory.yaml"
    proc = _cli("audit", "--no-progress", str(cut), "--inventory", str(inventory))
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    assert f"{cut}: byte {start}: " in proc.stderr
    assert "damaged" in proc.stdout
