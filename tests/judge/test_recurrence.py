"""A site's `recurs` override through the audit: a flow it expects less often is not missing."""

from __future__ import annotations

from pathlib import Path

from dsaudit.catalog import Catalog, load_catalog
from dsaudit.flow_records.reading import read_captures
from dsaudit.inventory import load_inventory
from dsaudit.judge.classify import classify_flows
from dsaudit.judge.expectations import Vantage, build_expectations
from dsaudit.runs.audit import AuditOptions, run_audit
from tests.flow_rows import flow, frame

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
UPDATES = "agent.out.updates-80-443"
INVENTORY = """
deployment:
  version: "11.0"
  mode: on-premises
  communication: bidirectional
  database: postgresql
  heartbeat_interval: 10m
  updates: direct
hosts:
  manager: [10.20.0.10]
  database: [10.20.0.20]
  agent: [10.20.1.11, 10.20.1.12]
"""
UPDATED, SILENT, CLOUD = "10.20.1.11", "10.20.1.12", "203.0.113.7"


def _site(tmp_path: Path, rule_id: str, recurs: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(f"schema: 1\noverrides:\n  - id: {rule_id}\n    recurs: {recurs}\n")
    return path


def _updates_status(catalog: Catalog) -> dict[str, tuple[str, str]]:
    """Status and detail of the update expectation per agent over a two-hour capture."""
    inventory = load_inventory("inv.yaml", text=INVENTORY)
    rows = [
        flow(
            client_ip=UPDATED,
            server_ip=CLOUD,
            server_port=443,
            server_name="iaus.activeupdate.trendmicro.com",
            at=3600.0,
        )
    ]
    flows = classify_flows(frame(rows), catalog, inventory)
    vantage = Vantage("span", None, "option", "--vantage span")
    table = build_expectations(flows, catalog, inventory, vantage, span_s=7200.0)
    mine = table[table["rule"] == UPDATES]
    return {str(r.host): (str(r.status), str(r.detail)) for r in mine.itertuples()}


def test_daily_updates_are_inconclusive_in_a_two_hour_capture(tmp_path: Path) -> None:
    before = _updates_status(load_catalog())
    assert before[UPDATED][0] == "observed"
    assert before[SILENT] == ("missing", "no attempt in 2 h, expected every 1 h")
    after = _updates_status(load_catalog([_site(tmp_path, UPDATES, "24h")]))
    assert after[UPDATED][0] == "observed"
    assert after[SILENT] == (
        "inconclusive",
        "the capture spans 2 h, less than the 24 h in which this flow recurs",
    )


def _sample_statuses(catalog: Catalog) -> dict[tuple[str, str], str]:
    inventory = load_inventory(SAMPLES / "problems.inventory.yaml")
    captured = read_captures([str(SAMPLES / "problems.pcap")])
    table = run_audit(captured, catalog, inventory, AuditOptions()).expectations
    return {(str(r.host), str(r.rule)): str(r.status) for r in table.itertuples()}


def test_sample_audit_follows_a_heartbeat_recurs_override(tmp_path: Path) -> None:
    # problems.pcap spans 30 minutes and 10.20.1.14 never heartbeats in it.
    silent = "10.20.1.14"
    before = _sample_statuses(load_catalog())
    assert before[(silent, "agent.in.heartbeat-4118")] == "missing"
    assert before[(silent, "manager.in.heartbeat-4120")] == "missing"
    after = _sample_statuses(load_catalog([_site(tmp_path, "agent.in.heartbeat-4118", "24h")]))
    assert after[(silent, "agent.in.heartbeat-4118")] == "inconclusive"
    # The agent-initiated heartbeat is another conversation and still every 10 minutes.
    assert after[(silent, "manager.in.heartbeat-4120")] == "missing"
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {(silent, "agent.in.heartbeat-4118")}
