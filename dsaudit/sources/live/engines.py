"""Live capture: scapy's AsyncSniffer on a kernel-filtered packet socket, or dumpcap's pcap stream.

Both backends hand over :class:`PacketBatch` objects, so live packets go through the same
decoder, flow table and naming as packets read from files.

``scapy`` (the default) opens an ``AF_PACKET`` socket itself, compiles ``--bpf`` with
libpcap (through scapy) and attaches it to the socket, so the kernel filters before any
packet is copied to user space. scapy's :class:`AsyncSniffer` drives the socket from its
own thread; the socket's ``recv`` skips scapy's dissection and returns the raw bytes, the
kernel timestamp (ns) and the length on the wire, which ``prn`` appends to a buffer the
audit loop drains. Kernel drops come from ``PACKET_STATISTICS``.

``tshark`` runs ``dumpcap -P -w -`` (Wireshark's capture engine, libpcap with a memory-mapped
ring) and reads its pcap stream with the project's compiled record walker. pyshark's
LiveCapture was not used: it hands over packets tshark has dissected (XML or JSON, raw bytes
only as hex), which costs far more per packet than capturing it, while dumpcap is exactly
the process pyshark starts underneath. dumpcap reports its drops when it stops.
"""

from __future__ import annotations

from dsaudit.errors import DsauditError
from dsaudit.sources.live.dumpcap import DumpcapSource
from dsaudit.sources.live.interfaces import check_interface
from dsaudit.sources.live.packet_socket import ScapySource
from dsaudit.sources.live.source import DEFAULT_SNAPLEN, LiveSource

ENGINES = ("scapy", "tshark")


def open_source(
    engine: str,
    iface: str,
    bpf: str | None = None,
    snaplen: int = DEFAULT_SNAPLEN,
    promisc: bool = True,
    count: int | None = None,
) -> LiveSource:
    """Open (not start) a capture on ``iface``; errors say what is wrong in one line."""
    check_interface(iface)
    if engine == "scapy":
        return ScapySource(iface, bpf, snaplen, promisc, count)
    if engine == "tshark":
        return DumpcapSource(iface, bpf, snaplen, promisc, count)
    raise DsauditError(f"unknown capture engine {engine!r}; use one of {', '.join(ENGINES)}")
