"""scapy contender: the dpkt contender's job done with PcapReader and scapy's protocol layers."""

from __future__ import annotations

import argparse
from typing import Any

from flowtable import HTTP_METHODS, FlowTable, finish, http_host_from_headers
from scapy.layers.dns import DNS
from scapy.layers.http import HTTP, HTTPRequest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q
from scapy.layers.tls.extensions import TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS
from scapy.packet import split_bottom_up, split_layers
from scapy.utils import PcapReader

DNS_A, DNS_CNAME, DNS_AAAA = 1, 5, 28


def unbind_port_layers() -> None:
    """Stop scapy dissecting every port 443/80 segment as TLS/HTTP.

    Importing the TLS and HTTP layers binds them to those ports; left bound, scapy would parse
    every encrypted record and every response body, which neither the dpkt contender nor
    dsaudit does. The ClientHello and request heads are parsed explicitly below instead.
    """
    split_layers(TCP, TLS, sport=443)
    split_layers(TCP, TLS, dport=443)
    for port in (80, 8080):
        split_bottom_up(TCP, HTTP, sport=port)
        split_bottom_up(TCP, HTTP, dport=port)
    split_layers(TCP, HTTP, sport=80, dport=80)


def text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def sni_from_record(record: bytes) -> str | None:
    for msg in TLS(record).msg:
        if isinstance(msg, TLSClientHello):
            for ext in msg.ext or ():
                if isinstance(ext, TLS_Ext_ServerName) and ext.servernames:
                    return text(ext.servernames[0].servername)
    return None


def http_host(payload: bytes) -> str | None:
    host = HTTPRequest(payload).Host
    if host is None:
        # Same fallback as the dpkt contender, for symmetry; scapy rarely needs it.
        return http_host_from_headers(payload)
    return text(host)


def dns_names(msg: DNS) -> tuple[bool, list[str], list[str]]:
    qnames = [text(q.qname) for q in msg.qd or ()]
    answers: list[str] = []
    for rr in msg.an or ():
        if rr.type in (DNS_A, DNS_AAAA, DNS_CNAME):
            answers.append(text(rr.rdata))
    return msg.qr == 0, qnames, answers


def run(path: str, count: int) -> FlowTable:
    table = FlowTable()
    reader = PcapReader(path)
    try:
        for pkt in reader:
            if count and table.packets >= count:
                break
            table.packets += 1
            if IP in pkt:
                ip = pkt[IP]
                proto = ip.proto
            elif IPv6 in pkt:
                ip = pkt[IPv6]
                proto = ip.nh
            else:
                table.non_ip += 1
                continue
            vlan = pkt[Dot1Q].vlan if Dot1Q in pkt else 0
            ts = float(pkt.time)
            # wirelen comes from the record header; len(pkt) would rebuild the packet.
            length = pkt.wirelen or len(bytes(pkt))
            if TCP in pkt:
                tcp = pkt[TCP]
                flow, c2s = table.packet(
                    ts, vlan, 6, ip.src, tcp.sport, ip.dst, tcp.dport, length, int(tcp.flags)
                )
                payload = bytes(tcp.payload)
                if not c2s or not payload:
                    continue
                if not flow.tls_done:
                    record = table.first_tls_record(flow, tcp.seq, payload)
                    if record is not None:
                        try:
                            name = sni_from_record(record)
                        except Exception:  # scapy raises assorted types on malformed input
                            table.decode_errors += 1
                            name = None
                        if name:
                            table.add_sni(flow, name)
                        continue
                if payload[:4] in HTTP_METHODS:
                    host = http_host(payload)
                    if host:
                        table.add_http_host(flow, host)
            elif UDP in pkt:
                udp = pkt[UDP]
                flow, _ = table.packet(ts, vlan, 17, ip.src, udp.sport, ip.dst, udp.dport, length)
                if DNS in pkt:
                    is_query, qnames, answers = dns_names(pkt[DNS])
                    table.add_dns(flow, is_query, qnames, answers)
            else:
                table.packet(ts, vlan, proto, ip.src, 0, ip.dst, 0, length)
    finally:
        reader.close()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pcap")
    parser.add_argument("--count", type=int, default=0, help="stop after N packets (0: all)")
    parser.add_argument("--output", default="/dev/null", help="flows as JSON lines")
    args = parser.parse_args()
    unbind_port_layers()
    finish(run(args.pcap, args.count), "scapy", args.output, str)


if __name__ == "__main__":
    main()
