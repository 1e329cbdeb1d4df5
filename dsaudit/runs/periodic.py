"""Periodic reports: many captures or flow logs read as one period, in parallel, then joined."""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import pandas as pd

from dsaudit.decode.capture_stats import CaptureStats
from dsaudit.errors import DsauditError
from dsaudit.flow_records.builder import FlowOptions, FlowResult
from dsaudit.flow_records.flowlogs import SOURCES, detect, read_logs
from dsaudit.flow_records.frame import empty_flows
from dsaudit.flow_records.merge import merge_parts, prepare_part
from dsaudit.flow_records.parts import PartResult, epoch_ns, first_packet_ns, read_part
from dsaudit.sources.capture_file import left_out, refuse_if_all_left_out
from dsaudit.time_text import iso_ns

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PCAP_LIMITATIONS = [
    "Files are read in parallel and joined: a TLS ClientHello, HTTP request header or IP "
    "fragment split across two files of the rotation is not reassembled, so its flow may "
    "lack that name.",
]


@dataclass
class PeriodRead:
    """The flows of one reporting period and where they came from."""

    result: FlowResult
    source: str
    files: list[str]
    skipped: list[str] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    since: int | None = None
    until: int | None = None

    def period(self) -> dict[str, Any]:
        """The period as plain values for the report and the history."""
        stats = self.result.stats
        start = self.since if self.since is not None else stats.first_ts_ns
        end = self.until if self.until is not None else stats.last_ts_ns
        return {
            "source": self.source,
            "start": iso_ns(start),
            "end": iso_ns(end),
            "since": iso_ns(self.since),
            "until": iso_ns(self.until),
            "files": list(self.files),
            "skipped_files": list(self.skipped),
            "limitations": list(self.limitations),
        }


def parse_when(text: str, now: dt.datetime | None = None) -> int:
    """A time in ns: ISO-8601 (no zone: local time) or ``24h``/``7d``/``30m``/``2w`` ago."""
    now = now or dt.datetime.now(dt.UTC)
    m = _RELATIVE.match(text)
    if m:
        ago = dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
        return int(pd.Timestamp(now - ago).value)
    try:
        stamp = pd.Timestamp(text.strip())
    except (TypeError, ValueError):
        raise DsauditError(
            f"cannot read the time {text!r}: use ISO-8601 (2026-03-02T09:00) or 24h, 7d"
        ) from None
    if stamp.tzinfo is None:
        local = dt.datetime.now().astimezone().tzinfo
        stamp = stamp.tz_localize(local)
    return int(stamp.tz_convert("UTC").value)


def expand(patterns: Sequence[str]) -> list[str]:
    """Files named by paths, globs (``**`` too) and directories, each once, in name order."""
    found: dict[str, None] = {}
    for pattern in patterns:
        if os.path.isdir(pattern):
            hits = [
                os.path.join(root, name)
                for root, _, names in os.walk(pattern)
                for name in names
                if not name.startswith(".")
            ]
        elif glob.has_magic(pattern):
            hits = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        else:
            hits = [pattern]
        if not hits:
            raise DsauditError(f"{pattern}: no file matches")
        for hit in sorted(hits):
            found.setdefault(hit, None)
    return list(found)


def _read_one(path: str, options: FlowOptions) -> PartResult:
    """read_part for a worker, prepared for the merge there rather than in the parent. A file
    that cannot be read at all (the newest rotated file, still empty; a broken one) becomes an
    empty part that says why, so the rest of the period is still reported."""
    try:
        return prepare_part(read_part(path, options))
    except DsauditError as exc:
        return unreadable_part(path, str(exc))


def unreadable_part(path: str, message: str) -> PartResult:
    """A part with no flows for a file left out, the reason kept as damage and a warning."""
    info = left_out(path, message.removeprefix(f"{path}: "))
    return prepare_part(PartResult(flows=empty_flows(), captures=[info], stats=CaptureStats()))


