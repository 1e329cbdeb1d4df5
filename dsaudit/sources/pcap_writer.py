"""Write captured frames to a pcap file incrementally, valid up to its last record at any time."""

from __future__ import annotations

import os
import struct
from types import TracebackType
from typing import BinaryIO

from dsaudit.errors import DsauditError, cannot_write
from dsaudit.sources.batch import PacketBatch
from dsaudit.time_text import NS

# Nanosecond pcap (libpcap 1.5+, Wireshark, tcpdump -j adapter_unsynced --nano all read it):
# live timestamps come from the kernel in nanoseconds and would lose precision otherwise.
PCAP_MAGIC_NSEC = 0xA1B23C4D
PCAP_VERSION = (2, 4)
DEFAULT_SNAPLEN = 262144
_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapWriter:
    """Appends records to a nanosecond pcap file and flushes after every batch.

    The header is written and flushed on open, and each batch is written as one block of
    whole records and flushed, so a process killed at any moment leaves a file whose
    complete records are all readable (at worst the final record is cut short, which
    every reader, ours included, reports and skips).
    """

    def __init__(self, path: str, linktype: int, snaplen: int = DEFAULT_SNAPLEN) -> None:
        self.path = path
        self.linktype = linktype
        self.snaplen = snaplen
        self.packets = 0
        self.bytes_written = 0
        try:
            self._fh: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise cannot_write(path, exc) from None
        major, minor = PCAP_VERSION
        header = _HEADER.pack(PCAP_MAGIC_NSEC, major, minor, 0, 0, snaplen, linktype)
        self._write(header)

    def _write(self, data: bytes | bytearray) -> None:
        try:
            self._fh.write(data)
            # Python's buffer to the kernel: after this the bytes survive the process.
            self._fh.flush()
        except OSError as exc:
            raise cannot_write(self.path, exc) from None
        self.bytes_written += len(data)

    def write_frames(self, frames: list[tuple[int, bytes, int]]) -> None:
        """Append ``(ts_ns, data, wirelen)`` frames, then flush."""
        if not frames:
            return
        out = bytearray()
        rec = _RECORD.pack
        for ts, data, wire in frames:
            cap = min(len(data), self.snaplen)
            out += rec(ts // NS, ts % NS, cap, max(wire, cap))
            out += data[:cap]
        self._write(out)
        self.packets += len(frames)

    def write_batch(self, batch: PacketBatch) -> None:
        """Append every frame of ``batch`` (all of this file's link type), then flush."""
        n = len(batch)
        if n == 0:
            return
        if (batch.linktype != self.linktype).any():
            raise DsauditError(
                f"{self.path}: a frame's link type differs from the file's ({self.linktype})"
            )
        raw = batch.buf.data
        out = bytearray()
        rec = _RECORD.pack
        offs = batch.off.tolist()
        caps = batch.caplen.tolist()
        wires = batch.wirelen.tolist()
        for i, ts in enumerate(batch.ts_ns.tolist()):
            start, cap = offs[i], min(caps[i], self.snaplen)
            out += rec(ts // NS, ts % NS, cap, max(wires[i], cap))
            out += raw[start : start + cap]
        self._write(out)
        self.packets += n

    def sync(self) -> None:
        """Also ask the kernel to put the file on disk (survives a power cut, not just a kill)."""
        try:
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise cannot_write(self.path, exc) from None

    def close(self) -> None:
        """Flush and close; further writes are an error."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
