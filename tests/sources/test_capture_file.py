"""CaptureReader: pcap and pcapng variants, gzip, damaged inputs and bounded memory."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from dsaudit.errors import CaptureError
from dsaudit.sources import capture_file
from dsaudit.sources.batch import PacketBatch
from dsaudit.sources.capture_file import DEFAULT_BUFFER, CaptureInfo, CaptureReader
from tests.packets import (
    BASE_TS,
    LINK_ETHERNET,
    LINK_IPV4,
    LINK_RAW,
    LINK_SLL,
    NS,
    Frame,
    ip_layer,
    ng_block,
    ng_epb,
    ng_idb,
    ng_opb,
    ng_option,
    ng_options,
    ng_shb,
    ng_spb,
    pcap_bytes,
    pcap_header,
    pcap_record,
    udp_frame,
    udp_packet,
)

Packet = tuple[int, bytes, int]  # (ts_ns, frame bytes, linktype)


def read(path: Path, **kw: int) -> tuple[list[PacketBatch], CaptureInfo]:
    """Every batch of ``path`` (kept alive together) and the reader's info."""
    reader = CaptureReader(str(path), **kw)
    batches = list(reader)
    return batches, reader.info


def packets(batches: list[PacketBatch]) -> list[Packet]:
    return [
        (int(b.ts_ns[i]), b.frame(i), int(b.linktype[i])) for b in batches for i in range(len(b))
    ]


def sample_frames(count: int, size: int = 40, step_ns: int = 1_234_567) -> list[Frame]:
    """Distinct UDP frames with timestamps that use every nanosecond digit."""
    return [
        (BASE_TS + i * step_ns + 1, udp_frame("10.1.0.1", "10.1.0.2", 2000 + i, 53, bytes(size)))
        for i in range(count)
    ]


def usec(frames: list[Frame]) -> list[Frame]:
    return [(ts - ts % 1000, data) for ts, data in frames]


def record_offsets(frames: list[Frame], start: int = 24) -> list[int]:
    out, pos = [], start
    for _, data in frames:
        out.append(pos)
        pos += 16 + len(data)
    return out


# ----------------------------------------------------------------------------- pcap


@pytest.mark.parametrize("big", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("nsec", [False, True], ids=["usec", "nsec"])
def test_pcap_magic_byte_order_and_resolution(tmp_path: Path, big: bool, nsec: bool) -> None:
    frames = sample_frames(5)
    expected = frames if nsec else usec(frames)
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(frames, big=big, nsec=nsec))
    batches, info = read(path)
    assert packets(batches) == [(ts, data, LINK_ETHERNET) for ts, data in expected]
    assert [int(o) for b in batches for o in b.file_off] == record_offsets(frames)
    assert info.format == "pcap"
    assert info.byte_order == ("big" if big else "little")
    assert info.ts_resolution == ("nsec" if nsec else "usec")
    assert info.packets == 5 and info.damaged is None and info.warnings == []


def test_pcap_wirelen_kept_when_snaplen_cut(tmp_path: Path) -> None:
    data = udp_frame("10.0.0.1", "10.0.0.2", 1, 2, bytes(100))
    path = tmp_path / "cut.pcap"
    path.write_bytes(pcap_header(snaplen=64) + pcap_record(BASE_TS, data[:64], wirelen=len(data)))
    (batch,), _ = read(path)
    assert int(batch.caplen[0]) == 64
    assert int(batch.wirelen[0]) == len(data)
    assert batch.frame(0) == data[:64]


def test_pcap_fcs_bits_of_the_link_type_are_ignored(tmp_path: Path) -> None:
    frames = sample_frames(1)
    header = bytearray(pcap_header())
    struct.pack_into("<I", header, 20, (1 << 28) | (2 << 29) | LINK_ETHERNET)
    path = tmp_path / "fcs.pcap"
    path.write_bytes(bytes(header) + pcap_record(*frames[0]))
    batches, info = read(path)
    assert info.linktypes == {LINK_ETHERNET}
    assert [p[2] for p in packets(batches)] == [LINK_ETHERNET]


