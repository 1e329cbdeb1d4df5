"""The CLI keeps numpy's OpenBLAS from starting a spinning thread per core."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.processes import ROOT

PROBE = """
import {first}
import numpy
with open("/proc/self/status") as fh:
    print(next(line.split()[1] for line in fh if line.startswith("Threads:")))
"""


def _threads(first: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


def test_numpy_under_the_cli_runs_in_one_thread() -> None:
    assert _threads("dsaudit.cli") == 1
    # Without the CLI's setting, the same import starts OpenBLAS's pool on a multi-core
    # machine: the check above is not passing by accident.
    if (os.cpu_count() or 1) > 1:
        assert _threads("json") > 1
