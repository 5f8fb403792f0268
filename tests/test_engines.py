"""Engine regression tests: pin the semantics the replay relies on, so an upgrade of
pySigma-backend-sqlite, duckdb-kql or DuckDB that changes them fails here."""
from __future__ import annotations

from datetime import datetime

import pytest
from sigma.collection import SigmaCollection

from dac.engines.kql.engine import KqlEngine
from dac.engines.sigma.engine import SigmaEngine
from dac.logs import read_log
from dac.logs.auditd import decode_proctitle
from dac.logs.scopes import load_scopes
from dac.compile.targets import Target

TABLES = {"T": [("Timestamp", "datetime"), ("ReportId", "long"), ("Cmd", "string")]}
ROWS = [
    {"Timestamp": "2026-11-22T10:00:00Z", "ReportId": 1, "Cmd": "sudo -i"},
    {"Timestamp": "2026-11-22T10:00:01Z", "ReportId": 2, "Cmd": "cat /etc/issue"},
    {"Timestamp": "2026-11-22T10:00:02Z", "ReportId": 3, "Cmd": "python3 laZagne.py browsers --allusers"},
    {"Timestamp": "2026-11-21T09:00:00Z", "ReportId": 4, "Cmd": "SU root"},
    {"Timestamp": "2026-11-22T10:00:04Z", "ReportId": 5, "Cmd": "python3 laZagne.py ALL"},
]


@pytest.fixture(scope="module")
def kql():
    engine = KqlEngine(TABLES, datetime(2026, 11, 22, 12, 0, 0))
    engine.load("T", ROWS)
    return engine


def ids(rows):
    return sorted(r["ReportId"] for r in rows)


@pytest.mark.parametrize("predicate, expected", [
    ('Cmd has "su"', [4]),                              # whole term, case-insensitive: not "sudo", not "issue"
    ('Cmd contains "su"', [1, 2, 4]),                   # substring: fires on "issue" (the trap)
    ('Cmd has_any ("su", "all")', [4, 5]),              # "--allusers" is not the term "all"
    ('Cmd contains "all"', [3, 5]),
    ('Cmd =~ "SUDO -I"', [1]),
    ('Cmd == "SUDO -I"', []),
    ('Cmd in~ ("su root", "x")', [4]),
    ('Cmd !in~ ("su root", "sudo -i")', [2, 3, 5]),
    ('Cmd matches regex @"(?i)\\bsu\\b"', [4]),
    ('Cmd matches regex @"\\bsu\\b"', []),              # regex is case-sensitive unless (?i)
    ('Cmd endswith "ALL"', [5]),
    ('Timestamp > ago(24h)', [1, 2, 3, 5]),             # fixed clock: 2026-11-22 12:00
])
def test_kql_operator_semantics(kql, predicate, expected):
    assert ids(kql.run(f"T | where {predicate}")) == expected


def test_kql_let_union_sort(kql):
    rows = kql.run('let A = T | where Cmd has "su" | extend D = "A"; let B = T | where ReportId == 5 | extend D = "B"; '
                   'union A, B | sort by Timestamp desc')
    assert [(r["ReportId"], r["D"]) for r in rows] == [(5, "B"), (4, "A")]


SIGMA_RULE = """
title: t
id: 3c1d0a39-5b0e-4a43-9d7b-1f6bde7a0c12
logsource: {product: linux, category: process_creation}
detection:
    words: {CommandLine|re|i: '\\b(su|sudo)\\b'}
    sub: {CommandLine|contains: 'LAZAGNE'}
    img: {Image|endswith: '/gdb'}
    condition: (words or sub) and not img
"""


def test_sigma_engine_semantics():
    target = Target("t", "kusto", "p.yml", {"transformations": [{"type": "set_state", "key": "source", "val": "x"}]}, "t")
    rule = SigmaCollection.from_yaml(SIGMA_RULE).rules[0]
    rows = [
        {"dac_key": "1", "CommandLine": "sudo -i", "Image": "/usr/bin/sudo"},
        {"dac_key": "2", "CommandLine": "cat status", "Image": "/usr/bin/cat"},
        {"dac_key": "3", "CommandLine": "python3 lazagne.py all", "Image": "/usr/bin/python3"},   # contains is case-insensitive
        {"dac_key": "4", "CommandLine": "gdb -p 1 su", "Image": "/usr/bin/gdb"},                   # excluded image
        {"dac_key": "5", "CommandLine": "SU -", "Image": None},                                    # NOT on a missing field
    ]
    assert SigmaEngine().matches(rule, target, rows) == {"1", "3", "5"}


def test_proctitle_decoding_and_auditd_assembly(tmp_path, repo_layout):
    assert decode_proctitle("6464006966003D2F70726F632F3132332F6D656D") == "dd if =/proc/123/mem"
    assert decode_proctitle("bash") == "bash"
    log = tmp_path / "audit.log"
    log.write_text(
        'type=SYSCALL msg=audit(1795000000.100:42): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd a2=80000 '
        'a3=0 items=1 ppid=1 pid=900 auid=0 uid=0 comm="python3" exe="/usr/bin/python3" key="t1003_007_procfs"\n'
        'type=CWD msg=audit(1795000000.100:42): cwd="/root"\n'
        'type=PATH msg=audit(1795000000.100:42): item=0 name="/proc/812/mem" inode=1 dev=00:05 nametype=NORMAL\n'
        'type=PROCTITLE msg=audit(1795000000.100:42): proctitle=707974686F6E33006D696D6970656E6775696E2E7079\n'
        'type=SYSCALL msg=audit(1795000000.200:43): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd a2=80001 '
        'a3=0 items=1 ppid=1 pid=901 auid=0 uid=0 comm="dd" exe="/usr/bin/dd" key="t1003_007_procfs"\n'
        'type=PATH msg=audit(1795000000.200:43): item=0 name="/proc/812/mem" inode=1 dev=00:05 nametype=NORMAL\n'
        'garbage line\n'
        'type=PATH msg=audit(1795000000.300:44):\n')
    parsed = read_log(log, "audit.log", "auditd", "web-01")
    assert [str(p) for p in parsed.problems] == [
        "audit.log:7: not an audit record (expected [node=… ]type=… msg=audit(epoch:serial): …, optionally after a syslog header)",
        "audit.log:8: truncated PATH record"]
    assert len(parsed.splunk_events) == 6                   # one Splunk event per record
    scopes = load_scopes(repo_layout)                       # the log sources of sigma/datasources/event_scopes.yml
    scopes.tag_all("auditd", parsed.rows)
    rows = {r["dac_key"]: r for r in parsed.rows}
    assert rows["web-01:42"]["name"] == "/proc/812/mem" and rows["web-01:42"]["exe"] == "/usr/bin/python3"
    assert rows["web-01:42"]["proctitle"] == "python3 mimipenguin.py" and rows["web-01:42"]["cwd"] == "/root"
    assert "file_access" in rows["web-01:42"]["dac_categories"]
    assert "file_access" not in rows["web-01:43"]["dac_categories"]   # O_WRONLY|O_CLOEXEC is a write
    assert scopes.categories("auditd", {"syscall": "59"}) == {"auditd", "process_creation"}
