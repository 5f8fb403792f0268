"""Sigma semantics engine: rules evaluated by pySigma's SQLite backend on in-memory SQLite.

As Zircolite does: every column is TEXT COLLATE NOCASE (Sigma compares strings without case)
and REGEXP is Python's re.search (Sigma regexes are case-sensitive unless they say (?i)).
The rule is converted with the target's field mapping only (no base search, no template), so
this engine checks the rule's logic and the mapping, independently of the KQL and SPL
backends. Correlations are evaluated here in Python over the base rules' SQLite matches.
"""
from __future__ import annotations

import copy
import re
import sqlite3
from functools import lru_cache

from sigma.backends.sqlite import sqliteBackend
from sigma.correlations import SigmaCorrelationType
from sigma.processing.pipeline import ProcessingPipeline

from dac.core import regex_budget
from dac.compile.correlation import DERIVED_FIELDS
from dac.compile.targets import Target


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _regexp(pattern: str, value) -> bool:
    return value is not None and regex_budget.search(_compiled(pattern), str(value)) is not None


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):          # multivalue: Sigma matches any value; rows keep one per line
        return "\n".join(str(v) for v in value)
    return str(value)


class SigmaEngine:
    def __init__(self):
        self._backends: dict[str, sqliteBackend] = {}
        # (target, id(rule)) -> (rule, its SQL): a rule is converted once per target, not once per log
        # file (the rule is kept so its id cannot be reused by another object)
        self._sql: dict[tuple[str, int], tuple[object, str]] = {}

    def _backend(self, target: Target) -> sqliteBackend:
        if target.name not in self._backends:
            mapping_only = {k: v for k, v in copy.deepcopy(target.pipeline_dict).items()
                            if k in ("name", "priority", "vars", "transformations")}
            self._backends[target.name] = sqliteBackend(ProcessingPipeline.from_dict(mapping_only))
        return self._backends[target.name]

    def sql(self, rule, target: Target) -> str:
        key = (target.name, id(rule))
        if key not in self._sql:
            self._sql[key] = (rule, self._backend(target).convert_rule(copy.deepcopy(rule))[0])
        return self._sql[key][1]

    def matches(self, rule, target: Target, rows: list[dict]) -> set[str]:
        """Keys (dac_key) of the rows the rule matches."""
        if not rows:
            return set()
        query = self.sql(rule, target)
        named = _named(query)
        present: set[str] = set()
        for row in rows:
            present.update(row)
        # a mapped field no row has is still a column (all NULL): real logs lack optional fields
        columns = sorted(((present | _mapped_fields(target)) & named) - {"dac_key"}) + ["dac_key"]
        con = sqlite3.connect(":memory:")
        try:
            con.execute("CREATE TABLE logs (" + ", ".join(f'"{c}" TEXT COLLATE NOCASE' for c in columns) + ")")
            # strings (nearly every cell) go in as they are; the rest through _text; a generator,
            # so the rows are not copied into a second list first
            con.executemany(f"INSERT INTO logs VALUES ({', '.join('?' * len(columns))})",
                            ([v if (v := row.get(c)) is None or type(v) is str else _text(v) for c in columns]
                             for row in rows))
            return _keys(con, query, rule)
        finally:
            con.close()

    def matches_store(self, rule, target: Target, store, where: str) -> set[str]:
        """Keys of the rows of a dac.replay.row_store.RowStore, within `where` (the rule's log-source
        scope), that the rule matches: the same SQL as `matches`, on a table built as it was read."""
        query = self.sql(rule, target)
        store.add_columns(sorted(_mapped_fields(target) & _named(query)))
        # SQLite resolves names without case: a name the rule spells `uid` is the store's first
        # spelling of it (auditd's raw field, not the enriched `UID` after it)
        return _keys(store.con, query.replace(" FROM logs", f" FROM {store.view(where)}", 1), rule)

    def correlation_groups(self, corr, base_hits: list[tuple[str, list[dict], dict[str, str]]]) -> set[tuple]:
        """Groups that satisfy a correlation. base_hits: (rule name, matched rows, field map) in rule order."""
        if corr.type in (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT):
            return _counted_groups(corr, base_hits)
        group_by = list(corr.group_by or [])
        events = []
        for order, (name, rows, field_map) in enumerate(base_hits):
            for row in rows:
                key = tuple(group_value(row, f, field_map) for f in group_by)
                if None not in key:
                    events.append((float(row["_time"]), order, name, key))
        events.sort()
        span = corr.timespan.seconds
        groups = set()
        if corr.type == SigmaCorrelationType.TEMPORAL_ORDERED:
            steps = len(base_hits)
            reached: dict[tuple, dict[int, float]] = {}   # group -> step -> start time of the chain
            for time, order, _, key in events:
                state = reached.setdefault(key, {})
                if order == 0:
                    state[0] = time
                elif order - 1 in state and time - state[order - 1] <= span:
                    state[order] = state[order - 1]
                if steps - 1 in state:
                    groups.add(key)
            return groups
        if corr.type == SigmaCorrelationType.TEMPORAL:
            for time, _, _, key in events:
                window = {n for t, _, n, k in events if k == key and time - span <= t <= time}
                if len(window) >= len(base_hits):
                    groups.add(key)
            return groups
        raise NotImplementedError(f"correlation type {corr.type} is not evaluated by the Sigma engine yet")


