"""Infer an inventory from traffic: which address plays which role, with evidence and confidence.

A host that accepts connections on a role's listening port plays that role (4120: a
manager, 4122: a relay, 4118: an agent, 53: a DNS server, ...); the clients of the
manager's 4120 are agents and the client of an agent's 4118 is a manager. The result is
written as an inventory file for the user to correct, each entry commented with why.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pandas as pd

from dsaudit.catalog.roles import HOST_ROLES
from dsaudit.inventory import Inventory, load_inventory
from dsaudit.judge.classify import find_scans, is_internal

# server port -> (role of the server, role of the client or None)
LISTENING: dict[tuple[str, int], tuple[str, str | None]] = {
    ("tcp", 4120): ("manager", "agent"),
    ("tcp", 4119): ("manager", None),
    ("tcp", 4122): ("relay", None),
    ("tcp", 4118): ("agent", "manager"),
    ("udp", 53): ("dns", None),
    ("tcp", 53): ("dns", None),
    ("udp", 123): ("ntp", None),
    ("tcp", 25): ("smtp", None),
    ("udp", 514): ("syslog", None),
    ("udp", 162): ("snmp", None),
    ("tcp", 389): ("ldap", None),
    ("tcp", 636): ("ldap", None),
}
DATABASE_PORTS = {5432: "postgresql", 1433: "mssql", 1521: "oracle"}
# The inventory file's sections in the catalog's order, but with the manager's database
# written next to the manager.
ROLE_ORDER = ("manager", "database", *(r for r in HOST_ROLES if r not in ("manager", "database")))


@dataclass
class RoleEvidence:
    """Why one address is thought to play one role."""

    flows: int = 0
    established: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def confidence(self) -> str:
        """high: three or more working flows; medium: one or two; low: attempts only."""
        if self.established >= 3:
            return "high"
        return "medium" if self.established else "low"


@dataclass
class InferredInventory:
    """Roles per address with evidence, the deployment settings guessed, and the YAML."""

    roles: dict[str, dict[str, RoleEvidence]]  # role -> address -> evidence
    proxies: dict[str, RoleEvidence]  # "addr:port" -> evidence
    deployment: dict[str, str]
    notes: list[str]

    def to_yaml(self) -> str:
        """An inventory file, every entry commented with its evidence and confidence."""
        lines = [
            "# Inventory inferred by `dsaudit inventory infer` from the traffic itself.",
            "# Check every entry: the comments say what each is based on.",
            "deployment:",
        ]
        for key, value in self.deployment.items():
            text = f'"{value}"' if key == "version" else value
            lines.append(f"  {key}: {text}")
        lines.append("hosts:")
        for role in ROLE_ORDER:
            table = self.proxies if role == "proxy" else self.roles.get(role, {})
            if not table:
                continue
            lines.append(f"  {role}:")
            for addr, ev in sorted(table.items()):
                why = ", ".join(f"{n} {r}" for r, n in ev.reasons.most_common(3))
                lines.append(f'    - "{addr}"  # {ev.confidence} confidence: {why}')
        for note in self.notes:
            lines.append(f"# note: {note}")
        return "\n".join(lines) + "\n"

    def inventory(self) -> Inventory:
        """The inferred inventory as the audit uses it."""
        return load_inventory("<inferred>", text=self.to_yaml())


def infer(flows: pd.DataFrame) -> InferredInventory:
    """Infer roles and deployment settings from the flows of a capture."""
    roles: dict[str, dict[str, RoleEvidence]] = defaultdict(dict)
    proxies: dict[str, RoleEvidence] = {}

    def note(role: str, addr: str, why: str, ok: bool) -> None:
        ev = roles[role].setdefault(addr, RoleEvidence())
        ev.flows += 1
        ev.established += int(ok)
        ev.reasons[why] += 1

    # A port scan touches every port of its target: it says nothing about roles.
    flows = flows[~find_scans(flows, set(flows["client_ip"]))]
    cols = [
        "proto",
        "client_ip",
        "server_ip",
        "server_port",
        "outcome",
        "connect_target",
        "socks_target",
    ]
    seen_ports: Counter[int] = Counter()
    for proto, cip, sip, port, outcome, connect, socks in flows[cols].itertuples(index=False):
        port = int(port)
        # Syslog and SNMP traps never answer: a datagram sent there is evidence enough.
        ok = str(outcome) == "established" or (proto == "udp" and port in (162, 514))
        role = LISTENING.get((proto, port))
        if role is not None and (ok or port in (4118, 4120, 4122)):
            server_role, client_role = role
            note(server_role, sip, f"accepts {proto}/{port}", ok)
            if client_role:
                note(client_role, cip, f"connects to {proto}/{port}", ok)
            seen_ports[port] += 1
        if isinstance(connect, str) or isinstance(socks, str):
            key = f"{sip}:{port}"
            ev = proxies.setdefault(key, RoleEvidence())
            ev.flows += 1
            ev.established += int(ok)
            ev.reasons["CONNECT" if isinstance(connect, str) else "SOCKS"] += 1
    managers = set(roles.get("manager", {}))
    database = None
    for proto, cip, sip, port, outcome in flows[cols[:5]].itertuples(index=False):
        if proto == "tcp" and int(port) in DATABASE_PORTS and cip in managers:
            note("database", sip, f"manager connects to tcp/{port}", str(outcome) == "established")
            database = DATABASE_PORTS[int(port)]
    # Internet services are never inventory hosts.
    for table in roles.values():
        for addr in [a for a in table if not is_internal(a)]:
            del table[addr]
    if seen_ports[4120] and seen_ports[4118]:
        communication = "bidirectional"
    elif seen_ports[4118]:
        communication = "manager-initiated"
    else:
        communication = "agent-initiated"
    deployment = {
        "version": "11.0",
        "mode": "on-premises" if seen_ports[4120] or seen_ports[4118] else "as-a-service",
        "communication": communication,
        "heartbeat_interval": "10m",
        "updates": "relay" if roles.get("relay") else "direct",
    }
    notes = []
    if database:
        deployment["database"] = database
    elif deployment["mode"] == "on-premises":
        # The manager's database connection was not in the capture: say so rather than guess.
        deployment["database"] = "postgresql"
        notes.append(
            "no manager-to-database connection was seen: postgresql is a placeholder, set the "
            "real database (mssql, oracle, azure-sql) before trusting database findings"
        )
    notes += [
        "version cannot be read from traffic; 11.0 is assumed",
        "heartbeat_interval is the vendor default; set it to your policy's value",
    ]
    return InferredInventory(dict(roles), proxies, deployment, notes)
