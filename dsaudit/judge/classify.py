"""Classify every flow against the catalog and the inventory: explained by which rule, or why not.

The order of the checks, for a TCP or UDP flow:

1. Roles of both ends from the inventory; an address the inventory does not know is
   ``internet`` when it is publicly routable, ``unknown`` otherwise. A flow to a proxy is
   judged by its CONNECT or SOCKS target (that host, that port).
2. Port 4123 between two different hosts is never right (``localhost_only``).
3. Rules that allow this client role to reach this server role on this transport and
   port. Of those, rules whose ``when`` the deployment satisfies; if none does, the
   flow is unexplained (``wrong_direction`` when the communication mode excludes it).
4. Host names: a rule that lists names explains a named flow only if the name is listed
   (``port+name``); an unnamed flow is explained on the port alone (``port-only``); a
   rule without names between two inventory hosts explains ``port+role``.
5. No rule: ``wrong_direction`` if the reverse conversation is documented,
   ``unknown_endpoint`` if an end has no known role, else ``no_rule``.

Traffic the port table does not speak of (ICMP, DHCP, NetBIOS, mDNS, LLMNR, SSDP, UDP to
multicast and broadcast addresses, ARP) is ``infrastructure``, as is traffic between hosts that
play no part in the deployment; neither counts against compliance unless ``strict``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.catalog import Catalog, Rule
from dsaudit.catalog.roles import DS_ROLES, INTERNET
from dsaudit.flows.addresses import split_host_port
from dsaudit.inventory import Inventory
from dsaudit.parallel import fork_map, row_chunks

UNKNOWN = "unknown"
VERDICTS = ["explained", "unexplained", "infrastructure"]
MATCHES = ["port+name", "port+role", "port-only", "scan", "proxy"]
INFRA_UDP_PORTS = {67, 68, 137, 138, 546, 547, 1900, 3702, 5353, 5355}
SCAN_MIN_PORTS = 20
SCAN_WINDOW_S = 60.0
EXPECTATION_RANK = {"required": 0, "conditional": 1, "optional": 2}

_INTERNAL = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "0.0.0.0/8",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
        "::/128",
        "ff00::/8",
    )
]


@lru_cache(maxsize=1 << 16)
def is_internal(address: str) -> bool:
    """True for private, loopback, link-local and multicast addresses."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    return any(ip.version == n.version and ip in n for n in _INTERNAL)


@dataclass(frozen=True)
class Verdict:
    """How one flow was judged."""

    verdict: str
    rule: str | None = None
    reason: str | None = None
    reason_text: str | None = None
    match: str | None = None
    also: tuple[str, ...] = ()  # every rule the flow satisfies (counterparts included)


@lru_cache(maxsize=4096)
def _roles_text(roles: frozenset[str] | tuple[str, ...]) -> str:
    if not roles:
        return UNKNOWN
    return "+".join(sorted(roles, key=lambda r: (r not in DS_ROLES, r)))


