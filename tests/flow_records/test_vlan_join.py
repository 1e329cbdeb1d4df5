"""Connections whose two directions carry different VLAN tags become one flow (routed trunks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import rdpcap, wrpcap

from dsaudit.flow_records.builder import FlowOptions
from dsaudit.flow_records.frame import DIRECTION_COUNTERS
from dsaudit.flow_records.reading import read_captures
from dsaudit.flow_records.vlan_join import merge_history
from dsaudit.flows.table import Timeouts
from tests.corpus import capture_path, needs_corpus
from tests.factories import client_hello, dns_query, dns_response
from tests.packets import NS, TcpConversation, flows_of, udp_frame

ROOT = Path(__file__).resolve().parents[2]
AGENT, MANAGER = "10.20.1.11", "10.20.0.10"
REQUEST_VLAN, ANSWER_VLAN = 10, 20
SAME = ["packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "state", "history", "outcome"]


def routed(conv: TcpConversation, c2s: bool, flags: str, payload: bytes = b"") -> None:
    """One segment on a routed trunk: requests on the client's VLAN, answers on the other."""
    conv.vlan = REQUEST_VLAN if c2s else ANSWER_VLAN
    conv.send(c2s, flags, payload)


def heartbeat(start_ns: int, cport: int = 50123, sni: str = "dsm.corp.example") -> TcpConversation:
    conv = TcpConversation(AGENT, MANAGER, cport, 4120, start_ns=start_ns)
    routed(conv, True, "S")
    routed(conv, False, "SA")
    routed(conv, True, "A")
    routed(conv, True, "PA", client_hello(sni))
    routed(conv, False, "PA", b"\x16\x03\x03" + bytes(60))
    routed(conv, True, "PA", b"\x17\x03\x03" + bytes(40))
    routed(conv, True, "FA")
    routed(conv, False, "FA")
    routed(conv, True, "A")
    return conv


def test_a_heartbeat_split_across_vlans_is_one_established_flow() -> None:
    conv = heartbeat(1_700_000_000 * NS)
    read = flows_of(conv.frames)
    flows = read.flows
    assert len(flows) == 1
    f = flows.iloc[0]
    assert (f["client_ip"], f["client_port"], f["server_ip"], f["server_port"]) == (
        AGENT,
        50123,
        MANAGER,
        4120,
    )
    assert (f["vlan"], f["vlan_s2c"], bool(f["vlan_joined"])) == (10, 20, True)
    assert pd.isna(f["inner_vlan"]) and pd.isna(f["inner_vlan_s2c"])
    assert (f["packets_c2s"], f["packets_s2c"]) == (6, 3)
    assert (f["state"], f["outcome"], f["initiator_evidence"]) == ("SF", "established", "syn")
    # Each direction's letters in its own order; handshake letters first.
    assert f["history"] == "ShADFdf"
    assert (f["server_name"], f["name_source"]) == ("dsm.corp.example", "sni")
    assert f["start"] == pd.Timestamp(conv.frames[0][0], unit="ns", tz="UTC")
    assert f["end"] == pd.Timestamp(conv.frames[-1][0], unit="ns", tz="UTC")
    assert read.stats.vlan_joined_flows == 1
    assert read.stats.as_dict()["vlan_joined_flows"] == 1
    # The same packets without VLAN keying give the same counters, state and outcome.
    plain = flows_of(conv.frames, FlowOptions(vlan_key=False)).flows.iloc[0]
    for col in [*DIRECTION_COUNTERS, "state", "outcome", "server_name"]:
        assert f[col] == plain[col], col
    assert sorted(f["history"]) == sorted(plain["history"])
    assert not bool(plain["vlan_joined"]) and pd.isna(plain["vlan_s2c"])


def test_the_halves_are_joined_whichever_side_each_half_took_for_the_client() -> None:
    # Mid-stream, unknown high ports: each half guesses its own sender is the client (first
    # packet). The earlier half's guess wins and the later half is turned round.
    conv = TcpConversation("10.0.0.1", "10.0.0.2", 40000, 45000)
    routed(conv, True, "PA", b"one")
    routed(conv, False, "PA", b"two")
    routed(conv, False, "PA", b"three")
    routed(conv, True, "FA")
    flows = flows_of(conv.frames).flows
    assert len(flows) == 1
    f = flows.iloc[0]
    assert (f["client_ip"], f["client_port"], f["initiator_evidence"]) == (
        "10.0.0.1",
        40000,
        "first-packet",
    )
    assert (f["packets_c2s"], f["packets_s2c"]) == (2, 2)
    assert (f["payload_bytes_c2s"], f["payload_bytes_s2c"]) == (3, 8)
    assert (f["vlan"], f["vlan_s2c"]) == (10, 20)
    assert f["history"] == "DFd"


