"""Expected flows per host and role: which appeared, which were blocked, which never came.

For every rule the deployment requires (``required``, and ``conditional`` rules whose
conditions the inventory meets), each host of the rule's role is expected to take part,
and so is each host of a Deep Security peer role when the catalog has no rule of its own
for that side. A host that took part in an established flow of the rule (or of one of
its counterparts) observed it; attempts that all failed are blocked; no attempt at all is
missing when the capture was long enough to contain one and placed where it could see
it, otherwise inconclusive or not visible.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dsaudit.catalog import Catalog, Rule
from dsaudit.catalog.roles import DS_ROLES
from dsaudit.catalog.schema import RECURS_HEARTBEAT
from dsaudit.durations import one_unit_duration
from dsaudit.inventory import Inventory
from dsaudit.judge.classify import failed_attempts
from dsaudit.judge.findings import EXPECTATION_DTYPES, HEARTBEAT_DTYPES, typed_frame
from dsaudit.time_text import iso_stamp


@dataclass(frozen=True)
class Vantage:
    """Where the capture was taken: on one host, or on a SPAN/tap seeing many."""

    kind: str  # "host" or "span"
    host: str | None
    source: str  # "detected" or "option"
    evidence: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the summary."""
        return {
            "kind": self.kind,
            "host": self.host,
            "source": self.source,
            "evidence": self.evidence,
        }


def detect_vantage(flows: pd.DataFrame, option: str | None = None) -> Vantage:
    """Host vantage when one address takes part in (almost) every IP flow, else span."""
    if option:
        if option == "span":
            return Vantage("span", None, "option", "--vantage span")
        return Vantage("host", option, "option", f"--vantage {option}")
    if flows.empty:
        return Vantage("span", None, "detected", "no flows")
    ends = pd.concat([flows["client_ip"], flows["server_ip"]])
    counts = ends.value_counts()
    top, hits = counts.index[0], int(counts.iloc[0])
    involved = int(((flows["client_ip"] == top) | (flows["server_ip"] == top)).sum())
    share = involved / len(flows)
    others = counts.drop(top)
    if share >= 0.95 and len(flows) >= 3 and (others.empty or int(others.iloc[0]) < hits):
        return Vantage(
            "host",
            str(top),
            "detected",
            f"{top} takes part in {involved} of {len(flows)} flows ({share:.0%})",
        )
    if len(flows) < 3 and share >= 0.95:
        why = f"{len(flows)} flow(s) are too few to tell where the capture was taken"
    elif share >= 0.95:
        # Two addresses in (almost) every flow: one conversation, seen from either end or
        # from between them.
        second = str(others.index[0])
        why = (
            f"{top} and {second} both take part in (almost) every flow: the capture "
            "could have been taken on either or between them"
        )
    else:
        why = f"no address takes part in 95% of the flows (the busiest, {top}, in {share:.0%})"
    return Vantage("span", None, "detected", why)


def _applicable(rule: Rule, inventory: Inventory) -> bool:
    if rule.expectation == "optional" or rule.localhost_only or rule.ports.any:
        return False
    return rule.when.matches(inventory.facts())


def _subjects(rule: Rule, catalog: Catalog) -> list[tuple[str, bool]]:
    """(role, is_client) pairs of hosts that should show this rule."""
    out = [(rule.role, rule.direction == "outbound")]
    if rule.direction == "inbound" or rule.direction == "outbound":
        for peer in rule.peers:
            if peer not in DS_ROLES:
                continue
            own = any(
                r.role == peer and (rule.id in r.counterparts or r.id in rule.counterparts)
                for r in catalog.rules
            )
            if not own:
                out.append((peer, rule.direction == "inbound"))
    return out


def recurrence(rule: Rule, inventory: Inventory) -> float:
    """Seconds within which a flow of ``rule`` recurs in a working deployment: the rule's
    ``recurs``, where ``heartbeat`` is the inventory's heartbeat_interval."""
    if rule.recurs == RECURS_HEARTBEAT:
        return float(inventory.deployment.heartbeat_interval)
    return float(rule.recurs)


