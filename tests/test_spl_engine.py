"""Regression tests for the SPL evaluator: they pin the Splunk semantics the replay relies on
(search-language precedence, wildcards, case, multivalue and null handling, rex/eval/stats/
streamstats/sort/append), and that anything outside the subset is refused, not guessed."""
from __future__ import annotations

from pathlib import Path

import pytest

from dac.logs import read_log
from dac.engines.spl.engine import SplUnsupported, run_spl as run_python
from dac.engines.spl.sql import run_spl_sql

ENGINES = {"python": run_python, "duckdb": run_spl_sql}
run_spl = None      # set per test by the engine fixture: every test runs on both SPL engines


@pytest.fixture(autouse=True, params=sorted(ENGINES))
def engine(request, monkeypatch):
    monkeypatch.setitem(globals(), "run_spl", ENGINES[request.param])
    return request.param

NOW = 1795392000.0      # 2026-11-23T00:00:00Z
EVENTS = [
    {"_time": NOW - 10, "index": "linux", "sourcetype": "t", "id": "1", "cmd": "sudo -i", "img": "/usr/bin/sudo"},
    {"_time": NOW - 20, "index": "linux", "sourcetype": "t", "id": "2", "cmd": "cat /etc/issue", "img": "/usr/bin/cat"},
    {"_time": NOW - 30, "index": "linux", "sourcetype": "t", "id": "3", "cmd": "gdb -p 1", "img": "/usr/bin/GDB"},
    {"_time": NOW - 40, "index": "linux", "sourcetype": "t", "id": "4", "cmd": "ls", "img": ["/bin/ls", "/lib/ld.so"]},
    {"_time": NOW - 90000, "index": "linux", "sourcetype": "t", "id": "5", "cmd": "SU root"},
    {"_time": NOW - 50, "index": "other", "sourcetype": "t", "id": "6", "cmd": "sudo -i", "img": "/usr/bin/sudo"},
]


def ids(query: str) -> list[str]:
    return [r["id"] for r in run_spl(query, EVENTS, NOW)]


@pytest.mark.parametrize("search, expected", [
    ('cmd="sudo*"', ["1"]),                                   # wildcard, value anchored at both ends
    ('cmd="SUDO -I"', ["1"]),                                 # search values compare without case
    ('cmd="*su*"', ["1", "2", "5"]),                          # substring: "issue" contains "su"
    ('img="*/gdb"', ["3"]),                                   # case-insensitive wildcard
    ('img IN ("*/ls", "*/cat")', ["2", "4"]),                  # IN; multivalue matches when any value does
    ('img="/lib/ld.so"', ["4"]),
    ('NOT img="*/sudo"', ["2", "3", "4", "5"]),               # NOT keeps events without the field (5)
    ('img!="*/sudo"', ["2", "3", "4"]),                       # != needs the field to exist
    ('cmd="ls" OR cmd="gdb*" img="*/GDB"', ["3"]),            # OR binds tighter than implicit AND
    ('img="*/gdb" cmd="ls" OR cmd="gdb*"', ["3"]),
    ('(img="*/gdb" cmd="ls") OR cmd="sudo*"', ["1"]),
    ('NOT img="*/gdb" cmd="gdb*" OR cmd="ls"', ["4"]),         # NOT binds tightest
    ('cmd="sudo*" AND img="*/sudo"', ["1"]),
    ('earliest=-24h latest=now id IN ("1", "5")', ["1"]),    # relative time on a fixed clock
])
def test_search_semantics(search, expected):
    assert ids(f"index=linux {search}") == expected


def test_base_search_scopes_by_index_and_returns_newest_first():
    assert ids('index=linux sourcetype=t') == ["1", "2", "3", "4", "5"]
    assert ids('index=other') == ["6"]


