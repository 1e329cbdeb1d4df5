"""The incremental pcap writer: what it writes reads back exactly, even after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dsaudit.errors import DsauditError
from dsaudit.sources.batch import PacketBatch
from dsaudit.sources.capture_file import CaptureReader
from dsaudit.sources.pcap_writer import PcapWriter
from tests.commands.loopback import ROOT
from tests.packets import BASE_TS, LINK_ETHERNET, LINK_RAW, tcp_frame, udp_frame


def _frames_of(path: Path) -> tuple[list[tuple[int, bytes, int]], CaptureReader]:
    reader = CaptureReader(str(path))
    out = []
    for batch in reader:
        for i in range(len(batch)):
            out.append((int(batch.ts_ns[i]), batch.frame(i), int(batch.wirelen[i])))
    return out, reader


def test_frames_read_back_with_nanoseconds_and_wire_lengths(tmp_path: Path) -> None:
    a = tcp_frame("127.0.0.11", "127.0.0.10", 40000, 4120, "S")
    b = udp_frame("127.0.0.11", "127.0.0.2", 40001, 53, b"\x00" * 40)
    frames = [(BASE_TS + 123_456_789, a, len(a)), (BASE_TS + 2 * 10**9 + 1, b, len(b) + 1000)]
    path = tmp_path / "out.pcap"
    with PcapWriter(str(path), LINK_ETHERNET) as writer:
        writer.write_frames(frames[:1])
        writer.write_frames(frames[1:])
        assert writer.packets == 2
    got, reader = _frames_of(path)
    assert got == frames
    assert reader.info.ts_resolution == "nsec"
    assert reader.info.linktypes == {LINK_ETHERNET}
    assert reader.info.damaged is None


def test_write_batch_keeps_every_frame(tmp_path: Path) -> None:
    frames = [
        (BASE_TS + i * 1000, tcp_frame("127.0.0.11", "127.0.0.10", 40000 + i, 4120, "S"))
        for i in range(50)
    ]
    batch = PacketBatch.from_frames(frames, LINK_ETHERNET, [len(f) + 4 for _, f in frames])
    path = tmp_path / "batch.pcap"
    writer = PcapWriter(str(path), LINK_ETHERNET)
    writer.write_batch(batch)
    writer.close()
    got, _ = _frames_of(path)
    assert got == [(ts, data, len(data) + 4) for ts, data in frames]


def test_a_frame_of_another_link_type_is_refused(tmp_path: Path) -> None:
    frame = tcp_frame("127.0.0.11", "127.0.0.10", 40000, 4120, "S")
    batch = PacketBatch.from_frames([(BASE_TS, frame)], LINK_RAW)
    writer = PcapWriter(str(tmp_path / "x.pcap"), LINK_ETHERNET)
    with pytest.raises(DsauditError, match="link type"):
        writer.write_batch(batch)
    writer.close()


def test_an_unwritable_path_is_one_error() -> None:
    with pytest.raises(DsauditError, match="cannot write"):
        PcapWriter("/nonexistent-dir/x.pcap", LINK_ETHERNET)


# The child writes numbered frames in batches as fast as it can and reports each batch
# after write_frames returned (flushed); the parent kills it at an arbitrary moment.
_WRITER = """
import sys
from dsaudit.sources.pcap_writer import PcapWriter
w = PcapWriter(sys.argv[1], 1)
n = 0
while True:
    frames = []
    for _ in range(97):
        data = n.to_bytes(8, "big") * (1 + n % 23)
        frames.append((1_700_000_000_000_000_000 + n, data, len(data)))
        n += 1
    w.write_frames(frames)
    print(n, flush=True)
"""


def test_sigkill_leaves_a_file_valid_up_to_its_last_record(tmp_path: Path) -> None:
    path = tmp_path / "killed.pcap"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    flushed = 0
    for _ in range(200):
        flushed = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    got, reader = _frames_of(path)
    # Every batch the child saw flushed is there, and every frame read is intact.
    assert len(got) >= flushed
    for n, (ts, data, wire) in enumerate(got):
        assert ts == 1_700_000_000_000_000_000 + n
        assert data == n.to_bytes(8, "big") * (1 + n % 23)
        assert wire == len(data)
    # At worst the kill cut the record being written: reported, the rest kept.
    if reader.info.damaged is not None:
        assert "ends inside record" in reader.info.damaged
