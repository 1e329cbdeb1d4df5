"""Check rules files (the vendor catalog, or site files on top of it) and report every problem."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dsaudit.catalog import catalog_files, default_rules_dir, load_rule_files
from dsaudit.errors import CatalogError, Location


@dataclass(frozen=True)
class LintResult:
    """What linting found: problems in file/line order, and how much was read."""

    problems: tuple[tuple[Location, str], ...]
    rules: int
    files: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def lint(paths: Sequence[str | Path] = (), rules_dir: str | Path | None = None) -> LintResult:
    """Lint the vendor catalog (no paths), or the given files.

    A directory is linted as a catalog directory; a file inside the vendor catalog directory
    as a catalog file; any other file as a site file, checked against the vendor catalog so
    that its overrides and ids are checked too.
    """
    vendor_dir = Path(rules_dir) if rules_dir is not None else default_rules_dir()
    vendor: list[Path] = []
    site: list[Path] = []
    directories = False
    try:
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                vendor += catalog_files(path)
                directories = True
            elif _inside(path, vendor_dir):
                vendor.append(path)
            else:
                site.append(path)
        if not directories:
            named = {p.resolve() for p in vendor}
            vendor += [p for p in catalog_files(vendor_dir) if p.resolve() not in named]
    except CatalogError as exc:
        return LintResult(tuple(exc.problems), 0, tuple(str(p) for p in paths))
    catalog, problems = load_rule_files(vendor, site)
    return LintResult(tuple(problems.sorted()), len(catalog), catalog.files)


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True
