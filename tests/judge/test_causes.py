"""The likely cause of a blocked expected flow, from packets built in code (scapy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from scapy.layers.inet import ICMP, IP

from dsaudit.catalog import Catalog, load_catalog
from dsaudit.inventory import Inventory, load_inventory
from dsaudit.runs.audit import AuditOptions, run_audit
from tests.factories import (
    client_hello,
    dns_query,
    dns_response,
    server_hello_handshake,
    tls_records,
)
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

ROOT = Path(__file__).resolve().parents[2]
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
    # The alert itself is read now; the 7-byte size rule stays for when it is not captured.
    assert "the TLS alert fatal handshake_failure" in row["cause_evidence"]


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
    from dsaudit.flow_records.reading import read_captures
    from dsaudit.judge.causes import CAUSES

    read = read_captures([str(ROOT / "samples" / "problems.pcap")])
    findings = run_audit(read, catalog, inventory, AuditOptions()).findings
    due = findings[findings["kind"].isin(["blocked_expected_flow", "missing_expected_flow"])]
    assert set(due["cause"]) == set(CAUSES)
    assert due["cause_evidence"].notna().all()


def server_frames(at: int, data: bytes, sport: int, ack: int, mss: int = 1460) -> list[Frame]:
    """``data`` from the manager to the agent's ``sport``, in segments of at most ``mss``."""
    return [
        (
            at + i * MS,
            tcp_frame(
                MANAGER, AGENT if sport < 41000 else AGENT_B, 4120, sport, "PA",
                seq=ISN_S + 1 + off, ack=ack, payload=data[off : off + mss],
            ),
        )
        for i, off in enumerate(range(0, len(data), mss))
    ]  # fmt: skip


AGENT_B = "10.20.1.12"


def tls_heartbeat(at: int, sport: int, answer: bytes, mss: int = 1460) -> list[Frame]:
    """Agent (AGENT below port 41000, else AGENT_B) -> manager:4120: handshake, ClientHello,
    then ``answer`` from the server in segments of ``mss`` bytes."""
    client = AGENT if sport < 41000 else AGENT_B
    hello = client_hello("dsm.corp.example")
    ack = ISN_C + 1 + len(hello)
    return [
        (at, tcp_frame(client, MANAGER, sport, 4120, "S", seq=ISN_C)),
        (at + MS, tcp_frame(MANAGER, client, 4120, sport, "SA", seq=ISN_S, ack=ISN_C + 1)),
        (at + 2 * MS, tcp_frame(client, MANAGER, sport, 4120, "A", seq=ISN_C + 1, ack=ISN_S + 1)),
        (
            at + 3 * MS,
            tcp_frame(client, MANAGER, sport, 4120, "PA", ISN_C + 1, ISN_S + 1, payload=hello),
        ),
        *server_frames(at + 4 * MS, answer, sport, ack, mss),
    ]


def test_a_server_alert_after_the_client_hello_names_the_alert(
    catalog: Catalog, inventory: Inventory
) -> None:
    from tests.factories import tls_alert

    t = BASE_TS
    # unknown_ca (48) after the ClientHello; the server then closes. Alert plus close is
    # more than the 7 bytes the size rule looks for: an alert record follows a ServerHello.
    answer = tls_records(server_hello_handshake(), version=0x0303) + tls_alert(2, 48)
    frames = tls_heartbeat(t, 40000, answer)
    row = heartbeat(audit(frames, catalog, inventory))
    assert row["tls_alert"] == "fatal unknown_ca"
    assert (row["outcome"], row["blocked"], row["cause"]) == ("failed", True, "TLS failure")
    assert "the TLS alert fatal unknown_ca" in row["cause_evidence"]
    assert row["cause_evidence"].endswith("the connection ended at 22:13:20.004")


def test_an_unknown_alert_number_is_shown_as_a_number(
    catalog: Catalog, inventory: Inventory
) -> None:
    from tests.factories import tls_alert

    frames = tls_heartbeat(BASE_TS, 40000, tls_alert(2, 123))
    row = heartbeat(audit(frames, catalog, inventory))
    assert row["tls_alert"] == "fatal alert 123"
    assert row["cause"] == "TLS failure"


def test_an_intercepting_proxys_certificate_is_flagged(
    catalog: Catalog, inventory: Inventory
) -> None:
    from tests.factories import certificate_chain, server_flight

    genuine = server_flight(*certificate_chain("DSM Internal CA"))
    proxy = server_flight(*certificate_chain("Corp TLS Inspection CA"))
    t = BASE_TS
    frames = [
        *tls_heartbeat(t, 40000, genuine),
        *tls_heartbeat(t + 100 * MS, 40001, genuine),
        *tls_heartbeat(t + 200 * MS, 41000, proxy),
    ]
    result = audit(frames, catalog, inventory)
    flows = result.flows.set_index("client_port")
    assert flows.loc[40000, "tls_server_issuer"] == "CN=DSM Internal CA"
    assert flows.loc[41000, "tls_server_issuer"] == "CN=Corp TLS Inspection CA"
    found = result.findings[result.findings["kind"] == "tls_interception"]
    assert list(found["host"]) == [AGENT_B]
    assert list(found["severity"].astype(str)) == ["medium"]
    message = str(found["message"].iloc[0])
    assert "issued by CN=Corp TLS Inspection CA" in message
    assert "CN=DSM Internal CA (2 flow(s))" in message


