"""The likely cause of each blocked expected flow, from what the capture shows around it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.catalog import Catalog
from dsaudit.flows.addresses import split_host_port
from dsaudit.frames import row_dicts
from dsaudit.inventory import Inventory
from dsaudit.time_text import clock_ms

REJECTED_BY_HOST = "rejected by host"
REJECTED_BY_FIREWALL = "rejected by a firewall"
DROPPED_SILENTLY = "dropped silently"
PATH_MTU = "path MTU"
TLS_FAILURE = "TLS failure"
NAME_RESOLUTION = "name resolution"
UNKNOWN = "unknown"
CAUSES = (
    REJECTED_BY_HOST,
    REJECTED_BY_FIREWALL,
    DROPPED_SILENTLY,
    PATH_MTU,
    TLS_FAILURE,
    NAME_RESOLUTION,
    UNKNOWN,
)

# A segment this large that is retransmitted and never answered, while the small handshake
# packets passed, is what a path-MTU black hole looks like (Ethernet segments are 1460 bytes).
FULL_SIZE_SEGMENT = 1200
FAILED_RCODES = frozenset({"NXDOMAIN", "SERVFAIL", "REFUSED"})
# ICMP codes that say a filter refused the packet, whoever sent them: IPv4 type 3 codes 9,
# 10 and 13 (RFC 1812), IPv6 type 1 codes 1, 5 and 6 (RFC 4443).
_ADMIN_V4 = {9: "network administratively prohibited", 10: "host administratively prohibited"}
_ADMIN_V4[13] = "communication administratively prohibited"
_ADMIN_V6 = {1: "administratively prohibited", 5: "source address failed policy"}
_ADMIN_V6[6] = "reject route to destination"
_UNREACH_V4 = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable"}
_UNREACH_V4[3] = "port unreachable"
_UNREACH_V6 = {0: "no route to destination", 3: "address unreachable", 4: "port unreachable"}

DnsFailure = tuple[pd.Timestamp, str, str, str]  # when, name, what (rcode/no answer), resolver
# Deep Security's TLS services (manager console, heartbeat, relay) and HTTPS: a certificate
# on them whose issuer differs from the one the same service shows elsewhere is what a
# TLS-inspecting proxy between agent and manager looks like.
TLS_SERVICE_PORTS = frozenset({4119, 4120, 4122, 443})


def _icmp_text(e: Mapping[str, Any]) -> tuple[str, bool]:
    """What an ICMP error says, and whether it is a filter's refusal by its code alone."""
    v4 = e.get("family") == 4
    code = int(e.get("code", -1))
    admin = _ADMIN_V4 if v4 else _ADMIN_V6
    if code in admin:
        return admin[code], True
    plain = _UNREACH_V4 if v4 else _UNREACH_V6
    return plain.get(code, f"destination unreachable (code {code})"), False


def _is_unreachable(e: Mapping[str, Any]) -> bool:
    v4 = e.get("family") == 4
    t, code = int(e.get("type", -1)), int(e.get("code", -1))
    return (v4 and t == 3 and code != 4) or (not v4 and t == 1)


def _syns(row: Mapping[str, Any]) -> str:
    n = int(row["packets_c2s"])
    span = float(row["duration"])
    what = "SYN" if row["proto"] == "tcp" else "request"
    return f"{n} {what}(s) over {span:.1f} s"


def dns_failures(flows: pd.DataFrame) -> dict[str, list[DnsFailure]]:
    """Per client address: every DNS lookup that failed (error rcode, or no answer at all)."""
    out: dict[str, list[DnsFailure]] = {}
    if flows.empty:
        return out
    asked = flows["dns_queries"].map(len).to_numpy() > 0
    if not asked.any():
        return out
    cols = ["client_ip", "server_ip", "start", "dns_queries", "dns_rcode"]
    for r in row_dicts(flows[asked][cols]):
        rcode = r["dns_rcode"] if isinstance(r["dns_rcode"], str) else None
        if rcode is None:
            what = "no answer"
        elif rcode in FAILED_RCODES:
            what = rcode
        else:
            continue
        for name in r["dns_queries"]:
            out.setdefault(str(r["client_ip"]), []).append(
                (r["start"], str(name).lower().rstrip("."), what, str(r["server_ip"]))
            )
    return out


