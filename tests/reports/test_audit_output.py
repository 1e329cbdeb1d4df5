"""The audit report registry: formats, stdout versus files, and errors a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsaudit.errors import DsauditError
from dsaudit.reports.audit_output import AUDIT_FORMATS, WRITERS, write_audit
from tests.reports.audit_data import build_result


def test_every_format_has_a_writer() -> None:
    assert AUDIT_FORMATS == ("table", "markdown", "csv", "json", "html", "parquet")
    assert tuple(WRITERS) == AUDIT_FORMATS


@pytest.mark.parametrize("fmt", ["table", "markdown", "json", "html"])
def test_stdout_formats(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert write_audit(build_result(), fmt, None) == []
    out = capsys.readouterr().out
    assert out.endswith("\n") and "db01" in out


def test_json_to_stdout_parses(capsys: pytest.CaptureFixture[str]) -> None:
    write_audit(build_result(), "json", "-")
    assert json.loads(capsys.readouterr().out)["summary"]["exit_code"] == 1


def test_unknown_format_and_unwritable_output(tmp_path: Path) -> None:
    with pytest.raises(DsauditError, match="unknown report format 'xml'"):
        write_audit(build_result(), "xml", None)
    missing = tmp_path / "no" / "such" / "dir" / "audit.html"
    with pytest.raises(DsauditError, match="cannot write"):
        write_audit(build_result(), "html", str(missing))
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(DsauditError, match="cannot write"):
        write_audit(build_result(), "parquet", str(blocker / "sub") + "/")
