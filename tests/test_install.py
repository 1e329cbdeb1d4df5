"""A real install into a read-only location runs with no writable home: nothing is compiled
or cached at run time."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fresh_install() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fresh_install", ROOT / "scripts" / "fresh_install.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with dsaudit built and installed from this tree (offline)."""
    env_dir: Path = _fresh_install().install(tmp_path_factory.mktemp("install") / "venv")
    return env_dir


def _read_only_run(env_dir: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with its environment mounted read-only (as root) or
    made unwritable (otherwise), HOME unwritable, from a folder outside the work tree."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    home.chmod(0o555)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"), PYTHONDONTWRITEBYTECODE="")
    command = [str(env_dir / "bin" / "dsaudit"), *args]
    if os.geteuid() == 0:
        # Root ignores permission bits: a read-only bind mount in a private mount namespace.
        mounts = f"mount --bind -o ro {env_dir} {env_dir} && mount --bind -o ro {home} {home}"
        command = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh", *command]
    else:
        subprocess.run(["chmod", "-R", "a-w", str(env_dir)], check=True)
    try:
        return subprocess.run(
            command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
        )
    finally:
        if os.geteuid() != 0:
            subprocess.run(["chmod", "-R", "u+w", str(env_dir)], check=True)


def _files(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*")}


def test_installed_package_is_compiled_ahead_of_time(installed: Path) -> None:
    site = next(installed.glob("lib/python*/site-packages/dsaudit"))
    kernels = (
        "sources/record_walk",
        "decode/packet_kernel",
        "decode/dns_wire",
        "decode/tls_wire",
        "flows/table_kernel",
        "naming/name_state",
        "flow_records/name_columns",
        "reports/json_text",
    )
    for kernel in kernels:
        assert list(site.glob(f"{kernel}.*.so")), kernel
        assert not (site / f"{kernel}.py").exists()


def test_read_only_install_runs_flows_and_audit(installed: Path, tmp_path: Path) -> None:
    before = _files(installed)
    flows = _read_only_run(
        installed, tmp_path, "flows", str(ROOT / "samples/healthy.pcap"), "--format", "jsonl"
    )
    assert flows.returncode == 0, flows.stderr
    assert "Traceback" not in flows.stderr
    reference = subprocess.run(
        [sys.executable, "-m", "dsaudit", "flows", "samples/healthy.pcap", "--format", "jsonl"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert flows.stdout == reference.stdout and flows.stdout.count("\n") > 10

    audit = _read_only_run(
        installed,
        tmp_path,
        "audit",
        str(ROOT / "samples/problems.pcap"),
        "--inventory",
        str(ROOT / "samples/problems.inventory.yaml"),
        "--format",
        "json",
    )
    assert audit.returncode == 1, audit.stderr
    assert '"blocked_expected_flow"' in audit.stdout
    assert "Traceback" not in audit.stderr
    # Nothing was written into the installation (no cache, no compiled bytecode of ours).
    assert _files(installed) == before