_COMPARE = {"lt": lambda a, b: a < b, "lte": lambda a, b: a <= b, "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b, "eq": lambda a, b: a == b, "neq": lambda a, b: a != b}


def _counted_groups(corr, base_hits) -> set[tuple]:
    """event_count / value_count over a sliding window ending at each event (as SPL's
    `streamstats time_window`): the groups whose count meets the condition at some event."""
    span, cond = corr.timespan.seconds, corr.condition
    by_group: dict[tuple, list[tuple[float, object]]] = {}
    for name, rows, field_map in base_hits:
        for row in rows:
            key = tuple(group_value(row, f, field_map) for f in corr.group_by or [])
            if None in key:
                continue
            value = group_value(row, cond.fieldref, field_map) if corr.type == SigmaCorrelationType.VALUE_COUNT else id(row)
            by_group.setdefault(key, []).append((float(row["_time"]), value))
    compare = _COMPARE[cond.op.name.lower()]
    groups = set()
    for key, timeline in by_group.items():
        timeline.sort(key=lambda e: e[0])
        for i, (time, _) in enumerate(timeline):
            window = [v for t, v in timeline[:i + 1] if time - span <= t]
            if compare(len({v for v in window if v is not None}), int(cond.count)):
                groups.add(key)
                break
    return groups


def _named(query: str) -> set[str]:
    """The identifiers a query names: only those columns are loaded (loading every column of a
    million rows costs more than evaluating the rule)."""
    unquoted = re.sub(r"'(?:[^']|'')*'", "", query)
    return set(re.findall(r"[A-Za-z_]\w*", unquoted)) | set(re.findall(r"`([^`]+)`", unquoted))   # `executable.path`


def _keys(con: sqlite3.Connection, query: str, rule) -> set[str]:
    con.create_function("regexp", 2, _regexp, deterministic=True)
    try:
        cursor = con.execute(query.replace("SELECT *", "SELECT dac_key", 1))
        return {r[0] for r in cursor.fetchall()}
    except sqlite3.OperationalError:
        # SQLite reports an exception in REGEXP as its own error: say which it was
        if regex_budget.tripped():
            source = getattr(getattr(rule, "source", None), "path", None)
            raise regex_budget.RegexBudgetExceeded(regex_budget.tripped(), regex_budget.limit() or 0,
                                                   f"rule {rule.title!r} ({source})" if source else
                                                   f"rule {rule.title!r}") from None
        raise


def _mapped_fields(target: Target) -> frozenset[str]:
    """Every log field the target's pipeline maps a Sigma field to."""
    found = set()
    for item in target.pipeline_dict.get("transformations", []):
        if item.get("type") == "field_name_mapping":
            for value in item.get("mapping", {}).values():
                found.update(value if isinstance(value, list) else [value])
    return frozenset(found)


def group_value(row: dict, field: str, field_map: dict[str, str]):
    if field in field_map:
        return _text(row.get(field_map[field]))
    if field in DERIVED_FIELDS:
        source, regex = DERIVED_FIELDS[field]
        match = re.search(regex, str(row.get(field_map.get(source, ""), "") or ""))
        return match.group(1) if match else None
    return None
