"""The Deep Security port catalog: load the vendor rules (plus site files) into a Catalog."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from dsaudit.catalog.assemble import assemble
from dsaudit.catalog.parse import parse_file
from dsaudit.catalog.roles import DS_ROLES
from dsaudit.catalog.schema import (
    Catalog,
    Conditions,
    Hostname,
    HostnameSet,
    Note,
    PortRange,
    Ports,
    Rule,
)
from dsaudit.catalog.yaml_loader import Problems
from dsaudit.errors import CatalogError, Location

__all__ = [
    "Catalog",
    "Conditions",
    "Hostname",
    "HostnameSet",
    "Note",
    "PortRange",
    "Ports",
    "Rule",
    "catalog_files",
    "default_rules_dir",
    "load_catalog",
    "load_rule_files",
]

RULES_DIR_ENV = "DSAUDIT_RULES_DIR"


def default_rules_dir() -> Path:
    """Where the vendor catalog lives: $DSAUDIT_RULES_DIR, else rules/deep-security in the
    source tree this package sits in, else where a wheel installs it (<prefix>/share/dsaudit)."""
    configured = os.environ.get(RULES_DIR_ENV)
    if configured:
        return Path(configured)
    source = Path(__file__).resolve().parents[2] / "rules" / "deep-security"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "dsaudit" / "rules" / "deep-security"


def catalog_files(rules_dir: str | Path | None = None) -> list[Path]:
    """The vendor catalog's YAML files, in a stable order."""
    directory = Path(rules_dir) if rules_dir is not None else default_rules_dir()
    if not directory.is_dir():
        raise CatalogError(
            [(Location(str(directory)), f"catalog directory not found (set ${RULES_DIR_ENV})")]
        )
    # The seed's order (manager, relay, agent), then anything else a site keeps there.
    rank = {f"{role}.yaml": i for i, role in enumerate(DS_ROLES)}
    files = sorted(
        (p for p in directory.iterdir() if p.suffix in (".yaml", ".yml")),
        key=lambda p: (rank.get(p.name, len(rank)), p.name),
    )
    if not files:
        raise CatalogError([(Location(str(directory)), "no .yaml files in the catalog directory")])
    return files


def load_rule_files(
    vendor_files: Iterable[str | Path], site_files: Iterable[str | Path] = ()
) -> tuple[Catalog, Problems]:
    """Load and check the given files; returns the catalog built so far and all problems."""
    problems = Problems()
    vendor = [str(p) for p in vendor_files]
    site = [str(p) for p in site_files]
    parsed = [parse_file(p, problems, "catalog") for p in vendor]
    parsed += [parse_file(p, problems, "site") for p in site]
    rules = assemble(parsed, problems)
    return Catalog(rules, vendor + site), problems


def load_catalog(
    extra_paths: Iterable[str | Path] = (), rules_dir: str | Path | None = None
) -> Catalog:
    """The vendor catalog plus site files (rules and overrides); CatalogError lists every
    problem in every file with file:line."""
    catalog, problems = load_rule_files(catalog_files(rules_dir), extra_paths)
    if problems:
        raise CatalogError(problems.sorted())
    return catalog