def test_a_synack_half_outranks_a_port_guess() -> None:
    # The server's half starts with a SYN-ACK; the client's half saw no SYN and, from the
    # ports (2049 is a server port), would pick the same client anyway: both must agree.
    conv = TcpConversation("10.0.0.1", "10.0.0.2", 2049, 50000)
    routed(conv, False, "S")  # 10.0.0.2:50000 opens to port 2049 on 10.0.0.1
    routed(conv, True, "SA")
    routed(conv, False, "A")
    flows = flows_of(conv.frames).flows
    assert len(flows) == 1
    f = flows.iloc[0]
    assert (f["client_ip"], f["server_port"]) == ("10.0.0.2", 2049)
    assert (f["vlan"], f["vlan_s2c"]) == (ANSWER_VLAN, REQUEST_VLAN)
    assert (f["state"], f["outcome"], f["history"]) == ("S1", "established", "ShA")


def test_a_dns_query_and_its_answer_on_different_vlans_are_one_flow() -> None:
    t0 = 1_700_000_000 * NS
    query = udp_frame(AGENT, "10.20.0.2", 53001, 53, dns_query("dsm.corp.example"), vlan=10)
    answer = udp_frame(
        "10.20.0.2",
        AGENT,
        53,
        53001,
        dns_response("dsm.corp.example", [("dsm.corp.example", 1, MANAGER, 300)]),
        vlan=20,
    )
    later = TcpConversation(AGENT, MANAGER, 50200, 4119, start_ns=t0 + NS)
    routed(later, True, "S")
    routed(later, False, "SA")
    read = flows_of([(t0, query), (t0 + 3_000_000, answer), *later.frames])
    flows = read.flows
    assert len(flows) == 2
    dns = flows[flows["server_port"] == 53].iloc[0]
    assert (dns["proto"], dns["outcome"], dns["state"]) == ("udp", "established", "SF")
    assert (dns["client_ip"], dns["vlan"], dns["vlan_s2c"]) == (AGENT, 10, 20)
    assert dns["dns_queries"] == ["dsm.corp.example"]
    assert [a["data"] for a in dns["dns_answers"]] == [MANAGER]
    tcp = flows[flows["server_port"] == 4119].iloc[0]
    assert (tcp["server_name"], tcp["name_source"]) == ("dsm.corp.example", "dns")
    assert read.stats.vlan_joined_flows == 2


def test_a_tuple_with_both_directions_in_two_vlans_stays_two_flows() -> None:
    frames = []
    for vlan, start in ((10, 0), (20, 500_000)):
        conv = TcpConversation(AGENT, MANAGER, 50300, 4120, start_ns=1_700_000_000 * NS + start)
        conv.vlan = vlan
        conv.handshake()
        conv.send(True, "PA", b"x")
        conv.close()
        frames.extend(conv.frames)
    frames.sort()
    read = flows_of(frames)
    flows = read.flows
    assert sorted(flows["vlan"].tolist()) == [10, 20]
    assert not flows["vlan_joined"].any() and flows["vlan_s2c"].isna().all()
    assert (flows["state"] == "SF").all()
    assert read.stats.vlan_joined_flows == 0


def test_halves_further_apart_than_the_idle_timeout_are_not_joined() -> None:
    t0 = 1_700_000_000 * NS
    gap = int(Timeouts().udp * NS) + NS
    frames = [
        (t0, udp_frame("10.0.0.1", "10.0.0.2", 5000, 514, b"a", vlan=10)),
        (t0 + gap, udp_frame("10.0.0.2", "10.0.0.1", 514, 5000, b"b", vlan=20)),
    ]
    flows = flows_of(frames).flows
    assert len(flows) == 2
    assert not flows["vlan_joined"].any()
    assert sorted(flows["outcome"].astype(str)) == ["one-way", "one-way"]
    # Within the timeout the same two packets are one conversation.
    near = [frames[0], (t0 + NS, frames[1][1])]
    assert flows_of(near).flows["vlan_joined"].tolist() == [True]


def test_one_way_halves_in_the_same_direction_are_not_joined() -> None:
    t0 = 1_700_000_000 * NS
    frames = [
        (t0, udp_frame("10.0.0.1", "10.0.0.2", 5000, 514, b"a", vlan=10)),
        (t0 + NS, udp_frame("10.0.0.1", "10.0.0.2", 5000, 514, b"b", vlan=20)),
    ]
    flows = flows_of(frames).flows
    assert len(flows) == 2 and not flows["vlan_joined"].any()


def test_reused_ports_pair_each_half_with_its_own_partner() -> None:
    # The same ports again after the idle timeout: three connections, six halves, three pairs.
    frames = []
    for k in range(3):
        conv = TcpConversation(
            AGENT, MANAGER, 50400, 4120, start_ns=1_700_000_000 * NS + k * 10 * NS
        )
        conv.client_isn = conv.cseq = 1000 + 7919 * k
        routed(conv, True, "S")
        routed(conv, False, "SA")
        routed(conv, True, "A")
        routed(conv, True, "FA")
        routed(conv, False, "FA")
        routed(conv, True, "A")
        frames.extend(conv.frames)
    read = flows_of(frames, FlowOptions(timeouts=Timeouts(tcp=5.0)))
    flows = read.flows
    assert len(flows) == 3 and read.stats.vlan_joined_flows == 3
    assert (flows["state"] == "SF").all() and flows["vlan_joined"].all()
    assert flows["packets_c2s"].tolist() == [4, 4, 4]
    assert flows["packets_s2c"].tolist() == [2, 2, 2]
    assert flows["start"].tolist() == sorted(flows["start"].tolist())


