"""Finished flow records as plain columns (numpy arrays), built without pandas or per-flow loops."""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dsaudit.decode.packet_kernel import TUN_IP4, TUN_IP6, TUNNEL_NAMES
from dsaudit.flow_records.name_columns import answer_dicts, payload_columns
from dsaudit.flows.addresses import V4_MAPPED, addr_key, key_to_text, split_host_port
from dsaudit.flows.table_kernel import (
    EVIDENCE_FIRST,
    EVIDENCE_PORT,
    EVIDENCE_SYN,
    EVIDENCE_SYNACK,
    F_A_HI,
    F_A_LO,
    F_A_PORT,
    F_B_HI,
    F_B_LO,
    F_B_PORT,
    F_BYTES_C,
    F_BYTES_S,
    F_EVIDENCE,
    F_FIRST_TS,
    F_HIST,
    F_HLEN,
    F_ICMP_TC,
    F_L3,
    F_LAST_TS,
    F_ORIG_IS_A,
    F_PAY_C,
    F_PAY_S,
    F_PKTS_C,
    F_PKTS_S,
    F_PROTO,
    F_SEEN,
    F_TRUNC,
    F_TUN_DST_HI,
    F_TUN_DST_LO,
    F_TUN_KIND,
    F_TUN_SRC_HI,
    F_TUN_SRC_LO,
    F_TUNNEL,
    F_VLAN0,
    F_VLAN1,
    H_A,
    H_D,
    H_F,
    H_H,
    H_R,
    H_S,
    H_T,
    HISTORY_LETTERS,
    RESP_OFFSET,
)
from dsaudit.time_text import iso_ns

if TYPE_CHECKING:
    import pandas as pd

    from dsaudit.naming.namer import Namer

# "failed": TCP connected, but the TLS handshake never completed (see failed_handshakes).
OUTCOMES = ["established", "rejected", "unanswered", "partial", "one-way", "failed"]
EVIDENCES = ["syn", "synack", "port", "first-packet"]
# Where a flow's name came from: payload names, best first (as payload_name ranks them),
# outrank DNS names.
PAYLOAD_SOURCES = ("connect", "socks", "sni", "http_host")
NAME_SOURCES = [*PAYLOAD_SOURCES, "dns", "none"]
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
FLOW_COLUMNS = [
    "flow_id",
    "proto",
    "ip_version",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "vlan",
    "inner_vlan",
    "vlan_s2c",
    "inner_vlan_s2c",
    "vlan_joined",
    "packets_c2s",
    "packets_s2c",
    "bytes_c2s",
    "bytes_s2c",
    "payload_bytes_c2s",
    "payload_bytes_s2c",
    "start",
    "end",
    "duration",
    "state",
    "history",
    "outcome",
    "initiator_evidence",
    "server_name",
    "name_source",
    "sni",
    "http_host",
    "connect_target",
    "socks_target",
    "dns_queries",
    "dns_answers",
    "icmp_errors",
    "truncated_packets",
    "tunnel",
    "tunnel_endpoints",
    "tls_client_hello",
    "max_segment_c2s",
    "dns_rcode",
    "tls_alert",
    "tls_server_issuer",
]
# How each column is held in FlowColumns (and written): "int" int64, "vlan" int64 with -1 for
# none, "time" int64 nanoseconds since the epoch, "float", "text" object array of str,
# "name" object array of str or None, "list" object array of list or None (no entries),
# "bool".
COLUMN_KINDS: dict[str, str] = {
    **dict.fromkeys(FLOW_COLUMNS, "int"),
    **dict.fromkeys(("vlan", "inner_vlan", "vlan_s2c", "inner_vlan_s2c"), "vlan"),
    **dict.fromkeys(("start", "end"), "time"),
    "duration": "float",
    **dict.fromkeys(("proto", "client_ip", "server_ip", "state", "history", "outcome"), "text"),
    **dict.fromkeys(("initiator_evidence", "name_source"), "text"),
    **dict.fromkeys(("server_name", "sni", "http_host", "connect_target", "socks_target"), "name"),
    **dict.fromkeys(("dns_rcode", "tunnel_endpoints", "tls_alert", "tls_server_issuer"), "name"),
    **dict.fromkeys(("dns_queries", "dns_answers", "icmp_errors"), "list"),
    **dict.fromkeys(("tunnel", "vlan_joined", "tls_client_hello"), "bool"),
}
# Per-direction counters: they add up when pieces of one conversation are joined, and swap
# when a piece saw the conversation the other way round.
DIRECTION_COUNTERS = (
    "packets_c2s",
    "packets_s2c",
    "bytes_c2s",
    "bytes_s2c",
    "payload_bytes_c2s",
    "payload_bytes_s2c",
)
# Zeek conn_state names, indexed by the codes tcp_state_codes gives.
STATES = ["REJ", "RSTOS0", "SH", "S0", "RSTRH", "SHR", "RSTO", "RSTR", "SF", "S2", "S3", "S1"]
STATES.append("OTH")
_S0, _SF = STATES.index("S0"), STATES.index("SF")
# What a TCP flow in each state amounts to (non-TCP flows are judged by their packets).
_TCP_OUTCOME = {"REJ": "rejected", "S0": "unanswered", "RSTOS0": "unanswered", "SH": "unanswered"}
_TCP_OUTCOME.update(dict.fromkeys(["S1", "SF", "S2", "S3", "RSTO", "RSTR"], "established"))

