"""Typed, located reads of YAML mapping fields that report problems instead of raising."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dsaudit.catalog.yaml_loader import Problems, YMap, YSeq
from dsaudit.errors import Location, brief

_MISSING = object()


def type_name(value: Any) -> str:
    """How a YAML value reads to a user ("a list", "a number", ...)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class MapReader:
    """Reads the fields of one YAML mapping; every misuse becomes a located problem."""

    def __init__(
        self,
        node: YMap,
        problems: Problems,
        what: str,
        allowed: Iterable[str],
        required: Iterable[str] = (),
    ) -> None:
        self.node = node
        self.problems = problems
        self.what = what
        allowed_set = set(allowed)
        for key in node:
            if key not in allowed_set:
                hint = ", ".join(sorted(allowed_set))
                self.error(node.key_loc(key), f"unknown key {brief(key)} in {what} (known: {hint})")
        for key in required:
            if key not in node:
                self.error(node.loc, f"{what} is missing {brief(key)}")

    def error(self, loc: Location, message: str) -> None:
        self.problems.add(loc, message)

    def has(self, key: str) -> bool:
        return key in self.node

    def loc(self, key: str) -> Location:
        return self.node.value_loc(key) if key in self.node else self.node.loc

    def raw(self, key: str) -> Any:
        return self.node.get(key)

    def text(self, key: str, default: str | None = None) -> str | None:
        """A non-empty string field (numbers are refused: ports and versions are not text)."""
        value = self.node.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.error(self.loc(key), f"{key} must be non-empty text, not {type_name(value)}")
            return default
        return value

    def choice(self, key: str, choices: Iterable[str], default: str | None = None) -> str | None:
        """A field that must be one of a closed set of words."""
        options = tuple(choices)
        value = self.node.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool):
            # YAML 1.1 reads a bare `no`/`yes` as a boolean; the vocabularies use those words.
            value = "yes" if value else "no"
        if not isinstance(value, str) or value not in options:
            self.error(
                self.loc(key), f"{key} must be one of {', '.join(options)}; got {brief(value)}"
            )
            return default
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.node.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            self.error(self.loc(key), f"{key} must be true or false, not {brief(value)}")
            return default
        return value

    def seq(self, key: str, *, allow_scalar: bool = False) -> list[tuple[Any, Location]]:
        """A list field as (item, location) pairs; one scalar may stand for a one-item list."""
        value = self.node.get(key, _MISSING)
        if value is _MISSING or value is None:
            return []
        if isinstance(value, YSeq):
            return [(item, value.item_loc(i)) for i, item in enumerate(value)]
        if allow_scalar and not isinstance(value, dict):
            return [(value, self.loc(key))]
        self.error(self.loc(key), f"{key} must be a list, not {type_name(value)}")
        return []

    def words(
        self, key: str, choices: Iterable[str], *, allow_scalar: bool = True
    ) -> tuple[str, ...]:
        """A list of words from a closed set (duplicates reported, order kept)."""
        options = tuple(choices)
        out: list[str] = []
        for item, loc in self.seq(key, allow_scalar=allow_scalar):
            word = str(item).lower() if isinstance(item, bool) else item
            if isinstance(item, float):
                word = repr(item)
            if not isinstance(word, str) or word not in options:
                self.error(loc, f"{key}: {brief(item)} is not one of {', '.join(options)}")
            elif word in out:
                self.error(loc, f"{key}: {brief(word)} is listed twice")
            else:
                out.append(word)
        return tuple(out)

    def mapping(self, key: str) -> YMap | None:
        value = self.node.get(key, _MISSING)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, YMap):
            self.error(self.loc(key), f"{key} must be a mapping, not {type_name(value)}")
            return None
        return value