def deep_security_ports(catalog: Catalog) -> frozenset[int]:
    """Ports the catalog requires between Deep Security hosts and uses for nothing else
    (4118, 4120 and 4122 with the vendor's table): a flow on one is Deep Security's own."""
    ds = set(DS_ROLES)
    own: set[int] = set()
    shared: set[int] = set()
    for rule in catalog.rules:
        if rule.ports.any:
            continue
        ports = {
            p for r in rule.ports.ranges if r.high - r.low < 16 for p in range(r.low, r.high + 1)
        }
        between_ds = rule.role in ds and set(rule.peers) <= ds
        if between_ds and rule.expectation != "optional" and not rule.localhost_only:
            own |= ports
        elif not between_ds:
            shared |= ports
    return frozenset(own - shared)


@dataclass(frozen=True)
class Membership:
    """Whether an address seen inside a network entry was taken as a host, and why."""

    address: str
    taken: bool
    reason: str
    flows: int


_DS_ROLE = r"(?:^|\+)(?:manager|relay|agent)(?:\+|$)"
HOST_CRITERION = (
    "an address of a network is a host when it takes part in a flow between Deep Security "
    "hosts that a rule explains, or in a flow on a Deep Security port ({ports}); any other "
    "address of the network (a gateway, a printer) is left out and nothing is expected of it"
)


def network_hosts(
    flows: pd.DataFrame, catalog: Catalog, inventory: Inventory
) -> dict[str, Membership]:
    """Every address of the flows that is a Deep Security host only through a network
    entry, with whether it was taken as a host (see HOST_CRITERION) and the evidence."""
    ds = set(DS_ROLES)
    if flows.empty or not any(role in ds for role, _ in inventory.networks()):
        return {}
    seen = pd.unique(pd.concat([flows["client_ip"], flows["server_ip"]]))
    # A network's broadcast address is never one of its hosts.
    group = inventory.broadcast_addresses()
    candidates = {
        str(a) for a in seen if str(a) not in group and inventory.network_roles(str(a)) & ds
    }
    if not candidates:
        return {}
    c_in = flows["client_ip"].isin(candidates).to_numpy()
    s_in = flows["server_ip"].isin(candidates).to_numpy()
    sub = flows[c_in | s_in]
    proto = sub["proto"].astype(str)
    ports = deep_security_ports(catalog)
    on_port = proto.isin(["tcp", "udp"]) & sub["server_port"].isin(list(ports))
    both_ds = sub["client_role"].fillna("").str.contains(_DS_ROLE) & sub["server_role"].fillna(
        ""
    ).str.contains(_DS_ROLE)
    # The manager's open-port scan reaches whatever it is pointed at: no evidence of an agent.
    explained = (sub["verdict"].astype(str) == "explained") & (
        sub["match"].fillna("").astype(str) != "scan"
    )
    qualifies = (on_port | (explained & both_ds)).to_numpy(dtype=bool)
    infra = (sub["verdict"].astype(str) == "infrastructure").to_numpy(dtype=bool)
    what = (proto + "/" + sub["server_port"].astype(str)).where(proto.isin(["tcp", "udp"]), proto)
    rule = sub["rule"].fillna("").astype(str)
    sides = []
    for me, peer, word in (("client_ip", "server_ip", "to"), ("server_ip", "client_ip", "from")):
        sides.append(
            pd.DataFrame(
                {
                    "address": sub[me].to_numpy(),
                    "text": (what + f" {word} " + sub[peer].astype(str)).to_numpy(),
                    "rule": rule.to_numpy(),
                    "qualifies": qualifies,
                    "infra": infra,
                }
            )
        )
    ends = pd.concat(sides, ignore_index=True)
    ends = ends[ends["address"].isin(candidates)]
    out: dict[str, Membership] = {}
    total: dict[str, int] = {str(k): int(v) for k, v in ends.groupby("address").size().items()}
    good = ends[ends["qualifies"]]
    count: dict[str, int] = {str(k): int(v) for k, v in good.groupby("address").size().items()}
    first = good.drop_duplicates("address")
    for address, text, rid in zip(
        first["address"].tolist(), first["text"].tolist(), first["rule"].tolist(), strict=True
    ):
        because = f" ({rid})" if rid else ""
        out[address] = Membership(
            address,
            True,
            f"{count[address]} Deep Security flow(s), e.g. {text}{because}",
            total[address],
        )
    rest = ends[~ends["address"].isin(list(out))]
    only_infra = {str(k): bool(v) for k, v in rest.groupby("address")["infra"].all().items()}
    first = rest.drop_duplicates("address")
    for address, text in zip(first["address"].tolist(), first["text"].tolist(), strict=True):
        kind = "only infrastructure traffic" if only_infra[address] else "no Deep Security flow"
        n = total[address]
        out[address] = Membership(address, False, f"{kind} ({n} flow(s), e.g. {text})", n)
    return out


