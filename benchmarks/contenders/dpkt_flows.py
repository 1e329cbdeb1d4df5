"""dpkt contender: bidirectional flows with SNI, DNS names and HTTP Host, decoded by dpkt."""

from __future__ import annotations

import argparse
import socket

import dpkt
from flowtable import HTTP_METHODS, FlowTable, finish, http_host_from_headers

SNI_EXTENSION = 0
SNI_HOST_NAME = 0


def addr_text(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(addr) == 16 else socket.AF_INET, addr)


def sni_from_record(record: bytes) -> str | None:
    """Server name from a whole ClientHello record, parsed with dpkt.ssl."""
    handshake = dpkt.ssl.TLSHandshake(dpkt.ssl.TLSRecord(record).data)
    hello = handshake.data
    for ext_type, data in getattr(hello, "extensions", ()):
        # server_name_list: u16 list length, then (u8 type, u16 length, name) entries
        if ext_type == SNI_EXTENSION and len(data) > 5 and data[2] == SNI_HOST_NAME:
            size = int.from_bytes(data[3:5], "big")
            return bytes(data[5 : 5 + size]).decode("ascii", "replace")
    return None


def http_host(payload: bytes) -> str | None:
    try:
        request = dpkt.http.Request(payload)
    except (dpkt.UnpackError, ValueError):
        # A POST whose body continues in the next segment makes dpkt give up on the whole
        # request; the head is complete, so read the header directly.
        return http_host_from_headers(payload)
    host = request.headers.get("host")
    if isinstance(host, list):
        host = host[0]
    return host


def dns_names(payload: bytes) -> tuple[bool, list[str], list[str]]:
    try:
        msg = dpkt.dns.DNS(payload)
    except dpkt.UnpackError:
        # dpkt 1.9.8 rejects a whole message holding an RR type it lacks (HTTPS, type 65);
        # keep the question name, which sits at a fixed offset after the 12-byte header.
        if len(payload) < 12 or payload[4:6] == b"\x00\x00":
            raise
        name, _ = dpkt.dns.unpack_name(payload, 12)
        return not payload[2] & 0x80, [name], []
    qnames = [q.name for q in msg.qd]
    answers: list[str] = []
    for rr in msg.an:
        if rr.type == dpkt.dns.DNS_A:
            answers.append(socket.inet_ntop(socket.AF_INET, rr.ip))
        elif rr.type == dpkt.dns.DNS_AAAA:
            answers.append(socket.inet_ntop(socket.AF_INET6, rr.ip6))
        elif rr.type == dpkt.dns.DNS_CNAME:
            answers.append(rr.cname)
    return msg.qr == dpkt.dns.DNS_Q, qnames, answers


def run(path: str, count: int) -> FlowTable:
    table = FlowTable()
    ip4, ip6 = dpkt.ip.IP, dpkt.ip6.IP6
    tcp_cls, udp_cls = dpkt.tcp.TCP, dpkt.udp.UDP
    with open(path, "rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            if count and table.packets >= count:
                break
            table.packets += 1
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except dpkt.UnpackError:
                table.decode_errors += 1
                continue
            ip = eth.data
            if not isinstance(ip, ip4 | ip6):
                table.non_ip += 1
                continue
            vlan = eth.vlan_tags[0].id if hasattr(eth, "vlan_tags") else 0
            l4 = ip.data
            if isinstance(l4, tcp_cls):
                flow, c2s = table.packet(
                    ts, vlan, 6, ip.src, l4.sport, ip.dst, l4.dport, len(buf), l4.flags
                )
                payload = l4.data
                if not c2s or not payload:
                    continue
                if not flow.tls_done:
                    record = table.first_tls_record(flow, l4.seq, payload)
                    if record is not None:
                        try:
                            name = sni_from_record(record)
                        except (dpkt.UnpackError, ValueError, IndexError):
                            table.decode_errors += 1
                            name = None
                        if name:
                            table.add_sni(flow, name)
                        continue
                if payload[:4] in HTTP_METHODS:
                    host = http_host(payload)
                    if host:
                        table.add_http_host(flow, host)
            elif isinstance(l4, udp_cls):
                flow, _ = table.packet(ts, vlan, 17, ip.src, l4.sport, ip.dst, l4.dport, len(buf))
                if (l4.sport == 53 or l4.dport == 53) and l4.data:
                    try:
                        is_query, qnames, answers = dns_names(l4.data)
                    except (dpkt.UnpackError, ValueError, IndexError):
                        table.decode_errors += 1
                        continue
                    table.add_dns(flow, is_query, qnames, answers)
            else:
                table.packet(ts, vlan, ip.p, ip.src, 0, ip.dst, 0, len(buf))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pcap")
    parser.add_argument("--count", type=int, default=0, help="stop after N packets (0: all)")
    parser.add_argument("--output", default="/dev/null", help="flows as JSON lines")
    args = parser.parse_args()
    finish(run(args.pcap, args.count), "dpkt", args.output, addr_text)


if __name__ == "__main__":
    main()
