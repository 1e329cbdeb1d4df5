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

import ctypes
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dsaudit.errors import CaptureError, DsauditError
from dsaudit.sources.batch import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, PacketBatch
from dsaudit.text.safe import for_terminal
from dsaudit.time_text import NS

DEFAULT_SNAPLEN = 262144
# What the capture thread may hold before the audit loop drains it. Past this the thread
# waits, the kernel's queue fills and the kernel drops (and counts) packets: memory stays
# bounded and every loss is reported.
DEFAULT_BUFFER_BYTES = 256 << 20
KERNEL_BUFFER_BYTES = 32 << 20

# Linux constants (linux/if_packet.h, linux/if_arp.h, asm/socket.h).
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
DLT_EN10MB = 1
DLT_RAW = 12  # libpcap's DLT for raw IP on Linux (LINKTYPE_RAW in files)
PR_SET_PDEATHSIG = 1

ARPHRD_NAMES = {
    1: "ethernet",
    772: "loopback",
    65534: "none (raw IP)",
    519: "raw IP",
    768: "ipip",
    769: "ip6ip6",
    776: "sit",
    778: "gre",
    823: "ip6gre",
    801: "wlan",
    803: "wlan (radiotap)",
    512: "ppp",
}

_AUXDATA = struct.Struct("IIIHHHH")
_TIMESPEC = struct.Struct("qq")
_STATS = struct.Struct("II")
_SLL = struct.Struct(">HHH8sH")
_VLAN = struct.Struct(">HH")
_MREQ = struct.Struct("iHH8s")


class CapturePermissionError(DsauditError):
    """The process may not open a packet socket (or dumpcap may not capture)."""

    def __init__(self, iface: str, program: str) -> None:
        super().__init__(
            f"capturing on {for_terminal(iface)} needs root, or the CAP_NET_RAW and "
            f"CAP_NET_ADMIN capabilities for {program}: run as root, or "
            f"`sudo setcap cap_net_raw,cap_net_admin=eip {program}`"
        )


class UnknownInterfaceError(DsauditError):
    """No interface of that name on this machine."""

    def __init__(self, iface: str, known: list[InterfaceInfo]) -> None:
        listed = "; ".join(i.describe() for i in known) or "none found"
        super().__init__(
            f"there is no interface named '{for_terminal(iface)}'; the interfaces here are: "
            f"{listed}"
        )


@dataclass(frozen=True)
class InterfaceInfo:
    """A capture interface as the kernel describes it."""

    name: str
    index: int
    kind: str
    mac: str
    up: bool
    addresses: tuple[str, ...]

    def describe(self) -> str:
        """``name (addr, addr)`` for one-line messages."""
        name = for_terminal(self.name)
        return f"{name} ({', '.join(self.addresses)})" if self.addresses else name


