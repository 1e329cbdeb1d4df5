"""Golden tests: each bundled sample audited with its inventory, compared as canonical JSON.

Regenerate with `pytest tests/test_golden.py --update-golden` and review the diff: a
change here is a change in what dsaudit tells its users.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dsaudit.catalog import load_catalog
from dsaudit.flow_records.reading import read_captures
from dsaudit.inventory import load_inventory
from dsaudit.judge.findings import AuditResult
from dsaudit.runs.audit import AuditOptions, run_audit

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
GOLDEN = Path(__file__).parent / "golden"
CAPTURES = (
    sorted(
        p
        for p in SAMPLES.iterdir()
        if p.suffix in (".pcap", ".pcapng") and p.with_suffix(".inventory.yaml").exists()
    )
    if SAMPLES.is_dir()
    else []
)


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def canonical(result: AuditResult) -> dict[str, Any]:
    """What a golden file pins down: verdicts, findings, expectations and compliance."""
    s = result.summary
    flows = result.flows
    verdicts = Counter(
        (
            str(r.proto),
            str(r.client_ip),
            str(r.server_ip),
            int(r.server_port),
            str(r.verdict),
            str(r.rule) if isinstance(r.rule, str) else None,
            str(r.reason) if isinstance(r.reason, str) else None,
            str(r.match) if isinstance(r.match, str) else None,
            str(r.outcome),
        )
        for r in flows.itertuples()
    )
    return {
        "summary": {
            "flow_counts": s["flow_counts"],
            "finding_counts": s["finding_counts"],
            "compliant": s["compliant"],
            "exit_code": s["exit_code"],
            "vantage": {"kind": s["vantage"]["kind"], "host": s["vantage"]["host"]},
        },
        "findings": [
            {k: _clean(v) for k, v in row.items()}
            for row in result.findings[
                ["kind", "severity", "host", "role", "rule", "peer", "port", "count", "message"]
            ]
            .astype(object)
            .to_dict("records")
        ],
        "expectations": [
            {k: _clean(v) for k, v in row.items()}
            for row in result.expectations[["host", "role", "rule", "status", "flows"]]
            .astype(object)
            .to_dict("records")
        ],
        "compliance": [
            {k: _clean(v) for k, v in row.items()}
            for row in result.compliance.astype(object).to_dict("records")
        ],
        "verdicts": [
            dict(
                zip(
                    [
                        "proto",
                        "client",
                        "server",
                        "port",
                        "verdict",
                        "rule",
                        "reason",
                        "match",
                        "outcome",
                        "flows",
                    ],
                    (*key, n),
                    strict=True,
                )
            )
            for key, n in sorted(verdicts.items(), key=lambda kv: json.dumps(kv[0]))
        ],
    }


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_sample_matches_golden(capture: Path, update_golden: bool) -> None:
    inventory = load_inventory(capture.with_suffix(".inventory.yaml"))
    result = run_audit(read_captures([str(capture)]), load_catalog(), inventory, AuditOptions())
    got = json.dumps(canonical(result), indent=1, sort_keys=True) + "\n"
    golden = GOLDEN / f"{capture.stem}.json"
    if update_golden:
        golden.write_text(got)
    assert golden.exists(), f"no golden file for {capture.name}: run with --update-golden"
    assert got == golden.read_text()


def test_samples_exist() -> None:
    names = {p.name for p in CAPTURES}
    assert {"healthy.pcap", "problems.pcap", "manager-host.pcapng"} <= names
