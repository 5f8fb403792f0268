"""Consecutive scheduled runs of every generated Sentinel analytic over the labelled Defender XDR
logs: each labelled event (each correlation sequence) alerts exactly once, also when rows reach
the workspace late, and without the ingestion-time filter the 75-minute lookback would alert twice.

Single-event analytics and the hunting union count a row in the run after its ingestion
(`ingestion_time() > ago(queryFrequency)`); the correlation counts a sequence in the run whose
slice of event time holds its last event (dac.artifacts.sentinel_windows.SEQUENCE_FILTER).

Sentinel's scheduler is emulated as documented: a run at time t sees the rows already ingested
(ingestion time <= t) whose time is in [t - queryPeriod, t], and runs the analytic's query with
now() = t. The query runs on the repository's KQL engine (duckdb-kql, dac.engines.kql.engine); it has no
ingestion_time(), so each row carries its ingestion time in a column the query reads instead.
"""
from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta

import pytest
import yaml

from conftest import REPO
from dac.compile.convert import compile_rules
from dac.engines.kql.engine import KqlEngine, _cell
from dac.compile.kql_analyzer import load_schemas
from dac.core.repo import Layout
from dac.rules.ruleset import load_rules
from dac.logs import read_log
from dac.artifacts.sentinel_analytics import alert_rules
from dac.artifacts.sentinel_windows import INGESTION_FILTER
from dac.artifacts.sentinel_config import duration_minutes, load_analytics_config
from dac.compile.targets import load_targets

LAYOUT = Layout(REPO)
INGESTED = "dac_IngestionTime"
# the canonical Defender logs and the cited corpus (tools/make_corpus.py), table by table
MDE = [("DeviceFileEvents", "testdata/mde/DeviceFileEvents.jsonl"), ("DeviceProcessEvents", "testdata/mde/DeviceProcessEvents.jsonl"),
       ("DeviceFileEvents", "testdata/corpus/DeviceFileEvents.jsonl"), ("DeviceProcessEvents", "testdata/corpus/DeviceProcessEvents.jsonl")]
FIRST_RUN = datetime(2026, 11, 22, 6, 17)         # runs at hh:17, an offset Sentinel may pick
RUNS = 13                                         # 06:17 .. 18:17 covers the logs (corpus 06:00 .. 08:14, canonical 10:02 .. 17:00)


@pytest.fixture(scope="module")
def analytics():
    targets, config = load_targets(LAYOUT)
    ruleset = load_rules(LAYOUT)
    return ruleset, alert_rules(compile_rules(ruleset, targets), load_analytics_config(LAYOUT), config)


@pytest.fixture(scope="module")
def rows():
    """Table -> rows of the labelled logs; every third row reaches the workspace 12 minutes late,
    the others 30 seconds after the event."""
    out = {}
    for table, path in MDE:
        log = read_log(REPO / path, path, "mde")
        for n, row in enumerate(log.rows):
            event = _time(row["Timestamp"])
            row[INGESTED] = (event + timedelta(minutes=12 if n % 3 == 0 else 0, seconds=30)).isoformat()
        out.setdefault(table, []).extend(log.rows)
    return out


@pytest.fixture(scope="module")
def labels():
    return {path: yaml.safe_load((REPO / f"{path}.labels.yml").read_text()) for _, path in MDE}


def _time(value) -> datetime:
    return _cell(value, "datetime")


def _engine() -> KqlEngine:
    schemas = {t: cols + [(INGESTED, "datetime")] for t, cols in load_schemas(LAYOUT.schemas).items()}
    return KqlEngine(schemas, FIRST_RUN)


def _scheduled_runs(engine: KqlEngine, query: str, frequency: str, period: str, rows: dict) -> list[list[dict]]:
    """The result rows of each run, in run order."""
    results = []
    query = query.replace("ingestion_time()", INGESTED)
    for n in range(RUNS):
        now = FIRST_RUN + n * timedelta(minutes=duration_minutes(frequency))
        start = now - timedelta(minutes=duration_minutes(period))
        for table in engine.tables:
            engine.load(table, [r for r in rows.get(table, [])
                                if _time(r[INGESTED]) <= now and start <= _time(r["Timestamp"]) <= now])
        engine.now = now
        results.append(engine.run(query))
    return results