@pytest.mark.parametrize("expression, expected", [
    ('match(cmd, "(?i)\\\\bsu\\\\b")', ["5"]),                # regex on words; \\\\b is \\b in SPL strings
    ('match(cmd, "\\\\bsu\\\\b")', []),                       # eval regex is case-sensitive
    ('cmd="sudo -i"', ["1"]),                               # eval = is case-sensitive...
    ('cmd="SUDO -I"', []),
    ('lower(cmd)="su root"', ["5"]),
    ('isnull(img) OR NOT match(img, "sudo$")', ["2", "3", "4", "5"]),
    ('NOT match(img, "sudo$")', ["2", "3", "4"]),            # NOT of null is null: dropped
    ('_time > 1795391950 AND id != "1"', ["2", "3", "4"]),   # numeric comparison of strings that are numbers
    ('like(cmd, "cat %")', ["2"]),
])
def test_where_semantics(expression, expected):
    assert ids(f"index=linux | where {expression}") == expected


def test_eval_functions_and_rex():
    rows = run_spl('index=linux id IN ("1", "4")'
                   ' | rex field=img "^(?<dir>/.+)/(?<leaf>[^/]+)$"'
                   ' | eval n=mvcount(img), second=mvindex(img, 1), found=mvfind(img, "ld"), '
                   'kind=case(id="1", "one", id="4", "four"), x=if(isnull(nothing), "null", "set"), '
                   'c=coalesce(nothing, cmd), hex=urldecode(replace(replace("6C730061", "([0-9A-Fa-f]{2})", "%\\1"), "%00", "%20"))',
                   EVENTS, NOW)
    assert [(r["dir"], r["leaf"], r["n"], r.get("second"), r.get("found"), r["kind"], r["x"], r["c"], r["hex"]) for r in rows] == [
        ("/usr/bin", "sudo", 1, None, None, "one", "null", "sudo -i", "ls a"),
        ("/bin", "ls", 2, "/lib/ld.so", 1, "four", "null", "ls", "ls a"),   # rex reads the first value
    ]


def test_mvjoin_joins_every_value_and_keeps_null():
    # Tracee's argv arrives as the multivalue field args{}.value{}; the command line is its values joined
    rows = run_spl('index=linux id IN ("1", "4") | eval j=mvjoin(img, " "), none=mvjoin(nothing, " ") | table id j none', EVENTS, NOW)
    assert rows == [{"id": "1", "j": "/usr/bin/sudo"}, {"id": "4", "j": "/bin/ls /lib/ld.so"}]


def test_eval_does_not_change_the_index():
    run_spl('index=linux | eval cmd="x"', EVENTS, NOW)
    assert EVENTS[0]["cmd"] == "sudo -i"


def test_stats_groups_sorts_and_drops_missing_by_fields():
    rows = run_spl('index=linux | eval k=if(id<3, "a", "b") | stats count values(id) as ids min(_time) as first by k', EVENTS, NOW)
    assert rows == [{"k": "a", "count": 2, "ids": ["1", "2"], "first": NOW - 20},
                    {"k": "b", "count": 3, "ids": ["3", "4", "5"], "first": NOW - 90000}]
    with pytest.raises(SplUnsupported, match="multivalue"):
        run_spl('index=linux id=4 | stats count by img', EVENTS, NOW)
    assert [r["cmd"] for r in run_spl('index=linux | stats count by cmd', EVENTS, NOW)] == ["SU root", "cat /etc/issue", "gdb -p 1", "ls", "sudo -i"]


def test_streamstats_sort_append_table():
    events = [{"_time": t, "index": "i", "g": g, "v": v} for t, g, v in
              [(1, "a", "1"), (2, "a", None), (3, "b", "3"), (4, "a", "4"), (5, "b", None)]]
    rows = run_spl('index=i | sort 0 g _time | streamstats last(v) as lv count as n by g | table g _time lv n', events, NOW)
    assert rows == [{"g": "a", "_time": 1, "lv": "1", "n": 1}, {"g": "a", "_time": 2, "lv": "1", "n": 2},
                    {"g": "a", "_time": 4, "lv": "4", "n": 3}, {"g": "b", "_time": 3, "lv": "3", "n": 1},
                    {"g": "b", "_time": 5, "lv": "3", "n": 2}]
    rows = run_spl('index=i g=a | append [ search index=i g=b | eval src="sub" ] | sort 0 - _time | table _time src', events, NOW)
    assert rows == [{"_time": 5, "src": "sub"}, {"_time": 4}, {"_time": 3, "src": "sub"}, {"_time": 2}, {"_time": 1}]
    assert [r["v"] for r in run_spl('index=i v=* | sort 0 - v', events, NOW)] == ["4", "3", "1"]   # numeric order


