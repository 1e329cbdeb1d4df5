"""The tshark engine: Wireshark's dissectors, through pyshark, feed dsaudit's flow table and naming.

tshark decodes what the compiled decoder does not (MPLS, PPPoE, GRE, GTP, ERSPAN, ... and any
file format Wireshark reads). For every frame this module takes the outermost and the innermost
IP layer tshark found, turns them into rows of the same record matrix the compiled decoder
writes (see :mod:`dsaudit.decode.packet_kernel`) plus a buffer of their transport payloads, and
hands those to a record sink: the one flow table and naming stage of
:class:`dsaudit.flow_records.builder.FlowBuilder`, which
:func:`dsaudit.flow_records.reading.read_captures` makes and finishes. tshark reassembles IP
fragments itself, so a datagram reaches the flow table once, in the frame that completed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import socket
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from dsaudit.decode.capture_stats import CaptureStats
from dsaudit.decode.packet_kernel import (
    C_ACK,
    C_DPORT,
    C_DST_HI,
    C_DST_LO,
    C_FLAGS,
    C_FRAME,
    C_ICMP_CODE,
    C_ICMP_REST,
    C_ICMP_TYPE,
    C_IPID,
    C_L3,
    C_L3_LEN,
    C_L4_LEN,
    C_PAY_LEN,
    C_PAY_OFF,
    C_PROTO,
    C_SEQ,
    C_SPORT,
    C_SRC_HI,
    C_SRC_LO,
    C_TRUNC,
    C_TS,
    C_TUN_DST_HI,
    C_TUN_DST_LO,
    C_TUN_KIND,
    C_TUN_SRC_HI,
    C_TUN_SRC_LO,
    C_TUNNEL,
    C_VLAN0,
    C_VLAN1,
    C_WINDOW,
    C_WIRE,
    ERR_IP_BAD,
    ERR_IP_SHORT,
    ERR_L4_SHORT,
    ERR_NAMES,
    IP_PROTO_NAMES,
    L2TP_PORT,
    L3_IPV4,
    L3_IPV6,
    LLC_NAMES,
    N_COLS,
    NOT_IP_ETHERTYPES,
    PPP_NAMES,
    TUN_ERSPAN,
    TUN_GENEVE,
    TUN_GRE,
    TUN_IP4,
    TUN_IP6,
    TUN_MPLS_IP,
    TUN_VXLAN,
    UDP_PORT_NAMES,
    UNSUPPORTED_ETHERTYPES,
    V4_MAPPED_HI,
    V4_MAPPED_LO,
    WHY_MALFORMED,
    WHY_NOT_IP,
    WHY_SNAPLEN,
    WHY_UNKNOWN_ETHERTYPE,
    WHY_UNSUPPORTED,
)
from dsaudit.decode.undecoded import add_reason
from dsaudit.errors import CaptureError, DsauditError
from dsaudit.sources.batch import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from dsaudit.sources.capture_file import (
    GZIP_MAGIC,
    PCAP_MAGICS,
    PCAPNG_SHB,
    CaptureInfo,
    file_size,
)
from dsaudit.time_text import NS

NEEDS = "the tshark engine needs tshark (apt-get install tshark) and pyshark (pip install pyshark)"

# tshark preferences, passed with -o so that a user's Wireshark profile cannot change them.
PREFERENCES = {
    # Every TCP segment keeps its own payload in tcp.payload; the naming stage reassembles
    # only the stream starts it needs, exactly as with the fast engine.
    "tcp.desegment_tcp_streams": "FALSE",
    # The flow table tells a retry from a new connection by the raw initial sequence number,
    # and finds retransmissions itself: tshark's sequence analysis would only cost time.
    "tcp.relative_sequence_numbers": "FALSE",
    "tcp.analyze_sequence_numbers": "FALSE",
    # tshark's own reassembly of IP fragments replaces dsaudit's.
    "ip.defragment": "TRUE",
    "ipv6.defragment": "TRUE",
}
# Only these protocols (with their subtrees) go into tshark's JSON: naming reads payload
# bytes, so the application layers' trees (TLS, HTTP, DNS, ...) would only be more text
# for pyshark to parse.
PROTOCOLS = "frame eth sll vlan ieee8021ad llc pppoes ppp ip ipv6 tcp udp icmp icmpv6 gre _ws.short"

BATCH_ROWS = 4096
MAX_PENDING_DATAGRAMS = 4096  # as the fast engine's reassembler

# Wiretap encapsulation (frame.encap_type) -> the LINKTYPE a pcap file would name.
WTAP_LINKTYPES = {
    1: LINKTYPE_ETHERNET,
    7: LINKTYPE_RAW,
    15: LINKTYPE_NULL,
    25: LINKTYPE_LINUX_SLL,
    129: LINKTYPE_IPV4,
    130: LINKTYPE_IPV6,
    210: LINKTYPE_LINUX_SLL2,
}

L3_LAYERS = {"ip": L3_IPV4, "ipv6": L3_IPV6}
TRANSPORTS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
VLAN_IDS = {"vlan": "vlan.id", "ieee8021ad": "ieee8021ad.id"}
# IPv6 extension headers tshark shows inside the ipv6 layer, in the order RFC 8200 gives.
IPV6_EXTENSIONS = ("hopopts", "routing", "fraghdr", "dstopts")
ICMP4_ERRORS = (3, 4, 5, 11, 12)
ICMP6_ERRORS = (1, 2, 3, 4)
ETHERNET_HEADER = 14
VLAN_TAG = 4
# The field that holds the next ethertype, per layer.
ETHERTYPE_FIELDS = {
    "eth": "eth.type",
    "sll": "sll.etype",
    "vlan": "vlan.etype",
    "ieee8021ad": "ieee8021ad.etype",
}
# Ethertypes of layers that are opened (tags, PPPoE, MPLS): the layers after them decide.
PASSED_ETHERTYPES = (0x8100, 0x88A8, 0x9100, 0x8864, 0x8847, 0x8848)
# tshark's layer between two IP layers -> the fast decoder's tunnel kind (else IP in IP).
TUNNEL_LAYERS = {
    "vxlan": TUN_VXLAN,
    "geneve": TUN_GENEVE,
    "erspan": TUN_ERSPAN,
    "gre": TUN_GRE,
    "mpls": TUN_MPLS_IP,
}


@functools.cache
def _tshark_version(tshark_path: str | None) -> Any:
    """tshark's version, asked once per run (pyshark would start ``tshark -v`` per file)."""
    from pyshark.tshark.tshark import get_tshark_version

    return get_tshark_version(tshark_path)


