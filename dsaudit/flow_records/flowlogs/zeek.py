"""Zeek logs as flows: conn.log joined with ssl.log, http.log and dns.log by uid (TSV or JSON)."""

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
)
from dsaudit.flows.addresses import key_from_text
from dsaudit.flows.table_kernel import HISTORY_LETTERS
from dsaudit.naming.dns_map import DnsMap

KIND = "zeek"
LOG_KINDS = ("conn", "ssl", "http", "dns")
LIMITATIONS = [
    "Zeek counts bytes at the IP layer (orig_ip_bytes): link-layer headers are not in them.",
    "Zeek's conn.log does not link ICMP errors to the flows they quote: 'rejected' comes "
    "from TCP resets only, and path-MTU problems cannot be found.",
    "dns.log lists answer values without record types or owner names: types are inferred "
    "(A/AAAA for addresses).",
]
NO_NAMES = (
    "No ssl.log, http.log or dns.log was given: flows carry no names, so name-based rules "
    "can only match by port."
)
_UNSET = "-"
_EMPTY = "(empty)"


def log_kind(fields: set[str], path_hint: str | None) -> str | None:
    """Which Zeek log a header or JSON record belongs to."""
    if path_hint in LOG_KINDS:
        return path_hint
    if "conn_state" in fields or {"orig_pkts", "resp_pkts"} <= fields:
        return "conn"
    if "server_name" in fields and ("cipher" in fields or "version" in fields):
        return "ssl"
    if "query" in fields and ("answers" in fields or "qtype_name" in fields):
        return "dns"
    if "host" in fields and ("method" in fields or "uri" in fields):
        return "http"
    return None


def looks_like_zeek(head: str) -> bool:
    """True for a Zeek TSV header or a Zeek JSON record."""
    if head.startswith("#separator") or "\n#fields\t" in head:
        return True
    first = head.lstrip().split("\n", 1)[0]
    return first.startswith("{") and '"id.orig_h"' in first and '"uid"' in first


# ----------------------------------------------------------------------------- parsing


def _tsv(path: str) -> Iterator[tuple[str | None, int, dict[str, Any]]]:
    sep, set_sep, fields, kind = "\t", ",", list[str](), None
    for n, line in lines(path):
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#separator"):
                raw = line.split(" ", 1)[1] if " " in line else "\\x09"
                sep = raw.encode("ascii").decode("unicode_escape")
            else:
                name, _, rest = line[1:].partition(sep)
                if name == "set_separator":
                    set_sep = rest
                elif name == "path":
                    kind = rest
                elif name == "fields":
                    fields = rest.split(sep)
            continue
        if not fields:
            raise FlowLogError(path, n, "a Zeek TSV record before its #fields header")
        values = line.split(sep)
        if len(values) != len(fields):
            raise FlowLogError(path, n, f"{len(values)} values for {len(fields)} fields")
        record: dict[str, Any] = {}
        for f, v in zip(fields, values, strict=True):
            if v == _UNSET:
                record[f] = None
            elif v == _EMPTY:
                record[f] = []
            elif f in ("answers", "TTLs", "tunnel_parents", "vlan_ids"):
                record[f] = v.split(set_sep)
            else:
                record[f] = v
        yield log_kind(set(fields), kind), n, record