_LUT = np.frombuffer(HISTORY_LETTERS.encode("ascii"), dtype=np.uint8).copy()
_LUT[0] = 0
_SHIFTS = np.arange(14, dtype=np.int64) * 4


def _objects(values: list[str] | list[str | None]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


_STATE_TEXT = _objects(STATES)
_EVIDENCE_TEXT = _objects(EVIDENCES)
_OUTCOME_TEXT = _objects(OUTCOMES)
_OUTCOME_TCP = np.array([OUTCOMES.index(_TCP_OUTCOME.get(s, "partial")) for s in STATES])
_ESTABLISHED, _REJECTED, _ONE_WAY, _FAILED = map(
    OUTCOMES.index, ("established", "rejected", "one-way", "failed")
)
# A TLS alert record is 7 bytes (5 of header, level and description): a server that answers a
# ClientHello with at most that and hangs up refused the handshake.
ALERT_RECORD_BYTES = 7
_SOURCE_TEXT = _objects(NAME_SOURCES)
_NONE = NAME_SOURCES.index("none")
# The codes payload_columns gives a payload name's source, in payload_name's order.
_PAYLOAD_SOURCES = np.array([NAME_SOURCES.index(k) for k in PAYLOAD_SOURCES], dtype=np.int64)


@dataclass
class Coded:
    """A text column as codes into its distinct values: few labels, many flows."""

    codes: np.ndarray
    labels: np.ndarray  # object array of str (None for a missing value)

    def values(self) -> np.ndarray:
        """The text of every row, as an object array."""
        return np.asarray(self.labels[self.codes], dtype=object)


@dataclass
class DnsAnswers:
    """The dns_answers column as naming keeps it: per flow None or a list of
    (name, rtype, data, ttl) tuples. Read as a column, each answer is a dict (name, type,
    data, ttl) with its type spelled by rtype_name; the writers spell the tuples directly."""

    records: np.ndarray  # object array of list or None

    def values(self) -> np.ndarray:
        """Every row's answers as a list of dicts (None for no list), as an object array."""
        out = np.full(len(self.records), None, dtype=object)
        rows = _present(self.records)
        for r, answers in zip(
            rows.tolist(), answer_dicts(self.records[rows].tolist()), strict=True
        ):
            out[r] = answers
        return out


# How a column is held: "text" columns as Coded, dns_answers from a capture as DnsAnswers.
Column = np.ndarray | Coded | DnsAnswers


@dataclass
class FlowColumns:
    """The flows of one analysis, one column per name of :data:`FLOW_COLUMNS`, in flow_id
    order; see :data:`COLUMN_KINDS` for how each is held ("text" columns are :class:`Coded`).

    ``detail`` marks the rows whose name or list cells may hold something: the writers
    visit only those one by one (None: any row may).
    """

    columns: dict[str, Column]
    detail: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.array("flow_id"))

    def __getitem__(self, name: str) -> np.ndarray:
        col = self.columns[name]
        return col.values() if isinstance(col, Coded | DnsAnswers) else col

    def array(self, name: str) -> np.ndarray:
        """A column that is not "text", as stored (DNS answers as lists of dicts)."""
        col = self.columns[name]
        assert not isinstance(col, Coded)
        return col.values() if isinstance(col, DnsAnswers) else col

    def coded(self, name: str) -> Coded:
        """A "text" column as codes and labels."""
        col = self.columns[name]
        assert isinstance(col, Coded)
        return col

    def detail_rows(self, lo: int, hi: int) -> np.ndarray | None:
        """Rows of ``lo:hi`` (relative to ``lo``) that may hold names or lists; None: any."""
        return None if self.detail is None else np.flatnonzero(self.detail[lo:hi])

    def to_frame(self) -> pd.DataFrame:
        """The flows DataFrame with the dtypes of FLOW_DTYPES (imports pandas)."""
        from dsaudit.flow_records.frame import frame_of_columns

        return frame_of_columns(self)


