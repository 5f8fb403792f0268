"""Alerts a SOC can live with: every rule has a tier, the allowlists are the same wherever a rule
family repeats them and each entry cites the event that justifies it, the corpus labels are what
tools/make_corpus.py renders, and the alert tier meets its precision bar on the truth labels."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from dac.core.repo import Layout
from dac.rules.ruleset import load_rules
from dac.rules.tiers import is_alert

RULES = REPO / "sigma" / "rules" / "linux"
CORPUS = REPO / "testdata" / "corpus"
ALERT = {"ProcMemAccess", "ProcMapsThenMemRead", "MimiPenguin", "LaZagne", "ProcMemManualDump", "DebuggerMemoryDump",
         "DebuggerCoreDumpReads", "ProcEnvironSweep", "ProcEnvironManualSweep"}
HUNTING = {"ProcMapsEnvironRead", "ProcMapsEnvironManualRead", "AuditdProcMemOpen", "TraceeProcMemAccess"}


def _rule(path: str) -> dict:
    return yaml.safe_load((RULES / path).read_text())


def test_every_generated_rule_has_the_intended_tier():
    ruleset = load_rules(Layout(REPO))
    tiers = {item.name: ("alert" if is_alert(item) else "hunting") for item in ruleset.generated}
    assert {n for n, t in tiers.items() if t == "alert"} == ALERT
    assert {n for n, t in tiers.items() if t == "hunting"} == HUNTING


def test_base_rules_of_the_correlation_repeat_the_allowlists_exactly():
    mem_alert = _rule("file_access/file_access_lnx_proc_mem_access.yml")["detection"]
    mem_base = _rule("file_access/file_access_lnx_proc_mem_read.yml")["detection"]
    assert mem_base["filter_allowlist_memory_readers"] == mem_alert["filter_allowlist_memory_readers"]
    assert mem_base["dump_command"] == mem_alert["dump_command"]
    maps_hunt = _rule("file_access/file_access_lnx_proc_maps_environ_read.yml")["detection"]
    maps_base = _rule("file_access/file_access_lnx_proc_maps_read.yml")["detection"]
    environ_base = _rule("file_access/file_access_lnx_proc_environ_read.yml")["detection"]
    for key in ("filter_allowlist_monitors", "filter_allowlist_lldb", "filter_allowlist_interpreted_tools"):
        assert maps_base[key] == maps_hunt[key], key
        assert environ_base[key] == maps_hunt[key], key


def test_the_environ_sweep_bases_are_the_environ_half_of_the_hunting_rules():
    # the sweeps count the same reads the hunting rules show one by one: same readers, environ only
    manual_hunt = _rule("process_creation/proc_creation_lnx_proc_maps_environ_manual_read.yml")["detection"]
    manual_base = _rule("process_creation/proc_creation_lnx_proc_environ_manual_read.yml")["detection"]
    assert manual_base["selection_reader_image"] == manual_hunt["selection_reader_image"]
    assert manual_base["selection_shell_oneliner"]["Image|endswith"] == manual_hunt["selection_shell_oneliner"]["Image|endswith"]
    for key, sub in (("selection_reader_path", "CommandLine|re"), ("selection_shell_oneliner", "CommandLine|re")):
        assert manual_base[key][sub] == manual_hunt[key][sub].replace("(maps?|environ)", "environ"), key
    file_hunt = _rule("file_access/file_access_lnx_proc_maps_environ_read.yml")["detection"]["selection"]["TargetFilename|re"]
    file_base = _rule("file_access/file_access_lnx_proc_environ_read.yml")["detection"]["selection"]["TargetFilename|re"]
    assert file_base == file_hunt.replace("(maps?|environ)", "environ")


def test_the_core_dump_correlation_watches_the_gdb_the_allowlists_trust():
    # gdb is allowlisted for mem reads by path; DebuggerCoreDumpReads must watch that same path,
    # or an allowlisted gdb writing a core file would be seen by neither rule
    allowlisted = _rule("file_access/file_access_lnx_proc_mem_access.yml")["detection"]["filter_allowlist_memory_readers"]["Image"]
    gdb = [p for p in allowlisted if p.endswith("/gdb")]
    for name in ("file_access/file_access_lnx_debugger_core_regions_read.yml", "file_access/file_access_lnx_debugger_mem_read.yml"):
        assert [_rule(name)["detection"]["selection"]["Image"]] == gdb, name


def test_every_allowlist_entry_cites_an_event_that_exists():
    corpus_ids = {e["id"] for e in yaml.safe_load((CORPUS / "corpus.yml").read_text())}
    label_keys = set()
    for path in (REPO / "testdata").rglob("*.labels.yml"):
        label_keys |= set((yaml.safe_load(path.read_text()).get("events") or {}))
    cited = 0
    for name in ("file_access/file_access_lnx_proc_mem_access.yml", "file_access/file_access_lnx_proc_maps_environ_read.yml"):
        text = (RULES / name).read_text()
        block = re.findall(r"filter_allowlist\w*:\n((?:        .*\n)+)", text)
        for line in "".join(block).splitlines():
            if not re.search(r"^\s+(- '|Image|CommandLine)", line) or line.strip().startswith("#"):
                continue
            comment = line.partition("#")[2] or ""
            if line.strip().startswith(("Image:", "CommandLine|re:")) and not comment:
                continue
            refs = set(re.findall(r"benign-[a-z0-9-]+", comment)) | set(re.findall(r"[a-z0-9.-]+:\d+", comment))
            assert refs, f"{name}: allowlist entry without a cited event: {line.strip()}"
            assert all(r in corpus_ids or r in label_keys for r in refs), f"{name}: {line.strip()} cites unknown {refs}"
            cited += 1
    assert cited >= 15


def test_the_benign_corpus_has_at_least_twenty_cited_programs():
    corpus = yaml.safe_load((CORPUS / "corpus.yml").read_text())
    benign = [e for e in corpus if e["truth"] == "benign"]
    assert len({e["program"] for e in benign}) >= 20
    # a file on GitHub is cited at a commit; an issue or a page elsewhere as it is
    permalink = re.compile(r"^https://github\.com/[^/]+/[^/]+/(blob/[0-9a-f]{40}/|issues/\d+|pull/\d+)|^https://(?!github\.com)")
    assert all(permalink.match(e["source"]) for e in corpus), [e["id"] for e in corpus if not permalink.match(e["source"])]
    assert {e["truth"] for e in corpus} == {"benign", "T1003.007", "malicious-context"}


def test_corpus_files_are_what_the_generator_renders(sandbox):
    """The generator runs in a copy of the repository (other tests read testdata/ meanwhile)."""
    before = {p.name: p.read_bytes() for p in CORPUS.iterdir() if p.is_file()}
    shutil.copy(REPO / "tools" / "make_corpus.py", sandbox.root / "tools" / "make_corpus.py")
    subprocess.run([sys.executable, str(sandbox.root / "tools" / "make_corpus.py")], check=True)
    corpus = sandbox.root / "testdata" / "corpus"
    after = {p.name: p.read_bytes() for p in corpus.iterdir() if p.is_file()}
    assert after == before, "testdata/corpus/ is stale: run tools/make_corpus.py --record and review the label diff"


@pytest.fixture(scope="module")
def metrics(repo_test_json):
    code, data = repo_test_json
    assert code == 0
    return data["metrics"]


def test_every_alert_rule_is_precise_on_the_truth_labels(metrics):
    for name, score in metrics["rules"].items():
        rule = name.split(" / ")[0]
        if rule in ALERT and score["tp"] + score["fp"]:
            assert score["precision"] >= 0.95, (name, score)
    assert metrics["tiers"]["alert"]["precision"] >= 0.95
    assert metrics["benign_alerts"] <= 3, "benign events that raise an alert"
    assert metrics["benign_events"] >= 300


def test_the_alert_tier_keeps_its_recall_and_the_baseline_is_current(metrics):
    baseline = json.loads((REPO / "testdata" / "metrics.baseline.json").read_text())
    assert metrics == baseline, "run `dac test --update-baseline` and commit testdata/metrics.baseline.json"
    assert metrics["tiers"]["alert"]["recall"] >= 0.90
