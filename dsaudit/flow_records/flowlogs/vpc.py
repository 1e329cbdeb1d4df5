"""AWS VPC Flow Logs as flows: default and custom formats, versions 2 to 5, directions paired."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dsaudit.flow_records.flowlogs.common import (
    FlowLogError,
    SourceResult,
    base_row,
    finish,
    ip_version,
    lines,
    states_from_history,
)
from dsaudit.flows.table import DEFAULT_SERVER_PORTS, Timeouts

KIND = "vpc"
DEFAULT_FIELDS = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
    "start end action log-status"
).split()
REQUIRED = {"srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes", "start"}
KNOWN_FIELDS = set(DEFAULT_FIELDS) | {
    "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr",
    "region", "az-id", "sublocation-type", "sublocation-id", "pkt-src-aws-service",
    "pkt-dst-aws-service", "flow-direction", "traffic-path", "ecs-cluster-arn",
    "ecs-cluster-name", "ecs-container-instance-arn", "ecs-container-instance-id",
    "ecs-container-id", "ecs-second-container-id", "ecs-service-name", "ecs-task-definition-arn",
    "ecs-task-arn", "ecs-task-id", "reject-reason", "resource-id", "encryption-status",
}  # fmt: skip
PROTOCOLS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 1, 2, 4, 16
SERVER_PORTS = frozenset(DEFAULT_SERVER_PORTS)
LIMITATIONS = [
    "VPC flow logs carry no host names (no SNI, Host or DNS): name-based rules can only "
    "match by port.",
    "REJECT records are blocked flows: a security group or network ACL dropped them.",
    "VPC flow logs aggregate packets per direction over 1- or 10-minute windows: the two "
    "directions are paired by address and port, and times are only as exact as the windows.",
    "Byte counts are IP-level; there is no payload size, and no ICMP error is linked to a flow.",
]
NO_FLAGS = (
    "These records have no tcp-flags field (version 2 format): who initiated a connection "
    "is inferred from ports ('port') or the earliest record ('first-packet'), not observed, "
    "and TCP states are unknown (OTH)."
)


@dataclass
class _Pair:
    """Both directions of one conversation: records joined while within the idle timeout."""

    a: tuple[str, int]
    b: tuple[str, int]
    proto: str
    start: int
    end: int
    first_src: tuple[str, int]
    packets: dict[tuple[str, int], int] = field(default_factory=dict)
    bytes: dict[tuple[str, int], int] = field(default_factory=dict)
    flags: dict[tuple[str, int], int] = field(default_factory=dict)
    rejected: dict[tuple[str, int], int] = field(default_factory=dict)
    has_flags: bool = False


def parse_format(text: str) -> list[str]:
    """Field names from an AWS format string (``${srcaddr} ${dstaddr}``) or a header line."""
    names = [t.strip().removeprefix("${").removesuffix("}") for t in text.split()]
    return [n.replace("_", "-") for n in names]


def looks_like_vpc(head: str) -> bool:
    """True for a VPC flow log header line or a default-format record."""
    first = head.lstrip().split("\n", 1)[0]
    names = parse_format(first)
    if {"srcaddr", "dstaddr"} <= set(names):
        return True
    parts = first.split()
    return len(parts) == len(DEFAULT_FIELDS) and parts[0] == "2" and parts[2].startswith("eni-")


def _records(path: str, fields: list[str] | None) -> Iterator[tuple[int, dict[str, str]]]:
    names = fields
    for n, line in lines(path):
        if not line.strip():
            continue
        parts = line.split()
        header = parse_format(line)
        if {"srcaddr", "dstaddr"} <= set(header):
            names = header  # a header line: S3 delivery writes one at the top of each file
            continue
        if names is None:
            names = DEFAULT_FIELDS
        if len(parts) != len(names):
            raise FlowLogError(path, n, f"{len(parts)} values for {len(names)} fields")
        if not REQUIRED <= set(names):
            raise FlowLogError(path, n, f"fields {sorted(REQUIRED - set(names))} missing")
        yield n, dict(zip(names, parts, strict=True))


def _endpoint(rec: dict[str, str], side: str) -> str:
    # Behind a NAT gateway or a load balancer, pkt-*addr is the real peer.
    pkt = rec.get(f"pkt-{side}addr", "-")
    return pkt if pkt not in ("-", "") else rec[f"{side}addr"]


def _client(pair: _Pair) -> tuple[tuple[str, int], str]:
    """The initiator and how it was decided: SYN, SYN-ACK, port, or the earliest record."""
    for end, other in ((pair.a, pair.b), (pair.b, pair.a)):
        f = pair.flags.get(end, 0)
        if f & TCP_SYN and not f & TCP_ACK:
            return end, "syn"
        if f & TCP_SYN and f & TCP_ACK and not pair.flags.get(other, 0) & TCP_SYN:
            return other, "synack"
    a_srv, b_srv = pair.a[1] in SERVER_PORTS, pair.b[1] in SERVER_PORTS
    if a_srv != b_srv:
        return (pair.b if a_srv else pair.a), "port"
    return pair.first_src, "first-packet"


def _history(pair: _Pair, client: tuple[str, int], server: tuple[str, int]) -> str:
    c, s = pair.flags.get(client, 0), pair.flags.get(server, 0)
    letters = [
        ("S", c & TCP_SYN and not c & TCP_ACK),
        ("h", s & TCP_SYN and s & TCP_ACK),
        ("F", c & TCP_FIN),
        ("f", s & TCP_FIN),
        ("R", c & TCP_RST),
        ("r", s & TCP_RST),
    ]
    return "".join(letter for letter, on in letters if on)


def _row(pair: _Pair) -> dict[str, Any]:
    client, evidence = _client(pair)
    server = pair.b if client == pair.a else pair.a
    pkts_c, pkts_s = pair.packets.get(client, 0), pair.packets.get(server, 0)
    row = base_row()
    row.update(
        {
            "proto": pair.proto,
            "ip_version": ip_version(client[0]),
            "client_ip": client[0],
            "client_port": client[1],
            "server_ip": server[0],
            "server_port": server[1],
            "packets_c2s": pkts_c,
            "packets_s2c": pkts_s,
            "bytes_c2s": pair.bytes.get(client, 0),
            "bytes_s2c": pair.bytes.get(server, 0),
            "start": pd.Timestamp(pair.start, unit="s", tz="UTC"),
            "end": pd.Timestamp(pair.end, unit="s", tz="UTC"),
            "history": _history(pair, client, server) if pair.proto == "tcp" else "",
            "initiator_evidence": evidence,
        }
    )
    blocked = pair.rejected.get(client, 0) > 0 and pkts_s == 0
    row["_blocked"] = blocked
    row["_known"] = pair.has_flags
    return row


def read_vpc(paths: list[str], fields: list[str] | None = None) -> SourceResult:
    """Flows from VPC flow log files (plain or gzipped, as S3 delivers them).

    ``fields`` names the columns of files without a header line; default: the version 2
    default format. Records of the same conversation from both directions (and from both
    interfaces when both are logged) are paired while they are within the idle timeout.
    """
    timeouts = Timeouts()
    recs: list[tuple[int, int, str, tuple[str, int], tuple[str, int], dict[str, str]]] = []
    files: list[tuple[str, str, int]] = []
    seen: set[tuple[str, ...]] = set()
    has_flags = False
    for path in paths:
        count = 0
        for n, rec in _records(path, fields):
            count += 1
            if rec.get("log-status", "OK") != "OK" or rec["srcaddr"] == "-":
                continue  # NODATA / SKIPDATA: no traffic, or records the service lost
            # The same packets seen by two logged interfaces (both ends in the VPC).
            ident = tuple(rec.get(k, "") for k in sorted(REQUIRED | {"end", "action"}))
            if ident in seen:
                continue
            seen.add(ident)
            try:
                proto = PROTOCOLS.get(int(rec["protocol"]), rec["protocol"])
                src = (_endpoint(rec, "src"), int(rec["srcport"]))
                dst = (_endpoint(rec, "dst"), int(rec["dstport"]))
                start = int(rec["start"])
                end = int(rec.get("end", rec["start"]))
            except ValueError as exc:
                raise FlowLogError(path, n, f"bad value ({exc})") from None
            has_flags = has_flags or "tcp-flags" in rec
            recs.append((start, end, proto, src, dst, rec))
        files.append((path, "vpc-flow-log", count))
    recs.sort(key=lambda r: (r[0], r[1]))
    open_pairs: dict[tuple[Any, ...], _Pair] = {}
    done: list[_Pair] = []
    for start, end, proto, src, dst, rec in recs:
        a, b = sorted([src, dst])
        key = (proto, a, b)
        pair = open_pairs.get(key)
        tmo = {"tcp": timeouts.tcp, "udp": timeouts.udp}.get(proto, timeouts.other)
        if pair is None or start - pair.end > tmo:
            if pair is not None:
                done.append(pair)
            pair = open_pairs[key] = _Pair(a, b, proto, start, end, src)
        pair.end = max(pair.end, end)
        pair.packets[src] = pair.packets.get(src, 0) + int(rec["packets"])
        pair.bytes[src] = pair.bytes.get(src, 0) + int(rec["bytes"])
        flags = rec.get("tcp-flags", "-")
        if flags not in ("-", ""):
            pair.flags[src] = pair.flags.get(src, 0) | int(flags)
            pair.has_flags = True
        if rec.get("action") == "REJECT":
            pair.rejected[src] = pair.rejected.get(src, 0) + 1
    rows = [_row(p) for p in [*done, *open_pairs.values()]]
    _states(rows)
    limits = list(LIMITATIONS)
    if not has_flags:
        limits.append(NO_FLAGS)
    return SourceResult(result=finish(rows, files), kind=KIND, limitations=limits)


def _states(rows: list[dict[str, Any]]) -> None:
    """State and outcome from the actions and the counts; TCP states from flags when logged.

    Packets accepted both ways make a flow established whether or not its SYN was logged.
    """
    if not rows:
        return
    proto = pd.Series([r["proto"] for r in rows]).to_numpy()
    pkts_s = pd.Series([r["packets_s2c"] for r in rows]).to_numpy()
    states = states_from_history([r["history"] for r in rows], proto, pkts_s).tolist()
    for row, state in zip(rows, states, strict=True):
        tcp = row["proto"] == "tcp"
        known = row.pop("_known")
        if row.pop("_blocked"):
            row["state"], row["outcome"] = ("REJ" if tcp else "S0"), "rejected"
        elif row["packets_s2c"] == 0:
            row["state"] = state if tcp and known else "S0"
            row["outcome"] = "unanswered" if tcp else "one-way"
        else:
            row["state"] = (state if known else "OTH") if tcp else "SF"
            row["outcome"] = "established"