def _sys(name: str, leaf: str) -> str:
    try:
        with open(f"/sys/class/net/{name}/{leaf}", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _addresses() -> dict[str, tuple[str, ...]]:
    """Addresses per interface, from scapy's rtnetlink view of the system (no privilege)."""
    try:
        import scapy.arch  # noqa: F401 - loads the Linux provider that fills conf.ifaces
        from scapy.config import conf

        conf.ifaces.reload()
        out: dict[str, tuple[str, ...]] = {}
        for name, iface in conf.ifaces.items():
            ips = getattr(iface, "ips", {}) or {}
            out[str(name)] = tuple(str(a) for v in (4, 6) for a in ips.get(v, []))
        return out
    except Exception:  # noqa: BLE001 - addresses are a courtesy; the names still list
        return {}


def list_interfaces() -> list[InterfaceInfo]:
    """Every network interface (from /sys/class/net) with its addresses, by name."""
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        names = sorted(name for _, name in socket.if_nameindex())
    addrs = _addresses()
    out: list[InterfaceInfo] = []
    for name in names:
        hatype = _sys(name, "type")
        kind = ARPHRD_NAMES.get(int(hatype), f"arphrd {hatype}") if hatype.isdigit() else "?"
        flags = _sys(name, "flags")
        up = bool(int(flags, 16) & 1) if flags.startswith("0x") else False
        index = _sys(name, "ifindex")
        out.append(
            InterfaceInfo(
                name=name,
                index=int(index) if index.isdigit() else 0,
                kind=kind,
                mac=_sys(name, "address"),
                up=up,
                addresses=addrs.get(name, ()),
            )
        )
    return out


def check_interface(iface: str) -> None:
    """Raise UnknownInterfaceError (listing the real ones) unless ``iface`` exists."""
    if iface == "any":
        return
    try:
        names = set(os.listdir("/sys/class/net"))
    except OSError:
        names = {name for _, name in socket.if_nameindex()}
    if iface not in names:
        raise UnknownInterfaceError(iface, list_interfaces())


@dataclass
class SourceStats:
    """What a capture backend has seen so far."""

    packets: int = 0  # frames handed to the audit
    bytes: int = 0  # their length on the wire
    kernel_drops: int = 0  # dropped by the kernel (queue full) before we could read them
    engine_drops: int = 0  # dropped by the capture engine itself (dumpcap)
    drops_final: bool = False  # dumpcap only reports drops when it stops

    def as_dict(self) -> dict[str, int]:
        """Plain values for JSON events."""
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "kernel_drops": self.kernel_drops,
            "engine_drops": self.engine_drops,
        }


class LiveSource(Protocol):
    """A running capture the audit loop drains."""

    engine: str
    iface: str
    linktype: int
    snaplen: int

    def start(self) -> None:
        """Begin capturing (the socket or process is already open)."""

    def take(self) -> PacketBatch | None:
        """Every frame captured since the last call (None when there are none)."""

    @property
    def running(self) -> bool:
        """False once the capture ended by itself (--count reached, dumpcap exited)."""

    def stats(self) -> SourceStats:
        """Counters so far."""

    def stop(self) -> None:
        """Stop capturing; frames already captured stay available to take()."""

    def error(self) -> str | None:
        """Why the capture ended by itself, when it was a failure."""


# ----------------------------------------------------------------------------- scapy


class _Captured:
    """One frame as the packet socket hands it to AsyncSniffer's prn (no dissection)."""

    __slots__ = ("ts_ns", "data", "wirelen", "sniffed_on")

    def __init__(self, ts_ns: int, data: bytes, wirelen: int) -> None:
        self.ts_ns = ts_ns
        self.data = data
        self.wirelen = wirelen
        self.sniffed_on: Any = None


def _compile_bpf(expression: str, dlt: int) -> Any:
    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception

    try:
        return compile_filter(expression, linktype=dlt)
    except Scapy_Exception as exc:
        raise DsauditError(f"--bpf: {for_terminal(str(exc))}") from None
    except ImportError as exc:
        raise DsauditError(f"--bpf needs libpcap to compile the filter ({exc})") from None


def _attach_bpf(sock: socket.socket, expression: str, dlt: int) -> None:
    from scapy.arch.common import free_filter
    from scapy.libs.structures import sock_fprog

    program = _compile_bpf(expression, dlt)
    try:
        fprog = sock_fprog(program.bf_len, program.bf_insns)
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    finally:
        free_filter(program)


