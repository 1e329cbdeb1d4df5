"""The likely cause of a blocked expected flow, from packets built in code (scapy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from scapy.layers.inet import ICMP, IP

from dsaudit.audit import AuditOptions, run_audit
from dsaudit.catalog import Catalog, load_catalog
from dsaudit.inventory import Inventory, load_inventory
from tests.factories import client_hello, dns_query, dns_response
from tests.packets import (
    BASE_TS,
    NS,
    Frame,
    flows_of,
    scapy_ether,
    tcp_frame,
    tcp_packet,
    udp_frame,
    udp_packet,
)

ROOT = Path(__file__).resolve().parents[1]
MANAGER, AGENT, ROUTER, DNS_SERVER, NTP = (
    "10.20.0.10",
    "10.20.1.11",
    "10.20.0.1",
    "10.20.0.2",
    "10.20.0.3",
)
MS = NS // 1000
ISN_C, ISN_S = 1000, 5000


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "samples" / "problems.inventory.yaml")


def audit(frames: list[Frame], catalog: Catalog, inventory: Inventory) -> Any:
    return run_audit(flows_of(frames), catalog, inventory, AuditOptions())


def heartbeat(result: Any) -> dict[str, Any]:
    """The one agent-to-manager 4120 flow of the capture."""
    rows = result.flows[result.flows["server_port"] == 4120].to_dict("records")
    assert len(rows) == 1
    return rows[0]


def syn(at: int, sport: int = 40000, seq: int = ISN_C) -> Frame:
    return (at, tcp_frame(AGENT, MANAGER, sport, 4120, "S", seq=seq))


def icmp_about(at: int, sender: str, type_: int, code: int, offender: Any) -> Frame:
    """An ICMP error from ``sender`` quoting ``offender`` back to its source."""
    quoted = bytes(offender)[:28]
    packet = IP(src=sender, dst=offender[IP].src) / ICMP(type=type_, code=code) / quoted
    return (at, scapy_ether(packet))


def connected(at: int, sport: int = 40000) -> list[Frame]:
    """The TCP handshake of agent -> manager:4120."""
    return [
        (at, tcp_frame(AGENT, MANAGER, sport, 4120, "S", seq=ISN_C)),
        (at + MS, tcp_frame(MANAGER, AGENT, 4120, sport, "SA", seq=ISN_S, ack=ISN_C + 1)),
        (at + 2 * MS, tcp_frame(AGENT, MANAGER, sport, 4120, "A", seq=ISN_C + 1, ack=ISN_S + 1)),
    ]


def hello_frame(at: int, payload: bytes, sport: int = 40000) -> Frame:
    return (
        at,
        tcp_frame(AGENT, MANAGER, sport, 4120, "PA", seq=ISN_C + 1, ack=ISN_S + 1, payload=payload),
    )


def test_a_reset_from_the_server_is_rejected_by_host(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    frames = [
        syn(t),
        (t + MS, tcp_frame(MANAGER, AGENT, 4120, 40000, "RA", seq=0, ack=ISN_C + 1)),
    ]
    row = heartbeat(audit(frames, catalog, inventory))
    assert row["blocked"]
    assert row["cause"] == "rejected by host"
    assert f"RST from {MANAGER} in answer to the SYN" in row["cause_evidence"]


def test_admin_prohibited_from_a_router_is_a_firewall(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    first = tcp_packet(AGENT, MANAGER, 40000, 4120, "S", seq=ISN_C)
    frames = [syn(t), icmp_about(t + MS, ROUTER, 3, 13, first)]
    result = audit(frames, catalog, inventory)
    row = heartbeat(result)
    assert (row["outcome"], row["cause"]) == ("rejected", "rejected by a firewall")
    assert "administratively prohibited from 10.20.0.1" in row["cause_evidence"]
    finding = result.findings[result.findings["kind"] == "blocked_expected_flow"].iloc[0]
    assert finding["cause"] == "rejected by a firewall"
    assert "likely cause: rejected by a firewall" in finding["message"]


def test_a_reset_after_a_routers_unreachable_is_still_the_firewall(
    catalog: Catalog, inventory: Inventory
) -> None:
    """Ambiguous: a router says host unreachable, then a RST comes back. The ICMP names who
    refused; the RST is kept as evidence, not taken for the host's own refusal."""
    t = BASE_TS
    first = tcp_packet(AGENT, MANAGER, 40000, 4120, "S", seq=ISN_C)
    frames = [
        syn(t),
        icmp_about(t + MS, ROUTER, 3, 1, first),
        syn(t + NS),
        (t + NS + MS, tcp_frame(MANAGER, AGENT, 4120, 40000, "RA", seq=0, ack=ISN_C + 1)),
    ]
    row = heartbeat(audit(frames, catalog, inventory))
    assert row["cause"] == "rejected by a firewall"
    assert "host unreachable from 10.20.0.1" in row["cause_evidence"]
    assert f"then a RST from {MANAGER}" in row["cause_evidence"]


