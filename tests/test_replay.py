"""`dac test`: the generated queries executed on the labelled logs in testdata/ by the three
engines. The real testdata must pass; a wrong label, an unlabelled event, a broken log line or a
disagreement between engines must fail with a message that names what is wrong."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_dac
from dac.replay.verdicts import Verdicts, compare, summary_table
from dac.rules.ruleset import load_rules

LABEL_FILES = sorted((REPO / "testdata").rglob("*.labels.yml"))
FORMATS = {yaml.safe_load(p.read_text())["format"] for p in LABEL_FILES}


def label_file(root: Path, fmt: str, table: str | None = None) -> Path:
    """The canonical labelled file of a format (not a shape twin from testdata/shapes/, nor the corpus)."""
    for path in sorted((root / "testdata").rglob("*.labels.yml")):
        if "corpus" in path.parts:
            continue
        data = yaml.safe_load(path.read_text())
        if data["format"] == fmt and not data.get("twin_of") and (table is None or data.get("table") == table):
            return path
    raise AssertionError(f"no labelled {fmt} file in testdata/")


def test_testdata_covers_every_format_and_rule(repo_layout):
    assert FORMATS == {"mde", "auditd", "sysmon", "tracee"}
    labelled = set()
    for path in LABEL_FILES:
        data = yaml.safe_load(path.read_text())
        labelled |= {i for e in data["events"].values() for i in e["fires"]} | set(data.get("correlations") or {})
    generated = {str(r.rule.id) for r in load_rules(repo_layout).generated}
    assert generated <= labelled, f"rules without a single labelled hit: {generated - labelled}"


def test_dac_test_passes_on_the_repository_testdata(capsys):
    assert run_dac("test") == 0
    out = capsys.readouterr()
    assert " 0 failures" in out.out
    table = out.out.splitlines()
    # every rule x target appears once, with the three engines' TP/FP/FN
    assert any(line.startswith("ProcMemAccess") and "sentinel" in line for line in table)
    assert any(line.startswith("AuditdProcMemOpen") and "splunk_auditd" in line for line in table)
    assert any(line.startswith("ProcMapsThenMemRead") and "splunk_auditd" in line for line in table)
    assert "not testable" not in out.out
    # every SPL search ran on both SPL engines: each Splunk query once per labelled file of its
    # format (canonical, shape twins, corpus), and the hunting search once
    from dac.artifacts.build import compile_repository
    from dac.core.repo import Layout
    _, queries, _ = compile_repository(Layout(REPO))
    formats = [yaml.safe_load(p.read_text())["format"] for p in LABEL_FILES]
    searches = sum(1 for q in queries if q.target.language == "spl" for f in formats if f == q.target.format) + 1
    assert f"rows compared with the Python reference's on {searches} searches" in out.out


def test_json_output_lists_every_verdict(repo_test_json):
    code, data = repo_test_json
    assert code == 0
    assert data["failures"] == []
    engines_run = {(v["target"], e) for v in data["verdicts"] for e, keys in v["engines"].items() if keys is not None}
    assert {("sentinel", "sigma"), ("sentinel", "kql"), ("splunk_auditd", "spl"), ("splunk_auditd", "sigma"),
            ("splunk_sysmon", "spl"), ("splunk_tracee", "spl")} <= engines_run
    hits = [v for v in data["verdicts"] if v["expected"]]
    assert all(v["engines"]["sigma"] == v["expected"] for v in hits)


def _flip_first_hit(path: Path) -> tuple[str, str]:
    data = yaml.safe_load(path.read_text())
    key, ids = next((k, v["fires"]) for k, v in data["events"].items() if v["fires"])
    data["events"][key]["fires"] = ids[1:]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(key), ids[0]


def test_a_wrong_label_fails_naming_event_rule_target_and_engines(sandbox, capsys):
    path = label_file(sandbox.root, "auditd")
    key, rule_id = _flip_first_hit(path)
    assert run_dac("test") == 1
    err = capsys.readouterr().err
    line = next(l for l in err.splitlines() if f"event {key}:" in l and "label says no hit" in l)
    assert "splunk_auditd" in line and "sigma=hit" in line and "spl=hit" in line


def test_a_lost_true_positive_in_kql_is_reported(sandbox, capsys):
    path = label_file(sandbox.root, "mde", "DeviceProcessEvents")
    key, _ = _flip_first_hit(path)
    assert run_dac("test", "--target", "sentinel") == 1
    err = capsys.readouterr().err
    assert any(f"event {key}:" in l and "sentinel" in l and "kql=hit" in l for l in err.splitlines())


def test_an_event_without_a_truth_label_is_an_error(sandbox, capsys):
    path = label_file(sandbox.root, "tracee")
    data = yaml.safe_load(path.read_text())
    key = next(iter(data["events"]))
    data["events"][key] = {"fires": data["events"][key]["fires"]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_dac("test") == 1
    assert f"event {key}: needs {{truth: T1003.007 | malicious-context | benign" in capsys.readouterr().err


def test_unlabelled_event_and_unknown_rule_id_are_errors(sandbox, capsys):
    path = label_file(sandbox.root, "sysmon")
    data = yaml.safe_load(path.read_text())
    dropped = next(iter(data["events"]))
    del data["events"][dropped]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_dac("test") == 1
    assert f"event {dropped} of testdata/" in capsys.readouterr().err

    data["events"][dropped] = {"truth": "benign", "fires": ["00000000-0000-0000-0000-000000000000"]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_dac("test") == 1
    err = capsys.readouterr().err
    assert f"{path.relative_to(sandbox.root)}:" in err and "unknown rule id 00000000-0000-0000-0000-000000000000" in err


def test_malformed_log_lines_are_skipped_and_fail_only_with_strict(sandbox, capsys):
    for fmt, junk in (("mde", "{not json"), ("auditd", "type=SYSCALL msg=audit(1795341600.1"),
                      ("sysmon", "<Event><System><EventID>1</EventID>"), ("tracee", '{"eventName": "security_file_open", "args": 3}')):
        log = label_file(sandbox.root, fmt).with_suffix("").with_suffix("")
        lines = log.read_text().splitlines()
        log.write_text("\n".join(lines + [junk]) + "\n")
    assert run_dac("test") == 0
    out = capsys.readouterr()
    assert "4 malformed lines skipped" in out.out
    skipped = [l for l in out.err.splitlines() if l.startswith("skipped: testdata/")]
    assert len(skipped) == 4 and all(":" in l.split()[1] for l in skipped)
    assert run_dac("test", "--strict") == 1


def test_engine_disagreement_is_a_failure_that_shows_the_query():
    v = Verdicts("R", "id", "splunk_auditd", "testdata/x.log", {"1"}, {"sigma": {"1"}, "kql": None, "spl": set()})

    class Q:
        text = "index=linux | search x=1"
    failures = compare([v], {("R", "splunk_auditd"): Q()})
    assert any("engines disagree" in f and "sigma=hit, spl=miss" in f and "index=linux | search x=1" in f for f in failures)
    assert any("label says hit" in f for f in failures)


def test_not_testable_is_reported_and_never_a_pass():
    v = Verdicts("R", "id", "sentinel", "testdata/x.jsonl", set(), {"sigma": set(), "kql": None, "spl": None},
                 not_testable={"kql": "duckdb-kql cannot run this query: mv-expand"})
    assert any("not testable on the kql engine" in f for f in compare([v], {}))
    assert "not testable" in "\n".join(summary_table([v]))


@pytest.mark.parametrize("fmt", ["mde", "auditd", "sysmon", "tracee"])
def test_every_labelled_file_has_hits_and_misses(fmt):
    """A file whose events all fire (or none does) would not test the rules' precision or recall."""
    for path in LABEL_FILES:
        data = yaml.safe_load(path.read_text())
        if data["format"] == fmt:
            verdicts = [bool(e["fires"]) for e in data["events"].values()]
            assert any(verdicts) and not all(verdicts), path


