"""`dac test --events`: an offline hunting command over real-shaped, unlabelled and hostile input.
Every line is an event or a reported skip; no input ends in a traceback; the JSON has the
documented contract."""
from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import sys

import pytest

from conftest import REPO, run_dac

DATA = REPO / "testdata"
HIT_KEYS = {"rule_id", "rule", "level", "alert", "target", "engines", "host", "file", "lines"}


def hunt_json(capsys, *args: str) -> tuple[int, dict, str]:
    code = run_dac("test", "--events", *args, "--json")
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def test_json_contract_and_auto_format_on_every_canonical_file(capsys):
    files = [DATA / "auditd" / "audit.log", DATA / "sysmon" / "sysmon_linux.xml", DATA / "tracee" / "tracee.jsonl",
             DATA / "mde" / "DeviceFileEvents.jsonl", DATA / "mde" / "DeviceProcessEvents.jsonl"]
    code, report, _ = hunt_json(capsys, *map(str, files), "--host", "lab-ubu-01")
    assert code == 0
    assert [(f["path"], f["format"]) for f in report["files"]] == [
        (str(files[0]), "auditd"), (str(files[1]), "sysmon"), (str(files[2]), "tracee"), (str(files[3]), "mde"), (str(files[4]), "mde")]
    assert all(f["skipped"] == [] and f["events"] > 0 for f in report["files"])
    assert report["hits"] and all(HIT_KEYS <= set(h) for h in report["hits"])
    assert {h["target"] for h in report["hits"]} == {"splunk_auditd", "splunk_sysmon", "splunk_tracee", "sentinel"}
    # every hit points back at real input lines of its file
    for hit in report["hits"]:
        text = open(hit["file"], encoding="utf-8").read().splitlines()
        assert hit["lines"] and all(1 <= n <= len(text) and text[n - 1].strip() for n in hit["lines"])
    # the Sigma engine and the target's own query agree on every single-event hit
    assert all(set(h["engines"]) in ({"sigma", "spl"}, {"sigma", "kql"}) for h in report["hits"] if "event" in h)


def test_hits_equal_the_labels_of_the_canonical_audit_log(capsys):
    import yaml
    labels = yaml.safe_load((DATA / "auditd" / "audit.log.labels.yml").read_text())
    code, report, _ = hunt_json(capsys, str(DATA / "auditd" / "audit.log"), "--host", "lab-ubu-01")
    got = {(h["rule_id"], h["event"]) for h in report["hits"] if "event" in h}
    want = {(rid, key) for key, event in labels["events"].items() for rid in event["fires"]}
    assert code == 0 and got == want


def test_a_correlation_hit_lists_the_lines_of_all_its_events(capsys):
    code, report, _ = hunt_json(capsys, str(DATA / "auditd" / "audit.log"), "--host", "lab-ubu-01")
    corr = [h for h in report["hits"] if h["rule"] == "ProcMapsThenMemRead"]
    assert corr and all("group" in h for h in corr)
    lines = open(DATA / "auditd" / "audit.log").read().splitlines()
    for hit in corr:
        read = [lines[n - 1] for n in hit["lines"]]
        pid = hit["group"]["TargetProcessId"]
        for file in ("maps", "mem"):       # task/<tid>/ paths belong to their process
            assert any(re.search(rf'name="/proc/{pid}/(task/[0-9]+/)?{file}"', l) for l in read), (hit, file)


def test_directory_gzip_utf16_and_stdin_inputs(tmp_path, capsys, monkeypatch):
    audit = (DATA / "auditd" / "audit.log").read_bytes()
    (tmp_path / "d").mkdir()
    with gzip.open(tmp_path / "d" / "audit.log.gz", "wb") as f:
        f.write(audit)
    (tmp_path / "d" / "sysmon.xml").write_bytes((DATA / "sysmon" / "sysmon_linux.xml").read_text().encode("utf-16"))
    shutil.copy(DATA / "tracee" / "tracee.jsonl", tmp_path / "d" / "tracee.jsonl")
    code, report, _ = hunt_json(capsys, str(tmp_path / "d"), "--host", "h")
    assert code == 0
    shapes = {f["format"]: f["shape"] for f in report["files"]}
    assert shapes["auditd"].startswith("gzip") and "utf-16" in shapes["sysmon"]
    assert {h["target"] for h in report["hits"]} == {"splunk_auditd", "splunk_sysmon", "splunk_tracee"}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(audit)))
    code, from_stdin, _ = hunt_json(capsys, "-", "--host", "h")
    assert code == 0 and from_stdin["files"][0]["path"] == "<stdin>"
    assert len(from_stdin["hits"]) == sum(1 for h in report["hits"] if h["target"] == "splunk_auditd")