def _json(path: str) -> Iterator[tuple[str | None, int, dict[str, Any]]]:
    for n, line in lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FlowLogError(path, n, f"not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise FlowLogError(path, n, "a JSON record must be an object")
        yield log_kind(set(record), record.get("_path")), n, record


def records(path: str) -> Iterator[tuple[str | None, int, dict[str, Any]]]:
    """(log kind, line, record) for every record of a Zeek log, TSV or JSON."""
    for _, line in lines(path):
        if line.strip():
            yield from (_json(path) if line.lstrip().startswith("{") else _tsv(path))
            return


def _time(value: Any, path: str, n: int) -> pd.Timestamp:
    """Zeek writes epoch seconds (or ISO-8601 when configured to)."""
    try:
        try:
            seconds = float(value)
        except ValueError:
            stamp = pd.Timestamp(str(value))
            return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return pd.Timestamp(round(seconds * 1e6), unit="us", tz="UTC")
    except (TypeError, ValueError, OverflowError):
        raise FlowLogError(path, n, f"bad timestamp {value!r}") from None


def _int(value: Any) -> int:
    if value is None or value == "":
        return 0
    return int(float(value))


def _history(raw: str) -> str:
    """Zeek's history reduced to the engine's alphabet: each letter once, in first order."""
    letters = [c for c in raw if HISTORY_LETTERS.find(c) > 0]
    return "".join(dict.fromkeys(letters))


def _evidence(proto: str, raw: str) -> str:
    if proto == "tcp":
        if "S" in raw:
            return "syn"
        if "h" in raw:
            return "synack"
    if "^" in raw or proto.startswith("icmp"):
        return "port"  # Zeek flipped the direction by port, or ICMP types tell it
    return "first-packet"


def _conn_row(rec: dict[str, Any], path: str, n: int) -> dict[str, Any]:
    orig, resp = str(rec.get("id.orig_h")), str(rec.get("id.resp_h"))
    proto = str(rec.get("proto") or "").lower()
    if proto == "icmp" and ip_version(orig) == 6:
        proto = "icmpv6"
    start = _time(rec.get("ts"), path, n)
    duration = float(rec.get("duration") or 0.0)
    raw = str(rec.get("history") or "")
    row = base_row()
    vlan, inner = rec.get("vlan"), rec.get("inner_vlan")
    row.update(
        {
            "proto": proto,
            "ip_version": ip_version(orig),
            "client_ip": orig,
            "client_port": _int(rec.get("id.orig_p")),
            "server_ip": resp,
            "server_port": _int(rec.get("id.resp_p")),
            "vlan": pd.NA if vlan is None else _int(vlan),
            "inner_vlan": pd.NA if inner is None else _int(inner),
            "packets_c2s": _int(rec.get("orig_pkts")),
            "packets_s2c": _int(rec.get("resp_pkts")),
            "bytes_c2s": _int(rec.get("orig_ip_bytes")),
            "bytes_s2c": _int(rec.get("resp_ip_bytes")),
            "payload_bytes_c2s": _int(rec.get("orig_bytes")),
            "payload_bytes_s2c": _int(rec.get("resp_bytes")),
            "start": start,
            "end": start + pd.Timedelta(microseconds=round(duration * 1e6)),
            "state": str(rec.get("conn_state") or "OTH"),
            "history": _history(raw) if proto == "tcp" else "",
            "initiator_evidence": _evidence(proto, raw),
            "tunnel": bool(rec.get("tunnel_parents")),
            "_uid": rec.get("uid"),
        }
    )
    return row


def _answers(rec: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    ttls = rec.get("TTLs") or []
    qtype = rec.get("qtype_name")
    for i, value in enumerate(rec.get("answers") or []):
        addr = key_from_text(str(value))
        kind = ("AAAA" if ":" in str(value) else "A") if addr is not None else None
        if kind is None:
            kind = "CNAME" if qtype in ("A", "AAAA") else qtype
        ttl = _int(ttls[i]) if i < len(ttls) and ttls[i] is not None else 0
        out.append({"name": rec.get("query"), "type": kind, "data": str(value), "ttl": ttl})
    return out


def read_zeek(paths: list[str]) -> SourceResult:
    """Flows from Zeek logs: every conn.log record, named from the other logs by uid."""
    conns: list[dict[str, Any]] = []
    sni: dict[str, str] = {}
    http: dict[str, tuple[str | None, str | None]] = {}
    queries: dict[str, list[str]] = {}
    answers: dict[str, list[dict[str, Any]]] = {}
    dns = DnsMap()
    seen_kinds: set[str] = set()
    files: list[tuple[str, str, int]] = []
    for path in paths:
        count = 0
        for kind, n, rec in records(path):
            count += 1
            uid = str(rec.get("uid"))
            if kind is not None:
                seen_kinds.add(kind)
            if kind == "conn":
                conns.append(_conn_row(rec, path, n))
            elif kind == "ssl" and rec.get("server_name"):
                sni.setdefault(uid, str(rec["server_name"]))
            elif kind == "http" and uid not in http:
                method = rec.get("method")
                target = str(rec.get("uri")) if method == "CONNECT" and rec.get("uri") else None
                http[uid] = (rec.get("host"), target)
            elif kind == "dns":
                query = rec.get("query")
                if query and query not in queries.setdefault(uid, []):
                    queries[uid].append(str(query))
                found = _answers(rec)
                answers.setdefault(uid, []).extend(found)
                client = key_from_text(str(rec.get("id.orig_h")))
                ts = _time(rec.get("ts"), path, n) + pd.Timedelta(
                    seconds=float(rec.get("rtt") or 0.0)
                )
                for a in found:
                    addr = key_from_text(a["data"])
                    if client is not None and addr is not None and query:
                        dns.add(client, addr, int(ts.value), str(query))
        files.append((path, "zeek-log", count))
    for row in conns:
        uid = str(row.pop("_uid"))
        row["sni"] = sni.get(uid)
        row["http_host"], row["connect_target"] = http.get(uid, (None, None))
        row["dns_queries"] = queries.get(uid, [])
        row["dns_answers"] = answers.get(uid, [])
    name_flows(conns, dns)
    if "conn" not in seen_kinds:
        raise FlowLogError(", ".join(paths), None, "no conn.log among the Zeek logs given")
    result = finish(conns, files)
    limits = list(LIMITATIONS)
    if not seen_kinds & {"ssl", "http", "dns"}:
        limits.append(NO_NAMES)
    return SourceResult(result=result, kind=KIND, limitations=limits)