def test_port_unreachable_from_the_server_itself_is_the_host(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    request = udp_packet(AGENT, NTP, 40123, 123, b"\x23" + bytes(47))
    frames = [(t, udp_frame(AGENT, NTP, 40123, 123, b"\x23" + bytes(47)))]
    frames.append(icmp_about(t + MS, NTP, 3, 3, request))
    result = audit(frames, catalog, inventory)
    row = result.flows[result.flows["server_port"] == 123].iloc[0]
    assert (row["blocked"], row["cause"]) == (True, "rejected by host")
    assert f"port unreachable from {NTP}" in row["cause_evidence"]


def test_unanswered_syn_retransmissions_are_dropped_silently(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    row = heartbeat(audit([syn(t), syn(t + NS), syn(t + 3 * NS)], catalog, inventory))
    assert row["cause"] == "dropped silently"
    assert row["cause_evidence"].startswith("3 SYN(s) over 3.0 s")


def test_retransmissions_that_finally_succeed_are_not_blocked(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    frames = [syn(t), syn(t + NS), *connected(t + 3 * NS)[1:]]
    hello = client_hello("dsm.corp.example")
    frames.append(hello_frame(t + 3 * NS + 3 * MS, hello))
    answer = b"\x16\x03\x03\x00\x40" + bytes(64)
    frames.append(
        (
            t + 3 * NS + 4 * MS,
            tcp_frame(
                MANAGER,
                AGENT,
                4120,
                40000,
                "PA",
                seq=ISN_S + 1,
                ack=ISN_C + 1 + len(hello),
                payload=answer,
            ),
        )
    )
    result = audit(frames, catalog, inventory)
    row = heartbeat(result)
    assert (row["outcome"], row["blocked"]) == ("established", False)
    assert pd.isna(row["cause"])
    assert not (result.findings["kind"] == "blocked_expected_flow").any()


def test_a_single_unanswered_syn_is_unknown(catalog: Catalog, inventory: Inventory) -> None:
    row = heartbeat(audit([syn(BASE_TS)], catalog, inventory))
    assert row["cause"] == "unknown"


def test_a_client_hello_answered_by_a_reset_is_a_tls_failure(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    hello = client_hello("dsm.corp.example")
    frames = [*connected(t), hello_frame(t + 3 * MS, hello)]
    frames.append(
        (t + 4 * MS, tcp_frame(MANAGER, AGENT, 4120, 40000, "RA", seq=ISN_S + 1, ack=ISN_C + 1))
    )
    row = heartbeat(audit(frames, catalog, inventory))
    assert (row["state"], row["outcome"], row["blocked"]) == ("RSTR", "failed", True)
    assert row["cause"] == "TLS failure"
    assert "sent nothing after the ClientHello and reset the connection" in row["cause_evidence"]


def test_an_alert_sized_answer_then_fin_is_a_tls_failure(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    hello = client_hello("dsm.corp.example")
    ack = ISN_C + 1 + len(hello)
    alert = b"\x15\x03\x03\x00\x02\x02\x28"
    frames = [
        *connected(t),
        hello_frame(t + 3 * MS, hello),
        (t + 4 * MS, tcp_frame(MANAGER, AGENT, 4120, 40000, "PA", ISN_S + 1, ack, alert)),
        (t + 5 * MS, tcp_frame(MANAGER, AGENT, 4120, 40000, "FA", ISN_S + 8, ack)),
    ]
    row = heartbeat(audit(frames, catalog, inventory))
    assert row["cause"] == "TLS failure"
    assert "7 bytes, the size of one TLS alert record" in row["cause_evidence"]


def test_a_client_hello_cut_off_by_the_end_of_the_capture_is_not_a_failure(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    frames = [*connected(t), hello_frame(t + 3 * MS, client_hello("dsm.corp.example"))]
    row = heartbeat(audit(frames, catalog, inventory))
    assert (row["outcome"], row["blocked"]) == ("established", False)


def test_full_size_segments_that_are_never_acknowledged_are_path_mtu(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    hello = client_hello("dsm.corp.example", extra_len=1800)
    first = hello[:1448]
    frames = [*connected(t)]
    for k, delay in enumerate((3, 200, 600, 1400)):
        frames.append(hello_frame(t + delay * MS + k, first))
    frames.append(
        (t + 2 * NS, tcp_frame(AGENT, MANAGER, 40000, 4120, "RA", seq=ISN_C + 1, ack=ISN_S + 1))
    )
    row = heartbeat(audit(frames, catalog, inventory))
    assert (row["outcome"], row["max_segment_c2s"]) == ("failed", 1448)
    assert row["cause"] == "path MTU"
    assert "1448-byte client segments retransmitted" in row["cause_evidence"]


def test_a_small_client_hello_lost_the_same_way_is_not_path_mtu(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    hello = client_hello("dsm.corp.example")
    frames = [*connected(t), hello_frame(t + 3 * MS, hello), hello_frame(t + 200 * MS, hello)]
    frames.append(
        (t + 2 * NS, tcp_frame(AGENT, MANAGER, 40000, 4120, "RA", seq=ISN_C + 1, ack=ISN_S + 1))
    )
    row = heartbeat(audit(frames, catalog, inventory))
    assert row["cause"] == "TLS failure"


def test_fragmentation_needed_names_the_router_and_mtu(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    hello = client_hello("dsm.corp.example", extra_len=1800)
    big = tcp_packet(AGENT, MANAGER, 40000, 4120, "PA", ISN_C + 1, ISN_S + 1, hello[:1448])
    frames = [*connected(t), hello_frame(t + 3 * MS, hello[:1448])]
    frames.append(icmp_about(t + 4 * MS, ROUTER, 3, 4, big))
    frames.append(hello_frame(t + 300 * MS, hello[:1448]))
    frames.append(
        (t + 2 * NS, tcp_frame(AGENT, MANAGER, 40000, 4120, "RA", seq=ISN_C + 1, ack=ISN_S + 1))
    )
    row = heartbeat(audit(frames, catalog, inventory))
    assert row["cause"] == "path MTU"
    assert row["cause_evidence"].startswith("ICMP fragmentation needed from 10.20.0.1")


def test_a_failed_lookup_before_the_flow_is_name_resolution(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    frames = [
        (t, udp_frame(AGENT, DNS_SERVER, 50000, 53, dns_query("dsm.corp.example"))),
        (
            t + MS,
            udp_frame(DNS_SERVER, AGENT, 53, 50000, dns_response("dsm.corp.example", rcode=2)),
        ),
        syn(t + NS),
    ]
    result = audit(frames, catalog, inventory)
    dns = result.flows[result.flows["server_port"] == 53].iloc[0]
    assert dns["dns_rcode"] == "SERVFAIL"
    row = heartbeat(result)
    assert row["cause"] == "name resolution"
    assert row["cause_evidence"].startswith(f"dsm.corp.example: SERVFAIL from {DNS_SERVER}")


def test_a_failed_lookup_after_the_flow_is_not_its_cause(
    catalog: Catalog, inventory: Inventory
) -> None:
    t = BASE_TS
    frames = [
        syn(t),
        (t + NS, udp_frame(AGENT, DNS_SERVER, 50000, 53, dns_query("dsm.corp.example"))),
        (
            t + NS + MS,
            udp_frame(DNS_SERVER, AGENT, 53, 50000, dns_response("dsm.corp.example", rcode=3)),
        ),
    ]
    assert heartbeat(audit(frames, catalog, inventory))["cause"] == "unknown"


def test_the_problems_sample_shows_every_cause(catalog: Catalog, inventory: Inventory) -> None:
    from dsaudit.causes import CAUSES
    from dsaudit.engine import read_captures

    read = read_captures([str(ROOT / "samples" / "problems.pcap")])
    findings = run_audit(read, catalog, inventory, AuditOptions()).findings
    due = findings[findings["kind"].isin(["blocked_expected_flow", "missing_expected_flow"])]
    assert set(due["cause"]) == set(CAUSES)
    assert due["cause_evidence"].notna().all()
