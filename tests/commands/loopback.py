"""Real TCP traffic on loopback for the live tests: listeners, clients and an inventory.

Every address is in one /24 of 127.0.0.0/8, chosen per test process, and every socket is
bound to one of them: nothing here can reach beyond this machine, and two test runs at once
never listen on the same address and port.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _own_block() -> str:
    """The first three octets of a /24 of loopback derived from this process's id."""
    pid = os.getpid()
    return f"127.{100 + (pid >> 8) % 150}.{pid & 0xFF}"


NET = _own_block()
MANAGER = f"{NET}.10"
AGENT = f"{NET}.11"
SILENT_AGENT = f"{NET}.12"  # in the inventory, never sends anything
DATABASE = f"{NET}.20"
RELAY = f"{NET}.30"
PROXY = f"{NET}.60"
OUTSIDER = f"{NET}.99"  # no role in the inventory
UNLISTED = 9999
CLOSED = 4121  # nothing listens here: the kernel answers with a RST
LISTEN = [(MANAGER, 4120), (RELAY, 4122), (DATABASE, 5432), (MANAGER, UNLISTED)]
# (source address, destination): what each client does, and the verdict it must get.
CONVERSATIONS = [
    (AGENT, (MANAGER, 4120)),  # agent heartbeat: explained
    (AGENT, (RELAY, 4122)),  # agent to relay: explained
    (MANAGER, (DATABASE, 5432)),  # manager to its database: explained
    (AGENT, (MANAGER, UNLISTED)),  # no rule: unexplained
    (AGENT, (MANAGER, CLOSED)),  # no rule, and rejected
    (MANAGER, (AGENT, 4118)),  # a documented heartbeat, rejected: a blocked expected flow
]
BPF = f"net {NET}.0/24"
WATCHDOG_S = 60.0

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="live capture needs root (CAP_NET_RAW and CAP_NET_ADMIN); CI runs these as root",
)


def inventory_text(heartbeat: str = "10m") -> str:
    """The loopback deployment: roles for the 127.0.0.x addresses."""
    return f"""deployment:
  version: "11.0"
  communication: bidirectional
  database: postgresql
  heartbeat_interval: {heartbeat}
hosts:
  manager: [{MANAGER}]
  database: [{DATABASE}]
  relay: [{RELAY}]
  agent: [{AGENT}, {SILENT_AGENT}]
"""


@dataclass
class Listeners:
    """TCP servers that read a request, answer and close."""

    sockets: list[socket.socket] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def close(self) -> None:
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self.threads:
            t.join(timeout=2.0)


def _serve(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2.0)
            with contextlib.suppress(OSError):
                conn.recv(1024)
                conn.sendall(b"ok\n")


@contextlib.contextmanager
def listeners() -> Iterator[Listeners]:
    """Listen on every address of LISTEN for the duration of the block."""
    out = Listeners()
    try:
        for addr in LISTEN:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
            s.listen(16)
            out.sockets.append(s)
            t = threading.Thread(target=_serve, args=(s,), daemon=True)
            t.start()
            out.threads.append(t)
        yield out
    finally:
        out.close()


def connect(source: str, dest: tuple[str, int]) -> bool:
    """One client conversation from ``source``; True when the peer accepted it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
        c.settimeout(2.0)
        c.bind((source, 0))
        try:
            c.connect(dest)
        except ConnectionRefusedError:
            return False
        c.sendall(b"hello\n")
        c.recv(1024)
        return True


def run_clients(rounds: int = 1) -> None:
    """Every conversation of CONVERSATIONS, ``rounds`` times."""
    for _ in range(rounds):
        for source, dest in CONVERSATIONS:
            connect(source, dest)


def dsaudit(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """`python -m dsaudit ARGS` from the repository, stdout and stderr as text pipes.

    Killed after WATCHDOG_S whatever happens, so a test waiting on its output cannot hang.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsaudit", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )
    guard = threading.Timer(WATCHDOG_S, proc.kill)
    guard.daemon = True
    guard.start()
    return proc


def read_event(stream: IO[str], kind: str, limit: int = 200) -> dict[str, Any]:
    """Read JSON Lines from ``stream`` until an event of ``kind``; fail if none comes."""
    for _ in range(limit):
        line = stream.readline()
        if not line:
            break
        event = json.loads(line)
        if event["event"] == kind:
            return event
    raise AssertionError(f"no {kind} event in the stream")


def read_until(
    stream: IO[str], done: Callable[[list[dict[str, Any]]], bool], limit: int = 500
) -> list[dict[str, Any]]:
    """Read JSON Lines from ``stream`` until ``done(events so far)``; fail if it never is."""
    events: list[dict[str, Any]] = []
    for _ in range(limit):
        line = stream.readline()
        if not line:
            break
        events.append(json.loads(line))
        if done(events):
            return events
    raise AssertionError(f"the stream ended first: {[e['event'] for e in events]}")


def flow_of(report: dict[str, Any], server: str, port: int) -> dict[str, Any]:
    """The one flow of the report to ``server:port``."""
    found = [f for f in report["flows"] if f["server_ip"] == server and f["server_port"] == port]
    assert len(found) == 1, (server, port, found)
    return found[0]