def _capture_class() -> type[Any]:
    """pyshark's FileCapture, made to report how tshark ended (built on first use)."""
    from pyshark import FileCapture
    from pyshark.tshark.output_parser.tshark_json import TsharkJsonParser

    class UntimedFrames(TsharkJsonParser):
        """pyshark's JSON parser, also for frames without a time.

        A pcapng Simple Packet Block carries no timestamp, so tshark leaves out
        frame.time_epoch, which pyshark 0.6 requires; such a frame gets an empty one.
        """

        def _parse_single_packet(self, packet: bytes) -> Any:
            try:
                return super()._parse_single_packet(packet)
            except KeyError as exc:
                if exc.args != ("frame.time_epoch",):
                    raise
            data = json.loads(packet)
            data["_source"]["layers"]["frame"]["frame.time_epoch"] = ""
            return super()._parse_single_packet(json.dumps(data).encode())

    class TsharkCapture(FileCapture):
        """FileCapture that keeps tshark's exit status and all it wrote to stderr.

        pyshark 0.6 kills tshark once its output ends without waiting for its exit status,
        so a damaged file could pass for a short one, and it keeps only the last stderr
        line. These overrides wait for the exit status instead and never raise from
        cleanup (pyshark would raise again from ``__del__`` at interpreter exit).
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.exit_status: int | None = None
            self.stderr_lines: list[str] = []
            super().__init__(*args, **kwargs)

        def _get_tshark_version(self) -> Any:
            return _tshark_version(self.tshark_path)

        def _setup_tshark_output_parser(self) -> Any:
            return UntimedFrames(self._get_tshark_version())

        async def _handle_process_stderr_forever(self, stderr: Any) -> None:
            while True:
                line = await stderr.readline()
                if not line:
                    return
                text = line.decode("utf-8", "replace").strip()
                if text and "Running as user" not in text:
                    self.stderr_lines.append(text)

        async def _cleanup_subprocess(self, process: Any) -> None:
            if process.returncode is None:
                if self._eof_reached:
                    try:
                        await asyncio.wait_for(process.wait(), 30)
                    except TimeoutError:
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
                        await process.wait()
                else:
                    # Stopped early on purpose (an error on our side): nothing more to read.
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            if self.exit_status is None:
                self.exit_status = process.returncode

    return TsharkCapture


def _check_tools() -> None:
    try:
        from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path
    except ImportError:
        raise DsauditError(NEEDS) from None
    try:
        get_process_path()
    except TSharkNotFoundException:
        raise DsauditError(NEEDS) from None


class RecordSink(Protocol):
    """Where the reader's record rows go; it keeps the counters the reader adds to."""

    stats: CaptureStats

    def feed_records(self, rec: np.ndarray, k: int, buf: np.ndarray) -> None:
        """Take ``rec[:k]``, whose payload offsets point into ``buf``."""


