"""Wire-level builders for the sample captures: frames, TCP conversations, DNS, NTP (never sent)."""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import EDecimal, PcapNgWriter, PcapWriter

# Times are integer microseconds from the start of the capture: floats would let rounding decide
# the last digit of a timestamp, and the files must be byte-identical on every run.
US = 1_000_000
CLIENT, SERVER = 0, 1
LINKTYPE_ETHERNET = 1
SITE_NETWORK = ipaddress.ip_network("10.0.0.0/8")
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01


def us(seconds: float) -> int:
    """Seconds (as written in a schedule) to integer microseconds."""
    return round(seconds * US)


def host_mac(address: str) -> str:
    """A fixed, locally administered MAC that spells the host's IPv4 address."""
    octets = ipaddress.ip_address(address).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)


@dataclass(frozen=True)
class Frame:
    """One frame waiting to be written, with the order it was made in to break time ties."""

    at: int
    order: int
    src: str
    dst: str
    packet: Packet


class Capture:
    """The frames of one fabricated capture, plus per-host state that makes them look real."""

    def __init__(
        self, start_epoch: int, seed: int, zone: dict[str, str], dns_server: str, gateway: str
    ) -> None:
        self.start_epoch = start_epoch
        self.rng = random.Random(seed)
        self.zone = zone
        self.dns_server = dns_server
        self.gateway_mac = host_mac(gateway)
        self.frames: list[Frame] = []
        self._ip_id: dict[str, int] = {}
        self._next_port: dict[str, int] = {}
        # When each (host, name) answer was received and when it expires: flows are scheduled
        # out of time order, so "cached" must mean an answer that already arrived.
        self._dns_cache: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def mac(self, address: str) -> str:
        """Site hosts have their own MAC; anything public is reached through the router."""
        if ipaddress.ip_address(address) in SITE_NETWORK:
            return host_mac(address)
        return self.gateway_mac

    def ephemeral_port(self, host: str) -> int:
        """The next client port of a host, like a kernel walking its ephemeral range."""
        port = self._next_port.get(host)
        if port is None:
            port = self.rng.randrange(32768, 52000)
        port += self.rng.randrange(1, 24)
        self._next_port[host] = port
        return port

    def emit(self, at: int, src: str, dst: str, layer4: Packet) -> Packet:
        """Frame a layer-4 packet between two hosts and keep it for writing."""
        ip_id = self._ip_id.get(src)
        if ip_id is None:
            ip_id = self.rng.randrange(0x10000)
        self._ip_id[src] = (ip_id + 1) & 0xFFFF
        local = ipaddress.ip_address(src) in SITE_NETWORK
        # Public peers are ~12 hops away; TCP sets DF like every modern stack (PMTU discovery).
        ip = IP(src=src, dst=dst, id=ip_id, ttl=64 if local else 52)
        if isinstance(layer4, TCP):
            ip.flags = "DF"
        packet = Ether(src=self.mac(src), dst=self.mac(dst)) / ip / layer4
        self.frames.append(Frame(at, len(self.frames), src, dst, packet))
        return packet

    def udp(self, at: int, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        """One UDP datagram."""
        self.emit(at, src, dst, UDP(sport=sport, dport=dport) / Raw(payload))

    def lookup(self, host: str, name: str, at: int) -> int:
        """Resolve a name for a host unless its cached answer is fresh; returns when it is known.

        Every name a host uses is looked up on the wire first, so an audit can name each peer
        from DNS as well as from SNI. Site names live an hour, Trend Micro's five minutes.
        """
        cached = self._dns_cache.setdefault((host, name), [])
        if any(received <= at < expires for received, expires in cached):
            return at
        address = self.zone[name]
        local = name.endswith(".corp.example")
        ttl = 3600 if local else 300
        qid = self.rng.getrandbits(16)
        sport = self.ephemeral_port(host)
        query = DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype="A"))
        self.emit(at, host, self.dns_server, UDP(sport=sport, dport=53) / query)
        # A recursive lookup of a public name takes a round trip to the internet.
        answered = at + (us(0.0003) if local else us(0.0184))
        answer = DNS(
            id=qid,
            qr=1,
            aa=int(local),
            rd=1,
            ra=1,
            qd=DNSQR(qname=name, qtype="A"),
            an=DNSRR(rrname=name, type="A", ttl=ttl, rdata=address),
        )
        self.emit(answered, self.dns_server, host, UDP(sport=53, dport=sport) / answer)
        cached.append((answered, answered + ttl * US))
        return answered + us(0.0002)

    def ntp_poll(self, client: str, server: str, at: int) -> None:
        """An NTPv4 client request and the server's reply, with timestamps that agree."""
        sent = self._ntp_timestamp(at)
        request = struct.pack("!BBbb", 0x23, 0, 7, -20) + bytes(36) + sent
        self.udp(at, client, 123, server, 123, request)
        received = self._ntp_timestamp(at + us(0.00015))
        replied = self._ntp_timestamp(at + us(0.00018))
        reference = self._ntp_timestamp(at - us(97.25))
        reply = (
            struct.pack("!BBbb", 0x24, 2, 7, -23)
            + struct.pack("!II", 0x0000_0A3D, 0x0000_1C28)  # root delay, root dispersion
            + bytes([198, 51, 100, 123])  # upstream server the site NTP host follows
            + reference
            + sent
            + received
            + replied
        )
        self.udp(at + us(0.0004), server, 123, client, 123, reply)

    def _ntp_timestamp(self, at: int) -> bytes:
        total = self.start_epoch * US + at
        seconds, micros = divmod(total, US)
        return struct.pack("!II", seconds + NTP_EPOCH_OFFSET, (micros << 32) // US)

    def frag_needed(self, at: int, router: str, offender: Packet, mtu: int) -> None:
        """ICMP 'fragmentation needed' about a packet, quoting as much as RFC 1812 allows."""
        quoted = bytes(offender[IP])[:548]
        self.emit(at, router, offender[IP].src, ICMP(type=3, code=4, nexthopmtu=mtu) / quoted)

    def admin_prohibited(self, at: int, router: str, offender: Packet) -> None:
        """ICMP 'communication administratively prohibited' (type 3 code 13): a filter's no."""
        quoted = bytes(offender[IP])[:548]
        self.emit(at, router, offender[IP].src, ICMP(type=3, code=13) / quoted)

    def failed_lookup(self, host: str, name: str, at: int, rcode: int = 3) -> None:
        """A lookup the resolver answers with an error (3: NXDOMAIN, 2: SERVFAIL)."""
        qid = self.rng.getrandbits(16)
        sport = self.ephemeral_port(host)
        query = DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype="A"))
        self.emit(at, host, self.dns_server, UDP(sport=sport, dport=53) / query)
        answer = DNS(id=qid, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=name, qtype="A"))
        self.emit(at + us(0.0004), self.dns_server, host, UDP(sport=53, dport=sport) / answer)

    def timeline(self, only: str | None = None) -> list[tuple[EDecimal, Packet]]:
        """Frames in time order, optionally just those to or from one host, with epoch times."""
        frames = sorted(self.frames, key=lambda f: (f.at, f.order))
        if only is not None:
            frames = [f for f in frames if only in (f.src, f.dst)]
        return [(EDecimal(self.start_epoch * US + f.at) / US, f.packet) for f in frames]

    def write_pcap(self, path: Path) -> int:
        """Write a classic little-endian microsecond pcap; returns the frame count."""
        timeline = self.timeline()
        with PcapWriter(str(path), linktype=LINKTYPE_ETHERNET, endianness="<") as writer:
            for when, packet in timeline:
                packet.time = when
                writer.write(packet)
        return len(timeline)

    def write_pcapng(self, path: Path, only: str) -> int:
        """Write a pcapng of the frames seen from one host; returns the frame count."""
        timeline = self.timeline(only)
        with PcapNgWriter(str(path)) as writer:
            writer.write_header(timeline[0][1])  # write_packet, unlike write, needs it done first
            for when, packet in timeline:
                packet.time = when
                # Passed explicitly: the pcapng writer would otherwise go through float().
                writer.write_packet(packet, sec=when)
        return len(timeline)


