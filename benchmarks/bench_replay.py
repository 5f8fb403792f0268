"""Benchmark the three replay engines on 1,000,000 synthetic Defender rows and 1,000,000 audit records.

    .venv/bin/python benchmarks/bench_replay.py [--events 1000000] [--engine sigma|kql|spl|all]

A few percent of the synthetic events are malicious (MimiPenguin-like reads of /proc/<pid>/mem
and maps, dd/grep dumping commands); the rest are benign opens and process starts. Each engine
runs in its own child process so its peak memory is its own. Reports events/s and peak RSS per
engine. Targets (issue 3): >= 100,000 events/s and < 2 GiB peak per engine.
"""
from __future__ import annotations

import argparse
import gc
import json
from datetime import datetime
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENIGN_FILES = ["/etc/ld.so.cache", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/proc/self/maps", "/proc/meminfo",
                "/proc/{pid}/status", "/proc/{pid}/stat", "/var/log/syslog", "/proc/{pid}/smaps"]
BENIGN_CMDS = [("/usr/bin/ls", "ls -la /tmp"), ("/usr/bin/ps", "ps aux"), ("/usr/bin/grep", "grep status /var/log/syslog"),
               ("/usr/bin/python3", "python3 /opt/app/worker.py --allusers"), ("/usr/bin/cat", "cat /proc/meminfo")]
BAD_CMDS = [("/usr/bin/dd", "dd if=/proc/{pid}/mem of=/tmp/x bs=1 skip=1 count=10"),
            ("/usr/bin/grep", 'grep -E ^[0-9a-f-]* r /proc/{pid}/maps'),
            ("/usr/bin/python3", "python3 mimipenguin.py"), ("/usr/bin/python3", "python3 laZagne.py memory"),
            ("/usr/bin/gdb", "gdb -p {pid} -batch -ex dump memory /tmp/x 0x1000 0x2000"),
            ("/usr/bin/cat", "cat /proc/{pid}/environ")]


def mde_rows(n: int, seed: int = 7):
    rnd = random.Random(seed)
    for i in range(n):
        pid = rnd.randint(300, 60000)
        ts = f"2026-11-22T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"
        malicious = rnd.random() < 0.03
        if i % 2:
            image, cmd = rnd.choice(BAD_CMDS if malicious else BENIGN_CMDS)
            yield "DeviceProcessEvents", {"Timestamp": ts, "DeviceName": f"h{i % 50}", "ReportId": i, "FolderPath": image,
                                          "FileName": image.rsplit("/", 1)[1], "ProcessCommandLine": cmd.format(pid=pid),
                                          "AccountName": "root", "ProcessId": pid, "ActionType": "ProcessCreated"}
        else:
            path = f"/proc/{pid}/{rnd.choice(['mem', 'maps'])}" if malicious else rnd.choice(BENIGN_FILES).format(pid=pid)
            yield "DeviceFileEvents", {"Timestamp": ts, "DeviceName": f"h{i % 50}", "ReportId": i, "FolderPath": path,
                                       "FileName": path.rsplit("/", 1)[1], "InitiatingProcessFolderPath": "/usr/bin/python3",
                                       "InitiatingProcessFileName": "python3", "InitiatingProcessCommandLine": "python3 x.py",
                                       "InitiatingProcessId": 4000 + i % 97, "InitiatingProcessAccountName": "root",
                                       "ActionType": "FileRead"}


