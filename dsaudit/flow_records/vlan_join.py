"""Join the halves of connections whose two directions carried different VLAN tags."""

# The flow table keys flows by VLAN ids, as Zeek does. A SPAN of a routed trunk (router on a
# stick, inter-VLAN routing, asymmetric tagging) shows a request with the sender's VLAN and
# its answer with the other VLAN, so each such connection leaves two one-way halves. This
# module pairs them on the finished flow store, without touching the live table:
#
# - both halves have the same addresses, ports and protocol, and different VLAN ids;
# - each half carries one direction only, and the two directions are opposite;
# - they overlap in time, or the gap between them is no longer than the idle timeout that
#   would have ended one flow (a lone SYN and its SYN-ACK never overlap);
# - halves of one tuple are paired in order of their first packet, each at most once.
#
# A tuple seen with both directions in each of two VLANs stays two flows: neither half is
# one-way. The joined flow is what one flow would have held: counters per direction added,
# first and last packet, the history letters of both directions (so the Zeek state, worked
# out later from them, is exact) and the naming findings of both halves.

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsaudit.flows.addresses import addr_key
from dsaudit.flows.table_kernel import (
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
    F_ISN_C,
    F_LAST_TS,
    F_MODE,
    F_NEED,
    F_NPAY_C,
    F_NPAY_S,
    F_ORIG_IS_A,
    F_PAY_C,
    F_PAY_S,
    F_PKTS_C,
    F_PKTS_S,
    F_PROTO,
    F_SEEN,
    F_SEQEND_C,
    F_SEQEND_S,
    F_SYN_TS,
    F_TEXT,
    F_TRUNC,
    F_TUNNEL,
    F_VLAN0,
    F_VLAN1,
    H_H,
    H_S,
    RESP_OFFSET,
)
from dsaudit.naming.namer import FlowPayload, Namer

KEY_COLS = [F_PROTO, F_B_PORT, F_A_PORT, F_B_LO, F_B_HI, F_A_LO, F_A_HI]
# Columns that come in a client and a server flavour, next to each other in the store.
PAIRED = (
    (F_PKTS_C, F_PKTS_S),
    (F_BYTES_C, F_BYTES_S),
    (F_PAY_C, F_PAY_S),
    (F_SEQEND_C, F_SEQEND_S),
    (F_NPAY_C, F_NPAY_S),
)
MAX_DNS_QUERIES = 64  # what dsaudit.naming keeps per flow
MAX_DNS_ANSWERS = 256
_ORIG_BITS = 0x7F << 1  # history letters 1..7 (originator) in the SEEN bitmap
_NIBBLES = np.arange(14, dtype=np.int64) * 4
_IS_HANDSHAKE = np.zeros(16, dtype=bool)
_IS_HANDSHAKE[[H_S, H_H, H_S + RESP_OFFSET, H_H + RESP_OFFSET]] = True


@dataclass
class VlanJoin:
    """Flow store rows after the join, the naming state that follows them, and the VLANs."""

    fs: np.ndarray
    namer: Namer
    s2c_vlans: np.ndarray  # per flow: the VLAN ids of its server-to-client packets
    joined: np.ndarray  # per flow: whether it was joined from halves on different VLANs

    @property
    def count(self) -> int:
        """How many connections were joined."""
        return int(np.count_nonzero(self.joined))


def _swap_seen(seen: np.ndarray) -> np.ndarray:
    """The SEEN bitmap with originator and responder letters exchanged."""
    orig = seen & _ORIG_BITS
    resp = (seen >> RESP_OFFSET) & _ORIG_BITS
    return (orig << RESP_OFFSET) | resp


def _letters(hist: np.ndarray, hlen: np.ndarray) -> np.ndarray:
    """Each row's history letters (0 past its length), one per column."""
    codes = (hist[:, None] >> _NIBBLES) & 0xF
    codes[np.arange(14)[None, :] >= hlen[:, None]] = 0
    return codes


def _flip_letters(codes: np.ndarray) -> np.ndarray:
    return np.where(codes == 0, 0, np.where(codes > RESP_OFFSET, codes - RESP_OFFSET, codes + 7))


