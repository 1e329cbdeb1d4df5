"""The inventory: one YAML file describing one deployment (its settings and hosts per role)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dsaudit.catalog import roles as V
from dsaudit.catalog.fields import MapReader, type_name
from dsaudit.catalog.yaml_loader import Problems, YMap, load_yaml
from dsaudit.durations import parse_duration
from dsaudit.errors import InventoryError, Location, brief

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEPLOYMENT_KEYS = (
    "version",
    "agent_versions",
    "mode",
    "communication",
    "database",
    "heartbeat_interval",
    "updates",
    "siem",
)
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class HostEntry:
    """One `hosts` entry: an address or network, or a host name; a proxy's also has a port."""

    text: str
    network: IPNetwork | None = None
    hostname: str | None = None
    port: int | None = None
    location: Location | None = field(default=None, compare=False, hash=False)

    @property
    def family(self) -> int | None:
        return None if self.network is None else self.network.version

    def contains(self, address: IPAddress) -> bool:
        return self.network is not None and address in self.network


@dataclass(frozen=True)
class Deployment:
    """The deployment's settings; the defaults are the vendor's defaults."""

    version: str = "11.0"
    agent_versions: tuple[str, ...] = ("11.0",)
    mode: str = "on-premises"
    communication: str = "bidirectional"
    database: str | None = None
    heartbeat_interval: int = 600  # seconds; the vendor's default is ten minutes
    updates: str = "relay"
    siem: str = "none"


@dataclass(frozen=True)
class Inventory:
    """A deployment and its hosts per role, with the look-ups the audit and exports need."""

    path: str
    deployment: Deployment
    hosts: Mapping[str, tuple[HostEntry, ...]]
    names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    _cache: dict[str, frozenset[str]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )
    # Indexes built on first use: single addresses by value, networks by prefix length
    # (an inferred inventory can list thousands of hosts; a linear scan per flow is too slow).
    _index: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    # Addresses inside a network entry that the audit did not take as hosts (see
    # expectations.network_hosts): they keep only the roles of entries naming them exactly.
    left_out: frozenset[str] = field(default_factory=frozenset, compare=False, hash=False)

    def _build_index(self) -> dict[str, Any]:
        exact: dict[IPAddress, set[str]] = {}
        nets: dict[tuple[int, int], dict[int, set[str]]] = {}
        names: dict[str, set[str]] = {}
        for role, entries in self.hosts.items():
            for entry in entries:
                net = entry.network
                if net is not None:
                    if net.num_addresses == 1:
                        exact.setdefault(net.network_address, set()).add(role)
                    else:
                        table = nets.setdefault((net.version, net.prefixlen), {})
                        table.setdefault(int(net.network_address), set()).add(role)
                if entry.hostname:
                    names.setdefault(entry.hostname, set()).add(role)
        for role, listed in self.names.items():
            for name in listed:
                names.setdefault(name, set()).add(role)
        self._index.update(exact=exact, nets=nets, names=names)
        return self._index

    def hosts_for(self, role: str, *, implied: bool = True) -> tuple[HostEntry, ...]:
        """Entries of a role; with implied, also of roles that play it (agent: relays too)."""
        roles = V.hosts_of_role(role) if implied else frozenset({role})
        out: dict[HostEntry, None] = {}
        for r in (role, *sorted(roles - {role})):
            for entry in self.hosts.get(r, ()):
                out[entry] = None
        return tuple(out)

    def roles_of(self, address: str | IPAddress) -> frozenset[str]:
        """Roles of an IP address (by exact address or containing network), implied included."""
        key = str(address)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        index = self._index or self._build_index()
        found = set(index["exact"].get(ip, ()))
        if key not in self.left_out:
            found |= self._network_roles(ip, index)
        result = V.with_implied(found)
        self._cache[key] = result
        return result

    def network_roles(self, address: str | IPAddress) -> frozenset[str]:
        """Roles an address has only through network entries (not listed by itself)."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        index = self._index or self._build_index()
        exact = set(index["exact"].get(ip, ()))
        return frozenset(self._network_roles(ip, index) - exact)

    @staticmethod
    def _network_roles(ip: IPAddress, index: dict[str, Any]) -> set[str]:
        found: set[str] = set()
        value = int(ip)
        width = 32 if ip.version == 4 else 128
        for (version, prefix), table in index["nets"].items():
            if version == ip.version:
                base = (value >> (width - prefix)) << (width - prefix)
                found |= table.get(base, set())
        return found

    def networks(self) -> list[tuple[str, IPNetwork]]:
        """(role, network) of every entry that is a network of more than one address."""
        return [
            (role, entry.network)
            for role, entries in self.hosts.items()
            for entry in entries
            if entry.network is not None and entry.network.num_addresses > 1
        ]

    def broadcast_addresses(self) -> frozenset[str]:
        """The directed broadcast address of every IPv4 network entry that has one."""
        index = self._index or self._build_index()
        found = index.get("broadcast")
        if found is None:
            found = frozenset(
                str(net.broadcast_address)
                for _, net in self.networks()
                # /31 and /32 have no broadcast address (RFC 3021).
                if net.version == 4 and net.prefixlen <= 30
            )
            index["broadcast"] = found
        return found

    def in_a_network(self, address: str) -> bool:
        """Whether an address falls inside any network entry of the inventory."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return bool(self._network_roles(ip, self._index or self._build_index()))

    def leaving_out(self, addresses: frozenset[str]) -> Inventory:
        """This inventory with ``addresses`` no longer hosts of the networks holding them."""
        return replace(self, left_out=frozenset(addresses), _cache={}, _index={})

    def roles_of_name(self, hostname: str) -> frozenset[str]:
        """Roles of a host name, from `hosts` entries and the `names` section."""
        name = hostname.rstrip(".").lower()
        index = self._index or self._build_index()
        return V.with_implied(frozenset(index["names"].get(name, ())))

    def facts(self) -> dict[str, str | tuple[str, ...]]:
        """The deployment as the facts a rule's `when` tests (see Conditions.matches)."""
        d = self.deployment
        facts: dict[str, str | tuple[str, ...]] = {
            "mode": d.mode,
            "communication": d.communication,
            "updates": d.updates,
            "siem": d.siem,
            "versions": tuple(dict.fromkeys((d.version, *d.agent_versions))),
            "proxy": "true" if self.hosts.get("proxy") else "false",
        }
        # No database fact for as-a-service: every database rule then stays out.
        facts["database"] = d.database or "none"
        return facts