def test_pcap_record_above_default_max_needs_a_large_snaplen(tmp_path: Path) -> None:
    big = bytes(300_000)
    ok = tmp_path / "large-snaplen.pcap"
    ok.write_bytes(pcap_header(snaplen=400_000) + pcap_record(BASE_TS, big))
    batches, info = read(ok)
    assert len(packets(batches)) == 1 and info.damaged is None

    bad = tmp_path / "small-snaplen.pcap"
    bad.write_bytes(pcap_header(snaplen=65535) + pcap_record(BASE_TS, big))
    # Damage before the first packet leaves nothing readable: the file is refused.
    with pytest.raises(CaptureError) as err:
        read(bad)
    assert err.value.offset == 24


def test_pcap_version_other_than_2_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v1.pcap"
    path.write_bytes(pcap_header(major=1, minor=4))
    with pytest.raises(CaptureError) as err:
        read(path)
    assert err.value.offset == 4


def test_pcap_header_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "short.pcap"
    path.write_bytes(pcap_header()[:10])
    with pytest.raises(CaptureError) as err:
        read(path)
    assert err.value.offset == 0 and err.value.path == str(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    with pytest.raises(CaptureError) as err:
        read(path)
    assert err.value.offset == 0
    assert "empty" in err.value.message


def test_garbage_header(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pcap"
    path.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(CaptureError) as err:
        read(path)
    assert err.value.offset == 0


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError) as err:
        read(tmp_path / "nope.pcap")
    assert err.value.path == str(tmp_path / "nope.pcap")


@pytest.mark.parametrize("good", [0, 1, 7])
def test_bogus_record_length_after_good_records(tmp_path: Path, good: int) -> None:
    frames = sample_frames(good)
    bad_at = 24 + sum(16 + len(d) for _, d in frames)
    path = tmp_path / "bogus.pcap"
    path.write_bytes(
        pcap_bytes(frames, nsec=True)
        + pcap_record(BASE_TS, bytes(60), nsec=True, caplen=0x7FFF0000)
        + pcap_bytes(sample_frames(3), nsec=True)[24:]
    )
    if good == 0:
        # Nothing readable precedes the damage: the file is refused with the offset.
        with pytest.raises(CaptureError) as err:
            read(path)
        assert err.value.offset == bad_at
        return
    batches, info = read(path)
    assert packets(batches) == [(ts, d, LINK_ETHERNET) for ts, d in frames]
    assert info.damage_offset == bad_at
    assert len(info.warnings) == 1
    assert f"byte {bad_at}" in info.warnings[0] and str(path) in info.warnings[0]


@pytest.mark.parametrize("cut", [1, 8, 15], ids=lambda c: f"header+{c}")
def test_file_ends_inside_a_record_header(tmp_path: Path, cut: int) -> None:
    frames = sample_frames(4)
    whole = pcap_bytes(frames, nsec=True)
    at = record_offsets(frames)[3]
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[: at + cut])
    batches, info = read(path)
    assert [p[1] for p in packets(batches)] == [d for _, d in frames[:3]]
    assert info.damage_offset == at
    assert f"byte {at}" in info.warnings[0]


def test_file_ends_inside_record_data(tmp_path: Path) -> None:
    frames = sample_frames(4)
    whole = pcap_bytes(frames, nsec=True)
    at = record_offsets(frames)[3]
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[: at + 16 + 5])
    batches, info = read(path)
    assert len(packets(batches)) == 3
    assert info.damage_offset == at
    assert "5 of" in info.warnings[0]


def test_record_larger_than_the_buffer(tmp_path: Path) -> None:
    frames = [(BASE_TS, bytes(range(256)) * 40), *sample_frames(3)]
    path = tmp_path / "jumbo.pcap"
    path.write_bytes(pcap_bytes(frames, nsec=True))
    batches, info = read(path, buffer_bytes=1024, batch_packets=2)
    assert [p[1] for p in packets(batches)] == [d for _, d in frames]
    assert info.damaged is None


def test_batches_stay_valid_after_later_reads(tmp_path: Path) -> None:
    frames = sample_frames(300, size=100)
    path = tmp_path / "many.pcap"
    path.write_bytes(pcap_bytes(frames, nsec=True))
    batches, info = read(path, buffer_bytes=4096, batch_packets=16)
    assert len(batches) > 10
    assert packets(batches) == [(ts, d, LINK_ETHERNET) for ts, d in frames]
    assert info.packets == 300


