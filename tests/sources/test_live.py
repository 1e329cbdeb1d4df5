"""Live capture backends without capturing: the pcap stream reader, interfaces, messages."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dsaudit.errors import CaptureError
from dsaudit.sources.capture_file import CaptureReader
from dsaudit.sources.live.dumpcap import parse_dumpcap_drops
from dsaudit.sources.live.interfaces import UnknownInterfaceError, check_interface, list_interfaces
from dsaudit.sources.live.pcap_stream import PcapStream
from dsaudit.sources.live.source import CapturePermissionError
from tests.packets import BASE_TS, LINK_ETHERNET, pcap_bytes, pcap_record, tcp_frame


def _frames(n: int) -> list[tuple[int, bytes]]:
    return [
        (BASE_TS + i * 1_000_000, tcp_frame("127.0.0.11", "127.0.0.10", 40000 + i, 4120, "S"))
        for i in range(n)
    ]


@pytest.mark.parametrize("nsec", [False, True])
@pytest.mark.parametrize("big", [False, True])
def test_pcap_stream_in_pieces_equals_the_file(tmp_path: Path, nsec: bool, big: bool) -> None:
    data = pcap_bytes(_frames(300), big=big, nsec=nsec)
    path = tmp_path / "whole.pcap"
    path.write_bytes(data)
    expected = [
        (int(b.ts_ns[i]), b.frame(i)) for b in CaptureReader(str(path)) for i in range(len(b))
    ]
    stream = PcapStream("test")
    got: list[tuple[int, bytes]] = []
    rng = random.Random(7)
    pos = 0
    while pos < len(data):
        # Pieces of any size, including ones that split the header and record headers.
        step = rng.choice([1, 3, 15, 16, 17, 100, 1000, 5000])
        batch = stream.feed(data[pos : pos + step])
        pos += step
        if batch is not None:
            got += [(int(batch.ts_ns[i]), batch.frame(i)) for i in range(len(batch))]
    assert got == expected
    assert stream.linktype == LINK_ETHERNET


def test_pcap_stream_keeps_a_partial_record_for_later() -> None:
    frame = tcp_frame("127.0.0.11", "127.0.0.10", 40000, 4120, "S")
    record = pcap_record(BASE_TS, frame)
    stream = PcapStream("test")
    head = pcap_bytes([])
    assert stream.feed(head + record[:-1]) is None
    batch = stream.feed(record[-1:])
    assert batch is not None and len(batch) == 1 and batch.frame(0) == frame


def test_pcap_stream_refuses_what_is_not_pcap() -> None:
    with pytest.raises(CaptureError, match="not a pcap stream"):
        PcapStream("test").feed(b"\x0a\x0d\x0d\x0a" + bytes(40))


def test_pcap_stream_reports_an_impossible_record() -> None:
    bad = pcap_bytes([]) + pcap_record(BASE_TS, b"", caplen=1 << 30)
    with pytest.raises(CaptureError, match="impossible record length"):
        PcapStream("test").feed(bad)


def test_loopback_is_listed_with_its_address() -> None:
    lo = [i for i in list_interfaces() if i.name == "lo"]
    assert lo and lo[0].kind == "loopback"
    assert "127.0.0.1" in lo[0].addresses
    check_interface("lo")
    check_interface("any")


def test_an_unknown_interface_names_the_real_ones() -> None:
    with pytest.raises(UnknownInterfaceError) as caught:
        check_interface("no\x1b[2Jsuch0")
    text = str(caught.value)
    assert "\x1b" not in text and "no\\x1b[2Jsuch0" in text
    assert "lo (127.0.0.1" in text
    assert "\n" not in text


def test_the_privilege_message_is_one_line_with_the_setcap_command() -> None:
    text = str(CapturePermissionError("eth0", "/usr/bin/python3.11"))
    assert "\n" not in text
    assert "root" in text and "CAP_NET_RAW" in text and "CAP_NET_ADMIN" in text
    assert "sudo setcap cap_net_raw,cap_net_admin=eip /usr/bin/python3.11" in text


def test_dumpcap_drop_statistics() -> None:
    text = (
        "Capturing on 'Loopback: lo'\nFile: -\nPackets captured: 6\n"
        "Packets received/dropped on interface 'Loopback: lo': 1006/17 "
        "(pcap:10/dumpcap:4/flushed:2/ps_ifdrop:1) (98.3%)\n"
    )
    assert parse_dumpcap_drops(text) == (11, 6)
    assert parse_dumpcap_drops("Packets received/dropped on interface 'eth0': 5/3\n") == (3, 0)
    assert parse_dumpcap_drops("Capturing on 'eth0'\n") is None