def audit_lines(n_records: int, seed: int = 11):
    """Raw audit.log lines, one event = records sharing a serial: opens are SYSCALL + PATH +
    PROCTITLE, executions SYSCALL + EXECVE + PROCTITLE. A few percent are malicious: a process that
    reads /proc/<pid>/maps and then /proc/<pid>/mem of the same target (MimiPenguin's pattern, which
    the correlation rule looks for), gdb reading smaps then mem as gcore does, one shell's `cat`s
    reading the environ of two processes (the environ sweeps), or a dumping command line."""
    rnd = random.Random(seed)
    serial = 1000
    produced = 0

    def event(syscall: str, pid: int, exe: str, title: str, path: str | None, flags: str = "80000", ppid: int = 1):
        nonlocal serial
        serial += 1
        epoch = f"{1795000000 + serial // 10}.{serial % 1000:03d}"
        head = f"msg=audit({epoch}:{serial}):"
        comm = exe.rsplit("/", 1)[1]
        lines = [f"type=SYSCALL {head} arch=c000003e syscall={syscall} success=yes exit=3 a0=ffffff9c "
                 f"a1=7ffd a2={flags} a3=0 items=1 ppid={ppid} pid={pid} auid=0 uid=0 gid=0 euid=0 "
                 f'comm="{comm}" exe="{exe}" key="t1003_007_procfs"']
        if path is not None:
            lines.append(f'type=PATH {head} item=0 name="{path}" inode=1 dev=00:05 mode=0100600 nametype=NORMAL')
        else:
            args = title.split(" ")
            lines.append(f"type=EXECVE {head} argc={len(args)} " + " ".join(f'a{i}="{a}"' for i, a in enumerate(args)))
        lines.append(f"type=PROCTITLE {head} proctitle={title.encode().replace(b' ', bytes([0])).hex().upper()}")
        return lines

    while produced < n_records:
        pid, target = 4000 + serial % 97, rnd.randint(300, 60000)
        malicious = rnd.random() < 0.03
        if rnd.random() < 0.34:                                 # a process starts
            exe, cmd = rnd.choice(BAD_CMDS if malicious else BENIGN_CMDS)
            lines = event("59", pid, exe, cmd.format(pid=target), None)
        elif malicious and rnd.random() < 0.25:                 # gcore's gdb: smaps, then mem (O_RDWR)
            title = f"/usr/bin/gdb --batch -x /tmp/gcore.gdb -p {target}"
            lines = (event("257", pid, "/usr/bin/gdb", title, f"/proc/{target}/smaps")
                     + event("257", pid, "/usr/bin/gdb", title, f"/proc/{target}/mem", flags="80002"))
        elif malicious and rnd.random() < 0.2:                  # one shell's cats sweep two environments
            shell, other = 3000 + serial % 89, target + 1
            lines = []
            for n, victim in enumerate((target, other)):
                cmd = f"cat /proc/{victim}/environ"
                lines += (event("59", pid + n, "/usr/bin/cat", cmd, None, ppid=shell)
                          + event("257", pid + n, "/usr/bin/cat", cmd, f"/proc/{victim}/environ", ppid=shell))
        elif malicious:                                         # maps, then mem of the same target
            lines = (event("257", pid, "/usr/bin/python3", "python3 mimipenguin.py", f"/proc/{target}/maps")
                     + event("257", pid, "/usr/bin/python3", "python3 mimipenguin.py", f"/proc/{target}/mem"))
        else:
            path = rnd.choice(BENIGN_FILES).format(pid=target)
            lines = event("257", pid, "/usr/bin/cat", "cat /proc/meminfo", path)
        for line in lines:
            yield line
        produced += len(lines)