def client_refuses(at: int, sport: int, answer: bytes, description: int) -> list[Frame]:
    """tls_heartbeat with ``answer``, then the agent's clear fatal alert and its FIN."""
    from tests.factories import client_hello, tls_alert

    client = AGENT if sport < 41000 else AGENT_B
    seq = ISN_C + 1 + len(client_hello("dsm.corp.example"))
    ack = ISN_S + 1 + len(answer)
    alert = tls_alert(2, description)
    return [
        *tls_heartbeat(at, sport, answer),
        (at + 50 * MS, tcp_frame(client, MANAGER, sport, 4120, "PA", seq, ack, payload=alert)),
        (at + 51 * MS, tcp_frame(client, MANAGER, sport, 4120, "FA", seq + len(alert), ack)),
    ]


@pytest.mark.parametrize(
    ("who", "alert"),
    [("server", "fatal handshake_failure"), ("client", "fatal unknown_ca from the client")],
)
def test_a_blocked_flow_behind_an_intercepting_proxy_names_both_issuers(
    catalog: Catalog, inventory: Inventory, who: str, alert: str
) -> None:
    from tests.factories import certificate_chain, server_flight, tls_alert

    genuine = server_flight(*certificate_chain("DSM Internal CA"))
    proxy = server_flight(*certificate_chain("Corp TLS Inspection CA"))
    t = BASE_TS
    # The proxy presents its own certificate; then it gives up on the handshake with an
    # alert, or the agent, which trusts only the manager's CA, refuses it with one.
    frames = [*tls_heartbeat(t, 40000, genuine), *tls_heartbeat(t + 100 * MS, 40001, genuine)]
    if who == "server":
        frames += tls_heartbeat(t + 200 * MS, 41000, proxy + tls_alert(2, 40))
    else:
        frames += client_refuses(t + 200 * MS, 41000, proxy, 48)
    result = audit(frames, catalog, inventory)
    row = result.flows.set_index("client_port").loc[41000]
    assert row["tls_server_issuer"] == "CN=Corp TLS Inspection CA"
    assert (row["outcome"], row["blocked"], row["cause"]) == ("failed", True, "TLS failure")
    assert f"the TLS alert {alert}" in row["cause_evidence"]
    assert "CN=DSM Internal CA (2 flow(s))" in row["cause_evidence"]
    # A blocked flow shows the mismatch as its cause, not a second time as a finding.
    assert "tls_interception" not in set(result.findings["kind"])


def test_a_certificate_split_over_many_segments_is_reassembled(
    catalog: Catalog, inventory: Inventory
) -> None:
    from tests.factories import certificate_chain, server_flight

    leaf, ca = certificate_chain("DSM Internal CA")
    # 100-byte segments put the Certificate message in many pieces.
    answer = server_flight(leaf, ca)
    frames = tls_heartbeat(BASE_TS, 40000, answer, mss=100)
    assert len(answer) > 500
    row = heartbeat(audit(frames, catalog, inventory))
    assert row["tls_server_issuer"] == "CN=DSM Internal CA"
    assert pd.isna(row["tls_alert"])


@pytest.mark.parametrize(
    "answer",
    [
        b"\x16\x03\x03\x00\x10" + b"\x0b\x00\x00\x0c" + b"\x00\x00\x09\x00\x00\x06garbag",
        b"\x16\x03\x03\x00\x0a" + b"\x0b\xff\xff\xff" + bytes(6),
        b"\x15\x03\x03\x00\x05" + bytes(5),  # an encrypted alert: no clear level/description
        b"\x17\x03\x03\x00\x04abcd",
        bytes(range(256)) * 4,
    ],
)
def test_garbage_from_the_server_names_nothing_and_does_not_crash(
    catalog: Catalog, inventory: Inventory, answer: bytes
) -> None:
    row = heartbeat(audit(tls_heartbeat(BASE_TS, 40000, answer), catalog, inventory))
    assert pd.isna(row["tls_alert"])
    assert pd.isna(row["tls_server_issuer"])


def test_the_agent_refusing_the_certificate_is_a_tls_failure(
    catalog: Catalog, inventory: Inventory
) -> None:
    from tests.factories import certificate_chain, server_flight

    answer = server_flight(*certificate_chain("DSM Internal CA"))
    row = heartbeat(audit(client_refuses(BASE_TS, 40000, answer, 48), catalog, inventory))
    assert row["tls_alert"] == "fatal unknown_ca from the client"
    assert (row["outcome"], row["blocked"], row["cause"]) == ("failed", True, "TLS failure")
    assert "the TLS alert fatal unknown_ca from the client" in row["cause_evidence"]


def test_an_encrypted_client_alert_says_nothing(catalog: Catalog, inventory: Inventory) -> None:
    from tests.factories import certificate_chain, server_flight

    answer = server_flight(*certificate_chain("DSM Internal CA"))
    frames = client_refuses(BASE_TS, 40000, answer, 48)
    at, frame = frames[-2]
    # The same record with a 26-byte (encrypted) body in place of the two clear bytes.
    encrypted = frame.replace(b"\x15\x03\x03\x00\x02\x02\x30", b"\x15\x03\x03\x00\x1a" + bytes(2))
    frames[-2] = (at, encrypted)
    row = heartbeat(audit(frames, catalog, inventory))
    assert pd.isna(row["tls_alert"])
    assert row["outcome"] == "established"