def _name_failure(
    failures: list[DnsFailure], names: Iterable[str], before: Any = None
) -> str | None:
    wanted = {n.lower().rstrip(".") for n in names if n}
    hits = [
        f
        for f in failures
        if (f[1] in wanted or any(w.startswith("*.") and f[1].endswith(w[1:]) for w in wanted))
        and (before is None or f[0] <= before)
    ]
    if not hits:
        return None
    first = hits[0]
    more = f" ({len(hits)} failed lookups)" if len(hits) > 1 else ""
    return f"{first[1]}: {first[2]} from {first[3]} at {clock_ms(first[0])}{more}"


def _service(row: Mapping[str, Any]) -> tuple[int, str] | None:
    """(port, host) of the TLS service a flow reached: a CONNECT target's, else the server's."""
    target = row.get("connect_target")
    if isinstance(target, str):
        host, port = split_host_port(target)
        if port is None:
            return None
    else:
        name = row.get("server_name")
        host = name if isinstance(name, str) else str(row["server_ip"])
        port = int(row["server_port"])
    if port not in TLS_SERVICE_PORTS:
        return None
    return port, host.lower().rstrip(".")


def issuer_mismatches(flows: pd.DataFrame) -> dict[int, str]:
    """Position -> what the flow's certificate issuer differs from, for flows to a TLS service
    (ports 4119/4120/4122/443) whose issuer is not the one the service shows elsewhere.

    The reference is the issuer most flows to the same port and name (or address) show; when
    two or more issuers are equally common, no flow can be called the odd one and every flow
    of that service is reported against the others.
    """
    out: dict[int, str] = {}
    if flows.empty or "tls_server_issuer" not in flows:
        return out
    has = np.flatnonzero(flows["tls_server_issuer"].notna().to_numpy(dtype=bool))
    if not len(has):
        return out
    cols = ["server_ip", "server_port", "server_name", "connect_target", "tls_server_issuer"]
    by_service: dict[tuple[int, str], list[tuple[int, str]]] = {}
    for pos, r in zip(has.tolist(), row_dicts(flows.iloc[has][cols]), strict=True):
        service = _service(r)
        if service is not None:
            by_service.setdefault(service, []).append((pos, str(r["tls_server_issuer"])))
    for (port, host), seen in by_service.items():
        counts: dict[str, int] = {}
        for _, issuer in seen:
            counts[issuer] = counts.get(issuer, 0) + 1
        if len(counts) < 2:
            continue
        top = max(counts.values())
        common = [i for i, c in counts.items() if c == top]
        for pos, issuer in seen:
            if len(common) == 1 and issuer == common[0]:
                continue
            others = [i for i in counts if i != issuer]
            ref = "; ".join(f"{i} ({counts[i]} flow(s))" for i in others)
            out[pos] = (
                f"certificate issued by {issuer}, while {host}:{port} elsewhere in the capture "
                f"presents one issued by {ref}: a TLS-inspecting proxy on the path?"
            )
    return out


