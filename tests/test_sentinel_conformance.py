"""Every generated Sentinel analytic against the rules of Azure-Sentinel's template validation
(dac.artifacts.sentinel_conformance, written from its documented models) and its ARM template against the
template; the version lock bumps a template's version whenever its query changes."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from conftest import REPO
from dac.rules.attack import load_techniques
from dac.core.repo import Layout
from dac.artifacts.sentinel_conformance import arm_problems, template_problems
from dac.artifacts.sentinel_versions import LOCK_FILE, bump, load_lock, query_hash, settle

LAYOUT = Layout(REPO)
TEMPLATES = sorted((REPO / "sentinel" / "analytics").glob("*.yaml"))


@pytest.fixture(scope="module")
def attack():
    return load_techniques(LAYOUT)


def _doc(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_there_are_templates():
    assert len(TEMPLATES) >= 6


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_passes_azure_sentinel_validation(path, attack):
    assert template_problems(_doc(path), attack) == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_arm_template_carries_the_template(path):
    doc = _doc(path)
    arm = json.loads((REPO / "sentinel" / "arm" / f"{path.stem}.json").read_text(encoding="utf-8"))
    (resource,) = arm["resources"]
    assert resource["name"].endswith(f"/Microsoft.SecurityInsights/{doc['id']}')]")
    assert arm_problems(resource["properties"], doc) == []
    assert resource["properties"]["subTechniques"] == ["T1003.007"]
    assert resource["properties"]["techniques"] == ["T1003"]
    assert doc["relevantTechniques"] == ["T1003.007"]


BREAKS = {
    "no version": (lambda d: d.pop("version"), "missing required field version"),
    "version not x.y.z": (lambda d: d.update(version="1.0"), "is not X.Y.Z"),
    "frequency under 5m": (lambda d: d.update(queryFrequency="4m", queryPeriod="4m"), "outside 5m..14d"),
    "period over 14d": (lambda d: d.update(queryPeriod="15d"), "outside 5m..14d"),
    "period under frequency": (lambda d: d.update(queryPeriod="30m"), "shorter than queryFrequency"),
    "long period, fast frequency": (lambda d: d.update(queryFrequency="30m", queryPeriod="2d"), "needs a queryFrequency of 1h"),
    "ISO duration": (lambda d: d.update(queryPeriod="PT1H"), "is not <number><m|h|d>"),
    "API operator in the template": (lambda d: d.update(triggerOperator="GreaterThan"), "triggerOperator"),
    "threshold too high": (lambda d: d.update(triggerThreshold=10001), "triggerThreshold"),
    "unknown connector": (lambda d: d["requiredDataConnectors"][0].update(connectorId="MicrosoftDefenderXDR"), "unknown connectorId"),
    "data type of another connector": (lambda d: d["requiredDataConnectors"][0].update(dataTypes=["SecurityEvent"]), "brings no SecurityEvent"),
    "technique without its tactic": (lambda d: d.update(tactics=["Execution"]), "needs the tactics ['CredentialAccess']"),
    "sub-technique in the wrong form": (lambda d: d.update(relevantTechniques=["T1003/007"]), "is not Tnnnn"),
    "unknown identifier": (lambda d: d["entityMappings"][0]["fieldMappings"][0].update(identifier="Hostname"), "has no identifier"),
    "six entities": (lambda d: d.update(entityMappings=d["entityMappings"] * 2), "1 to 5 entities"),
    "no required identifier": (lambda d: d["entityMappings"].append({"entityType": "File", "fieldMappings": [
        {"identifier": "Directory", "columnName": "FolderPath"}]}), "none of its required identifiers"),
    "severity Critical": (lambda d: d.update(severity="Critical"), "severity"),
    "name too long": (lambda d: d.update(name="x" * 257), "name: 1 to 256"),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_rule_is_enforced(name, attack):
    doc = _doc(REPO / "sentinel" / "analytics" / "file_access_lnx_proc_mem_access.yaml")
    change, message = BREAKS[name]
    change(doc)
    problems = template_problems(doc, attack)
    assert any(message in p for p in problems), problems


def test_arm_without_subtechniques_is_reported():
    path = REPO / "sentinel" / "analytics" / "file_access_lnx_proc_mem_access.yaml"
    props = json.loads((REPO / "sentinel" / "arm" / "file_access_lnx_proc_mem_access.json").read_text())["resources"][0]["properties"]
    props = copy.deepcopy(props)
    del props["subTechniques"]
    assert any("subTechniques" in p for p in arm_problems(props, _doc(path)))


# --- version lock ------------------------------------------------------------------------------

def test_lock_matches_every_template():
    """The checked-in lock holds each template's version and query hash (dac convert keeps it so)."""
    lock = load_lock(LAYOUT)
    docs = {d["id"]: d for d in map(_doc, TEMPLATES)}
    assert set(lock) == set(docs)
    for rule_id, doc in docs.items():
        assert lock[rule_id]["version"] == doc["version"]
        assert lock[rule_id]["sha256"] == query_hash(doc["query"])


def test_settle_bumps_on_a_changed_query_only():
    entry = {"version": "1.2.3", "sha256": query_hash("A\n")}
    assert settle("1.0.0", "A\n", entry) == "1.2.3"
    assert settle("1.0.0", "B\n", entry) == "1.2.4"
    assert settle("2.0.0", "A\n", entry) == "2.0.0"          # a configured higher version wins
    assert settle("1.0.0", "B\n", None) == "1.0.0"
    assert bump("1.9.9") == "1.9.10"


def test_a_changed_rule_ships_under_a_new_version(sandbox):
    from dac.artifacts.build import build_artifacts, compile_repository, write_artifacts
    rule = sandbox.root / "sigma/rules/linux/process_creation/proc_creation_lnx_lazagne_memory.yml"
    rule.write_text(rule.read_text().replace("'\\s(memory|all)(\\s|$)'", "'\\s(memory|all|browsers)(\\s|$)'"))
    before = load_lock(sandbox)
    _, queries, config = compile_repository(sandbox)
    write_artifacts(build_artifacts(queries, config, sandbox), sandbox)
    after = load_lock(sandbox)
    changed = {k for k in after if after[k]["sha256"] != before[k]["sha256"]}
    assert len(changed) == 2                      # the LaZagne analytic and the hunting union
    for rule_id in after:
        expected = bump(before[rule_id]["version"]) if rule_id in changed else before[rule_id]["version"]
        assert after[rule_id]["version"] == expected
    lazagne = yaml.safe_load((sandbox.root / "sentinel/analytics/proc_creation_lnx_lazagne_memory.yaml").read_text())
    assert lazagne["version"] == after[lazagne["id"]]["version"]
    # a second conversion changes nothing (the lock is input and output)
    _, queries, config = compile_repository(sandbox)
    assert write_artifacts(build_artifacts(queries, config, sandbox), sandbox) == (0, 0)
    assert (sandbox.root / LOCK_FILE).is_file()
