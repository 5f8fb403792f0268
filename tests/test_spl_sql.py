"""The DuckDB SPL engine against the Python reference on data shaped like the benchmark's (opens,
executions, maps-then-mem pairs, many serials), for every generated SPL search; and the parts of
the index that differ from Python dicts (case-sensitive field names, fields that are sometimes
multivalue, url-decoding bytes that are not UTF-8). The shared semantics tests run on both
engines in test_spl_engine.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import REPO
from dac.logs.auditd import splunk_events_of_file as auditd_splunk_events
from dac.engines.spl.engine import run_spl
from dac.engines.spl.parse import SplUnsupported
from dac.engines.spl.sql import SplIndex, SqlSession, run_spl_sql

sys.path.insert(0, str(REPO / "benchmarks"))
from bench_replay import audit_lines  # noqa: E402

NOW = 1795392000.0
SEARCHES = sorted((REPO / "conversions").rglob("*.spl"))


@pytest.fixture(scope="module")
def audit_events(tmp_path_factory) -> list[dict]:
    path = tmp_path_factory.mktemp("audit") / "audit.log"
    path.write_text("\n".join(audit_lines(6000, seed=5)) + "\n")
    return list(auditd_splunk_events(path, "bench-host"))


@pytest.fixture(scope="module")
def sessions(audit_events):
    from dac.engines.spl.engine import SplSession
    return SplSession(audit_events, NOW), SqlSession(SplIndex(audit_events), NOW)


@pytest.mark.parametrize("search", SEARCHES, ids=lambda p: p.stem)
def test_every_generated_search_returns_the_same_rows_on_both_engines(sessions, search):
    reference, duck = sessions
    text = search.read_text()
    expected = [{k: v for k, v in row.items() if v is not None} for row in reference.run(text)]
    assert duck.run(text) == expected


def test_the_benchmark_data_exercises_every_auditd_search(sessions):
    _, duck = sessions
    counts = {p.stem: len(duck.run(p.read_text())) for p in SEARCHES if p.parent.name == "splunk_auditd"}
    assert all(counts.values()), counts      # each search has hits, so the comparison above means something


def test_field_names_are_case_sensitive():
    events = [{"_time": 1, "index": "i", "Image": "/bin/a", "image": "/bin/b", "id": "1"}]
    for run in (run_spl, run_spl_sql):
        assert run('index=i Image="/bin/a" | table id', events, NOW) == [{"id": "1"}]
        assert run('index=i Image="/bin/b"', events, NOW) == []
        assert run('index=i | eval ImAge=image | table ImAge Image', events, NOW) == [{"ImAge": "/bin/b", "Image": "/bin/a"}]


def test_a_field_multivalue_in_some_events_only():
    events = [{"_time": 2, "index": "i", "v": ["a", "b"], "id": "1"}, {"_time": 1, "index": "i", "v": "b", "id": "2"}]
    for run in (run_spl, run_spl_sql):
        assert [r["id"] for r in run('index=i v=b', events, NOW)] == ["1", "2"]
        assert run('index=i | stats values(v) as v count by id', events, NOW) == [
            {"id": "1", "v": ["a", "b"], "count": 1}, {"id": "2", "v": "b", "count": 1}]


def test_urldecode_of_bytes_that_are_not_utf8():
    events = [{"_time": 1, "index": "i", "x": "%ff%41%20b"}]
    for run in (run_spl, run_spl_sql):
        assert run('index=i | eval d=urldecode(x) | table d', events, NOW) == [{"d": "\ufffdA b"}]


def test_stats_by_a_field_holding_several_values_is_refused_at_run_time():
    events = [{"_time": 1, "index": "i", "g": ["a", "b"]}, {"_time": 2, "index": "i", "g": "c"}]
    for run in (run_spl, run_spl_sql):
        assert run('index=i g=c | stats count by g', events, NOW) == [{"g": "c", "count": 1}]
        with pytest.raises(SplUnsupported, match="multivalue"):
            run('index=i | stats count by g', events, NOW)


def test_an_empty_index_answers_with_no_rows():
    assert run_spl_sql('index=linux sourcetype=linux_audit | stats count by host', [], NOW) == []


def test_sql_that_duckdb_rejects_is_a_clear_failure_not_a_traceback(monkeypatch):
    """A defect in the compiler must surface as a failure naming DuckDB's error (dac test then
    reports the query as not testable, which fails the run)."""
    import dac.engines.spl.sql_expr as spl_sql_expr
    session = SqlSession(SplIndex([{"_time": 1, "index": "i", "x": "a"}]), NOW)
    monkeypatch.setattr(spl_sql_expr, "_lit", lambda text: "'" + text)        # unbalanced quotes
    with pytest.raises(SplUnsupported, match="DuckDB could not run the SQL compiled from this search: ParserException"):
        session.run('index=i x="a"')


@pytest.mark.parametrize("expression, expected", [
    ("7 % 3", 1), ("-7 % 3", 2), ("7 / 2", 3.5), ("7 - 10", -3), ('"a" . x', "a41"), ('"a" + "b"', "ab"),
])
def test_arithmetic_matches_the_reference(expression, expected):
    events = [{"_time": 1, "index": "i", "x": "41"}]
    for run in (run_spl, run_spl_sql):
        assert run(f'index=i | eval r={expression} | table r', events, NOW) == [{"r": expected}]


def test_plus_on_a_field_that_may_be_text_is_refused_by_the_compiler():
    """The reference adds when both sides read as numbers and concatenates otherwise, a choice made
    per event; the compiler gives every field one type, so it refuses rather than guess."""
    events = [{"_time": 1, "index": "i", "x": "41"}]
    assert run_spl('index=i | eval r=x + 1 | table r', events, NOW) == [{"r": 42}]
    with pytest.raises(SplUnsupported, match=r"\+ on values that may be text or numbers"):
        run_spl_sql('index=i | eval r=x + 1 | table r', events, NOW)
