"""Reading a period: times, file selection, worker processes and a Dask cluster agree."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pandas as pd
import pytest

from dsaudit.errors import DsauditError
from dsaudit.runs.periodic import expand, parse_when, read_period, select_files, source_of
from tests.splitter import safe_cuts, split

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FILES = Path(__file__).resolve().parents[1] / "files" / "flowlogs"
NOW = dt.datetime(2026, 3, 3, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """problems.pcap as six gzipped rotated files."""
    src = SAMPLES / "problems.pcap"
    return split(src, safe_cuts(src, 5, 1), tmp_path_factory.mktemp("parts"), compress=True)


def _ts(text: str) -> int:
    return int(pd.Timestamp(text).value)


def test_times() -> None:
    assert parse_when("24h", NOW) == _ts("2026-03-02T12:00Z")
    assert parse_when("7d", NOW) == _ts("2026-02-24T12:00Z")
    assert parse_when("90m", NOW) == _ts("2026-03-03T10:30Z")
    assert parse_when("2026-03-02T09:15:00+01:00") == _ts("2026-03-02T08:15Z")
    with pytest.raises(DsauditError, match="cannot read the time"):
        parse_when("yesterday-ish")


def test_expand(tmp_path: Path) -> None:
    for name in ("b.pcap.gz", "a.pcap.gz", "sub/c.pcap"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [Path(p).name for p in expand([str(tmp_path / "*.gz")])] == ["a.pcap.gz", "b.pcap.gz"]
    assert len(expand([str(tmp_path), str(tmp_path / "a.pcap.gz")])) == 3
    assert len(expand([str(tmp_path / "**" / "*.pcap")])) == 1
    with pytest.raises(DsauditError, match="no file matches"):
        expand([str(tmp_path / "*.pcapng")])


def test_select_files_by_period(parts: list[Path]) -> None:
    names = [str(p) for p in reversed(parts)]  # any order in, time order out
    keep, skipped = select_files(names, None, None)
    assert keep == [str(p) for p in parts] and skipped == []
    # problems.pcap spans 09:00 to 09:30; the parts start at increasing times.
    keep, skipped = select_files(names, _ts("2026-03-02T09:20Z"), _ts("2026-03-02T09:22Z"))
    assert keep and skipped and len(keep) + len(skipped) == len(parts)
    assert set(keep) | set(skipped) == set(names)


def test_period_clips_flows(parts: list[Path]) -> None:
    since, until = _ts("2026-03-02T09:10Z"), _ts("2026-03-02T09:20Z")
    got = read_period([str(p) for p in parts], since=since, until=until)
    start = pd.DatetimeIndex(got.result.flows["start"]).asi8
    end = pd.DatetimeIndex(got.result.flows["end"]).asi8
    assert (end >= since).all() and (start <= until).all()
    assert got.result.stats.first_ts_ns == since
    assert got.period()["since"].startswith("2026-03-02T09:10:00")


def test_jobs_give_the_same_flows(parts: list[Path]) -> None:
    one = read_period([str(p) for p in parts], jobs=1).result
    two = read_period([str(p) for p in parts], jobs=2).result
    pd.testing.assert_frame_equal(one.flows, two.flows)
    assert one.stats == two.stats


def test_dask_cluster_gives_the_same_flows(parts: list[Path]) -> None:
    distributed = pytest.importorskip("distributed")
    local = read_period([str(p) for p in parts], jobs=1).result
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        remote = read_period([str(p) for p in parts], dask=cluster.scheduler_address).result
    pd.testing.assert_frame_equal(local.flows, remote.flows)
    assert local.stats == remote.stats


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_unreadable_file_is_left_out_of_the_period(
    parts: list[Path], tmp_path: Path, jobs: int
) -> None:
    # A broken file and the newest rotated file, still empty, beside readable ones.
    bad = tmp_path / "broken.pcap.gz"
    bad.write_bytes(gzip.compress(b"not a capture at all"))
    newest = tmp_path / "newest.pcap"
    newest.write_bytes(b"")
    whole = read_period([str(p) for p in parts], jobs=1).result
    read = read_period([*map(str, parts), str(bad), str(newest)], jobs=jobs)
    pd.testing.assert_frame_equal(read.result.flows, whole.flows)
    warnings = read.result.warnings
    assert any(w.startswith(f"{bad}: ") and "not a pcap or pcapng" in w for w in warnings)
    assert any(w.startswith(f"{newest}: ") and "empty file" in w for w in warnings)
    assert all(w.endswith("left out") for w in warnings[-2:])
    left_out = {c.path: c for c in read.result.captures if c.damaged}
    assert set(left_out) == {str(bad), str(newest)}
    assert all(c.packets == 0 for c in left_out.values())


def test_a_period_of_unreadable_files_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pcap.gz"
    bad.write_bytes(gzip.compress(b"not a capture at all"))
    with pytest.raises(DsauditError, match="not a pcap or pcapng"):
        read_period([str(bad)], source="pcap", jobs=2)


def test_sources_are_detected_and_not_mixed(parts: list[Path], tmp_path: Path) -> None:
    assert source_of([str(parts[0])], "auto") == "pcap"
    assert source_of([str(FILES / "conn.log")], "auto") == "zeek"
    assert source_of([str(FILES / "vpc-v5.log")], "auto") == "vpc"
    gz = tmp_path / "eve.json.gz"
    gz.write_bytes(gzip.compress((FILES / "eve.json").read_bytes()))
    assert source_of([str(gz)], "auto") == "suricata"
    with pytest.raises(DsauditError, match="mix sources"):
        source_of([str(parts[0]), str(FILES / "conn.log")], "auto")
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    with pytest.raises(DsauditError, match="not a capture"):
        source_of([str(other)], "auto")


def test_a_stray_file_beside_flow_logs_is_left_out(tmp_path: Path) -> None:
    stray = tmp_path / "conn.log.tmp"
    stray.write_bytes(b"\x00\x01 half-written")
    alone = read_period([str(FILES / "conn.log")]).result
    read = read_period([str(FILES / "conn.log"), str(stray)])
    assert read.source == "zeek"
    pd.testing.assert_frame_equal(read.result.flows, alone.flows)
    assert read.result.warnings[-1] == f"{stray}: not a zeek log: left out"
