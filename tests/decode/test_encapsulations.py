"""Tunnels and link-layer encapsulations: inner flows, their tunnel endpoints, tshark's view,
and every frame that is not decoded counted by reason."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, GRE
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Packet

from dsaudit.decode.batch import decode_batch
from dsaudit.decode.packet_kernel import C_FRAME, C_TUNNEL, ROWS_PER_FRAME
from dsaudit.flow_records.builder import FlowResult
from dsaudit.flow_records.reading import read_captures
from tests.encap_packets import WRAPS, eth, tunnel_text
from tests.packets import BASE_TS, NS, batch_of, pcap_header, pcap_record
from tests.processes import dsaudit_process

CLIENT4, SERVER4 = "10.1.0.1", "10.1.0.2"
CLIENT6, SERVER6 = "2001:db8::1", "2001:db8::2"
NAMES = list(WRAPS)
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is missing")


def _ip(v6: bool, reply: bool = False) -> Packet:
    c, s = (CLIENT6, SERVER6) if v6 else (CLIENT4, SERVER4)
    if reply:
        c, s = s, c
    return IPv6(src=c, dst=s) if v6 else IP(src=c, dst=s)


def _handshake(name: str, v6: bool, port: int) -> list[Packet]:
    wrap = WRAPS[name][0]
    syn = _ip(v6) / TCP(sport=port, dport=443, flags="S", seq=100)
    synack = _ip(v6, True) / TCP(sport=443, dport=port, flags="SA", seq=500, ack=101)
    return [wrap(syn), wrap(synack)]


def _write(path: Path, frames: list[bytes], cut: dict[int, int] | None = None) -> Path:
    """A pcap of ``frames``; ``cut`` maps a frame's index to the bytes the snap length kept."""
    out = bytearray(pcap_header())
    for i, data in enumerate(frames):
        keep = (cut or {}).get(i, len(data))
        out += pcap_record(BASE_TS + i * NS, data[:keep], wirelen=len(data))
    path.write_bytes(bytes(out))
    return path


def _read(path: Path, engine: str = "fast") -> FlowResult:
    return read_captures([str(path)], engine=engine)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("name", NAMES)
def test_each_encapsulation_gives_the_inner_flow_with_its_tunnel(
    tmp_path: Path, name: str, v6: bool
) -> None:
    frames = [bytes(p) for p in _handshake(name, v6, 40000)]
    result = _read(_write(tmp_path / "enc.pcap", frames))
    flows = result.flows
    inner = flows[(flows["proto"] == "tcp") & (flows["client_port"] == 40000)]
    assert len(inner) == 1
    flow = inner.iloc[0]
    client, server = (CLIENT6, SERVER6) if v6 else (CLIENT4, SERVER4)
    assert (flow["client_ip"], flow["server_ip"], flow["server_port"]) == (client, server, 443)
    assert (flow["packets_c2s"], flow["packets_s2c"], flow["state"]) == (1, 1, "S1")
    expected = tunnel_text(name, v6)
    assert bool(flow["tunnel"]) is (expected is not None)
    assert (None if pd.isna(flow["tunnel_endpoints"]) else flow["tunnel_endpoints"]) == expected
    # Tunnels keep their outer flow, as on the wire; link-layer encapsulations have none.
    assert len(flows) == (2 if expected else 1)
    if expected:
        outer = flows[flows["tunnel_endpoints"].isna()].iloc[0]
        assert not bool(outer["tunnel"])
        assert f"{outer['client_ip']} -> {outer['server_ip']}" == expected.split(" ", 1)[1]
    assert result.stats.not_decoded == {}
    assert result.stats.tunnelled == (2 if expected else 0)


