"""Real sensor output: every shape a sensor writes (testdata/shapes/) is read and detected by
every target exactly as its canonical file is, and the checked-in twins are what
tools/make_shapes.py writes (so they cannot drift from the canonical files)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict

import pytest
import yaml

from conftest import REPO
from dac.artifacts.build import compile_repository
from dac.logs import read_log
from dac.replay.labelled import Replayer
from dac.replay.labels import load_labels
from dac.core.repo import Layout

SHAPES = REPO / "testdata" / "shapes"


def _twins() -> list:
    return sorted(p for p in SHAPES.rglob("*.labels.yml"))


def test_every_documented_shape_has_a_twin():
    names = {p.name[: -len(".labels.yml")] for p in _twins()}
    assert {"audit_enriched.log", "audit_node.log", "audit_syslog_rfc3164.log", "audit_syslog_rfc5424.log",
            "audit_aggregated_two_nodes.log"} <= names
    assert {"syslog_rfc3164.log", "syslog_rfc5424.log", "journald.json", "sysmon_noxmlns.xml"} <= names
    assert "tracee_default.jsonl" in names
    assert {"streaming_api_eventhub.json", "DeviceFileEvents_api_response.json", "DeviceProcessEvents_portal_export.csv",
            "DeviceFileEvents_sentinel.jsonl"} <= names


def test_twins_are_what_the_generator_writes(sandbox):
    """The generator runs in a copy of the repository (other tests read testdata/ meanwhile)."""
    before = {p.relative_to(SHAPES): p.read_bytes() for p in SHAPES.rglob("*") if p.is_file()}
    shutil.copy(REPO / "tools" / "make_shapes.py", sandbox.root / "tools" / "make_shapes.py")
    subprocess.run([sys.executable, str(sandbox.root / "tools" / "make_shapes.py")], check=True)
    shapes = sandbox.root / "testdata" / "shapes"
    after = {p.relative_to(shapes): p.read_bytes() for p in shapes.rglob("*") if p.is_file()}
    assert after == before, "testdata/shapes/ is stale: run tools/make_shapes.py and commit the result"


@pytest.fixture(scope="module")
def detections():
    """(file) -> {(rule, target, key) hit by any engine}, over every labelled file."""
    layout = Layout(REPO)
    ruleset, queries, _ = compile_repository(layout)
    replayer = Replayer(layout, queries, ruleset)
    found, labels = {}, {}
    for label in load_labels(layout, ruleset):
        log = read_log(label.log_path, layout.rel(label.log_path), label.format, label.host, label.table, replayer.schemas)
        assert not log.problems, [str(p) for p in log.problems]
        hits = set()
        for v in replayer.run_log(label, log, queries):
            for engine, keys in v.engines.items():
                hits |= {(v.rule, v.target, engine, str(k)) for k in (keys or set())}
        found[label.path] = hits
        labels[label.path] = label
    return found, labels


def test_no_shape_yields_fewer_detections_than_its_canonical_twin(detections):
    found, labels = detections
    compared = defaultdict(int)
    for path, label in labels.items():
        if not label.twin_of:
            continue
        canonical = found[f"{label.twin_of}.labels.yml"] if f"{label.twin_of}.labels.yml" in found else None
        if canonical is None:      # the Defender streaming twin merges both tables' files
            canonical = set().union(*(found[p] for p, l in labels.items() if not l.twin_of and l.format == label.format))
        missing = canonical - found[path]
        assert not missing, f"{path}: {len(missing)} detections of the canonical file are missing, e.g. {sorted(missing)[:3]}"
        compared[label.format] += 1
    assert compared == {"auditd": 6, "sysmon": 4, "tracee": 1, "mde": 7}


def test_every_target_detects_something_on_every_shape(detections):
    found, labels = detections
    for path, label in labels.items():
        targets = {t for (_, t, _, _) in found[path]}
        expected = {"auditd": {"splunk_auditd"}, "sysmon": {"splunk_sysmon"}, "tracee": {"splunk_tracee"}, "mde": {"sentinel"}}
        assert targets == expected[label.format], path


def test_aggregated_audit_log_keeps_the_two_nodes_apart():
    """The same audit serial on two machines is two events (identity is node + serial)."""
    path = SHAPES / "auditd" / "audit_aggregated_two_nodes.log"
    log = read_log(path, fmt="auto")
    hosts = {r["host"] for r in log.rows}
    assert hosts == {"lab-ubu-01", "lab-ubu-02"}
    single = read_log(REPO / "testdata" / "auditd" / "audit.log", host="lab-ubu-01")
    assert len(log.rows) == 2 * len(single.rows)
    assert len({r["dac_key"] for r in log.rows}) == len(log.rows)


def test_tracee_default_output_has_integer_flags_and_still_fires():
    data = yaml.safe_load((SHAPES / "tracee" / "tracee_default.jsonl.labels.yml").read_text())
    log = read_log(SHAPES / "tracee" / "tracee_default.jsonl")
    assert log.shape == "default (integer arguments)"
    assert {r["flags"] for r in log.rows if "flags" in r} >= {"32768", "32770"}
    assert any(data["events"].values())
