"""Stream pcap and pcapng files, gzipped or not, as PacketBatches; keep what precedes damage."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from dsaudit.array_pool import ArrayPool
from dsaudit.errors import CaptureError
from dsaudit.sources.batch import LINKTYPE_NAMES, PacketBatch
from dsaudit.sources.record_walk import (
    BAD_RECORD,
    BATCH_FULL,
    PYTHON_BLOCK,
    TS_MISSING,
    TS_OVERFLOW,
    walk_pcap,
    walk_pcapng,
)

INFLATE: Any = zlib
try:
    # zlib-ng inflates a third faster than the system zlib, with the same interface; rotated
    # gzipped captures spend about half their reading time here.
    from zlib_ng import zlib_ng as INFLATE
except ImportError:  # pragma: no cover - the wheel is missing on some platforms
    pass

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": (False, False),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (True, False),
    b"\x4d\x3c\xb2\xa1": (False, True),  # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (True, True),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
# libpcap refuses records larger than this unless the header's snaplen is larger still.
MAX_SNAPLEN = 262144
MAX_PCAPNG_BLOCK = 64 << 20

DEFAULT_BUFFER = 16 << 20
# Bytes read into the buffer at a time: the record walk that follows each read then finds the
# headers still in the CPU's cache (walking a whole 16 MB buffer after one read took three
# times as long, a cache miss per record).
READ_STEP = 1 << 20
PCAP_HEADER_BYTES = 24
DEFAULT_BATCH = 1 << 15


@dataclass
class CaptureInfo:
    """What a reader learnt about a capture file while reading it."""

    path: str
    format: str = "unknown"
    compressed: bool = False
    byte_order: str = ""
    ts_resolution: str = ""
    snaplen: int = 0
    linktypes: set[int] = field(default_factory=set)
    packets: int = 0
    bytes_read: int = 0
    sections: int = 0
    interfaces: int = 0
    damaged: str | None = None
    damage_offset: int | None = None
    # Damage and loss: what of the file could not be read.
    warnings: list[str] = field(default_factory=list)
    # Timing notes: every packet was read, but some times are the reader's, not the file's.
    notes: list[str] = field(default_factory=list)
    # Packets whose time is beyond int64 nanoseconds, or that have none (pcapng SPB): they
    # take the time of the packet before them.
    ts_overflow: int = 0
    ts_missing: int = 0

    def linktype_names(self) -> list[str]:
        """Readable names of the link types seen."""
        return sorted(LINKTYPE_NAMES.get(t, f"linktype-{t}") for t in self.linktypes)

    @property
    def warnings_and_notes(self) -> list[str]:
        """Both, as said to the user: a file's notes come once it has been read, after any
        damage found while reading it."""
        return [*self.warnings, *self.notes]


def left_out(path: str, reason: str) -> CaptureInfo:
    """What is known of a file that could not be read at all and was left out of a run of
    several: its reason as damage, and a warning that says so."""
    return CaptureInfo(path, damaged=reason, warnings=[f"{path}: {reason}: left out"])


def refuse_if_all_left_out(infos: Sequence[CaptureInfo]) -> None:
    """Raise the first file's reason when every file was left out: nothing was read at all,
    which is an error, not an empty result."""
    if infos and all(i.packets == 0 and i.damaged for i in infos):
        raise CaptureError(infos[0].path, None, str(infos[0].damaged))


class _Columns:
    """Per-record output arrays the walkers fill."""

    __slots__ = ("off", "cap", "wire", "ts", "links", "foff")

    def __init__(self, n: int) -> None:
        self.off = np.empty(n, np.int64)
        self.cap = np.empty(n, np.int32)
        self.wire = np.empty(n, np.int32)
        self.ts = np.empty(n, np.int64)
        self.links = np.empty(n, np.int32)
        self.foff = np.empty(n, np.int64)


@dataclass(frozen=True)
class _Interfaces:
    """The current pcapng section's interfaces: link type and timestamp scaling."""

    link: np.ndarray
    mul: np.ndarray
    div: np.ndarray
    shift: np.ndarray
    off: np.ndarray
    snap: np.ndarray


