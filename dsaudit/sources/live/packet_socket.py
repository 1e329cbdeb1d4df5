"""The scapy engine: AsyncSniffer on a kernel-filtered AF_PACKET socket of our own."""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

from dsaudit.errors import DsauditError
from dsaudit.sources.batch import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, PacketBatch
from dsaudit.sources.live.bpf import DLT_EN10MB, DLT_RAW, _attach_bpf
from dsaudit.sources.live.interfaces import _sys
from dsaudit.sources.live.source import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_SNAPLEN,
    KERNEL_BUFFER_BYTES,
    CapturePermissionError,
    SourceStats,
)
from dsaudit.text.safe import for_terminal
from dsaudit.time_text import NS

# Linux constants (linux/if_packet.h, linux/if_arp.h, asm/socket.h).
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772

_AUXDATA = struct.Struct("IIIHHHH")
_TIMESPEC = struct.Struct("qq")
_STATS = struct.Struct("II")
_SLL = struct.Struct(">HHH8sH")
_VLAN = struct.Struct(">HH")
_MREQ = struct.Struct("iHH8s")


class _Captured:
    """One frame as the packet socket hands it to AsyncSniffer's prn (no dissection)."""

    __slots__ = ("ts_ns", "data", "wirelen", "sniffed_on")

    def __init__(self, ts_ns: int, data: bytes, wirelen: int) -> None:
        self.ts_ns = ts_ns
        self.data = data
        self.wirelen = wirelen
        self.sniffed_on: Any = None


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
