"""The import contract: each stage imports only itself and lower stages, and packages form no cycle.

Every import counts, inside functions and under TYPE_CHECKING too: a lazy import is still a
dependency. The layers, lowest first, are the table below; a module belongs to the longest
prefix listed, and any other plain module directly under dsaudit/ is base.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, list[str]]] = [
    # Helpers with no stage (errors, durations, forked work, DataFrame rows, text) and any
    # other plain module directly under dsaudit/, such as a time-text helper.
    ("base", ["dsaudit", "dsaudit.text"]),
    ("sources", ["dsaudit.sources"]),
    ("decode", ["dsaudit.decode"]),
    ("flows", ["dsaudit.flows"]),
    ("naming", ["dsaudit.naming"]),
    ("flow_records", ["dsaudit.flow_records"]),
    ("catalog", ["dsaudit.catalog", "dsaudit.inventory"]),
    ("judge", ["dsaudit.judge"]),
    ("reports", ["dsaudit.reports", "dsaudit.firewall"]),
    ("runs", ["dsaudit.runs"]),
    ("commands", ["dsaudit.commands", "dsaudit.cli", "dsaudit.__main__"]),
]

# Imports that break the order on purpose, (importer, imported) -> why. None does.
ALLOWED: dict[tuple[str, str], str] = {}

# Cython modules import (and cimport) with plain statements a regular expression finds.
_PYX_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import|c?import\s+([\w.]+))", re.M)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module under dsaudit/ (Python and Cython sources) by dotted name."""
    found = {}
    for path in sorted((root / "dsaudit").rglob("*")):
        if path.suffix in (".py", ".pyx") and "__pycache__" not in path.parts:
            found[module_name(root, path)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in the file, wherever it is."""
    text = path.read_text()
    if path.suffix == ".pyx":
        for m in _PYX_IMPORT.finditer(text):
            yield m.group(1) or m.group(2), text.count("\n", 0, m.start()) + 1
        return
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                # `from package import module` depends on that module, not the package.
                full = f"{base}.{alias.name}"
                yield (full if full in known else base), node.lineno


def layer_of(
    name: str, package: bool, layers: list[tuple[str, list[str]]] = LAYERS
) -> tuple[int, str] | None:
    """(layer index, the unit that placed it: a listed prefix or a base module), or None for a
    module in no layer."""
    best: tuple[int, str] | None = None
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (index, prefix)
    if best is None or best[1] != "dsaudit" or name == "dsaudit":
        return best
    # Only plain modules directly under dsaudit/ are base; a package needs its own entry.
    if name.count(".") == 1 and not package:
        return 0, name
    return None


def check(root: Path, layers: list[tuple[str, list[str]]] = LAYERS) -> list[str]:
    """Every import from a lower layer to a higher one, every cycle between packages and every
    module no layer holds, one line each."""
    found = modules(root)
    known = set(found)
    problems: list[str] = []
    edges: dict[str, set[str]] = {}
    for name, path in found.items():
        placed = layer_of(name, path.name == "__init__.py", layers)
        if placed is None:
            problems.append(f"{name}: in no layer (add its package to LAYERS)")
            continue
        for target, line in imports(name, path, known):
            if target.split(".")[0] != "dsaudit":
                continue
            aim = layer_of(target, target in found and found[target].name == "__init__.py", layers)
            if aim is None:
                continue  # reported as a module of its own
            if placed[1] != aim[1]:
                edges.setdefault(placed[1], set()).add(aim[1])
            if aim[0] > placed[0] and (name, target) not in ALLOWED:
                problems.append(
                    f"{path.relative_to(root).as_posix()}:{line}: {name} ({layers[placed[0]][0]}) "
                    f"imports {target} ({layers[aim[0]][0]})"
                )
    problems += [f"cycle between packages: {' -> '.join(c)}" for c in _cycles(edges)]
    return problems


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return cycles


def test_every_stage_imports_only_itself_and_lower_stages() -> None:
    assert check(ROOT) == []


def test_the_allowlist_names_only_imports_that_exist() -> None:
    found = modules(ROOT)
    for (name, target), why in ALLOWED.items():
        assert why and name in found
        assert target in {t for t, _ in imports(name, found[name], set(found))}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # Down a layer and within one, lazily or not: allowed.
        (
            {
                "dsaudit/__init__.py": "",
                "dsaudit/errors.py": "",
                "dsaudit/decode/__init__.py": "",
                "dsaudit/decode/tls.py": "from dsaudit.errors import E\nfrom . import dns\n",
                "dsaudit/decode/dns.py": "",
                "dsaudit/naming/__init__.py": "",
                "dsaudit/naming/namer.py": "def f():\n    from dsaudit.decode import tls\n",
            },
            [],
        ),
        # Up a layer, lazily inside a function, and relatively.
        (
            {
                "dsaudit/__init__.py": "",
                "dsaudit/decode/__init__.py": "",
                "dsaudit/decode/tls.py": "def f():\n    from dsaudit.naming.namer import N\n",
                "dsaudit/decode/dns.py": "from ..naming import namer\n",
                "dsaudit/naming/__init__.py": "",
                "dsaudit/naming/namer.py": "",
            },
            [
                "dsaudit/decode/tls.py:2: dsaudit.decode.tls (decode) imports "
                "dsaudit.naming.namer (naming)",
                "dsaudit/decode/dns.py:1: dsaudit.decode.dns (decode) imports "
                "dsaudit.naming.namer (naming)",
            ],
        ),
        # A base module importing a stage; a compiled module cimporting up a layer.
        (
            {
                "dsaudit/__init__.py": "",
                "dsaudit/time_text.py": "from dsaudit.sources import batch\n",
                "dsaudit/sources/__init__.py": "",
                "dsaudit/sources/batch.py": "",
                "dsaudit/sources/walk.pyx": "from dsaudit.decode.k cimport X\n",
                "dsaudit/decode/__init__.py": "",
                "dsaudit/decode/k.pyx": "",
            },
            [
                "dsaudit/sources/walk.pyx:1: dsaudit.sources.walk (sources) imports "
                "dsaudit.decode.k (decode)",
                "dsaudit/time_text.py:1: dsaudit.time_text (base) imports "
                "dsaudit.sources.batch (sources)",
            ],
        ),
        # Two packages of one layer importing each other; a package in no layer.
        (
            {
                "dsaudit/__init__.py": "",
                "dsaudit/reports/__init__.py": "",
                "dsaudit/reports/a.py": "import dsaudit.firewall.b\n",
                "dsaudit/firewall/__init__.py": "",
                "dsaudit/firewall/b.py": "from dsaudit.reports import a\n",
                "dsaudit/extras/__init__.py": "",
                "dsaudit/extras/c.py": "",
            },
            [
                "dsaudit.extras: in no layer (add its package to LAYERS)",
                "dsaudit.extras.c: in no layer (add its package to LAYERS)",
                "cycle between packages: dsaudit.firewall -> dsaudit.reports -> dsaudit.firewall",
            ],
        ),
    ],
)
def test_the_check_finds_what_breaks_the_contract(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    assert sorted(check(_tree(tmp_path, files))) == sorted(expected)


# The compiled kernels' record layouts (packet record columns C_*, flow table columns F_*,
# history bits) are private to the stages that build flows; above them, flows are read
# through dsaudit.flows.rows.FlowRows and the flow records.
KERNEL_LAYOUTS = ("dsaudit.decode.packet_kernel", "dsaudit.flows.table_kernel")
SEE_RAW_LAYOUTS = ("dsaudit.decode", "dsaudit.flows", "dsaudit.naming", "dsaudit.flow_records")


def raw_layout_users(root: Path) -> list[str]:
    """Modules outside the flow-building stages that import a kernel's record layout."""
    found = modules(root)
    return [
        f"{name} imports {target}"
        for name, path in found.items()
        if not any(name == s or name.startswith(s + ".") for s in SEE_RAW_LAYOUTS)
        for target, _ in imports(name, path, set(found))
        if target in KERNEL_LAYOUTS
    ]


def test_only_the_flow_building_stages_see_raw_record_columns() -> None:
    assert raw_layout_users(ROOT) == []


def test_the_raw_layout_check_finds_a_report_reading_flow_columns(tmp_path: Path) -> None:
    tree = _tree(
        tmp_path,
        {
            "dsaudit/runs/live.py": "from dsaudit.flows.table_kernel import F_SEEN\n",
            "dsaudit/naming/namer.py": "from dsaudit.flows.table_kernel import F_PROTO\n",
        },
    )
    assert raw_layout_users(tree) == ["dsaudit.runs.live imports dsaudit.flows.table_kernel"]
