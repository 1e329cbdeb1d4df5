"""A pcap byte stream arriving in pieces, read as PacketBatches of whole records."""

from __future__ import annotations

import struct

import numpy as np

from dsaudit.errors import CaptureError
from dsaudit.sources.batch import PacketBatch


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
