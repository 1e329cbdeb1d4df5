"""A real install into a read-only location runs with no writable home: nothing is compiled
or cached at run time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with dsaudit built and installed from this tree (offline)."""
    base = tmp_path_factory.mktemp("install")
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    # The new environment sees the running one's packages (numpy, pandas, Cython...), which
    # may themselves live in a virtual environment, but not its editable dsaudit: a path
    # line in a .pth adds the folder without running the .pth files inside it.
    (site,) = env_dir.glob("lib/python*/site-packages")
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "running-env.pth").write_text("".join(f"{p}\n" for p in paths))
    build = base / "src"
    # A copy, so that the build writes nothing into the work tree.
    shutil.copytree(
        ROOT,
        build,
        ignore=shutil.ignore_patterns(".git", "*.so", "build", "*.egg-info", ".venv", "tests"),
    )
    proc = subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
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
    for kernel in ("sources/record_walk", "decode/packet_kernel", "flows/table_kernel"):
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