def read_with_tshark(paths: list[str], sink: RecordSink) -> list[CaptureInfo]:
    """Read captures in the order given, as one stream, through tshark, into ``sink``."""
    _check_tools()
    reader = _Reader(sink)
    return [reader.read(path) for path in paths]


# -- pyshark field access ---------------------------------------------------------------


def _field(layer: Any, name: str) -> Any:
    """Field ``name`` (a full tshark field name) of a pyshark JSON layer, or None."""
    try:
        return layer.get_field(name)
    except AttributeError:
        return None


def _text(layer: Any, name: str) -> str | None:
    value = _field(layer, name)
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if isinstance(value, str) else None


def _int(layer: Any, name: str) -> int | None:
    value = _text(layer, name)
    if value is None:
        return None
    try:
        return int(value, 16) if value[:2].lower() == "0x" else int(value)
    except ValueError:
        return None


def _hex_bytes(layer: Any, name: str) -> bytes:
    value = _text(layer, name)
    if not value:
        return b""
    try:
        return bytes.fromhex(value.replace(":", ""))
    except ValueError:
        return b""


def _epoch_ns(text: str) -> int:
    """Nanoseconds from tshark's "seconds.fraction" epoch time, without float rounding."""
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    ns = int(whole or "0") * NS + int((frac + "000000000")[:9])
    return -ns if negative else ns


# -- one frame -----------------------------------------------------------------------------


@dataclass
class _Hop:
    """One IP layer of a frame and what came with it."""

    l3: int
    layer: Any
    vlans: list[int]
    link_bytes: int  # link-layer header bytes right before it (an inner Ethernet frame)
    via: list[str]  # the protocols between the IP layer before it and this one
    transport: str | None = None
    tlayer: Any = None


def _hops(protocols: str, layers: dict[str, list[Any]]) -> tuple[list[_Hop], list[Any]]:
    """The IP layers of a frame in order, and the (name, layer) pairs after the last one.

    ``frame.protocols`` lists every protocol in order while the JSON groups repeated
    protocols under one key, so the n-th mention of a name is the n-th layer of that name.
    The packet quoted by an ICMP error sits inside the ICMP layer: the walk stops there.
    """
    seen: dict[str, int] = {}
    hops: list[_Hop] = []
    vlans: list[int] = []
    link = 0
    via: list[Any] = []
    for name in protocols.split(":"):
        i = seen.get(name, 0)
        seen[name] = i + 1
        found = layers.get(name)
        layer = found[i] if found is not None and i < len(found) else None
        if name not in L3_LAYERS and name not in TRANSPORTS:
            via.append((name, layer))
        if name in VLAN_IDS:
            link += VLAN_TAG
            vid = _int(layer, VLAN_IDS[name]) if layer is not None else None
            # VID 0 is a priority tag (802.1p), not a VLAN.
            if vid:
                vlans.append(vid & 0x0FFF)
        elif name == "eth":
            link = ETHERNET_HEADER
        elif name in L3_LAYERS:
            if layer is None:
                break
            hops.append(_Hop(L3_LAYERS[name], layer, vlans, link, [n for n, _ in via]))
            vlans, link, via = [], 0, []
        elif name in TRANSPORTS:
            if layer is None or not hops or hops[-1].transport is not None:
                break
            hops[-1].transport = name
            hops[-1].tlayer = layer
            if name in ("icmp", "icmpv6"):
                break
    return hops, via


def _tunnel_kind(hop: _Hop) -> int:
    """The TUN_* kind of the tunnel that carried ``hop``, as the fast decoder names it."""
    for name, kind in TUNNEL_LAYERS.items():
        if name in hop.via:
            return kind
    return TUN_IP4 if hop.l3 == L3_IPV4 else TUN_IP6


