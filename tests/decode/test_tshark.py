"""The tshark engine, cross-checked against the fast engine on the corpus and on built captures.

Both engines share the flow table and naming, so on every capture the fast engine decodes
they must agree on the flows (keys, packets, bytes, history), the names and the capture
counters. Every difference that remains is listed in EXPECTED_DIFFERENCES with its cause.
be-pptp-gre agrees too: its one GRE packet carries PPP LCP, no IP, so both engines see
only the GRE flow; MPLS, PPPoE, GRE and GTP-U (which only tshark opens) are built below.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dsaudit.errors import CaptureError, DsauditError
from dsaudit.flow_records.builder import FlowResult
from dsaudit.flow_records.reading import read_captures
from tests.corpus import capture_path, corpus_names, needs_corpus
from tests.factories import client_hello
from tests.processes import dsaudit_process

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

# Captures tshark itself refuses (the fast engine refuses them too).
TSHARK_UNREADABLE = ("invalid-pcap-version-1-4", "invalid-pcapng-shb-option-too-long")

FRAG_UDP = ("udp", "164.1.123.163", 123, "164.1.123.61", 137, None, None)

# name -> {fact: (only the fast engine has, only the tshark engine has, why)}
EXPECTED_DIFFERENCES: dict[str, dict[str, tuple[list[Any], list[Any], str]]] = {
    "ipv4-frag-udp": {
        "payload_bytes": (
            [(FRAG_UDP, 156, 0)],
            [(FRAG_UDP, 10, 0)],
            "two fragments overlap at offset 0: the fast engine keeps the longer one, whose UDP "
            "header claims 164 bytes, tshark keeps the first, whose UDP header claims 18",
        ),
    },
    "pcapng-be-3-idbs-nrb-spb": {
        "captures": (
            [("pcapng", 5, False, True)],
            [("pcapng", 5, False, False)],
            "Simple Packet Blocks carry no time: the fast reader notes that they took the time "
            "of the packet before them; tshark's fields do not tell",
        ),
    },
}


def _opt(value: Any) -> Any:
    return None if pd.isna(value) else value


def _facts(result: FlowResult) -> dict[str, Counter[Any]]:
    """What the engines must agree on, each as a multiset so a difference can be listed."""
    df = result.flows
    rows = list(df.itertuples())
    keys = [
        (
            r.proto,
            r.client_ip,
            r.client_port,
            r.server_ip,
            r.server_port,
            _opt(r.vlan),
            _opt(r.inner_vlan),
        )
        for r in rows
    ]
    pairs = list(zip(keys, rows, strict=True))
    # Counters as (name, value); dict and list values (undecodable, evicted_top) as JSON.
    stats = [
        (k, v if isinstance(v, int | float | None) else json.dumps(v, sort_keys=True))
        for k, v in result.stats.as_dict().items()
    ]
    return {
        "flows": Counter(keys),
        "packets": Counter((k, r.packets_c2s, r.packets_s2c) for k, r in pairs),
        "bytes": Counter((k, r.bytes_c2s, r.bytes_s2c) for k, r in pairs),
        "payload_bytes": Counter((k, r.payload_bytes_c2s, r.payload_bytes_s2c) for k, r in pairs),
        "history": Counter((k, r.history) for k, r in pairs),
        "names": Counter((k, _opt(r.server_name), str(r.name_source)) for k, r in pairs),
        "sni": Counter(set(df["sni"].dropna())),
        "dns_queries": Counter({q for qs in df["dns_queries"] for q in qs}),
        "http_hosts": Counter(set(df["http_host"].dropna())),
        "stats": Counter(stats),
        "captures": Counter(
            (c.format, c.packets, bool(c.warnings), bool(c.notes)) for c in result.captures
        ),
    }


@needs_corpus
@pytest.mark.parametrize("name", [n for n in corpus_names() if n not in TSHARK_UNREADABLE])
def test_engines_agree_on_corpus_capture(name: str) -> None:
    path = str(capture_path(name))
    fast = _facts(read_captures([path]))
    tshark = _facts(read_captures([path], engine="tshark"))
    listed = EXPECTED_DIFFERENCES.get(name, {})
    assert set(listed) <= set(fast), listed
    for fact, seen in fast.items():
        fast_only, tshark_only, _why = listed.get(fact, ([], [], ""))
        assert sorted(seen - tshark[fact], key=repr) == sorted(fast_only, key=repr), (name, fact)
        assert sorted(tshark[fact] - seen, key=repr) == sorted(tshark_only, key=repr), (name, fact)


@needs_corpus
def test_every_listed_difference_is_about_a_corpus_capture() -> None:
    assert set(EXPECTED_DIFFERENCES) <= set(corpus_names())


@needs_corpus
@pytest.mark.parametrize("name", TSHARK_UNREADABLE)
def test_capture_tshark_cannot_read_is_a_capture_error(name: str) -> None:
    path = str(capture_path(name))
    with pytest.raises(CaptureError) as info:
        read_captures([path], engine="tshark")
    # tshark's own message, naming the file.
    assert info.value.offset is None
    assert info.value.message.startswith("tshark: ")
    assert path in info.value.message


@needs_corpus
def test_several_files_read_as_one_stream_as_with_the_fast_engine() -> None:
    # The last one starts with a pcapng Simple Packet Block: a frame without a time.
    names = ["dns-udp-cname-chain", "vlan-http-overlapping-flows", "pcapng-be-3-idbs-nrb-spb"]
    paths = [str(capture_path(n)) for n in names]
    fast = read_captures(paths)
    tshark = read_captures(paths, engine="tshark")
    pd.testing.assert_frame_equal(tshark.flows, fast.flows)
    assert tshark.stats.as_dict() == fast.stats.as_dict()
    assert [c.packets for c in tshark.captures] == [c.packets for c in fast.captures]


def test_missing_tshark_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DsauditError, match=r"needs tshark \(apt-get install tshark\)"):
        read_captures([str(tmp_path / "any.pcap")], engine="tshark")


# -- captures built here ----------------------------------------------------------------

CLIENT, SERVER = "10.20.0.1", "10.30.0.2"
# Explicit addresses: without them scapy asks the network (ARP) for a destination MAC.
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _stamped(frames: list[Any], start: float = 1_700_000_000.0) -> list[Any]:
    for i, frame in enumerate(frames):
        frame.time = start + i / 100
    return frames


def _tls_conversation(wrap: Callable[[Any], Any], sport: int, sni: str) -> list[Any]:
    """A TCP handshake and a ClientHello to port 443, each IP packet wrapped by ``wrap``."""
    from scapy.layers.inet import IP, TCP

    c2s = IP(src=CLIENT, dst=SERVER)
    s2c = IP(src=SERVER, dst=CLIENT)
    isn, reply = 1000, 5000
    return [
        wrap(c2s / TCP(sport=sport, dport=443, flags="S", seq=isn)),
        wrap(s2c / TCP(sport=443, dport=sport, flags="SA", seq=reply, ack=isn + 1)),
        wrap(c2s / TCP(sport=sport, dport=443, flags="A", seq=isn + 1, ack=reply + 1)),
        wrap(
            c2s
            / TCP(sport=sport, dport=443, flags="PA", seq=isn + 1, ack=reply + 1)
            / client_hello(sni)
        ),
        wrap(s2c / TCP(sport=443, dport=sport, flags="A", seq=reply + 1, ack=isn + 1)),
    ]


def test_tshark_engine_opens_mpls_pppoe_gre_and_gtp(tmp_path: Path) -> None:
    from scapy.contrib.gtp import GTP_U_Header
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import GRE, Ether
    from scapy.layers.ppp import PPP, PPPoE
    from scapy.utils import wrpcap

    wraps: dict[str, tuple[int, bool, Callable[[Any], Any]]] = {
        "mpls.example": (
            40001,
            False,
            lambda p: Ether(src=MAC_A, dst=MAC_B, type=0x8847) / MPLS(label=16, s=1) / p,
        ),
        "pppoe.example": (
            40002,
            False,
            lambda p: Ether(src=MAC_A, dst=MAC_B) / PPPoE(sessionid=7) / PPP() / p,
        ),
        "gre.example": (
            40003,
            True,
            lambda p: (
                Ether(src=MAC_A, dst=MAC_B) / IP(src="192.0.2.1", dst="192.0.2.2") / GRE() / p
            ),
        ),
        "gtp.example": (
            40004,
            True,
            lambda p: (
                Ether(src=MAC_A, dst=MAC_B)
                / IP(src="192.0.2.3", dst="192.0.2.4")
                / UDP(sport=2152, dport=2152)
                / GTP_U_Header(teid=9)
                / p
            ),
        ),
    }
    frames = [
        f for sni, (port, _, wrap) in wraps.items() for f in _tls_conversation(wrap, port, sni)
    ]
    path = tmp_path / "encapsulated.pcap"
    wrpcap(str(path), _stamped(frames))

    result = read_captures([str(path)], engine="tshark")
    flows = result.flows
    assert result.stats.frames == len(frames)
    for sni, (port, tunnel, _) in wraps.items():
        mine = flows[(flows["proto"] == "tcp") & (flows["client_port"] == port)]
        assert len(mine) == 1, sni
        flow = mine.iloc[0]
        assert (flow["client_ip"], flow["server_ip"], flow["server_port"]) == (CLIENT, SERVER, 443)
        assert (flow["packets_c2s"], flow["packets_s2c"]) == (3, 2)
        assert (flow["sni"], flow["state"], bool(flow["tunnel"])) == (sni, "S1", tunnel)
    # The outer flows of the two tunnels are still there, as on the wire.
    outer = flows[~flows["tunnel"].astype(bool) & flows["client_ip"].str.startswith("192.0.2.")]
    assert sorted(zip(outer["client_ip"], outer["proto"], strict=True)) == [
        ("192.0.2.1", "47"),
        ("192.0.2.3", "udp"),
    ]
    assert result.stats.tunnelled == 10


def test_icmp_vlan_and_vxlan_rows_match_the_fast_engine(tmp_path: Path) -> None:
    """Fields the corpus exercises little: every flow column must be the fast engine's."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6PacketTooBig, IPv6
    from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.utils import wrpcap

    a, b, router = "10.0.0.1", "10.0.0.2", "10.0.0.254"
    a6, b6, router6 = "2001:db8::1", "2001:db8::2", "2001:db8::fe"
    frames = [
        Ether(src=MAC_A, dst=MAC_B) / IP(src=a, dst=b) / ICMP(type=8, id=0x1234, seq=1) / b"ping",
        Ether(src=MAC_A, dst=MAC_B) / IP(src=b, dst=a) / ICMP(type=0, id=0x1234, seq=1) / b"ping",
        Ether(src=MAC_A, dst=MAC_B) / IP(src=a, dst=b) / ICMP(type=8, id=0x4321, seq=1) / b"ping",
        Ether(src=MAC_A, dst=MAC_B) / IPv6(src=a6, dst=b6) / ICMPv6EchoRequest(id=7, seq=1),
        Ether(src=MAC_A, dst=MAC_B) / IPv6(src=b6, dst=a6) / ICMPv6EchoReply(id=7, seq=1),
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src=a, dst=b)
        / TCP(sport=41000, dport=443, flags="S", seq=77),
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src=router, dst=a)
        / ICMP(type=3, code=4, nexthopmtu=1400)
        / IP(src=a, dst=b)
        / TCP(sport=41000, dport=443, flags="S", seq=77),
        Ether(src=MAC_A, dst=MAC_B)
        / IPv6(src=a6, dst=b6)
        / UDP(sport=5353, dport=9999)
        / (b"x" * 40),
        Ether(src=MAC_A, dst=MAC_B)
        / IPv6(src=router6, dst=a6)
        / ICMPv6PacketTooBig(mtu=1280)
        / IPv6(src=a6, dst=b6)
        / UDP(sport=5353, dport=9999),
        Ether(src=MAC_A, dst=MAC_B)
        / Dot1AD(vlan=100)
        / Dot1Q(vlan=200)
        / IP(src=a, dst=b)
        / TCP(sport=42000, dport=80, flags="S"),
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src="192.0.2.10", dst="192.0.2.20")
        / UDP(sport=50000, dport=4789)
        / VXLAN(vni=5)
        / Ether(src=MAC_A, dst=MAC_B)
        / Dot1Q(vlan=30)
        / IP(src=a, dst=b)
        / TCP(sport=43000, dport=80, flags="S"),
    ]
    path = tmp_path / "icmp-vlan.pcap"
    wrpcap(str(path), _stamped(frames))

    fast = read_captures([str(path)])
    tshark = read_captures([str(path)], engine="tshark")
    # The capture exercises what it should: paired echoes, errors tied to their flows.
    errors = [e for e in fast.flows["icmp_errors"] if e]
    assert len(errors) == 2
    assert set(fast.flows["vlan"].dropna()) == {30, 100}
    pd.testing.assert_frame_equal(tshark.flows, fast.flows)
    assert tshark.stats.as_dict() == fast.stats.as_dict()


