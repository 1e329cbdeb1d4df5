"""Suricata eve.json as flows: flow events, named from tls, http and dns events by flow_id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd

from dsaudit.flow_records.flowlogs.common import (
    FlowLogError,
    SourceResult,
    base_row,
    finish,
    ip_version,
    lines,
    name_flows,
    states_from_history,
)
from dsaudit.flows.addresses import key_from_text
from dsaudit.naming.dns_map import DnsMap

KIND = "suricata"
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "IPV6-ICMP": "icmpv6"}
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
LIMITATIONS = [
    "Suricata logs the TCP flags each side ever sent, not their order: the history letters "
    "are in a fixed order and 'D' means a PSH was seen.",
    "Suricata's flow events do not link ICMP errors to the flows they quote: 'rejected' "
    "comes from TCP resets only.",
    "A flow Suricata had not timed out when it stopped is missing unless it flushed its "
    "flows at exit.",
]
NO_NAMES = (
    "No tls, http or dns events were logged: flows carry no names, so name-based rules can "
    "only match by port."
)


def looks_like_eve(head: str) -> bool:
    """True for an EVE JSON record."""
    first = head.lstrip().split("\n", 1)[0]
    return first.startswith("{") and '"event_type"' in first


def events(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, event) for every JSON object in an eve.json file."""
    for n, line in lines(path):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FlowLogError(path, n, f"not JSON ({exc.msg})") from None
        if isinstance(event, dict):
            yield n, event


def _flags(value: Any) -> int:
    try:
        return int(str(value), 16) if value not in (None, "") else 0
    except ValueError:
        return 0


def _history(ts: int, tc: int) -> str:
    letters = [
        # Flags are OR-ed over the flow: a SYN from the client side is its opening SYN.
        ("S", ts & TCP_SYN),
        ("h", tc & TCP_SYN),
        ("A", ts & TCP_ACK),
        ("D", ts & TCP_PSH),
        ("a", tc & TCP_ACK),
        ("d", tc & TCP_PSH),
        ("F", ts & TCP_FIN),
        ("f", tc & TCP_FIN),
        ("R", ts & TCP_RST),
        ("r", tc & TCP_RST),
    ]
    return "".join(letter for letter, on in letters if on)


def _time(value: Any, path: str, n: int) -> pd.Timestamp:
    try:
        return pd.Timestamp(str(value)).tz_convert("UTC")
    except (TypeError, ValueError):
        raise FlowLogError(path, n, f"bad timestamp {value!r}") from None


def _flow_row(ev: dict[str, Any], path: str, n: int) -> dict[str, Any]:
    flow = ev.get("flow") or {}
    tcp = ev.get("tcp") or {}
    proto = PROTOCOLS.get(str(ev.get("proto", "")).upper(), str(ev.get("proto", "")).lower())
    src, dst = str(ev.get("src_ip")), str(ev.get("dest_ip"))
    ts, tc = _flags(tcp.get("tcp_flags_ts")), _flags(tcp.get("tcp_flags_tc"))
    history = _history(ts, tc) if proto == "tcp" else ""
    if proto == "tcp" and "S" in history:
        evidence = "syn"
    elif proto == "tcp" and "h" in history:
        evidence = "synack"
    elif proto.startswith("icmp"):
        evidence = "port"
    else:
        evidence = "first-packet"
    icmp = proto.startswith("icmp")
    vlans = ev.get("vlan") or []
    row = base_row()
    row.update(
        {
            "proto": proto,
            "ip_version": ip_version(src),
            "client_ip": src,
            "client_port": int(ev.get("icmp_type", 0) if icmp else ev.get("src_port", 0)),
            "server_ip": dst,
            "server_port": int(ev.get("icmp_code", 0) if icmp else ev.get("dest_port", 0)),
            "vlan": int(vlans[0]) if len(vlans) > 0 else pd.NA,
            "inner_vlan": int(vlans[1]) if len(vlans) > 1 else pd.NA,
            "packets_c2s": int(flow.get("pkts_toserver", 0)),
            "packets_s2c": int(flow.get("pkts_toclient", 0)),
            "bytes_c2s": int(flow.get("bytes_toserver", 0)),
            "bytes_s2c": int(flow.get("bytes_toclient", 0)),
            "start": _time(flow.get("start"), path, n),
            "end": _time(flow.get("end", flow.get("start")), path, n),
            "history": history,
            "initiator_evidence": evidence,
            "tunnel": ev.get("parent_id") is not None,
            "_id": ev.get("flow_id"),
        }
    )
    return row