def _reason(tail: list[Any]) -> tuple[int, str] | None:
    """Why the frame was not decoded past its last IP layer, from the layers after it.

    The first layer the fast decoder would not open decides, named as it names it (the
    same tables, dsaudit.decode.undecoded).
    """
    mpls = False
    for name, layer in tail:
        if name == "gre":
            return WHY_UNSUPPORTED, f"GRE type 0x{_int(layer, 'gre.proto') or 0:04x}"
        if name == "esp":
            return WHY_UNSUPPORTED, IP_PROTO_NAMES[50]
        if name == "l2tp":
            return WHY_UNSUPPORTED, UDP_PORT_NAMES[L2TP_PORT]
        if name == "mpls":
            mpls = True
        if layer is None:
            continue
        if name == "ppp":
            proto = _int(layer, "ppp.protocol") or 0
            why = WHY_NOT_IP if proto >= 0x8000 else WHY_UNSUPPORTED
            known = PPP_NAMES.get(proto)
            return why, f"PPP {known}" if known else f"PPP protocol 0x{proto:04x}"
        if name == "llc":
            return WHY_NOT_IP, LLC_NAMES.get(_int(layer, "llc.dsap") or 0, "LLC")
        etype = _int(layer, ETHERTYPE_FIELDS[name]) if name in ETHERTYPE_FIELDS else None
        if etype is None or etype in PASSED_ETHERTYPES:
            continue
        if etype in NOT_IP_ETHERTYPES:
            return WHY_NOT_IP, NOT_IP_ETHERTYPES[etype]
        if etype in UNSUPPORTED_ETHERTYPES:
            return WHY_UNSUPPORTED, UNSUPPORTED_ETHERTYPES[etype]
        return WHY_UNKNOWN_ETHERTYPE, f"0x{etype:04x}"
    if mpls:
        return WHY_UNSUPPORTED, "MPLS payload of unknown type"
    return None


# IP version, source, destination, protocol, identification, VLAN ids: the fast engine's key.
DatagramKey = tuple[int, tuple[int, int], tuple[int, int], int, int, tuple[int, ...]]


@dataclass
class _FileState:
    """What the reader tracks within one capture file."""

    linktypes: set[int] = field(default_factory=set)
    last_ts: int = 0
    # Datagrams still missing fragments -> wire bytes of the fragments seen so far.
    fragments: dict[DatagramKey, int] = field(default_factory=dict)