def describe_networks(
    inventory: Inventory, members: dict[str, Membership], catalog: Catalog
) -> list[dict[str, Any]]:
    """Per network entry of a Deep Security role: its hosts and the addresses left out."""
    out: list[dict[str, Any]] = []
    parsed = {a: ipaddress.ip_address(a) for a in members}
    order = sorted(members, key=lambda a: (parsed[a].version, int(parsed[a])))
    for role, net in inventory.networks():
        if role not in DS_ROLES:
            continue
        inside = [members[a] for a in order if parsed[a] in net]
        out.append(
            {
                "role": role,
                "network": str(net),
                "hosts": [{"address": m.address, "reason": m.reason} for m in inside if m.taken],
                "left_out": [
                    {"address": m.address, "reason": m.reason} for m in inside if not m.taken
                ],
            }
        )
    return out


def host_criterion(catalog: Catalog) -> str:
    """HOST_CRITERION with the catalog's Deep Security ports filled in."""
    ports = ", ".join(str(p) for p in sorted(deep_security_ports(catalog))) or "none"
    return HOST_CRITERION.format(ports=ports)


def _hosts(inventory: Inventory, role: str, taken: Collection[str]) -> list[str]:
    """Concrete addresses of a role: listed addresses, plus the addresses of its networks
    taken as hosts (see network_hosts)."""
    out: dict[str, None] = {}
    for entry in inventory.hosts_for(role):
        net = entry.network
        if net is not None and net.num_addresses == 1:
            out[str(net.network_address)] = None
    for ip in taken:
        if role in inventory.roles_of(ip):
            out[ip] = None
    return list(out)


def build_expectations(
    flows: pd.DataFrame,
    catalog: Catalog,
    inventory: Inventory,
    vantage: Vantage,
    span_s: float,
    taken: Collection[str] = (),
) -> pd.DataFrame:
    """One row per (host, role, expected rule) with its status; ``taken`` are the addresses
    of network entries taken as hosts."""
    rows: list[dict[str, Any]] = []
    rule_sets = flows["_rules"].tolist() if len(flows) else []
    by_rule: dict[str, list[int]] = {}
    for i, ids in enumerate(rule_sets):
        for rid in ids:
            by_rule.setdefault(rid, []).append(i)
    client = flows["client_ip"].to_numpy() if len(flows) else np.array([])
    server = flows["server_ip"].to_numpy() if len(flows) else np.array([])
    outcome = flows["outcome"].astype(str).to_numpy() if len(flows) else np.array([])
    failed = (
        failed_attempts(flows["proto"].to_numpy(), flows["server_port"].to_numpy(), outcome)
        if len(flows)
        else np.array([], dtype=bool)
    )
    starts = flows["end"] if len(flows) else pd.Series(dtype="datetime64[ns, UTC]")
    for rule in catalog.rules:
        if not _applicable(rule, inventory):
            continue
        related = [rule.id, *rule.counterparts]
        idx = sorted({i for rid in related for i in by_rule.get(rid, [])})
        every = recurrence(rule, inventory)
        for role, is_client in _subjects(rule, catalog):
            for host in _hosts(inventory, role, taken):
                if role != rule.role and rule.role in inventory.roles_of(host):
                    continue  # a relay does not reach a relay (itself) for its own updates
                mine = [i for i in idx if (client[i] if is_client else server[i]) == host]
                bad = [i for i in mine if failed[i]]
                ok = [i for i in mine if not failed[i]]
                if ok:
                    status, detail = "observed", f"{len(ok)} working flow(s)"
                elif mine:
                    status = "blocked"
                    detail = f"{len(bad)} attempt(s), none answered"
                elif (
                    vantage.kind == "host"
                    and vantage.host != host
                    and not _peer_is(vantage.host, rule, role, inventory)
                ):
                    status = "not-visible"
                    detail = f"a capture on {vantage.host} cannot see this host's {rule.id}"
                elif span_s < every:
                    status = "inconclusive"
                    detail = (
                        f"the capture spans {one_unit_duration(span_s)}, less than the "
                        f"{one_unit_duration(every)} in which this flow recurs"
                    )
                else:
                    status = "missing"
                    detail = (
                        f"no attempt in {one_unit_duration(span_s)}, expected every "
                        f"{one_unit_duration(every)}"
                    )
                last = starts.iloc[mine].max() if mine else pd.NaT
                rows.append(
                    {
                        "host": host,
                        "role": role,
                        "rule": rule.id,
                        "peer_role": "+".join(rule.peers) if role == rule.role else rule.role,
                        "port": str(rule.ports),
                        "expectation": rule.expectation,
                        "status": status,
                        "flows": len(mine),
                        "established": len(ok),
                        "blocked_flows": len(bad),
                        "last_seen": last,
                        "detail": detail,
                    }
                )
    return typed_frame(rows, EXPECTATION_DTYPES)


