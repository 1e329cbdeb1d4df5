"""The output formats of each command, in one light module the CLI imports at start-up."""

from __future__ import annotations

FLOW_FORMATS = ("table", "csv", "json", "jsonl", "parquet")
AUDIT_FORMATS = ("table", "markdown", "csv", "json", "html", "parquet")
REPORT_FORMATS = ("table", "markdown", "json", "html")
# Firewall dialects of `dsaudit audit --fix` (dsaudit.firewall.fixes writes them).
FIX_DIALECTS = ("nftables", "iptables", "ip6tables", "aws-sg", "azure-nsg")
