"""Cross-file checks and site overrides: turns parsed files into one consistent rule list."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from dsaudit.catalog.parse import Override, ParsedFile
from dsaudit.catalog.roles import hosts_of_roles
from dsaudit.catalog.schema import Note, Rule, recurs_text
from dsaudit.catalog.yaml_loader import Problems
from dsaudit.errors import Location


def assemble(files: Iterable[ParsedFile], problems: Problems) -> list[Rule]:
    """All rules in file order, ids unique, overrides applied, counterparts consistent."""
    files = list(files)
    rules: dict[str, Rule] = {}
    for parsed in files:
        for rule in parsed.rules:
            first = rules.get(rule.id)
            if first is not None:
                problems.add(
                    _where(rule), f"duplicate rule id {rule.id!r} (first at {_where(first)})"
                )
                continue
            rules[rule.id] = rule
    seen_overrides: dict[str, Override] = {}
    for parsed in files:
        for override in parsed.overrides:
            earlier = seen_overrides.get(override.id)
            if earlier is not None:
                problems.add(
                    override.location,
                    f"{override.id!r} is already overridden at {earlier.location}",
                )
                continue
            seen_overrides[override.id] = override
            _apply_override(rules, override, problems)
    for rule in rules.values():
        _check_counterparts(rule, rules, problems)
    return list(rules.values())


def _where(rule: Rule) -> Location:
    return rule.location or Location("<unknown>")


def _apply_override(rules: dict[str, Rule], override: Override, problems: Problems) -> None:
    rule = rules.get(override.id)
    if rule is None:
        problems.add(override.location, f"override of unknown rule id {override.id!r}")
        return
    # How often a flow recurs is a site fact whatever the vendor says of the port, so only
    # a port change is refused here.
    if override.ports is not None and rule.configurable == "no":
        problems.add(
            override.location,
            f"the port of {rule.id!r} is not configurable (the vendor table marks it ×); "
            "add a site rule for the other port instead",
        )
        return
    where = override.location
    # The ends of one conversation must keep agreeing, so every rule linked to this one
    # through counterparts changes too (relay 4122 links three rules, not two).
    for rule_id in _conversation(rule.id, rules):
        target = rules.get(rule_id)
        if target is None:
            continue  # reported by the counterpart check
        changed = target
        if override.ports is not None:
            note = Note("site", f"ports {target.ports} overridden to {override.ports} at {where}")
            changed = dataclasses.replace(
                changed, ports=override.ports, notes=(*changed.notes, note)
            )
        if override.recurs is not None:
            before, after = recurs_text(target.recurs), recurs_text(override.recurs)
            note = Note("site", f"recurs {before} overridden to {after} at {where}")
            changed = dataclasses.replace(
                changed, recurs=override.recurs, notes=(*changed.notes, note)
            )
        rules[rule_id] = dataclasses.replace(changed, overridden_at=where)


def _conversation(rule_id: str, rules: dict[str, Rule]) -> list[str]:
    """The rule and every rule reachable from it through counterparts, the rule first."""
    found = [rule_id]
    for current in found:
        rule = rules.get(current)
        for other in rule.counterparts if rule else ():
            if other not in found:
                found.append(other)
    return found


def _check_counterparts(rule: Rule, rules: dict[str, Rule], problems: Problems) -> None:
    for other_id in rule.counterparts:
        other = rules.get(other_id)
        where = _where(rule)
        if other is None:
            problems.add(where, f"{rule.id}: counterpart {other_id!r} does not exist")
            continue
        if rule.id not in other.counterparts:
            problems.add(where, f"{rule.id}: counterpart {other_id!r} does not list it back")
        if other.direction == rule.direction:
            problems.add(where, f"{rule.id}: counterpart {other_id!r} has the same direction")
        if not (set(rule.client_roles) & hosts_of_roles(other.client_roles)) or not (
            set(rule.server_roles) & hosts_of_roles(other.server_roles)
        ):
            problems.add(
                where,
                f"{rule.id}: counterpart {other_id!r} is a different conversation "
                f"(clients {'/'.join(other.client_roles)}, servers {'/'.join(other.server_roles)})",
            )
        if rule.ports != other.ports or not set(rule.transports) & set(other.transports):
            problems.add(
                where,
                f"{rule.id}: counterpart {other_id!r} has other ports or transports "
                f"({other.ports} vs {rule.ports})",
            )
