"""Counters that tell how good a capture is, kept by whichever decoder read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from dsaudit.decode.undecoded import ordered, summary


@dataclass
class CaptureStats:
    """Counters that tell how good a capture is, for every report."""

    frames: int = 0
    ipv4: int = 0
    ipv6: int = 0
    arp: int = 0
    other_l2: int = 0
    undecodable: dict[str, int] = field(default_factory=dict)
    # Frames not decoded to their innermost packet: reason -> what it was about -> frames.
    not_decoded: dict[str, dict[str, int]] = field(default_factory=dict)
    snaplen_cut_frames: int = 0
    ip_truncated: int = 0
    tunnelled: int = 0
    fragments: int = 0
    reassembled: int = 0
    fragments_dropped: int = 0
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    payload_decode_failures: int = 0
    flows_evicted: int = 0
    evicted_top: list[dict[str, object]] = field(default_factory=list)
    dns_entries_evicted: int = 0
    reassembly_buffers_dropped: int = 0
    # Connections whose two directions came on different VLANs, each joined into one flow.
    vlan_joined_flows: int = 0

    @property
    def not_decoded_total(self) -> int:
        """Frames not decoded to their innermost packet, for every reason."""
        return sum(sum(d.values()) for d in self.not_decoded.values())

    def not_decoded_summary(self) -> str | None:
        """One line with the frames not decoded by reason, or None when every one was."""
        return summary(self.not_decoded, self.frames)

    def as_dict(self) -> dict[str, object]:
        """Plain values for JSON reports."""
        span = None
        if self.first_ts_ns is not None and self.last_ts_ns is not None:
            span = (self.last_ts_ns - self.first_ts_ns) / 1e9
        return {
            "frames": self.frames,
            "ipv4_packets": self.ipv4,
            "ipv6_packets": self.ipv6,
            "arp_frames": self.arp,
            "other_link_frames": self.other_l2,
            "undecodable": dict(self.undecodable),
            "undecodable_total": sum(self.undecodable.values()),
            "not_decoded": ordered(self.not_decoded),
            "not_decoded_total": self.not_decoded_total,
            "snaplen_cut_frames": self.snaplen_cut_frames,
            "ip_truncated_packets": self.ip_truncated,
            "tunnelled_packets": self.tunnelled,
            "ip_fragments": self.fragments,
            "datagrams_reassembled": self.reassembled,
            "fragments_dropped": self.fragments_dropped,
            "payload_decode_failures": self.payload_decode_failures,
            "flows_evicted": self.flows_evicted,
            "evicted_top": list(self.evicted_top),
            "dns_entries_evicted": self.dns_entries_evicted,
            "reassembly_buffers_dropped": self.reassembly_buffers_dropped,
            "vlan_joined_flows": self.vlan_joined_flows,
            "span_seconds": span,
        }