def _bit(seen: np.ndarray, letter: int) -> np.ndarray:
    return ((seen >> letter) & 1).astype(bool)


def tcp_state_codes(seen: np.ndarray, pkts_s: np.ndarray) -> np.ndarray:
    """Zeek conn_state of TCP flows, as indices into :data:`STATES`, from the history
    letters each side showed."""
    o = {k: _bit(seen, v) for k, v in (("S", H_S), ("F", H_F), ("R", H_R), ("A", H_A))}
    r = {k: _bit(seen, v + RESP_OFFSET) for k, v in (("H", H_H), ("F", H_F), ("R", H_R))}
    o_data = _bit(seen, H_D)
    syn, synack = o["S"], r["H"]
    established = (syn & synack) | (synack & (o["A"] | o_data))
    conds = [
        syn & ~synack & r["R"],
        syn & ~synack & o["R"],
        syn & ~synack & o["F"],
        syn & ~synack & (pkts_s == 0),
        ~syn & synack & r["R"] & ~o["A"] & ~o_data,
        ~syn & synack & r["F"] & ~o["A"] & ~o_data,
        established & o["R"],
        established & r["R"],
        established & o["F"] & r["F"],
        established & o["F"],
        established & r["F"],
        established,
    ]
    return np.select(conds, list(range(len(conds))), default=len(STATES) - 1)


def payload_name(
    connect: str | None, socks: str | None, sni: str | None, http_host: str | None
) -> tuple[str, str] | None:
    """The peer's name from a flow's payload and where it came from, best source first.

    A proxy's CONNECT or SOCKS target is where the traffic really goes; then the SNI the
    client asked TLS for; then the HTTP Host. DNS answers come after all of these.
    """
    if connect:
        return split_host_port(connect)[0], "connect"
    if socks:
        return split_host_port(socks)[0], "socks"
    if sni:
        return sni, "sni"
    if http_host:
        return split_host_port(http_host)[0], "http_host"
    return None


def _history(hist: np.ndarray, hlen: np.ndarray, tcp: np.ndarray) -> Coded:
    """History letters of each TCP flow ("" for others); each distinct history spelled once."""
    # Letters beyond a flow's length are not part of its history: masked off, they are the
    # zero code, which spells nothing.
    mask = (np.int64(1) << (np.clip(hlen, 0, 14) * 4)) - 1
    uniq, inverse = np.unique(np.where(tcp, hist & mask, -1), return_inverse=True)
    letters = _LUT[(np.maximum(uniq, 0)[:, None] >> _SHIFTS) & 0xF]
    text = np.ascontiguousarray(letters).view("S14")[:, 0].astype(str).astype(object)
    text[uniq < 0] = ""
    return Coded(inverse.reshape(-1), text)


