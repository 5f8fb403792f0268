"""`dac test`: every compiled query executed against the labelled sample logs in testdata/.

Three engines give a verdict per event: Sigma semantics (SQLite), the generated KQL
(duckdb-kql) and the generated SPL (compiled to DuckDB by dac.engines.spl.sql, with the Python reference
evaluator dac.engines.spl.engine run alongside: any difference in their rows is a failure). Each verdict is
compared with the label, and the three are compared with each other (a disagreement is a failure
of its own).
Correlation rules are compared per group (the group-by values) instead of per event.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from functools import cached_property

from dac.compile.compose import detection_label, hunting_members, hunting_specs, kql_hunting, spl_hunting
from dac.compile.convert import Query
from dac.compile.kql_analyzer import load_schemas
from dac.core.repo import Layout
from dac.engines.kql.engine import KqlEngine, KqlNotTestable
from dac.engines.sigma.engine import SigmaEngine, group_value
from dac.engines.spl.checked import CheckedSpl
from dac.engines.spl.parse import SplUnsupported
from dac.logs import SampleLog, read_log
from dac.logs.scopes import EventScopes, load_scopes
from dac.rules.ruleset import RuleSet
from .labels import LabelFile, kql_key, load_labels, spl_key
from .scope import rows_in_scope, scope_where
from .verdicts import ENGINES, Report, Verdicts, compare


def column_types(layout: Layout) -> dict[str, dict[str, str]]:
    """Defender table -> column -> Kusto type, from sentinel/schemas/."""
    return {table: dict(columns) for table, columns in load_schemas(layout.schemas).items()}


EVIDENCE_FIELDS = ("host",)


class _ListRows:
    """A log read whole: rule scope and matches over its list of rows."""

    def __init__(self, log: SampleLog, label: LabelFile, sigma: SigmaEngine):
        self.log, self.label, self.sigma = log, label, sigma

    def matches(self, query: Query, rule) -> set[str]:
        return self.sigma.matches(rule, query.target, rows_in_scope(query, self.log))

    def any(self, query: Query) -> bool:
        return bool(rows_in_scope(query, self.log))

    def rows(self, query: Query, keys: set, fields: tuple[str, ...] | None = None) -> list[dict]:
        return [r for r in rows_in_scope(query, self.log) if r["dac_key"] in keys]


class _StoredRows:
    """A streamed log (dac.replay.stream.StoredLog): the same over its SQLite row store."""

    def __init__(self, log, sigma: SigmaEngine):
        self.log, self.sigma = log, sigma

    def matches(self, query: Query, rule) -> set[str]:
        return self.sigma.matches_store(rule, query.target, self.log.store, self._where(query))

    def any(self, query: Query) -> bool:
        return self.log.store.any(self._where(query))

    def rows(self, query: Query, keys: set, fields: tuple[str, ...] | None = None) -> list[dict]:
        return self.log.store.rows(keys, self._where(query), fields)

    def _where(self, query: Query) -> str:
        where = scope_where(query, self.log.format)
        if self.log.format == "mde":
            self.log.store.add_columns(["dac_table"])    # a file may have none
        return where


class Replayer:
    def __init__(self, layout: Layout, queries: list[Query], ruleset: RuleSet, now: datetime | None = None,
                 spl_reference: bool = True):
        self.layout = layout
        self.spl_reference = spl_reference
        self.queries = queries
        self.ruleset = ruleset
        self.sigma = SigmaEngine()
        self.scopes: EventScopes = load_scopes(layout)
        self.now = now or datetime(2026, 11, 23, tzinfo=timezone.utc)
        self._kql: KqlEngine | None = None
        self._spl_sessions: list[CheckedSpl] = []

    def spl(self, events: list[dict]) -> CheckedSpl:
        """The SPL engine over these events; its comparisons with the reference are kept."""
        session = CheckedSpl(events, self.now, reference=self.spl_reference)
        self._spl_sessions.append(session)
        return session

    @property
    def spl_differences(self) -> list[str]:
        return [d for s in self._spl_sessions for d in s.differences]

    @property
    def spl_compared(self) -> int:
        return sum(s.compared for s in self._spl_sessions)

    @property
    def kql(self) -> KqlEngine:
        if self._kql is None:
            self._kql = KqlEngine(load_schemas(self.layout.schemas), self.now.replace(tzinfo=None))
        return self._kql

    @cached_property
    def schemas(self) -> dict[str, dict[str, str]]:
        """Column types per Defender table (the mde reader types CSV and streamed values by them)."""
        return column_types(self.layout)

    def run_log(self, label: LabelFile, log: SampleLog, queries: list[Query]) -> list[Verdicts]:
        """Verdicts of every query of the log's format. `log` is a SampleLog (read whole) or a
        dac.replay.stream.StoredLog (streamed: rows in SQLite, SPL index and KQL tables loaded)."""
        results = []
        stored = hasattr(log, "store")
        if not stored:
            self.scopes.tag_all(log.format, log.rows)    # a streamed log is tagged as it is stored
        source = _StoredRows(log, self.sigma) if stored else _ListRows(log, label, self.sigma)
        if stored:
            spl = log.spl            # None for Defender input, which has no Splunk events
            if spl is not None:
                self._spl_sessions.append(spl)
        else:
            spl = self.spl(log.splunk_events)
        if log.format == "mde" and not stored:
            # only this file's rows, so a query never sees another file's events
            for table in self.kql.tables:
                self.kql.load(table, [r for r in log.rows if r["dac_table"] == table])
        for q in queries:
            if q.target.format != log.format:
                continue
            rule_id = str(q.rule.rule.id)
            if q.rule.is_correlation:
                results.append(self._run_correlation(q, label, source, spl))
                continue
            expected = {k for k, ids in label.events.items() if rule_id in ids}
            v = Verdicts(q.rule.name, rule_id, q.target.name, label.path, expected, {e: None for e in ENGINES})
            v.engines["sigma"] = source.matches(q, q.rule.rule)
            if q.target.language == "kql":
                try:
                    v.engines["kql"] = {kql_key(r) for r in self.kql.run(q.text)} if source.any(q) else set()
                except KqlNotTestable as e:
                    v.not_testable["kql"] = str(e)
            else:
                try:
                    rows = spl.run(q.text, f"{label.path}: rule {q.rule.name} on {q.target.name}")
                    v.engines["spl"] = {spl_key(log.format, r) for r in rows}
                except SplUnsupported as e:
                    v.not_testable["spl"] = str(e)
            # evidence: which event, where (a streamed file's rows give only these fields back)
            by_key = {r["dac_key"]: r for r in source.rows(q, v.hits, EVIDENCE_FIELDS)}
            v.evidence = {k: [by_key[k]] for k in v.hits if k in by_key}
            results.append(v)
        return results

    def _run_correlation(self, q: Query, label: LabelFile, source: "_ListRows | _StoredRows", spl: CheckedSpl) -> Verdicts:
        corr = q.rule.rule
        group_by = list(corr.group_by or [])
        expected = {tuple(str(g.get(f)) for f in group_by) for g in label.correlations.get(str(corr.id), [])}
        v = Verdicts(q.rule.name, str(corr.id), q.target.name, label.path, expected, {e: None for e in ENGINES})
        base = []
        for ref in corr.rules:
            base_item = self.ruleset.by_name(ref.reference)
            scope = q.target.scope(base_item.rule)
            fake = Query(base_item, q.target, "", scope)
            keys = source.matches(fake, base_item.rule)
            base.append((base_item.name, source.rows(fake, keys), scope.field_map))
        v.engines["sigma"] = self.sigma.correlation_groups(corr, base)
        members: dict[tuple, list[tuple[float, int, dict]]] = {}
        for order, (name, rows, field_map) in enumerate(base):
            for row in rows:
                group = tuple(str(group_value(row, f, field_map)) for f in group_by)
                members.setdefault(group, []).append((float(row["_time"]), order, row))
        v.evidence = {g: _participants(events, len(base), corr.timespan.seconds) for g, events in members.items()}
        try:
            if q.target.language == "kql":
                rows = self.kql.run(q.text)
            else:
                rows = spl.run(q.text, f"{label.path}: rule {q.rule.name} on {q.target.name}")
            v.engines[q.target.language] = {tuple(str(r.get(f)) for f in group_by) for r in rows}
        except (KqlNotTestable, SplUnsupported) as e:
            v.not_testable[q.target.language] = str(e)
        v.evidence = {g: rows for g, rows in v.evidence.items() if g in v.hits}
        return v


def _participants(events: list[tuple[float, int, dict]], rules: int, span: float) -> list[dict]:
    """The events of a group that lie in some window of `span` seconds holding every base rule:
    the events a correlation hit is made of (not every event the group ever had)."""
    events = sorted(events, key=lambda e: (e[0], e[1]))
    inside = set()
    for i, (start, _, _) in enumerate(events):
        window = [j for j in range(i, len(events)) if events[j][0] - start <= span]
        if len({events[j][1] for j in window}) == rules:
            inside.update(window)
    return [events[j][2] for j in sorted(inside)]


def _epoch(value) -> float:
    if isinstance(value, datetime):
        return round((value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp(), 3)
    if isinstance(value, str):
        return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp(), 3)
    return round(float(value), 3)


def check_hunting(replayer: Replayer, queries: list[Query], config: dict, logs: list[tuple[LabelFile, SampleLog]]) -> list[str]:
    """Run the composed hunting queries over all labelled logs at once and compare their rows,
    as (detection, event time) pairs, with the labelled events of every member rule."""
    failures = []
    for spec in hunting_specs(config, "sigma/targets.yml"):
        for language in ("kql", "spl"):
            text = (kql_hunting if language == "kql" else spl_hunting)(queries, spec)
            if not text:
                continue
            members = hunting_members(queries, spec, language)
            expected: Counter = Counter()
            for q in members:
                for label, log in logs:
                    if label.format != q.target.format:
                        continue
                    name = detection_label(q, members) if language == "kql" else q.rule.name
                    rid = str(q.rule.rule.id)
                    for row in log.rows:
                        if log.format == "mde" and row["dac_table"] != q.scope.state.get("source"):
                            continue
                        if rid in label.events.get(row["dac_key"], []):
                            expected[(name, q.target.name if language == "spl" else "", _epoch(row["_time"]))] += 1
            try:
                if language == "kql":
                    for table in replayer.kql.tables:
                        replayer.kql.load(table, [r for _, log in logs if log.format == "mde" for r in log.rows
                                                  if r["dac_table"] == table])
                    got = Counter((r["Detection"], "", _epoch(r["Timestamp"])) for r in replayer.kql.run(text))
                else:
                    events = [e for label, log in logs if log.format != "mde" for e in log.splunk_events]
                    rows = replayer.spl(events).run(text, f"hunting query {spec.name} (spl)")
                    got = Counter((r["detection"], r["target"], _epoch(r["_time"])) for r in rows)
            except (KqlNotTestable, SplUnsupported) as e:
                failures.append(f"hunting query {spec.name} ({language}) is not testable: {e}")
                continue
            for (name, target, when), n in sorted((expected - got).items()):
                failures.append(f"hunting query {spec.name} ({language}): missing {n} row(s) of {name} {target} at "
                                f"{datetime.fromtimestamp(when, timezone.utc).isoformat()} that the labels expect")
            for (name, target, when), n in sorted((got - expected).items()):
                failures.append(f"hunting query {spec.name} ({language}): {n} unexpected row(s) of {name} {target} at "
                                f"{datetime.fromtimestamp(when, timezone.utc).isoformat()}")
    return failures


def run_labelled(layout: Layout, ruleset: RuleSet, queries: list[Query], rule_filter=None, target_filter=None,
                 config: dict | None = None) -> Report:
    report = Report()
    labels = load_labels(layout, ruleset)
    selected = [q for q in queries if (not rule_filter or q.rule.name in rule_filter or str(q.rule.rule.id) in rule_filter)
                and (not target_filter or q.target.name in target_filter)]
    replayer = Replayer(layout, selected, ruleset)
    logs: list[tuple[LabelFile, SampleLog]] = []
    for label in labels:
        log = read_log(label.log_path, layout.rel(label.log_path), label.format, label.host, label.table,
                       replayer.schemas)
        report.skipped_lines += [str(p) for p in log.problems]
        keys = {r["dac_key"] for r in log.rows}
        for missing in sorted(keys - set(label.events), key=str):
            report.failures.append(f"{label.path}: event {missing} of {layout.rel(label.log_path)} has no label")
        for extra in sorted(set(label.events) - keys, key=str):
            report.failures.append(f"{label.path}: label for event {extra} that is not in {layout.rel(label.log_path)}")
        verdicts = replayer.run_log(label, log, selected)
        for v in verdicts:
            v.twin = bool(label.twin_of)
        report.verdicts += verdicts
        logs.append((label, log))
    report.failures += compare(report.verdicts, {(q.rule.name, q.target.name): q for q in selected})
    if config is not None and not rule_filter and not target_filter:
        # once over the canonical logs: a shape twin holds the same events again
        report.failures += check_hunting(replayer, queries, config, [(l, g) for l, g in logs if not l.twin_of])
    report.failures += replayer.spl_differences
    report.spl_cross_checks = replayer.spl_compared
    if not rule_filter and not target_filter:
        from .metrics import compute
        from dac.rules.tiers import is_alert
        tier_of = {item.name: ("alert" if is_alert(item) else "hunting") for item in ruleset.generated}
        report.metrics = compute(report.verdicts, [label for label, _ in logs], tier_of,
                                 {q.target.name: q.target.format for q in queries})
        report.failures += report.metrics.failures
    # a rule x target that no labelled event exercises is untested, whatever the engines say
    for q in selected:
        rid = str(q.rule.rule.id)
        if not any(label.format == q.target.format and (any(rid in ids for ids in label.events.values())
                                                        or label.correlations.get(rid)) for label, _ in logs):
            report.failures.append(f"rule {q.rule.name} on {q.target.name}: no labelled true positive in testdata/ "
                                   f"({q.target.format} format): add one (testdata/README.md)")
    return report
