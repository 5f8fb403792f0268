"""Streaming (issue 11 item 6): readers are generators that pull input lazily, auditd assembly
holds a bounded table of open events, a record arriving for an event already flushed is a
reported skip, the row store inserts in batches, and a streamed replay gives the same verdicts as
one over the file read whole. Asserted structurally, never by timing."""
from __future__ import annotations

import itertools
import json

import pytest

from conftest import REPO, run_dac
from dac.logs import auditd, mde, open_log, read_log, sysmon, tracee
from dac.logs.model import LogProblem
from dac.replay.row_store import RowStore

DATA = REPO / "testdata"


def audit_event(serial: int, host: str | None = None, eoe: bool = True) -> list[str]:
    node = f"node={host} " if host else ""
    head = f"msg=audit(1795000000.{serial % 1000:03d}:{serial}):"
    lines = [f'{node}type=SYSCALL {head} arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd a2=0 '
             f'a3=0 items=1 ppid=1 pid={serial} auid=0 uid=0 comm="cat" exe="/usr/bin/cat" key="k"',
             f'{node}type=PATH {head} item=0 name="/proc/{serial}/maps" inode=1 nametype=NORMAL',
             f"{node}type=PROCTITLE {head} proctitle=636174002F70726F632F6D617073"]
    return lines + ([f"{node}type=EOE {head}"] if eoe else [])


def numbered(lines):
    return ((n, line) for n, line in enumerate(lines, 1))


def interleaved(events: int, window: int, eoe: bool = True):
    """Records of `window` events at a time, interleaved round robin (as audisp-remote merges)."""
    for start in range(0, events, window):
        groups = [audit_event(1000 + s, eoe=eoe) for s in range(start, min(start + window, events))]
        for records in itertools.zip_longest(*groups):
            yield from (r for r in records if r is not None)


def test_the_open_event_table_never_exceeds_its_bound_on_interleaved_input():
    problems: list[LogProblem] = []
    assembler = auditd.Assembler("a.log", problems, max_open=8)
    rows = [row for row, _ in auditd.stream(numbered(interleaved(500, 8)), "a.log", "h", problems, set(),
                                            splunk=False, assembler=assembler)]
    assert assembler.peak_open <= 8
    assert problems == []
    assert len(rows) == 500 and len({r["dac_key"] for r in rows}) == 500
    assert all(r["name"].startswith("/proc/") and r["proctitle"] == "cat /proc/maps" and len(r["dac_lines"]) == 4 for r in rows)


def test_events_without_eoe_are_flushed_by_eviction_and_stay_whole():
    problems: list[LogProblem] = []
    assembler = auditd.Assembler("a.log", problems, max_open=4)
    rows = [row for row, _ in auditd.stream(numbered(interleaved(100, 3, eoe=False)), "a.log", "h", problems, set(),
                                            splunk=False, assembler=assembler)]
    assert assembler.peak_open <= 4 and problems == []
    assert len(rows) == 100 and all(len(r["dac_lines"]) == 3 for r in rows)


def test_a_record_after_its_event_ended_is_a_reported_skip_not_a_second_event():
    lines = audit_event(7) + audit_event(8) + [audit_event(7)[1]]       # a PATH of event 7 after its EOE
    problems: list[LogProblem] = []
    rows = [row for row, _ in auditd.stream(numbered(lines), "a.log", "h", problems, set(), splunk=False)]
    assert sorted(r["dac_key"] for r in rows) == ["h:7", "h:8"]
    assert len(problems) == 1 and problems[0].line == 9
    assert "PATH record of event h:7 arrives after the event was ended (EOE)" in problems[0].message