class _Reader:
    """Turns tshark's packets into record rows and feeds them in batches."""

    def __init__(self, sink: RecordSink) -> None:
        self.sink = sink
        self.stats: CaptureStats = sink.stats
        self.rows: list[list[int]] = []
        self.payload = bytearray()
        self.frame_in_batch = 0
        self.file = _FileState()
        self.addresses: dict[str, tuple[int, int]] = {}
        self.failed: int | None = None  # the first ERR_* of the frame being read
        self.frame_cut = False  # whether the snap length cut that frame

    # -- files ---------------------------------------------------------------------------
    def read(self, path: str) -> CaptureInfo:
        from pyshark.tshark.tshark import TSharkVersionException

        info = _sniff(path)
        self.file = _FileState()
        try:
            capture = _capture_class()(
                path,
                keep_packets=False,
                use_json=True,
                include_raw=False,
                override_prefs=PREFERENCES,
                custom_parameters=["-J", PROTOCOLS],
            )
        except FileNotFoundError:
            raise CaptureError(path, None, "no such file") from None
        frames = 0
        broken: str | None = None
        packets = iter(capture)
        try:
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except (KeyError, ValueError, TypeError, IndexError) as exc:
                    # pyshark could not make a packet of tshark's output.
                    broken = f"tshark's output could not be read ({type(exc).__name__}: {exc})"
                    break
                self._packet(packet)
                frames += 1
        except PermissionError as exc:
            raise CaptureError(path, None, exc.strerror or str(exc)) from None
        except TSharkVersionException as exc:
            raise DsauditError(f"{NEEDS}: {exc}") from None
        finally:
            capture.close()
        self._flush()
        self._end_of_file()
        info.packets = frames
        info.linktypes = set(self.file.linktypes)
        status = capture.exit_status
        if broken is None and status not in (0, None):
            broken = " ".join(capture.stderr_lines) or f"tshark exited with status {status}"
        if broken is not None:
            if frames == 0:
                raise CaptureError(path, None, broken)
            info.damaged = broken
            info.warnings.append(f"{path}: {broken}; kept the {frames} packets read before it")
        else:
            info.bytes_read = file_size(path)
        return info

    def _end_of_file(self) -> None:
        # Datagrams still missing fragments at the end of the file are dropped.
        self.stats.fragments_dropped += len(self.file.fragments)

    # -- frames ----------------------------------------------------------------------------
    def _packet(self, packet: Any) -> None:
        s = self.stats
        frame = packet.frame_info
        # pcapng Simple Packet Blocks carry no time: take the previous packet's, as the
        # fast engine does.
        stamp = str(packet.sniff_timestamp)
        ts = _epoch_ns(stamp) if stamp else self.file.last_ts
        self.file.last_ts = ts
        wire = int(packet.length)
        caplen = _int(frame, "frame.cap_len")
        encap = _int(frame, "frame.encap_type")
        if encap in WTAP_LINKTYPES:
            self.file.linktypes.add(WTAP_LINKTYPES[encap])
        s.frames += 1
        if caplen is not None and caplen < wire:
            s.snaplen_cut_frames += 1
        s.first_ts_ns = ts if s.first_ts_ns is None else min(s.first_ts_ns, ts)
        s.last_ts_ns = ts if s.last_ts_ns is None else max(s.last_ts_ns, ts)
        layers = {layer.layer_name: [layer, *layer.duplicate_layers] for layer in packet.layers}
        hops, tail = _hops(_text(frame, "frame.protocols") or "", layers)
        reason = _reason(tail)
        if not hops:
            if any(n == "arp" for n, _ in tail):
                s.arp += 1
            else:
                s.other_l2 += 1
            why, detail = reason or (WHY_NOT_IP, "other")
            add_reason(s.not_decoded, why, detail)
            return
        short = "_ws.short" in layers
        self.failed = None
        self.frame_cut = caplen is not None and caplen < wire
        # A tunnel gives two packets, as tshark and the fast engine's tunnels see it: the
        # outer one (the flow a firewall passes) and the innermost one.
        self._hop(hops[0], ts, wire, short, None)
        if len(hops) > 1:
            inner = hops[-1]
            inner_wire = inner.link_bytes + self._ip_length(inner)
            self._hop(inner, ts, inner_wire, short, hops[-2])
        if self.failed is not None:
            cut = self.frame_cut and self.failed != ERR_IP_BAD
            why = WHY_SNAPLEN if cut else WHY_MALFORMED
            add_reason(s.not_decoded, why, ERR_NAMES[self.failed])
        elif reason is not None:
            add_reason(s.not_decoded, *reason)
        self.frame_in_batch += 1
        if len(self.rows) >= BATCH_ROWS:
            self._flush()

    def _fragment(self, key: DatagramKey, wire: int) -> None:
        pending = self.file.fragments
        if key not in pending and len(pending) >= MAX_PENDING_DATAGRAMS:
            # Bounded memory: the datagram waiting longest is given up.
            del pending[next(iter(pending))]
            self.stats.fragments_dropped += 1
        pending[key] = pending.get(key, 0) + wire

    def _flush(self) -> None:
        if self.rows:
            rec = np.array(self.rows, dtype=np.int64).reshape(-1, N_COLS)
            # np.frombuffer keeps the bytearray alive and writable; a new one starts below.
            buf = np.frombuffer(self.payload, dtype=np.uint8)
            if not len(buf):
                buf = np.zeros(1, np.uint8)
            self.sink.feed_records(rec, rec.shape[0], buf)
        self.rows = []
        self.payload = bytearray()
        self.frame_in_batch = 0

    # -- one IP layer ----------------------------------------------------------------------
    def _address(self, text: str | None, v6: bool) -> tuple[int, int] | None:
        if text is None:
            return None
        got = self.addresses.get(text)
        if got is None:
            try:
                if v6:
                    raw = socket.inet_pton(socket.AF_INET6, text)
                    got = (
                        int.from_bytes(raw[:8], "big", signed=True),
                        int.from_bytes(raw[8:], "big", signed=True),
                    )
                else:
                    raw = socket.inet_pton(socket.AF_INET, text)
                    got = (V4_MAPPED_HI, V4_MAPPED_LO | int.from_bytes(raw, "big"))
            except (OSError, ValueError):
                return None
            if len(self.addresses) >= 1 << 16:
                self.addresses.clear()
            self.addresses[text] = got
        return got

    @staticmethod
    def _ip_length(hop: _Hop) -> int:
        """Bytes of the IP packet as its header claims them."""
        if hop.l3 == L3_IPV4:
            return _int(hop.layer, "ip.len") or 0
        return (_int(hop.layer, "ipv6.plen") or 0) + 40

    def _hop(self, hop: _Hop, ts: int, wire: int, short: bool, carrier: _Hop | None) -> None:
        """One IP layer as a row; ``carrier`` is the IP layer of the tunnel it came in."""
        s = self.stats
        tunnel = carrier is not None
        v6 = hop.l3 == L3_IPV6
        ip = hop.layer
        row = [0] * N_COLS
        row[C_FRAME] = self.frame_in_batch
        row[C_TS] = ts
        row[C_WIRE] = wire
        row[C_L3] = hop.l3
        row[C_VLAN0] = hop.vlans[0] if hop.vlans else -1
        row[C_VLAN1] = hop.vlans[1] if len(hop.vlans) > 1 else -1
        row[C_TUNNEL] = int(tunnel)
        if carrier is not None:
            s.tunnelled += 1
            row[C_TUN_KIND] = _tunnel_kind(hop)
            v6_outer = carrier.l3 == L3_IPV6
            for cols, name in (
                ((C_TUN_SRC_HI, C_TUN_SRC_LO), "src"),
                ((C_TUN_DST_HI, C_TUN_DST_LO), "dst"),
            ):
                field_name = f"ipv6.{name}" if v6_outer else f"ip.{name}"
                row[cols[0]], row[cols[1]] = self._address(
                    _text(carrier.layer, field_name), v6_outer
                ) or (0, 0)
        src = self._address(_text(ip, "ipv6.src" if v6 else "ip.src"), v6)
        dst = self._address(_text(ip, "ipv6.dst" if v6 else "ip.dst"), v6)
        if src is None or dst is None:
            # tshark shows no addresses for a header it could not read: cut short if the
            # capture cut the frame, else invalid (as the fast decoder tells them apart).
            self._undecodable(ERR_IP_SHORT if self.frame_cut else ERR_IP_BAD)
            return
        row[C_SRC_HI], row[C_SRC_LO] = src
        row[C_DST_HI], row[C_DST_LO] = dst
        row[C_L3_LEN] = self._ip_length(hop)
        if v6:
            fragment = _ipv6_fragment(ip)
            proto, extensions = _ipv6_chain(ip)
            ip_payload = (_int(ip, "ipv6.plen") or 0) - extensions
        else:
            fragment = _ipv4_fragment(ip)
            proto = _int(ip, "ip.proto")
            row[C_IPID] = _int(ip, "ip.id") or 0
            ip_payload = (_int(ip, "ip.len") or 0) - (_int(ip, "ip.hdr_len") or 20)
        if fragment is not None:
            s.fragments += 1
            key = (hop.l3, src, dst, proto or 0, fragment.ident, tuple(hop.vlans))
            if fragment.complete:
                s.reassembled += 1
                # As the fast engine: the datagram's bytes are those of all its fragments,
                # overlapping ones that tshark's reassembly left out included.
                row[C_WIRE] += self.file.fragments.pop(key, 0)
            elif hop.transport is None:
                # A piece of a datagram that tshark completes in a later frame (or never):
                # counted as the fast engine counts fragments, not fed as a packet.
                self._fragment(key, wire)
                self._count_ip(v6)
                return
        if hop.transport is not None:
            proto = TRANSPORTS[hop.transport]
        if proto is None:
            self._undecodable(ERR_IP_SHORT)
            return
        row[C_PROTO] = proto
        if hop.transport == "tcp":
            ok = self._tcp(row, hop.tlayer)
        elif hop.transport == "udp":
            ok = self._udp(row, hop.tlayer)
        elif hop.transport is not None:
            ok = self._icmp(row, hop.tlayer, v6, max(0, ip_payload - 8))
        else:
            # No header found for TCP/UDP/ICMP means the capture cut it off; other IP
            # protocols (GRE, ESP, IGMP, ...) have no ports.
            ok = proto not in TRANSPORTS.values()
            row[C_L4_LEN] = max(0, ip_payload)
        if not ok:
            self._undecodable(ERR_L4_SHORT)
            return
        # tshark adds _ws.short where the capture cut a header short; a TCP or UDP payload
        # shorter than its header claims was cut too. (ICMP and other protocols carry no
        # payload bytes in the rows, so their lengths say nothing.)
        cut = hop.transport in ("tcp", "udp") and row[C_L4_LEN] > row[C_PAY_LEN]
        row[C_TRUNC] = int(short or cut)
        s.ip_truncated += row[C_TRUNC]
        self._count_ip(v6)
        self.rows.append(row)

    def _count_ip(self, v6: bool) -> None:
        if v6:
            self.stats.ipv6 += 1
        else:
            self.stats.ipv4 += 1

    def _undecodable(self, err: int) -> None:
        if self.failed is None:
            self.failed = err
        name = ERR_NAMES[err]
        self.stats.undecodable[name] = self.stats.undecodable.get(name, 0) + 1

    def _put_payload(self, row: list[int], data: bytes, claimed: int) -> None:
        # As the fast engine: never more payload than the header claims.
        if claimed < len(data):
            data = data[:claimed]
        row[C_PAY_OFF] = len(self.payload)
        row[C_PAY_LEN] = len(data)
        row[C_L4_LEN] = claimed
        self.payload += data

    # -- transports -----------------------------------------------------------------------
    def _tcp(self, row: list[int], tcp: Any) -> bool:
        sport = _int(tcp, "tcp.srcport")
        dport = _int(tcp, "tcp.dstport")
        flags = _int(tcp, "tcp.flags")
        seq = _int(tcp, "tcp.seq_raw")
        if seq is None:
            seq = _int(tcp, "tcp.seq")
        if sport is None or dport is None or flags is None or seq is None:
            return False
        ack = _int(tcp, "tcp.ack_raw")
        row[C_SPORT] = sport
        row[C_DPORT] = dport
        row[C_FLAGS] = flags & 0xFF
        row[C_SEQ] = seq
        row[C_ACK] = (_int(tcp, "tcp.ack") or 0) if ack is None else ack
        row[C_WINDOW] = _int(tcp, "tcp.window_size_value") or 0
        data = _hex_bytes(tcp, "tcp.payload")
        claimed = _int(tcp, "tcp.len")
        self._put_payload(row, data, len(data) if claimed is None else claimed)
        return True

    def _udp(self, row: list[int], udp: Any) -> bool:
        sport = _int(udp, "udp.srcport")
        dport = _int(udp, "udp.dstport")
        if sport is None or dport is None:
            return False
        row[C_SPORT] = sport
        row[C_DPORT] = dport
        data = _hex_bytes(udp, "udp.payload")
        length = _int(udp, "udp.length")
        # Length 0 (jumbograms, segmentation offload): the captured bytes are the payload.
        claimed = length - 8 if length is not None and length >= 8 else len(data)
        self._put_payload(row, data, claimed)
        return True

    def _icmp(self, row: list[int], icmp: Any, v6: bool, claimed: int) -> bool:
        prefix = "icmpv6" if v6 else "icmp"
        itype = _int(icmp, f"{prefix}.type")
        code = _int(icmp, f"{prefix}.code")
        if itype is None or code is None:
            return False
        row[C_ICMP_TYPE] = itype
        row[C_ICMP_CODE] = code
        # The header's second 32-bit word, as the fast engine keeps it: the echo identifier
        # and sequence number, or the MTU of "fragmentation needed" / "packet too big".
        if v6:
            if itype in (128, 129):
                ident = _int(icmp, "icmpv6.echo.identifier") or 0
                row[C_ICMP_REST] = (ident << 16) | (_int(icmp, "icmpv6.echo.sequence_number") or 0)
            elif itype == 2:
                row[C_ICMP_REST] = (_int(icmp, "icmpv6.mtu") or 0) & 0xFFFFFFFF
        elif itype in (0, 8):
            ident = _int(icmp, "icmp.ident") or 0
            row[C_ICMP_REST] = (ident << 16) | (_int(icmp, "icmp.seq") or 0)
        elif itype == 3 and code == 4:
            row[C_ICMP_REST] = (_int(icmp, "icmp.mtu") or 0) & 0xFFFF
        errors = ICMP6_ERRORS if v6 else ICMP4_ERRORS
        quoted = _quoted_packet(icmp) if itype in errors else b""
        row[C_PAY_OFF] = len(self.payload)
        row[C_PAY_LEN] = len(quoted)
        row[C_L4_LEN] = claimed
        self.payload += quoted
        return True


