"""Why frames were not decoded into flows: the kernel's WHY_* reasons and details as text."""

from __future__ import annotations

from collections import Counter

import numpy as np

from dsaudit.decode.packet_kernel import (
    C_WHY,
    C_WHY_DETAIL,
    D_DEPTH,
    D_ERR,
    D_ERSPAN,
    D_ETHERTYPE,
    D_FAMILY,
    D_GENEVE,
    D_GRE_ROUTING,
    D_GRE_TYPE,
    D_IP_PROTO,
    D_LINKTYPE,
    D_LLC,
    D_MPLS,
    D_PPP,
    D_UDP_PORT,
    ERR_NAMES,
    IP_PROTO_NAMES,
    LLC_NAMES,
    MAX_TUNNEL_DEPTH,
    NOT_IP_ETHERTYPES,
    PPP_NAMES,
    UDP_PORT_NAMES,
    UNSUPPORTED_ETHERTYPES,
    WHY_NAMES,
    WHY_NOT_IP,
    WHY_UNKNOWN_ETHERTYPE,
)

# The reasons in the order reports list them.
REASONS = list(WHY_NAMES.values())
NOT_IP = WHY_NAMES[WHY_NOT_IP]  # frames with no IP in them: ARP, STP, LLDP...
# Details named in the one-line warning of each reason; the rest are added up as "other".
MAX_DETAILS = 4


def _ppp(value: int) -> str:
    name = PPP_NAMES.get(value)
    return f"PPP {name}" if name else f"PPP protocol 0x{value:04x}"


def detail_text(why: int, detail: int) -> str:
    """What one C_WHY/C_WHY_DETAIL pair is about, as a short name."""
    space, value = detail >> 32, detail & 0xFFFFFFFF
    if why == WHY_UNKNOWN_ETHERTYPE:
        return f"0x{value:04x}"
    if space == D_ETHERTYPE:
        names = NOT_IP_ETHERTYPES if why == WHY_NOT_IP else UNSUPPORTED_ETHERTYPES
        return names.get(value, f"ethertype 0x{value:04x}")
    if space == D_LLC:
        return LLC_NAMES.get(value, "LLC")
    if space == D_PPP:
        return _ppp(value)
    if space == D_FAMILY:
        return f"address family {value}"
    if space == D_GRE_TYPE:
        return f"GRE type 0x{value:04x}"
    if space == D_GRE_ROUTING:
        return "GRE with source routing"
    if space == D_IP_PROTO:
        return IP_PROTO_NAMES.get(value, f"IP protocol {value}")
    if space == D_UDP_PORT:
        return UDP_PORT_NAMES.get(value, f"UDP port {value}")
    if space == D_MPLS:
        return "MPLS payload of unknown type"
    if space == D_DEPTH:
        return f"encapsulations nested deeper than {MAX_TUNNEL_DEPTH}"
    if space == D_LINKTYPE:
        return f"link type {value}"
    if space == D_GENEVE:
        return f"Geneve type 0x{value:04x}"
    if space == D_ERSPAN:
        return f"ERSPAN frame type {value}"
    if space == D_ERR:
        return ERR_NAMES.get(value, f"error {value}")
    return "other"


def count_reasons(rec: np.ndarray, into: dict[str, dict[str, int]]) -> None:
    """Add the frames of decoded records ``rec`` that stopped short to ``into`` by reason.

    Only the row where a frame's decoding stopped carries a reason, so rows count frames.
    """
    rows = np.flatnonzero(rec[:, C_WHY])
    if not len(rows):
        return
    # Counted in C by Counter: most batches stop a handful of frames (ARP), where numpy's
    # row-wise unique cost a quarter of a millisecond per call.
    whys, details = rec[rows, C_WHY].tolist(), rec[rows, C_WHY_DETAIL].tolist()
    pairs = Counter(zip(whys, details, strict=True))
    for (w, d), n in sorted(pairs.items()):
        add_reason(into, w, detail_text(w, d), n)


def add_reason(into: dict[str, dict[str, int]], why: int, detail: str, n: int = 1) -> None:
    """Count ``n`` frames not decoded for reason ``why`` (a WHY_* code) and ``detail``."""
    slot = into.setdefault(WHY_NAMES[why], {})
    slot[detail] = slot.get(detail, 0) + n


def merge_reasons(into: dict[str, dict[str, int]], other: dict[str, dict[str, int]]) -> None:
    """Add the counts ``other`` to ``into``."""
    for reason, details in other.items():
        slot = into.setdefault(reason, {})
        for k, v in details.items():
            slot[k] = slot.get(k, 0) + v


def ordered(reasons: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The counts in report order: reasons as REASONS lists them, details most frequent first."""
    out: dict[str, dict[str, int]] = {}
    for reason in REASONS:
        details = reasons.get(reason)
        if details:
            out[reason] = dict(sorted(details.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def summary(reasons: dict[str, dict[str, int]], frames: int) -> str | None:
    """One line: how many of ``frames`` were not decoded, by reason; None when all were."""
    reasons = ordered(reasons)
    total = sum(sum(d.values()) for d in reasons.values())
    if not total:
        return None
    parts = []
    for reason, details in reasons.items():
        items = list(details.items())
        shown = items[:MAX_DETAILS]
        rest = sum(n for _, n in items[MAX_DETAILS:])
        words = [f"{name} {n}" for name, n in shown]
        if rest:
            words.append(f"other {rest}")
        count = sum(details.values())
        inner = words[0].rsplit(" ", 1)[0] if len(words) == 1 else ", ".join(words)
        parts.append(f"{count} {reason} ({inner})")
    return f"{total} of {frames} frames not decoded: " + ", ".join(parts)