def parse_host_entry(text: str, role: str) -> HostEntry:
    """One hosts entry; raises ValueError with the reason when it is not valid."""
    raw = text.strip()
    port: int | None = None
    body = raw
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0 or not raw[end + 1 :].startswith(":"):
            raise ValueError(f"{brief(raw)}: write an IPv6 address with a port as [address]:port")
        body, port = raw[1:end], _port(raw[end + 2 :])
    elif raw.count(":") == 1:
        body, port_text = raw.split(":")
        port = _port(port_text)
    if port is not None and role != "proxy":
        raise ValueError(f"{brief(raw)}: only proxy entries take a port")
    if role == "proxy" and port is None:
        raise ValueError(f"{brief(raw)}: a proxy entry needs its port (address:port)")
    if "/" in body:
        try:
            return HostEntry(raw, network=ipaddress.ip_network(body, strict=True), port=port)
        except ValueError as exc:
            raise ValueError(f"{brief(raw)} is not a network: {exc}") from None
    try:
        address = ipaddress.ip_address(body)
    except ValueError:
        pass
    else:
        return HostEntry(raw, network=ipaddress.ip_network(address), port=port)
    name = body.rstrip(".").lower()
    if ":" in name or not name or not all(_HOST_LABEL.match(p) for p in name.split(".")):
        raise ValueError(f"{brief(raw)} is not an address, network or host name")
    if name.split(".")[-1].isdigit():
        raise ValueError(f"{brief(raw)} is not a valid IPv4 address")
    return HostEntry(raw, hostname=name, port=port)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {brief(text)} must be a number from 1 to 65535")
    return int(text)


def load_inventory(path: str | Path, text: str | None = None) -> Inventory:
    """Load and check an inventory file; InventoryError lists every problem with file:line."""
    problems = Problems()
    root = load_yaml(path, problems, text)
    inventory = None
    if isinstance(root, YMap):
        inventory = _build(str(path), root, problems)
    elif root is not None:
        problems.add(Location(str(path), 1), f"an inventory is a mapping, not {type_name(root)}")
    if problems or inventory is None:
        raise InventoryError(problems.sorted())
    return inventory