# -- the command line ------------------------------------------------------------------


def _dsaudit(*args: str) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = dsaudit_process(*args)
    return result


@needs_corpus
def test_cli_tshark_engine_gives_the_fast_engines_flows() -> None:
    path = str(capture_path("vxlan-inner-http"))
    fast = _dsaudit("flows", path, "--format", "jsonl", "--no-progress")
    tshark = _dsaudit("flows", path, "--format", "jsonl", "--no-progress", "--engine", "tshark")
    assert (tshark.returncode, tshark.stderr) == (0, "")
    records = [json.loads(line) for line in tshark.stdout.splitlines()]
    assert records and records == [json.loads(line) for line in fast.stdout.splitlines()]


@needs_corpus
@pytest.mark.parametrize(
    ("name", "code", "prefix"),
    [
        ("invalid-pcap-version-1-4", 2, "dsaudit: error: "),
        ("corrupt-tls-bad-record-after-6", 0, "dsaudit: warning: "),
    ],
)
def test_cli_tshark_engine_reports_bad_files_in_one_line(name: str, code: int, prefix: str) -> None:
    run = _dsaudit("flows", str(capture_path(name)), "--engine", "tshark", "--no-progress")
    assert run.returncode == code
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), run.stderr
    assert "tshark: " in lines[0]
