"""The catalog's data model: rules, their ports, host names and conditions, and the catalog."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from dsaudit.catalog.roles import IMPLIED_ROLES, VERSIONS, hosts_of_roles
from dsaudit.durations import exact_duration
from dsaudit.errors import Location

# For a rule that does not say how often it recurs: the audit calls an expected flow missing
# only after a capture at least this long, so erring long costs "inconclusive", never a
# false "missing".
RECURS_DEFAULT_S = 3600
# `recurs: heartbeat` follows the inventory's heartbeat_interval, a site setting.
RECURS_HEARTBEAT = "heartbeat"


def recurs_text(recurs: int | str) -> str:
    """A rule's recurrence for people: "heartbeat", "10 min", "1 h 30 min"."""
    return recurs if isinstance(recurs, str) else exact_duration(recurs)


@dataclass(frozen=True)
class PortRange:
    """An inclusive port range; a single port is a range of one."""

    low: int
    high: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def as_json(self) -> int | list[int]:
        return self.low if self.low == self.high else [self.low, self.high]

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class Ports:
    """The destination ports of a rule: listed ports and ranges, or any port at all."""

    ranges: tuple[PortRange, ...] = ()
    any: bool = False

    def __contains__(self, port: object) -> bool:
        if self.any:
            return isinstance(port, int) and 0 <= port <= 65535
        return any(port in r for r in self.ranges)

    def as_json(self) -> str | list[int | list[int]]:
        return "any" if self.any else [r.as_json() for r in self.ranges]

    def __str__(self) -> str:
        return "any" if self.any else ", ".join(str(r) for r in self.ranges)

    @classmethod
    def of(cls, *items: int | tuple[int, int]) -> Ports:
        """Build from ints and (low, high) pairs, as written in code and tests."""
        ranges = [PortRange(i, i) if isinstance(i, int) else PortRange(*i) for i in items]
        return cls(tuple(ranges))


@dataclass(frozen=True)
class Hostname:
    """One host name from the seed, normalised, with the text it was written as."""

    name: str
    text: str
    versions: tuple[str, ...] = ()  # empty: every version
    example: bool = False  # the seed gives it as an example ("例:"), not the only one

    def applies_to(self, version: str | None) -> bool:
        return version is None or not self.versions or version in self.versions


@dataclass(frozen=True)
class HostnameSet:
    """The host names of a rule, per version where the seed splits them by version."""

    entries: tuple[Hostname, ...] = ()

    def names(self, version: str | None = None) -> tuple[str, ...]:
        """Distinct names in seed order; with a version, only the names for that version."""
        out: dict[str, None] = {}
        for entry in self.entries:
            if entry.applies_to(version):
                out[entry.name] = None
        return tuple(out)

    @property
    def flat(self) -> frozenset[str]:
        return frozenset(entry.name for entry in self.entries)

    def by_version(self, versions: Iterable[str] = VERSIONS) -> dict[str, tuple[str, ...]]:
        """Version -> names (names without a version count for every version)."""
        out = {v: self.names(v) for v in versions}
        return {v: names for v, names in out.items() if names}

    def __bool__(self) -> bool:
        return bool(self.entries)


@dataclass(frozen=True)
class Conditions:
    """When a rule applies: each key lists the deployment values it allows; empty = any."""

    values: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def get(self, key: str) -> tuple[str, ...]:
        for name, allowed in self.values:
            if name == key:
                return allowed
        return ()

    def matches(self, facts: Mapping[str, str | Collection[str]]) -> bool:
        """True unless a fact the caller knows falls outside what a condition allows.

        Facts the caller does not give are treated as unknown, so they never exclude a rule;
        a fact given as a collection (several agent versions) matches if any value does.
        """
        for key, allowed in self.values:
            if key not in facts:
                continue
            fact = facts[key]
            known = {fact} if isinstance(fact, str) else set(fact)
            if not known & set(allowed):
                return False
        return True

    def as_json(self) -> dict[str, list[str]]:
        return {key: list(allowed) for key, allowed in self.values}

    def __bool__(self) -> bool:
        return bool(self.values)

    def __str__(self) -> str:
        return "; ".join(f"{key}: {', '.join(allowed)}" for key, allowed in self.values)


@dataclass(frozen=True)
class Note:
    """A remark on a rule: from the seed, or ours (an ambiguity or an interpretation)."""

    kind: str  # seed | ambiguity | interpretation | site
    en: str
    ja: str = ""


