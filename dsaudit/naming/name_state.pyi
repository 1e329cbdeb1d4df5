"""Types of the compiled naming state (name_state.pyx)."""

from typing import Any

import numpy as np

class DnsMap:
    """Answered address -> name, per client and over time, following CNAME chains."""

    max_entries: int
    evicted: int
    def __init__(self, max_entries: int = 1_000_000) -> None: ...
    def __len__(self) -> int: ...
    def add(self, client: int, addr: int, ts: int, name: str) -> None: ...
    def addresses(self) -> set[int]: ...
    def lookup(self, client: int, addr: int, ts: int) -> str | None: ...

class FlowPayload:
    """What the payload of one flow revealed."""

    sni: str | None
    alpn: tuple[str, ...]
    http_host: str | None
    http_method: str | None
    connect: str | None
    connect_status: int | None
    socks: str | None
    dns_queries: list[str]
    dns_answers: list[tuple[str, int, str | None, int]]
    dns_rcodes: list[int]
    starttls: bool
    tls_alert: str | None
    tls_server_issuer: str | None
    max_segment_c2s: int
    segs: tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]] | None
    hello_seq: int | None
    hello_done: bool
    text_done: bool
    dns_consumed: list[int] | None
    quic: list[tuple[int, bytes]] | None
    done: bool
    def __init__(
        self,
        sni: str | None = None,
        alpn: tuple[str, ...] = (),
        http_host: str | None = None,
        http_method: str | None = None,
        connect: str | None = None,
        connect_status: int | None = None,
        socks: str | None = None,
        dns_queries: list[str] | None = None,
        dns_answers: list[tuple[str, int, str | None, int]] | None = None,
        dns_rcodes: list[int] | None = None,
        starttls: bool = False,
        tls_alert: str | None = None,
        tls_server_issuer: str | None = None,
        max_segment_c2s: int = 0,
        segs: tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]] | None = None,
        hello_seq: int | None = None,
        hello_done: bool = False,
        text_done: bool = False,
        dns_consumed: list[int] | None = None,
        quic: list[tuple[int, bytes]] | None = None,
        done: bool = False,
    ) -> None: ...
    def replace(self, **changes: Any) -> FlowPayload: ...

class Namer:
    """Consumes naming events batch by batch and keeps per-flow findings."""

    flows: dict[int, FlowPayload]
    dns: DnsMap
    icmp_errors: list[tuple[int, tuple[int, ...], dict[str, object]]]
    buffered: int
    max_buffered: int
    buffers_dropped: int
    decode_failures: int
    def __init__(self) -> None: ...
    def remap(self, mapping: np.ndarray) -> None: ...
    def handle(
        self, events: np.ndarray, rec: np.ndarray, buf: np.ndarray, fs: np.ndarray
    ) -> None: ...
    def release_idle(self, fs: np.ndarray, before_ns: int) -> None: ...