def _scapy_socket_class() -> type[Any]:
    """A scapy SuperSocket over a raw packet socket whose recv returns bytes, not packets.

    Built on first use so that importing this module does not import scapy.
    """
    from scapy.supersocket import SuperSocket

    class PacketSocket(SuperSocket):
        """AF_PACKET socket with the BPF program attached before it is bound."""

        def __init__(self, iface: str, bpf: str | None, snaplen: int, promisc: bool) -> None:
            # Closed until fully open: scapy's __del__ calls close() on a failed socket too.
            self.closed = True
            self._stats_lock = threading.Lock()
            self.kernel_seen = 0
            self.kernel_drops = 0
            self.iface = iface
            self.promisc = promisc
            self.snaplen = snaplen
            hatype = _sys(iface, "type") if iface != "any" else ""
            # Ethernet and loopback frames keep their link header; anything else (tunnels,
            # "any") is read without it and given a Linux cooked header, as libpcap does.
            self.cooked = not (hatype.isdigit() and int(hatype) in (ARPHRD_ETHER, ARPHRD_LOOPBACK))
            self.linktype = LINKTYPE_LINUX_SLL if self.cooked else LINKTYPE_ETHERNET
            kind = socket.SOCK_DGRAM if self.cooked else socket.SOCK_RAW
            # Protocol 0 receives nothing until bind: the filter is in place before the
            # first packet arrives (libpcap opens its sockets the same way).
            proto = socket.htons(ETH_P_ALL) if iface == "any" else 0
            try:
                sock = socket.socket(socket.AF_PACKET, kind, proto)
            except PermissionError:
                raise CapturePermissionError(iface, os.path.realpath(sys.executable)) from None
            self.ins = sock
            self.outs = None
            try:
                if bpf:
                    _attach_bpf(sock, bpf, DLT_RAW if self.cooked else DLT_EN10MB)
                sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, KERNEL_BUFFER_BYTES)
                except PermissionError:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, KERNEL_BUFFER_BYTES)
                if iface == "any":
                    self._discard_pending()
                else:
                    sock.bind((iface, ETH_P_ALL))
                    if promisc:
                        index = socket.if_nametoindex(iface)
                        mreq = _MREQ.pack(index, PACKET_MR_PROMISC, 0, b"")
                        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            except PermissionError:
                sock.close()
                raise CapturePermissionError(iface, os.path.realpath(sys.executable)) from None
            except OSError as exc:
                sock.close()
                raise DsauditError(
                    f"cannot capture on {for_terminal(iface)}: {exc.strerror or exc}"
                ) from None
            except BaseException:
                sock.close()
                raise
            self._buf = bytearray(snaplen)
            self._view = memoryview(self._buf)
            self._anc = socket.CMSG_SPACE(_AUXDATA.size) + socket.CMSG_SPACE(_TIMESPEC.size)
            self.closed = False

        def _discard_pending(self) -> None:
            # An unbound ETH_P_ALL socket queues packets from creation on, before the
            # filter was attached: those are not ours to keep.
            while select.select([self.ins], [], [], 0)[0]:
                self.ins.recv(65536)

        def recv(self, x: int = 0, **kwargs: Any) -> _Captured | None:  # type: ignore[override]
            n, anc, _, addr = self.ins.recvmsg_into([self._view], self._anc)
            _, proto, pkttype, hatype, hwaddr = addr
            if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK:
                return None  # loopback shows every packet leaving and arriving: keep one
            ts = 0
            wire = n
            vlan: tuple[int, int] | None = None
            for level, kind, data in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                    status, tp_len, _, _, _, tci, tpid = _AUXDATA.unpack_from(data)
                    wire = tp_len
                    if status & TP_STATUS_VLAN_VALID or tci:
                        vlan = (tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100, tci)
                elif level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(data)
                    ts = sec * NS + nsec
            if not ts:
                ts = time.time_ns()
            frame = bytes(self._view[:n])
            # The kernel takes an accelerated VLAN tag out of the frame; put it back where
            # it was so VLAN keys and decoding see what was on the wire.
            if self.cooked:
                outer = proto
                if vlan is not None:
                    outer = vlan[0]
                    frame = _VLAN.pack(vlan[1], proto) + frame
                    wire += 4
                head = _SLL.pack(pkttype, hatype, min(len(hwaddr), 8), hwaddr[:8], outer)
                frame = head + frame
                wire += _SLL.size
            elif vlan is not None and n >= 12:
                frame = frame[:12] + _VLAN.pack(*vlan) + frame[12:]
                wire += 4
            return _Captured(ts, frame, max(wire, len(frame)))

        def kernel_stats(self) -> tuple[int, int]:
            """Packets the socket saw and dropped, so far (the kernel resets on read)."""
            with self._stats_lock:
                if not self.closed:
                    try:
                        raw = self.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
                        seen, drops = _STATS.unpack(raw)
                        self.kernel_seen += seen
                        self.kernel_drops += drops
                    except OSError:
                        pass
                return self.kernel_seen, self.kernel_drops

        def close(self) -> None:
            self.kernel_stats()
            with self._stats_lock:
                SuperSocket.close(self)

    return PacketSocket


