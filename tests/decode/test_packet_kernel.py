"""The compiled decoder through decode_batch: link layers, tags, IP, L4 and truncation."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from dsaudit.decode.batch import decode_batch
from dsaudit.decode.packet_kernel import (
    C_ACK,
    C_DPORT,
    C_DST_HI,
    C_DST_LO,
    C_ERR,
    C_FLAGS,
    C_FRAG,
    C_FRAG_OFF,
    C_FRAME,
    C_ICMP_CODE,
    C_ICMP_REST,
    C_ICMP_TYPE,
    C_IPID,
    C_L3,
    C_L3_LEN,
    C_L3_OFF,
    C_L4_LEN,
    C_MF,
    C_PAY_LEN,
    C_PAY_OFF,
    C_PROTO,
    C_SEQ,
    C_SPORT,
    C_SRC_HI,
    C_SRC_LO,
    C_TRUNC,
    C_TS,
    C_TUNNEL,
    C_VLAN0,
    C_VLAN1,
    C_WHY,
    C_WINDOW,
    C_WIRE,
    ERR_IP_BAD,
    ERR_IP_SHORT,
    ERR_L4_SHORT,
    ERR_LINK_SHORT,
    ERR_LINKTYPE,
    ERR_NONE,
    L3_ARP,
    L3_IPV4,
    L3_IPV6,
    L3_OTHER,
    N_TALLY,
    T_ARP,
    T_ERRORS,
    T_IPV4,
    T_IPV6,
    T_OTHER_L2,
    T_STOPPED,
    T_TRUNCATED,
    T_TS_MAX,
    T_TS_MIN,
    T_TUNNELLED,
    tally_records,
)
from dsaudit.errors import CaptureError
from dsaudit.sources.batch import PacketBatch
from tests.packets import (
    BASE_TS,
    LINK_ETHERNET,
    LINK_IPV4,
    LINK_IPV6,
    LINK_LOOP,
    LINK_NULL,
    LINK_RAW,
    LINK_SLL,
    LINK_SLL2,
    MAC_A,
    MAC_B,
    ether,
)

V4A, V4B = "192.0.2.10", "198.51.100.20"
V6A, V6B = "2001:db8::10", "2001:db8:ffff::8000:20"


def decode(
    frames: list[bytes], link: int | list[int] = LINK_ETHERNET, wirelens: list[int] | None = None
) -> tuple[PacketBatch, np.ndarray]:
    batch = PacketBatch.from_frames(
        [(BASE_TS + i, f) for i, f in enumerate(frames)], link, wirelens
    )
    rec, k = decode_batch(batch)
    return batch, rec[:k]


def one(frame: bytes, link: int = LINK_ETHERNET) -> tuple[PacketBatch, np.ndarray]:
    batch, rec = decode([frame], link)
    assert rec.shape[0] == 1
    return batch, rec[0]


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def addr_cols(text: str) -> tuple[int, int]:
    """The (hi, lo) pair the decoder writes for an address (IPv4 as v4-mapped IPv6)."""
    ip = ipaddress.ip_address(text)
    value = int(ip) | (0xFFFF << 32) if ip.version == 4 else int(ip)
    return _signed(value >> 64), _signed(value & ((1 << 64) - 1))


def assert_addresses(row: np.ndarray, src: str, dst: str) -> None:
    assert (int(row[C_SRC_HI]), int(row[C_SRC_LO])) == addr_cols(src)
    assert (int(row[C_DST_HI]), int(row[C_DST_LO])) == addr_cols(dst)


def payload_of(batch: PacketBatch, row: np.ndarray) -> bytes:
    start = int(row[C_PAY_OFF])
    return bytes(batch.buf[start : start + int(row[C_PAY_LEN])])


def tcp_ip(src: str = V4A, dst: str = V4B, payload: bytes = b"", **kw: Any) -> Packet:
    layer = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst, id=0x4242)
    pkt = layer / TCP(sport=40001, dport=443, **kw)
    return pkt / Raw(payload) if payload else pkt


# ----------------------------------------------------------------------------- basics


def test_ethernet_ipv4_tcp_columns() -> None:
    payload = b"GET / HTTP/1.1\r\n\r\n"
    opts = [("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (1, 2))]
    pkt = tcp_ip(payload=payload, flags="PA", seq=0xFEDCBA98, ack=77, window=4321, options=opts)
    frame = ether(pkt)
    batch, row = one(frame)
    assert row[C_ERR] == ERR_NONE and row[C_L3] == L3_IPV4
    assert_addresses(row, V4A, V4B)
    assert (row[C_PROTO], row[C_SPORT], row[C_DPORT]) == (6, 40001, 443)
    assert (row[C_SEQ], row[C_ACK], row[C_FLAGS], row[C_WINDOW]) == (0xFEDCBA98, 77, 0x18, 4321)
    tcp_header = len(bytes(TCP(options=opts)))
    assert row[C_PAY_OFF] == 14 + 20 + tcp_header
    assert payload_of(batch, row) == payload
    assert row[C_L4_LEN] == len(payload)
    assert (row[C_L3_OFF], row[C_L3_LEN]) == (14, len(bytes(pkt)))
    assert (row[C_VLAN0], row[C_VLAN1], row[C_TUNNEL], row[C_TRUNC], row[C_FRAG]) == (
        -1,
        -1,
        0,
        0,
        0,
    )
    assert row[C_IPID] == 0x4242
    assert (row[C_FRAME], row[C_TS], row[C_WIRE]) == (0, BASE_TS, len(frame))


def test_ethernet_ipv6_udp_columns() -> None:
    pkt = IPv6(src=V6A, dst=V6B) / UDP(sport=5353, dport=53) / Raw(b"q" * 33)
    batch, row = one(ether(pkt))
    assert row[C_L3] == L3_IPV6 and row[C_ERR] == ERR_NONE
    assert_addresses(row, V6A, V6B)
    assert (row[C_PROTO], row[C_SPORT], row[C_DPORT]) == (17, 5353, 53)
    assert payload_of(batch, row) == b"q" * 33
    assert row[C_L4_LEN] == 33


def test_ipv4_options_are_skipped() -> None:
    pkt = IP(src=V4A, dst=V4B, options=[IPOption_Router_Alert()]) / UDP(sport=1, dport=2) / b"x"
    batch, row = one(ether(pkt))
    assert row[C_ERR] == ERR_NONE
    assert (row[C_SPORT], row[C_DPORT]) == (1, 2)
    assert row[C_PAY_OFF] == 14 + 24 + 8
    assert payload_of(batch, row) == b"x"


@pytest.mark.parametrize(
    ("vlans", "tpids", "expected"),
    [
        ([], [], (-1, -1)),
        ([10], [0x8100], (10, -1)),
        ([0xE000 | 10], [0x8100], (10, -1)),  # priority bits are not part of the VID
        ([100, 200], [0x88A8, 0x8100], (100, 200)),
        ([100, 200], [0x9100, 0x8100], (100, 200)),
        ([7, 8, 9], [0x88A8, 0x8100, 0x8100], (7, 8)),
        ([0], [0x8100], (-1, -1)),
        ([0x6000], [0x8100], (-1, -1)),  # priority tag: PCP 3, VID 0
        ([0, 30], [0x8100, 0x8100], (30, -1)),
    ],
    ids=[
        "untagged",
        "dot1q",
        "dot1q-pcp",
        "qinq-88a8",
        "qinq-9100",
        "triple",
        "vid0",
        "priority-tag",
        "vid0-then-30",
    ],
)
def test_vlan_tags(vlans: list[int], tpids: list[int], expected: tuple[int, int]) -> None:
    payload = b"tagged"
    frame = ether(tcp_ip(payload=payload, flags="PA"), vlans, tpids=tpids)
    batch, row = one(frame)
    assert row[C_ERR] == ERR_NONE and row[C_L3] == L3_IPV4
    assert (row[C_VLAN0], row[C_VLAN1]) == expected
    assert (row[C_SPORT], row[C_DPORT]) == (40001, 443)
    assert row[C_L3_OFF] == 14 + 4 * len(vlans)
    assert payload_of(batch, row) == payload


def test_frame_cut_inside_a_vlan_tag() -> None:
    frame = ether(tcp_ip(), [5, 6], tpids=[0x88A8, 0x8100])
    _, row = one(frame[: 14 + 4 + 2])
    assert row[C_ERR] == ERR_LINK_SHORT


@pytest.mark.parametrize(
    ("link", "fmt", "family", "src", "dst"),
    [
        (LINK_NULL, "<I", 2, V4A, V4B),
        (LINK_NULL, ">I", 2, V4A, V4B),
        (LINK_NULL, "<I", 24, V6A, V6B),
        (LINK_NULL, ">I", 28, V6A, V6B),
        (LINK_NULL, "<I", 30, V6A, V6B),
        (LINK_NULL, "<I", 10, V6A, V6B),
        (LINK_LOOP, ">I", 2, V4A, V4B),
        (LINK_LOOP, ">I", 30, V6A, V6B),
    ],
    ids=[
        "null-le-v4",
        "null-be-v4",
        "null-bsd-v6",
        "null-be-v6",
        "null-darwin-v6",
        "null-linux-v6",
        "loop-v4",
        "loop-v6",
    ],
)
def test_null_and_loop(link: int, fmt: str, family: int, src: str, dst: str) -> None:
    frame = struct.pack(fmt, family) + bytes(tcp_ip(src, dst, b"hi", flags="PA"))
    batch, row = one(frame, link)
    assert row[C_ERR] == ERR_NONE
    assert row[C_L3] == (L3_IPV6 if ":" in src else L3_IPV4)
    assert_addresses(row, src, dst)
    assert row[C_L3_OFF] == 4
    assert payload_of(batch, row) == b"hi"


def test_null_with_an_unknown_family_is_not_ip() -> None:
    _, row = one(struct.pack("<I", 17) + bytes(tcp_ip()), LINK_NULL)
    assert row[C_L3] == L3_OTHER and row[C_PROTO] == -1


@pytest.mark.parametrize(
    ("link", "src", "dst"),
    [
        (LINK_RAW, V4A, V4B),
        (LINK_RAW, V6A, V6B),
        (12, V4A, V4B),
        (14, V6A, V6B),
        (LINK_IPV4, V4A, V4B),
        (LINK_IPV6, V6A, V6B),
    ],
    ids=["raw101-v4", "raw101-v6", "raw12", "raw14", "ipv4-228", "ipv6-229"],
)
def test_raw_ip_link_types(link: int, src: str, dst: str) -> None:
    batch, row = one(bytes(tcp_ip(src, dst, b"raw", flags="PA")), link)
    assert row[C_ERR] == ERR_NONE and row[C_L3_OFF] == 0
    assert_addresses(row, src, dst)
    assert payload_of(batch, row) == b"raw"


@pytest.mark.parametrize(
    ("link", "packet"),
    [
        (LINK_IPV4, IPv6(src=V6A, dst=V6B)),
        (LINK_IPV6, IP(src=V4A, dst=V4B) / Raw(bytes(30))),
        (LINK_RAW, b"\x50" + bytes(40)),
    ],
    ids=["v6-in-228", "v4-in-229", "version5"],
)
def test_raw_link_with_the_wrong_ip_version(link: int, packet: Packet | bytes) -> None:
    _, row = one(bytes(packet), link)
    assert row[C_ERR] == ERR_IP_BAD


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
def test_linux_cooked_sll_and_sll2(v6: bool) -> None:
    src, dst = (V6A, V6B) if v6 else (V4A, V4B)
    proto = 0x86DD if v6 else 0x0800
    inner = tcp_ip(src, dst, b"cooked", flags="PA")
    sll = bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, proto=proto) / inner)
    sll2 = bytes(CookedLinuxV2(proto=proto, ifindex=3, lladdrtype=1, lladdrlen=6) / inner)
    batch, rec = decode([sll, sll2], [LINK_SLL, LINK_SLL2])
    assert rec[:, C_ERR].tolist() == [ERR_NONE, ERR_NONE]
    assert rec[:, C_L3_OFF].tolist() == [16, 20 + len(sll)]
    for row in rec:
        assert_addresses(row, src, dst)
        assert payload_of(batch, row) == b"cooked"


def test_vxlan_gives_an_outer_and_an_inner_row() -> None:
    inner = Ether(src=MAC_A, dst=MAC_B) / tcp_ip("10.1.1.1", "10.1.1.2", b"inside", flags="PA")
    outer = IP(src=V4A, dst=V4B) / UDP(sport=55555, dport=4789) / VXLAN(vni=42) / inner
    frame = ether(outer)
    plain = ether(tcp_ip(payload=b"after"))
    batch, rec = decode([frame, plain])
    assert rec.shape[0] == 3
    out_row, in_row, plain_row = rec
    assert (out_row[C_PROTO], out_row[C_DPORT], out_row[C_TUNNEL]) == (17, 4789, 0)
    assert_addresses(out_row, V4A, V4B)
    assert (in_row[C_PROTO], in_row[C_SPORT], in_row[C_DPORT], in_row[C_TUNNEL]) == (
        6,
        40001,
        443,
        1,
    )
    assert_addresses(in_row, "10.1.1.1", "10.1.1.2")
    assert payload_of(batch, in_row) == b"inside"
    assert in_row[C_WIRE] == len(bytes(inner))
    assert rec[:, C_FRAME].tolist() == [0, 0, 1]
    assert plain_row[C_TS] == BASE_TS + 1 and payload_of(batch, plain_row) == b"after"


def test_vxlan_without_the_vni_flag_is_plain_udp() -> None:
    inner = Ether(src=MAC_A, dst=MAC_B) / tcp_ip()
    outer = IP(src=V4A, dst=V4B) / UDP(sport=55555, dport=4789) / VXLAN(flags=0, vni=42) / inner
    _, rec = decode([ether(outer)])
    assert rec.shape[0] == 1 and rec[0, C_PROTO] == 17


# ----------------------------------------------------------------------------- IPv6


def test_ipv6_extension_header_chain() -> None:
    pkt = (
        IPv6(src=V6A, dst=V6B)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / TCP(sport=1234, dport=4120, flags="PA")
        / Raw(b"ext")
    )
    ext = len(bytes(IPv6ExtHdrHopByHop())) + len(bytes(IPv6ExtHdrRouting()))
    ext += len(bytes(IPv6ExtHdrDestOpt()))
    batch, row = one(ether(pkt))
    assert row[C_ERR] == ERR_NONE
    assert (row[C_PROTO], row[C_SPORT], row[C_DPORT]) == (6, 1234, 4120)
    assert row[C_PAY_OFF] == 14 + 40 + ext + 20
    assert payload_of(batch, row) == b"ext"
    assert row[C_L4_LEN] == 3


def test_ipv6_authentication_header() -> None:
    ah = bytes((6, 1, 0, 0)) + struct.pack(">II", 0x100, 1)  # (1 + 2) * 4 = 12 bytes
    tcp = bytes(TCP(sport=9, dport=10, flags="PA") / Raw(b"ah"))
    pkt = bytes(IPv6(src=V6A, dst=V6B, nh=51, plen=len(ah) + len(tcp))) + ah + tcp
    batch, row = one(pkt, LINK_RAW)
    assert row[C_ERR] == ERR_NONE
    assert (row[C_PROTO], row[C_SPORT], row[C_DPORT]) == (6, 9, 10)
    assert payload_of(batch, row) == b"ah"


def test_ipv6_fragments_and_the_atomic_fragment() -> None:
    base = IPv6(src=V6A, dst=V6B)
    first = base / IPv6ExtHdrFragment(id=0x12345678, offset=0, m=1) / UDP(sport=53, dport=9)
    first = first / Raw(bytes(16))
    later = base / IPv6ExtHdrFragment(id=0x12345678, offset=100, m=0, nh=17) / Raw(bytes(24))
    atomic = base / IPv6ExtHdrFragment(id=7, offset=0, m=0) / UDP(sport=53, dport=9) / b"atom"
    batch, rec = decode([ether(first), ether(later), ether(atomic)])
    f, g, a = rec
    assert (f[C_FRAG], f[C_PROTO], f[C_IPID], f[C_FRAG_OFF], f[C_MF]) == (1, 17, 0x12345678, 0, 1)
    assert f[C_PAY_OFF] == 14 + 40 + 8 and f[C_PAY_LEN] == 8 + 16
    assert (g[C_FRAG], g[C_FRAG_OFF], g[C_MF], g[C_PAY_LEN]) == (1, 800, 0, 24)
    assert (a[C_FRAG], a[C_PROTO], a[C_SPORT], a[C_DPORT]) == (0, 17, 53, 9)
    assert payload_of(batch, a) == b"atom"


def test_ipv6_extension_header_longer_than_the_packet() -> None:
    hbh = bytes((6, 200)) + bytes(6)  # claims (200 + 1) * 8 bytes
    pkt = bytes(IPv6(src=V6A, dst=V6B, nh=0, plen=8 + 20)) + hbh + bytes(TCP())
    _, row = one(pkt, LINK_RAW)
    assert row[C_ERR] in (ERR_IP_BAD, ERR_IP_SHORT)


def test_ipv4_fragments() -> None:
    first = IP(src=V4A, dst=V4B, id=99, flags="MF", frag=0) / UDP(sport=53, dport=9) / bytes(16)
    later = IP(src=V4A, dst=V4B, id=99, frag=10, proto=17) / Raw(bytes(20))
    _, rec = decode([ether(first), ether(later)])
    f, g = rec
    assert (f[C_FRAG], f[C_MF], f[C_FRAG_OFF], f[C_IPID], f[C_PROTO]) == (1, 1, 0, 99, 17)
    assert (g[C_FRAG], g[C_MF], g[C_FRAG_OFF]) == (1, 0, 80)
    assert f[C_PAY_LEN] == 24 and g[C_PAY_LEN] == 20


# ----------------------------------------------------------------------------- lengths


def test_ethernet_padding_is_not_payload() -> None:
    udp = IP(src=V4A, dst=V4B) / UDP(sport=1, dport=2) / b"Z"
    tcp = tcp_ip(flags="A")
    frames = [ether(udp), ether(tcp)]
    padded = [f + bytes(60 - len(f)) for f in frames]
    assert all(len(f) == 60 for f in padded)
    batch, rec = decode(padded)
    u, t = rec
    assert (u[C_PAY_LEN], u[C_L4_LEN], u[C_L3_LEN]) == (1, 1, len(bytes(udp)))
    assert payload_of(batch, u) == b"Z"
    assert (t[C_PAY_LEN], t[C_L4_LEN], t[C_TRUNC]) == (0, 0, 0)


def test_ip_total_length_larger_than_captured() -> None:
    payload = bytes(range(200))
    frame = ether(tcp_ip(payload=payload, flags="PA"))
    cut = frame[:80]
    batch, rec = decode([cut], wirelens=[len(frame)])
    row = rec[0]
    assert row[C_ERR] == ERR_NONE and row[C_TRUNC] == 1
    assert row[C_L4_LEN] == len(payload)
    assert row[C_PAY_LEN] == 80 - 54
    assert payload_of(batch, row) == payload[: 80 - 54]
    assert row[C_L3_LEN] == 80 - 14
    assert row[C_WIRE] == len(frame)


def test_ipv4_total_length_zero_uses_the_captured_length() -> None:
    raw = bytearray(bytes(IP(src=V4A, dst=V4B) / UDP(sport=7, dport=8) / b"offload"))
    raw[2:4] = b"\x00\x00"  # segmentation offload leaves it zero
    batch, row = one(bytes(raw), LINK_RAW)
    assert row[C_ERR] == ERR_NONE
    assert payload_of(batch, row) == b"offload"


@pytest.mark.parametrize(
    ("raw", "err"),
    [
        (b"\x45" + bytes(18), ERR_IP_SHORT),
        (b"\x44" + bytes(19), ERR_IP_BAD),
        (b"\x43" + bytes(19), ERR_IP_BAD),
        (b"\x46" + bytes(20), ERR_IP_SHORT),
        (b"\x45\x00\x00\x10" + bytes(16), ERR_IP_BAD),
        (b"\x60" + bytes(30), ERR_IP_SHORT),
    ],
    ids=["short", "ihl4", "ihl3", "options-cut", "total<ihl", "v6-short"],
)
def test_bad_ip_headers(raw: bytes, err: int) -> None:
    _, row = one(raw, LINK_RAW)
    assert row[C_ERR] == err


def _expected_cut(cut: int, link: int, l3: int, l4: int, full: int) -> tuple[int, int]:
    """(error, truncated flag) for a frame cut to ``cut`` bytes."""
    if cut < link:
        return ERR_LINK_SHORT, 0
    if cut < link + l3:
        return ERR_IP_SHORT, 0
    if cut < link + l3 + l4:
        return ERR_L4_SHORT, 1
    return ERR_NONE, int(cut < full)


@pytest.mark.parametrize(
    ("name", "frame", "link", "link_len", "l3_len", "l4_len"),
    [
        ("eth-v4-tcp", ether(tcp_ip(payload=b"data!", flags="PA")), LINK_ETHERNET, 14, 20, 20),
        (
            "vlan-v4-udp",
            ether(IP(src=V4A, dst=V4B) / UDP() / b"data", [9]),
            LINK_ETHERNET,
            18,
            20,
            8,
        ),
        ("eth-v4-icmp", ether(IP(src=V4A, dst=V4B) / ICMP() / b"ping"), LINK_ETHERNET, 14, 20, 4),
        ("eth-v6-udp", ether(IPv6(src=V6A, dst=V6B) / UDP() / b"d"), LINK_ETHERNET, 14, 40, 8),
        (
            "sll-v4-tcp",
            bytes(CookedLinux(proto=0x800) / tcp_ip(payload=b"x")),
            LINK_SLL,
            16,
            20,
            20,
        ),
        (
            "sll2-v6-tcp",
            bytes(CookedLinuxV2(proto=0x86DD) / tcp_ip(V6A, V6B, b"x")),
            LINK_SLL2,
            20,
            40,
            20,
        ),
        (
            "null-v4-udp",
            struct.pack("<I", 2) + bytes(IP(src=V4A, dst=V4B) / UDP() / b"x"),
            LINK_NULL,
            4,
            20,
            8,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_truncated_at_every_layer(
    name: str, frame: bytes, link: int, link_len: int, l3_len: int, l4_len: int
) -> None:
    cuts = list(range(len(frame) + 1))
    _, rec = decode([frame[:c] for c in cuts], link)
    assert rec.shape[0] == len(cuts)
    for cut, row in zip(cuts, rec, strict=True):
        err, trunc = _expected_cut(cut, link_len, l3_len, l4_len, len(frame))
        assert (int(row[C_ERR]), int(row[C_TRUNC])) == (err, trunc), (name, cut)
        assert row[C_FRAME] == cut


def test_ipv6_cut_inside_an_extension_header() -> None:
    pkt = bytes(IPv6(src=V6A, dst=V6B) / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2))
    _, rec = decode([pkt[:c] for c in range(40, 48)], LINK_RAW)
    assert set(rec[:, C_ERR].tolist()) == {ERR_IP_SHORT}


# ----------------------------------------------------------------------------- ICMP and others


def test_icmp_and_icmpv6_type_and_code() -> None:
    frames = [
        ether(IP(src=V4A, dst=V4B) / ICMP(type=8, code=0, id=0x1234, seq=7) / b"ping"),
        ether(IP(src=V4B, dst=V4A) / ICMP(type=3, code=3) / bytes(IP() / UDP())),
        ether(IP(src=V4B, dst=V4A) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(IP())),
        ether(IPv6(src=V6A, dst=V6B) / ICMPv6EchoRequest(id=0x4321, seq=9)),
        ether(IPv6(src=V6B, dst=V6A) / ICMPv6DestUnreach(code=4) / bytes(IPv6() / UDP())),
    ]
    _, rec = decode(frames)
    got = [(int(r[C_PROTO]), int(r[C_ICMP_TYPE]), int(r[C_ICMP_CODE])) for r in rec]
    assert got == [(1, 8, 0), (1, 3, 3), (1, 3, 4), (58, 128, 0), (58, 1, 4)]
    assert rec[0, C_ICMP_REST] == 0x1234 << 16 | 7
    assert rec[2, C_ICMP_REST] & 0xFFFF == 1400
    assert rec[3, C_ICMP_REST] == 0x4321 << 16 | 9
    # Ports and sequence numbers mean only that: an ICMP row leaves them empty.
    assert not rec[:, [C_SPORT, C_DPORT, C_SEQ, C_ACK]].any()
    assert rec[1, C_PAY_LEN] == len(bytes(IP() / UDP()))
    assert set(rec[:, C_ERR].tolist()) == {ERR_NONE}


def test_other_ip_protocols_have_no_ports() -> None:
    sctp = bytes(IP(src=V4A, dst=V4B, proto=132)) + b"\x00\x00\x08\x00" + b"inner"
    sctp = sctp[:2] + struct.pack(">H", len(sctp)) + sctp[4:]
    batch, row = one(sctp, LINK_RAW)
    assert (row[C_PROTO], row[C_SPORT], row[C_DPORT]) == (132, 0, 0)
    assert payload_of(batch, row) == b"\x00\x00\x08\x00inner"


@pytest.mark.parametrize(
    ("frame", "l3"),
    [
        (bytes(Ether(src=MAC_A, dst=MAC_B) / ARP(psrc=V4A, pdst=V4B)), L3_ARP),
        (bytes.fromhex("0180c200000e02000000000a88cc") + bytes(30), L3_OTHER),  # LLDP
        (bytes.fromhex("0180c200000002000000000a0026") + bytes(38), L3_OTHER),  # 802.3 STP
    ],
    ids=["arp", "lldp", "stp"],
)
def test_non_ip_frames(frame: bytes, l3: int) -> None:
    _, row = one(frame)
    assert (row[C_ERR], row[C_L3], row[C_PROTO]) == (ERR_NONE, l3, -1)


def test_unsupported_link_type() -> None:
    _, row = one(bytes(20), 147)
    assert row[C_ERR] == ERR_LINKTYPE


# ----------------------------------------------------------------------------- bounds


def test_tcp_data_offset_beyond_the_captured_bytes_stays_in_the_frame() -> None:
    # Data offset 15 (60-byte header) with only the 20 fixed bytes present.
    pkt = bytes(IP(src=V4A, dst=V4B) / TCP(sport=1, dport=2, dataofs=15))
    batch, row = one(ether(pkt))
    frame_end = int(batch.off[0]) + int(batch.caplen[0])
    assert row[C_PAY_OFF] + row[C_PAY_LEN] <= frame_end


@pytest.mark.parametrize("icmp_len", [4, 5, 6, 7])
def test_short_icmp_payload_offset_stays_in_the_frame(icmp_len: int) -> None:
    body = bytes((3, 3)) + bytes(icmp_len - 2)
    pkt = bytes(IP(src=V4A, dst=V4B, proto=1, len=20 + icmp_len)) + body
    batch, row = one(ether(pkt))
    assert (row[C_ERR], row[C_ICMP_TYPE], row[C_ICMP_CODE]) == (ERR_NONE, 3, 3)
    frame_end = int(batch.off[0]) + int(batch.caplen[0])
    assert row[C_PAY_OFF] + row[C_PAY_LEN] <= frame_end


def _corpus_captures() -> list[str]:
    root = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "pcaps"
    return sorted(str(p) for p in root.iterdir()) if root.is_dir() else []


@pytest.mark.parametrize("path", _corpus_captures(), ids=lambda p: Path(p).name)
def test_the_one_pass_tally_counts_what_whole_column_passes_count(path: str) -> None:
    """tally_records over real captures (tunnels, errors, ARP, cut frames) against numpy."""
    from dsaudit.sources.capture_file import CaptureReader

    total = np.zeros(N_TALLY, dtype=np.int64)
    expected = np.zeros(N_TALLY, dtype=np.int64)
    try:
        batches = list(CaptureReader(path))
    except CaptureError:
        batches = []  # unreadable from its header on: nothing to count
    for batch in batches:
        rec, k = decode_batch(batch)
        rec = rec[:k]
        tally_records(rec, k, total)
        ok = rec[:, C_ERR] == 0
        l3 = rec[:, C_L3]
        expected[T_IPV4] += np.count_nonzero(ok & (l3 == L3_IPV4))
        expected[T_IPV6] += np.count_nonzero(ok & (l3 == L3_IPV6))
        expected[T_ARP] += np.count_nonzero(l3 == L3_ARP)
        expected[T_OTHER_L2] += np.count_nonzero(l3 == L3_OTHER)
        expected[T_TUNNELLED] += np.count_nonzero(rec[:, C_TUNNEL])
        expected[T_TRUNCATED] += np.count_nonzero(rec[:, C_TRUNC])
        expected[T_ERRORS] += np.count_nonzero(~ok)
        expected[T_STOPPED] += np.count_nonzero(rec[:, C_WHY])
        if k:
            assert total[T_TS_MIN] == rec[:, C_TS].min()
            assert total[T_TS_MAX] == rec[:, C_TS].max()
    assert total[:T_TS_MIN].tolist() == expected[:T_TS_MIN].tolist()


def test_the_tally_refuses_rows_it_was_not_given() -> None:
    rec, k = decode_batch(PacketBatch.from_frames([(0, bytes(Ether() / IP() / TCP()))], 1))
    out = np.zeros(N_TALLY, dtype=np.int64)
    with pytest.raises(ValueError, match="rows asked"):
        tally_records(rec, len(rec) + 1, out)
    with pytest.raises(ValueError, match="slots"):
        tally_records(rec, k, out[:3])
    with pytest.raises(ValueError, match="columns"):
        tally_records(np.zeros((2, 3), dtype=np.int64), 1, out)
