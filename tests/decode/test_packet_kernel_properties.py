"""Properties of the compiled decoder, flow table and file walkers on arbitrary input."""

from __future__ import annotations

import gzip
import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from dsaudit.decode.batch import decode_batch
from dsaudit.decode.packet_kernel import (
    C_ERR,
    C_FRAME,
    C_L3,
    C_L3_LEN,
    C_L3_OFF,
    C_L4_LEN,
    C_PAY_LEN,
    C_PAY_OFF,
    ERR_NAMES,
    ERR_NONE,
)
from dsaudit.errors import CaptureError
from dsaudit.flow_records.builder import FlowBuilder
from dsaudit.sources.batch import PacketBatch
from dsaudit.sources.capture_file import CaptureReader
from tests.checked_kernels import checked_runner
from tests.encap_packets import WRAPS
from tests.factories import client_hello, dns_response, http_request
from tests.packets import (
    BASE_TS,
    LINK_ETHERNET,
    LINK_LOOP,
    LINK_NULL,
    LINK_RAW,
    LINK_SLL,
    LINK_SLL2,
    MAC_A,
    MAC_B,
    ether,
    ng_epb,
    ng_idb,
    ng_shb,
    ng_spb,
    pcap_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
LINKS = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147]
A4, B4, A6, B6 = "10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2"


def seed_frames() -> list[tuple[int, bytes]]:
    """Well-formed frames of every kind the decoder knows, to mutate."""
    tcp = IP(src=A4, dst=B4) / TCP(sport=40000, dport=443, flags="PA", options=[("MSS", 1460)])
    inner = Ether(src=MAC_A, dst=MAC_B) / IP(src=A4, dst=B4) / UDP(sport=1, dport=53)
    v6 = IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(dport=53)
    return [
        (LINK_ETHERNET, ether(tcp / Raw(client_hello("seed.example")))),
        (LINK_ETHERNET, ether(tcp / Raw(http_request("seed.example")), [5, 6])),
        (LINK_ETHERNET, ether(v6 / Raw(dns_response("a.example", [("a.example", 1, A4, 5)])))),
        (LINK_ETHERNET, ether(IP(src=A4, dst=B4) / UDP(dport=4789) / VXLAN(vni=1) / inner)),
        (LINK_ETHERNET, ether(IP(src=A4, dst=B4) / ICMP(type=3, code=3) / bytes(IP() / UDP()))),
        (LINK_ETHERNET, ether(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(m=1) / UDP() / b"x")),
        (LINK_ETHERNET, ether(IP(src=A4, dst=B4, flags="MF") / UDP() / bytes(16))),
        (LINK_SLL, bytes(CookedLinux(proto=0x800) / tcp)),
        (LINK_SLL2, bytes(CookedLinuxV2(proto=0x86DD) / IPv6(src=A6, dst=B6) / TCP())),
        (LINK_NULL, b"\x02\x00\x00\x00" + bytes(IP(src=A4, dst=B4) / UDP())),
        (LINK_LOOP, b"\x00\x00\x00\x1e" + bytes(IPv6(src=A6, dst=B6) / TCP(flags="S"))),
        (
            LINK_RAW,
            bytes(IP(src=A4, dst=B4) / TCP(sport=53, dport=5353) / (b"\x00\x10" + bytes(16))),
        ),
        # Every tunnel and link-layer encapsulation, around TCP and around IPv6 UDP.
        *((LINK_ETHERNET, bytes(wrap(tcp))) for wrap, _ in WRAPS.values()),
        *((LINK_ETHERNET, bytes(wrap(v6))) for wrap, _ in WRAPS.values()),
    ]


SEEDS = seed_frames()


@st.composite
def frames(draw: st.DrawFn) -> tuple[int, bytes]:
    if draw(st.booleans()):
        return draw(st.sampled_from(LINKS)), draw(st.binary(max_size=160))
    link, seed = draw(st.sampled_from(SEEDS))
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        link = draw(st.sampled_from(LINKS))
    return link, bytes(data[: draw(st.integers(0, len(data)))])


def make_batch(items: list[tuple[int, bytes]]) -> PacketBatch:
    stamped = [(BASE_TS + i * 1000, data) for i, (_, data) in enumerate(items)]
    return PacketBatch.from_frames(stamped, [link for link, _ in items])


def assert_rows_in_bounds(batch: PacketBatch, rec: np.ndarray, k: int) -> None:
    n = len(batch)
    assert n <= k <= 2 * n
    assert sorted(set(rec[:k, C_FRAME].tolist())) == list(range(n))
    for row in rec[:k]:
        i = int(row[C_FRAME])
        start = int(batch.off[i])
        end = start + int(batch.caplen[i])
        assert int(row[C_ERR]) == ERR_NONE or int(row[C_ERR]) in ERR_NAMES
        assert row[C_PAY_LEN] >= 0 and row[C_L4_LEN] >= 0 and row[C_L3_LEN] >= 0
        assert row[C_PAY_OFF] + row[C_PAY_LEN] <= end, (i, row.tolist())
        if row[C_PAY_LEN] > 0:
            assert row[C_PAY_OFF] >= start
        if row[C_L3_OFF] != 0:
            assert start <= row[C_L3_OFF] <= end
        assert row[C_L3_OFF] + row[C_L3_LEN] <= end
        assert row[C_L3] in (0, 3, 4, 6, 9)