def test_a_chain_of_fitting_halves_is_paired_earliest_first() -> None:
    # Three one-way UDP halves within the timeout, alternating direction and VLAN: the first
    # two are paired, the third is left alone (each half joins at most once).
    t0 = 1_700_000_000 * NS
    frames = [
        (t0, udp_frame("10.0.0.1", "10.0.0.2", 5000, 514, b"a", vlan=10)),
        (t0 + NS, udp_frame("10.0.0.2", "10.0.0.1", 514, 5000, b"b", vlan=20)),
        (t0 + 2 * NS, udp_frame("10.0.0.1", "10.0.0.2", 5000, 514, b"c", vlan=30)),
    ]
    flows = flows_of(frames).flows
    assert flows["vlan_joined"].tolist() == [True, False]
    assert flows["vlan"].tolist() == [10, 30]
    assert flows["vlan_s2c"].iloc[0] == 20


def test_history_merge_puts_the_handshake_first() -> None:
    def nibbles(letters: str) -> tuple[np.ndarray, np.ndarray]:
        alphabet = " SHADFRTshadfrt"
        value = sum(alphabet.index(c) << (4 * i) for i, c in enumerate(letters))
        return np.array([value], dtype=np.int64), np.array([len(letters)], dtype=np.int64)

    hist, hlen = merge_history(*nibbles("SADF"), *nibbles("hadtr"))
    alphabet = " SHADFRTshadfrt"
    text = "".join(alphabet[(int(hist[0]) >> (4 * i)) & 0xF] for i in range(int(hlen[0])))
    assert text == "ShADFadtr"


@needs_corpus
def test_corpus_ldap_over_ipv6_on_a_routed_trunk_is_one_flow() -> None:
    # A real capture: an LDAP bind whose requests came on VLAN 81 and answers on VLAN 80.
    path = str(capture_path("pcapng-126-idbs-ldap-ipv6-vlan"))
    read = read_captures([path])
    flows = read.flows
    assert len(flows) == 1 and read.stats.vlan_joined_flows == 1
    f = flows.iloc[0]
    assert (f["client_port"], f["server_port"], f["vlan"], f["vlan_s2c"]) == (49980, 389, 81, 80)
    assert (f["packets_c2s"], f["packets_s2c"], f["bytes_c2s"], f["bytes_s2c"]) == (
        10,
        8,
        3476,
        1493,
    )
    assert (f["state"], f["outcome"], f["history"]) == ("RSTR", "established", "ShADFadtr")
    plain = read_captures([path], options=FlowOptions(vlan_key=False)).flows.iloc[0]
    for col in [*DIRECTION_COUNTERS, "state", "outcome", "start", "end"]:
        assert f[col] == plain[col], col


@needs_corpus
def test_corpus_http_repeated_in_three_vlans_stays_three_flows() -> None:
    read = read_captures([str(capture_path("vlan-http-overlapping-flows"))])
    flows = read.flows
    assert sorted(flows["vlan"].fillna(-1).tolist()) == [-1, 10, 42]
    assert read.stats.vlan_joined_flows == 0 and not flows["vlan_joined"].any()


def retag_as_routed_trunk(src: Path, dst: Path) -> None:
    """The sample as a SPAN of a router's trunk sees it: each packet tagged with the VLAN it
    entered the router on (the sender's subnet), so requests and answers differ in VLAN."""
    out = []
    for pkt in rdpcap(str(src)):
        ip = pkt.getlayer("IP")
        sender = ip.src if ip is not None else getattr(pkt.getlayer("ARP"), "psrc", "")
        vlan = 11 if str(sender).startswith("10.20.1.") else 20
        eth = pkt[Ether]
        tagged = Ether(src=eth.src, dst=eth.dst) / Dot1Q(vlan=vlan, type=eth.type) / eth.payload
        tagged.time = pkt.time
        out.append(tagged)
    wrpcap(str(dst), out)


def test_healthy_deployment_on_a_routed_trunk_stays_healthy(tmp_path: Path) -> None:
    capture = tmp_path / "trunk.pcap"
    retag_as_routed_trunk(ROOT / "samples" / "healthy.pcap", capture)
    report = tmp_path / "audit.json"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dsaudit",
            "audit",
            str(capture),
            "--inventory",
            "samples/healthy.inventory.yaml",
            "--format",
            "json",
            "--output",
            str(report),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(report.read_text())
    above_info = [f for f in data["findings"] if f["severity"] != "info"]
    assert above_info == []
    quality = data["summary"]["quality"]
    assert quality["vlan_joined_flows"] > 0
    # Counted, but not a caveat: nothing was lost by the join.
    assert not any("VLAN" in n for n in quality["notes"])
    flows = data["flows"]
    beats = [f for f in flows if f["server_port"] == 4120 and f["client_ip"] != "10.20.0.30"]
    assert beats and all(f["vlan_joined"] and f["outcome"] == "established" for f in beats)
    assert {(f["vlan"], f["vlan_s2c"]) for f in beats} == {(11, 20)}