def _build(path: str, root: YMap, problems: Problems) -> Inventory:
    top = MapReader(root, problems, "an inventory", ("deployment", "hosts", "names"), ("hosts",))
    hosts = _hosts(top, problems)
    names = _names(top, problems)
    node = top.mapping("deployment")
    where = root.key_loc("deployment")
    deployment = _deployment(node, where, hosts, problems) if node is not None else None
    if deployment is None:
        deployment = Deployment()
        if node is None and "deployment" not in root:
            top.error(root.loc, "an inventory needs `deployment` (at least its database)")
    return Inventory(path, deployment, hosts, names)


def _version(r: MapReader, key: str, value: Any, loc: Location) -> str | None:
    text = repr(value) if isinstance(value, float) else value
    if text not in V.VERSIONS:
        r.error(
            loc,
            f"{key}: {brief(value)} is not a version the catalog knows ({', '.join(V.VERSIONS)})",
        )
        return None
    return str(text)


def _deployment(
    node: YMap, where: Location, hosts: Mapping[str, tuple[HostEntry, ...]], problems: Problems
) -> Deployment:
    r = MapReader(node, problems, "deployment", DEPLOYMENT_KEYS)
    version = "11.0"
    if r.has("version"):
        version = _version(r, "version", r.raw("version"), r.loc("version")) or version
    agent_versions = tuple(
        v
        for item, loc in r.seq("agent_versions")
        if (v := _version(r, "agent_versions", item, loc))
    ) or (version,)
    mode = r.choice("mode", V.MODES, "on-premises") or "on-premises"
    database = r.choice("database", V.DATABASES)
    if mode == "on-premises" and database is None and not r.has("database"):
        r.error(where, f"an on-premises deployment needs `database` ({', '.join(V.DATABASES)})")
    if mode == "as-a-service" and database is not None:
        r.error(r.loc("database"), "an as-a-service deployment has no database of its own")
    interval = 600
    if r.has("heartbeat_interval"):
        try:
            interval = parse_duration(r.raw("heartbeat_interval"))
        except ValueError as exc:
            r.error(r.loc("heartbeat_interval"), f"heartbeat_interval: {exc}")
    default_siem = "via-manager" if hosts.get("syslog") else "none"
    siem = r.choice("siem", V.SIEM, default_siem) or default_siem
    if siem != "none" and not hosts.get("syslog"):
        r.error(r.loc("siem"), f"siem: {siem} needs the SIEM's address under hosts.syslog")
    return Deployment(
        version=version,
        agent_versions=agent_versions,
        mode=mode,
        communication=r.choice("communication", V.COMMUNICATIONS, "bidirectional")
        or "bidirectional",
        database=database,
        heartbeat_interval=interval,
        updates=r.choice("updates", V.UPDATES, "relay") or "relay",
        siem=siem,
    )


def _hosts(top: MapReader, problems: Problems) -> dict[str, tuple[HostEntry, ...]]:
    node = top.mapping("hosts")
    if node is None:
        return {}
    r = MapReader(node, problems, "hosts", V.HOST_ROLES)
    out: dict[str, tuple[HostEntry, ...]] = {}
    for role in node:
        if role not in V.HOST_ROLES:
            continue  # reported by MapReader
        entries: list[HostEntry] = []
        seen: set[HostEntry] = set()
        for item, loc in r.seq(role, allow_scalar=True):
            if not isinstance(item, str):
                r.error(
                    loc, f"hosts.{role}: {brief(item)} must be quoted text, not {type_name(item)}"
                )
                continue
            try:
                entry = parse_host_entry(item, role)
            except ValueError as exc:
                r.error(loc, f"hosts.{role}: {exc}")
                continue
            if entry in seen:
                r.error(loc, f"hosts.{role}: {brief(item)} is listed twice")
                continue
            seen.add(entry)
            entries.append(HostEntry(entry.text, entry.network, entry.hostname, entry.port, loc))
        out[role] = tuple(entries)
    return out


def _names(top: MapReader, problems: Problems) -> dict[str, tuple[str, ...]]:
    node = top.mapping("names")
    if node is None:
        return {}
    r = MapReader(node, problems, "names", V.HOST_ROLES)
    out: dict[str, tuple[str, ...]] = {}
    for role in node:
        if role not in V.HOST_ROLES:
            continue
        names: list[str] = []
        for item, loc in r.seq(role, allow_scalar=True):
            name = item.rstrip(".").lower() if isinstance(item, str) else ""
            if not name or not all(_HOST_LABEL.match(p) for p in name.split(".")):
                r.error(loc, f"names.{role}: {brief(item)} is not a host name")
            else:
                names.append(name)
        out[role] = tuple(names)
    return out
