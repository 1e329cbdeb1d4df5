"""Heartbeats are labelled by their rule's direction, also when a manager is an agent too."""

from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from tests.processes import dsaudit_process

MANAGER = "10.20.0.10"  # the manager host runs an agent as well
AGENT = "10.20.1.11"
INVENTORY = f"""
deployment:
  version: "11.0"
  mode: on-premises
  communication: bidirectional
  database: postgresql
  heartbeat_interval: 10m
hosts:
  manager: [{MANAGER}]
  agent: [{MANAGER}, {AGENT}]
"""


def _conversation(client: str, server: str, sport: int, dport: int, start: float) -> list:  # type: ignore[type-arg]
    """A whole TCP conversation: handshake, a request and its answer, both FINs."""
    out, back = IP(src=client, dst=server), IP(src=server, dst=client)
    frames = [
        out / TCP(sport=sport, dport=dport, flags="S", seq=100),
        back / TCP(sport=dport, dport=sport, flags="SA", seq=500, ack=101),
        out / TCP(sport=sport, dport=dport, flags="A", seq=101, ack=501),
        out / TCP(sport=sport, dport=dport, flags="PA", seq=101, ack=501) / (b"\x16" * 40),
        back / TCP(sport=dport, dport=sport, flags="PA", seq=501, ack=141) / (b"\x16" * 60),
        out / TCP(sport=sport, dport=dport, flags="FA", seq=141, ack=561),
        back / TCP(sport=dport, dport=sport, flags="FA", seq=561, ack=142),
        out / TCP(sport=sport, dport=dport, flags="A", seq=142, ack=562),
    ]
    packets = []
    for i, frame in enumerate(frames):
        packet = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / frame
        packet.time = start + i * 0.01
        packets.append(packet)
    return packets


def test_manager_that_is_an_agent_heartbeats_are_labelled_by_rule(tmp_path: Path) -> None:
    t0 = 1_772_442_000.0
    packets = []
    for n in range(3):  # every 10 minutes, each way
        packets += _conversation(MANAGER, AGENT, 40000 + n, 4118, t0 + n * 600)
        packets += _conversation(AGENT, MANAGER, 41000 + n, 4120, t0 + 300 + n * 600)
    capture = tmp_path / "one-address.pcap"
    wrpcap(str(capture), packets)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    proc = dsaudit_process("audit", str(capture), "--inventory", str(inventory), "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    seen = {
        (h["agent"], h["direction"], h["port"], h["attempts"], h["established"])
        for h in json.loads(proc.stdout)["heartbeats"]
        if h["attempts"]
    }
    assert seen == {
        (AGENT, "manager->agent", 4118, 3, 3),
        (AGENT, "agent->manager", 4120, 3, 3),
    }
