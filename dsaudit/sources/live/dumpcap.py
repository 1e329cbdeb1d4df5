"""The tshark engine of `dsaudit live`: dumpcap's pcap stream, read as it comes."""

from __future__ import annotations

import ctypes
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time

from dsaudit.errors import DsauditError
from dsaudit.sources.batch import LINKTYPE_ETHERNET, PacketBatch
from dsaudit.sources.live.interfaces import UnknownInterfaceError, list_interfaces
from dsaudit.sources.live.pcap_stream import PcapStream
from dsaudit.sources.live.source import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_SNAPLEN,
    KERNEL_BUFFER_BYTES,
    CapturePermissionError,
    SourceStats,
)
from dsaudit.text.safe import for_terminal

PR_SET_PDEATHSIG = 1


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
