"""A batch of captured frames: one shared byte buffer plus per-frame offsets and metadata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Link-layer header types (LINKTYPE_* values as written in pcap and pcapng files).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OPENBSD = 12
LINKTYPE_RAW_BSDOS = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

LINKTYPE_NAMES: dict[int, str] = {
    LINKTYPE_NULL: "null",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_RAW_OPENBSD: "raw",
    LINKTYPE_RAW_BSDOS: "raw",
    LINKTYPE_RAW: "raw",
    LINKTYPE_LOOP: "loop",
    LINKTYPE_LINUX_SLL: "linux-sll",
    LINKTYPE_IPV4: "raw-ipv4",
    LINKTYPE_IPV6: "raw-ipv6",
    LINKTYPE_LINUX_SLL2: "linux-sll2",
}

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]


@dataclass(slots=True)
class PacketBatch:
    """Frames read from one stretch of a capture.

    ``buf`` holds the raw bytes; frame ``i`` is ``buf[off[i] : off[i] + caplen[i]]``.
    ``ts_ns`` is nanoseconds since the epoch, ``wirelen`` the length on the wire,
    ``linktype`` the LINKTYPE of the interface the frame came from, and
    ``file_off`` the byte offset of the frame's record in the (decompressed) file.
    """

    buf: U8
    off: I64
    caplen: I32
    wirelen: I32
    ts_ns: I64
    linktype: I32
    file_off: I64

    def __len__(self) -> int:
        return int(self.off.shape[0])

    def frame(self, i: int) -> bytes:
        """The captured bytes of frame ``i`` (a copy)."""
        start = int(self.off[i])
        return bytes(self.buf[start : start + int(self.caplen[i])])

    @classmethod
    def from_frames(
        cls,
        frames: list[tuple[int, bytes]],
        linktype: int | list[int],
        wirelens: list[int] | None = None,
    ) -> PacketBatch:
        """Build a batch from ``(ts_ns, bytes)`` pairs (tests, live capture, reassembly)."""
        n = len(frames)
        sizes = np.fromiter((len(f[1]) for f in frames), dtype=np.int64, count=n)
        off = np.zeros(n, dtype=np.int64)
        if n:
            off[1:] = np.cumsum(sizes)[:-1]
        buf = np.frombuffer(b"".join(f[1] for f in frames), dtype=np.uint8).copy()
        if isinstance(linktype, int):
            links = np.full(n, linktype, dtype=np.int32)
        else:
            links = np.asarray(linktype, dtype=np.int32)
        wl = sizes if wirelens is None else np.asarray(wirelens, dtype=np.int64)
        return cls(
            buf=buf,
            off=off,
            caplen=sizes.astype(np.int32),
            wirelen=np.maximum(wl, sizes).astype(np.int32),
            ts_ns=np.fromiter((f[0] for f in frames), dtype=np.int64, count=n),
            linktype=links,
            file_off=np.full(n, -1, dtype=np.int64),
        )
