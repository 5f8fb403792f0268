"""`dac test`: every compiled query executed against the labelled sample logs in testdata/.

Three engines give a verdict per event: Sigma semantics (SQLite), the generated KQL
(duckdb-kql) and the generated SPL (compiled to DuckDB by dac.engines.spl.sql, with the Python reference
evaluator dac.engines.spl.engine run alongside: any difference in their rows is a failure). Each verdict is
compared with the label, and the three are compared with each other (a disagreement is a failure
of its own).
Correlation rules are compared per group (the group-by values) instead of per event.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path

import yaml

from dac.compile.compose import detection_label, hunting_members, hunting_specs, kql_hunting, spl_hunting
from dac.compile.convert import Query
from dac.engines.kql.engine import KqlEngine, KqlNotTestable
from dac.engines.sigma.engine import SigmaEngine, group_value
from dac.compile.kql_analyzer import load_schemas
from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from dac.rules.ruleset import RuleSet
from dac.logs import SampleLog, read_log
from dac.engines.spl.checked import CheckedSpl
from dac.engines.spl.parse import SplUnsupported
from dac.logs.scopes import EventScopes, load_scopes
from .scope import rows_in_scope, scope_where

ENGINES = ("sigma", "kql", "spl")
TRUTHS = ("T1003.007", "malicious-context", "benign")


def column_types(layout: Layout) -> dict[str, dict[str, str]]:
    """Defender table -> column -> Kusto type, from sentinel/schemas/."""
    return {table: dict(columns) for table, columns in load_schemas(layout.schemas).items()}


def spl_key(fmt: str, row: dict) -> str:
    """The identity (dac_key, see dac.logs) of the event an SPL result row stands for."""
    if fmt == "auditd":
        return f"{row.get('host')}:{row.get('audit_serial')}"
    if fmt == "sysmon":
        return f"{row.get('Computer')}:{row.get('EventRecordID')}"
    return str(row.get("dac_key"))


def kql_key(row: dict) -> str:
    return f"{row.get('DeviceName')}:{row.get('ReportId')}"


@dataclass
class LabelFile:
    path: str
    log_path: Path
    format: str
    table: str | None
    host: str | None
    events: dict[str, list[str]]    # event key -> rule ids that fire on it (the regression record)
    correlations: dict[str, list[dict]]
    twin_of: str | None = None      # testdata/shapes/: the canonical file this one re-writes in another shape
    truth: dict[str, str] = field(default_factory=dict)       # event key -> T1003.007 | malicious-context | benign
    accepted: dict[str, dict[str, str]] = field(default_factory=dict)   # key -> {accepted_fp|known_miss: reason}


@dataclass
class Verdicts:
    """Per rule x target x log file: the expected keys and each engine's keys (None = not run)."""
    rule: str
    rule_id: str
    target: str
    log: str
    expected: set
    engines: dict[str, set | None]
    not_testable: dict[str, str] = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)    # key -> the rows it stands for (a group: all its events)
    twin: bool = False                              # replayed on a shape twin (testdata/shapes/), not a canonical file

    @property
    def hits(self) -> set:
        return set().union(*(k for k in self.engines.values() if k is not None))


@dataclass
class Report:
    verdicts: list[Verdicts] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped_lines: list[str] = field(default_factory=list)
    spl_cross_checks: int = 0       # SPL searches whose rows the DuckDB engine and the reference both gave
    metrics: object = None          # dac.replay.metrics.Metrics over the truth labels (a full run only)