def _address_text(his: np.ndarray, los: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Text of the distinct addresses (two int64 halves each), each address's index among
    them, and the distinct halves. Few distinct addresses, many flows: each is spelled once,
    IPv4 ones by numpy and one C-level format call each."""
    if not his.any():  # IPv4 only (v4-mapped keys have a zero upper half)
        ulo, inverse = np.unique(los, return_inverse=True)
        uniq = np.stack([np.zeros_like(ulo), ulo], axis=1)
    else:
        # np.unique(axis=0) sorts rows as opaque records, ten times slower than this sort
        # by both halves (same order: upper half first, both signed).
        order = np.lexsort((los, his))
        sorted_hi, sorted_lo = his[order], los[order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = (sorted_hi[1:] != sorted_hi[:-1]) | (sorted_lo[1:] != sorted_lo[:-1])
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[order] = np.cumsum(new) - 1
        uniq = np.stack([sorted_hi[new], sorted_lo[new]], axis=1)
    text = np.empty(len(uniq), dtype=object)
    v4 = (uniq[:, 0] == 0) & ((uniq[:, 1] >> 32) == 0xFFFF)
    quads = uniq[v4, 1] & 0xFFFFFFFF
    octets = [((quads >> shift) & 0xFF).tolist() for shift in (24, 16, 8, 0)]
    text[v4] = list(map("%d.%d.%d.%d".__mod__, zip(*octets, strict=True)))
    others = np.flatnonzero(~v4)
    text[others] = [key_to_text(addr_key(h, lo)) for h, lo in uniq[others].tolist()]
    return text, inverse.reshape(-1), uniq


def _by_column(fs: np.ndarray, ncols: int) -> np.ndarray:
    """The first ``ncols`` columns of the row-major flow store, each made contiguous.

    Every later step reads whole columns, which in the store would fetch a cache line per
    flow each time; blocks of rows small enough for the cache make the transposition itself
    cheap (a whole-array transpose is four times slower).
    """
    out = np.empty((ncols, fs.shape[0]), dtype=fs.dtype)
    step = 8192
    for lo in range(0, fs.shape[0], step):
        out[:, lo : lo + step] = fs[lo : lo + step, :ncols].T
    return out


def _is_v4(key: int) -> bool:
    return key >> 32 == V4_MAPPED >> 32


def tunnel_text(kind: int, src: int, dst: int) -> str:
    """``gre 192.0.2.1 -> 192.0.2.2``: a tunnel's kind and the outer packet's endpoints.

    IP in IP is named by both families: ipip, 6in4, 4in6, 6in6.
    """
    name = TUNNEL_NAMES.get(kind, f"tunnel {kind}")
    if kind in (TUN_IP4, TUN_IP6):
        name = ("4" if kind == TUN_IP4 else "6") + "in" + ("4" if _is_v4(src) else "6")
        name = "ipip" if name == "4in4" else name
    return f"{name} {key_to_text(src)} -> {key_to_text(dst)}"


def tunnel_endpoints(fs: np.ndarray) -> np.ndarray:
    """The ``tunnel_endpoints`` column: text for the flows that came through a tunnel (few),
    None for the others; each distinct tunnel spelled once."""
    out = np.full(fs.shape[0], None, dtype=object)
    rows = np.flatnonzero(fs[:, F_TUN_KIND])
    if not len(rows):
        return out
    cols = [F_TUN_KIND, F_TUN_SRC_HI, F_TUN_SRC_LO, F_TUN_DST_HI, F_TUN_DST_LO]
    texts: dict[tuple[int, ...], str] = {}
    for r, key in zip(rows.tolist(), map(tuple, fs[rows][:, cols].tolist()), strict=True):
        text = texts.get(key)
        if text is None:
            kind, shi, slo, dhi, dlo = key
            text = texts[key] = tunnel_text(kind, addr_key(shi, slo), addr_key(dhi, dlo))
        out[r] = text
    return out


def failed_handshakes(
    established: np.ndarray,
    hello: np.ndarray,
    pay_s: np.ndarray,
    seen: np.ndarray,
    alerts: np.ndarray | None = None,
) -> np.ndarray:
    """Connected TCP flows whose ClientHello got no ServerHello: the server sent nothing (or
    one alert record) and the connection was closed or reset, or the client had to
    retransmit; or the server answered with a fatal alert (``alerts``: the ``tls_alert``
    column), which ends the handshake wherever the capture stops. A flow merely cut off by
    the end of the capture stays established."""
    ended = np.zeros(len(seen), dtype=bool)
    for letter in (H_F, H_R):
        ended |= _bit(seen, letter) | _bit(seen, letter + RESP_OFFSET)
    retransmitted = _bit(seen, H_T)
    failed = established & hello & (pay_s <= ALERT_RECORD_BYTES) & (ended | retransmitted)
    if alerts is not None and len(alerts):
        rows = _present(alerts)  # few flows saw an alert: only those are looked at
        texts = alerts[rows].tolist()
        fatal = np.zeros(len(alerts), dtype=bool)
        fatal[rows] = [isinstance(a, str) and a.startswith("fatal ") for a in texts]
        failed |= established & hello & fatal
    return failed


def flow_columns(
    fs: np.ndarray,
    namer: Namer,
    s2c_vlans: np.ndarray | None = None,
    vlan_joined: np.ndarray | None = None,
) -> FlowColumns:
    """Turn the flow store rows ``fs`` and the naming findings into flow columns, ordered by
    first packet (ties in flow-store order) and numbered from 0.

    ``s2c_vlans`` (n x 2) and ``vlan_joined`` come from dsaudit.flow_records.vlan_join: per flow,
    the VLAN ids of its server-to-client packets and whether it was joined across VLANs.
    """
    n = fs.shape[0]
    col = _by_column(fs, F_TUNNEL + 1)
    orig_a = col[F_ORIG_IS_A] == 1
    c_hi = np.where(orig_a, col[F_A_HI], col[F_B_HI])
    c_lo = np.where(orig_a, col[F_A_LO], col[F_B_LO])
    s_hi = np.where(orig_a, col[F_B_HI], col[F_A_HI])
    s_lo = np.where(orig_a, col[F_B_LO], col[F_A_LO])
    c_port = np.where(orig_a, col[F_A_PORT], col[F_B_PORT])
    s_port = np.where(orig_a, col[F_B_PORT], col[F_A_PORT])
    proto = col[F_PROTO]
    icmp = (proto == 1) | (proto == 58)
    c_port = np.where(icmp, col[F_ICMP_TC] >> 8, c_port)
    s_port = np.where(icmp, col[F_ICMP_TC] & 0xFF, s_port)
    text, idx, uniq = _address_text(np.concatenate([c_hi, s_hi]), np.concatenate([c_lo, s_lo]))
    pkts_c = col[F_PKTS_C]
    pkts_s = col[F_PKTS_S]
    tcp = proto == 6
    codes = np.where(tcp, tcp_state_codes(col[F_SEEN], pkts_s), np.where(pkts_s > 0, _SF, _S0))
    first = col[F_FIRST_TS]
    last = col[F_LAST_TS]

    names, detail, rejected_by_icmp = _names(fs, namer, idx[:n], idx[n:], uniq, first)
    other = np.where((pkts_c > 0) & (pkts_s > 0), _ESTABLISHED, _ONE_WAY)
    outcome = np.where(tcp, _OUTCOME_TCP[codes], other)
    outcome[rejected_by_icmp & (pkts_s == 0)] = _REJECTED
    hello = names["tls_client_hello"]
    assert isinstance(hello, np.ndarray)
    alerts = names["tls_alert"]
    assert isinstance(alerts, np.ndarray)
    failed = failed_handshakes(outcome == _ESTABLISHED, hello, col[F_PAY_S], col[F_SEEN], alerts)
    outcome[failed] = _FAILED
    joined = np.zeros(n, dtype=bool) if vlan_joined is None else vlan_joined
    s2c = np.full((n, 2), -1, dtype=np.int64) if s2c_vlans is None else s2c_vlans
    s2c = np.where(joined[:, None], s2c, -1)

    ev = col[F_EVIDENCE]
    evidence = np.select(
        [ev == EVIDENCE_SYN, ev == EVIDENCE_SYNACK, ev == EVIDENCE_PORT, ev == EVIDENCE_FIRST],
        [0, 1, 2, 3],
    )
    tunnels = tunnel_endpoints(fs)
    ptext, pcodes = np.unique(proto, return_inverse=True)
    cols: dict[str, Column] = {
        "proto": Coded(pcodes, _objects([PROTO_NAMES.get(p, str(p)) for p in ptext.tolist()])),
        "ip_version": np.where(col[F_L3] == 6, 6, 4),
        "client_ip": Coded(idx[:n], text),
        "client_port": c_port,
        "server_ip": Coded(idx[n:], text),
        "server_port": s_port,
        "vlan": np.where(col[F_VLAN0] >= 0, col[F_VLAN0], -1),
        "inner_vlan": np.where(col[F_VLAN1] >= 0, col[F_VLAN1], -1),
        "vlan_s2c": np.where(s2c[:, 0] >= 0, s2c[:, 0], -1),
        "inner_vlan_s2c": np.where(s2c[:, 1] >= 0, s2c[:, 1], -1),
        "vlan_joined": joined,
        "packets_c2s": pkts_c,
        "packets_s2c": pkts_s,
        "bytes_c2s": col[F_BYTES_C],
        "bytes_s2c": col[F_BYTES_S],
        "payload_bytes_c2s": col[F_PAY_C],
        "payload_bytes_s2c": col[F_PAY_S],
        "start": first,
        "end": last,
        "duration": (last - first) / 1e9,
        "state": Coded(codes, _STATE_TEXT),
        "history": _history(col[F_HIST], col[F_HLEN], tcp),
        "outcome": Coded(outcome, _OUTCOME_TEXT),
        "initiator_evidence": Coded(evidence, _EVIDENCE_TEXT),
        **names,
        "truncated_packets": col[F_TRUNC],
        "tunnel": col[F_TUNNEL] == 1,
        "tunnel_endpoints": tunnels,
    }
    cols["flow_id"] = np.arange(n, dtype=np.int64)
    detail[_present(tunnels)] = True
    if n > 1 and bool((first[1:] < first[:-1]).any()):
        order = np.argsort(first, kind="stable")
        for name in FLOW_COLUMNS[1:]:
            cols[name] = _reordered(cols[name], order)
        detail = detail[order]
    return FlowColumns({name: cols[name] for name in FLOW_COLUMNS}, detail=detail)


def _reordered(col: Column, order: np.ndarray) -> Column:
    """``col``'s rows in ``order``, held as it was."""
    if isinstance(col, Coded):
        return Coded(col.codes[order], col.labels)
    if isinstance(col, DnsAnswers):
        return DnsAnswers(col.records[order])
    return col[order]


def _names(
    fs: np.ndarray,
    namer: Namer,
    c_idx: np.ndarray,
    s_idx: np.ndarray,
    addresses: np.ndarray,
    first: np.ndarray,
) -> tuple[dict[str, Column], np.ndarray, np.ndarray]:
    """Per-flow name columns: the best name and where it came from, plus the raw evidence;
    which flows have any (the others keep the empty defaults); which an ICMP error rejected.

    Only flows with payload findings, and flows to an address the DNS map knows, are
    visited one by one; every other flow keeps the empty defaults.
    """
    n = fs.shape[0]
    cols = {
        k: np.full(n, None, dtype=object)
        for k in (
            *("server_name", "sni", "http_host", "connect_target", "socks_target"),
            *("dns_queries", "dns_answers", "dns_rcode", "tls_alert", "tls_server_issuer"),
        )
    }
    source = np.full(n, _NONE, dtype=np.int64)
    icmp_errors = np.full(n, None, dtype=object)
    rejected = np.zeros(n, dtype=bool)
    hello = np.zeros(n, dtype=bool)
    max_seg = np.zeros(n, dtype=np.int64)
    detail = np.zeros(n, dtype=bool)
    payload_columns(
        namer.flows,
        **cols,
        source=source,
        hello=hello.view(np.uint8),
        max_segment=max_seg,
        detail=detail.view(np.uint8),
        source_codes=_PAYLOAD_SOURCES,
    )
    named = source != _NONE
    known = namer.dns.addresses()
    if known and n:
        # A key is its lower half where the upper one is zero (IPv4): no call per address.
        plain = (addresses[:, 0] == 0) & (addresses[:, 1] >= 0)
        keys = addresses[:, 1].tolist()
        for i in np.flatnonzero(~plain).tolist():
            keys[i] = addr_key(int(addresses[i, 0]), int(addresses[i, 1]))
        asked = np.fromiter(map(known.__contains__, keys), dtype=bool, count=len(keys))
        lookup = namer.dns.lookup
        rows = np.flatnonzero(asked[s_idx] & ~named)
        found = [
            lookup(keys[c], keys[s], ts)
            for c, s, ts in zip(
                c_idx[rows].tolist(), s_idx[rows].tolist(), first[rows].tolist(), strict=True
            )
        ]
        resolved = _objects(found)
        hits = _present(resolved)
        cols["server_name"][rows[hits]] = resolved[hits]
        source[rows[hits]] = NAME_SOURCES.index("dns")
    detail |= source != _NONE
    if namer.icmp_errors:
        _attach_icmp(fs, namer, icmp_errors, rejected)
        detail |= rejected
        detail[_present(icmp_errors)] = True
    names: dict[str, Column] = {
        "server_name": cols["server_name"],
        "name_source": Coded(source, _SOURCE_TEXT),
        "sni": cols["sni"],
        "http_host": cols["http_host"],
        "connect_target": cols["connect_target"],
        "socks_target": cols["socks_target"],
        "dns_queries": cols["dns_queries"],
        "dns_answers": DnsAnswers(cols["dns_answers"]),
        "icmp_errors": icmp_errors,
        "tls_client_hello": hello,
        "max_segment_c2s": max_seg,
        "dns_rcode": cols["dns_rcode"],
        "tls_alert": cols["tls_alert"],
        "tls_server_issuer": cols["tls_server_issuer"],
    }
    return names, detail, rejected


def _present(values: np.ndarray) -> np.ndarray:
    """Positions of the cells of an object array that are not None (looped over in C)."""
    flags = map(operator.is_not, values.tolist(), itertools.repeat(None))
    return np.flatnonzero(np.fromiter(flags, dtype=bool, count=len(values)))


def _attach_icmp(fs: np.ndarray, namer: Namer, out: np.ndarray, rejected: np.ndarray) -> None:
    """Attach each ICMP error to the flow whose packet it quotes."""
    quoted_ports = {q[4] for _, q, _ in namer.icmp_errors} | {q[6] for _, q, _ in namer.icmp_errors}
    protos = list({q[2] for _, q, _ in namer.icmp_errors})
    ports = np.fromiter(quoted_ports, dtype=np.int64)
    # Only flows whose protocol and both ports some quoted packet has can match one.
    maybe = (
        np.isin(fs[:, F_PROTO], protos)
        & np.isin(fs[:, F_A_PORT], ports)
        & np.isin(fs[:, F_B_PORT], ports)
    )
    index: dict[tuple[int, ...], list[int]] = {}
    for f in np.flatnonzero(maybe).tolist():
        a = addr_key(int(fs[f, F_A_HI]), int(fs[f, F_A_LO]))
        b = addr_key(int(fs[f, F_B_HI]), int(fs[f, F_B_LO]))
        head = (int(fs[f, F_VLAN0]), int(fs[f, F_VLAN1]), int(fs[f, F_PROTO]))
        ends = sorted([(a, int(fs[f, F_A_PORT])), (b, int(fs[f, F_B_PORT]))])
        index.setdefault(head + ends[0] + ends[1], []).append(f)
    for ts, quoted, info in namer.icmp_errors:
        v0, v1, proto, src, sport, dst, dport = quoted
        ends = sorted([(src, sport), (dst, dport)])
        cands = index.get((v0, v1, proto) + ends[0] + ends[1])
        if not cands:
            continue
        best = cands[0]
        for f in cands:
            if fs[f, F_FIRST_TS] <= ts:
                best = f
        entry = dict(info)
        sender = info["from"]
        entry["from"] = key_to_text(sender) if isinstance(sender, int) else sender
        stamp = info["ts"]
        if isinstance(stamp, int):
            entry["ts"] = iso_ns(stamp)
        if out[best] is None:
            out[best] = []
        out[best].append(entry)
        # Destination unreachable (but not "fragmentation needed") means the peer refused.
        v4 = info["family"] == 4
        unreachable = (v4 and info["type"] == 3 and info["code"] != 4) or (
            not v4 and info["type"] == 1
        )
        if unreachable:
            rejected[best] = True