@contextmanager
def _bar(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as live:
        task = live.add_task("reading captures", total=total)
        yield lambda: live.advance(task)


def read_parts(
    paths: Sequence[str],
    options: FlowOptions,
    jobs: int = 1,
    dask: str | None = None,
    progress: bool = False,
) -> list[PartResult]:
    """One PartResult per capture, in the order of ``paths``: in this process, in ``jobs``
    worker processes, or on the Dask cluster at ``dask`` (whose workers must see the files
    under the same paths)."""
    work = partial(_read_one, options=options)
    results: dict[int, PartResult] = {}
    if dask:
        return _on_dask(dask, work, paths, progress)
    if jobs <= 1 or len(paths) <= 1:
        with _bar(progress, len(paths)) as tick:
            out = []
            for p in paths:
                out.append(work(p))
                tick()
            return out
    with ProcessPoolExecutor(max_workers=min(jobs, len(paths))) as pool:
        # Submit before the progress bar starts its thread: workers fork at the first submit.
        pending = {pool.submit(work, p): i for i, p in enumerate(paths)}
        with _bar(progress, len(paths)) as tick:
            for fut in as_completed(pending):
                results[pending[fut]] = fut.result()
                tick()
    return [results[i] for i in range(len(paths))]


def _on_dask(
    address: str, work: Callable[[str], PartResult], paths: Sequence[str], progress: bool
) -> list[PartResult]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise DsauditError("--dask needs dask.distributed: pip install 'dsaudit[dask]'") from None
    try:
        client = Client(address, timeout=30)
    except (OSError, TimeoutError) as exc:
        raise DsauditError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    results: dict[int, PartResult] = {}
    with client, _bar(progress, len(paths)) as tick:
        futures = client.map(work, list(paths), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in dask_completed(futures):
            results[index[fut.key]] = fut.result()
            tick()
    return [results[i] for i in range(len(paths))]


def select_files(
    paths: Sequence[str], since: int | None, until: int | None
) -> tuple[list[str], list[str]]:
    """Captures in first-packet order, split into those the period needs and the rest.

    A rotated file runs until the next one starts, so a file is needed when that span meets
    the period. The file just before the period is read too: connections open when the
    period starts then keep the SYN that shows who opened them.
    """
    firsts = [(first_packet_ns(p), i, p) for i, p in enumerate(paths)]
    # Unreadable or empty files sort last and are kept: reading them reports the problem.
    ordered = sorted(firsts, key=lambda t: (t[0] is None, t[0] or 0, t[1]))
    keep: list[str] = []
    skipped: list[str] = []
    for n, (first, _, path) in enumerate(ordered):
        nxt = ordered[n + 1][0] if n + 1 < len(ordered) else None
        if first is None:
            keep.append(path)
        elif until is not None and first > until:
            skipped.append(path)
        elif since is not None and nxt is not None and nxt <= since:
            after = ordered[n + 2][0] if n + 2 < len(ordered) else None
            # Keep the last file that ends before the period, for its open connections.
            (keep if after is None or after > since else skipped).append(path)
        else:
            keep.append(path)
    return keep, skipped


def clip(result: FlowResult, since: int | None, until: int | None) -> FlowResult:
    """Flows that overlap the period; the stats' time span is the period's part of it."""
    if since is None and until is None:
        return result
    flows = result.flows
    mask = pd.Series(True, index=flows.index)
    if since is not None and len(flows):
        mask &= epoch_ns(flows["end"]) >= since
    if until is not None and len(flows):
        mask &= epoch_ns(flows["start"]) <= until
    kept = flows[mask.to_numpy()].reset_index(drop=True)
    kept["flow_id"] = range(len(kept))
    stats = replace(result.stats)
    if stats.first_ts_ns is not None and since is not None:
        stats.first_ts_ns = max(stats.first_ts_ns, since)
    if stats.last_ts_ns is not None and until is not None:
        stats.last_ts_ns = min(stats.last_ts_ns, until)
    return FlowResult(
        flows=kept.astype(flows.dtypes.to_dict()), captures=result.captures, stats=stats
    )


def outside_period(read: FlowResult, since: int | None, until: int | None) -> None:
    """Raise when what was read ends before the period or starts after it.

    The file just before the period is read for the connections still open when it begins,
    so the files read can all lie outside it: then nothing was seen in the period, and a
    report of it would call an unseen deployment compliant.
    """
    first, last = read.stats.first_ts_ns, read.stats.last_ts_ns
    if first is None or last is None:
        return
    if (since is not None and last < since) or (until is not None and first > until):
        raise DsauditError(
            f"no packet or flow falls in the period ({iso_ns(since) or 'the start'} to "
            f"{iso_ns(until) or 'now'}): what was read spans {iso_ns(first)} to {iso_ns(last)}"
        )


def source_of(paths: Sequence[str], source: str) -> str:
    """The one source kind of the files (``auto``: detected from each file's content)."""
    return _source_and_unknown(paths, source)[0]


def _source_and_unknown(paths: Sequence[str], source: str) -> tuple[str, list[str]]:
    """The source kind, and the files of no known kind that stand beside files of that kind
    (with ``auto``): the newest rotated file may still be empty, and one such file must not
    stop the report of all the others."""
    if source != "auto":
        if source not in SOURCES:
            raise DsauditError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
        return source, []
    kinds: dict[str, list[str]] = {}
    unknown: list[str] = []
    for p in paths:
        kind = detect(p)
        if kind is None:
            unknown.append(p)
        else:
            kinds.setdefault(kind, []).append(p)
    if unknown and not kinds:
        raise DsauditError(f"{unknown[0]}: not a capture, Zeek log, VPC flow log or eve.json")
    if len(kinds) > 1:
        detail = "; ".join(f"{k}: {v[0]}" for k, v in sorted(kinds.items()))
        raise DsauditError(f"the files mix sources ({detail}); report one source at a time")
    return (next(iter(kinds)) if kinds else "pcap"), unknown


def read_period(
    patterns: Sequence[str],
    source: str = "auto",
    since: int | None = None,
    until: int | None = None,
    jobs: int = 1,
    dask: str | None = None,
    options: FlowOptions | None = None,
    progress: bool = False,
    vpc_fields: list[str] | None = None,
) -> PeriodRead:
    """All flows of the period from the files ``patterns`` name."""
    options = options or FlowOptions()
    paths = expand(patterns)
    # Files of no known kind beside files of one kind are left out, each with a warning.
    kind, unknown = _source_and_unknown(paths, source)
    if kind == "pcap":
        # Without a period every file is needed: no need to open each one first.
        keep, skipped = select_files(paths, since, until) if since or until else (list(paths), [])
        if not keep:
            raise DsauditError(
                f"no file covers the period ({len(skipped)} file(s) outside it): nothing to report"
            )
        parts = read_parts(keep, options, jobs=jobs, dask=dask, progress=progress)
        refuse_if_all_left_out([c for p in parts for c in p.captures])
        order = sorted(range(len(parts)), key=lambda i: (parts[i].first_ts, i))
        merged = merge_parts([parts[i] for i in order], options.timeouts)
        files = [keep[i] for i in order]
        limits = list(PCAP_LIMITATIONS) if len(files) > 1 else []
    else:
        logs = [p for p in paths if p not in unknown]
        got = read_logs(kind, logs, vpc_fields)
        merged, files, skipped, limits = got.result, logs, [], got.limitations
        for path in unknown:
            merged.captures.append(left_out(path, f"not a {kind} log"))
    outside_period(merged, since, until)
    return PeriodRead(
        result=clip(merged, since, until),
        source=kind,
        files=files,
        skipped=skipped,
        limitations=limits,
        since=since,
        until=until,
    )
