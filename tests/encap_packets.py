"""Frames of every encapsulation the decoder opens, built with scapy around a given packet."""

from __future__ import annotations

from collections.abc import Callable

from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

from tests.packets import MAC_A, MAC_B

OUTER4 = ("192.0.2.1", "192.0.2.2")
OUTER6 = ("2001:db8:ff::1", "2001:db8:ff::2")


def eth() -> Packet:
    return Ether(src=MAC_A, dst=MAC_B)


def o4() -> Packet:
    return IP(src=OUTER4[0], dst=OUTER4[1])


def o6() -> Packet:
    return IPv6(src=OUTER6[0], dst=OUTER6[1])


def _pppoe(p: Packet) -> Packet:
    return eth() / PPPoE(sessionid=7) / PPP(proto=0x0057 if isinstance(p, IPv6) else 0x0021) / p


def _mpls(p: Packet) -> Packet:
    return eth() / MPLS(label=16, s=0) / MPLS(label=17, s=1) / p


def _pw_eth() -> Packet:
    # Vendor MACs: tshark's pseudowire heuristic misreads locally administered ones.
    return Ether(src="00:1b:21:aa:bb:cc", dst="00:50:56:11:22:33")


def _mpls_pw(p: Packet) -> Packet:
    return eth() / MPLS(label=16, s=1) / _pw_eth() / p


def _mpls_pw_cw(p: Packet) -> Packet:
    # With the optional 4-byte control word (RFC 4448).
    return eth() / MPLS(label=16, s=1) / b"\x00\x00\x00\x00" / _pw_eth() / p


def _gre_keyed(p: Packet) -> Packet:
    gre = GRE(chksum_present=1, key_present=1, seqnum_present=1, key=5, sequence_number=9)
    return eth() / o4() / gre / p


# name -> (wraps an IP packet into an Ethernet frame, tunnel text of the inner flow or None
# when the encapsulation is opened in place, at the link layer)
WRAPS: dict[str, tuple[Callable[[Packet], Packet], str | None]] = {
    "pppoe": (_pppoe, None),
    "mpls": (_mpls, None),
    "mpls-pseudowire": (_mpls_pw, None),
    "mpls-pseudowire-cw": (_mpls_pw_cw, None),
    "gre-ip": (lambda p: eth() / o4() / GRE() / p, "gre 192.0.2.1 -> 192.0.2.2"),
    "gre-keyed": (_gre_keyed, "gre 192.0.2.1 -> 192.0.2.2"),
    "gre-over-ipv6": (lambda p: eth() / o6() / GRE() / p, "gre 2001:db8:ff::1 -> 2001:db8:ff::2"),
    "gre-bridged": (
        lambda p: eth() / o4() / GRE(proto=0x6558) / eth() / p,
        "gre 192.0.2.1 -> 192.0.2.2",
    ),
    "gre-mpls": (
        lambda p: eth() / o4() / GRE(proto=0x8847) / MPLS(label=20, s=1) / p,
        "gre 192.0.2.1 -> 192.0.2.2",
    ),
    "erspan-1": (
        lambda p: eth() / o4() / GRE(proto=0x88BE) / eth() / p,
        "erspan 192.0.2.1 -> 192.0.2.2",
    ),
    "erspan-2": (
        lambda p: (
            eth() / o4() / GRE(seqnum_present=1, proto=0x88BE) / ERSPAN_II(session_id=3) / eth() / p
        ),
        "erspan 192.0.2.1 -> 192.0.2.2",
    ),
    "erspan-3": (
        lambda p: eth() / o4() / GRE(proto=0x22EB) / ERSPAN_III(session_id=3) / eth() / p,
        "erspan 192.0.2.1 -> 192.0.2.2",
    ),
    "erspan-3-platform": (
        lambda p: (
            eth()
            / o4()
            / GRE(proto=0x22EB)
            / ERSPAN_III(session_id=3, o=1)
            / ERSPAN_PlatformSpecific()
            / eth()
            / p
        ),
        "erspan 192.0.2.1 -> 192.0.2.2",
    ),
    "ip-in-ip": (lambda p: eth() / o4() / p, None),  # ipip or 6in4 by the inner packet
    "ip-in-ipv6": (lambda p: eth() / o6() / p, None),  # 4in6 or 6in6
    "geneve-ethernet": (
        lambda p: eth() / o4() / UDP(sport=50000, dport=6081) / GENEVE(proto=0x6558) / eth() / p,
        "geneve 192.0.2.1 -> 192.0.2.2",
    ),
    "geneve-ip-options": (
        lambda p: (
            eth()
            / o4()
            / UDP(sport=50000, dport=6081)
            / GENEVE(
                proto=0x86DD if isinstance(p, IPv6) else 0x0800,
                optionlen=2,
                options=bytes(range(8)),
            )
            / p
        ),
        "geneve 192.0.2.1 -> 192.0.2.2",
    ),
    "vxlan": (
        lambda p: eth() / o4() / UDP(sport=50000, dport=4789) / VXLAN(vni=5) / eth() / p,
        "vxlan 192.0.2.1 -> 192.0.2.2",
    ),
}


def ip_in_ip_text(outer_v6: bool, inner_v6: bool) -> str:
    """The tunnel text of IP in IP, named by both families."""
    name = {(False, False): "ipip", (False, True): "6in4", (True, False): "4in6"}.get(
        (outer_v6, inner_v6), "6in6"
    )
    ends = OUTER6 if outer_v6 else OUTER4
    return f"{name} {ends[0]} -> {ends[1]}"


def tunnel_text(name: str, inner_v6: bool) -> str | None:
    """What the inner flow's ``tunnel_endpoints`` must say for encapsulation ``name``."""
    if name == "ip-in-ip":
        return ip_in_ip_text(False, inner_v6)
    if name == "ip-in-ipv6":
        return ip_in_ip_text(True, inner_v6)
    return WRAPS[name][1]