class ScapySource:
    """Capture with scapy's AsyncSniffer on a kernel-filtered packet socket."""

    engine = "scapy"

    def __init__(
        self,
        iface: str,
        bpf: str | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = True,
        count: int | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        from scapy.sendrecv import AsyncSniffer

        self.iface = iface
        self.snaplen = snaplen
        self._sock = _scapy_socket_class()(iface, bpf, snaplen, promisc)
        self.linktype: int = self._sock.linktype
        self._limit = buffer_bytes
        self._cond = threading.Condition()
        self._frames: list[tuple[int, bytes]] = []
        self._wire: list[int] = []
        self._held = 0
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._stats = SourceStats()
        self._sniffer = AsyncSniffer(
            opened_socket=self._sock,
            prn=self._keep,
            store=False,
            count=count or 0,
            started_callback=self._started.set,
        )

    def start(self) -> None:
        """Start the sniffer thread and wait until it listens."""
        self._sniffer.start()
        self._started.wait(5.0)

    def _keep(self, frame: _Captured) -> None:
        with self._cond:
            while self._held > self._limit and not self._stopping.is_set():
                self._cond.wait(0.1)
            self._frames.append((frame.ts_ns, frame.data))
            self._wire.append(frame.wirelen)
            self._held += len(frame.data)

    def take(self) -> PacketBatch | None:
        """Every frame captured since the last call, as one batch."""
        with self._cond:
            frames, wire = self._frames, self._wire
            self._frames, self._wire, self._held = [], [], 0
            self._cond.notify_all()
        if not frames:
            return None
        self._stats.packets += len(frames)
        self._stats.bytes += sum(wire)
        return PacketBatch.from_frames(frames, self.linktype, wire)

    @property
    def running(self) -> bool:
        """False once --count was reached or the socket failed."""
        thread = self._sniffer.thread
        return thread is not None and thread.is_alive()

    def stats(self) -> SourceStats:
        """Counters so far; kernel drops straight from the socket."""
        _, drops = self._sock.kernel_stats()
        self._stats.kernel_drops = drops
        return self._stats

    def error(self) -> str | None:
        """The sniffer thread's exception, if it died of one."""
        exc = self._sniffer.exception
        return None if exc is None else f"capture failed: {exc}"

    def stop(self) -> None:
        """Stop the sniffer and close the socket; buffered frames stay for take()."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self.running:
            try:
                self._sniffer.stop(join=True)
            except Exception:  # noqa: BLE001 - already stopping on its own
                self._sniffer.join(timeout=5.0)
        self.stats()
        self._sock.close()


# ----------------------------------------------------------------------------- dumpcap


class PcapStream:
    """Turns a pcap byte stream arriving in pieces into PacketBatches of whole records."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pending = bytearray()
        self._base = 0
        self.linktype: int | None = None
        self.snaplen = 0
        self._big = False
        self._nsec = False

    def feed(self, data: bytes) -> PacketBatch | None:
        """Add bytes; return the records now complete (None when there are none)."""
        # Imported here: the compiled walker costs a JIT cache load that `dsaudit interfaces`
        # and the scapy engine do not need.
        from dsaudit.sources.capture_file import MAX_SNAPLEN
        from dsaudit.sources.record_walk import BAD_RECORD, walk_pcap

        self._pending += data
        if self.linktype is None:
            if len(self._pending) < 24:
                return None
            self._header(bytes(self._pending[:24]))
            del self._pending[:24]
            self._base = 24
        if len(self._pending) < 16:
            return None
        buf = np.frombuffer(bytes(self._pending), dtype=np.uint8)
        cap = len(buf) // 16 + 1  # a record is at least 16 bytes: the arrays cannot fill
        off = np.empty(cap, np.int64)
        caplen = np.empty(cap, np.int32)
        wire = np.empty(cap, np.int32)
        ts = np.empty(cap, np.int64)
        links = np.empty(cap, np.int32)
        foff = np.empty(cap, np.int64)
        assert self.linktype is not None
        max_cap = max(MAX_SNAPLEN, self.snaplen)
        k, pos, status = walk_pcap(
            buf,
            0,
            len(buf),
            self._big,
            self._nsec,
            max_cap,
            self.linktype,
            self._base,
            off,
            caplen,
            wire,
            ts,
            links,
            foff,
            0,
        )
        if status == BAD_RECORD:
            raise CaptureError(
                self.name, self._base + int(pos), "impossible record length in the pcap stream"
            )
        del self._pending[: int(pos)]
        self._base += int(pos)
        if not k:
            return None
        return PacketBatch(buf, off[:k], caplen[:k], wire[:k], ts[:k], links[:k], foff[:k])

    def _header(self, head: bytes) -> None:
        from dsaudit.sources.capture_file import PCAP_MAGICS

        magic = head[:4]
        if magic not in PCAP_MAGICS:
            raise CaptureError(self.name, 0, f"not a pcap stream (starts with 0x{magic.hex()})")
        self._big, self._nsec = PCAP_MAGICS[magic]
        fmt = ">HHiIII" if self._big else "<HHiIII"
        _, _, _, _, self.snaplen, network = struct.unpack_from(fmt, head, 4)
        self.linktype = network & 0x0FFFFFFF


def _die_with_parent() -> None:
    """In the dumpcap child: get SIGTERM when dsaudit dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


_DUMPCAP_DROPS = re.compile(
    r"received/dropped on interface '[^']*': (\d+)/(\d+)"
    r"(?: \(pcap:(\d+)/dumpcap:(\d+)/flushed:(\d+)/ps_ifdrop:(\d+)\))?"
)


def parse_dumpcap_drops(text: str) -> tuple[int, int] | None:
    """(kernel, engine) drops from dumpcap's last statistics line, if it printed one.

    libpcap's own and the interface's drops are the kernel's; dumpcap's and "flushed" are
    the capture engine's. Older dumpcaps print only the total, counted as the kernel's.
    """
    found = list(_DUMPCAP_DROPS.finditer(text))
    if not found:
        return None
    m = found[-1]
    if m.group(3) is None:
        return int(m.group(2)), 0
    return int(m.group(3)) + int(m.group(6)), int(m.group(4)) + int(m.group(5))


class DumpcapSource:
    """Capture with ``dumpcap`` and read the pcap it streams to its stdout."""

    engine = "tshark"

    def __init__(
        self,
        iface: str,
        bpf: str | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = True,
        count: int | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        program: str | None = None,
    ) -> None:
        exe = program or shutil.which("dumpcap")
        if exe is None:
            raise DsauditError(
                "--engine tshark needs dumpcap (Debian: apt install tshark); or use --engine scapy"
            )
        self.iface = iface
        self.snaplen = snaplen
        self.program = os.path.realpath(exe)
        cmd = [exe, "-i", iface, "-P", "-w", "-", "-s", str(snaplen)]
        cmd += ["-B", str(max(1, KERNEL_BUFFER_BYTES >> 20))]
        if bpf:
            cmd += ["-f", bpf]
        if count:
            cmd += ["-c", str(count)]
        if not promisc:
            cmd.append("-p")
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,  # only prctl: safe between fork and exec
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._out = self._proc.stdout.fileno()
        self._stream = PcapStream(f"dumpcap -i {iface}")
        self._err = bytearray()
        self._err_thread = threading.Thread(
            target=self._read_stderr, name="dsaudit-dumpcap-stderr", daemon=True
        )
        self._err_thread.start()
        self._early = self._read_header()
        self.linktype = self._stream.linktype or LINKTYPE_ETHERNET
        self._limit = buffer_bytes
        self._cond = threading.Condition()
        self._data = bytearray()
        self._eof = False
        self._stopping = threading.Event()
        self._stats = SourceStats(drops_final=True)
        self._reader = threading.Thread(
            target=self._read_stdout, name="dsaudit-dumpcap", daemon=True
        )

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        fd = self._proc.stderr.fileno()
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                return
            self._err += chunk
            if len(self._err) > 65536:
                del self._err[:-32768]

    def _stderr_text(self) -> str:
        return self._err.decode("utf-8", errors="replace")

    def _read_header(self) -> PacketBatch | None:
        """Wait for the pcap header (dumpcap writes it once the interface is open).

        Returns the records that arrived with it, if any.
        """
        got = bytearray()
        deadline = time.monotonic() + 15.0
        while len(got) < 24:
            remain = deadline - time.monotonic()
            if remain <= 0:
                self._kill()
                raise DsauditError(f"dumpcap did not start capturing on {for_terminal(self.iface)}")
            if not select.select([self._out], [], [], remain)[0]:
                continue
            chunk = os.read(self._out, 65536)
            if not chunk:
                self._proc.wait(timeout=5.0)
                self._err_thread.join(timeout=2.0)
                raise self._failure(self._stderr_text())
            got += chunk
        return self._stream.feed(bytes(got))

    def _failure(self, text: str) -> DsauditError:
        lowered = text.lower()
        if "permission" in lowered or "not permitted" in lowered:
            return CapturePermissionError(self.iface, self.program)
        if "no such device" in lowered or "doesn't exist" in lowered or "no device" in lowered:
            return UnknownInterfaceError(self.iface, list_interfaces())
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "filter" in ln.lower()), lines[-1] if lines else "")
        if "filter" in reason.lower():
            return DsauditError(f"--bpf: {for_terminal(reason)}")
        return DsauditError(f"dumpcap failed: {for_terminal(reason) or 'no message'}")

    def _read_stdout(self) -> None:
        while True:
            with self._cond:
                while len(self._data) > self._limit and not self._stopping.is_set():
                    # Not reading makes dumpcap block and its ring drop (and count) packets.
                    self._cond.wait(0.1)
            try:
                chunk = os.read(self._out, 1 << 20)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._eof = True
                    return
                self._data += chunk

    def start(self) -> None:
        """Start reading dumpcap's output."""
        self._reader.start()

    def take(self) -> PacketBatch | None:
        """Every whole record dumpcap has written since the last call."""
        with self._cond:
            data = bytes(self._data)
            self._data.clear()
            self._cond.notify_all()
        batches = [b for b in (self._early, self._stream.feed(data)) if b is not None]
        self._early = None
        if not batches:
            return None
        batch = batches[0] if len(batches) == 1 else _concat(batches)
        self._stats.packets += len(batch)
        self._stats.bytes += int(batch.wirelen.sum())
        return batch

    @property
    def running(self) -> bool:
        """False once dumpcap exited and its output was read to the end."""
        with self._cond:
            return not (self._eof and self._proc.poll() is not None)

    def stats(self) -> SourceStats:
        """Counters so far; drops once dumpcap has reported them (at its end)."""
        drops = parse_dumpcap_drops(self._stderr_text())
        if drops is not None:
            self._stats.kernel_drops, self._stats.engine_drops = drops
        return self._stats

    def error(self) -> str | None:
        """dumpcap's complaint when it exited on its own with a failure."""
        code = self._proc.poll()
        if code in (None, 0) or self._stopping.is_set():
            return None
        return str(self._failure(self._stderr_text()))

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def stop(self) -> None:
        """Ask dumpcap to stop (it writes its last packets and its statistics), then read
        its output to the end."""
        self._stopping.set()
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self._kill()
        with self._cond:
            self._cond.notify_all()
        if self._reader.is_alive():
            self._reader.join(timeout=10.0)
        self._err_thread.join(timeout=2.0)
        self.stats()


def _concat(batches: list[PacketBatch]) -> PacketBatch:
    frames = [(int(b.ts_ns[i]), b.frame(i)) for b in batches for i in range(len(b))]
    links = [int(x) for b in batches for x in b.linktype.tolist()]
    wires = [int(x) for b in batches for x in b.wirelen.tolist()]
    return PacketBatch.from_frames(frames, links, wires)


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