@dataclass
class _Fragment:
    """What an IP layer says about fragmentation."""

    ident: int
    complete: bool  # tshark reassembled the datagram in this frame


def _ipv4_fragment(ip: Any) -> _Fragment | None:
    """The fragment facts of an IPv4 layer, or None when it is not a fragment."""
    ident = _int(ip, "ip.id") or 0
    if _field(ip, "ip.fragments") is not None:
        return _Fragment(ident, True)
    flags = _field(ip, "ip.flags_tree")
    mf = _int(flags, "ip.flags.mf") if flags is not None else None
    if mf is None:
        mf = (_int(ip, "ip.flags") or 0) & 1
    if mf or _int(ip, "ip.frag_offset"):
        return _Fragment(ident, False)
    return None


def _ipv6_fragment(ip: Any) -> _Fragment | None:
    """As :func:`_ipv4_fragment`; an atomic fragment (RFC 6946) is not a fragment."""
    header = _field(ip, "ipv6.fraghdr")
    if header is None or isinstance(header, str | list):
        return None
    ident = _int(header, "ipv6.fraghdr.ident") or 0
    if _field(ip, "ipv6.fragments") is not None:
        return _Fragment(ident, True)
    if _int(header, "ipv6.fraghdr.more") or _int(header, "ipv6.fraghdr.offset"):
        return _Fragment(ident, False)
    return None


