"""Finished flow records: the flow table plus naming findings as a typed pandas DataFrame."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dsaudit.decode.dns import rtype_name
from dsaudit.decode.packet_kernel import TUN_IP4, TUN_IP6, TUNNEL_NAMES
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
    HISTORY_LETTERS,
    RESP_OFFSET,
)
from dsaudit.naming import Namer

OUTCOMES = ["established", "rejected", "unanswered", "partial", "one-way"]
EVIDENCES = ["syn", "synack", "port", "first-packet"]
NAME_SOURCES = ["connect", "socks", "sni", "http_host", "dns", "none"]
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}

# Column name -> pandas dtype: the contract every later stage relies on.
FLOW_DTYPES: dict[str, Any] = {
    "flow_id": "int64",
    "proto": "string",
    "ip_version": "int8",
    "client_ip": "string",
    "client_port": "int32",
    "server_ip": "string",
    "server_port": "int32",
    "vlan": "Int16",
    "inner_vlan": "Int16",
    "packets_c2s": "int64",
    "packets_s2c": "int64",
    "bytes_c2s": "int64",
    "bytes_s2c": "int64",
    "payload_bytes_c2s": "int64",
    "payload_bytes_s2c": "int64",
    "start": "datetime64[ns, UTC]",
    "end": "datetime64[ns, UTC]",
    "duration": "float64",
    "state": "string",
    "history": "string",
    "outcome": pd.CategoricalDtype(OUTCOMES),
    "initiator_evidence": pd.CategoricalDtype(EVIDENCES),
    "server_name": "string",
    "name_source": pd.CategoricalDtype(NAME_SOURCES),
    "sni": "string",
    "http_host": "string",
    "connect_target": "string",
    "socks_target": "string",
    "dns_queries": "object",
    "dns_answers": "object",
    "icmp_errors": "object",
    "truncated_packets": "int64",
    "tunnel": "bool",
    # The tunnel the flow's first packet came through: kind and outer endpoints, or null.
    "tunnel_endpoints": "string",
}
FLOW_COLUMNS = list(FLOW_DTYPES)
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

_LUT = np.frombuffer(HISTORY_LETTERS.encode("ascii"), dtype=np.uint8).copy()
_LUT[0] = 0
_SHIFTS = np.arange(14, dtype=np.int64) * 4


def empty_flows() -> pd.DataFrame:
    """A DataFrame with the flow columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in FLOW_DTYPES.items()})


def _bit(seen: np.ndarray, letter: int) -> np.ndarray:
    return ((seen >> letter) & 1).astype(bool)


def tcp_states(seen: np.ndarray, pkts_s: np.ndarray) -> np.ndarray:
    """Zeek conn_state for TCP flows from the history letters each side showed."""
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
    choices = ["REJ", "RSTOS0", "SH", "S0", "RSTRH", "SHR", "RSTO", "RSTR", "SF", "S2", "S3", "S1"]
    return np.select(conds, choices, default="OTH")


def _outcomes(
    proto: np.ndarray, state: np.ndarray, pkts_c: np.ndarray, pkts_s: np.ndarray
) -> np.ndarray:
    tcp = proto == 6
    conds = [
        tcp & (state == "REJ"),
        tcp & np.isin(state, ["S0", "RSTOS0", "SH"]),
        tcp & np.isin(state, ["S1", "SF", "S2", "S3", "RSTO", "RSTR"]),
        tcp,
        (pkts_c > 0) & (pkts_s > 0),
    ]
    return np.select(
        conds,
        ["rejected", "unanswered", "established", "partial", "established"],
        default="one-way",
    )


def _history(hist: np.ndarray, hlen: np.ndarray) -> np.ndarray:
    codes = _LUT[(hist[:, None] >> _SHIFTS) & 0xF]
    codes[np.arange(14)[None, :] >= hlen[:, None]] = 0
    return np.ascontiguousarray(codes).view("S14")[:, 0].astype(str)