# what a correlation outputs besides its group-by fields (dac.correlation)
AGGREGATES = {"Timestamp", "FirstTime", "LastTime", "RuleCount", "ValueCount", "EventCount", "Sequences", "Detection"}


def _group(row: dict) -> tuple:
    """A correlation row's group, its group-by fields in output order (the order the labels list them)."""
    return tuple(str(v) for k, v in row.items() if k not in AGGREGATES)


def _alert_key(rule, row: dict) -> tuple:
    if "ReportId" in row:                        # a single-event analytic keeps the table's columns
        return (f"{row['DeviceName']}:{row['ReportId']}",)     # the event identity of dac.logs
    if "LastTime" in row:                        # the correlation: one alert per group and last event
        return (*_group(row), str(row["LastTime"]))
    return (str(row["Timestamp"]), str(row["DeviceName"]), str(row["Detection"]), str(row.get("ProcessCommandLine")))


def _expected(rule, labels: dict) -> set | None:
    """The labelled alert keys of a single-event analytic (None for the correlation and the union)."""
    owner = re.search(r"sigma rule (\S+) \(target", rule.yaml_doc["description"])
    if not owner or rule.file_stem.startswith(("correlation_", "t1003")):
        return None
    rule_id = owner.group(1)
    return {(str(k),) for data in labels.values() for k, event in (data.get("events") or {}).items()
            if rule_id in (event.get("fires") or [])}


@pytest.mark.runs_long(20)
def test_every_analytic_alerts_once_per_event_over_consecutive_runs(analytics, rows, labels):
    _, rules = analytics
    engine = _engine()
    checked = 0
    for rule in rules:
        doc = rule.yaml_doc
        assert (INGESTION_FILTER.format(window=doc["queryFrequency"]) in doc["query"]
                or "| where LastTime > ago(" in doc["query"]), rule.file_stem
        runs = _scheduled_runs(engine, doc["query"], doc["queryFrequency"], doc["queryPeriod"], rows)
        counts = Counter(_alert_key(rule, r) for run in runs for r in run)
        repeated = {k: c for k, c in counts.items() if c > 1}
        assert not repeated, f"{rule.file_stem}: alerted more than once: {repeated}"
        assert counts, f"{rule.file_stem}: no alert at all over the labelled logs"
        expected = _expected(rule, labels)
        if expected is not None:
            assert set(counts) == expected, f"{rule.file_stem}: missed {expected - set(counts)}, extra {set(counts) - expected}"
        checked += 1
    assert checked == len(rules) >= 6


def test_correlation_alerts_once_per_labelled_sequence(analytics, rows, labels):
    from dac.artifacts.sentinel_ids import parse_owner
    _, rules = analytics
    correlations = [r for r in rules if r.file_stem.startswith("correlation_")]
    assert len(correlations) >= 2
    for rule in correlations:
        doc = rule.yaml_doc
        sigma_id = parse_owner(doc["description"])[0]
        runs = _scheduled_runs(_engine(), doc["query"], doc["queryFrequency"], doc["queryPeriod"], rows)
        # one alert per sequence: a target dumped at two different times is two sequences
        sequences = Counter((_group(r), str(r["FirstTime"])) for run in runs for r in run)
        assert all(c == 1 for c in sequences.values()), (rule.file_stem, sequences)
        groups = Counter(g for g, _ in sequences)
        expected = {tuple(str(v) for v in g.values())
                    for data in labels.values() for g in (data.get("correlations") or {}).get(sigma_id, [])}
        assert expected and set(groups) == expected, rule.file_stem


def test_without_the_ingestion_filter_the_overlap_alerts_twice(analytics, rows):
    """The control: the same runs over the unfiltered query repeat alerts, so the test above
    does exercise the overlap of the 75-minute lookback."""
    _, rules = analytics
    rule = next(r for r in rules if r.file_stem == "file_access_lnx_proc_mem_access")
    doc = rule.yaml_doc
    unfiltered = doc["query"].replace(INGESTION_FILTER.format(window=doc["queryFrequency"]) + "\n", "")
    runs = _scheduled_runs(_engine(), unfiltered, doc["queryFrequency"], doc["queryPeriod"], rows)
    counts = Counter(_alert_key(rule, r) for run in runs for r in run)
    assert any(c > 1 for c in counts.values())