def test_a_record_of_an_evicted_event_is_a_reported_skip():
    lines = audit_event(1, eoe=False)[:1] + audit_event(2) + audit_event(3) + audit_event(1, eoe=False)[1:2]
    problems: list[LogProblem] = []
    assembler = auditd.Assembler("a.log", problems, max_open=1)
    rows = [row for row, _ in auditd.stream(numbered(lines), "a.log", "h", problems, set(), splunk=False,
                                            assembler=assembler)]
    assert sorted(r["dac_key"] for r in rows) == ["h:1", "h:2", "h:3"]
    assert [(p.line, "closed (1 newer events were open)" in p.message) for p in problems] == [(10, True)]


def test_the_same_serial_on_two_nodes_is_two_events():
    lines = audit_event(5, "a") + audit_event(5, "b")
    rows = [row for row, _ in auditd.stream(numbered(lines), "x.log", None, [], set(), splunk=False)]
    assert sorted(r["dac_key"] for r in rows) == ["a:5", "b:5"]


def counted(make_line, total: int = 20_000):
    """An input that counts the lines taken from it: a reader that is not lazy takes them all."""
    pulled = itertools.count()
    def lines():
        for n in range(1, total + 1):
            next(pulled)
            yield n, make_line(n)
    return lines(), pulled


SYSMON_XML = ('<Event><System><EventID>1</EventID><EventRecordID>{n}</EventRecordID><Computer>h</Computer></System>'
              '<EventData><Data Name="UtcTime">2026-11-22 10:00:00.000</Data><Data Name="Image">/usr/bin/cat</Data>'
              '</EventData></Event>')
TRACEE_JSON = '{{"timestamp": {n}, "eventName": "security_file_open", "hostName": "h", "args": [{{"name": "pathname", "value": "/etc/x"}}, {{"name": "flags", "value": 32768}}]}}'
MDE_JSON = '{{"Timestamp": "2026-11-22T10:00:00Z", "DeviceName": "h", "ReportId": {n}, "FolderPath": "/etc/x", "ActionType": "FileRead"}}'


@pytest.mark.parametrize("name, make", [
    ("auditd", lambda lines, problems: auditd.stream(lines, "x", "h", problems, set())),
    ("sysmon", lambda lines, problems: sysmon.stream(lines, "x", "h", problems, set())),
    ("tracee", lambda lines, problems: tracee.stream(lines, "x", "h", problems, set())),
    ("mde", lambda lines, problems: mde.stream(lines, "x", "DeviceFileEvents", {}, problems, set())),
    ("mde-csv", lambda lines, problems: mde.stream(lines, "x", "DeviceFileEvents", {}, problems, set())),
])
def test_every_reader_is_a_lazy_generator(name, make):
    line_of = {
        "auditd": lambda n: audit_event(n)[(n - 1) % 4].replace(f":{n})", f":{(n - 1) // 4})"),
        "sysmon": lambda n: SYSMON_XML.format(n=n),
        "tracee": lambda n: TRACEE_JSON.format(n=n),
        "mde": lambda n: MDE_JSON.format(n=n),
        "mde-csv": lambda n: "Timestamp,DeviceName,ReportId,FolderPath" if n == 1 else f"2026-11-22T10:00:00Z,h,{n},/etc/x",
    }[name]
    lines, pulled = counted(line_of)
    problems: list[LogProblem] = []
    rows = list(itertools.islice((row for row, _ in make(lines, problems) if row is not None), 5))
    assert len(rows) == 5 and problems == []
    assert next(pulled) < 50            # a few lines past the fifth event, not the whole input


