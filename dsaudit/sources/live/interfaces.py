"""The interfaces this machine can capture on, as the kernel lists them."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from dsaudit.errors import DsauditError
from dsaudit.text.safe import for_terminal

ARPHRD_NAMES = {
    1: "ethernet",
    772: "loopback",
    65534: "none (raw IP)",
    519: "raw IP",
    768: "ipip",
    769: "ip6ip6",
    776: "sit",
    778: "gre",
    823: "ip6gre",
    801: "wlan",
    803: "wlan (radiotap)",
    512: "ppp",
}


class UnknownInterfaceError(DsauditError):
    """No interface of that name on this machine."""

    def __init__(self, iface: str, known: list[InterfaceInfo]) -> None:
        listed = "; ".join(i.describe() for i in known) or "none found"
        super().__init__(
            f"there is no interface named '{for_terminal(iface)}'; the interfaces here are: "
            f"{listed}"
        )


@dataclass(frozen=True)
class InterfaceInfo:
    """A capture interface as the kernel describes it."""

    name: str
    index: int
    kind: str
    mac: str
    up: bool
    addresses: tuple[str, ...]

    def describe(self) -> str:
        """``name (addr, addr)`` for one-line messages."""
        name = for_terminal(self.name)
        return f"{name} ({', '.join(self.addresses)})" if self.addresses else name


def _sys(name: str, leaf: str) -> str:
    try:
        with open(f"/sys/class/net/{name}/{leaf}", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _addresses() -> dict[str, tuple[str, ...]]:
    """Addresses per interface, from scapy's rtnetlink view of the system (no privilege)."""
    try:
        import scapy.arch  # noqa: F401 - loads the Linux provider that fills conf.ifaces
        from scapy.config import conf

        conf.ifaces.reload()
        out: dict[str, tuple[str, ...]] = {}
        for name, iface in conf.ifaces.items():
            ips = getattr(iface, "ips", {}) or {}
            out[str(name)] = tuple(str(a) for v in (4, 6) for a in ips.get(v, []))
        return out
    except Exception:  # noqa: BLE001 - addresses are a courtesy; the names still list
        return {}


def list_interfaces() -> list[InterfaceInfo]:
    """Every network interface (from /sys/class/net) with its addresses, by name."""
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        names = sorted(name for _, name in socket.if_nameindex())
    addrs = _addresses()
    out: list[InterfaceInfo] = []
    for name in names:
        hatype = _sys(name, "type")
        kind = ARPHRD_NAMES.get(int(hatype), f"arphrd {hatype}") if hatype.isdigit() else "?"
        flags = _sys(name, "flags")
        up = bool(int(flags, 16) & 1) if flags.startswith("0x") else False
        index = _sys(name, "ifindex")
        out.append(
            InterfaceInfo(
                name=name,
                index=int(index) if index.isdigit() else 0,
                kind=kind,
                mac=_sys(name, "address"),
                up=up,
                addresses=addrs.get(name, ()),
            )
        )
    return out


def check_interface(iface: str) -> None:
    """Raise UnknownInterfaceError (listing the real ones) unless ``iface`` exists."""
    if iface == "any":
        return
    try:
        names = set(os.listdir("/sys/class/net"))
    except OSError:
        names = {name for _, name in socket.if_nameindex()}
    if iface not in names:
        raise UnknownInterfaceError(iface, list_interfaces())
