"""Which events each Sigma log source covers, read from sigma/datasources/event_scopes.yml, the one
declaration the replay, `dac validate` and the documentation share (the file says its grammar).

`EventScopes.tag(format, row)` sets row["dac_categories"], the log sources the event belongs to;
the replay selects a rule's events by it (dac.replay.scope). The one thing a declaration cannot say
in data, whether an open reads, is each reader's `opens_for_read(row)`."""
from __future__ import annotations

from dataclasses import dataclass

import yaml

from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from . import READERS

SCOPES_FILE = "sigma/datasources/event_scopes.yml"


@dataclass(frozen=True)
class Condition:
    field: str
    values: frozenset[str]             # casefolded
    negated: bool = False

    def holds(self, row: dict) -> bool:
        value = row.get(self.field)
        inside = value is not None and str(value).casefold() in self.values
        return inside != self.negated


@dataclass(frozen=True)
class SourceScope:
    """The events of one format that one log source covers."""
    conditions: tuple[Condition, ...]
    opens_for_read: bool = False

    def covers(self, row: dict, opens_for_read) -> bool:
        return all(c.holds(row) for c in self.conditions) and (not self.opens_for_read or opens_for_read(row))

    def declared_values(self) -> dict[str, list[str]]:
        return {c.field: sorted(c.values) for c in self.conditions}


class EventScopes:
    def __init__(self, scopes: dict[str, dict[str, SourceScope]]):
        self.scopes = scopes

    def sources(self, fmt: str) -> dict[str, SourceScope]:
        return self.scopes.get(fmt, {})

    def categories(self, fmt: str, row: dict) -> set[str]:
        opens_for_read = getattr(READERS.get(fmt), "opens_for_read", None)
        return {source for source, scope in self.sources(fmt).items() if scope.covers(row, opens_for_read)}

    def tag(self, fmt: str, row: dict) -> dict:
        row["dac_categories"] = self.categories(fmt, row)
        return row

    def tag_all(self, fmt: str, rows: list[dict]) -> None:
        for row in rows:
            if "dac_categories" not in row:
                self.tag(fmt, row)


def _values(raw, where: str, problems: list[Problem]) -> frozenset[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(v, (str, int)) for v in raw):
        problems.append(Problem(SCOPES_FILE, None, f"{where}: expected a non-empty list of values"))
        return frozenset()
    return frozenset(str(v).casefold() for v in raw)


def parse_scopes(data) -> EventScopes:
    problems: list[Problem] = []
    scopes: dict[str, dict[str, SourceScope]] = {}
    if not isinstance(data, dict):
        raise DacError([Problem(SCOPES_FILE, None, "expected a mapping of log format to log sources")])
    for fmt, sources in data.items():
        for source, spec in (sources or {}).items():
            where = f"{fmt}.{source}"
            spec = spec or {}
            conditions = []
            for key, raw in spec.items():
                if key == "opens_for_read":
                    continue
                if key == "not":
                    conditions += [Condition(f, _values(v, f"{where}.not.{f}", problems), True) for f, v in (raw or {}).items()]
                else:
                    conditions.append(Condition(key, _values(raw, f"{where}.{key}", problems)))
            scopes.setdefault(fmt, {})[source] = SourceScope(tuple(conditions), spec.get("opens_for_read") is True)
    if problems:
        raise DacError(problems)
    return EventScopes(scopes)


def load_scopes(layout: Layout) -> EventScopes:
    path = layout.root / SCOPES_FILE
    try:
        return parse_scopes(yaml.safe_load(path.read_text(encoding="utf-8")))
    except OSError as e:
        raise DacError([Problem(SCOPES_FILE, None, f"cannot read the event scopes: {e}")])
    except yaml.YAMLError as e:
        raise DacError([Problem(SCOPES_FILE, None, f"malformed YAML: {e}")])