def _peer_is(vantage_host: str | None, rule: Rule, role: str, inventory: Inventory) -> bool:
    """Whether the capture host plays the other side of ``rule`` (and so would see it)."""
    if vantage_host is None:
        return True
    other = set(rule.peers) if role == rule.role else {rule.role}
    return bool(inventory.roles_of(vantage_host) & other)


def is_heartbeat(rules: Iterable[str]) -> bool:
    """Whether a flow satisfying these rule ids is a heartbeat (4118, 4120, or 443 to SaaS)."""
    return any("heartbeat" in r or r.endswith("manager-443") for r in rules)


def _agent_is_client(rules: Iterable[str], client_role: object) -> bool:
    """Whether the agent opened this heartbeat, by the rule that explains it: a host that is
    manager and agent at once (``manager+agent``) tells nothing by its roles, while
    ``manager.out.heartbeat-4118`` is always manager to agent."""
    for rule in rules:
        if not is_heartbeat([rule]):
            continue
        role, _, rest = rule.partition(".")
        direction = rest.partition(".")[0]
        if role == "manager" and direction in ("in", "out"):
            return direction == "in"
        if role in ("agent", "relay") and direction in ("in", "out"):
            return direction == "out"
    return "agent" in str(client_role).split("+")


def heartbeats(flows: pd.DataFrame) -> pd.DataFrame:
    """Per agent and direction: heartbeat attempts, outcomes and intervals."""
    if flows.empty:
        return typed_frame([], HEARTBEAT_DTYPES)
    rules = flows["_rules"]
    is_hb = rules.map(is_heartbeat)
    hb = flows[is_hb.astype(bool)]
    rows: list[dict[str, Any]] = []
    for keys, group in hb.groupby(["client_ip", "server_ip", "server_port"]):
        cip, sip, port = (str(keys[0]), str(keys[1]), int(str(keys[2])))
        group = group.sort_values("start")
        agent_is_client = _agent_is_client(group["_rules"].iloc[0], group["client_role"].iloc[0])
        agent = cip if agent_is_client else sip
        starts = group["start"]
        gaps = starts.diff().dt.total_seconds().dropna()
        est = int((group["outcome"].astype(str) == "established").sum())
        rows.append(
            {
                "agent": agent,
                "direction": "agent->manager" if agent_is_client else "manager->agent",
                "port": int(port),
                "attempts": len(group),
                "established": est,
                "failed": len(group) - est,
                "first_seen": starts.iloc[0],
                "last_seen": starts.iloc[-1],
                "median_interval_s": float(gaps.median()) if len(gaps) else np.nan,
                "max_interval_s": float(gaps.max()) if len(gaps) else np.nan,
                "times": [iso_stamp(t) for t in starts],
                "outcomes": group["outcome"].astype(str).tolist(),
            }
        )
    rows.sort(key=lambda r: (r["agent"], r["direction"], r["port"]))
    return typed_frame(rows, HEARTBEAT_DTYPES)