@pytest.mark.parametrize("query, message", [
    ('index=linux | transaction cmd', "command `transaction`"),
    ('index=linux [search index=linux | table cmd]', "one field `search`"),
    ('index=linux [search index=linux | eval search="TERM(su*)" | table search]', "without wildcards"),
    ('index=linux TERM(a b)', "TERM"),
    ('index=linux | eval x=md5(cmd)', "md5"),
    ('| makeresults', "base search"),
    ('index=linux | rex field=cmd "(?<x>a)" max_match=0', "rex"),
    ('index=linux | where match(cmd, "\\\\p{L}")', "PCRE"),
    ('index=linux cmd="unclosed', "unclosed"),
    ('index=linux earliest=@d', "time modifier"),
])
def test_outside_the_subset_is_refused(query, message):
    with pytest.raises(SplUnsupported, match=message):
        run_spl(query, EVENTS, NOW)


RAW = [
    {"_time": NOW - 1, "index": "r", "id": "1", "_raw": 'type=PATH msg=audit(1795341600.100:100): name="/proc/987/mem"'},
    {"_time": NOW - 2, "index": "r", "id": "2", "_raw": 'type=PATH msg=audit(1795341600.100:101): name="/proc/meminfo"'},
    {"_time": NOW - 3, "index": "r", "id": "3", "_raw": 'type=SYSCALL msg=audit(1795341600.100:100): key="t1003_007_procfs"',
     "type": "SYSCALL"},
    {"_time": NOW - 4, "index": "r", "id": "4", "_raw": '{"eventName":"security_file_open","args":[{"value":"/PROC/1/Maps"}]}'},
    {"_time": NOW - 5, "index": "r", "id": "5", "_raw": "runmimipenguin --all"},
]


@pytest.mark.parametrize("search, expected", [
    ("mem", ["1"]),                                  # a bare term lies on breakers: not in "meminfo"
    ("MAPS", ["4"]),                                 # without case
    ('"/proc/"', ["1", "2", "4"]),                   # a term starting and ending with breakers: a substring
    ("proc mem", ["1"]),                             # terms AND, anywhere in the event
    ("mem*", ["1", "2"]),                            # a wildcard stays inside a token
    ("mimipenguin", []),                             # a term is never found inside a longer token...
    ("*mimipenguin*", ["5"]),                        # ...unless wildcards say so
    ("TERM(1795341600.100:100)", ["1", "3"]),        # TERM: a whole token between major breakers
    ("TERM(/proc/987/mem)", ["1"]),
    ("TERM(proc)", []),                              # minor breakers do not end a TERM
    ("TERM(security_file_open)", ["4"]),             # quotes are major breakers
    ("NOT mem", ["2", "3", "4", "5"]),
    ("key=t1003_007_procfs", []),                    # field=value still needs the field, not _raw
])
def test_literal_terms_and_term_match_raw_as_splunk_indexes_it(search, expected):
    assert [r["id"] for r in run_spl(f"index=r {search}", RAW, NOW)] == expected


def test_subsearch_returns_the_serials_whose_records_the_base_search_keeps():
    sub = ('[ search index=r type=SYSCALL | rex field=_raw "msg=audit\\((?<id>[0-9.]+:[0-9]+)\\)" '
           '| eval search="TERM(" . id . ")" | table search ]')
    assert [r["id"] for r in run_spl(f"index=r {sub}", RAW, NOW)] == ["1", "3"]
    assert [r["id"] for r in run_spl(f"index=r NOT {sub}", RAW, NOW)] == ["2", "4", "5"]
    # a subsearch without rows matches nothing (Splunk's empty format result)
    assert run_spl('index=r [ search index=none | eval search="TERM(x)" | table search ]', RAW, NOW) == []