def test_a_rule_without_a_labelled_true_positive_fails(sandbox, capsys):
    path = label_file(sandbox.root, "tracee")
    data = yaml.safe_load(path.read_text())
    data["events"] = {k: {**e, "fires": []} for k, e in data["events"].items()}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.rmtree(sandbox.root / "testdata" / "shapes" / "tracee")       # its twin labels the same events
    for corpus in (sandbox.root / "testdata" / "corpus").glob("tracee_default.jsonl*"):        # and so does the corpus
        corpus.unlink()
    assert run_dac("test") == 1
    err = capsys.readouterr().err
    assert "rule TraceeProcMemAccess on splunk_tracee: no labelled true positive in testdata/ (tracee format)" in err


def test_a_difference_between_the_duckdb_spl_engine_and_the_python_reference_fails(monkeypatch, capsys):
    """dac test runs the SPL on DuckDB and on the Python reference; rows that differ are a failure
    even when the verdicts happen to agree with the labels."""
    from dac.engines.spl.sql import SqlSession
    real_run = SqlSession.run

    def drifting_run(self, text):
        rows = real_run(self, text)
        return [{**r, "audit_serial": "0"} if i == 0 and "audit_serial" in r else r for i, r in enumerate(rows)]
    monkeypatch.setattr(SqlSession, "run", drifting_run)
    assert run_dac("test", "--target", "splunk_auditd") == 1
    err = capsys.readouterr().err
    assert "the DuckDB SPL engine and the Python reference disagree" in err
    assert "audit_serial: reference" in err and "DuckDB '0'" in err
