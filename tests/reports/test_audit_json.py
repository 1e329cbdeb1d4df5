"""The JSON audit document: shape, ISO times, nulls, and output independent of input order."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pandas as pd

from dsaudit.judge.findings import AuditResult
from dsaudit.reports.audit_json import DOCUMENT_KEYS, audit_to_dict
from dsaudit.reports.audit_output import write_audit
from tests.reports.audit_data import ANSI_NAME, SCRIPT_NAME, build_result, empty_result


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


def _shuffled(result: AuditResult, seed: int) -> AuditResult:
    """The same audit with every table's rows and the summary's keys in another order."""
    rng = random.Random(seed)

    def mix(df: pd.DataFrame) -> pd.DataFrame:
        order = list(range(len(df)))
        rng.shuffle(order)
        return df.iloc[order].reset_index(drop=True)

    keys = list(result.summary)
    rng.shuffle(keys)
    summary = {k: result.summary[k] for k in keys}
    return AuditResult(
        mix(result.flows),
        mix(result.findings),
        mix(result.expectations),
        mix(result.compliance),
        mix(result.heartbeats),
        summary,
    )


def test_document_shape() -> None:
    doc = audit_to_dict(build_result())
    assert tuple(doc) == DOCUMENT_KEYS
    assert doc["summary"]["exit_code"] == 1 and doc["summary"]["compliant"] is False
    flow = doc["flows"][3]
    assert flow["flow_id"] == 4
    assert flow["start"] == "2024-05-06T09:02:00.000000Z"
    assert (flow["verdict"], flow["blocked"], flow["rule"], flow["reason"]) == (
        "explained", True, "manager.in.heartbeat-4120", None,
    )  # fmt: skip
    assert flow["vlan"] is None and flow["dns_answers"] == []
    assert list(doc["findings"][0])[:6] == [
        "finding_id",
        "kind",
        "severity",
        "host",
        "role",
        "rule",
    ]
    first = doc["findings"][0]
    assert (first["kind"], first["flow_ids"], first["port"]) == (
        "blocked_expected_flow",
        [4, 5],
        4120,
    )
    missing = next(f for f in doc["findings"] if f["kind"] == "missing_expected_flow")
    assert missing["first_seen"] is None and missing["flow_ids"] == []
    assert [c["scope"] for c in doc["compliance"]] == ["role"] * 3 + ["host"] * 5
    beat = next(h for h in doc["heartbeats"] if h["agent"] == "app01")
    assert beat["median_interval_s"] is None and beat["times"] == []
    assert {e["status"] for e in doc["expectations"]} == {
        "observed", "blocked", "missing", "inconclusive", "not-visible",
    }  # fmt: skip


def test_rows_follow_the_documented_order() -> None:
    doc = audit_to_dict(build_result())
    assert [f["flow_id"] for f in doc["flows"]] == list(range(1, 16))
    severities = [f["severity"] for f in doc["findings"]]
    assert severities == ["critical", "high", "high"] + ["medium"] * 5 + ["info"]
    hosts = [(e["host"], e["rule"]) for e in doc["expectations"]]
    assert hosts == sorted(hosts)


def test_same_audit_in_any_order_gives_identical_bytes(tmp_path: Path) -> None:
    base = tmp_path / "a.json"
    write_audit(build_result(), "json", str(base))
    expected = base.read_bytes()
    for seed in range(3):
        other = tmp_path / f"b{seed}.json"
        write_audit(_shuffled(build_result(), seed), "json", str(other))
        assert other.read_bytes() == expected


def test_written_file_is_exactly_audit_to_dict(tmp_path: Path) -> None:
    for make in (build_result, empty_result):
        target = tmp_path / "audit.json"
        write_audit(make(), "json", str(target))
        text = target.read_text(encoding="utf-8")
        assert "NaN" not in text and "\x1b" not in text
        assert _canonical(json.loads(text)) == _canonical(audit_to_dict(make()))


def test_objects_inside_cells_have_sorted_keys_in_the_file(tmp_path: Path) -> None:
    target = tmp_path / "audit.json"
    write_audit(build_result(), "json", str(target))
    line = next(x for x in target.read_text(encoding="utf-8").splitlines() if '"flow_id":7,' in x)
    assert '"dns_answers":[{"data":"104.18.20.7","name":"iaus.trendmicro.com","ttl":300,' in line
    # The record itself keeps the table's column order.
    assert line.index('"flow_id"') < line.index('"proto"') < line.index('"verdict"')


def test_hostile_strings_are_kept_exactly() -> None:
    # JSON is data: it keeps names as captured (escaped by the JSON encoder, not rewritten).
    doc = audit_to_dict(build_result())
    names = {f["server_name"] for f in doc["flows"]}
    assert SCRIPT_NAME in names and ANSI_NAME in names


def test_empty_audit() -> None:
    doc = audit_to_dict(empty_result())
    assert all(doc[k] == [] for k in DOCUMENT_KEYS[1:])
    assert doc["summary"]["compliant"] is True


def _many_flows(copies: int) -> AuditResult:
    """The example audit with its flows repeated under new ids: enough rows for several
    rendering chunks."""
    result = build_result()
    flows = pd.concat([result.flows] * copies, ignore_index=True)
    flows["flow_id"] = range(len(flows))
    return AuditResult(
        flows,
        result.findings,
        result.expectations,
        result.compliance,
        result.heartbeats,
        result.summary,
    )


def test_jobs_render_the_same_bytes(tmp_path: Path) -> None:
    result = _many_flows(400)
    assert len(result.flows) > 4 * 1024  # several chunks for two jobs
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    write_audit(result, "json", str(one), jobs=1)
    write_audit(result, "json", str(two), jobs=2)
    assert two.read_bytes() == one.read_bytes()
    flows = json.loads(one.read_text(encoding="utf-8"))["flows"]
    assert [f["flow_id"] for f in flows] == list(range(len(result.flows)))


def test_slashes_are_written_bare(tmp_path: Path) -> None:
    target = tmp_path / "audit.json"
    write_audit(build_result(), "json", str(target))
    text = target.read_text(encoding="utf-8")
    assert "\\/" not in text
    # A flow's name holds "</script>": the slash is kept, and the text still parses to it.
    assert "</script>" in text
    assert SCRIPT_NAME in {f["server_name"] for f in json.loads(text)["flows"]}
