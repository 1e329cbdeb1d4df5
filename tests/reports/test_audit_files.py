"""CSV and Parquet audit output: layouts, formula neutralisation, read-back with dtypes."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from dsaudit.errors import DsauditError
from dsaudit.judge.findings import (
    COMPLIANCE_DTYPES,
    EXPECTATION_DTYPES,
    FINDING_DTYPES,
    HEARTBEAT_DTYPES,
    AuditResult,
)
from dsaudit.reports.audit_files import (
    PARQUET_TABLES,
    findings_csv_path,
    parquet_paths,
    read_parquet_summary,
    read_parquet_table,
)
from dsaudit.reports.audit_format import as_list
from dsaudit.reports.audit_output import write_audit
from dsaudit.text.safe import CSV_FORMULA_PREFIXES
from tests.reports.audit_data import AUDIT_DTYPES, FORMULA_NAME, build_result, empty_result

DTYPES = {
    "flows": AUDIT_DTYPES,
    "findings": FINDING_DTYPES,
    "compliance": COMPLIANCE_DTYPES,
    "expectations": EXPECTATION_DTYPES,
    "heartbeats": HEARTBEAT_DTYPES,
}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ CSV


def test_csv_file_gets_flows_and_findings_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "audit.csv"
    written = write_audit(build_result(), "csv", str(target))
    assert written == [str(target), str(tmp_path / "audit.findings.csv")]
    flows = _rows(target)
    assert [int(r["flow_id"]) for r in flows] == list(range(1, 16))
    assert list(flows[0])[:12] == [
        "flow_id", "start", "end", "proto", "client_ip", "client_port", "client_role",
        "server_ip", "server_port", "server_role", "server_name", "verdict",
    ]  # fmt: skip
    blocked = next(r for r in flows if r["flow_id"] == "4")
    assert (blocked["verdict"], blocked["blocked"], blocked["outcome"]) == (
        "explained", "True", "rejected",
    )  # fmt: skip
    assert blocked["start"] == "2024-05-06T09:02:00.000000Z"
    named = next(r for r in flows if r["flow_id"] == "7")
    assert named["dns_queries"] == "iaus.trendmicro.com"
    assert json.loads(named["dns_answers"])["data"] == "104.18.20.7"
    findings = _rows(tmp_path / "audit.findings.csv")
    assert [r["severity"] for r in findings][:3] == ["critical", "high", "high"]
    assert findings[0]["flow_ids"] == "4;5" and findings[0]["first_seen"].endswith("Z")


def test_every_text_cell_is_neutralised(tmp_path: Path) -> None:
    target = tmp_path / "audit.csv"
    write_audit(build_result(), "csv", str(target))
    for path in (target, tmp_path / "audit.findings.csv"):
        text = path.read_text(encoding="utf-8")
        assert "\x1b" not in text and "\u202e" not in text
        for row in csv.reader(io.StringIO(text)):
            for cell in row:
                # Counts, ports and times never start with a formula character; text does
                # only after the neutralising quote.
                assert not cell.startswith(CSV_FORMULA_PREFIXES), cell
    findings = _rows(tmp_path / "audit.findings.csv")
    assert "'" + FORMULA_NAME in [r["peer"] for r in findings]
    flows = _rows(target)
    assert "'" + FORMULA_NAME in [r["server_name"] for r in flows]


def test_csv_to_stdout_is_the_flows_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert write_audit(build_result(), "csv", None) == []
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 15 and "verdict" in rows[0]


def test_csv_of_an_empty_audit_has_headers(tmp_path: Path) -> None:
    write_audit(empty_result(), "csv", str(tmp_path / "x.csv"))
    header = (tmp_path / "x.findings.csv").read_text(encoding="utf-8").splitlines()
    assert header == [",".join(FINDING_DTYPES)]


def test_findings_csv_path() -> None:
    assert findings_csv_path("out/report.csv") == "out/report.findings.csv"
    assert findings_csv_path("report.CSV") == "report.findings.csv"
    assert findings_csv_path("report") == "report.findings.csv"


# ------------------------------------------------------------------ Parquet


def test_parquet_layouts(tmp_path: Path) -> None:
    directory = parquet_paths(str(tmp_path) + "/")
    assert directory["flows"] == str(tmp_path / "flows.parquet")
    assert directory["summary"] == str(tmp_path / "summary.json")
    stem = parquet_paths(str(tmp_path / "run1.parquet"))
    assert stem["findings"] == str(tmp_path / "run1.findings.parquet")
    assert parquet_paths(str(tmp_path / "run1"))["findings"] == stem["findings"]
    with pytest.raises(DsauditError, match="needs --output"):
        write_audit(build_result(), "parquet", None)


@pytest.mark.parametrize("make", [build_result, empty_result], ids=["full", "empty"])
def test_parquet_round_trip_keeps_dtypes_and_values(
    tmp_path: Path, make: Callable[[], AuditResult]
) -> None:
    result = make()
    written = write_audit(result, "parquet", str(tmp_path / "new") + "/")
    assert sorted(Path(p).name for p in written) == sorted(
        [f"{n}.parquet" for n in PARQUET_TABLES] + ["summary.json"]
    )
    for name in PARQUET_TABLES:
        path = str(tmp_path / "new" / f"{name}.parquet")
        back = read_parquet_table(path)
        original: pd.DataFrame = getattr(result, name)
        assert set(back.columns) == set(original.columns)
        for col, dtype in DTYPES[name].items():
            assert back[col].dtype == pd.Series(dtype=dtype).dtype, (name, col)
        if len(original):
            # Plain pandas gets the same dtypes when a table has rows.
            plain = pd.read_parquet(path)
            assert dict(plain.dtypes) == dict(back.dtypes)
    assert read_parquet_summary(str(tmp_path / "new" / "flows.parquet")) == json.loads(
        (tmp_path / "new" / "summary.json").read_text(encoding="utf-8")
    )


def test_parquet_lists_and_dicts_survive(tmp_path: Path) -> None:
    result = build_result()
    write_audit(result, "parquet", str(tmp_path / "run"))
    flows = read_parquet_table(str(tmp_path / "run.flows.parquet")).set_index("flow_id")
    # Parquet gives list cells back as numpy arrays, dict items as dicts.
    assert as_list(flows.at[7, "dns_answers"]) == [
        {"name": "iaus.trendmicro.com", "type": "A", "data": "104.18.20.7", "ttl": 300}
    ]
    assert as_list(flows.at[1, "dns_answers"]) == []
    assert as_list(flows.at[7, "dns_queries"]) == ["iaus.trendmicro.com"]
    findings = read_parquet_table(str(tmp_path / "run.findings.parquet")).set_index("finding_id")
    assert as_list(findings.at[1, "flow_ids"]) == [4, 5]
    assert as_list(findings.at[2, "flow_ids"]) == []
    beats = read_parquet_table(str(tmp_path / "run.heartbeats.parquet")).set_index("agent")
    assert as_list(beats.at["db01", "outcomes"]) == ["rejected", "unanswered", "rejected"]
    assert as_list(beats.at["db01", "times"])[0] == "2024-05-06T09:02:00.000000Z"
    assert read_parquet_summary(str(tmp_path / "run.findings.parquet"))["exit_code"] == 1