@pytest.mark.parametrize("step", [1, 7, 100, 5000])
@pytest.mark.parametrize("kind", ["pcap", "pcapng", "pcap.gz"])
def test_reading_in_small_steps_gives_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int, kind: str
) -> None:
    """The reader reads a step at a time into each buffer and walks as it goes: records and
    pcapng blocks straddling steps, buffers and batches all come out whole and in order."""
    frames = [(BASE_TS + i * NS, bytes([i % 256]) * (60 + i * 37 % 900)) for i in range(120)]
    if kind == "pcapng":
        blocks = [ng_epb(0, ts // 1000, data) for ts, data in frames]
        data = ng_shb() + ng_idb(LINK_ETHERNET) + b"".join(blocks)
    else:
        data = pcap_bytes(frames, nsec=True)
    if kind.endswith(".gz"):
        data = gzip.compress(data)
    path = tmp_path / f"steps.{kind}"
    path.write_bytes(data)
    expected, _ = read(path)
    assert len(packets(expected)) == len(frames)
    monkeypatch.setattr(capture_file, "READ_STEP", step)
    batches, info = read(path, buffer_bytes=8192, batch_packets=16)
    assert packets(batches) == packets(expected)
    assert info.damaged is None


# ----------------------------------------------------------------------------- pcapng


def test_pcapng_sections_byte_orders_and_interfaces(tmp_path: Path) -> None:
    eth = udp_frame("10.0.0.1", "10.0.0.2", 1111, 53, b"section one eth")
    raw4 = bytes(udp_packet("10.0.0.3", "10.0.0.4", 2222, 53, b"section one raw"))
    sll = (
        bytes.fromhex("0000000100060200000000000000")
        + struct.pack(">H", 0x0800)
        + bytes(udp_packet("10.0.0.5", "10.0.0.6", 3333, 53, b"section two sll"))
    )
    raw6 = bytes(udp_packet("2001:db8::1", "2001:db8::2", 4444, 53, b"section two raw"))
    first = (
        ng_shb(big=False)
        + ng_idb(LINK_ETHERNET, tsresol=9)
        + ng_idb(LINK_IPV4)
        + ng_epb(1, 1_000_000, raw4)
        + ng_epb(0, BASE_TS + 5, eth)
    )
    second = (
        ng_shb(big=True)
        + ng_idb(LINK_SLL, big=True, tsresol=9)
        + ng_idb(LINK_RAW, big=True, tsresol=3)
        + ng_epb(0, BASE_TS + 7, sll, big=True)
        + ng_epb(1, 1_700_000_001_250, raw6, big=True)
    )
    path = tmp_path / "two.pcapng"
    path.write_bytes(first + second)
    batches, info = read(path)
    assert packets(batches) == [
        (1_000_000 * 1000, raw4, LINK_IPV4),
        (BASE_TS + 5, eth, LINK_ETHERNET),
        (BASE_TS + 7, sll, LINK_SLL),
        (1_700_000_001_250 * 1_000_000, raw6, LINK_RAW),
    ]
    assert info.sections == 2 and info.interfaces == 4
    assert info.linktypes == {LINK_ETHERNET, LINK_IPV4, LINK_SLL, LINK_RAW}
    assert info.byte_order == "big"
    assert info.damaged is None


@pytest.mark.parametrize(
    ("tsresol", "ticks", "expected_ns"),
    [
        (None, 1_700_000_000_123_456, 1_700_000_000_123_456_000),
        (6, 1_700_000_000_123_456, 1_700_000_000_123_456_000),
        (9, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
        (3, 1_700_000_000_123, 1_700_000_000_123_000_000),
        (12, 12_345_678_901_234_567, 12_345_678_901_234),
        (0x80 | 10, 1_700_000_000 * 1024 + 512, 1_700_000_000_500_000_000),
    ],
    ids=["default-usec", "usec", "nsec", "msec", "psec", "binary-2^-10"],
)
def test_pcapng_if_tsresol(
    tmp_path: Path, tsresol: int | None, ticks: int, expected_ns: int
) -> None:
    data = udp_frame("10.0.0.1", "10.0.0.2", 1, 2)
    path = tmp_path / "res.pcapng"
    path.write_bytes(ng_shb() + ng_idb(tsresol=tsresol) + ng_epb(0, ticks, data))
    batches, _ = read(path)
    assert packets(batches) == [(expected_ns, data, LINK_ETHERNET)]


def test_pcapng_binary_resolution_is_exact_to_the_nanosecond(tmp_path: Path) -> None:
    k = 20  # 2^-20 s ticks, as some hardware timestampers write
    data = udp_frame("10.0.0.1", "10.0.0.2", 1, 2)
    ticks = [1_700_000_000 * (1 << k) + frac for frac in (1, 123_457, (1 << k) - 1)]
    path = tmp_path / "binary.pcapng"
    path.write_bytes(
        ng_shb() + ng_idb(tsresol=0x80 | k) + b"".join(ng_epb(0, t, data) for t in ticks)
    )
    batches, _ = read(path)
    got = [p[0] for p in packets(batches)]
    exact = [(t * NS) // (1 << k) for t in ticks]  # integer arithmetic: no rounding
    assert all(abs(g - e) <= 1 for g, e in zip(got, exact, strict=True)), (got, exact)


@pytest.mark.parametrize("tsresol", [0x80 | 63, 0x7F], ids=["binary-2^-63", "decimal-10^-127"])
def test_pcapng_extreme_if_tsresol_is_damage_not_a_crash(tmp_path: Path, tsresol: int) -> None:
    data = udp_frame("10.0.0.1", "10.0.0.2", 1, 2)
    path = tmp_path / "resol.pcapng"
    path.write_bytes(ng_shb() + ng_idb(tsresol=tsresol) + ng_epb(0, 12345, data))
    try:
        batches, _ = read(path)
    except CaptureError:
        return  # refusing the interface is as good as reading it
    assert [p[1] for p in packets(batches)] == [data]


def test_pcapng_if_tsoffset_adds_seconds(tmp_path: Path) -> None:
    data = udp_frame("10.0.0.1", "10.0.0.2", 1, 2)
    path = tmp_path / "off.pcapng"
    path.write_bytes(
        ng_shb()
        + ng_idb(tsresol=9, tsoffset=1_600_000_000)
        + ng_idb(tsresol=6, tsoffset=-100)
        + ng_epb(0, 1_500, data)
        + ng_epb(1, 1_700_000_000_000_007, data)
    )
    batches, _ = read(path)
    assert [p[0] for p in packets(batches)] == [
        1_600_000_000 * NS + 1_500,
        (1_700_000_000 - 100) * NS + 7_000,
    ]


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path: Path) -> None:
    a = udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"abc")  # not a multiple of 4
    b = udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"opb")
    assert len(a) % 4
    path = tmp_path / "spb.pcapng"
    path.write_bytes(
        ng_shb()
        + ng_idb(tsresol=9, snaplen=65535)
        + ng_idb(LINK_IPV4)
        + ng_epb(0, BASE_TS + 11, a)
        + ng_spb(a)
        + ng_opb(0, BASE_TS + 22, b)
    )
    batches, info = read(path)
    # A Simple Packet Block has no timestamp: the reader reuses the previous one.
    assert packets(batches) == [
        (BASE_TS + 11, a, LINK_ETHERNET),
        (BASE_TS + 11, a, LINK_ETHERNET),
        (BASE_TS + 22, b, LINK_ETHERNET),
    ]
    # Said as a note on times: nothing of the file is damaged or lost.
    assert info.damaged is None and info.warnings == []
    assert len(info.notes) == 1 and "1 packet(s) are Simple Packet Blocks" in info.notes[0]
    assert info.warnings_and_notes == info.notes


def test_pcapng_simple_packet_block_cut_by_snaplen(tmp_path: Path) -> None:
    # SPB data length is min(original length, the interface's snaplen); the block then
    # pads the 62 captured bytes to 64.
    frame = udp_frame("10.0.0.1", "10.0.0.2", 1, 2, bytes(100))
    path = tmp_path / "spb-snap.pcapng"
    path.write_bytes(
        ng_shb() + ng_idb(snaplen=62) + ng_block(3, struct.pack("<I", len(frame)) + frame[:62])
    )
    batches, _ = read(path)
    assert [int(b.caplen[i]) for b in batches for i in range(len(b))] == [62]
    assert [int(b.wirelen[i]) for b in batches for i in range(len(b))] == [len(frame)]


def test_pcapng_unknown_and_custom_blocks_and_options_are_skipped(tmp_path: Path) -> None:
    a = udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"first")
    b = udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"second")
    pen = struct.pack("<I", 32473)
    path = tmp_path / "blocks.pcapng"
    path.write_bytes(
        ng_shb(options=[(1, b"a comment"), (2, b"hw"), (3, b"os"), (4, b"dsaudit tests")])
        + ng_block(0x0BAD, pen + b"custom, copyable")
        + ng_idb(options=[(2, b"eth0"), (3, b"the first interface"), (1, b"c")], tsresol=9)
        + ng_block(4, struct.pack("<HH", 1, 8) + bytes(8) + struct.pack("<HH", 0, 0))  # NRB
        + ng_epb(0, BASE_TS + 1, a, options=[(1, b"packet comment"), (2, b"\x01\x00\x00\x00")])
        + ng_block(5, struct.pack("<III", 0, 0, 0) + ng_options([(4, bytes(8))]))  # ISB
        + ng_block(0x4000_0BAD, pen + b"custom, do not copy")
        + ng_block(0x0000_000A, struct.pack("<II", 0x544C534B, 4) + b"keys")  # DSB
        + ng_block(0x1234_5678, b"nobody knows this block")
        + ng_epb(0, BASE_TS + 2, b)
    )
    batches, info = read(path)
    assert packets(batches) == [
        (BASE_TS + 1, a, LINK_ETHERNET),
        (BASE_TS + 2, b, LINK_ETHERNET),
    ]
    assert info.damaged is None


