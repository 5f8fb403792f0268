"""What each generated query's first stage lets through, before and after issue 15's cost work.

    .venv/bin/python benchmarks/bench_cost.py [--events 1000000] [--before 47383a8] [--source auditd|sysmon|tracee|mde|all]

For every source a background corpus of --events mostly benign events (the mix below) is made,
indexed as the SIEM holds it (Splunk events in the DuckDB SPL engine, Defender rows in the KQL
engine), and every generated query of that source is run twice: as generated at --before (the
branch start) and as generated now. Reported per query:

- first stage: for SPL the share of the source's indexed events that the base search (before the
  first pipe, its subsearch included) passes on to the pipeline; for KQL the share of the table's
  rows on which any regex or `contains` of the query has to run (before: every row; now: the rows
  that pass one of the term filters in front of them);
- the replay time of the whole query (DuckDB engines; the subsearch included).

The background mix (fixed seed) is written down here because the fractions follow from it:
- auditd: 1/3 of the events are executions (SYSCALL + EXECVE + PROCTITLE) of everyday commands,
  2/3 opens under /proc that the project's rule tags (-F dir=/proc): ps/top-like reads of
  stat/status/cmdline/io, 2 % of opens benign reads of maps/smaps/environ (profilers, agents,
  `ps e`), 0.1 % of events malicious (bench_replay's MimiPenguin/gcore patterns);
- Sysmon (process creation): everyday commands, 2 % of them mentioning /proc/ files
  (`cat /proc/meminfo`, `grep VmRSS /proc/<pid>/status`, …), 0.5 % gdb/strace sessions, 0.1 %
  malicious command lines;
- Tracee: security_file_open of everyday files and /proc reads as for auditd, 1/4 of events
  sched_process_exec;
- Defender: DeviceFileEvents and DeviceProcessEvents half and half, the same mixes.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_replay import BAD_CMDS  # noqa: E402

NOW = datetime(2026, 11, 23)
EVERYDAY = [("/usr/bin/ls", "ls -la /var/tmp"), ("/usr/bin/ps", "ps aux"), ("/usr/bin/grep", "grep -i error /var/log/syslog"),
            ("/usr/bin/python3", "python3 /opt/app/worker.py --allusers"), ("/usr/bin/systemctl", "systemctl status nginx"),
            ("/usr/sbin/sshd", "sshd: alice [priv]"), ("/usr/bin/bash", "bash -c /usr/local/bin/backup.sh"),
            ("/usr/bin/tar", "tar czf /backup/etc.tgz /etc"), ("/usr/bin/curl", "curl -s http://localhost:9100/metrics"),
            ("/usr/bin/apt-get", "apt-get -q update"), ("/usr/bin/find", "find /tmp -mtime +7 -delete"),
            ("/usr/bin/sed", "sed -i s/a/b/ /etc/app.conf"), ("/usr/bin/awk", "awk {{print $1}} /var/log/nginx/access.log"),
            ("/usr/bin/sort", "sort -u /tmp/list"), ("/usr/bin/head", "head -n 20 /var/log/auth.log"),
            ("/usr/bin/date", "date +%s"), ("/usr/bin/id", "id -u"), ("/usr/bin/uname", "uname -r"),
            ("/usr/bin/docker", "docker ps --format {{{{.Names}}}}"), ("/usr/bin/git", "git pull --ff-only")]
PROC_MENTIONS = [("/usr/bin/cat", "cat /proc/meminfo"), ("/usr/bin/grep", "grep VmRSS /proc/{pid}/status"),
                 ("/usr/bin/cat", "cat /proc/{pid}/cmdline"), ("/usr/bin/cat", "cat /proc/cpuinfo")]
DEBUG_SESSIONS = [("/usr/bin/gdb", "gdb -q ./a.out"), ("/usr/bin/strace", "strace -f -p {pid}")]
ROUTINE_PROC = ["/proc/{pid}/stat", "/proc/{pid}/status", "/proc/{pid}/cmdline", "/proc/{pid}/io", "/proc/stat",
                "/proc/loadavg", "/proc/meminfo"]
BENIGN_RULE_FILES = ["/proc/self/maps", "/proc/{pid}/smaps", "/proc/{pid}/environ", "/proc/{pid}/maps"]
ROUTINE_FILES = ["/etc/ld.so.cache", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/passwd", "/var/log/syslog"]


def _command(rnd: random.Random) -> tuple[str, str, bool]:
    r, pid = rnd.random(), rnd.randint(300, 60000)
    if r < 0.001:
        exe, cmd = rnd.choice(BAD_CMDS)
        return exe, cmd.format(pid=pid), True
    if r < 0.006:
        exe, cmd = rnd.choice(DEBUG_SESSIONS)
    elif r < 0.026:
        exe, cmd = rnd.choice(PROC_MENTIONS)
    else:
        exe, cmd = rnd.choice(EVERYDAY)
    return exe, cmd.format(pid=pid), False


def _opened(rnd: random.Random) -> tuple[str, str, str, bool]:
    """(reader exe, its command line, the file opened, malicious)."""
    r, pid = rnd.random(), rnd.randint(300, 60000)
    if r < 0.0015:
        return "/usr/bin/python3", "python3 mimipenguin.py", f"/proc/{pid}/{rnd.choice(['maps', 'mem'])}", True
    if r < 0.0215:
        return "/usr/bin/py-spy", "py-spy top --pid 1", rnd.choice(BENIGN_RULE_FILES).format(pid=pid), False
    if r < 0.85:
        return "/usr/bin/ps", "ps aux", rnd.choice(ROUTINE_PROC).format(pid=pid), False
    return "/usr/bin/python3", "python3 /opt/app/worker.py", rnd.choice(ROUTINE_FILES), False


# --- the corpora, as the readers of dac.logs would hand them to the engines ------------------------

def audit_lines(n: int, seed: int = 21):
    rnd, serial, produced = random.Random(seed), 1000, 0
    while produced < n:
        serial += 1
        head = f"msg=audit({1795300000 + serial // 20}.{serial % 1000:03d}:{serial}):"
        pid = 4000 + serial % 97
        if rnd.random() < 1 / 3:
            exe, cmd, _ = _command(rnd)
            args = cmd.split(" ")
            lines = [f"type=SYSCALL {head} arch=c000003e syscall=59 success=yes exit=0 a0=55d a1=55e a2=55f a3=0 items=2 "
                     f'ppid=1 pid={pid} auid=1000 uid=0 gid=0 euid=0 comm="{exe.rsplit("/", 1)[1]}" exe="{exe}" key="t1003_007_exec"',
                     f"type=EXECVE {head} argc={len(args)} " + " ".join(f'a{i}="{a}"' for i, a in enumerate(args))]
        else:
            exe, cmd, path, _ = _opened(rnd)
            lines = [f"type=SYSCALL {head} arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd a2=80000 a3=0 "
                     f'items=1 ppid=1 pid={pid} auid=0 uid=0 gid=0 euid=0 comm="{exe.rsplit("/", 1)[1]}" exe="{exe}" '
                     'key="t1003_007_procfs"',
                     f'type=CWD {head} cwd="/root"',
                     f'type=PATH {head} item=0 name="{path}" inode=1 dev=00:05 mode=0100444 nametype=NORMAL']
        lines.append(f"type=PROCTITLE {head} proctitle={cmd.encode().replace(b' ', bytes([0])).hex().upper()}")
        yield from lines
        produced += len(lines)


def _sysmon_line(i: int, exe: str, cmd: str, template: str) -> str:
    second = 1795300000 + i // 50
    stamp = datetime.utcfromtimestamp(second).strftime("%Y-%m-%dT%H:%M:%S")
    out = template.replace("__TIME__", f"{stamp}.{i % 1000:03d}000000Z").replace("__UTC__", f"{stamp.replace('T', ' ')}.{i % 1000:03d}")
    return (out.replace("__IMAGE__", exe).replace("__CMD__", cmd.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;"))
            .replace("__PID__", str(5000 + i % 30000)))


def sysmon_lines(n: int, seed: int = 22):
    template = ('Nov 22 06:00:00 web-01 sysmon: <Event><System><Provider Name="Linux-Sysmon" Guid="{ff032593-a8d3-4f13-b0d6-01fc615a0f97}"/>'
                '<EventID>1</EventID><Version>5</Version><Level>4</Level><Task>1</Task><Opcode>0</Opcode>'
                '<Keywords>0x8000000000000000</Keywords><TimeCreated SystemTime="__TIME__"/><EventRecordID>1</EventRecordID>'
                '<Correlation/><Execution ProcessID="698" ThreadID="698"/><Channel>Linux-Sysmon/Operational</Channel>'
                '<Computer>web-01</Computer><Security UserId="0"/></System><EventData><Data Name="RuleName">-</Data>'
                '<Data Name="UtcTime">__UTC__</Data><Data Name="ProcessGuid">{a32d90c6-5cfe-c6bb-d409-cdcf4817cf6d}</Data>'
                '<Data Name="ProcessId">__PID__</Data><Data Name="Image">__IMAGE__</Data><Data Name="CommandLine">__CMD__</Data>'
                '<Data Name="CurrentDirectory">/root</Data><Data Name="User">root</Data><Data Name="ParentProcessId">1</Data>'
                '<Data Name="ParentImage">/usr/bin/bash</Data><Data Name="ParentCommandLine">bash</Data></EventData></Event>')
    rnd = random.Random(seed)
    for i in range(n):
        exe, cmd, _ = _command(rnd)
        yield _sysmon_line(i, exe, cmd, template)


def tracee_lines(n: int, seed: int = 23):
    rnd = random.Random(seed)
    for i in range(n):
        base = {"timestamp": (1795300000 + i // 50) * 10**9 + i % 1000, "processId": 5000 + i % 30000, "parentProcessId": 1,
                "userId": 0, "hostName": "web-01", "returnValue": 0}
        if rnd.random() < 0.25:
            exe, cmd, _ = _command(rnd)
            event = {**base, "processName": exe.rsplit("/", 1)[1], "executable": {"path": exe}, "eventName": "sched_process_exec",
                     "syscall": "execve", "args": [{"name": "pathname", "type": "const char*", "value": exe},
                                                   {"name": "argv", "type": "const char**", "value": cmd.split(" ")}]}
        else:
            exe, cmd, path, _ = _opened(rnd)
            event = {**base, "processName": exe.rsplit("/", 1)[1], "executable": {"path": exe}, "command_line": cmd,
                     "eventName": "security_file_open", "syscall": "openat",
                     "args": [{"name": "pathname", "type": "const char*", "value": path},
                              {"name": "flags", "type": "string", "value": "O_RDONLY|O_CLOEXEC"},
                              {"name": "syscall_pathname", "type": "const char*", "value": path}]}
        yield json.dumps(event, separators=(",", ":"))


def mde_rows(n: int, seed: int = 24):
    rnd = random.Random(seed)
    for i in range(n):
        ts = f"2026-11-22T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"
        if i % 2:
            exe, cmd, _ = _command(rnd)
            yield "DeviceProcessEvents", {"Timestamp": ts, "DeviceName": f"h{i % 50}", "ReportId": i, "FolderPath": exe,
                                          "FileName": exe.rsplit("/", 1)[1], "ProcessCommandLine": cmd, "AccountName": "root",
                                          "ProcessId": 5000 + i % 30000, "ActionType": "ProcessCreated",
                                          "InitiatingProcessCommandLine": "bash", "InitiatingProcessFolderPath": "/usr/bin/bash"}
        else:
            exe, cmd, path, _ = _opened(rnd)
            yield "DeviceFileEvents", {"Timestamp": ts, "DeviceName": f"h{i % 50}", "ReportId": i, "FolderPath": path,
                                       "FileName": path.rsplit("/", 1)[1], "InitiatingProcessFolderPath": exe,
                                       "InitiatingProcessFileName": exe.rsplit("/", 1)[1], "InitiatingProcessCommandLine": cmd,
                                       "InitiatingProcessId": 4000 + i % 97, "InitiatingProcessAccountName": "root",
                                       "ActionType": "FileOpened"}


def _splunk_events(fmt: str, path: Path):
    """The file's Splunk events through dac's reader, in batches (never a million dicts at once)."""
    if fmt == "auditd":
        from dac.logs.auditd import splunk_events_of_file
        yield from splunk_events_of_file(path, "web-01")
        return
    from dac.logs import read_log
    batch_dir = Path(tempfile.mkdtemp(prefix="dac-bench-cost-"))
    with path.open(encoding="utf-8") as f:
        while True:
            lines = [line for _, line in zip(range(20000), f)]
            if not lines:
                break
            part = batch_dir / f"part.{'jsonl' if fmt == 'tracee' else 'log'}"
            part.write_text("".join(lines), encoding="utf-8")
            yield from read_log(part, part.name, fmt, "web-01").splunk_events


# --- the queries, before and after -------------------------------------------------------------------

def _queries(rev: str | None) -> dict[str, str]:
    """Generated query files (path -> text) at a git revision, or in the working tree."""
    if rev is None:
        return {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8")
                for p in sorted((REPO / "conversions").rglob("*")) if p.suffix in (".spl", ".kql")}
    names = subprocess.run(["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", rev, "conversions/"],
                           capture_output=True, text=True, check=True).stdout.split()
    return {n: subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{n}"], capture_output=True, text=True,
                              check=True).stdout for n in names if n.endswith((".spl", ".kql"))}


SPL_DIRS = {"auditd": "conversions/splunk_auditd/", "sysmon": "conversions/splunk_sysmon/", "tracee": "conversions/splunk_tracee/"}


def _timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def bench_spl(fmt: str, n: int, before: dict[str, str], after: dict[str, str]) -> list[dict]:
    from dac.engines.spl.pipeline import parse_pipeline
    from dac.engines.spl.sql import SplIndex, SqlSession
    gen = {"auditd": audit_lines, "sysmon": sysmon_lines, "tracee": tracee_lines}[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.log"
        with path.open("w", encoding="utf-8") as f:
            for line in gen(n):
                f.write(line + "\n")
        index = SplIndex(_splunk_events(fmt, path))
    total = index.con.execute("SELECT count(*) FROM spl_index").fetchone()[0]
    out = []
    for name in sorted(set(before) | set(after)):
        if not name.startswith(SPL_DIRS[fmt]):
            continue
        row = {"query": name, "source": fmt, "events": total}
        for when, texts in (("before", before), ("after", after)):
            if name not in texts:
                continue
            session = SqlSession(index, NOW)        # a fresh session: no prefix cached from another query
            base = parse_pipeline(texts[name]).base_text
            passed, _ = _timed(lambda: session.run(f"{base} | stats count as n"))
            rows, seconds = _timed(lambda: SqlSession(index, NOW).run(texts[name]))
            row[when] = {"first_stage": (passed[0]["n"] if passed else 0) / total, "seconds": round(seconds, 2),
                         "rows": len(rows)}
        out.append(row)
    return out


def bench_kql(n: int, before: dict[str, str], after: dict[str, str]) -> list[dict]:
    from dac.engines.kql.engine import KqlEngine
    from dac.compile.kql_analyzer import load_schemas
    engine = KqlEngine(load_schemas(REPO / "sentinel" / "schemas"), NOW)
    tables: dict[str, list[dict]] = {}
    for table, row in mde_rows(n):
        tables.setdefault(table, []).append(row)
    for table, rows in tables.items():
        engine.load(table, rows)
    del tables
    counts = {t: engine.run(f"{t} | count")[0]["Count"] for t in ("DeviceFileEvents", "DeviceProcessEvents")}
    out = []
    for name in sorted(set(before) | set(after)):
        if not name.endswith(".kql") or name.startswith("conversions/hunting/"):
            continue
        row = {"query": name, "source": "mde"}
        for when, texts in (("before", before), ("after", after)):
            if name not in texts:
                continue
            text = texts[name]
            table = next(t for t in counts if t in text)
            where = _scan_filter(text)
            # without a term filter the scans run on every row (after ActionType, which all rows pass)
            share = 1.0 if where is None else engine.run(f"{table} | where {where} | count")[0]["Count"] / counts[table]
            rows, seconds = _timed(lambda: engine.run(text))
            row[when] = {"first_stage": share, "seconds": round(seconds, 2), "rows": len(rows), "filter": where}
        row["events"] = counts[table]
        out.append(row)
    return out


_GUARDED = re.compile(r'\((?P<pre>(?:\w+ (?:startswith|has|has_any) (?:"[^"]*"|\([^)]*\)) and )+)\w+ matches regex ')


def _scan_filter(text: str) -> str | None:
    """The rows on which some regex or `contains` of the query runs: those passing any of the term
    filters in front of them (None: a scan without one, so every row). The documented
    ProcMemAccess exception is left out: it only runs after its conjunction's FolderPath filter."""
    from dac.checks.kql_cost import check_kql_cost
    pres = [m["pre"].removesuffix(" and ") for m in _GUARDED.finditer(text)]
    # a scan without its own filter that kql_cost accepts comes after one of these in its conjunction
    if not pres or any(not v.clause.startswith('InitiatingProcessCommandLine matches regex "(\\\\[0-9a-f')
                       for v in check_kql_cost(text)):
        return None
    return " or ".join(f"({p})" for p in dict.fromkeys(pres))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--before", default="47383a8", help="git revision of the queries before (the branch start)")
    parser.add_argument("--source", default="all", choices=["all", "auditd", "sysmon", "tracee", "mde"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    before, after = _queries(args.before), _queries(None)
    results = []
    for fmt in (["auditd", "sysmon", "tracee", "mde"] if args.source == "all" else [args.source]):
        started = time.perf_counter()
        results += bench_kql(args.events, before, after) if fmt == "mde" else bench_spl(fmt, args.events, before, after)
        print(f"# {fmt}: {args.events} events generated, indexed and searched in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| query | events | first stage before | after | replay before | after | rows |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        b, a = r.get("before", {}), r.get("after", {})

        def pct(x):
            return "-" if x is None else f"{100 * x:.2f} %"
        print(f"| `{r['query'].removeprefix('conversions/')}` | {r['events']:,} | {pct(b.get('first_stage'))} | "
              f"{pct(a.get('first_stage'))} | {b.get('seconds', '-')} s | {a.get('seconds', '-')} s | "
              f"{b.get('rows', '-')}/{a.get('rows', '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
