"""Test helper: pull TCP client streams and UDP payloads out of the shared corpus captures.

Only for tests (the real capture engine lives elsewhere): dpkt reads the pcap records,
and a deliberately small link/IP/TCP/UDP walker below keeps snaplen-cut payloads as
they are, which dpkt's own layer classes would reject. IP fragments are skipped.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt

# tests/decode/_corpus.py -> parents[2] is the repository root; shared/ sits beside it.
CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"

_ETH_VLAN = (0x8100, 0x88A8, 0x9100)


@dataclass(frozen=True)
class Segment:
    """One transport payload with its addressing."""

    proto: str  # "tcp" or "udp"
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes
    seq: int = 0
    syn: bool = False
    ack_flag: bool = False


@dataclass
class TcpFlow:
    """Both directions of one TCP connection, client side decided by the SYN."""

    client: tuple[str, int]
    server: tuple[str, int]
    client_segments: list[Segment] = field(default_factory=list)
    server_segments: list[Segment] = field(default_factory=list)
    client_isn: int | None = None
    server_isn: int | None = None


def truth(name: str) -> dict[str, Any]:
    """The tshark ground truth of one corpus capture."""
    with open(CORPUS / "truth" / f"{name}.json", encoding="utf-8") as fh:
        result: dict[str, Any] = json.load(fh)
    return result


def segments(name: str) -> Iterator[Segment]:
    """Every TCP/UDP payload-bearing (or SYN) packet of a corpus pcap, in file order."""
    with open(CORPUS / "pcaps" / f"{name}.pcap", "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        dlt = reader.datalink()
        records = iter(reader)
        while True:
            try:
                _ts, frame = next(records)
            except StopIteration:
                return
            except dpkt.NeedData:
                return  # a capture cut off mid-record: keep what came before
            ip = _link_payload(dlt, bytes(frame))
            if ip is not None:
                seg = _ip_payload(ip)
                if seg is not None:
                    yield seg


def udp_payloads(name: str, port: int | None = None) -> list[Segment]:
    """UDP segments, optionally only those to or from ``port``."""
    return [
        s
        for s in segments(name)
        if s.proto == "udp" and (port is None or port in (s.src[1], s.dst[1]))
    ]


def tcp_flows(name: str) -> list[TcpFlow]:
    """TCP connections in order of first appearance."""
    flows: dict[tuple[tuple[str, int], tuple[str, int]], TcpFlow] = {}
    for seg in segments(name):
        if seg.proto != "tcp":
            continue
        key = (seg.src, seg.dst)
        flow = flows.get(key) or flows.get((seg.dst, seg.src))
        if flow is None:
            # The sender of a bare SYN is the client; without one, the first sender.
            if seg.syn and seg.ack_flag:
                flow = TcpFlow(client=seg.dst, server=seg.src)
            else:
                flow = TcpFlow(client=seg.src, server=seg.dst)
            flows[key] = flow
        if seg.src == flow.client:
            if seg.syn:
                flow.client_isn = seg.seq
            flow.client_segments.append(seg)
        else:
            if seg.syn:
                flow.server_isn = seg.seq
            flow.server_segments.append(seg)
    return list(flows.values())


def stream(segs: list[Segment], isn: int | None) -> bytes:
    """Reassemble one direction in sequence order up to the first gap."""
    data = [s for s in segs if s.payload]
    if not data:
        return b""
    base = (isn + 1) if isn is not None else min(s.seq for s in data)
    ordered = sorted(data, key=lambda s: (s.seq - base) % 2**32)
    out = bytearray()
    for s in ordered:
        rel = (s.seq - base) % 2**32
        if rel > len(out):
            break
        out += s.payload[len(out) - rel :]
    return bytes(out)


def _link_payload(dlt: int, frame: bytes) -> bytes | None:
    if dlt == 1:  # Ethernet, with any number of VLAN tags
        pos = 12
        etype = struct.unpack_from(">H", frame, pos)[0]
        while etype in _ETH_VLAN:
            pos += 4
            etype = struct.unpack_from(">H", frame, pos)[0]
        return frame[pos + 2 :] if etype in (0x0800, 0x86DD) else None
    if dlt == 0:  # BSD loopback: 4-byte host-order family
        return frame[4:]
    if dlt in (12, 101, 228, 229):  # raw IP
        return frame
    if dlt == 113:  # Linux cooked v1
        return frame[16:] if struct.unpack_from(">H", frame, 14)[0] in (0x0800, 0x86DD) else None
    if dlt == 276:  # Linux cooked v2
        return frame[20:] if struct.unpack_from(">H", frame, 0)[0] in (0x0800, 0x86DD) else None
    return None


def _ip_payload(ip: bytes) -> Segment | None:
    if len(ip) < 20:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        if struct.unpack_from(">H", ip, 6)[0] & 0x3FFF:  # MF or a fragment offset
            return None
        proto = ip[9]
        src, dst = _v4(ip[12:16]), _v4(ip[16:20])
        body = ip[ihl:total] if total >= ihl else ip[ihl:]
    elif version == 6:
        if len(ip) < 40:
            return None
        proto = ip[6]
        src, dst = _v6(ip[8:24]), _v6(ip[24:40])
        body = ip[40 : 40 + struct.unpack_from(">H", ip, 4)[0]]
        while proto in (0, 43, 44, 60):  # hop-by-hop, routing, fragment, destination
            if len(body) < 8:
                return None
            if proto == 44:
                if struct.unpack_from(">H", body, 2)[0] & 0xFFF9:  # not an atomic fragment
                    return None
                proto, body = body[0], body[8:]
            else:
                proto, body = body[0], body[(body[1] + 1) * 8 :]
    else:
        return None
    if proto == 6 and len(body) >= 20:
        sport, dport, seq = struct.unpack_from(">HHI", body)
        offset = (body[12] >> 4) * 4
        flags = body[13]
        return Segment(
            "tcp",
            (src, sport),
            (dst, dport),
            body[offset:],
            seq=seq,
            syn=bool(flags & 0x02),
            ack_flag=bool(flags & 0x10),
        )
    if proto == 17 and len(body) >= 8:
        sport, dport, ulen = struct.unpack_from(">HHH", body)
        return Segment("udp", (src, sport), (dst, dport), body[8:ulen] if ulen >= 8 else b"")
    return None


def _v4(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def _v6(b: bytes) -> str:
    import ipaddress

    return str(ipaddress.IPv6Address(b))
