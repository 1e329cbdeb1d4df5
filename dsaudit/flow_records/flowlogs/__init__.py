"""Flow sources for reports: captures, Zeek logs, AWS VPC flow logs and Suricata eve.json."""

from __future__ import annotations

from dsaudit.flow_records.flowlogs.common import FlowLogError, SourceResult, head_text
from dsaudit.flow_records.flowlogs.suricata import looks_like_eve, read_eve
from dsaudit.flow_records.flowlogs.vpc import looks_like_vpc, read_vpc
from dsaudit.flow_records.flowlogs.zeek import looks_like_zeek, read_zeek
from dsaudit.sources.capture_file import GZIP_MAGIC, PCAP_MAGICS, PCAPNG_SHB

SOURCES = ("pcap", "zeek", "vpc", "suricata")

__all__ = ["SOURCES", "FlowLogError", "SourceResult", "detect", "read_logs"]


def _is_capture(path: str) -> bool:
    import gzip

    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head[:2] == GZIP_MAGIC:
                fh.seek(0)
                with gzip.GzipFile(fileobj=fh) as gz:
                    head = gz.read(4)
    except (OSError, EOFError):
        return False
    return head in PCAP_MAGICS or head == PCAPNG_SHB


def detect(path: str) -> str | None:
    """Which source a file is, from its content (gzipped or not); None if none fits."""
    if _is_capture(path):
        return "pcap"
    head = head_text(path)
    if looks_like_zeek(head):
        return "zeek"
    if looks_like_eve(head):
        return "suricata"
    if looks_like_vpc(head):
        return "vpc"
    return None


def read_logs(kind: str, paths: list[str], vpc_fields: list[str] | None = None) -> SourceResult:
    """Flows from flow logs of one kind (all captures go through dsaudit.runs.periodic instead)."""
    if kind == "zeek":
        return read_zeek(paths)
    if kind == "vpc":
        return read_vpc(paths, vpc_fields)
    if kind == "suricata":
        return read_eve(paths)
    raise FlowLogError(", ".join(paths), None, f"not a flow-log source: {kind}")