@settings(max_examples=150, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=12))
@example([(LINK_ETHERNET, ether(IP(src=A4, dst=B4) / TCP(dataofs=15)))])
@example([(LINK_RAW, bytes(IP(src=A4, dst=B4, proto=1, len=25)) + b"\x03\x03\x00\x00\x00")])
def test_decoder_rows_stay_within_their_frame(items: list[tuple[int, bytes]]) -> None:
    batch = make_batch(items)
    rec, k = decode_batch(batch)
    assert_rows_in_bounds(batch, rec, k)


@settings(max_examples=100, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=12))
def test_flow_table_takes_any_decoded_batch(items: list[tuple[int, bytes]]) -> None:
    builder = FlowBuilder()
    builder.add_batch(make_batch(items))
    builder.add_batch(make_batch(list(reversed(items))))
    df = builder.result([]).flows
    assert int(df["packets_c2s"].sum() + df["packets_s2c"].sum()) <= 2 * 2 * len(items)


def _seed_files() -> list[bytes]:
    data = [d for _, d in SEEDS[:4]]
    stamped = [(BASE_TS + i, d) for i, d in enumerate(data)]
    ng = (
        ng_shb(options=[(4, b"app")])
        + ng_idb(tsresol=9, options=[(2, b"eth0")])
        + ng_idb(LINK_RAW, tsoffset=5)
        + b"".join(ng_epb(i % 2, BASE_TS + i, d) for i, d in enumerate(data))
        + ng_spb(data[0])
    )
    ng_big = ng_shb(big=True) + ng_idb(big=True) + ng_epb(0, 7, data[1], big=True)
    return [pcap_bytes(stamped), pcap_bytes(stamped, big=True, nsec=True), ng, ng_big]


FILE_SEEDS = _seed_files()


@st.composite
def capture_files(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 3)) == 0:
        prefix = draw(st.sampled_from([b"", b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"]))
        return prefix + draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(FILE_SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    data = data[: draw(st.integers(0, len(data)))]
    if draw(st.integers(0, 4)) == 0:
        return gzip.compress(bytes(data))
    return bytes(data)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(capture_files())
@example(ng_shb() + ng_idb(tsresol=0x80 | 63) + ng_epb(0, 1, b"x" * 20))
@example(ng_shb() + ng_idb(tsresol=0x7F) + ng_epb(0, 1, b"x" * 20))
def test_any_file_reads_or_raises_capture_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.cap"
    path.write_bytes(data)
    try:
        batches = list(CaptureReader(str(path), buffer_bytes=256, batch_packets=4))
    except CaptureError:
        return
    for b in batches:
        assert np.all(b.caplen >= 0)
        assert np.all(b.off + b.caplen <= b.buf.shape[0])
        assert np.all(b.wirelen >= b.caplen)


# ----------------------------------------------------------------------------- bounds checking

CHECKED_RUN = textwrap.dedent(
    """
    import ctypes
    import sys

    import numpy as np

    if sys.argv[1] == "probe":
        # A read past the end of a numpy buffer must be caught: proves the sanitizer is live.
        a = np.zeros(16, dtype=np.uint8)
        ctypes.string_at(a.ctypes.data, 64)
        sys.exit("AddressSanitizer is not in effect")

    from dsaudit.errors import CaptureError
    from dsaudit.flow_records.builder import FlowBuilder, decode_batch
    from dsaudit.sources.batch import PacketBatch
    from dsaudit.sources.capture_file import CaptureReader

    d = np.load(sys.argv[1])
    batch = PacketBatch(d["buf"], d["off"], d["caplen"], d["wirelen"], d["ts"], d["link"],
                        np.full(len(d["off"]), -1, dtype=np.int64))
    rec, k = decode_batch(batch)
    builder = FlowBuilder()
    builder.add_batch(batch)
    builder.add_batch(batch)
    flows = builder.result([]).flows
    for path in sys.argv[2:]:
        try:
            for _ in CaptureReader(path, buffer_bytes=128, batch_packets=3):
                pass
        except CaptureError:
            pass
    print("ok", k, len(flows))
    """
)


def _mutated_frames(count: int, rng: random.Random) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for i in range(count):
        if i % 4 == 0:
            out.append((rng.choice(LINKS), rng.randbytes(rng.randrange(0, 120))))
            continue
        link, seed = SEEDS[i % len(SEEDS)]
        data = bytearray(seed)
        for _ in range(rng.randrange(0, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        out.append((link, bytes(data[: rng.randrange(len(data) + 1)])))
    return out


def test_kernels_never_read_out_of_bounds(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    items = [(link, data) for link, data in SEEDS] + _mutated_frames(1600, rng)
    batch = make_batch(items)
    frames_file = tmp_path / "frames.npz"
    np.savez(
        frames_file,
        buf=batch.buf,
        off=batch.off,
        caplen=batch.caplen,
        wirelen=batch.wirelen,
        ts=batch.ts_ns,
        link=batch.linktype,
    )
    files = []
    for i, seed in enumerate(FILE_SEEDS * 5):
        data = bytearray(seed)
        for _ in range(rng.randrange(0, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"capture{i}"
        path.write_bytes(bytes(data[: rng.randrange(len(data) + 1)]))
        files.append(str(path))
    run = checked_runner(tmp_path, CHECKED_RUN)

    probe = run("probe")
    assert probe.returncode != 0 and "heap-buffer-overflow" in probe.stderr, probe.stderr[-2000:]
    proc = run(str(frames_file), *files)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok ")
    assert "AddressSanitizer" not in proc.stderr


@pytest.mark.parametrize("link", LINKS)
def test_empty_frames_of_every_link_type(link: int) -> None:
    batch = make_batch([(link, b"")] * 3)
    rec, k = decode_batch(batch)
    assert k == 3
    assert_rows_in_bounds(batch, rec, k)
