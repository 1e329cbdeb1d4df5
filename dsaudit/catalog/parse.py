"""Validate one rules file (vendor catalog or site file) and build its Rule objects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dsaudit.catalog import roles as V
from dsaudit.catalog.fields import MapReader, type_name
from dsaudit.catalog.hostnames import normalise_hostname
from dsaudit.catalog.schema import (
    RECURS_DEFAULT_S,
    RECURS_HEARTBEAT,
    Conditions,
    Hostname,
    HostnameSet,
    Note,
    PortRange,
    Ports,
    Rule,
)
from dsaudit.catalog.yaml_loader import Problems, YMap, YSeq, load_yaml
from dsaudit.durations import parse_duration
from dsaudit.errors import Location, brief

SCHEMA_VERSION = 1
FILE_KEYS = ("schema", "source", "rules", "overrides")
RULE_KEYS = (
    "id",
    "role",
    "direction",
    "transports",
    "ports",
    "service",
    "peer",
    "peer_en",
    "peer_ja",
    "hostnames",
    "urls",
    "purpose_ja",
    "purpose_en",
    "configurable",
    "proxy",
    "proxy_min_version",
    "expectation",
    "when",
    "recurs",
    "localhost_only",
    "counterparts",
    "notes",
    "ambiguous",
    "seed_marks",
)
RULE_REQUIRED = (
    "id",
    "role",
    "direction",
    "transports",
    "ports",
    "service",
    "peer",
    "purpose_en",
    "expectation",
)
NOTE_KINDS = ("seed", "ambiguity", "interpretation", "site")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")


@dataclass(frozen=True)
class Override:
    """A site's change to a catalog rule: new ports for a configurable port, a new
    recurrence, or both (None: left as the catalog has it)."""

    id: str
    ports: Ports | None
    recurs: int | str | None
    location: Location


@dataclass
class ParsedFile:
    """What one file contributed: its rules and its overrides."""

    path: str
    rules: list[Rule]
    overrides: list[Override]


def parse_file(path: str, problems: Problems, origin: str, text: str | None = None) -> ParsedFile:
    """Parse a rules file; problems are recorded, never raised, and bad rules are dropped."""
    parsed = ParsedFile(path, [], [])
    root = load_yaml(path, problems, text)
    if root is None:
        return parsed
    if not isinstance(root, YMap):
        problems.add(Location(path, 1), f"a rules file must be a mapping, not {type_name(root)}")
        return parsed
    top = MapReader(root, problems, "a rules file", FILE_KEYS, required=("schema",))
    schema = root.get("schema")
    if "schema" in root and (isinstance(schema, bool) or schema != SCHEMA_VERSION):
        top.error(top.loc("schema"), f"schema must be {SCHEMA_VERSION}; got {brief(schema)}")
    if "rules" not in root and "overrides" not in root:
        top.error(root.loc, "a rules file needs `rules`, `overrides` or both")
    for item, loc in top.seq("rules"):
        if not isinstance(item, YMap):
            problems.add(loc, f"each rule must be a mapping, not {type_name(item)}")
            continue
        rule = parse_rule(item, problems, origin)
        if rule is not None:
            parsed.rules.append(rule)
    for item, loc in top.seq("overrides"):
        if not isinstance(item, YMap):
            problems.add(loc, f"each override must be a mapping, not {type_name(item)}")
            continue
        override = _parse_override(item, problems)
        if override is not None:
            parsed.overrides.append(override)
    return parsed


def parse_rule(node: YMap, problems: Problems, origin: str) -> Rule | None:
    """Build one Rule, or return None after recording every problem found in it."""
    before = len(problems)
    r = MapReader(node, problems, "a rule", RULE_KEYS, RULE_REQUIRED)
    rule_id = r.text("id") or ""
    if rule_id and not _ID.match(rule_id):
        r.error(r.loc("id"), f"id {rule_id!r} must be dotted lower-case words (role.in.name)")
    role = r.choice("role", V.DS_ROLES) or ""
    direction = r.choice("direction", V.DIRECTIONS) or ""
    if rule_id and role and direction and _ID.match(rule_id):
        _check_id_prefix(r, rule_id, role, direction, origin)
    if origin == "catalog":
        # Vendor rules must keep the seed's own words so a reader can check the rendering.
        for key in ("purpose_ja", "peer_ja", "seed_marks"):
            if not r.has(key):
                r.error(node.loc, f"a catalog rule is missing {key!r} (the seed's text)")
    transports = r.words("transports", V.TRANSPORTS)
    if _empty(r.raw("transports")) and r.has("transports"):
        r.error(r.loc("transports"), "transports must name tcp, udp or both")
    ports = parse_ports(r.raw("ports"), r.loc("ports"), problems) if r.has("ports") else None
    peers = r.words("peer", V.PEER_ROLES)
    if _empty(r.raw("peer")) and r.has("peer"):
        r.error(r.loc("peer"), "peer must name at least one role")
    expectation = r.choice("expectation", V.EXPECTATIONS) or ""
    when = _parse_when(r)
    if expectation == "conditional" and not when:
        r.error(r.loc("expectation"), "a conditional rule needs a `when` saying on what")
    recurs = _parse_recurs(r)
    hostnames = _parse_hostnames(r)
    _check_hostname_versions(r, hostnames, when)
    notes = _parse_notes(r)
    ambiguous = r.flag("ambiguous")
    if ambiguous and not any(note.kind == "ambiguity" for note in notes):
        r.error(r.loc("ambiguous"), "an ambiguous rule needs a note of kind `ambiguity`")
    localhost_only = r.flag("localhost_only")
    seed_marks = r.raw("seed_marks")
    if seed_marks is not None and not isinstance(seed_marks, str):
        r.error(r.loc("seed_marks"), "seed_marks must be text (the seed's marks, maybe empty)")
        seed_marks = None
    proxy_min = r.raw("proxy_min_version")
    if proxy_min is not None:
        proxy_min = repr(proxy_min) if isinstance(proxy_min, float) else proxy_min
        if proxy_min not in V.VERSIONS:
            r.error(r.loc("proxy_min_version"), f"proxy_min_version {proxy_min!r} is unknown")
            proxy_min = None
    counterparts = _parse_ids(r, "counterparts")
    if rule_id in counterparts:
        r.error(r.loc("counterparts"), "a rule cannot be its own counterpart")
    texts = {key: r.text(key) or "" for key in ("service", "purpose_en", "purpose_ja")}
    texts |= {key: r.text(key) or "" for key in ("peer_en", "peer_ja")}
    urls = tuple(str(item) for item, _ in r.seq("urls", allow_scalar=True))
    configurable = r.choice("configurable", V.CONFIGURABLE, "unknown") or "unknown"
    proxy = r.choice("proxy", V.PROXY, "unknown") or "unknown"
    if len(problems) > before or ports is None:
        return None
    return Rule(
        id=rule_id,
        role=role,
        direction=direction,
        transports=transports,
        ports=ports,
        service=texts["service"],
        peers=peers,
        purpose_en=texts["purpose_en"],
        purpose_ja=texts["purpose_ja"],
        peer_en=texts["peer_en"],
        peer_ja=texts["peer_ja"],
        expectation=expectation,
        hostnames=hostnames,
        urls=urls,
        configurable=configurable,
        proxy=proxy,
        proxy_min_version=proxy_min,
        when=when,
        recurs=RECURS_DEFAULT_S if recurs is None else recurs,
        localhost_only=localhost_only,
        counterparts=counterparts,
        notes=notes,
        ambiguous=ambiguous,
        seed_marks=seed_marks,
        origin=origin,
        location=node.loc,
    )


def _empty(value: Any) -> bool:
    """An explicitly empty value: null, "" or []."""
    return value is None or value == "" or (isinstance(value, list) and not value)


def _check_id_prefix(r: MapReader, rule_id: str, role: str, direction: str, origin: str) -> None:
    if origin == "site":
        if not rule_id.startswith("site."):
            r.error(r.loc("id"), f"a site rule's id must start with 'site.' (got {rule_id!r})")
        return
    prefix = f"{role}.{'in' if direction == 'inbound' else 'out'}."
    if not rule_id.startswith(prefix):
        r.error(r.loc("id"), f"id {rule_id!r} must start with {prefix!r} (its role and direction)")


def parse_ports(value: Any, loc: Location, problems: Problems) -> Ports | None:
    """`any`, or a list of ports and [low, high] pairs; None after reporting what is wrong."""
    if value == "any":
        return Ports(any=True)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, YSeq | list) or not value:
        problems.add(loc, "ports must be `any` or a non-empty list of ports and [low, high] pairs")
        return None
    ranges: list[PortRange] = []
    ok = True
    for i, item in enumerate(value):
        item_loc = value.item_loc(i) if isinstance(value, YSeq) else loc
        pr = _port_item(item, item_loc, problems)
        if pr is None:
            ok = False
            continue
        clash = next((r for r in ranges if r.low <= pr.high and pr.low <= r.high), None)
        if clash is not None:
            problems.add(item_loc, f"port {pr} overlaps {clash} listed before it")
            ok = False
        ranges.append(pr)
    return Ports(tuple(ranges)) if ok else None


def _port_item(item: Any, loc: Location, problems: Problems) -> PortRange | None:
    if isinstance(item, int) and not isinstance(item, bool):
        low = high = item
    elif (
        isinstance(item, list)
        and len(item) == 2
        and all(isinstance(p, int) and not isinstance(p, bool) for p in item)
    ):
        low, high = item
    else:
        problems.add(loc, f"a port must be a number or a [low, high] pair, not {item!r}")
        return None
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        problems.add(loc, f"port {item!r} is outside 1-65535")
        return None
    if low > high:
        problems.add(loc, f"port range {item!r} runs backwards")
        return None
    return PortRange(low, high)


def _parse_recurs(r: MapReader) -> int | str | None:
    """`heartbeat` or a duration as seconds; None when absent or after reporting what is wrong."""
    if not r.has("recurs"):
        return None
    value = r.raw("recurs")
    if value == RECURS_HEARTBEAT:
        return RECURS_HEARTBEAT
    try:
        return parse_duration(value)
    except ValueError as exc:
        r.error(r.loc("recurs"), f"recurs must be `{RECURS_HEARTBEAT}` or a duration: {exc}")
        return None


def _parse_when(r: MapReader) -> Conditions:
    node = r.mapping("when")
    if node is None:
        return Conditions()
    cond = MapReader(node, r.problems, "when", V.CONDITION_KEYS)
    values = []
    for key, allowed in V.CONDITION_KEYS.items():
        if key in node:
            words = cond.words(key, allowed)
            if _empty(node[key]):
                cond.error(cond.loc(key), f"when.{key} must name at least one value")
            values.append((key, words))
    return Conditions(tuple(values))


def _parse_hostnames(r: MapReader) -> HostnameSet:
    entries: list[Hostname] = []
    for group, gloc in r.seq("hostnames"):
        if not isinstance(group, YMap):
            r.error(gloc, "each hostnames entry must be a mapping with `names` (and `versions`)")
            continue
        g = MapReader(group, r.problems, "a hostnames group", ("versions", "names", "example"))
        if "names" not in group:
            g.error(group.loc, "a hostnames group needs `names`")
        versions = g.words("versions", V.VERSIONS)
        example = g.flag("example")
        for text, loc in g.seq("names"):
            if not isinstance(text, str):
                g.error(loc, f"a host name must be text, not {type_name(text)}")
                continue
            try:
                name = normalise_hostname(text)
            except ValueError as exc:
                g.error(loc, f"host name {text!r}: {exc}")
                continue
            entries.append(Hostname(name, text, versions, example))
    return HostnameSet(tuple(entries))


def _check_hostname_versions(r: MapReader, hostnames: HostnameSet, when: Conditions) -> None:
    allowed = when.get("versions")
    if not allowed:
        return
    for entry in hostnames.entries:
        stray = [v for v in entry.versions if v not in allowed]
        if stray:
            r.error(r.loc("hostnames"), f"host names for {stray} but when.versions is {allowed}")
            return


def _parse_notes(r: MapReader) -> tuple[Note, ...]:
    notes: list[Note] = []
    for item, loc in r.seq("notes"):
        if isinstance(item, str) and item.strip():
            notes.append(Note("site", item))
            continue
        if not isinstance(item, YMap):
            r.error(loc, "a note must be text or a mapping with `en` (and `kind`, `ja`)")
            continue
        n = MapReader(item, r.problems, "a note", ("kind", "en", "ja"), ("en",))
        kind = n.choice("kind", NOTE_KINDS, "site") or "site"
        en = n.text("en")
        if en:
            notes.append(Note(kind, en, n.text("ja") or ""))
    return tuple(notes)


def _parse_ids(r: MapReader, key: str) -> tuple[str, ...]:
    out: list[str] = []
    for item, loc in r.seq(key, allow_scalar=True):
        if not isinstance(item, str) or not _ID.match(item):
            r.error(loc, f"{key}: {item!r} is not a rule id")
        else:
            out.append(item)
    return tuple(out)


def _parse_override(node: YMap, problems: Problems) -> Override | None:
    before = len(problems)
    o = MapReader(node, problems, "an override", ("id", "ports", "recurs"), ("id",))
    rule_id = o.text("id")
    if not o.has("ports") and not o.has("recurs"):
        o.error(node.loc, "an override needs `ports`, `recurs` or both")
    ports = parse_ports(o.raw("ports"), o.loc("ports"), problems) if o.has("ports") else None
    recurs = _parse_recurs(o)
    if len(problems) > before or rule_id is None:
        return None
    return Override(rule_id, ports, recurs, node.loc)
