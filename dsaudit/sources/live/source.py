"""What every capture engine is: a LiveSource the audit loop drains, its counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dsaudit.errors import DsauditError
from dsaudit.sources.batch import PacketBatch
from dsaudit.text.safe import for_terminal

DEFAULT_SNAPLEN = 262144
# What the capture thread may hold before the audit loop drains it. Past this the thread
# waits, the kernel's queue fills and the kernel drops (and counts) packets: memory stays
# bounded and every loss is reported.
DEFAULT_BUFFER_BYTES = 256 << 20
KERNEL_BUFFER_BYTES = 32 << 20


class CapturePermissionError(DsauditError):
    """The process may not open a packet socket (or dumpcap may not capture)."""

    def __init__(self, iface: str, program: str) -> None:
        super().__init__(
            f"capturing on {for_terminal(iface)} needs root, or the CAP_NET_RAW and "
            f"CAP_NET_ADMIN capabilities for {program}: run as root, or "
            f"`sudo setcap cap_net_raw,cap_net_admin=eip {program}`"
        )


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