def run_engine(engine: str, n: int) -> dict:
    sys.path.insert(0, str(REPO / "tools"))
    from dac.compile.convert import compile_rules
    from dac.core.repo import Layout
    from dac.rules.ruleset import load_rules
    from dac.compile.targets import load_targets
    from dac.logs import read_log
    import tempfile
    layout = Layout(REPO)
    targets, _ = load_targets(layout)
    ruleset = load_rules(layout)
    all_queries = compile_rules(ruleset, targets)
    # the Sigma engine evaluates correlations from its base-rule matches (replay.py); here it runs
    # the detection rules, while the KQL and SPL engines run every generated query, correlations included
    queries = [q for q in all_queries if not q.rule.is_correlation] if engine == "sigma" else all_queries
    with tempfile.TemporaryDirectory() as tmp:
        if engine in ("sigma", "kql"):
            tables: dict[str, list[dict]] = {"DeviceFileEvents": [], "DeviceProcessEvents": []}
            for table, row in mde_rows(n):
                row["dac_key"] = str(row["ReportId"])
                tables[table].append(row)
        log_file = Path(tmp) / "audit.log"
        if engine == "spl":
            log_file.write_text("\n".join(audit_lines(n)) + "\n")
        started = time.perf_counter()
        processed, hits, passes, ingest = 0, 0, 0, None
        if engine == "sigma":
            from dac.engines.sigma.engine import SigmaEngine
            from dac.core.repo import Layout
            from dac.logs.scopes import load_scopes
            from dac.replay.scope import rows_in_scope
            sigma = SigmaEngine()
            for q in queries:
                if q.target.format == "mde":
                    table = q.scope.state["source"]
                    hits += len(sigma.matches(q.rule.rule, q.target, tables[table]))
                    passes += len(tables[table])
            processed = sum(len(t) for t in tables.values())
            # one dataset in memory at a time, as the replay holds one log file at a time
            wall_mde = time.perf_counter() - started
            del tables
            gc.collect()
            log_file.write_text("\n".join(audit_lines(n)) + "\n")
            audit = read_log(log_file, "audit.log", "auditd", "bench-host", splunk=False)   # Sigma reads the rows only
            load_scopes(Layout(REPO)).tag_all("auditd", audit.rows)
            started = time.perf_counter() - wall_mde
            for q in queries:
                if q.target.format == "auditd":
                    rows = rows_in_scope(q, audit)
                    hits += len(sigma.matches(q.rule.rule, q.target, rows))
                    passes += len(rows)
            processed += n
        elif engine == "kql":
            from dac.engines.kql.engine import KqlEngine
            from dac.compile.kql_analyzer import load_schemas
            kql = KqlEngine(load_schemas(layout.schemas), datetime(2026, 11, 23))
            for table, rows in tables.items():
                kql.load(table, rows)
            ingest = time.perf_counter() - started      # like Sentinel's ingestion: reported apart
            started = time.perf_counter()
            for q in queries:
                if q.target.format == "mde":
                    hits += len(kql.run(q.text))
                    passes += len(tables[q.scope.state["source"]])
            processed = sum(len(t) for t in tables.values())
        elif engine == "spl":
            # the records go into DuckDB one at a time (never a million dicts at once); like
            # Splunk's indexing and the KQL engine's load, that is reported apart
            from dac.logs.auditd import splunk_events_of_file as auditd_splunk_events
            from dac.engines.spl.sql import SplIndex, SqlSession
            index = SplIndex(auditd_splunk_events(log_file, "bench-host"))
            ingest = time.perf_counter() - started
            session = SqlSession(index, datetime(2026, 11, 23))
            started = time.perf_counter()
            records = index.con.execute("SELECT count(*) FROM spl_index").fetchone()[0]
            for q in queries:
                if q.target.format == "auditd":
                    hits += len(session.run(q.text))
                    passes += records
            processed = records
        wall = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": engine, "events_processed": processed, "rule_passes": passes, "seconds": round(wall, 2),
            "events_per_second": int(processed / wall) if wall else None,
            "event_rule_pairs_per_second": int(passes / wall) if wall else None,
            "hits": hits, "peak_rss_mib": round(peak_mib), "ingest_seconds": round(ingest, 2) if ingest else None}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--engine", default="all", choices=["all", "sigma", "kql", "spl"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_engine(args.engine, args.events)))
        return 0
    engines = ["sigma", "kql", "spl"] if args.engine == "all" else [args.engine]
    for engine in engines:
        proc = subprocess.run([sys.executable, __file__, "--child", "--engine", engine, "--events", str(args.events)],
                              capture_output=True, text=True)
        if proc.returncode:
            print(f"{engine}: failed\n{proc.stderr[-2000:]}")
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        verdict = "ok" if result["events_per_second"] >= 100_000 and result["peak_rss_mib"] < 2048 else "MISSED TARGET"
        print(f"{engine}: {result['events_processed']} input events, all its rules, in {result['seconds']} s = "
              f"{result['events_per_second']} events/s ({result['event_rule_pairs_per_second']} event x rule/s), "
              f"peak {result['peak_rss_mib']} MiB, {result['hits']} hits [{verdict}]"
              + (f"; loading the rows into DuckDB took another {result['ingest_seconds']} s" if result["ingest_seconds"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