def test_hostile_lines_are_reported_skips_and_the_rest_is_detected(tmp_path, capsys):
    lines = (DATA / "tracee" / "tracee.jsonl").read_text().splitlines()
    deep = "[" * 10_000 + "]" * 10_000
    hostile = [lines[0], '{"eventName": "x", "args": ' + deep + "}", "{not json", "x" * (5 * 1024 * 1024), lines[1],
               '{"eventName":"security_file_open","args":[]}']
    path = tmp_path / "tracee.jsonl"
    path.write_text("\n".join(hostile) + "\n")
    code, report, _ = hunt_json(capsys, str(path), "--format", "tracee")
    skipped = report["files"][0]["skipped"]
    assert [s["line"] for s in skipped] == [2, 3, 4]
    assert "over the 4,194,304-byte limit" in skipped[2]["reason"]
    assert report["files"][0]["events"] == 3          # lines 1, 5 and the event without arguments
    assert code == 0 and {h["event"] for h in report["hits"]} == {"1"}
    assert run_dac("test", "--events", str(path), "--format", "tracee", "--strict") == 1


def test_a_non_utf8_byte_keeps_the_event(tmp_path, capsys):
    """Dropping a line for one bad byte would let an attacker hide a command from the rules."""
    raw = (DATA / "sysmon" / "sysmon_linux.xml").read_bytes().replace(b"/usr/bin/dd", b"/usr/bin/dd\xff", 1)
    raw = raw.replace(b"<Data Name=\"Image\">/usr/bin/dd\xff", b"<Data Name=\"Image\">/usr/bin/dd", 1)
    raw = raw.replace(b"of=/tmp/T1003.007.bin", b"of=/tmp/\xe9\xff.bin", 1)
    path = tmp_path / "sysmon.xml"
    path.write_bytes(raw)
    code, report, _ = hunt_json(capsys, str(path))
    assert code == 0 and report["files"][0]["skipped"] == []
    assert any(h["rule"] == "ProcMemManualDump" and 3 in h["lines"] for h in report["hits"])


def test_rows_missing_columns_are_events_not_crashes(tmp_path, capsys):
    rows = [json.loads(l) for l in (DATA / "mde" / "DeviceFileEvents.jsonl").read_text().splitlines()]
    slim = [{k: r[k] for k in ("Timestamp", "DeviceName", "ReportId", "ActionType", "FolderPath", "InitiatingProcessFolderPath")}
            for r in rows]
    path = tmp_path / "files.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in slim))
    code, report, _ = hunt_json(capsys, str(path))
    assert code == 0 and report["files"][0]["events"] == len(rows)
    assert any(h["rule"] == "ProcMemAccess" for h in report["hits"])
    tracee = tmp_path / "t.jsonl"
    tracee.write_text('{"eventName":"security_file_open","timestamp":1,"args":[{"name":"flags","value":0}]}\n')
    code, report, _ = hunt_json(capsys, str(tracee))
    assert code == 0 and report["hits"] == []


@pytest.mark.parametrize("content, message", [
    (b"\x00\x01\x02binary\x00" * 100, "binary data, not a text log"),
    (b"hello\nworld\n", "cannot tell the log format"),
    (b"\x1f\x8b\x08\x00garbage", "not a readable gzip file"),
])
def test_unreadable_inputs_name_the_file_and_the_rest_goes_on(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.log"
    bad.write_bytes(content)
    code, report, err = hunt_json(capsys, str(bad), str(DATA / "tracee" / "tracee.jsonl"))
    assert code == 1
    assert message in report["files"][0]["error"] and str(bad) in report["files"][0]["error"]
    assert report["files"][1]["events"] == 15 and report["hits"]
    assert "Traceback" not in err and f"error: {bad}" in err


def test_missing_path_and_fifo_are_errors_not_hangs(tmp_path, capsys):
    import os
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    code, report, _ = hunt_json(capsys, str(tmp_path / "nope.log"), str(fifo))
    assert code == 1
    assert "no such file" in report["files"][0]["error"] and "not a regular file" in report["files"][1]["error"]


def test_the_default_output_is_a_table_of_hits_per_rule(capsys):
    assert run_dac("test", "--events", str(DATA / "sysmon" / "sysmon_linux.xml")) == 0
    out = capsys.readouterr()
    assert "sysmon (xml), 29 events, 0 lines skipped" in out.out
    assert any(line.startswith("MimiPenguin") and "alert" in line and "splunk_sysmon" in line for line in out.out.splitlines())
    assert "hits (" in out.err