def test_pcapng_block_trailer_mismatch_after_packets(tmp_path: Path) -> None:
    frames = sample_frames(3)
    head = ng_shb() + ng_idb(tsresol=9)
    good = b"".join(ng_epb(0, ts, d) for ts, d in frames)
    bad = ng_epb(0, BASE_TS, frames[0][1])
    bad = bad[:-4] + struct.pack("<I", len(bad) + 8)
    path = tmp_path / "trailer.pcapng"
    path.write_bytes(head + good + bad + good)
    batches, info = read(path)
    assert packets(batches) == [(ts, d, LINK_ETHERNET) for ts, d in frames]
    assert info.damage_offset == len(head + good)
    assert f"byte {len(head + good)}" in info.warnings[0]


def test_pcapng_packet_for_an_undeclared_interface(tmp_path: Path) -> None:
    frames = sample_frames(2)
    head = ng_shb() + ng_idb(tsresol=9)
    good = b"".join(ng_epb(0, ts, d) for ts, d in frames)
    path = tmp_path / "iface.pcapng"
    path.write_bytes(head + good + ng_epb(3, BASE_TS, frames[0][1]))
    batches, info = read(path)
    assert len(packets(batches)) == 2
    assert info.damage_offset == len(head + good)


def test_pcapng_option_running_past_its_block(tmp_path: Path) -> None:
    # An IDB whose if_name option claims 200 bytes in a block that has 8.
    bad_idb = ng_block(1, struct.pack("<HHI", 1, 0, 0) + ng_option(2, b"eth0"))
    bad_idb = bad_idb[:18] + struct.pack("<H", 200) + bad_idb[20:]
    path = tmp_path / "opt-first.pcapng"
    path.write_bytes(ng_shb() + bad_idb)
    with pytest.raises(CaptureError) as err:
        read(path)
    assert err.value.offset == 28 + 16  # the option, inside the IDB after the SHB

    frames = sample_frames(2)
    good = ng_shb() + ng_idb(tsresol=9) + b"".join(ng_epb(0, ts, d) for ts, d in frames)
    later = tmp_path / "opt-later.pcapng"
    later.write_bytes(good + ng_shb() + bad_idb + ng_epb(0, 1, frames[0][1]))
    batches, info = read(later)
    assert len(packets(batches)) == 2
    assert info.damaged is not None and "option" in info.damaged
    assert info.damage_offset == len(good) + 28 + 16