def build_flow_frame(fs: np.ndarray, namer: Namer) -> pd.DataFrame:
    """Turn the flow store rows ``fs`` and the naming findings into the flows DataFrame."""
    n = fs.shape[0]
    if n == 0:
        return empty_flows()
    orig_a = fs[:, F_ORIG_IS_A] == 1
    c_hi = np.where(orig_a, fs[:, F_A_HI], fs[:, F_B_HI])
    c_lo = np.where(orig_a, fs[:, F_A_LO], fs[:, F_B_LO])
    s_hi = np.where(orig_a, fs[:, F_B_HI], fs[:, F_A_HI])
    s_lo = np.where(orig_a, fs[:, F_B_LO], fs[:, F_A_LO])
    c_port = np.where(orig_a, fs[:, F_A_PORT], fs[:, F_B_PORT])
    s_port = np.where(orig_a, fs[:, F_B_PORT], fs[:, F_A_PORT])
    proto = fs[:, F_PROTO]
    icmp = (proto == 1) | (proto == 58)
    c_port = np.where(icmp, fs[:, F_ICMP_TC] >> 8, c_port)
    s_port = np.where(icmp, fs[:, F_ICMP_TC] & 0xFF, s_port)
    # Few distinct addresses, many flows: convert each distinct address once.
    pairs = np.concatenate([np.stack([c_hi, c_lo], 1), np.stack([s_hi, s_lo], 1)])
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    ukeys = [addr_key(h, lo) for h, lo in uniq.tolist()]
    utext = [key_to_text(k) for k in ukeys]
    c_idx = inverse[:n].tolist()
    s_idx = inverse[n:].tolist()
    c_keys = [ukeys[i] for i in c_idx]
    s_keys = [ukeys[i] for i in s_idx]
    seen = fs[:, F_SEEN]
    pkts_c = fs[:, F_PKTS_C]
    pkts_s = fs[:, F_PKTS_S]
    state = np.where(proto == 6, tcp_states(seen, pkts_s), np.where(pkts_s > 0, "SF", "S0"))
    first = fs[:, F_FIRST_TS]
    last = fs[:, F_LAST_TS]

    names = _names(fs, namer, c_keys, s_keys, first)
    outcome = _outcomes(proto, state, pkts_c, pkts_s)
    rejected_by_icmp = names.pop("_rejected")
    outcome = np.where(rejected_by_icmp & (pkts_s == 0), "rejected", outcome)

    evidence = np.array(EVIDENCES, dtype=object)[
        np.select(
            [
                fs[:, F_EVIDENCE] == EVIDENCE_SYN,
                fs[:, F_EVIDENCE] == EVIDENCE_SYNACK,
                fs[:, F_EVIDENCE] == EVIDENCE_PORT,
                fs[:, F_EVIDENCE] == EVIDENCE_FIRST,
            ],
            [0, 1, 2, 3],
        )
    ]
    vlan0 = fs[:, F_VLAN0]
    vlan1 = fs[:, F_VLAN1]
    data: dict[str, Any] = {
        "proto": [PROTO_NAMES.get(p, str(p)) for p in proto.tolist()],
        "ip_version": np.where(fs[:, F_L3] == 6, 6, 4),
        "client_ip": [utext[i] for i in c_idx],
        "client_port": c_port,
        "server_ip": [utext[i] for i in s_idx],
        "server_port": s_port,
        "vlan": pd.array(np.where(vlan0 >= 0, vlan0, 0), dtype="Int16"),
        "inner_vlan": pd.array(np.where(vlan1 >= 0, vlan1, 0), dtype="Int16"),
        "packets_c2s": pkts_c,
        "packets_s2c": pkts_s,
        "bytes_c2s": fs[:, F_BYTES_C],
        "bytes_s2c": fs[:, F_BYTES_S],
        "payload_bytes_c2s": fs[:, F_PAY_C],
        "payload_bytes_s2c": fs[:, F_PAY_S],
        "start": pd.to_datetime(first, unit="ns", utc=True),
        "end": pd.to_datetime(last, unit="ns", utc=True),
        "duration": (last - first) / 1e9,
        "state": state,
        "history": np.where(proto == 6, _history(fs[:, F_HIST], fs[:, F_HLEN]), ""),
        "outcome": outcome,
        "initiator_evidence": evidence,
        **names,
        "truncated_packets": fs[:, F_TRUNC],
        "tunnel": fs[:, F_TUNNEL] == 1,
        "tunnel_endpoints": tunnel_endpoints(fs),
    }
    df = pd.DataFrame(data)
    df.loc[vlan0 < 0, "vlan"] = pd.NA
    df.loc[vlan1 < 0, "inner_vlan"] = pd.NA
    order = np.lexsort((np.arange(n), first))
    df = df.iloc[order].reset_index(drop=True)
    df.insert(0, "flow_id", np.arange(n, dtype=np.int64))
    return df.astype(FLOW_DTYPES)


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


