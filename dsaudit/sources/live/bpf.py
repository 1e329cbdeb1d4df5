"""BPF filters: compiled with libpcap (through scapy), attached to a packet socket."""

from __future__ import annotations

import socket
from typing import Any

from dsaudit.errors import DsauditError
from dsaudit.text.safe import for_terminal

SO_ATTACH_FILTER = 26
DLT_EN10MB = 1
DLT_RAW = 12  # libpcap's DLT for raw IP on Linux (LINKTYPE_RAW in files)


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