def test_open_log_reads_nothing_past_the_sniffed_lines_until_iterated(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text("\n".join(line for s in range(1000) for line in audit_event(s)) + "\n")
    stream = open_log(path, fmt="auto", host="h")
    assert stream.format == "auditd" and stream.problems == []
    first = next(row for row, _ in stream.items if row is not None)
    assert first["dac_key"] == "h:0"
    assert stream.shapes == {"raw"}


def test_the_row_store_inserts_in_batches_and_gives_rows_back():
    store = RowStore(batch=10)
    try:
        for n in range(95):
            store.add({"dac_key": f"h:{n}", "_time": float(n), "dac_lines": [n + 1, n + 2], "dac_categories": {"auditd"},
                       "exe": "/usr/bin/cat", "a0": n, "names": ["x", "y"], **({"SYSCALL": "openat"} if n % 2 else {}),
                       "syscall": "257"})
            assert len(store._pending) < 10
        store.flush()
        assert store.count == 95 and store.peak_pending == 10
        # the enriched upper-case spelling gets a column of its own; the raw field keeps the name
        assert store.columns["syscall"] == "syscall" and store.columns["SYSCALL"] != "SYSCALL"
        (row,) = store.rows({"h:3"}, "instr(dac_scope, '|auditd|') > 0")
        assert row == {"dac_key": "h:3", "_time": 3.0, "dac_lines": [4, 5], "dac_categories": {"auditd"},
                       "exe": "/usr/bin/cat", "a0": "3", "names": "x\ny", "SYSCALL": "openat", "syscall": "257"}
        assert store.rows({"h:3"}, "instr(dac_scope, '|file_access|') > 0") == []
    finally:
        store.close()


CANONICAL = [("auditd/audit.log", "lab-ubu-01"), ("sysmon/sysmon_linux.xml", None), ("tracee/tracee.jsonl", None),
             ("mde/DeviceFileEvents.jsonl", None), ("mde/DeviceProcessEvents.jsonl", None),
             ("shapes/auditd/audit_aggregated_two_nodes.log", None), ("shapes/mde/DeviceFileEvents_portal_export.csv", None)]


@pytest.mark.parametrize("path, host", CANONICAL)
def test_a_streamed_replay_gives_the_verdicts_of_a_replay_of_the_file_read_whole(repo_layout, path, host):
    from dac.compile.convert import compile_rules
    from dac.replay.labelled import Replayer
    from dac.replay.labels import LabelFile
    from dac.rules.ruleset import load_rules
    from dac.replay.stream import load
    from dac.compile.targets import load_targets
    targets, _ = load_targets(repo_layout)
    ruleset = load_rules(repo_layout)
    queries = compile_rules(ruleset, targets)
    whole = read_log(DATA / path, path, "auto", host)
    selected = [q for q in queries if q.target.format == whole.format]
    label = LabelFile(path, DATA / path, whole.format, None, None, {}, {})
    before = Replayer(repo_layout, selected, ruleset)
    expected = [(v.rule, v.engines, {k: sorted(n for r in rows for n in r["dac_lines"]) for k, rows in v.evidence.items()})
                for v in before.run_log(label, whole, selected)]
    after = Replayer(repo_layout, selected, ruleset)
    stored = load(open_log(DATA / path, path, "auto", host, schemas=after.schemas), after.now, lambda: after.kql, 100_000,
                  scopes=after.scopes)
    try:
        got = [(v.rule, v.engines, {k: sorted(n for r in rows for n in r["dac_lines"]) for k, rows in v.evidence.items()})
               for v in after.run_log(label, stored, selected)]
    finally:
        stored.close()
    assert stored.events == len(whole.rows)
    assert got == expected and any(engines["sigma"] for _, engines, _ in got)
    assert before.spl_differences == after.spl_differences == []


def test_hunting_an_interleaved_file_with_a_late_record_reports_it_with_its_line(tmp_path, capsys):
    lines = [line for s in range(50) for line in audit_event(s, "web-01")] + [audit_event(3, "web-01")[0]]
    path = tmp_path / "audit.log"
    path.write_text("\n".join(lines) + "\n")
    code = run_dac("test", "--events", str(path), "--json")
    report = json.loads(capsys.readouterr().out)
    (f,) = report["files"]
    assert f["events"] == 50
    assert f["skipped"] == [{"line": 201, "reason": "SYSCALL record of event web-01:3 arrives after the event was ended (EOE)"}]
    assert code == 0