def _ipv6_chain(ip: Any) -> tuple[int | None, int]:
    """(next header after the last extension header, bytes of extension headers)."""
    proto = _int(ip, "ipv6.nxt")
    size = 0
    for ext in IPV6_EXTENSIONS:
        found = _field(ip, f"ipv6.{ext}")
        if found is None or isinstance(found, str):
            continue
        for header in found if isinstance(found, list) else [found]:
            nxt = _int(header, f"ipv6.{ext}.nxt")
            if nxt is not None:
                proto = nxt
            size += 8 if ext == "fraghdr" else (_int(header, f"ipv6.{ext}.len_oct") or 0)
    return proto, size


def _quoted_packet(icmp: Any) -> bytes:
    """The start of the packet an ICMP error quotes, rebuilt from tshark's fields.

    tshark gives the quoted headers as fields, not bytes; the naming stage reads only
    the version, protocol, addresses and ports, so those are put where they belong.
    """
    v4 = _field(icmp, "ip")
    v6 = _field(icmp, "ipv6")
    ports = b""
    for name in ("tcp", "udp"):
        layer = _field(icmp, name)
        if layer is not None and not isinstance(layer, str | list):
            sport = _int(layer, f"{name}.srcport")
            dport = _int(layer, f"{name}.dstport")
            if sport is not None and dport is not None:
                ports = sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
            break
    try:
        if v4 is not None and not isinstance(v4, str | list):
            header = bytearray(20)
            header[0] = 0x45
            header[9] = (_int(v4, "ip.proto") or 0) & 0xFF
            header[12:16] = socket.inet_pton(socket.AF_INET, _text(v4, "ip.src") or "")
            header[16:20] = socket.inet_pton(socket.AF_INET, _text(v4, "ip.dst") or "")
            return bytes(header) + ports
        if v6 is not None and not isinstance(v6, str | list):
            header = bytearray(40)
            header[0] = 0x60
            header[6] = (_int(v6, "ipv6.nxt") or 0) & 0xFF
            header[8:24] = socket.inet_pton(socket.AF_INET6, _text(v6, "ipv6.src") or "")
            header[24:40] = socket.inet_pton(socket.AF_INET6, _text(v6, "ipv6.dst") or "")
            return bytes(header) + ports
    except (OSError, ValueError):
        return b""
    return b""


# -- the file itself ---------------------------------------------------------------------


def _sniff(path: str) -> CaptureInfo:
    """What the file's first bytes say (tshark itself reads many more formats)."""
    info = CaptureInfo(path=path, format="other")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise CaptureError(path, None, "no such file") from None
    except IsADirectoryError:
        raise CaptureError(path, None, "is a directory, not a capture file") from None
    except OSError as exc:
        raise CaptureError(path, None, exc.strerror or str(exc)) from None
    if head[:2] == GZIP_MAGIC:
        info.compressed = True
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(4)
        except (OSError, EOFError, zlib.error):
            head = b""
    if head in PCAP_MAGICS:
        info.format = "pcap"
    elif head == PCAPNG_SHB:
        info.format = "pcapng"
    return info
