"""Which catalog rules a deployment needs, and for each the concrete client and server hosts."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from dsaudit.catalog.roles import INTERNET, hosts_of_role
from dsaudit.catalog.schema import Catalog, PortRange, Ports, Rule
from dsaudit.inventory import Inventory, IPNetwork

ANY_V4 = ipaddress.ip_network("0.0.0.0/0")
ANY_V6 = ipaddress.ip_network("::/0")
_PROXIED = ("yes", "socks")


@dataclass(frozen=True)
class Endpoint:
    """One side of an allowed conversation: a role and its addresses (or any address)."""

    role: str
    networks: tuple[IPNetwork, ...] = ()
    hostnames: tuple[str, ...] = ()  # names from the inventory that cannot go in address sets
    any: bool = False
    tag: str = ""  # tells apart endpoints of one role, e.g. proxies by port

    def family(self, version: int) -> tuple[IPNetwork, ...]:
        """Addresses of one IP version; for `any`, the whole address space of it."""
        if self.any:
            return (ANY_V4,) if version == 4 else (ANY_V6,)
        return tuple(n for n in self.networks if n.version == version)

    @property
    def key(self) -> str:
        """A name for address sets: the role, plus the tag (a proxy's port)."""
        return f"{self.role}_{self.tag}" if self.tag else self.role


@dataclass(frozen=True)
class Allow:
    """One allow rule of the export: client hosts may reach server hosts on transport/ports.

    At most one end is `any` (the plan leaves out traffic with both ends on the internet).
    """

    rule_ids: tuple[str, ...]
    purpose: str
    client: Endpoint
    server: Endpoint
    transport: str
    ports: Ports
    hostnames: tuple[str, ...] = ()  # internet names the rule is for (comments, allowlists)
    via_proxy: bool = False

    def families(self) -> tuple[int, ...]:
        """IP versions for which both ends have addresses."""
        return tuple(v for v in (4, 6) if self.client.family(v) and self.server.family(v))

    @property
    def label(self) -> str:
        return "+".join(self.rule_ids)


@dataclass(frozen=True)
class Plan:
    """The allow rules for one deployment, and the catalog rules left out with the reason."""

    allows: tuple[Allow, ...]
    skipped: tuple[tuple[str, str], ...]
    hostnames: tuple[tuple[str, tuple[str, ...]], ...]  # internet name -> rule ids
    inventory_names: tuple[tuple[str, str], ...]  # (role, name) of hosts given by name only

    def for_role(self, role: str) -> Plan:
        """Only the allows with hosts of `role` at one end (a relay is at every agent end)."""
        keep = tuple(
            a
            for a in self.allows
            if role in hosts_of_role(a.client.role) or role in hosts_of_role(a.server.role)
        )
        return dataclasses.replace(self, allows=keep)


def build_plan(catalog: Catalog, inventory: Inventory, *, port_scan: bool = False) -> Plan:
    """Select the rules that apply to the deployment and resolve both ends to addresses."""
    facts = inventory.facts()
    versions = facts["versions"]
    allows: list[Allow] = []
    skipped: list[tuple[str, str]] = []
    names: dict[str, list[str]] = {}
    for rule in catalog.rules:
        reason = _exclusion(rule, facts, port_scan)
        if reason:
            skipped.append((rule.id, reason))
            continue
        rule_names = tuple(dict.fromkeys(n for v in versions for n in rule.hostnames.names(v)))
        for client_role in rule.client_roles:
            for server_role in rule.server_roles:
                client = _endpoint(inventory, client_role)
                server = _endpoint(inventory, server_role)
                missing = [e.role for e in (client, server) if not e.any and not e.networks]
                if missing:
                    skipped.append(
                        (rule.id, _missing(inventory, missing, client_role, server_role))
                    )
                    continue
                if client.any and server.any:
                    # An as-a-service manager's own internet traffic never crosses this site.
                    skipped.append(
                        (rule.id, f"{client_role} to {server_role}: both on the internet")
                    )
                    continue
                for allow in _allows(rule, client, server, rule_names, inventory):
                    _merge(allows, allow, rule)
                if server.any:
                    # Internet peers: the seed's names, or an as-a-service manager's.
                    for name in (*rule_names, *server.hostnames):
                        if rule.id not in names.setdefault(name, []):
                            names[name].append(rule.id)
    by_name = tuple(
        (role, e.hostname) for role, es in inventory.hosts.items() for e in es if e.hostname
    )
    return Plan(
        allows=tuple(allows),
        skipped=tuple(skipped),
        hostnames=tuple((n, tuple(ids)) for n, ids in names.items()),
        inventory_names=by_name,
    )


def _exclusion(rule: Rule, facts: dict[str, str | tuple[str, ...]], port_scan: bool) -> str:
    if rule.localhost_only:
        return "localhost only: never belongs on the network (loopback is allowed as a whole)"
    if not rule.when.matches(facts):
        return f"not for this deployment (when {rule.when})"
    if rule.ports.any and not port_scan:
        return "opens every port; pass --port-scan to export it"
    return ""


def _missing(inventory: Inventory, roles: list[str], client: str, server: str) -> str:
    parts = []
    for role in roles:
        if inventory.hosts_for(role):
            parts.append(f"hosts.{role} has only host names (give addresses)")
        else:
            parts.append(f"no hosts.{role} in the inventory")
    return f"{client} to {server}: " + "; ".join(parts)


def _endpoint(inventory: Inventory, role: str) -> Endpoint:
    if role == INTERNET:
        return Endpoint(role, any=True)
    entries = inventory.hosts_for(role)
    networks = tuple(dict.fromkeys(e.network for e in entries if e.network is not None))
    hostnames = tuple(e.hostname for e in entries if e.hostname)
    if role == "manager" and not networks and inventory.deployment.mode == "as-a-service":
        # Deep Security as a Service: the manager is Trend Micro's, somewhere on the internet.
        return Endpoint(role, hostnames=hostnames + inventory.names.get(role, ()), any=True)
    return Endpoint(role, networks, hostnames)


def _allows(
    rule: Rule,
    client: Endpoint,
    server: Endpoint,
    names: tuple[str, ...],
    inventory: Inventory,
) -> Iterable[Allow]:
    proxies = [e for e in inventory.hosts_for("proxy") if e.network is not None]
    purpose = rule.purpose_en
    if server.role == INTERNET and rule.proxy in _PROXIED and proxies:
        # The client talks to the proxy on the proxy's port; the proxy talks to the internet.
        for port in sorted({e.port for e in proxies if e.port is not None}):
            nets = tuple(e.network for e in proxies if e.port == port and e.network is not None)
            proxy_end = Endpoint("proxy", nets, tag=str(port))
            yield Allow((rule.id,), purpose, client, proxy_end, "tcp", Ports.of(port), names, True)
        proxy_src = Endpoint("proxy", tuple(e.network for e in proxies if e.network))
        for transport in rule.transports:
            yield Allow((rule.id,), purpose, proxy_src, server, transport, rule.ports, names)
        return
    for transport in rule.transports:
        yield Allow((rule.id,), purpose, client, server, transport, rule.ports, names)


def _merge(allows: list[Allow], allow: Allow, rule: Rule) -> None:
    """The two ends of one conversation (counterpart rules) become one allow with both ids;
    different rules that happen to allow the same traffic stay apart, each with its purpose."""
    for i, existing in enumerate(allows):
        if _shape(existing) == _shape(allow) and set(existing.rule_ids) & set(rule.counterparts):
            allows[i] = dataclasses.replace(
                existing,
                rule_ids=existing.rule_ids + allow.rule_ids,
                hostnames=tuple(dict.fromkeys(existing.hostnames + allow.hostnames)),
            )
            return
    allows.append(allow)


def _shape(allow: Allow) -> tuple[object, ...]:
    """What an allow permits, without why."""
    return allow.client.key, allow.server.key, allow.transport, allow.ports, allow.via_proxy


def port_ranges(ports: Ports) -> tuple[PortRange, ...]:
    """The ranges to emit; `any` is the whole port range."""
    return (PortRange(0, 65535),) if ports.any else ports.ranges