def test_pcapng_bad_byte_order_mark(tmp_path: Path) -> None:
    shb = bytearray(ng_shb())
    shb[8:12] = b"\x00\x11\x22\x33"
    path = tmp_path / "bom.pcapng"
    path.write_bytes(bytes(shb))
    with pytest.raises(CaptureError) as err:
        read(path)
    assert err.value.offset == 8


def test_pcapng_cut_inside_the_section_header_is_unreadable(tmp_path: Path) -> None:
    # Like a pcap whose 24-byte header is cut short: nothing can be read at all.
    path = tmp_path / "cut.pcapng"
    path.write_bytes(ng_shb()[:10])
    with pytest.raises(CaptureError) as err:
        read(path)
    assert err.value.offset == 0


@pytest.mark.parametrize("cut", [4, 16], ids=["in-header", "in-body"])
def test_pcapng_cut_inside_a_packet_block(tmp_path: Path, cut: int) -> None:
    frames = sample_frames(3)
    head = ng_shb() + ng_idb(tsresol=9)
    blocks = [ng_epb(0, ts, d) for ts, d in frames]
    at = len(head) + len(blocks[0]) + len(blocks[1])
    path = tmp_path / "cut.pcapng"
    path.write_bytes((head + b"".join(blocks))[: at + cut])
    batches, info = read(path)
    assert len(packets(batches)) == 2
    assert info.damage_offset == at