@dataclass(frozen=True)
class Rule:
    """One allowed conversation, seen from `role`: one row of the vendor's port table."""

    id: str
    role: str
    direction: str
    transports: tuple[str, ...]
    ports: Ports
    service: str
    peers: tuple[str, ...]
    purpose_en: str
    expectation: str
    purpose_ja: str = ""
    peer_en: str = ""
    peer_ja: str = ""
    hostnames: HostnameSet = HostnameSet()
    urls: tuple[str, ...] = ()
    configurable: str = "unknown"
    proxy: str = "unknown"
    proxy_min_version: str | None = None
    when: Conditions = Conditions()
    recurs: int | str = RECURS_DEFAULT_S  # seconds, or RECURS_HEARTBEAT
    localhost_only: bool = False
    counterparts: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()
    ambiguous: bool = False
    seed_marks: str | None = None
    origin: str = "catalog"  # catalog | site
    location: Location | None = field(default=None, compare=False, hash=False)
    overridden_at: Location | None = field(default=None, compare=False, hash=False)

    @property
    def client_roles(self) -> tuple[str, ...]:
        """Roles that open the connection (send the first packet to the port)."""
        return self.peers if self.direction == "inbound" else (self.role,)

    @property
    def server_roles(self) -> tuple[str, ...]:
        """Roles that listen on the port."""
        return (self.role,) if self.direction == "inbound" else self.peers

    def matches_port(self, transport: str, port: int) -> bool:
        return transport in self.transports and port in self.ports

    def applies_to_version(self, version: str | None) -> bool:
        allowed = self.when.get("versions")
        return version is None or not allowed or version in allowed


class Catalog:
    """All rules (vendor catalog plus site files), with the look-ups the tools need."""

    def __init__(self, rules: Iterable[Rule], files: Iterable[str] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.files: tuple[str, ...] = tuple(files)
        self._by_id = {rule.id: rule for rule in self.rules}
        self._order = {rule.id: i for i, rule in enumerate(self.rules)}
        # transport -> port -> rules, plus the rules with ranges wider than this index covers;
        # the audit asks once per flow, so the common single-port case must be a dict hit.
        self._by_port: dict[str, dict[int, list[Rule]]] = {}
        self._wide: dict[str, list[Rule]] = {}
        for rule in self.rules:
            for transport in rule.transports:
                singles = self._by_port.setdefault(transport, {})
                if rule.ports.any or any(r.high - r.low > 64 for r in rule.ports.ranges):
                    self._wide.setdefault(transport, []).append(rule)
                    continue
                for r in rule.ports.ranges:
                    for port in range(r.low, r.high + 1):
                        singles.setdefault(port, []).append(rule)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id

    def get(self, rule_id: str) -> Rule:
        """The rule with this id (KeyError if there is none)."""
        return self._by_id[rule_id]

    def rules_for(
        self,
        role: str | None = None,
        direction: str | None = None,
        version: str | None = None,
        *,
        implied: bool = False,
    ) -> tuple[Rule, ...]:
        """Rules of a role (with implied=True also those of roles it implies: a relay's agent
        rules), a direction and a version; None means any."""
        roles: set[str] | None = None
        if role is not None:
            roles = {role} | (set(IMPLIED_ROLES.get(role, ())) if implied else set())
        return tuple(
            rule
            for rule in self.rules
            if (roles is None or rule.role in roles)
            and (direction is None or rule.direction == direction)
            and rule.applies_to_version(version)
        )

    def matching(
        self, transport: str, port: int, *, role: str | None = None, direction: str | None = None
    ) -> tuple[Rule, ...]:
        """Rules whose transport and destination port match (in catalog order)."""
        found = list(self._by_port.get(transport, {}).get(port, ()))
        found += [rule for rule in self._wide.get(transport, ()) if port in rule.ports]
        found.sort(key=lambda rule: self._order[rule.id])
        return tuple(
            rule
            for rule in found
            if (role is None or rule.role == role)
            and (direction is None or rule.direction == direction)
        )

    def by_hostname(self, name: str, version: str | None = None) -> tuple[Rule, ...]:
        """Rules that list this exact host name (for that version, if given)."""
        wanted = name.rstrip(".").lower()
        return tuple(r for r in self.rules if wanted in r.hostnames.names(version))

    def conversation(
        self,
        transport: str,
        port: int,
        client_roles: Collection[str],
        server_roles: Collection[str],
    ) -> tuple[Rule, ...]:
        """Rules that allow a client with one of `client_roles` to reach a server with one of
        `server_roles` on transport/port; pass roles as Inventory.roles_of gives them (a relay
        host comes with its implied agent role)."""
        clients, servers = set(client_roles), set(server_roles)
        return tuple(
            rule
            for rule in self.matching(transport, port)
            if clients & hosts_of_roles(rule.client_roles)
            and servers & hosts_of_roles(rule.server_roles)
        )