def _open(path: str) -> tuple[io.RawIOBase | io.BufferedReader, bool]:
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the reader
    except FileNotFoundError:
        raise CaptureError(path, None, "no such file") from None
    except IsADirectoryError:
        raise CaptureError(path, None, "is a directory, not a capture file") from None
    except OSError as exc:
        raise CaptureError(path, None, exc.strerror or str(exc)) from None
    head = raw.read(2)
    raw.seek(0)
    if head == GZIP_MAGIC:
        return GzipStream(raw), True
    return raw, False


class GzipStream(io.RawIOBase):
    """Decompress a gzip file (all its members) as a stream that never loses what came before.

    The standard library's GzipFile raises on a cut or corrupt stream and discards what
    that read had already decompressed; rotated captures are often cut mid-write, so this
    stops at the damage instead and says where (``error``). Output per step is capped,
    so a decompression bomb cannot balloon memory.
    """

    STEP_IN = 1 << 20
    STEP_OUT = 4 << 20

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self._d = INFLATE.decompressobj(31)
        self._member_started = False
        # Decompressed output not yet read, and the read position in its first piece:
        # handing out a piece by offset avoids moving megabytes for every read.
        self._pending: deque[bytes] = deque()
        self._offset = 0
        self._carry = b""  # input read past the end of a member, for the next one
        self._done = False
        self.error: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        while not self._pending and not self._done:
            self._step()
        if not self._pending:
            return 0
        piece = self._pending[0]
        n = min(len(view), len(piece) - self._offset)
        view[:n] = memoryview(piece)[self._offset : self._offset + n]
        self._offset += n
        if self._offset == len(piece):
            self._pending.popleft()
            self._offset = 0
        return n

    def _keep(self, data: bytes) -> None:
        if data:
            self._pending.append(data)

    def _step(self) -> None:
        d = self._d
        data = d.unconsumed_tail or self._carry
        self._carry = b""
        if not data:
            data = self.raw.read(self.STEP_IN)
            if not data:
                if self._member_started and not d.eof:
                    self.error = "the compressed stream ends early (file cut short)"
                self._done = True
                return
        saved = d.copy()
        try:
            self._keep(d.decompress(data, self.STEP_OUT))
        except INFLATE.error as exc:
            # What this call decompressed before the damage is lost with the exception:
            # replay it in small steps from the saved state to keep all but the bad step.
            self._salvage(saved, data)
            self.error = f"the compressed data is corrupt ({exc})"
            self._done = True
            return
        self._member_started = True
        if d.eof:
            rest = d.unused_data
            self._d = INFLATE.decompressobj(31)
            self._member_started = False
            if not rest.strip(b"\x00"):
                return  # nothing, or the zero padding some writers leave
            if GZIP_MAGIC.startswith(rest[:2]):
                # Another member (concatenated files): the next step reads it like any data,
                # so damage inside it is salvaged and reported as such.
                self._carry = rest
            else:
                self.error = "data after the last gzip member is not gzip"
                self._done = True

    def _salvage(self, d: Any, data: bytes) -> None:
        # Coarse steps first, then the failing step again byte by byte from its start.
        for size in (512, 1):
            for start in range(0, len(data), size):
                saved = d.copy()
                try:
                    self._keep(d.decompress(data[start : start + size], self.STEP_OUT))
                    while d.unconsumed_tail:
                        if sum(map(len, self._pending)) > 16 * self.STEP_OUT:
                            return  # a bomb behind the damage: keep what we have
                        self._keep(d.decompress(d.unconsumed_tail, self.STEP_OUT))
                except INFLATE.error:
                    d = saved
                    data = data[start : start + size]
                    break
            else:
                return

    def close(self) -> None:
        self.raw.close()
        super().close()