# ----------------------------------------------------------------------------- gzip


@pytest.fixture(params=["zlib-ng", "zlib"])
def inflate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a gzip test with zlib-ng (the default where it installs) and the system zlib."""
    if request.param == "zlib":
        monkeypatch.setattr(capture_file, "INFLATE", zlib)
    else:
        assert capture_file.INFLATE is not zlib, "zlib-ng is a dependency: it should load"
    return str(request.param)


@pytest.mark.usefixtures("inflate")
@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_reads_like_the_plain_file(tmp_path: Path, kind: str) -> None:
    frames = sample_frames(50)
    if kind == "pcap":
        raw = pcap_bytes(frames, nsec=True)
    else:
        raw = ng_shb() + ng_idb(tsresol=9) + b"".join(ng_epb(0, ts, d) for ts, d in frames)
    plain = tmp_path / f"x.{kind}"
    plain.write_bytes(raw)
    packed = tmp_path / f"x.{kind}.gz"
    packed.write_bytes(gzip.compress(raw))
    got, info = read(packed)
    assert packets(got) == packets(read(plain)[0])
    assert info.compressed and info.damaged is None


def _complete_records(prefix: bytes) -> int:
    """How many whole pcap records the decompressed prefix holds."""
    pos, n = 24, 0
    while pos + 16 <= len(prefix):
        cl = struct.unpack_from("<I", prefix, pos + 8)[0]
        if pos + 16 + cl > len(prefix):
            break
        pos += 16 + cl
        n += 1
    return n


@pytest.mark.usefixtures("inflate")
@pytest.mark.parametrize("buffer_bytes", [DEFAULT_BUFFER, 8192], ids=["default", "8KiB"])
def test_gzip_cut_short_keeps_packets_before_the_cut(tmp_path: Path, buffer_bytes: int) -> None:
    frames = sample_frames(3000, size=200)
    packed = gzip.compress(pcap_bytes(frames, nsec=True))
    cut = packed[: len(packed) // 2]
    # What an honest reader can recover: everything that decompresses before the cut.
    recoverable = _complete_records(zlib.decompressobj(31).decompress(cut))
    assert 0 < recoverable < len(frames)
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(cut)
    batches, info = read(path, buffer_bytes=buffer_bytes)
    got = packets(batches)
    assert [d for _, d, _ in got] == [d for _, d in frames[:recoverable]]
    assert info.damaged is not None and len(info.warnings) == 1


@pytest.mark.usefixtures("inflate")
def test_gzip_of_garbage_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pcap.gz"
    path.write_bytes(gzip.compress(b"this is not a capture at all" * 4))
    with pytest.raises(CaptureError) as err:
        read(path)
    assert err.value.offset == 0


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "pcap.gz"])
def test_memory_stays_bounded_on_a_large_file(tmp_path: Path, kind: str) -> None:
    payload = bytes(range(256)) * 4
    template = udp_frame("10.9.0.1", "10.9.0.2", 5000, 6000, payload)
    count = 4000  # about 4.4 MB of records
    frames = [(BASE_TS + i, template) for i in range(count)]
    if kind.startswith("pcap."):
        raw = gzip.compress(pcap_bytes(frames, nsec=True), compresslevel=1)
    elif kind == "pcap":
        raw = pcap_bytes(frames, nsec=True)
    else:
        raw = ng_shb() + ng_idb(tsresol=9) + b"".join(ng_epb(0, ts, d) for ts, d in frames)
    path = tmp_path / f"big.{kind}"
    path.write_bytes(raw)
    buffer_bytes = 64 * 1024
    reader = CaptureReader(str(path), buffer_bytes=buffer_bytes, batch_packets=256)
    seen = 0
    largest = 0
    for batch in reader:
        largest = max(largest, batch.buf.nbytes)
        assert int(batch.wirelen.max()) == len(template)
        seen += len(batch)
        del batch  # nothing keeps old batches alive
    assert seen == count
    # A refill keeps at most one partial record: the buffer never outgrows twice its size.
    assert largest <= 2 * buffer_bytes
    assert reader.info.bytes_read >= count * len(template)


def test_batch_offsets_point_into_the_shared_buffer(tmp_path: Path) -> None:
    frames = sample_frames(20)
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(frames, nsec=True))
    (batch,), _ = read(path)
    assert batch.buf.dtype == np.uint8
    ends = batch.off + batch.caplen
    assert int(ends.max()) <= batch.buf.shape[0]
    assert np.all(np.diff(batch.off) > 0)


def test_raw_ip_link_types_are_reported(tmp_path: Path) -> None:
    pkt = bytes(ip_layer("10.0.0.1", "10.0.0.2"))
    path = tmp_path / "raw.pcap"
    path.write_bytes(pcap_bytes([(BASE_TS, pkt)], LINK_RAW))
    batches, info = read(path)
    assert info.linktypes == {LINK_RAW}
    assert info.linktype_names() == ["raw"]
    assert packets(batches) == [(BASE_TS - BASE_TS % 1000, pkt, LINK_RAW)]


def test_pcapng_interface_declared_after_packets_and_block_offsets(tmp_path: Path) -> None:
    a = udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"first")
    b = bytes(udp_packet("10.0.0.3", "10.0.0.4", 3, 4, b"second"))
    blocks = [
        ng_shb(),
        ng_idb(tsresol=9),
        ng_epb(0, BASE_TS + 1, a),
        ng_idb(LINK_RAW, tsresol=9),
        ng_epb(1, BASE_TS + 2, b),
        ng_epb(0, BASE_TS + 3, a),
    ]
    starts = [sum(len(x) for x in blocks[:i]) for i in range(len(blocks))]
    path = tmp_path / "late-idb.pcapng"
    path.write_bytes(b"".join(blocks))
    batches, info = read(path)
    assert packets(batches) == [
        (BASE_TS + 1, a, LINK_ETHERNET),
        (BASE_TS + 2, b, LINK_RAW),
        (BASE_TS + 3, a, LINK_ETHERNET),
    ]
    assert [int(o) for x in batches for o in x.file_off] == [starts[2], starts[4], starts[5]]
    assert info.interfaces == 2


@pytest.mark.usefixtures("inflate")
def test_gzip_damage_mid_member_keeps_what_inflates(tmp_path: Path) -> None:
    # Two members (as `cat a.gz b.gz` makes them), the second with a flipped byte early on.
    frames = sample_frames(400, size=300)
    raw = pcap_bytes(frames, nsec=True)
    half = 24 + sum(16 + len(d) for _, d in frames[:200])
    first = gzip.compress(raw[:half], mtime=0)
    second = bytearray(gzip.compress(raw[half:], mtime=0))
    second[40] ^= 0xFF
    path = tmp_path / "two-members.pcap.gz"
    path.write_bytes(first + bytes(second))
    batches, info = read(path)
    got = [d for _, d, _ in packets(batches)]
    assert got[:200] == [d for _, d in frames[:200]]  # the whole first member
    assert info.damaged is not None and "corrupt" in info.damaged
