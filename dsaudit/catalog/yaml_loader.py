"""Safe YAML loading that remembers the line of every key and value, for file:line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dsaudit.errors import Location

# libyaml's parser, where PyYAML was built with it, composes the catalog about ten times
# faster than the pure-Python one (most of a small audit's run time); its nodes carry the
# same line marks.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Problems:
    """Collects every problem in a data file so that the user sees all of them at once."""

    def __init__(self) -> None:
        self.items: list[tuple[Location, str]] = []

    def add(self, loc: Location, message: str) -> None:
        self.items.append((loc, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def sorted(self) -> list[tuple[Location, str]]:
        """Problems ordered by file and line, the order an editor walks them in."""
        return sorted(self.items, key=lambda item: (item[0].path, item[0].line or 0))


class YMap(dict[Any, Any]):
    """A YAML mapping that also knows where it, each key and each value start."""

    def __init__(self, loc: Location) -> None:
        super().__init__()
        self.loc = loc
        self.key_locs: dict[Any, Location] = {}
        self.value_locs: dict[Any, Location] = {}

    def key_loc(self, key: Any) -> Location:
        return self.key_locs.get(key, self.loc)

    def value_loc(self, key: Any) -> Location:
        return self.value_locs.get(key, self.key_loc(key))


class YSeq(list[Any]):
    """A YAML sequence that also knows where it and each item start."""

    def __init__(self, loc: Location) -> None:
        super().__init__()
        self.loc = loc
        self.item_locs: list[Location] = []

    def item_loc(self, index: int) -> Location:
        return self.item_locs[index] if index < len(self.item_locs) else self.loc


_PLAIN = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _loc(path: str, node: yaml.Node) -> Location:
    return Location(path, node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    """Turns a composed node tree into YMap/YSeq/scalars, reporting duplicate keys."""

    def __init__(self, path: str, problems: Problems) -> None:
        self.path = path
        self.problems = problems
        # Only scalars go through the constructor, so tags like !!python/object never load:
        # SafeLoader refuses them and we report that as a problem.
        self.constructor = yaml.SafeLoader("")
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()

    def convert(self, node: yaml.Node) -> Any:
        # Aliases share nodes: converting each node once keeps "billion laughs" documents
        # linear, and a node met again while still being converted is a recursive alias.
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.active:
            self.problems.add(_loc(self.path, node), "recursive YAML alias")
            return None
        self.active.add(key)
        try:
            value = self._convert(node)
        finally:
            self.active.discard(key)
        self.done[key] = value
        return value

    def _convert(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN:
            self.problems.add(_loc(self.path, node), f"unsupported YAML tag {node.tag}")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            seq = YSeq(_loc(self.path, node))
            for item in node.value:
                seq.item_locs.append(_loc(self.path, item))
                seq.append(self.convert(item))
            return seq
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problems.add(_loc(self.path, node), f"unsupported YAML value: {_first_line(exc)}")
            return None

    def _mapping(self, node: yaml.MappingNode) -> YMap:
        out = YMap(_loc(self.path, node))
        for key_node, value_node in node.value:
            key_loc = _loc(self.path, key_node)
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.add(key_loc, "YAML merge keys (<<) are not supported; write keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.add(key_loc, "mapping keys must be plain scalars")
                continue
            key = self.convert(key_node)
            if key in out:
                first = out.key_loc(key).line
                self.problems.add(key_loc, f"duplicate key {key!r} (first at line {first})")
                continue
            out.key_locs[key] = key_loc
            out.value_locs[key] = _loc(self.path, value_node)
            out[key] = self.convert(value_node)
        return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_yaml(path: str | Path, problems: Problems, text: str | None = None) -> Any:
    """Load one YAML document with locations; returns None (and records why) if it cannot."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            problems.add(Location(name), "no such file")
            return None
        except (OSError, UnicodeDecodeError) as exc:
            problems.add(Location(name), f"cannot read: {exc}")
            return None
    try:
        node = yaml.compose(text, Loader=_SAFE_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problems.add(Location(name, line), f"YAML syntax error: {exc.problem or exc.context}")
        return None
    except yaml.YAMLError as exc:
        problems.add(Location(name), f"YAML error: {_first_line(exc)}")
        return None
    if node is None:
        problems.add(Location(name, 1), "the file is empty")
        return None
    return _Converter(name, problems).convert(node)