def tunnel_endpoints(fs: np.ndarray) -> list[str | None]:
    """The ``tunnel_endpoints`` column: text for the flows that came through a tunnel."""
    out: list[str | None] = [None] * fs.shape[0]
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


def _names(
    fs: np.ndarray, namer: Namer, c_keys: list[int], s_keys: list[int], first: np.ndarray
) -> dict[str, Any]:
    """Per-flow name columns: the best name and where it came from, plus the raw evidence."""
    n = fs.shape[0]
    cols: dict[str, list[Any]] = {
        k: [None] * n for k in ("server_name", "sni", "http_host", "connect_target", "socks_target")
    }
    source = ["none"] * n
    queries: list[Any] = [[] for _ in range(n)]
    answers: list[Any] = [[] for _ in range(n)]
    icmp_errors: list[Any] = [[] for _ in range(n)]
    rejected = np.zeros(n, dtype=bool)
    found = namer.flows
    lookup = namer.dns.lookup
    first_l = first.tolist()
    for f in range(n):
        p = found.get(f)
        name = src = None
        if p is not None:
            cols["sni"][f] = p.sni
            cols["http_host"][f] = p.http_host
            cols["connect_target"][f] = p.connect
            cols["socks_target"][f] = p.socks
            queries[f] = p.dns_queries
            answers[f] = [
                {"name": nm, "type": rtype_name(t), "data": d, "ttl": ttl}
                for nm, t, d, ttl in p.dns_answers
            ]
            best = payload_name(p.connect, p.socks, p.sni, p.http_host)
            if best is not None:
                name, src = best
        if name is None:
            name = lookup(c_keys[f], s_keys[f], first_l[f])
            if name is not None:
                src = "dns"
        cols["server_name"][f] = name
        source[f] = src or "none"
    if namer.icmp_errors:
        _attach_icmp(fs, namer, icmp_errors, rejected)
    return {
        "server_name": cols["server_name"],
        "name_source": source,
        "sni": cols["sni"],
        "http_host": cols["http_host"],
        "connect_target": cols["connect_target"],
        "socks_target": cols["socks_target"],
        "dns_queries": queries,
        "dns_answers": answers,
        "icmp_errors": icmp_errors,
        "_rejected": rejected,
    }


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


def _attach_icmp(fs: np.ndarray, namer: Namer, out: list[Any], rejected: np.ndarray) -> None:
    """Attach each ICMP error to the flow whose packet it quotes."""
    index: dict[tuple[int, ...], list[int]] = {}
    for f in range(fs.shape[0]):
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
            entry["ts"] = str(np.datetime_as_string(np.datetime64(stamp, "ns"), unit="us")) + "Z"
        out[best].append(entry)
        # Destination unreachable (but not "fragmentation needed") means the peer refused.
        v4 = info["family"] == 4
        unreachable = (v4 and info["type"] == 3 and info["code"] != 4) or (
            not v4 and info["type"] == 1
        )
        if unreachable:
            rejected[best] = True
