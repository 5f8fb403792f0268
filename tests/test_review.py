"""`dac review --base <ref>` on small git histories built in temporary repositories: the report
must say what changed (by rule id), show every generated artifact's diff, the replay before and
after with worsened verdicts first, the findings, the deploy plan, and a verdict."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
from collections import OrderedDict

import pytest

import dac.compile.kql_analyzer as kql_analyzer
import dac.engines.kql.engine as engine_kql
import dac.engines.spl.checked as spl_checked
import dac.review.report as review_module
import dac.rules.ruleset as rules
from conftest import run_dac

LAZAGNE = "proc_creation_lnx_lazagne_memory.yml"
TRACEE = "sigma/rules/linux/tracee/lnx_tracee_proc_mem_access.yml"
PROC_MEM_ACCESS = "sigma/rules/linux/file_access/file_access_lnx_proc_mem_access.yml"


# Each side of a review (compile, generate, replay every labelled log) takes seconds, and most
# tests here compare against the same unmodified base. A side is a function of the files it is
# loaded from, so sides are shared between tests by a digest of those files (everything but .git
# and the tools/ symlink), re-pointed at the tree being reviewed. A test that checks that two runs
# agree is marked fresh_sides and computes every side anew.
_SIDES: dict[tuple, review_module.Side] = {}


def _tree_digest(root) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in (".git", "tools") or not path.is_file():
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


class _KeepNothing(OrderedDict):
    """A memo that never keeps anything: every lookup misses."""

    def __setitem__(self, key, value):
        pass


@pytest.fixture(autouse=True)
def shared_sides(request, monkeypatch):
    if request.node.get_closest_marker("fresh_sides"):
        # anew all the way down: no engine result, KQL translation, analyzer run or parsed labels
        # file kept by content in this process (dac keeps those between commands) is used either
        for module, name in ((engine_kql, "_RESULTS"), (engine_kql, "_TRANSLATIONS"), (spl_checked, "_RESULTS"),
                             (kql_analyzer, "_RESULTS"), (rules, "_PARSED")):
            monkeypatch.setattr(module, name, _KeepNothing())
        return
    load = review_module._load_side

    def cached(label, layout, replay):
        key = (_tree_digest(layout.root), replay)
        if key not in _SIDES:
            _SIDES[key] = load(label, layout, replay)
        side = _SIDES[key]
        return dataclasses.replace(side, label=label, layout=layout, problems=list(side.problems))
    monkeypatch.setattr(review_module, "_load_side", cached)


def git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=dac", "-c", "user.email=dac@example.org", *args],
                   check=True, capture_output=True)


@pytest.fixture
def history(sandbox):
    """The sandbox as a git repository whose first commit is the base."""
    (sandbox.root / ".gitignore").write_text("tools/\n")
    git(sandbox.root, "init", "-q", "-b", "main")
    git(sandbox.root, "add", "-A")
    git(sandbox.root, "commit", "-q", "-m", "base")
    return sandbox


def review_json(capsys, *extra) -> tuple[int, dict]:
    code = run_dac("review", "--base", "main", "--json", *extra)
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.runs_long(20)
def test_added_changed_moved_and_removed_rules(history, capsys):
    root = history.root
    lazagne = history.rules / "linux/process_creation" / LAZAGNE
    lazagne.write_text(lazagne.read_text().replace("level: high", "level: critical").replace("title: ", "title: Renamed ", 1))
    git(root, "mv", "sigma/rules/linux/process_creation/proc_creation_lnx_proc_mem_manual_dump.yml",
        "sigma/rules/linux/process_creation/proc_creation_lnx_proc_mem_dump_by_hand.yml")
    (root / TRACEE).unlink()
    shutil.rmtree(root / "testdata" / "tracee")        # its labels go with it, and its shape twin's
    shutil.rmtree(root / "testdata" / "shapes" / "tracee")
    for corpus in (root / "testdata" / "corpus").glob("tracee_default.jsonl*"):     # the corpus labels it too
        corpus.unlink()
    mimi = (history.rules / "linux/process_creation/proc_creation_lnx_mimipenguin.yml").read_text()
    new = re.sub(r"^id: .*$", "id: 6f1de0c5-3d6a-4a8e-9d5c-0b3d2f7a9e11", mimi, flags=re.M)
    new = re.sub(r"^name: .*$", "name: MimiPenguinTwin", new, flags=re.M)
    new = re.sub(r"^title: .*$", "title: MimiPenguin Twin", new, flags=re.M)
    (history.rules / "linux/process_creation/proc_creation_lnx_mimipenguin_twin.yml").write_text(new)
    assert run_dac("convert") == 0
    capsys.readouterr()

    code, r = review_json(capsys)
    changes = {(c["change"], c["name"]) for c in r["rules"]}
    assert changes == {("changed", "LaZagne"), ("changed", "ProcMemManualDump"), ("removed", "TraceeProcMemAccess"),
                       ("added", "MimiPenguinTwin")}
    moved = next(c for c in r["rules"] if c["name"] == "ProcMemManualDump")
    assert moved["moved_from"].endswith("proc_creation_lnx_proc_mem_manual_dump.yml"), "a move is a change, not delete + add"

    lazagne_id = next(c["id"] for c in r["rules"] if c["name"] == "LaZagne")
    names = [a["name"] for a in r["artifacts"][lazagne_id]]
    assert "sentinel/analytics/proc_creation_lnx_lazagne_memory.yaml" in names
    assert "sentinel/arm/proc_creation_lnx_lazagne_memory.json" in names
    assert any(n.startswith("splunk/dac_detections/default/savedsearches.conf [dac-242d39f0") for n in names)
    stanza = next(a["diff"] for a in r["artifacts"][lazagne_id] if "savedsearches.conf" in a["name"])
    assert "-alert.severity = 5" in stanza and "+alert.severity = 6" in stanza
    tracee_id = next(c["id"] for c in r["rules"] if c["name"] == "TraceeProcMemAccess")
    assert any(a["name"] == "conversions/splunk_tracee/lnx_tracee_proc_mem_access.spl" and "+++ /dev/null" in a["diff"]
               for a in r["artifacts"][tracee_id])

    plan = {(d["siem"], d["action"], d["object"]) for d in r["deploy_plan"]}
    assert ("splunk", "delete", f"dac-{tracee_id}-splunk_tracee") in plan
    assert ("splunk", "update", f"dac-{lazagne_id}-splunk_auditd") in plan
    assert any(a == "create" and s == "sentinel" for s, a, _ in plan)
    assert not any(o.startswith("dac-fb83f82e") and a in ("create", "delete") for _, a, o in plan), \
        "the moved rule keeps its objects"
    # the twin has no labelled true positive, the removed Tracee rule loses its hits
    assert r["verdict"] == "blocked" and code == 1
    assert any("lost true positive" in b for b in r["blockers"])
    assert any("MimiPenguinTwin" in f and "no labelled true positive" in f for f in r["head"]["test_failures"]), r["head"]


def test_a_new_false_positive_is_shown_first_and_blocks(history, capsys):
    rule = history.root / PROC_MEM_ACCESS
    rule.write_text(rule.read_text().replace(
        "condition: (selection_mem and not (filter_allowlist_memory_readers and not dump_command)) or selection_maps_range_scan",
        "condition: selection_mem or selection_maps_range_scan"))       # the allowlist dropped: debuggers alert
    assert run_dac("convert") == 0
    capsys.readouterr()
    code = run_dac("review", "--base", "main")
    out = capsys.readouterr()
    assert code == 1
    report = out.out
    assert report.startswith("<!-- dac-review -->\n## dac review: ⛔ blocked")
    assert "new false positive(s) on the labelled logs" in report.splitlines()[1]
    worse = report.index("**Verdicts that got worse**")
    first_row = report[worse:].split("\n")[4]
    assert "⚠️ new false positive" in first_row and "ProcMemAccess" in first_row
    assert report.index("⚠️ new false positive") < report.index("### Validator findings")
    # the diff of the changed query is in a collapsible section
    assert "<details><summary>ProcMemAccess" in report and "```diff" in report


def test_metric_deltas_over_the_truth_labels_are_in_the_report(history, capsys):
    rule = history.root / PROC_MEM_ACCESS
    rule.write_text(rule.read_text().replace(
        "condition: (selection_mem and not (filter_allowlist_memory_readers and not dump_command)) or selection_maps_range_scan",
        "condition: selection_mem or selection_maps_range_scan"))
    assert run_dac("convert") == 0
    capsys.readouterr()
    run_dac("review", "--base", "main", "--json")
    r = json.loads(capsys.readouterr().out)
    changed = {m["name"]: m for m in r["metrics"]}
    alert = changed["tier alert"]
    assert alert["after"]["fp"] > alert["before"]["fp"] and alert["after"]["precision"] < alert["before"]["precision"]
    assert changed["benign events that alert"]["after"]["count"] > changed["benign events that alert"]["before"]["count"]
    run_dac("review", "--base", "main")
    assert "**Metrics over the truth labels that changed**" in capsys.readouterr().out


@pytest.mark.runs_long(60)
@pytest.mark.fresh_sides
def test_ready_and_deterministic(history, capsys):
    labels = next((history.root / "testdata").rglob("*.labels.yml"))
    labels.write_text(labels.read_text() + "# reviewed\n")
    first = run_dac("review", "--base", "main")
    a = capsys.readouterr().out
    assert first == 0, a
    assert run_dac("review", "--base", "main") == 0
    b = capsys.readouterr().out
    assert a == b and "## dac review: ✅ ready" in a and "No rule added, changed or removed." in a


def test_long_reports_are_truncated_to_fit_a_comment(history, capsys, monkeypatch):
    monkeypatch.setattr(review_module, "COMMENT_LIMIT", 6000)
    for rule in sorted(history.rules.rglob("*.yml")):
        text = rule.read_text()
        swapped = {"level: high": "level: medium", "level: medium": "level: high"}
        rule.write_text(re.sub(r"level: (high|medium)", lambda m: swapped[m.group(0)], text))
    assert run_dac("convert") == 0
    capsys.readouterr()
    run_dac("review", "--base", "main", "--no-replay")
    report = capsys.readouterr().out
    assert len(report) <= 6000 and "_Truncated:" in report and "run `dac review --base main` locally" in report


def test_unknown_base_is_a_clear_error(history, capsys):
    assert run_dac("review", "--base", "no-such-branch") == 2
    assert "error: unknown git ref 'no-such-branch'" in capsys.readouterr().err


def test_markdown_tables_start_a_block_and_details_close(history, capsys):
    rule = history.root / PROC_MEM_ACCESS
    rule.write_text(rule.read_text().replace("level: high", "level: medium"))
    assert run_dac("convert") == 0
    capsys.readouterr()
    run_dac("review", "--base", "main")
    lines = capsys.readouterr().out.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("| ") and not lines[i - 1].startswith("|"):
            assert lines[i - 1] == "" or lines[i - 1].startswith("#"), f"table at line {i + 1} follows {lines[i - 1]!r}"
            assert set(lines[i + 1].replace("|", "")) <= {"-"}, "header row, then the delimiter row"
    text = "\n".join(lines)
    assert text.count("<details>") == text.count("</details>") and text.count("```") % 2 == 0


def test_a_base_that_cannot_generate_everything_is_compared_fairly(sandbox, capsys):
    """A base older than an input of the generator (here: the ATT&CK list) still compiles and
    replays; the report notes it and does not call every hit 'new'."""
    attack = sandbox.root / "sigma" / "attack"
    saved = {p.name: p.read_bytes() for p in attack.iterdir()}
    shutil.rmtree(attack)
    (sandbox.root / ".gitignore").write_text("tools/\n")
    git(sandbox.root, "init", "-q", "-b", "main")
    git(sandbox.root, "add", "-A")
    git(sandbox.root, "commit", "-q", "-m", "base without the ATT&CK list")
    attack.mkdir()
    for name, data in saved.items():
        (attack / name).write_bytes(data)
    code, r = review_json(capsys)
    assert r["verdict_changes"] == [] and r["replayed"]
    assert any("enterprise-techniques.json" in p and "/tmp" not in p for p in r["base"]["problems"])
    assert code == 0, r["blockers"]