def _best(rules: list[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda r: EXPECTATION_RANK.get(r.expectation, 3))


class Classifier:
    """Judges flows for one catalog, inventory and set of deployment facts."""

    def __init__(self, catalog: Catalog, inventory: Inventory, strict: bool = False) -> None:
        self.catalog = catalog
        self.inventory = inventory
        self.facts = inventory.facts()
        self.strict = strict
        self._memo: dict[tuple[object, ...], Verdict] = {}
        self._roles: dict[tuple[str, str | None], frozenset[str]] = {}
        self._by_port: dict[tuple[str, int], tuple[Rule, ...]] = {}
        self._conv: dict[tuple[object, ...], tuple[Rule, ...]] = {}
        self._lowered: dict[str, frozenset[str]] = {}
        self._group: dict[str, bool] = {}
        self.scan_rule = next((r for r in catalog.rules if r.ports.any), None)

    # -- broadcast ---------------------------------------------------------------------
    def is_group(self, address: str) -> bool:
        """Multicast or broadcast: never the server of a documented conversation.

        A directed broadcast is the broadcast address of a network the inventory gives (a
        /23 has a usable .255). Only an address the inventory knows nothing about is taken
        for a broadcast by its .255, the common /24 case, for want of anything better.
        """
        known = self._group.get(address)
        if known is None:
            known = self._group[address] = self._is_group(address)
        return known

    def _is_group(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if ip.is_multicast or address == "255.255.255.255":
            return True
        if ip.version != 4:
            return False
        if address in self.inventory.broadcast_addresses():
            return True
        return (
            address.endswith(".255")
            and not self.inventory.in_a_network(address)
            and not self.inventory.roles_of(address)
        )

    # -- roles -----------------------------------------------------------------------
    def roles_of(self, address: str, name: str | None) -> frozenset[str]:
        """Inventory roles of an address, else of its name, else internet or unknown."""
        key = (address, name)
        known = self._roles.get(key)
        if known is None:
            known = self._roles[key] = self._lookup_roles(address, name)
        return known

    def _lookup_roles(self, address: str, name: str | None) -> frozenset[str]:
        roles = self.inventory.roles_of(address)
        if roles:
            return roles
        if name:
            roles = self.inventory.roles_of_name(name)
            if roles:
                return roles
        return frozenset() if is_internal(address) else frozenset({INTERNET})

    # -- catalog look-ups, memoised: a day of traffic asks the same few thousand times ----
    def _documented(self, proto: str, port: int) -> tuple[Rule, ...]:
        """Rules for proto/port, the any-port scan rule left out."""
        key = (proto, port)
        found = self._by_port.get(key)
        if found is None:
            matching = self.catalog.matching(proto, port)
            found = self._by_port[key] = tuple(r for r in matching if not r.ports.any)
        return found

    def _conversation(
        self, proto: str, port: int, clients: frozenset[str], servers: frozenset[str]
    ) -> tuple[Rule, ...]:
        key = (proto, port, clients, servers)
        found = self._conv.get(key)
        if found is None:
            conv = self.catalog.conversation(proto, port, clients, servers)
            found = self._conv[key] = tuple(r for r in conv if not r.ports.any)
        return found

    def _names(self, rule: Rule) -> frozenset[str]:
        """Every host name of a rule, lower-cased."""
        found = self._lowered.get(rule.id)
        if found is None:
            found = self._lowered[rule.id] = frozenset(n.lower() for n in rule.hostnames.flat)
        return found

    # -- one flow ----------------------------------------------------------------------
    def judge(
        self,
        proto: str,
        client_ip: str,
        server_ip: str,
        port: int,
        name: str | None,
        connect: str | None,
        socks: str | None,
    ) -> tuple[Verdict, frozenset[str], frozenset[str]]:
        """Verdict plus client and server roles for one flow."""
        client_roles = self.roles_of(client_ip, None)
        server_roles = self.roles_of(server_ip, name)
        via_proxy = False
        target = connect or socks
        if target and "proxy" in server_roles:
            host, tport = split_host_port(target)
            host = host.rstrip(".").lower()
            via_proxy = True
            name = host
            port = tport if tport is not None else port
            try:
                ipaddress.ip_address(host)
                server_roles = self.roles_of(host, None)
                name = None
            except ValueError:
                server_roles = self.inventory.roles_of_name(host) or frozenset({INTERNET})
        key = (proto, port, client_roles, server_roles, name, client_ip == server_ip, via_proxy)
        verdict = self._memo.get(key)
        if verdict is None:
            verdict = self._judge(
                proto, port, client_roles, server_roles, name, client_ip == server_ip
            )
            if via_proxy and verdict.verdict == "explained":
                verdict = Verdict(
                    "explained", verdict.rule, None, verdict.reason_text, "proxy", verdict.also
                )
            self._memo[key] = verdict
        return verdict, client_roles, server_roles

    def _judge(
        self,
        proto: str,
        port: int,
        clients: frozenset[str],
        servers: frozenset[str],
        name: str | None,
        same_host: bool,
    ) -> Verdict:
        if proto not in ("tcp", "udp"):
            return Verdict("infrastructure", reason_text=f"{proto}: not in the port table")
        in_deployment = bool((clients | servers) - {INTERNET})
        documented = self._documented(proto, port)
        local = [r for r in documented if r.localhost_only]
        if local and not same_host and (clients or servers):
            rule = local[0]
            return Verdict(
                "unexplained",
                rule.id,
                "localhost_only",
                f"port {port} is for the agent and relay on one machine; it never belongs "
                "on the network",
            )
        candidates = [
            r for r in self._conversation(proto, port, clients, servers) if not r.localhost_only
        ]
        if candidates:
            return self._with_candidates(candidates, port, clients, servers, name)
        if not in_deployment or (proto == "udp" and port in INFRA_UDP_PORTS):
            return Verdict(
                "infrastructure", reason_text="outside the deployment's documented traffic"
            )
        reverse = self._conversation(proto, port, servers, clients)
        if reverse and clients and servers:
            rule = reverse[0]
            return Verdict(
                "unexplained",
                rule.id,
                "wrong_direction",
                f"port {port} is documented from {_roles_text(rule.client_roles)} to "
                f"{_roles_text(rule.server_roles)}, not the other way",
            )
        if documented and (not clients or not servers):
            side = "client" if not clients else "server"
            return Verdict(
                "unexplained",
                None,
                "unknown_endpoint",
                f"port {port} is documented, but the {side} is not in the inventory",
            )
        return Verdict(
            "unexplained",
            None,
            "no_rule",
            f"no rule allows {_roles_text(clients)} to reach {_roles_text(servers)} on "
            f"{proto}/{port}",
        )

    def _with_candidates(
        self,
        candidates: list[Rule],
        port: int,
        clients: frozenset[str],
        servers: frozenset[str],
        name: str | None,
    ) -> Verdict:
        applicable = [r for r in candidates if r.when.matches(self.facts)]
        if not applicable:
            rule = candidates[0]
            comm = rule.when.get("communication")
            if comm and self.facts.get("communication") not in comm:
                return Verdict(
                    "unexplained",
                    rule.id,
                    "wrong_direction",
                    f"{rule.id} is used only when communication is {' or '.join(comm)}; "
                    f"this deployment is {self.facts.get('communication')}",
                )
            return Verdict(
                "unexplained",
                rule.id,
                "not_applicable",
                f"{rule.id} applies only when {rule.when}",
            )
        version = self.inventory.deployment.version
        lowered = name.rstrip(".").lower() if name else None
        named = [r for r in applicable if r.hostnames]
        unnamed = [r for r in applicable if not r.hostnames]
        also = tuple(dict.fromkeys(c for r in applicable for c in (r.id, *r.counterparts)))
        if lowered is not None:
            hit = [r for r in named if lowered in self._names(r)]
            if hit:
                rule = _best(hit)[0]
                in_version = lowered in {n.lower() for n in rule.hostnames.names(version)}
                text = f"{name} is listed for {rule.id}"
                if not in_version:
                    text += f" (listed for another agent version than {version})"
                return Verdict("explained", rule.id, None, text, "port+name", also)
        if unnamed:
            rule = _best(unnamed)[0]
            if INTERNET in servers and INTERNET in rule.server_roles and lowered is not None:
                pass  # an internet rule without names cannot vouch for this name
            else:
                how = "port+role" if servers - {INTERNET} else "port-only"
                return Verdict(
                    "explained",
                    rule.id,
                    None,
                    f"{_roles_text(clients)} to {_roles_text(servers)} on port {port}",
                    how,
                    also,
                )
        if lowered is None:
            rule = _best(named)[0]
            return Verdict(
                "explained",
                rule.id,
                None,
                f"peer name unknown; port {port} matches {len(named)} documented service(s)",
                "port-only",
                also,
            )
        elsewhere = [r for r in candidates if r not in applicable and lowered in self._names(r)]
        if elsewhere:
            rule = elsewhere[0]
            return Verdict(
                "unexplained",
                rule.id,
                "not_applicable",
                f"{name} belongs to {rule.id}, which applies only when {rule.when}",
            )
        rule = _best(named)[0]
        return Verdict(
            "unexplained",
            rule.id,
            "unlisted_hostname",
            f"{name} is not a host name the vendor lists for port {port}",
        )


UDP_REQUEST_PORTS = (53, 123, 161)


def failed_attempts(proto: np.ndarray, port: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Flows that tried and got nowhere: rejected, unanswered, a TLS handshake that failed
    after the TCP connection (outcome ``failed``), or a UDP request with no reply.

    One-way UDP to syslog or SNMP-trap receivers is how those protocols work, not a failure.
    """
    udp_request = (proto == "udp") & np.isin(port, UDP_REQUEST_PORTS)
    failed = np.isin(outcome, ["rejected", "unanswered", "failed"])
    return failed | (udp_request & (outcome == "one-way"))


def find_scans(flows: pd.DataFrame, scanners: Collection[str]) -> np.ndarray:
    """Flows that belong to an open-port scan from one of ``scanners`` (boolean mask).

    A scan is one client reaching at least SCAN_MIN_PORTS distinct ports of one server
    within SCAN_WINDOW_S seconds.
    """
    mask = np.zeros(len(flows), dtype=bool)
    if flows.empty or not scanners:
        return mask
    cand = flows[flows["client_ip"].isin(list(scanners)) & flows["proto"].isin(["tcp", "udp"])]
    # Only pairs that reach enough distinct ports at all can hold a scan.
    wide = cand.groupby(["client_ip", "server_ip"], sort=False)["server_port"].transform("nunique")
    cand = cand[wide.to_numpy() >= SCAN_MIN_PORTS]
    for _, group in cand.groupby(["client_ip", "server_ip"], sort=False):
        starts = group["start"].astype("int64").to_numpy() / 1e9
        order = np.argsort(starts, kind="stable")
        starts = starts[order]
        ports = group["server_port"].to_numpy()[order]
        idx = group.index.to_numpy()[order]
        lo = 0
        for hi in range(len(starts)):
            while starts[hi] - starts[lo] > SCAN_WINDOW_S:
                lo += 1
            if len(set(ports[lo : hi + 1].tolist())) >= SCAN_MIN_PORTS:
                mask[flows.index.get_indexer(pd.Index(idx[lo : hi + 1]))] = True
    return mask


def _judge_rows(clf: Classifier, rows: pd.DataFrame) -> tuple[list[Verdict], list[str], list[str]]:
    """Verdicts and client and server role texts of some flows, in row order."""
    verdicts: list[Verdict] = []
    c_roles: list[str] = []
    s_roles: list[str] = []
    cols = zip(
        rows["proto"].tolist(),
        rows["client_ip"].tolist(),
        rows["server_ip"].tolist(),
        rows["server_port"].tolist(),
        rows["server_name"].tolist(),
        rows["connect_target"].tolist(),
        rows["socks_target"].tolist(),
        strict=True,
    )
    # Flows differ mostly by client port, which no verdict depends on: judge each distinct
    # rest once.
    seen: dict[tuple[Any, ...], tuple[Verdict, str, str]] = {}
    for key in cols:
        known = seen.get(key)
        if known is None:
            known = seen[key] = _judge_one(clf, *key)
        verdicts.append(known[0])
        c_roles.append(known[1])
        s_roles.append(known[2])
    return verdicts, c_roles, s_roles


def _judge_one(
    clf: Classifier, proto: str, cip: str, sip: str, port: int, name: Any, connect: Any, socks: Any
) -> tuple[Verdict, str, str]:
    name = name if isinstance(name, str) else None
    connect = connect if isinstance(connect, str) else None
    socks = socks if isinstance(socks, str) else None
    # Only UDP (and ICMP, never in the port table) can go to a group; a TCP flow to any
    # address is a conversation with one host and is judged like any other.
    if proto == "udp" and clf.is_group(sip):
        v = Verdict("infrastructure", reason_text="multicast or broadcast")
        cr, sr = clf.roles_of(cip, None), frozenset[str]()
    else:
        v, cr, sr = clf.judge(proto, cip, sip, int(port), name, connect, socks)
    return v, _roles_text(cr), _roles_text(sr) if sr or proto in ("tcp", "udp") else ""


def classify_flows(
    flows: pd.DataFrame,
    catalog: Catalog,
    inventory: Inventory,
    strict: bool = False,
    jobs: int = 1,
) -> pd.DataFrame:
    """The flows with client_role, server_role, verdict, rule, reason, reason_text, match,
    blocked and (internal) the list of every rule each flow satisfies; ``jobs`` processes
    judge chunks of rows side by side."""
    clf = Classifier(catalog, inventory, strict)
    out = flows.copy()
    n = len(out)
    verdicts: list[Verdict] = []
    c_roles: list[str] = []
    s_roles: list[str] = []
    chunks = [out] if jobs <= 1 else row_chunks(out, jobs, most=1 << 30)
    for part in fork_map(partial(_judge_rows, clf), chunks, jobs):
        verdicts += part[0]
        c_roles += part[1]
        s_roles += part[2]
    managers = [
        ip for ip, roles in zip(out["client_ip"], c_roles, strict=True) if "manager" in roles
    ]
    scans = find_scans(out, set(managers))
    scan_rule = clf.scan_rule
    if scan_rule is not None and scans.any():
        for i in np.flatnonzero(scans).tolist():
            if "agent" in s_roles[i].split("+"):
                verdicts[i] = Verdict(
                    "explained",
                    scan_rule.id,
                    None,
                    "part of the manager's open-port scan of this agent",
                    "scan",
                    (scan_rule.id,),
                )
    out["client_role"] = pd.array(c_roles, dtype="string")
    out["server_role"] = pd.array(s_roles, dtype="string")
    verdict_col = [v.verdict for v in verdicts]
    if strict:
        verdict_col = ["unexplained" if v == "infrastructure" else v for v in verdict_col]
    out["verdict"] = pd.Categorical(verdict_col, categories=VERDICTS)
    out["rule"] = pd.array([v.rule for v in verdicts], dtype="string")
    out["reason"] = pd.array([v.reason for v in verdicts], dtype="string")
    out["reason_text"] = pd.array([v.reason_text for v in verdicts], dtype="string")
    out["match"] = pd.array([v.match for v in verdicts], dtype="string")
    outcome = out["outcome"].astype(str).to_numpy()
    explained = out["verdict"].astype(str).to_numpy() == "explained"
    not_scan = (
        np.array([v.match != "scan" for v in verdicts], dtype=bool) if n else np.zeros(0, bool)
    )
    failed = failed_attempts(out["proto"].to_numpy(), out["server_port"].to_numpy(), outcome)
    out["blocked"] = explained & not_scan & failed
    out["_rules"] = [v.also if v.also else ((v.rule,) if v.rule else ()) for v in verdicts]
    return out