def merge_history(
    first: np.ndarray, first_len: np.ndarray, second: np.ndarray, second_len: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """History nibbles of two halves as one flow's: (HIST, HLEN) per row.

    Each direction keeps the order in which it showed its letters. Across the two directions
    the order of packets is not kept (only the letters are), so the letters are laid out by a
    fixed rule: the handshake letters (client's S or H, then server's s or h), then the
    client's other letters, then the server's. The halves carry opposite directions, so no
    letter repeats; the rule depends on each direction's letters only, so a connection read
    in several files gets the same history.
    """
    codes = np.concatenate([_letters(first, first_len), _letters(second, second_len)], axis=1)
    valid = codes != 0
    group = np.where(_IS_HANDSHAKE[codes], 0, 2) + (codes > RESP_OFFSET)
    pos = np.arange(28, dtype=np.int64)[None, :]
    order = np.argsort(np.where(valid, group * 32 + pos, 1 << 20), axis=1, kind="stable")
    codes = np.take_along_axis(codes, order, axis=1)[:, :14]
    hlen = np.count_nonzero(codes, axis=1).astype(np.int64)
    return (codes << _NIBBLES).sum(axis=1).astype(np.int64), hlen


def order_history(history: str) -> str:
    """A joined flow's history letters in merge_history's order (for flow records)."""
    hand = [c for c in history if c in "SHsh"]
    hand.sort(key=lambda c: c.islower())
    rest = [c for c in history if c not in "SHsh"]
    rest.sort(key=lambda c: c.islower())
    return "".join(hand + rest)


def _group_hash(fs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A 64-bit mix of the VLAN-free flow key of ``rows`` (equal keys, equal hashes)."""
    h = np.full(len(rows), 0x6A09E667F3BCC908, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in KEY_COLS:
            h ^= fs[rows, col].astype(np.uint64)
            h *= np.uint64(0x100000001B3)
            h ^= h >> np.uint64(29)
    return h.view(np.int64)


def pair_halves(fs: np.ndarray, timeouts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the halves to join: (earlier, later), each row in at most one pair.

    ``timeouts`` are the idle timeouts in ns (tcp, udp, other) of the table. The earlier
    half's first packet comes no later than the later half's.
    """
    pc, ps = fs[:, F_PKTS_C], fs[:, F_PKTS_S]
    cand = np.flatnonzero((pc > 0) != (ps > 0))
    empty = np.zeros(0, dtype=np.int64)
    if len(cand) < 2:
        return empty, empty
    v0, v1 = fs[cand, F_VLAN0], fs[cand, F_VLAN1]
    if (v0 == v0[0]).all() and (v1 == v1[0]).all():
        return empty, empty  # one VLAN (or none) only: nothing to join, skip the sort
    # Halves of one key end up side by side, in order of their first packet; the keys
    # themselves are compared below, so a hash collision can only cost a join.
    first_ts = fs[cand, F_FIRST_TS]
    c = cand[np.lexsort((cand, first_ts, _group_hash(fs, cand)))]
    lo, hi = c[:-1], c[1:]
    ok = fs[lo, F_VLAN0] != fs[hi, F_VLAN0]
    ok |= fs[lo, F_VLAN1] != fs[hi, F_VLAN1]
    # The end a half's packets come from: its client if it saw client packets only.
    from_a = (pc[c] > 0) == (fs[c, F_ORIG_IS_A] == 1)
    ok &= from_a[:-1] != from_a[1:]
    for col in KEY_COLS:
        ok &= fs[lo, col] == fs[hi, col]
    proto = fs[lo, F_PROTO]
    tmo = timeouts[np.where(proto == 6, 0, np.where(proto == 17, 1, 2))]
    ok &= fs[hi, F_FIRST_TS] - fs[lo, F_LAST_TS] <= tmo
    # A half may fit the one before and the one after it: pair greedily, earliest first, so
    # in a run of fitting neighbours every other link is taken.
    idx = np.arange(len(ok), dtype=np.int64)
    starts = ok & ~np.concatenate([[False], ok[:-1]])
    run_start = np.maximum.accumulate(np.where(starts, idx, 0))
    take = ok & ((idx - run_start) % 2 == 0)
    return lo[take], hi[take]


def join_vlan_halves(fs: np.ndarray, namer: Namer, timeouts: np.ndarray) -> VlanJoin:
    """Join the one-way halves of connections split across VLANs (see the module comment).

    ``fs`` (flow store rows) and ``namer`` are left as they are: a live session goes on
    filling them. ``timeouts`` are the idle timeouts in ns (tcp, udp, other) of the table.
    """
    return join_pairs(fs, namer, *pair_halves(fs, timeouts))


def join_pairs(fs: np.ndarray, namer: Namer, first: np.ndarray, second: np.ndarray) -> VlanJoin:
    """Join the halves ``first[i]`` and ``second[i]`` (rows of ``fs``, from
    :func:`pair_halves`); each joined flow takes the place of its first half."""
    n = fs.shape[0]
    if not len(first):
        vlans = np.ascontiguousarray(fs[:, [F_VLAN0, F_VLAN1]])
        return VlanJoin(fs, namer, vlans, np.zeros(n, dtype=bool))
    a, b = fs[first], fs[second]
    # The client: the half with the stronger evidence says (SYN, SYN-ACK, ports, first
    # packet); on a tie the half that began first, whose first packet came first.
    b_wins = b[:, F_EVIDENCE] < a[:, F_EVIDENCE]
    client_is_a = np.where(b_wins, b[:, F_ORIG_IS_A], a[:, F_ORIG_IS_A]) == 1
    a, b = _orient(a, client_is_a), _orient(b, client_is_a)
    merged = a.copy()
    for col_c, col_s in PAIRED:
        merged[:, col_c] = np.maximum(a[:, col_c], 0) + np.maximum(b[:, col_c], 0)
        merged[:, col_s] = np.maximum(a[:, col_s], 0) + np.maximum(b[:, col_s], 0)
    merged[:, F_TRUNC] = a[:, F_TRUNC] + b[:, F_TRUNC]
    merged[:, F_FIRST_TS] = np.minimum(a[:, F_FIRST_TS], b[:, F_FIRST_TS])
    merged[:, F_LAST_TS] = np.maximum(a[:, F_LAST_TS], b[:, F_LAST_TS])
    merged[:, F_TUNNEL] = np.maximum(a[:, F_TUNNEL], b[:, F_TUNNEL])
    merged[:, F_EVIDENCE] = np.minimum(a[:, F_EVIDENCE], b[:, F_EVIDENCE])
    merged[:, F_ORIG_IS_A] = client_is_a.astype(np.int64)
    merged[:, F_SEEN] = a[:, F_SEEN] | b[:, F_SEEN]
    lettered = np.flatnonzero((a[:, F_HLEN] > 0) | (b[:, F_HLEN] > 0))  # TCP
    merged[lettered, F_HIST], merged[lettered, F_HLEN] = merge_history(
        a[lettered, F_HIST], a[lettered, F_HLEN], b[lettered, F_HIST], b[lettered, F_HLEN]
    )
    # The client's half holds the client-side state and the VLAN of the request.
    a_is_c2s = a[:, F_PKTS_C] > 0
    for col in (F_ISN_C, F_SYN_TS, F_MODE, F_NEED, F_TEXT, F_VLAN0, F_VLAN1):
        merged[:, col] = np.where(a_is_c2s, a[:, col], b[:, col])
    kept = merged[:, [F_VLAN0, F_VLAN1]]
    s2c_vlans = np.where(a_is_c2s[:, None], b[:, [F_VLAN0, F_VLAN1]], a[:, [F_VLAN0, F_VLAN1]])

    keep = np.ones(n, dtype=bool)
    keep[second] = False
    out = fs[keep]  # a copy: the table's rows stay as they are
    mapping = np.cumsum(keep, dtype=np.int64) - 1  # old row -> new row
    mapping[second] = mapping[first]
    at = mapping[first]
    out[at] = merged
    vlans = np.ascontiguousarray(out[:, [F_VLAN0, F_VLAN1]])
    vlans[at] = s2c_vlans
    joined = np.zeros(len(out), dtype=bool)
    joined[at] = True
    view = _follow_names(namer, mapping, first, second, a_is_c2s, fs, kept)
    return VlanJoin(out, view, vlans, joined)


def _orient(rows: np.ndarray, client_is_a: np.ndarray) -> np.ndarray:
    """``rows`` (a copy, changed in place) turned round where their own idea of the client
    was the other end."""
    out = rows
    flip = (rows[:, F_ORIG_IS_A] == 1) != client_is_a
    if not flip.any():
        return out
    for col_c, col_s in PAIRED:
        out[flip, col_c], out[flip, col_s] = out[flip, col_s], out[flip, col_c]
    out[flip, F_SEEN] = _swap_seen(out[flip, F_SEEN])
    codes = _flip_letters(_letters(out[flip, F_HIST], out[flip, F_HLEN]))
    out[flip, F_HIST] = (codes << _NIBBLES).sum(axis=1)
    # A client-side SYN of the turned half was the server's: no client ISN from it.
    out[flip, F_ISN_C] = -1
    out[flip, F_SYN_TS] = -1
    out[flip, F_ORIG_IS_A] = client_is_a[flip].astype(np.int64)
    return out


def _follow_names(
    namer: Namer,
    mapping: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    first_is_c2s: np.ndarray,
    fs: np.ndarray,
    kept: np.ndarray,
) -> Namer:
    """A Namer view whose per-flow findings follow the joined rows (the original is kept)."""
    view = Namer()
    view.dns = namer.dns
    view.decode_failures = namer.decode_failures
    found = namer.flows
    moved = mapping.tolist()
    flows = {moved[f]: p for f, p in found.items()}
    pairs = zip(first.tolist(), second.tolist(), first_is_c2s.tolist(), strict=True)
    for f1, f2, c2s_first in pairs:
        p1, p2 = found.get(f1), found.get(f2)
        if p1 is None and p2 is None:
            continue
        both = merge_payloads(p1, p2, c2s_first)
        flows[moved[f1]] = both
    view.flows = flows
    view.icmp_errors = _icmp_follow(namer.icmp_errors, fs, first, second, kept)
    return view


def merge_payloads(
    earlier: FlowPayload | None, later: FlowPayload | None, earlier_is_c2s: bool
) -> FlowPayload:
    """What both halves' payloads named, as one flow's findings.

    What the client sends (TLS SNI and ALPN, HTTP Host, a CONNECT or SOCKS target) comes from
    the client's half, else from the other; the answer to a CONNECT from either; DNS queries,
    answers and response codes of both, the earlier half's first.
    """
    if earlier is None or later is None:
        only = earlier if earlier is not None else later
        assert only is not None
        return only.replace(segs=None, quic=None)
    client, other = (earlier, later) if earlier_is_c2s else (later, earlier)
    queries: list[str] = []
    for name in earlier.dns_queries + later.dns_queries:
        if name not in queries and len(queries) < MAX_DNS_QUERIES:
            queries.append(name)
    return client.replace(
        sni=client.sni or other.sni,
        alpn=client.alpn or other.alpn,
        http_host=client.http_host or other.http_host,
        http_method=client.http_method or other.http_method,
        connect=client.connect or other.connect,
        connect_status=(
            client.connect_status if client.connect_status is not None else other.connect_status
        ),
        socks=client.socks or other.socks,
        starttls=client.starttls or other.starttls,
        tls_alert=client.tls_alert or other.tls_alert,
        tls_server_issuer=client.tls_server_issuer or other.tls_server_issuer,
        dns_queries=queries,
        dns_answers=(earlier.dns_answers + later.dns_answers)[:MAX_DNS_ANSWERS],
        dns_rcodes=earlier.dns_rcodes + later.dns_rcodes,
        segs=None,
        quic=None,
        done=True,
    )


def _icmp_follow(
    errors: list[tuple[int, tuple[int, ...], dict[str, object]]],
    fs: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    kept: np.ndarray,
) -> list[tuple[int, tuple[int, ...], dict[str, object]]]:
    """ICMP errors quoting a packet of a joined flow, keyed by the VLANs the flow keeps."""
    if not errors:
        return errors

    def key(f: int) -> tuple[int, ...]:
        row = fs[f]
        ends = sorted(
            [
                (addr_key(int(row[F_A_HI]), int(row[F_A_LO])), int(row[F_A_PORT])),
                (addr_key(int(row[F_B_HI]), int(row[F_B_LO])), int(row[F_B_PORT])),
            ]
        )
        return (int(row[F_VLAN0]), int(row[F_VLAN1]), int(row[F_PROTO]), *ends[0], *ends[1])

    moves: dict[tuple[int, ...], tuple[int, int]] = {}
    for f1, f2, (v0, v1) in zip(first.tolist(), second.tolist(), kept.tolist(), strict=True):
        moves[key(f1)] = moves[key(f2)] = (v0, v1)
    out = []
    for ts, quoted, info in errors:
        v0, v1, proto, src, sport, dst, dport = quoted
        ends = sorted([(src, sport), (dst, dport)])
        target = moves.get((v0, v1, proto, *ends[0], *ends[1]))
        if target is not None:
            quoted = (*target, proto, src, sport, dst, dport)
        out.append((ts, quoted, info))
    return out