def _dns(ev: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Queries and answers of a dns event, EVE format versions 1 to 3."""
    dns = ev.get("dns") or {}
    queries = [str(q["rrname"]) for q in dns.get("queries") or [] if "rrname" in q]
    if dns.get("type") == "query" and "rrname" in dns:
        queries.append(str(dns["rrname"]))
    answers = []
    items = dns.get("answers") or []
    if dns.get("type") == "answer" and "rdata" in dns:
        items = [dns]  # version 1: one answer per event
    for a in items:
        if isinstance(a, dict) and "rdata" in a:
            answers.append(
                {
                    "name": a.get("rrname"),
                    "type": a.get("rrtype"),
                    "data": str(a["rdata"]),
                    "ttl": int(a.get("ttl", 0)),
                }
            )
    if not queries and "rrname" in dns:
        queries.append(str(dns["rrname"]))
    return queries, answers


def _asked(answers: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(address, asked name) pairs, following CNAME chains back as the engine does."""
    alias_of = {str(a["data"]).lower(): str(a["name"]) for a in answers if a["type"] == "CNAME"}
    out = []
    for a in answers:
        if a["type"] in ("A", "AAAA"):
            name, seen = str(a["name"]), set()
            while name.lower() in alias_of and name.lower() not in seen:
                seen.add(name.lower())
                name = alias_of[name.lower()]
            out.append((a["data"], name))
    return out


def read_eve(paths: list[str]) -> SourceResult:
    """Flows from Suricata eve.json files: one per flow event."""
    flows: list[dict[str, Any]] = []
    names: dict[Any, dict[str, Any]] = {}
    dns = DnsMap()
    files: list[tuple[str, str, int]] = []
    named = False
    for path in paths:
        count = 0
        for n, ev in events(path):
            count += 1
            kind = ev.get("event_type")
            fid = ev.get("flow_id")
            if kind == "flow":
                flows.append(_flow_row(ev, path, n))
                continue
            got = names.setdefault(fid, {"dns_queries": [], "dns_answers": []})
            if kind == "tls" and (ev.get("tls") or {}).get("sni"):
                got.setdefault("sni", str(ev["tls"]["sni"]))
                named = True
            elif kind == "http" and (ev.get("http") or {}).get("hostname"):
                got.setdefault("http_host", str(ev["http"]["hostname"]))
                named = True
            elif kind == "dns":
                named = True
                queries, answers = _dns(ev)
                got["dns_queries"] += [q for q in queries if q not in got["dns_queries"]]
                got["dns_answers"] += answers
                # The client is the side not on port 53, whichever way the event is written.
                side = "dest_ip" if ev.get("src_port") == 53 else "src_ip"
                client = key_from_text(str(ev.get(side)))
                ts = int(_time(ev.get("timestamp"), path, n).value)
                for addr, name in _asked(answers):
                    key = key_from_text(addr)
                    if client is not None and key is not None:
                        dns.add(client, key, ts, name)
        files.append((path, "suricata-eve", count))
    for row in flows:
        row.update(names.get(row.pop("_id"), {}))
    name_flows(flows, dns)
    if flows:
        proto = pd.Series([r["proto"] for r in flows]).to_numpy()
        pkts_s = pd.Series([r["packets_s2c"] for r in flows]).to_numpy()
        states = states_from_history([r["history"] for r in flows], proto, pkts_s)
        for row, state in zip(flows, states.tolist(), strict=True):
            row["state"] = state
    limits = list(LIMITATIONS) + ([] if named else [NO_NAMES])
    return SourceResult(result=finish(flows, files), kind=KIND, limitations=limits)
