"""Conformance: the fast engine against tshark-derived truth on 66 real captures, one test each.

The engine runs in "tshark mode" here (no idle timeouts, flows not keyed by VLAN), because
tshark's conversations have neither; the VLAN-keyed default is checked separately below.
Every remaining difference is listed in EXPECTED_DIFFERENCES with the reason, and where a
second tool's own baseline exists, the test checks that tool agrees with us.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pandas as pd
import pytest

from dsaudit.errors import CaptureError
from dsaudit.flow_records.builder import FlowOptions
from dsaudit.flow_records.reading import read_captures
from dsaudit.flows.table import Timeouts
from tests.corpus import CORPUS, capture_path, corpus_names, needs_corpus, truth

TSHARK_MODE = FlowOptions(timeouts=Timeouts(math.inf, math.inf, math.inf), vlan_key=False)

# name -> {field: (what dsaudit reports, why it differs from tshark)}
EXPECTED_DIFFERENCES: dict[str, dict[str, tuple[Any, str]]] = {
    "nsec-http-to-ssh-port": {
        "http_hosts": (
            {"128.3.50.246"},
            "an HTTP request sent to port 22: dsaudit recognises HTTP by content on any port, "
            "tshark only on HTTP ports; Zeek's own baseline logs this request too",
        ),
    },
    "snmp-v2c-get-161": {
        "udp": (
            4,
            "tshark's SNMP dissector opens a new conversation for each response, so every "
            "request/response pair counts twice; Arkime's baseline has 4 sessions of 2 packets",
        ),
    },
    "snmp-v1-trap-162": {
        "udp": (1, "the same tshark SNMP quirk splits off the first trap of one 5-tuple"),
    },
}

UNREADABLE = {
    "invalid-pcap-version-1-4": "pcap version 1.4 is not supported",
    "invalid-pcapng-shb-option-too-long": "pcapng",
}


def _observed(name: str) -> dict[str, Any]:
    result = read_captures([str(capture_path(name))], options=TSHARK_MODE)
    df = result.flows
    tcp = df[df["proto"] == "tcp"]
    udp = df[df["proto"] == "udp"]
    return {
        "sni": set(tcp["sni"].dropna()),
        "quic_sni": set(udp["sni"].dropna()),
        "dns_queries": {q for qs in df["dns_queries"] for q in qs},
        "http_hosts": set(tcp["http_host"].dropna()),
        "tcp": len(tcp),
        "udp": len(udp),
        "packets": result.stats.frames,
        "warnings": result.warnings,
        "notes": result.notes,
        "untimed": sum(c.ts_missing for c in result.captures),
    }


def _expected(name: str) -> dict[str, Any]:
    t = truth(name)
    detail = t.get("sni_detail") or []
    exp = {
        "sni": {d["sni"] for d in detail if d["transport"] == "tcp"},
        "quic_sni": {d["sni"] for d in detail if d["transport"] == "quic"},
        "dns_queries": set(t["dns_queries"]),
        "http_hosts": set(t.get("http_hosts_tcp", [])),
        "tcp": len(t["tcp_conversations"]),
        "udp": len(t["udp_conversations"]),
        "packets": t["packets"],
    }
    for key, (ours, _why) in EXPECTED_DIFFERENCES.get(name, {}).items():
        exp[key] = ours
    return exp


@needs_corpus
@pytest.mark.parametrize("name", [n for n in corpus_names() if n not in UNREADABLE])
def test_capture_matches_truth(name: str) -> None:
    got = _observed(name)
    exp = _expected(name)
    for key in ("packets", "sni", "quic_sni", "dns_queries", "http_hosts", "tcp", "udp"):
        assert got[key] == exp[key], f"{name}: {key}"
    damaged = truth(name).get("read_error")
    if damaged:
        # Damage after good packets: everything before it is kept, and a warning says where.
        assert got["warnings"], name
        assert "byte " in got["warnings"][0]
    else:
        assert not got["warnings"], got["warnings"]
    # Simple Packet Blocks carry no time: said, not silently dated 1970 or the previous packet,
    # and said as a note on times, not as damage.
    assert (got["untimed"] > 0) == ("-spb" in name), name
    assert bool(got["notes"]) == ("-spb" in name), got["notes"]


@needs_corpus
@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_capture_is_refused_with_offset(name: str) -> None:
    with pytest.raises(CaptureError) as info:
        read_captures([str(capture_path(name))])
    assert info.value.offset is not None
    assert UNREADABLE[name] in str(info.value)


@needs_corpus
def test_expected_differences_agree_with_peer_baselines() -> None:
    """Where we differ from tshark, the source project's own tool agrees with us."""
    sessions = json.loads(
        (CORPUS / "baselines" / "snmp-v2c-get-161" / "SNMPv2c_get_requests.test").read_text()
    )["sessions3"]
    assert len(sessions) == EXPECTED_DIFFERENCES["snmp-v2c-get-161"]["udp"][0]
    assert all(s["body"]["network"]["packets"] == 2 for s in sessions)
    http_log = (
        CORPUS
        / "baselines"
        / "nsec-http-to-ssh-port"
        / "scripts.policy.frameworks.analyzer.detect-protocols-violation__http.log"
    ).read_text()
    assert "128.3.50.246" in http_log


@needs_corpus
@pytest.mark.parametrize(
    ("name", "vlans"),
    [
        ("vlan-http-overlapping-flows", [(None, None), (10, 20), (42, None)]),
        ("pcapng-comment-vlan-pcp", [(None, None), (10, 20), (20, None)]),
        # Requests on VLAN 81, answers on VLAN 80: the halves are joined into one flow
        # keyed by the request's VLAN (tests/flow_records/test_vlan_join.py pins the rest).
        ("pcapng-126-idbs-ldap-ipv6-vlan", [(81, None)]),
        ("qinqinq-http", [(30, 20)]),
    ],
)
def test_default_flows_are_keyed_by_vlan(name: str, vlans: list[tuple[int | None, ...]]) -> None:
    df = read_captures([str(capture_path(name))]).flows
    tcp = df[df["proto"] == "tcp"]
    got = [
        tuple(None if pd.isna(v) else int(v) for v in pair)
        for pair in zip(tcp["vlan"], tcp["inner_vlan"], strict=True)
    ]
    assert sorted(vlans, key=str) == sorted(got, key=str)


@needs_corpus
def test_per_flow_counts_match_tshark_conversations() -> None:
    """Packets per direction agree with tshark for an ordinary browsing capture."""
    name = "mixed-browsing-windows"
    df = read_captures([str(capture_path(name))], options=TSHARK_MODE).flows
    ours = Counter()
    for row in df[df["proto"] == "tcp"].itertuples():
        key = tuple(sorted([(row.client_ip, row.client_port), (row.server_ip, row.server_port)]))
        ours[key] += row.packets_c2s + row.packets_s2c
    theirs = Counter()
    for c in truth(name)["tcp_conversations"]:
        key = tuple(sorted([(c["a"], c["a_port"]), (c["b"], c["b_port"])]))
        theirs[key] += c["frames_a_to_b"] + c["frames_b_to_a"]
    assert ours == theirs