class CaptureReader:
    """Reads one capture file in bounded memory and yields PacketBatches.

    Every refill gets a buffer no batch refers to any more (the unread tail is copied
    over), so a batch stays valid while later batches are read: the pipeline may hold a
    few at once.
    """

    def __init__(
        self, path: str, buffer_bytes: int = DEFAULT_BUFFER, batch_packets: int = DEFAULT_BATCH
    ) -> None:
        self.path = path
        self.info = CaptureInfo(path=path)
        self._buffer_bytes = buffer_bytes
        self._batch = batch_packets
        self._fh: io.RawIOBase | io.BufferedReader | None = None
        self._buf = np.empty(0, dtype=np.uint8)
        # Buffers of batches already consumed are filled again instead of fresh ones.
        self._pool = ArrayPool(np.uint8)
        self._filled = 0
        self._base = 0  # file offset of self._buf[0]
        self._eof = False
        self._stream_error: str | None = None

    # -- buffer management -------------------------------------------------
    def _refill(self, pos: int, need: int = 0) -> int:
        """Keep ``buf[pos:filled]`` in a buffer no batch holds, read on after it (at least
        ``need`` bytes past ``pos`` when the input has them); return the new position (0)."""
        tail = self._filled - pos
        size = max(self._buffer_bytes, tail + need, 2 * tail)
        new = self._pool.take(size)
        new[:tail] = self._buf[pos : self._filled]
        self._base += pos
        self._buf = new
        self._filled = tail
        self._read_until(tail + max(need, READ_STEP))
        return 0

    def _more(self, upto: int | None = None) -> bool:
        """Read on into the buffer's free room (a step, or up to ``upto``); False if none is
        left or the input has ended."""
        if self._eof or self._filled >= len(self._buf):
            return False
        self._read_until(self._filled + READ_STEP if upto is None else upto)
        return True

    def _read_until(self, upto: int) -> None:
        """Fill the buffer up to ``upto`` bytes, or to its end, or until the input ends."""
        assert self._fh is not None
        upto = min(upto, len(self._buf))
        view = self._buf.data
        filled = self._filled
        try:
            while filled < upto:
                got = self._fh.readinto(view[filled:upto])
                if not got:
                    self._eof = True
                    break
                filled += got
        except OSError as exc:
            self._eof = True
            self._stream_error = f"read error ({exc.strerror or exc})"
        if isinstance(self._fh, GzipStream) and self._fh.error and self._eof:
            self._stream_error = self._fh.error
        self._filled = filled

    def _damage(self, offset: int, message: str) -> None:
        if self._stream_error is not None:
            # The decompressor's complaint explains the damage better than a cut record.
            message, self._stream_error = self._stream_error, None
            offset = self._base + self._filled
        if self.info.packets == 0:
            # Nothing readable before the damage: the file is unreadable, not damaged.
            raise CaptureError(self.path, offset, message)
        if self.info.damaged is None:
            self.info.damaged = message
            self.info.damage_offset = offset
            self.info.warnings.append(
                f"{self.path}: byte {offset}: {message}; "
                f"kept the {self.info.packets} packets read before it"
            )

    def position(self) -> int:
        """How far into the file on disk reading has got (compressed bytes for .gz)."""
        fh = self._fh
        if fh is None or fh.closed:
            return 0
        raw = fh.raw if isinstance(fh, GzipStream) else fh
        try:
            return int(raw.tell())
        except (OSError, ValueError):
            return 0

    def _arrays(self) -> _Columns:
        return _Columns(self._batch)

    def _emit(self, c: _Columns, k: int) -> PacketBatch:
        self.info.packets += k
        return PacketBatch(
            self._buf, c.off[:k], c.cap[:k], c.wire[:k], c.ts[:k], c.links[:k], c.foff[:k]
        )

    # -- top level -----------------------------------------------------------
    def __iter__(self) -> Iterator[PacketBatch]:
        self._fh, self.info.compressed = _open(self.path)
        try:
            self._refill(0, PCAP_HEADER_BYTES)  # the magic, and all of a pcap header
            head = bytes(self._buf[: min(4, self._filled)])
            if self._filled == 0:
                raise CaptureError(self.path, 0, "empty file: no capture header")
            if head in PCAP_MAGICS:
                yield from self._read_pcap()
            elif head == PCAPNG_SHB:
                yield from self._read_pcapng()
            else:
                what = "gzip-compressed data" if self.info.compressed else "the file"
                raise CaptureError(
                    self.path,
                    0,
                    f"not a pcap or pcapng capture: {what} starts with 0x{head.hex()}",
                )
        finally:
            self.info.bytes_read = self._base + self._filled
            self._fh.close()

    def _read_pcap(self) -> Iterator[PacketBatch]:
        if self._filled < 24:
            raise CaptureError(self.path, 0, "pcap header cut short (needs 24 bytes)")
        magic = bytes(self._buf[:4])
        big, nsec = PCAP_MAGICS[magic]
        fmt = ">HHiIII" if big else "<HHiIII"
        major, minor, _, _, snaplen, network = struct.unpack_from(fmt, self._buf.data, 4)
        if major != 2:
            raise CaptureError(
                self.path, 4, f"pcap version {major}.{minor} is not supported (only 2.x)"
            )
        linktype = network & 0x0FFFFFFF  # upper bits carry FCS flags
        info = self.info
        info.format = "pcap"
        info.byte_order = "big" if big else "little"
        info.ts_resolution = "nsec" if nsec else "usec"
        info.snaplen = snaplen
        info.linktypes.add(linktype)
        max_cap = max(MAX_SNAPLEN, snaplen if snaplen < (1 << 30) else 0)
        pos = 24
        arrays = self._arrays()
        k = 0
        while True:
            a = arrays
            k, pos, status = walk_pcap(
                self._buf,
                pos,
                self._filled,
                big,
                nsec,
                max_cap,
                linktype,
                self._base,
                a.off,
                a.cap,
                a.wire,
                a.ts,
                a.links,
                a.foff,
                k,
            )
            if status == BATCH_FULL:
                yield self._emit(arrays, k)
                arrays, k = self._arrays(), 0
                continue
            if status == BAD_RECORD:
                cl = struct.unpack_from(">I" if big else "<I", self._buf.data, pos + 8)[0]
                if k:
                    yield self._emit(arrays, k)
                self._damage(
                    self._base + pos,
                    f"record {info.packets + 1} claims {cl} captured bytes, more than the "
                    f"maximum of {max_cap}: the file is damaged from here",
                )
                return
            # NEED_MORE
            if self._more():
                continue
            if self._eof:
                if k:
                    yield self._emit(arrays, k)
                left = self._filled - pos
                if left:
                    if left < 16:
                        what = f"a record header ({left} of 16 bytes present)"
                    else:
                        cl = struct.unpack_from(">I" if big else "<I", self._buf.data, pos + 8)[0]
                        what = f"record data ({left - 16} of {cl} bytes present)"
                    self._damage(
                        self._base + pos,
                        f"file ends inside record {info.packets + 1}: cut short in {what}",
                    )
                elif self._stream_error:
                    self._damage(self._base + pos, self._stream_error)
                return
            if k:
                yield self._emit(arrays, k)
                arrays, k = self._arrays(), 0
            pos = self._refill(pos)

    # -- pcapng ----------------------------------------------------------------
    def _read_pcapng(self) -> Iterator[PacketBatch]:
        info = self.info
        info.format = "pcapng"
        big = False
        ifaces: list[tuple[int, int, int, int, int, int]] = []
        tables = self._if_tables(ifaces)
        arrays = self._arrays()
        ts_bad = np.zeros(2, np.int64)
        try:
            yield from self._walk_pcapng(info, big, ifaces, tables, arrays, ts_bad)
        finally:
            self._note_times(int(ts_bad[TS_OVERFLOW]), int(ts_bad[TS_MISSING]))

    def _note_times(self, overflow: int, missing: int) -> None:
        info = self.info
        info.ts_overflow += overflow
        info.ts_missing += missing
        if overflow:
            info.notes.append(
                f"{self.path}: {overflow} packet(s) have a timestamp that cannot be represented "
                "(before 1677 or after 2262): each took the time of the packet before it"
            )
        if missing:
            info.notes.append(
                f"{self.path}: {missing} packet(s) are Simple Packet Blocks, which carry no "
                "time: each took the time of the packet before it"
            )

    def _walk_pcapng(
        self,
        info: CaptureInfo,
        big: bool,
        ifaces: list[tuple[int, int, int, int, int, int]],
        tables: _Interfaces,
        arrays: _Columns,
        ts_bad: np.ndarray,
    ) -> Iterator[PacketBatch]:
        last_ts = 0
        pos = 0
        k = 0
        while True:
            a, t = arrays, tables
            k, pos, status, last_ts = walk_pcapng(
                self._buf,
                pos,
                self._filled,
                big,
                t.link,
                t.mul,
                t.div,
                t.shift,
                t.off,
                t.snap,
                last_ts,
                self._base,
                a.off,
                a.cap,
                a.wire,
                a.ts,
                a.links,
                a.foff,
                k,
                ts_bad,
            )
            if status == BATCH_FULL:
                yield self._emit(arrays, k)
                arrays, k = self._arrays(), 0
                continue
            if status == PYTHON_BLOCK:
                need = self._block_needs(pos, big)
                if need is not None and pos + need > self._filled and not self._eof:
                    if pos + need <= len(self._buf):
                        self._more(pos + need)
                        continue
                    if k:
                        yield self._emit(arrays, k)
                        arrays, k = self._arrays(), 0
                    pos = self._refill(pos, need)
                    continue
                try:
                    pos, big = self._python_block(pos, big, ifaces)
                except CaptureError as exc:
                    if info.packets + k == 0 and info.sections <= 1:
                        raise
                    if k:
                        yield self._emit(arrays, k)
                    self._damage(exc.offset or 0, exc.message)
                    return
                tables = self._if_tables(ifaces)
                continue
            if status == BAD_RECORD:
                if k:
                    yield self._emit(arrays, k)
                btype, blen = struct.unpack_from(">II" if big else "<II", self._buf.data, pos)
                self._damage(
                    self._base + pos,
                    f"pcapng block of type 0x{btype:x} has an invalid length or interface "
                    f"({blen} bytes): the file is damaged from here",
                )
                return
            if self._more():
                continue
            if self._eof:
                if k:
                    yield self._emit(arrays, k)
                left = self._filled - pos
                if left or self.info.sections == 0:
                    self._damage(
                        self._base + pos,
                        f"file ends inside a pcapng block ({left} bytes present)",
                    )
                elif self._stream_error:
                    self._damage(self._base + pos, self._stream_error)
                return
            if k:
                yield self._emit(arrays, k)
                arrays, k = self._arrays(), 0
            pos = self._refill(pos)

    @staticmethod
    def _if_tables(ifaces: list[tuple[int, int, int, int, int, int]]) -> _Interfaces:
        cols: list[tuple[int, ...]] = list(zip(*ifaces, strict=True)) if ifaces else [()] * 6
        return _Interfaces(
            np.asarray(cols[0], dtype=np.int32),
            np.asarray(cols[1], dtype=np.int64),
            np.asarray(cols[2], dtype=np.int64),
            np.asarray(cols[3], dtype=np.int64),
            np.asarray(cols[4], dtype=np.int64),
            np.asarray(cols[5], dtype=np.int64),
        )

    def _block_needs(self, pos: int, big: bool) -> int | None:
        if pos + 12 > self._filled:
            return 12
        if bytes(self._buf[pos : pos + 4]) == PCAPNG_SHB:
            bom = bytes(self._buf[pos + 8 : pos + 12])
            big = bom == b"\x1a\x2b\x3c\x4d"
        blen = struct.unpack_from(">I" if big else "<I", self._buf.data, pos + 4)[0]
        if blen > MAX_PCAPNG_BLOCK:
            return None
        return int(blen)

    def _python_block(
        self,
        pos: int,
        big: bool,
        ifaces: list[tuple[int, int, int, int, int, int]],
    ) -> tuple[int, bool]:
        """Parse an SHB or IDB at ``pos``; return the next position and byte order."""
        buf = self._buf
        where = self._base + pos
        if pos + 12 > self._filled:
            raise CaptureError(self.path, where, "file ends inside a pcapng block header")
        if bytes(buf[pos : pos + 4]) == PCAPNG_SHB:
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom == b"\x1a\x2b\x3c\x4d":
                big = True
            elif bom == b"\x4d\x3c\x2b\x1a":
                big = False
            else:
                raise CaptureError(
                    self.path,
                    where + 8,
                    f"pcapng section header has a bad byte-order mark {bom.hex()}",
                )
            e = ">" if big else "<"
            blen = struct.unpack_from(e + "I", buf.data, pos + 4)[0]
            self._check_block(pos, blen, big, min_len=28)
            major = struct.unpack_from(e + "H", buf.data, pos + 12)[0]
            if major != 1:
                raise CaptureError(
                    self.path, where + 12, f"pcapng version {major} is not supported"
                )
            self._options(pos + 24, pos + blen - 4, big, where)
            ifaces.clear()
            self.info.sections += 1
            self.info.byte_order = "big" if big else "little"
            return pos + blen, big
        e = ">" if big else "<"
        blen = struct.unpack_from(e + "I", buf.data, pos + 4)[0]
        self._check_block(pos, blen, big, min_len=20)
        linktype, _, snaplen = struct.unpack_from(e + "HHI", buf.data, pos + 8)
        opts = self._options(pos + 16, pos + blen - 4, big, where)
        mul, div, shift = 1000, 1, -1  # default resolution: microseconds
        tsres = opts.get(9)
        if tsres:
            r = tsres[0]
            exp = r & 0x7F
            if (r & 0x80 and exp > 62) or (not r & 0x80 and exp > 18):
                raise CaptureError(
                    self.path,
                    where,
                    f"interface timestamp resolution {'2' if r & 0x80 else '10'}^-{exp} is "
                    "finer than any capture can have",
                )
            if r & 0x80:
                mul, div, shift = 1, 1, exp
            elif exp <= 9:
                mul, div = 10 ** (9 - exp), 1
            else:
                mul, div = 1, 10 ** (exp - 9)
        tsoff = 0
        raw_off = opts.get(14)
        if raw_off and len(raw_off) >= 8:
            tsoff = struct.unpack_from(e + "q", raw_off)[0]
        ifaces.append((linktype, mul, div, shift, tsoff, snaplen))
        self.info.linktypes.add(linktype)
        self.info.interfaces += 1
        self.info.snaplen = max(self.info.snaplen, snaplen)
        if not self.info.ts_resolution:
            self.info.ts_resolution = "usec" if (mul, div, shift) == (1000, 1, -1) else "nsec"
        return pos + blen, big

    def _check_block(self, pos: int, blen: int, big: bool, min_len: int) -> None:
        where = self._base + pos
        if blen < min_len or blen % 4 or blen > MAX_PCAPNG_BLOCK:
            raise CaptureError(self.path, where, f"pcapng block has an invalid length {blen}")
        if pos + blen > self._filled:
            raise CaptureError(self.path, where, "file ends inside a pcapng block")
        trailer = struct.unpack_from(">I" if big else "<I", self._buf.data, pos + blen - 4)[0]
        if trailer != blen:
            raise CaptureError(
                self.path, where, f"pcapng block length {blen} does not match its trailer {trailer}"
            )

    def _options(self, start: int, end: int, big: bool, where: int) -> dict[int, bytes]:
        """Parse a pcapng option list; an option running past its block is damage."""
        e = ">HH" if big else "<HH"
        out: dict[int, bytes] = {}
        pos = start
        while pos + 4 <= end:
            code, length = struct.unpack_from(e, self._buf.data, pos)
            if code == 0:
                break
            if pos + 4 + length > end:
                raise CaptureError(
                    self.path,
                    self._base + pos,
                    f"pcapng option {code} claims {length} bytes but only {end - pos - 4} remain "
                    "in its block",
                )
            out.setdefault(code, bytes(self._buf[pos + 4 : pos + 4 + length]))
            pos += 4 + ((length + 3) & ~3)
        return out


def file_size(path: str) -> int:
    """Size on disk, for progress bars (compressed size for .gz)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