class TcpConn:
    """One TCP connection as a capture point sees it: sequence numbers, ACKs, options, a clock."""

    def __init__(
        self,
        cap: Capture,
        client: str,
        server: str,
        dport: int,
        at: float,
        rtt: float,
        sport: int | None = None,
    ) -> None:
        self.cap = cap
        self.hosts = (client, server)
        self.ports = (sport if sport is not None else cap.ephemeral_port(client), dport)
        self.isn = (cap.rng.getrandbits(32), cap.rng.getrandbits(32))
        self.nxt = list(self.isn)
        # Linux gives each connection a random timestamp offset, so TSvals do not leak uptime.
        self.ts_offset = (cap.rng.getrandbits(32), cap.rng.getrandbits(32))
        self.last_tsval = [0, 0]
        self.now = us(at)
        self.rtt = us(rtt)
        self.mss = 1448  # 1460 less the 12 bytes that the timestamp option takes on every segment

    def wait(self, seconds: float) -> None:
        """Let time pass on this connection (think time, timers)."""
        self.now += us(seconds)

    def segment(
        self, side: int, flags: str, payload: bytes = b"", seq: int | None = None
    ) -> Packet:
        """Emit one segment from a side; a sequence number is given only for retransmissions."""
        src, dst = self.hosts[side], self.hosts[1 - side]
        first = self.nxt[side] if seq is None else seq
        tsval = (self.ts_offset[side] + self.now // 1000) & 0xFFFFFFFF
        options: list[tuple[str, object]]
        if "S" in flags:
            tsecr = self.last_tsval[1 - side] if "A" in flags else 0
            options = [
                ("MSS", 1460),
                ("SAckOK", b""),
                ("Timestamp", (tsval, tsecr)),
                ("NOP", None),
                ("WScale", 7),
            ]
            window = 64240 if side == CLIENT else 65160
        elif "R" in flags:
            options, window = [], 0
        else:
            options = [
                ("NOP", None),
                ("NOP", None),
                ("Timestamp", (tsval, self.last_tsval[1 - side])),
            ]
            window = 502 if side == CLIENT else 509
        tcp = TCP(
            sport=self.ports[side],
            dport=self.ports[1 - side],
            seq=first,
            ack=self.nxt[1 - side] if "A" in flags else 0,
            flags=flags,
            window=window,
            options=options,
        )
        packet = self.cap.emit(self.now, src, dst, tcp / Raw(payload) if payload else tcp)
        if "R" not in flags:
            self.last_tsval[side] = tsval
        end = (first + len(payload) + (1 if "S" in flags or "F" in flags else 0)) & 0xFFFFFFFF
        if seq is None:
            self.nxt[side] = end
        return packet

    def handshake(self) -> None:
        """SYN, SYN-ACK, ACK."""
        self.segment(CLIENT, "S")
        self.now += self.rtt
        self.segment(SERVER, "SA")
        self.now += us(0.00006)
        self.segment(CLIENT, "A")
        self.now += us(0.0001)

    def transfer(self, side: int, data: bytes, ack: bool = True) -> list[Packet]:
        """Data cut at the MSS; the peer ACKs every second segment and, if asked, the last one."""
        sent: list[Packet] = []
        chunks = [data[i : i + self.mss] for i in range(0, len(data), self.mss)]
        for number, chunk in enumerate(chunks, 1):
            last = number == len(chunks)
            sent.append(self.segment(side, "PA" if last else "A", chunk))
            self.now += 12 + len(chunk) // 125  # serialisation at 1 Gbit/s
            if number % 2 == 0 and not last:
                self.now += self.rtt // 2
                self.segment(1 - side, "A")
                self.now += 20
        if ack:
            # Nothing to piggyback on: the receiver's delayed ACK fires.
            self.now += self.rtt // 2 + us(0.0004)
            self.segment(1 - side, "A")
        self.now += us(0.0002)
        return sent

    def transfer_through_small_mtu(
        self, side: int, data: bytes, router: str, mtu: int
    ) -> tuple[Packet, Packet]:
        """Send data whose first full-size segment a router drops with 'fragmentation needed'.

        The sender shrinks its segments to the next-hop MTU and sends the same bytes again, as
        Linux does, so the capture shows the large segment, the ICMP, then the retransmission.
        Returns the dropped segment and the first retransmitted one.
        """
        start = self.nxt[side]
        dropped = self.segment(side, "A", data[: self.mss])
        self.now += us(0.0003)
        self.cap.frag_needed(self.now, router, dropped, mtu)
        self.now += us(0.00005)
        self.nxt[side] = start
        self.mss = mtu - 40 - 12
        resent = self.transfer(side, data)
        return dropped, resent[0]

    def close(self, side: int = CLIENT) -> None:
        """Orderly close begun by one side: FIN, FIN, ACK."""
        self.segment(side, "FA")
        self.now += self.rtt
        self.segment(1 - side, "FA")
        self.now += us(0.00005)
        self.segment(side, "A")

    def refused(self) -> None:
        """A SYN answered by RST/ACK: nothing listens, or a host firewall rejects."""
        self.segment(CLIENT, "S")
        self.now += self.rtt
        # A reset answering a bare SYN carries sequence 0 and ACKs the SYN (RFC 9293 3.10.7.1).
        self.segment(SERVER, "RA", seq=0)

    def unanswered(self, retries: tuple[float, ...] = (1.0, 3.0)) -> None:
        """A SYN and its retransmissions (seconds after the first) that nobody answers."""
        first = self.now
        self.segment(CLIENT, "S")
        for delay in retries:
            self.now = first + us(delay)
            self.segment(CLIENT, "S", seq=self.isn[CLIENT])

    def stalled(self, data: bytes, retries: tuple[float, ...]) -> Packet:
        """The client's first full-size segment of ``data``, lost on the path with no ICMP
        (a path-MTU black hole): retransmitted after each delay, then the client resets."""
        first = self.nxt[CLIENT]
        sent = self.segment(CLIENT, "A", data[: self.mss])
        start = self.now
        for delay in retries:
            self.now = start + us(delay)
            self.segment(CLIENT, "A", data[: self.mss], seq=first)
        self.now += us(0.5)
        self.segment(CLIENT, "RA")
        return sent

    def probe_open(self) -> None:
        """A port-scan probe to an open port: SYN, SYN-ACK, then the scanner's RST."""
        self.segment(CLIENT, "S")
        self.now += self.rtt
        self.segment(SERVER, "SA")
        self.now += us(0.00004)
        self.segment(CLIENT, "R")