AUDIT = """\
type=SYSCALL msg=audit(1795341600.100:100): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd5c3e2a10 a2=0 a3=0 items=1 ppid=1 pid=1234 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm="python3" exe="/usr/bin/python3.11" key="t1003_007_procfs"
type=CWD msg=audit(1795341600.100:100): cwd="/root"
type=PATH msg=audit(1795341600.100:100): item=0 name="/proc/987/maps" inode=1 dev=00:15 mode=0100444 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL
type=PROCTITLE msg=audit(1795341600.100:100): proctitle=707974686F6E330064756D702E7079
type=SYSCALL msg=audit(1795341630.100:101): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd5c3e2a10 a2=0 a3=0 items=1 ppid=1 pid=1234 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm="python3" exe="/usr/bin/python3.11" key="t1003_007_procfs"
type=PATH msg=audit(1795341630.100:101): item=0 name="/proc/987/mem" inode=1 dev=00:15 mode=0100600 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL
type=PROCTITLE msg=audit(1795341630.100:101): proctitle=707974686F6E330064756D702E7079
type=SYSCALL msg=audit(1795341700.100:102): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd5c3e2a10 a2=0 a3=0 items=1 ppid=1 pid=1234 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm="python3" exe="/usr/bin/python3.11" key="t1003_007_procfs"
type=PATH msg=audit(1795341700.100:102): item=0 name="/proc/555/mem" inode=1 dev=00:15 mode=0100600 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL
"""


def test_auditd_records_are_joined_by_the_search_itself(tmp_path: Path):
    """Each audit record is its own Splunk event; only the query's stats-by-serial makes one
    event of SYSCALL + PATH + PROCTITLE, as on a real Splunk."""
    path = tmp_path / "audit.log"
    path.write_text(AUDIT)
    events = read_log(path, "audit.log", "auditd", "web-01").splunk_events
    assert len(events) == 9
    assert run_spl('index=linux sourcetype=linux_audit name="/proc/*/mem" exe=*', events, NOW) == []
    conversions = Path(__file__).resolve().parents[1] / "conversions" / "splunk_auditd"
    rows = run_spl((conversions / "file_access_lnx_proc_mem_access.spl").read_text(), events, NOW)
    assert [(r["audit_serial"], r["name"], r.get("proctitle")) for r in rows] == [
        ("101", "/proc/987/mem", "python3 dump.py"), ("102", "/proc/555/mem", None)]     # mem reads alert; maps alone does not
    # opens the project's audit rules did not tag (key=) are not read, however they look
    path.write_text(AUDIT.replace('key="t1003_007_procfs"', 'key="other"'))
    other = read_log(path, "audit.log", "auditd", "web-01").splunk_events
    assert run_spl((conversions / "file_access_lnx_proc_mem_access.spl").read_text(), other, NOW) == []
    rows = run_spl((conversions / "correlation_lnx_proc_maps_then_mem_read.spl").read_text(), events, NOW)
    # maps (30 s before) and mem of 987 within the minute; 555's mem has no maps read
    assert [(r["Computer"], r["TargetProcessId"], r["event_type"]) for r in rows] == [("web-01", "987", "ProcMemRead")]


def test_streamstats_time_window_counts_only_the_recent_events_of_the_group():
    """The temporal correlation's form: `sort 0 _time | streamstats time_window=60s dc(t) by g`.
    An event sees the earlier events of its group at most 60 s older (and itself), nothing later."""
    events = [{"_time": NOW + s, "index": "i", "g": g, "t": t, "id": str(n)}
              for n, (s, g, t) in enumerate([(0, "a", "maps"), (30, "a", "mem"), (100, "a", "mem"), (200, "a", "maps"),
                                             (250, "a", "maps"), (255, "b", "mem"), (259, "a", "mem"), (330, "a", "mem")])]
    rows = run_spl('index=i | sort 0 _time | streamstats time_window=60s dc(t) as kinds count as n by g | table id kinds n',
                   events, NOW + 1000)
    assert [(r["id"], r["kinds"], r["n"]) for r in rows] == [
        ("0", 1, 1), ("1", 2, 2), ("2", 1, 1), ("3", 1, 1), ("4", 1, 2), ("5", 1, 1), ("6", 2, 3), ("7", 1, 1)]


def test_streamstats_time_window_refuses_other_aggregations():
    with pytest.raises(SplUnsupported, match="time_window"):
        run_spl('index=i | streamstats time_window=60s values(t) as v by g', [{"_time": NOW, "index": "i"}], NOW)
