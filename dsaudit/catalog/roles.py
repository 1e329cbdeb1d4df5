"""The closed vocabularies of the catalog and inventory: roles, versions and field values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache

# The three Deep Security roles the vendor's port table has one section each for.
DS_ROLES: tuple[str, ...] = ("manager", "relay", "agent")

# Machines a Deep Security role talks to that are not Deep Security themselves.  api_client,
# web_server and deployment_tool are here because the seed names them as peers (SOAP/REST
# clients, the agent's connectivity-test web server, Chef/Puppet/Ansible/RightScale).
INFRA_ROLES: tuple[str, ...] = (
    "database",
    "dns",
    "ntp",
    "smtp",
    "syslog",
    "snmp",
    "ldap",
    "vcenter",
    "nsx",
    "esxi",
    "smart_protection_server",
    "control_manager",
    "web_browser",
    "api_client",
    "web_server",
    "deployment_tool",
    "proxy",
)

# A peer that is a service on the internet (Trend Micro's cloud services, cloud provider APIs,
# whois); it has no inventory entry: its addresses are whatever the host names resolve to.
INTERNET = "internet"

HOST_ROLES: tuple[str, ...] = DS_ROLES + INFRA_ROLES
PEER_ROLES: tuple[str, ...] = HOST_ROLES + (INTERNET,)

# The seed: "Relayには、すべてのAgentのポートと下記のポート番号が必要です" — a relay is an agent
# with a relay module, so every agent rule applies to a relay host as well.
IMPLIED_ROLES: Mapping[str, frozenset[str]] = {"relay": frozenset({"agent"})}

# Agent/manager versions the seed gives host names for ("11.0", "10.2および10.3", "10.1および10.0").
VERSIONS: tuple[str, ...] = ("10.0", "10.1", "10.2", "10.3", "11.0")

DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")
TRANSPORTS: tuple[str, ...] = ("tcp", "udp")
EXPECTATIONS: tuple[str, ...] = ("required", "conditional", "optional")
# "os" is the seed's "(OSで設定)": the port is whatever the operating system uses.
CONFIGURABLE: tuple[str, ...] = ("yes", "no", "os", "unknown")
PROXY: tuple[str, ...] = ("yes", "no", "socks", "os", "unknown")

MODES: tuple[str, ...] = ("on-premises", "as-a-service")
COMMUNICATIONS: tuple[str, ...] = ("bidirectional", "agent-initiated", "manager-initiated")
DATABASES: tuple[str, ...] = ("postgresql", "mssql", "oracle", "azure-sql")
UPDATES: tuple[str, ...] = ("relay", "direct")
# none: no SIEM; via-manager: the manager forwards events; direct: agents send their own events.
SIEM: tuple[str, ...] = ("none", "via-manager", "direct")

# Deployment facts a rule's `when` may test, each with the values it may name.
CONDITION_KEYS: Mapping[str, tuple[str, ...]] = {
    "mode": MODES,
    "communication": COMMUNICATIONS,
    "database": DATABASES,
    "updates": UPDATES,
    "versions": VERSIONS,
    "siem": SIEM,
    "proxy": ("true", "false"),
}


def with_implied(roles: set[str] | frozenset[str]) -> frozenset[str]:
    """The roles plus every role they imply (a relay is also an agent)."""
    out = set(roles)
    for role in roles:
        out |= IMPLIED_ROLES.get(role, frozenset())
    return frozenset(out)


@cache
def hosts_of_role(role: str) -> frozenset[str]:
    """The inventory roles whose hosts play `role` (agent: agents and relays)."""
    return frozenset({role} | {r for r, implied in IMPLIED_ROLES.items() if role in implied})


def hosts_of_roles(roles: Iterable[str]) -> frozenset[str]:
    """Roles whose hosts may stand at an end that names these roles."""
    out: set[str] = set()
    for role in roles:
        out |= hosts_of_role(role)
    return frozenset(out)
