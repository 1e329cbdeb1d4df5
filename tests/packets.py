"""Frame and capture-file builders for the capture engine tests (scapy builds, struct writes)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from dsaudit.flow_records.builder import FlowBuilder, FlowOptions, FlowResult
from dsaudit.flow_records.reading import read_captures
from dsaudit.sources.batch import PacketBatch
from dsaudit.time_text import NS

BASE_TS = 1_700_000_000 * NS  # a fixed epoch for every capture built here

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
MAC_BYTES = bytes.fromhex("02000000000b02000000000a")  # dst MAC_B, src MAC_A

LINK_NULL = 0
LINK_ETHERNET = 1
LINK_RAW = 101
LINK_LOOP = 108
LINK_SLL = 113
LINK_IPV4 = 228
LINK_IPV6 = 229
LINK_SLL2 = 276

Frame = tuple[int, bytes]  # (timestamp in ns, frame bytes)


# ----------------------------------------------------------------------------- frames


def ip_layer(src: str, dst: str, **kw: Any) -> Packet:
    """IPv4 or IPv6 header by the form of ``src``."""
    if ":" in src:
        return IPv6(src=src, dst=dst, **kw)
    return IP(src=src, dst=dst, **kw)


def ether(
    inner: Packet | bytes,
    vlans: Sequence[int] = (),
    *,
    tpids: Sequence[int] = (),
    etype: int | None = None,
) -> bytes:
    """Ethernet (with 802.1Q/802.1ad tags, outermost first) around ``inner``.

    ``tpids`` gives the tag protocol id of each tag (default 0x8100); ``etype`` defaults
    from ``inner`` (IPv6 or IPv4). The MACs are fixed bytes: nothing is resolved.
    """
    if etype is None:
        etype = 0x86DD if isinstance(inner, IPv6) else 0x0800
    payload = bytes(inner)
    tags = b"".join(
        struct.pack(">HH", tpids[i] if i < len(tpids) else 0x8100, vid)
        for i, vid in enumerate(vlans)
    )
    return MAC_BYTES + tags + struct.pack(">H", etype) + payload


def scapy_ether(inner: Packet, vlan: int | None = None) -> bytes:
    """Ethernet frame built entirely by scapy (optionally one 802.1Q tag)."""
    outer = Ether(src=MAC_A, dst=MAC_B)
    if vlan is not None:
        outer = outer / Dot1Q(vlan=vlan)
    return bytes(outer / inner)


def tcp_packet(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    flags: str,
    seq: int = 0,
    ack: int = 0,
    payload: bytes = b"",
    **tcp_kw: Any,
) -> Packet:
    """An IP/TCP packet (scapy object)."""
    pkt = ip_layer(src, dst) / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, **tcp_kw
    )
    return pkt / Raw(payload) if payload else pkt


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes = b"") -> Packet:
    """An IP/UDP packet (scapy object)."""
    return ip_layer(src, dst) / UDP(sport=sport, dport=dport) / Raw(payload)


def tcp_frame(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    flags: str,
    seq: int = 0,
    ack: int = 0,
    payload: bytes = b"",
    vlan: int | None = None,
) -> bytes:
    """Ethernet/IP/TCP frame bytes."""
    return scapy_ether(tcp_packet(src, dst, sport, dport, flags, seq, ack, payload), vlan)


def udp_frame(
    src: str, dst: str, sport: int, dport: int, payload: bytes = b"", vlan: int | None = None
) -> bytes:
    """Ethernet/IP/UDP frame bytes."""
    return scapy_ether(udp_packet(src, dst, sport, dport, payload), vlan)


def icmp_frame(
    src: str,
    dst: str,
    type: int,
    code: int = 0,
    id: int = 0,
    seq: int = 0,
    payload: bytes = b"",
    vlan: int | None = None,
) -> bytes:
    """Ethernet/IPv4/ICMP frame bytes."""
    icmp = ICMP(type=type, code=code, id=id, seq=seq)
    return scapy_ether(IP(src=src, dst=dst) / icmp / Raw(payload), vlan)


# ----------------------------------------------------------------------------- TCP streams


@dataclass
class TcpConversation:
    """Builds the frames of one TCP connection with consistent sequence numbers.

    ``send`` appends a segment from the client (``c2s=True``) or the server; each call
    advances the clock by ``step_ns``. ``frames`` holds ``(ts_ns, bytes)`` in order.
    """

    client: str
    server: str
    cport: int
    sport: int
    start_ns: int = BASE_TS
    step_ns: int = 1_000_000
    client_isn: int = 1000
    server_isn: int = 5000
    vlan: int | None = None
    frames: list[Frame] = field(default_factory=list)
    clock: int = 0
    cseq: int = 0
    sseq: int = 0

    def __post_init__(self) -> None:
        self.clock = self.start_ns
        self.cseq = self.client_isn
        self.sseq = self.server_isn

    def send(self, c2s: bool, flags: str, payload: bytes = b"", *, seq: int | None = None) -> int:
        """Append one segment; returns its timestamp."""
        if c2s:
            s = self.cseq if seq is None else seq
            frame = tcp_frame(
                self.client,
                self.server,
                self.cport,
                self.sport,
                flags,
                s,
                self.sseq if "A" in flags else 0,
                payload,
                self.vlan,
            )
        else:
            s = self.sseq if seq is None else seq
            frame = tcp_frame(
                self.server,
                self.client,
                self.sport,
                self.cport,
                flags,
                s,
                self.cseq if "A" in flags else 0,
                payload,
                self.vlan,
            )
        advance = len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        if seq is None:
            if c2s:
                self.cseq = (self.cseq + advance) & 0xFFFFFFFF
            else:
                self.sseq = (self.sseq + advance) & 0xFFFFFFFF
        ts = self.clock
        self.frames.append((ts, frame))
        self.clock += self.step_ns
        return ts

    def handshake(self) -> None:
        self.send(True, "S")
        self.send(False, "SA")
        self.send(True, "A")

    def close(self) -> None:
        self.send(True, "FA")
        self.send(False, "FA")
        self.send(True, "A")

    def segments(self, c2s: bool, data: bytes, pieces: int) -> list[Frame]:
        """Frames carrying ``data`` in ``pieces`` near-equal segments (not appended)."""
        step = -(-len(data) // pieces)
        out: list[Frame] = []
        for start in range(0, len(data), step):
            self.send(c2s, "PA", data[start : start + step])
            out.append(self.frames.pop())
        return out


# ----------------------------------------------------------------------------- pcap


def pcap_header(
    linktype: int = LINK_ETHERNET,
    *,
    big: bool = False,
    nsec: bool = False,
    snaplen: int = 65535,
    major: int = 2,
    minor: int = 4,
) -> bytes:
    """A pcap global header."""
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    return struct.pack(
        ">IHHiIII" if big else "<IHHiIII", magic, major, minor, 0, 0, snaplen, linktype
    )


def pcap_record(
    ts_ns: int,
    data: bytes,
    *,
    big: bool = False,
    nsec: bool = False,
    wirelen: int | None = None,
    caplen: int | None = None,
) -> bytes:
    """One pcap record header plus data (``caplen`` overrides the header field only)."""
    sec, frac = divmod(ts_ns, NS)
    if not nsec:
        frac //= 1000
    cl = len(data) if caplen is None else caplen
    wl = len(data) if wirelen is None else wirelen
    return struct.pack(">IIII" if big else "<IIII", sec, frac, cl, wl) + data


def pcap_bytes(
    frames: Iterable[Frame],
    linktype: int = LINK_ETHERNET,
    *,
    big: bool = False,
    nsec: bool = False,
    snaplen: int = 65535,
) -> bytes:
    """A whole pcap file."""
    out = bytearray(pcap_header(linktype, big=big, nsec=nsec, snaplen=snaplen))
    for ts, data in frames:
        out += pcap_record(ts, data, big=big, nsec=nsec)
    return bytes(out)


def write_pcap(
    path: Path, frames: Iterable[Frame], linktype: int = LINK_ETHERNET, **kw: bool
) -> Path:
    """Write ``frames`` as a pcap file at ``path``; returns the path."""
    path.write_bytes(pcap_bytes(frames, linktype, **kw))
    return path


# ----------------------------------------------------------------------------- pcapng


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def ng_option(code: int, value: bytes, *, big: bool = False) -> bytes:
    """One pcapng option (code, length, value padded to 32 bits)."""
    return struct.pack(">HH" if big else "<HH", code, len(value)) + _pad4(value)


def ng_options(options: Sequence[tuple[int, bytes]], *, big: bool = False) -> bytes:
    """An option list ended by opt_endofopt (empty list for no options)."""
    if not options:
        return b""
    return b"".join(ng_option(c, v, big=big) for c, v in options) + ng_option(0, b"", big=big)


def ng_block(btype: int, body: bytes, *, big: bool = False, trailer: int | None = None) -> bytes:
    """A generic pcapng block: type, total length, body (padded), total length again."""
    body = _pad4(body)
    total = 12 + len(body)
    e = ">" if big else "<"
    tail = total if trailer is None else trailer
    return struct.pack(e + "II", btype, total) + body + struct.pack(e + "I", tail)


def ng_shb(*, big: bool = False, options: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """Section Header Block (version 1.0, unknown section length)."""
    e = ">" if big else "<"
    body = struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1) + ng_options(options, big=big)
    return ng_block(0x0A0D0D0A, body, big=big)


def ng_idb(
    linktype: int = LINK_ETHERNET,
    *,
    big: bool = False,
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    options: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """Interface Description Block with optional if_tsresol (9) and if_tsoffset (14)."""
    e = ">" if big else "<"
    opts = list(options)
    if tsresol is not None:
        opts.append((9, bytes((tsresol,))))
    if tsoffset is not None:
        opts.append((14, struct.pack(e + "q", tsoffset)))
    body = struct.pack(e + "HHI", linktype, 0, snaplen) + ng_options(opts, big=big)
    return ng_block(1, body, big=big)


def ng_epb(
    iface: int,
    ticks: int,
    data: bytes,
    *,
    big: bool = False,
    wirelen: int | None = None,
    options: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """Enhanced Packet Block."""
    e = ">" if big else "<"
    wl = len(data) if wirelen is None else wirelen
    head = struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wl)
    return ng_block(6, head + _pad4(data) + ng_options(options, big=big), big=big)


def ng_spb(data: bytes, *, big: bool = False, wirelen: int | None = None) -> bytes:
    """Simple Packet Block."""
    e = ">" if big else "<"
    wl = len(data) if wirelen is None else wirelen
    return ng_block(3, struct.pack(e + "I", wl) + data, big=big)


def ng_opb(iface: int, ticks: int, data: bytes, *, big: bool = False) -> bytes:
    """Obsolete Packet Block (type 2): 16-bit interface id and drops count."""
    e = ">" if big else "<"
    head = struct.pack(
        e + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return ng_block(2, head + data, big=big)


# ----------------------------------------------------------------------------- batches


def batch_of(frames: Sequence[Frame], linktype: int | list[int] = LINK_ETHERNET) -> PacketBatch:
    """A PacketBatch of the frames (in memory, no file)."""
    return PacketBatch.from_frames(list(frames), linktype)


def clone_udp_frames(template: bytes, count: int, *, sport_at: int, src_at: int) -> PacketBatch:
    """``count`` copies of an Ethernet/IPv4/UDP frame, each with a distinct source.

    The 16-bit source port (at ``sport_at``) and the low two bytes of the source address
    (at ``src_at + 2``) are rewritten so every copy is a different 5-tuple. Checksums are
    left stale; the decoder does not read them.
    """
    size = len(template)
    buf = np.tile(np.frombuffer(template, dtype=np.uint8), count).reshape(count, size)
    idx = np.arange(count, dtype=np.int64)
    port = 1024 + (idx % 50000)
    host = idx // 50000 + 1
    buf[:, sport_at] = port >> 8
    buf[:, sport_at + 1] = port & 0xFF
    buf[:, src_at + 2] = host >> 8
    buf[:, src_at + 3] = host & 0xFF
    flat = np.ascontiguousarray(buf).reshape(-1)
    return PacketBatch(
        buf=flat,
        off=idx * size,
        caplen=np.full(count, size, dtype=np.int32),
        wirelen=np.full(count, size, dtype=np.int32),
        ts_ns=BASE_TS + idx * 1000,
        linktype=np.full(count, LINK_ETHERNET, dtype=np.int32),
        file_off=np.full(count, -1, dtype=np.int64),
    )


# ----------------------------------------------------------------------------- flows


def flows_of(
    frames: Sequence[Frame], options: FlowOptions | None = None, link: int = LINK_ETHERNET
) -> FlowResult:
    """Flows of ``frames`` fed as one in-memory batch through FlowBuilder."""
    builder = FlowBuilder(options)
    builder.add_batch(batch_of(frames, link))
    return builder.result([])


def flows_of_file(
    path: Path, frames: Sequence[Frame], options: FlowOptions | None = None
) -> FlowResult:
    """Flows of ``frames`` written as a pcap and read back through read_captures."""
    write_pcap(path, frames, nsec=True)
    return read_captures([str(path)], options=options)