def flow_cause(
    row: Mapping[str, Any],
    failures: list[DnsFailure] | None = None,
    names: Iterable[str] = (),
    issuer_note: str | None = None,
) -> tuple[str, str]:
    """The likely cause of one blocked flow and the packets it rests on, most specific first.

    ``failures`` are the client's failed DNS lookups, ``names`` the names the flow needed,
    ``issuer_note`` what :func:`issuer_mismatches` says about its server certificate.
    """
    errors = list(row["icmp_errors"] or [])
    history = str(row["history"] or "")
    server = str(row["server_ip"])
    server_rst = "r" in history
    then_rst = f", then a RST from {server}" if server_rst else ""
    for e in errors:
        if "mtu" in e:
            what = "fragmentation needed" if e.get("family") == 4 else "packet too big"
            return PATH_MTU, (
                f"ICMP {what} from {e['from']} at {clock_ms(e['ts'])}: next-hop MTU {e['mtu']}"
            )
    unreachable = [e for e in errors if _is_unreachable(e)]
    for e in unreachable:
        text, admin = _icmp_text(e)
        if admin or str(e["from"]) != server:
            return REJECTED_BY_FIREWALL, (
                f"ICMP {text} from {e['from']} at {clock_ms(e['ts'])}{then_rst}"
            )
    if unreachable:
        e = unreachable[0]
        return REJECTED_BY_HOST, f"ICMP {_icmp_text(e)[0]} from {server} at {clock_ms(e['ts'])}"
    outcome = str(row["outcome"])
    if outcome == "rejected" or (server_rst and outcome != "failed"):
        to = "in answer to the SYN " if str(row["state"]) == "REJ" else ""
        return REJECTED_BY_HOST, f"RST from {server} {to}at {clock_ms(row['end'])}"
    alert = row.get("tls_alert")
    if outcome == "failed" and isinstance(alert, str):
        extra = f"; {issuer_note}" if issuer_note else ""
        return TLS_FAILURE, (
            f"{server} answered the ClientHello with the TLS alert {alert}; the connection "
            f"ended at {clock_ms(row['end'])}{extra}"
        )
    if issuer_note and outcome in ("failed", "established", "partial"):
        return TLS_FAILURE, issuer_note
    if outcome == "failed":
        seg = int(row.get("max_segment_c2s", 0) or 0)
        if "T" in history and seg >= FULL_SIZE_SEGMENT:
            return PATH_MTU, (
                f"the TLS handshake stalls: {seg}-byte client segments retransmitted and never "
                "answered, while the small handshake packets passed"
            )
        answer = int(row["payload_bytes_s2c"])
        said = (
            "answered the ClientHello with 7 bytes, the size of one TLS alert record,"
            if answer
            else "sent nothing after the ClientHello"
        )
        if server_rst:
            end = "and reset the connection"
        elif "f" in history:
            end = "and closed the connection"
        elif "T" in history:
            end = "while the client retransmitted"
        else:
            end = "and the client gave up"
        return TLS_FAILURE, f"{server} {said} {end} at {clock_ms(row['end'])}"
    if failures:
        why = _name_failure(failures, names, row["start"])
        if why is not None:
            return NAME_RESOLUTION, why
    if int(row["packets_c2s"]) >= 2 and int(row["packets_s2c"]) == 0:
        return DROPPED_SILENTLY, f"{_syns(row)}, no answer and no ICMP error"
    return UNKNOWN, "one attempt without an answer; nothing else in the capture says why"


def needed_names(
    server_roles: Iterable[str], inventory: Inventory, extra: Iterable[str] = ()
) -> list[str]:
    """The names a flow to hosts of these roles may have had to resolve."""
    server_roles = [r for r in server_roles if r]
    out = [n for r in server_roles for n in inventory.names.get(r, ())]
    for entries in (inventory.hosts_for(r) for r in server_roles):
        out += [e.hostname for e in entries if e.hostname]
    return [*out, *extra]


def add_causes(flows: pd.DataFrame, inventory: Inventory) -> pd.DataFrame:
    """``flows`` with ``cause`` and ``cause_evidence`` filled in for blocked flows."""
    out = flows
    n = len(out)
    cause: list[str | None] = [None] * n
    evidence: list[str | None] = [None] * n
    blocked = np.flatnonzero(out["blocked"].to_numpy(dtype=bool)) if n else np.array([], int)
    if len(blocked):
        failures = dns_failures(out)
        mismatched = issuer_mismatches(out)
        rows = row_dicts(out.iloc[blocked])
        for i, row in zip(blocked.tolist(), rows, strict=True):
            name = row["server_name"] if isinstance(row["server_name"], str) else None
            roles = str(row["server_role"] or "").split("+")
            names = needed_names(roles, inventory, [name] if name else [])
            cause[i], evidence[i] = flow_cause(
                row, failures.get(str(row["client_ip"])), names, mismatched.get(i)
            )
    out["cause"] = pd.array(cause, dtype="string")
    out["cause_evidence"] = pd.array(evidence, dtype="string")
    return out


def missing_cause(
    host: str,
    role: str,
    rule_id: str,
    catalog: Catalog,
    inventory: Inventory,
    failures: dict[str, list[DnsFailure]],
) -> tuple[str, str]:
    """Why an expected flow never appeared: a failed lookup of a name it needed, or unknown."""
    mine = failures.get(host)
    rule = catalog.get(rule_id) if rule_id in catalog else None
    # Only a client resolves a name to open the flow.
    if mine and rule is not None and role in rule.client_roles:
        peers = rule.peers if role == rule.role else (rule.role,)
        version = inventory.deployment.version
        why = _name_failure(mine, needed_names(peers, inventory, rule.hostnames.names(version)))
        if why is not None:
            return NAME_RESOLUTION, why
    return UNKNOWN, "no attempt in the capture, and no failed lookup of a name it needs"