@needs_tshark
def test_inner_flows_match_tshark(tmp_path: Path) -> None:
    frames: list[bytes] = []
    inner_v6: list[bool] = []
    for i, name in enumerate(NAMES):
        for v6 in (False, True):
            port = 41000 + 2 * i + v6
            for p in _handshake(name, v6, port):
                frames.append(bytes(p))
                inner_v6.append(v6)
    path = _write(tmp_path / "all.pcap", frames)
    fields = ["ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport"]
    args = ["tshark", "-r", str(path), "-T", "fields", "-E", "occurrence=l"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    theirs = set()
    for line, v6 in zip(out.splitlines(), inner_v6, strict=True):
        ip_src, ip_dst, ip6_src, ip6_dst, sport, dport = line.split("\t")
        src, dst = (ip6_src, ip6_dst) if v6 else (ip_src, ip_dst)
        theirs.add(frozenset([(src, int(sport)), (dst, int(dport))]))
    flows = _read(path).flows
    tcp = flows[flows["proto"] == "tcp"]
    ours = {
        frozenset([(r.client_ip, r.client_port), (r.server_ip, r.server_port)])
        for r in tcp.itertuples()
    }
    assert len(theirs) == 2 * len(NAMES)
    assert ours == theirs


@needs_tshark
@pytest.mark.parametrize("name", ["gre-ip", "vxlan", "erspan-2", "ip-in-ipv6", "geneve-ethernet"])
def test_tshark_engine_gives_the_same_tunnel_endpoints(tmp_path: Path, name: str) -> None:
    frames = [bytes(p) for p in _handshake(name, False, 40000)]
    path = _write(tmp_path / "enc.pcap", frames)
    fast, tshark = _read(path), _read(path, "tshark")
    pd.testing.assert_frame_equal(tshark.flows, fast.flows)
    assert tshark.stats.as_dict() == fast.stats.as_dict()


def _gre_nest(levels: int, inner: Packet) -> Packet:
    packet = inner
    for level in range(levels):
        packet = IP(src=f"198.51.100.{2 * level + 1}", dst=f"198.51.100.{2 * level + 2}") / (
            GRE() / packet
        )
    return eth() / packet


def test_tunnels_nest_three_deep_and_no_deeper(tmp_path: Path) -> None:
    syn = IP(src=CLIENT4, dst=SERVER4) / TCP(sport=40000, dport=443, flags="S")
    frames = [bytes(_gre_nest(3, syn)), bytes(_gre_nest(4, syn))]
    result = _read(_write(tmp_path / "nest.pcap", frames))
    flows = result.flows
    # Three GRE headers: the outer packet and three tunnelled ones, the innermost the SYN.
    tcp = flows[flows["proto"] == "tcp"]
    assert len(tcp) == 1
    assert tcp.iloc[0]["tunnel_endpoints"] == "gre 198.51.100.1 -> 198.51.100.2"
    # Four: the SYN is a fourth level down, which is not opened; the frame says so.
    assert result.stats.not_decoded == {
        "unsupported encapsulation": {"encapsulations nested deeper than 3": 1}
    }
    assert set(flows["proto"]) == {"tcp", "47"}


@pytest.mark.parametrize("n", [1, 2, 3, 17])
def test_frames_of_the_deepest_nesting_each_get_all_their_rows(n: int) -> None:
    # Each frame takes ROWS_PER_FRAME rows, four times what the first record array allows a
    # frame: decoding stops while a whole frame still fits and resumes in a grown array.
    syn = IP(src=CLIENT4, dst=SERVER4) / TCP(sport=40000, dport=443, flags="S")
    frame = bytes(_gre_nest(3, syn))
    rec, k = decode_batch(batch_of([(BASE_TS + i, frame) for i in range(n)]))
    assert k == ROWS_PER_FRAME * n
    assert rec[:k, C_FRAME].tolist() == [i for i in range(n) for _ in range(ROWS_PER_FRAME)]
    assert rec[:k, C_TUNNEL].tolist() == [0, 1, 1, 1] * n


def _pptp_gre() -> bytes:
    # Enhanced GRE (version 1) with key, carrying PPP LCP: PPTP's data channel.
    gre = struct.pack(">BBHHH", 0x20, 0x01, 0x880B, 4, 7) + b"\xff\x03\xc0\x21"
    return bytes(eth() / IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / gre)


def _undecoded_frames() -> tuple[list[bytes], dict[int, int]]:
    tcp = IP(src=CLIENT4, dst=SERVER4) / TCP(sport=40000, dport=443, flags="S")
    bad_ihl = bytearray(bytes(eth() / tcp))
    bad_ihl[14] = 0x43  # version 4, header length 12 bytes: not IPv4
    l2tp = eth() / IP(src=CLIENT4, dst=SERVER4) / UDP(sport=1701, dport=1701)
    l2tp /= b"\xc8\x02" + bytes(10)  # an L2TPv2 control message header
    frames = [
        bytes(eth() / ARP(psrc=CLIENT4, pdst=SERVER4)),
        bytes(eth() / ARP(psrc=SERVER4, pdst=CLIENT4, op=2)),
        bytes.fromhex("0180c200000e02000000000a88cc") + bytes(30),  # LLDP
        bytes.fromhex("0180c200000002000000000a0026") + bytes.fromhex("424203") + bytes(35),
        bytes.fromhex("02000000000b02000000000a1234") + bytes(30),  # unknown ethertype
        _pptp_gre(),
        bytes(eth() / IP(src="192.0.2.1", dst="192.0.2.2", proto=50) / bytes(24)),  # ESP
        bytes(l2tp),
        bytes(eth() / PPPoE(sessionid=3) / PPP(proto=0xC021) / bytes(8)),  # LCP
        bytes(eth() / tcp),  # cut by the snap length in the TCP header
        bytes(bad_ihl),
        bytes(eth() / tcp),  # decoded: a flow
    ]
    return frames, {9: 14 + 20 + 6}


EXPECTED_REASONS = {
    "not IP": {"ARP": 2, "LLDP": 1, "STP": 1, "PPP LCP": 1},
    "unknown ethertype": {"0x1234": 1},
    "unsupported encapsulation": {"ESP": 1, "GRE type 0x880b": 1, "L2TP": 1},
    "cut by snaplen": {"TCP/UDP/ICMP header cut short": 1},
    "malformed": {"invalid IP header": 1},
}
WARNING = (
    "dsaudit: warning: 11 of 12 frames not decoded: 5 not IP (ARP 2, LLDP 1, PPP LCP 1, "
    "STP 1), 1 unknown ethertype (0x1234), 3 unsupported encapsulation (ESP 1, "
    "GRE type 0x880b 1, L2TP 1), 1 cut by snaplen (TCP/UDP/ICMP header cut short), "
    "1 malformed (invalid IP header)\n"
)


def test_frames_not_decoded_are_counted_by_reason(tmp_path: Path) -> None:
    frames, cut = _undecoded_frames()
    result = _read(_write(tmp_path / "undecoded.pcap", frames, cut))
    stats = result.stats.as_dict()
    assert stats["not_decoded"] == EXPECTED_REASONS
    assert stats["not_decoded_total"] == 11
    assert stats["frames"] == 12
    # The outer flows of GRE, ESP and L2TP are still flows; the SYN makes one more.
    assert sorted(result.flows["proto"]) == ["47", "50", "tcp", "udp"]


@needs_tshark
def test_tshark_engine_counts_the_same_reasons(tmp_path: Path) -> None:
    frames, cut = _undecoded_frames()
    path = _write(tmp_path / "undecoded.pcap", frames, cut)
    assert _read(path, "tshark").stats.as_dict()["not_decoded"] == EXPECTED_REASONS


def test_flows_command_warns_once_with_the_counts(tmp_path: Path) -> None:
    frames, cut = _undecoded_frames()
    path = _write(tmp_path / "undecoded.pcap", frames, cut)
    out = dsaudit_process("flows", str(path), "--format", "jsonl", "--no-progress")
    assert out.returncode == 0
    assert out.stderr == WARNING
    assert len(out.stdout.splitlines()) == 4


def test_flows_command_is_quiet_when_every_frame_is_decoded(tmp_path: Path) -> None:
    path = _write(tmp_path / "gre.pcap", [bytes(p) for p in _handshake("gre-ip", False, 40000)])
    out = dsaudit_process("flows", str(path), "--format", "jsonl", "--no-progress")
    assert (out.returncode, out.stderr) == (0, "")


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet", "table"])
def test_tunnel_endpoints_in_every_flows_format(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path / "gre.pcap", [bytes(p) for p in _handshake("gre-ip", False, 40000)])
    target = tmp_path / f"flows.{fmt}"
    out = dsaudit_process(
        "flows", str(path), "--format", fmt, "--no-progress", "--output", str(target)
    )
    assert out.returncode == 0, out.stderr
    text = "gre 192.0.2.1 -> 192.0.2.2"
    if fmt == "parquet":
        values = list(pd.read_parquet(target)["tunnel_endpoints"])
    elif fmt == "csv":
        values = list(pd.read_csv(target)["tunnel_endpoints"])
    elif fmt == "json":
        values = [r["tunnel_endpoints"] for r in json.loads(target.read_text())]
    elif fmt == "jsonl":
        values = [json.loads(line)["tunnel_endpoints"] for line in target.read_text().splitlines()]
    else:
        lines = target.read_text().splitlines()
        assert "tunnel" in lines[0].split()
        values = [text if text in line else None for line in lines[2:]]
    assert sorted(v if isinstance(v, str) else "" for v in values) == ["", text]


def test_audit_capture_quality_counts_frames_not_decoded(tmp_path: Path) -> None:
    frames, cut = _undecoded_frames()
    extra = _write(tmp_path / "undecoded.pcap", frames, cut)
    args = ["audit", "samples/healthy.pcap", str(extra)]
    args += ["--inventory", "samples/healthy.inventory.yaml", "--format", "json"]
    out = dsaudit_process(*args)
    quality = json.loads(out.stdout)["summary"]["quality"]
    reasons = quality["not_decoded"]
    assert {k: reasons[k] for k in EXPECTED_REASONS if k != "not IP"} == {
        k: v for k, v in EXPECTED_REASONS.items() if k != "not IP"
    }
    assert reasons["not IP"]["PPP LCP"] == 1
    assert quality["not_decoded_frames"] == sum(sum(d.values()) for d in reasons.values())
    assert (quality["timestamps_unrepresentable"], quality["timestamps_missing"]) == (0, 0)
    # What hides traffic is a caveat; ARP and such are not.
    caveats = [n for n in quality["notes"] if "not decoded" in n]
    assert len(caveats) == 1
    assert "unsupported encapsulation (ESP 1, GRE type 0x880b 1, L2TP 1)" in caveats[0]
    assert "not IP" not in caveats[0]
    text = dsaudit_process(*args[:-2], "--format", "markdown").stdout
    assert "Frames not decoded into flows" in text


def test_tunnel_rows_past_the_first_record_array_grow_it_with_every_row() -> None:
    # Every other frame a tunnel (two rows): far more rows than the first record array holds,
    # so decoding resumes in a grown one; the rows come back packed, in order, each naming its
    # frame in the whole batch.
    plain = bytes(eth() / IP(src=CLIENT4, dst=SERVER4) / TCP(sport=1, dport=2))
    tunnelled = bytes(_handshake("gre-ip", False, 40000)[0])
    n = 8203
    batch = batch_of([(BASE_TS + i, tunnelled if i % 2 else plain) for i in range(n)])
    rec, k = decode_batch(batch)
    expected = [f for i in range(n) for f in ([i, i] if i % 2 else [i])]
    assert k == len(expected)
    assert rec[:k, C_FRAME].tolist() == expected
    assert rec[:k, C_TUNNEL].tolist() == [t for i in range(n) for t in ([0, 1] if i % 2 else [0])]