def load_labels(layout: Layout, ruleset: RuleSet) -> list[LabelFile]:
    known = {str(r.rule.id) for r in ruleset.generated}
    problems, labels = [], []
    for path in sorted((layout.root / "testdata").rglob("*.labels.yml")):
        rel = layout.rel(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problems.append(Problem(rel, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}"))
            continue
        log_path = path.with_name(path.name[: -len(".labels.yml")])
        if not log_path.is_file():
            problems.append(Problem(rel, None, f"labels a missing log file {layout.rel(log_path)}"))
            continue
        raw_events = data.get("events") or {}
        events, truth, accepted = {}, {}, {}
        text_lines = path.read_text(encoding="utf-8").splitlines()
        def key_line(key: str) -> int | None:
            return next((n for n, l in enumerate(text_lines, 1) if f'"{key}"' in l or l.strip().startswith(f"{key}:")), None)
        for key, value in raw_events.items():
            key = str(key)
            if not isinstance(value, dict) or value.get("truth") not in TRUTHS:
                problems.append(Problem(rel, key_line(key), f"event {key}: needs {{truth: {' | '.join(TRUTHS)}, fires: [rule ids]}}"))
                continue
            unknown = set(value) - {"truth", "fires", "accepted_fp", "known_miss", "note"}
            if unknown:
                problems.append(Problem(rel, key_line(key), f"event {key}: unknown label keys {', '.join(sorted(unknown))}"))
            events[key] = [str(i) for i in (value.get("fires") or [])]
            truth[key] = value["truth"]
            accepted[key] = {k: str(value[k]) for k in ("accepted_fp", "known_miss") if value.get(k)}
        correlations = {str(k): list(v or []) for k, v in (data.get("correlations") or {}).items()}
        for rule_id in sorted({i for ids in events.values() for i in ids} | set(correlations)):
            if rule_id not in known:
                line = next((n for n, l in enumerate(text_lines, 1) if rule_id in l), None)
                problems.append(Problem(rel, line, f"label names unknown rule id {rule_id}"))
        labels.append(LabelFile(rel, log_path, str(data.get("format")), data.get("table"), data.get("host"), events, correlations,
                                data.get("twin_of"), truth, accepted))
    if problems:
        raise DacError(problems)
    return labels


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


def compare(verdicts: list[Verdicts], queries_by_key: dict) -> list[str]:
    """Failure messages: label mismatches and engine disagreements, naming event, rule, target."""
    failures = []
    for v in verdicts:
        for engine, reason in sorted(v.not_testable.items()):
            # a query the engine cannot run proves nothing: that is a failure, never a pass
            failures.append(f"{v.log}: rule {v.rule} on {v.target}: not testable on the {engine} engine: {reason}")
        ran = {e: keys for e, keys in v.engines.items() if keys is not None}
        universe = set(v.expected).union(*ran.values()) if ran else set(v.expected)
        for key in sorted(universe, key=str):
            verdict = {e: key in keys for e, keys in ran.items()}
            wanted = key in v.expected
            shown = ", ".join(f"{e}={'hit' if hit else 'miss'}" for e, hit in verdict.items())
            if any(hit != wanted for hit in verdict.values()):
                failures.append(f"{v.log}: event {key}: rule {v.rule} on {v.target}: label says "
                                f"{'hit' if wanted else 'no hit'}; {shown}")
            if len(set(verdict.values())) > 1:
                query = queries_by_key.get((v.rule, v.target))
                failures.append(f"{v.log}: event {key}: engines disagree on rule {v.rule} / {v.target} ({shown})\n"
                                f"  query:\n    " + (query.text.replace("\n", "\n    ") if query else "?"))
    return failures


def summary_table(verdicts: list[Verdicts]) -> list[str]:
    """One line per rule x target: TP/FP/FN summed over files, per engine."""
    totals: dict[tuple[str, str], Counter] = {}
    for v in verdicts:
        counter = totals.setdefault((v.rule, v.target), Counter())
        for engine, keys in v.engines.items():
            if keys is None:
                if engine in v.not_testable:
                    counter[f"{engine}:not-testable"] += 1
                continue
            counter[f"{engine}:TP"] += len(keys & v.expected)
            counter[f"{engine}:FP"] += len(keys - v.expected)
            counter[f"{engine}:FN"] += len(v.expected - keys)
    lines = [f"{'rule':24} {'target':14} " + " ".join(f"{e:>14}" for e in ENGINES)]
    for (rule, target), c in sorted(totals.items()):
        cells = []
        for e in ENGINES:
            if c[f"{e}:not-testable"]:
                cells.append(f"{'not testable':>14}")
            elif any(k.startswith(e + ":") for k in c):
                cells.append(f"{c[e + ':TP']:>4}/{c[e + ':FP']}/{c[e + ':FN']:<4}".rjust(14))
            else:
                cells.append(f"{'-':>14}")
        lines.append(f"{rule:24} {target:14} " + " ".join(cells))
    lines.append("cells: TP/FP/FN against the labels")
    return lines


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
