"""`dsaudit firewall` through the real CLI: formats, output file, errors as exit code 2."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsaudit.cli import cli, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "inventory.yaml")
FILES = ROOT / "tests" / "files"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["firewall", "--inventory", EXAMPLE, *args])
    return result.exit_code, result.stdout, result.stderr


def test_default_is_nftables_and_output_file(tmp_path: Path) -> None:
    code, out, _ = run()
    assert code == 0 and out.startswith("#!/usr/sbin/nft -f\n")
    target = tmp_path / "ds.nft"
    code, out, _ = run("--format", "nftables", "-o", str(target))
    assert code == 0 and out == ""
    assert target.read_text(encoding="utf-8").startswith("#!/usr/sbin/nft -f\n")


def test_csv_lists_every_allow_and_skips_go_to_stderr() -> None:
    code, out, err = run("--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    hb = next(r for r in rows if r["rule_ids"] == "manager.in.heartbeat-4120")
    assert (hb["client_role"], hb["server_role"], hb["transport"], hb["ports"]) == (
        "agent",
        "manager",
        "tcp",
        "4120",
    )
    assert hb["client"] == "10.20.0.30/32 10.20.1.0/24 2001:db8:21::/64"
    assert "dsaudit: not exported: manager.out.port-scan: opens every port" in err


def test_markdown_and_proxy_allowlist() -> None:
    code, out, _ = run("--format", "markdown")
    assert code == 0 and out.startswith("# Deep Security allow rules\n")
    assert "## Catalog rules not exported" in out
    code, out, _ = run("--format", "proxy-allowlist")
    names = [line.split()[0] for line in out.splitlines() if not line.startswith("#")]
    assert "ds110-en-f.trx.trendmicro.com" in names
    assert "ds102-en-f.trx.trendmicro.com" in names  # agents 10.3 are in the inventory
    assert "ds10-en.grid-gfr.trendmicro.com" not in names  # no 10.0/10.1 agents


def test_role_filter_for_aws_and_text_formats() -> None:
    code, out, _ = run("--format", "aws-sg", "--role", "database")
    assert code == 0
    assert json.loads(out) == [
        {
            "IpProtocol": "tcp",
            "FromPort": 5432,
            "ToPort": 5432,
            "IpRanges": [
                {
                    "CidrIp": "10.20.0.10/32",
                    "Description": "manager.out.postgresql-5432: Connection from the manager "
                    "application to its storage.",
                }
            ],
            "Ipv6Ranges": [],
        }
    ]
    code, out, _ = run("--format", "csv", "--role", "database")
    assert [r["rule_ids"] for r in csv.DictReader(io.StringIO(out))] == [
        "manager.out.postgresql-5432"
    ]


def test_site_override_reaches_the_export() -> None:
    code, out, _ = run("--format", "csv", "--site", str(FILES / "catalog" / "site-ok.yaml"))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["ports"] for r in rows if r["rule_ids"] == "manager.in.heartbeat-4120"} == {"14120"}
    assert any(r["rule_ids"] == "site.manager.out.backup-22" for r in rows)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--inventory", str(FILES / "inventory" / "broken.yaml")], "broken.yaml:2: "),
        (["--inventory", EXAMPLE, "--format", "aws-sg"], "give --role"),
        (
            ["--inventory", EXAMPLE, "--site", str(FILES / "catalog" / "broken-site.yaml")],
            "broken-site.yaml:10: ",
        ),
        (["--inventory", str(FILES / "no-such.yaml")], "no-such.yaml: no such file"),
    ],
)
def test_errors_are_one_message_and_exit_2(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["firewall", *args])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("dsaudit: error: ")
    assert expected in captured.err
    assert "Traceback" not in captured.err
