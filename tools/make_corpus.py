"""Render testdata/corpus/corpus.yml into the four sensor formats, with truth labels.

corpus.yml is a list of cited activities (benign programs, attack tools and procedures, attack
context), each a sequence of `exec` (a process starts) and `open` (a file is opened) steps taken
from the program's public source or documentation (the `source` of each entry). This script
writes, for every step, what each sensor would record:

- auditd (raw audit.log): execve as SYSCALL + EXECVE + CWD + PATH + PROCTITLE, opens as
  SYSCALL + CWD + PATH + PROCTITLE (PROCTITLE cut at 128 bytes, untrusted strings hex-encoded);
- Sysmon for Linux (syslog lines, no xmlns): Event ID 1 for each exec (it logs no file reads);
- Tracee default JSON (integer flags): security_file_open for each open, sched_process_exec for each exec;
- Defender XDR rows: DeviceProcessEvents for execs, DeviceFileEvents (`FileRead`) for opens.

Labels: every event gets the entry's truth (T1003.007, malicious-context or benign); `fires`
(the regression record) is what the rules fire on it today, measured by running `dac`'s replay
on the rendered files when --record is given (review the label diff like a golden file).

    .venv/bin/python tools/make_corpus.py --record    # render, replay, write labels with fires
    .venv/bin/python tools/make_corpus.py             # render, keep the recorded fires
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from functools import lru_cache
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "testdata" / "corpus"
START = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc).timestamp()
HOSTS = ("ws-ubu-07", "lab-ubu-01", "web-01", "kiosk-03", "kali-01", "bsd-01", "gh-runner", "build-02")
DOMAIN = "corp.example"
USERS = {0: "root", 33: "www-data", 65534: "nobody", 1000: "alice", 1001: "svc-app", 1002: "bob", 1003: "runner",
         101: "systemd-coredump", 998: "osquery", 997: "falco", 999: "netdata"}
FLAGS = {"O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_CREAT": 0o100, "O_EXCL": 0o200, "O_NOCTTY": 0o400,
         "O_TRUNC": 0o1000, "O_APPEND": 0o2000, "O_NONBLOCK": 0o4000, "O_DSYNC": 0o10000, "O_DIRECT": 0o40000,
         "O_LARGEFILE": 0o100000, "O_DIRECTORY": 0o200000, "O_NOFOLLOW": 0o400000, "O_NOATIME": 0o1000000,
         "O_CLOEXEC": 0o2000000, "O_PATH": 0o10000000}
SYSCALL_NUMBERS = {"open": 2, "openat": 257, "openat2": 437, "execve": 59}


@lru_cache(maxsize=None)
def _columns(table: str) -> tuple[str, ...]:
    """The table's columns, in schema order (read once per table, not once per row)."""
    return tuple(c["name"] for c in json.loads((ROOT / "sentinel" / "schemas" / f"{table}.json").read_text())["columns"])


def _host(entry: dict) -> str:
    match = re.search(r"\b(" + "|".join(HOSTS) + r")\b", str(entry.get("why", "")))
    return match.group(1) if match else "lab-ubu-01"


def _flags(text: str) -> int:
    value = 0
    for name in str(text).replace(" ", "").split("|"):
        if name not in FLAGS:
            raise SystemExit(f"corpus.yml: unknown open flag {name!r}")
        value |= FLAGS[name]
    return value


def _unsafe(text: str) -> bool:
    return any(c in ' "' or ord(c) < 0x21 or ord(c) > 0x7e for c in text)


def _audit_string(text: str) -> str:
    """auditd's untrusted-string encoding: quoted when plain, upper-case hex otherwise."""
    return text.encode().hex().upper() if _unsafe(text) else f'"{text}"'


def _resolved(step: dict) -> str:
    path = step["path"]
    if step.get("dirfd") and not path.startswith("/"):
        path = f"{step['dirfd'].rstrip('/')}/{path}"
    return re.sub(r"^/proc/(self|thread-self)/", f"/proc/{step['pid']}/", path)


class Renderer:
    def __init__(self):
        self.audit: list[str] = []
        self.sysmon: list[str] = []
        self.tracee: list[str] = []
        self.mde_proc: list[dict] = []
        self.mde_file: list[dict] = []
        self.labels: dict[str, list[tuple[str, str, str]]] = {k: [] for k in ("audit", "sysmon", "tracee", "proc", "file")}
        self.serial = 40000
        self.record_id: dict[str, int] = {}
        self.report_id = 90000
        self.origin: dict[tuple[str, str], tuple[str, int]] = {}     # (file kind, event key) -> (entry id, step)
        self.step_number = 0

    # ------------------------------------------------------------------ helpers
    def _label(self, kind: str, key: str, entry: dict, what: str, truth: str) -> None:
        self.labels[kind].append((key, truth, f"{entry['id']}: {what}"))
        self.origin[(kind, key)] = (entry["id"], self.step_number)

    # ------------------------------------------------------------------ auditd
    def _audit_syscall(self, when: float, serial: int, syscall: str, step: dict, args: list[str], items: int, exit_code: int) -> str:
        uid = int(step.get("uid", 0))
        euid = int(step.get("euid", uid))
        auid = int(step.get("auid", uid if uid != 0 else (1000 if euid != uid else 4294967295)))
        comm = Path(step["exe"]).name[:15]
        return (f"type=SYSCALL msg=audit({when:.3f}:{serial}): arch=c000003e syscall={SYSCALL_NUMBERS[syscall]} success=yes "
                f"exit={exit_code} a0={args[0]} a1={args[1]} a2={args[2]} a3={args[3]} items={items} ppid={step['ppid']} "
                f"pid={step['pid']} auid={auid} uid={uid} gid={0 if uid == 0 else uid} euid={euid} suid={euid} fsuid={euid} "
                f"egid=0 sgid=0 fsgid=0 tty={'pts0' if auid != 4294967295 else '(none)'} ses={3 if auid != 4294967295 else 4294967295} "
                f"comm={_audit_string(comm)} exe={_audit_string(step['exe'])} subj=unconfined "
                f"key=\"{'t1003_007_exec' if syscall == 'execve' else 't1003_007_procfs'}\"")

    def _proctitle(self, when: float, serial: int, argv: list[str]) -> str:
        raw = "\x00".join(argv).encode()[:128]
        value = raw.hex().upper() if (len(argv) > 1 or _unsafe(argv[0])) else f'"{argv[0]}"'
        return f"type=PROCTITLE msg=audit({when:.3f}:{serial}): proctitle={value}"

    def audit_exec(self, when: float, step: dict, entry: dict) -> str:
        self.serial += 7
        s, argv = self.serial, [str(a) for a in step["argv"]]
        args = " ".join(f"a{i}={_audit_string(a)}" for i, a in enumerate(argv))
        inode = int(hashlib.sha1(step["exe"].encode()).hexdigest()[:6], 16)
        self.audit += [self._audit_syscall(when, s, "execve", step, ["7ffd5c3e2bb8", "7ffd5c3e2d60", "7ffd5c3e2f08", "8"], 2, 0),
                       f"type=EXECVE msg=audit({when:.3f}:{s}): argc={len(argv)} {args}",
                       f"type=CWD msg=audit({when:.3f}:{s}): cwd={_audit_string(step.get('cwd', '/'))}",
                       f"type=PATH msg=audit({when:.3f}:{s}): item=0 name={_audit_string(step['exe'])} inode={inode} dev=08:02 "
                       f"mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
                       f"type=PATH msg=audit({when:.3f}:{s}): item=1 name=\"/lib64/ld-linux-x86-64.so.2\" inode=1312534 dev=08:02 "
                       f"mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
                       self._proctitle(when, s, argv)]
        return str(s)

    def audit_open(self, when: float, step: dict, entry: dict) -> str:
        self.serial += 7
        s = self.serial
        syscall = step.get("syscall", "openat")
        flags = f"{_flags(step.get('flags', 'O_RDONLY')):x}"
        dirfd = "5" if step.get("dirfd") else "ffffff9c"
        args = {"open": ["7ffd5c3e4140", flags, "0", "0"], "openat": [dirfd, "7ffd5c3e4140", flags, "0"],
                "openat2": [dirfd, "7ffd5c3e4140", "7ffd5c3e4180", "18"]}[syscall]
        path = step["path"]
        mode = "0100600" if path.endswith("/mem") else ("0100400" if path.endswith("environ") else "0100444")
        inode = int(hashlib.sha1(_resolved(step).encode()).hexdigest()[:6], 16)
        self.audit += [self._audit_syscall(when, s, syscall, step, args, 1, 4),
                       f"type=CWD msg=audit({when:.3f}:{s}): cwd={_audit_string(step.get('cwd', '/'))}",
                       f"type=PATH msg=audit({when:.3f}:{s}): item=0 name={_audit_string(path)} inode={inode} dev=00:16 "
                       f"mode={mode} ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
                       self._proctitle(when, s, [str(a) for a in step["argv"]])]
        return str(s)

    # ------------------------------------------------------------------ Sysmon for Linux
    def sysmon_exec(self, when: float, host: str, step: dict) -> str:
        record = self.record_id[host] = self.record_id.get(host, 60000) + 3
        t = datetime.fromtimestamp(when, timezone.utc)
        guid = hashlib.sha1(f"{host}{step['pid']}{when}".encode()).hexdigest()
        pguid = hashlib.sha1(f"{host}{step['ppid']}".encode()).hexdigest()
        user = USERS.get(int(step.get("euid", step.get("uid", 0))), str(step.get("uid")))

        def esc(text: str) -> str:
            return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
                    .replace("\n", "&#10;"))
        data = {"RuleName": "-", "UtcTime": f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d}",
                "ProcessGuid": "{" + f"{guid[:8]}-{guid[8:12]}-{guid[12:16]}-{guid[16:20]}-{guid[20:32]}" + "}",
                "ProcessId": step["pid"], "Image": step["exe"], "FileVersion": "-", "Description": "-", "Product": "-",
                "Company": "-", "OriginalFileName": "-", "CommandLine": " ".join(map(str, step["argv"])),
                "CurrentDirectory": step.get("cwd", "/"), "User": user, "LogonGuid": "{00000000-0000-0000-0000-000000000000}",
                "LogonId": step.get("uid", 0), "TerminalSessionId": 3, "IntegrityLevel": "no level",
                "Hashes": "SHA256=" + hashlib.sha256(step["exe"].encode()).hexdigest().upper(),
                "ParentProcessGuid": "{" + f"{pguid[:8]}-{pguid[8:12]}-{pguid[12:16]}-{pguid[16:20]}-{pguid[20:32]}" + "}",
                "ParentProcessId": step["ppid"], "ParentImage": step.get("parent_exe", "-"),
                "ParentCommandLine": " ".join(map(str, step.get("parent_argv") or ["-"])), "ParentUser": user}
        xml = ('<Event><System><Provider Name="Linux-Sysmon" Guid="{ff032593-a8d3-4f13-b0d6-01fc615a0f97}"/><EventID>1</EventID>'
               f'<Version>5</Version><Level>4</Level><Task>1</Task><Opcode>0</Opcode><Keywords>0x8000000000000000</Keywords>'
               f'<TimeCreated SystemTime="{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}000Z"/><EventRecordID>{record}</EventRecordID>'
               f'<Correlation/><Execution ProcessID="698" ThreadID="698"/><Channel>Linux-Sysmon/Operational</Channel>'
               f'<Computer>{host}</Computer><Security UserId="0"/></System><EventData>'
               + "".join(f'<Data Name="{k}">{esc(str(v))}</Data>' for k, v in data.items()) + "</EventData></Event>")
        months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
        self.sysmon.append(f"{months[t.month - 1]} {t.day:2d} {t:%H:%M:%S} {host} sysmon: {xml}")
        return f"{host}:{record}"

    # ------------------------------------------------------------------ Tracee (default JSON, integer arguments)
    def tracee_open(self, when: float, host: str, step: dict) -> str:
        ns = int(round(when * 1e9))
        container = {}
        cid = ""
        if step.get("container"):
            cid = hashlib.sha1(f"{host}{step['pid']}".encode()).hexdigest() + hashlib.sha1(b"c").hexdigest()[:24]
            container = {"id": cid, "name": "app", "image": "docker.io/library/alpine:3.20"}
        event = {"timestamp": ns, "threadStartTime": ns - 1000000, "processorId": 1, "processId": step["pid"], "cgroupId": 5127,
                 "threadId": step["pid"], "parentProcessId": step["ppid"], "hostProcessId": step["pid"], "hostThreadId": step["pid"],
                 "hostParentProcessId": step["ppid"], "userId": int(step.get("euid", step.get("uid", 0))),
                 "mountNamespace": 4026531841, "pidNamespace": 4026531836, "processName": Path(step["exe"]).name[:15],
                 "executable": {"path": step["exe"]}, "hostName": host, "containerId": cid, "container": container,
                 "kubernetes": {}, "eventId": "732", "eventName": "security_file_open", "matchedPolicies": ["t1003-007"],
                 "argsNum": 6, "returnValue": 0, "syscall": step.get("syscall", "openat"), "stackAddresses": [0],
                 "contextFlags": {"containerStarted": bool(cid), "isCompat": False},
                 "args": [{"name": "pathname", "type": "const char*", "value": _resolved(step)},
                          {"name": "flags", "type": "int32", "value": _flags(step.get("flags", "O_RDONLY"))},
                          {"name": "dev", "type": "dev_t", "value": 22},
                          {"name": "inode", "type": "unsigned long", "value": int(hashlib.sha1(_resolved(step).encode()).hexdigest()[:6], 16)},
                          {"name": "ctime", "type": "unsigned long", "value": ns - 250000},
                          {"name": "syscall_pathname", "type": "const char*", "value": step["path"]}]}
        self.tracee.append(json.dumps(event, separators=(",", ":")))
        return str(len(self.tracee))

    def tracee_exec(self, when: float, host: str, step: dict) -> str:
        """sched_process_exec (Tracee's exec event), in the argument order of Tracee's event
        definition (docs/docs/events/builtin/extra/sched_process_exec.md): argv is an array."""
        ns = int(round(when * 1e9))
        exe = step["exe"]
        inode = int(hashlib.sha1(exe.encode()).hexdigest()[:6], 16)
        event = {"timestamp": ns, "threadStartTime": ns - 1000000, "processorId": 1, "processId": step["pid"], "cgroupId": 5127,
                 "threadId": step["pid"], "parentProcessId": step["ppid"], "hostProcessId": step["pid"], "hostThreadId": step["pid"],
                 "hostParentProcessId": step["ppid"], "userId": int(step.get("euid", step.get("uid", 0))),
                 "mountNamespace": 4026531841, "pidNamespace": 4026531836, "processName": Path(exe).name[:15],
                 "executable": {"path": exe}, "hostName": host, "containerId": "", "container": {},
                 "kubernetes": {}, "eventId": "715", "eventName": "sched_process_exec", "matchedPolicies": ["t1003-007"],
                 "argsNum": 15, "returnValue": 0, "syscall": "execve", "stackAddresses": [0],
                 "contextFlags": {"containerStarted": False, "isCompat": False},
                 "args": [{"name": "cmdpath", "type": "const char*", "value": exe},
                          {"name": "pathname", "type": "const char*", "value": exe},
                          {"name": "dev", "type": "dev_t", "value": 2050},
                          {"name": "inode", "type": "unsigned long", "value": inode},
                          {"name": "ctime", "type": "unsigned long", "value": 1790000000000000000},
                          {"name": "inode_mode", "type": "umode_t", "value": 33261},
                          {"name": "interpreter_pathname", "type": "const char*", "value": "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"},
                          {"name": "interpreter_dev", "type": "dev_t", "value": 2050},
                          {"name": "interpreter_inode", "type": "unsigned long", "value": 1311234},
                          {"name": "interpreter_ctime", "type": "unsigned long", "value": 1790000000000000000},
                          {"name": "argv", "type": "const char**", "value": [str(a) for a in step["argv"]]},
                          {"name": "interp", "type": "const char*", "value": exe},
                          {"name": "stdin_type", "type": "string", "value": "S_IFCHR"},
                          {"name": "stdin_path", "type": "char*", "value": "/dev/pts/0"},
                          {"name": "invoked_from_kernel", "type": "int", "value": 0}]}
        self.tracee.append(json.dumps(event, separators=(",", ":")))
        return str(len(self.tracee))

    # ------------------------------------------------------------------ Defender XDR
    def _mde_base(self, table: str, when: float, host: str) -> dict:
        row = dict.fromkeys(_columns(table))
        t = datetime.fromtimestamp(when, timezone.utc)
        self.report_id += 1
        row.update({"Timestamp": f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}0Z", "DeviceId": hashlib.sha1(host.encode()).hexdigest(),
                    "DeviceName": f"{host}.{DOMAIN}", "ReportId": self.report_id})
        return row

    def _process_columns(self, prefix: str, step: dict, when: float) -> dict:
        t = datetime.fromtimestamp(when - 0.01, timezone.utc)
        exe = step["exe"]
        digest = hashlib.sha256(exe.encode()).hexdigest()
        return {f"{prefix}FolderPath": exe, f"{prefix}FileName": Path(exe).name, f"{prefix}Id": step["pid"],
                f"{prefix}CommandLine": " ".join(map(str, step["argv"])),
                f"{prefix}CreationTime": f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}0Z",
                f"{prefix}SHA256": digest, f"{prefix}SHA1": digest[:40], f"{prefix}MD5": digest[:32]}

    def mde_exec(self, when: float, host: str, step: dict) -> str:
        row = self._mde_base("DeviceProcessEvents", when, host)
        user = USERS.get(int(step.get("euid", step.get("uid", 0))), str(step.get("uid")))
        parent = {"exe": step.get("parent_exe") or "/usr/bin/bash", "argv": step.get("parent_argv") or ["bash"], "pid": step["ppid"]}
        row.update({"ActionType": "ProcessCreated", "AccountDomain": host, "AccountName": user,
                    **{k.replace("ProcessFolderPath", "FolderPath").replace("ProcessFileName", "FileName"): v
                       for k, v in self._process_columns("Process", step, when).items()},
                    "ProcessCommandLine": " ".join(map(str, step["argv"])),
                    **self._process_columns("InitiatingProcess", parent, when - 1),
                    "InitiatingProcessAccountDomain": host, "InitiatingProcessAccountName": user,
                    "InitiatingProcessParentFileName": "sshd"})
        row.pop("ProcessFolderPath", None)
        row.pop("ProcessFileName", None)
        row = {k: v for k, v in row.items() if k in _columns("DeviceProcessEvents")}
        self.mde_proc.append(row)
        return f"{row['DeviceName']}:{row['ReportId']}"

    def mde_open(self, when: float, host: str, step: dict) -> str:
        row = self._mde_base("DeviceFileEvents", when, host)
        path = _resolved(step)
        user = USERS.get(int(step.get("euid", step.get("uid", 0))), str(step.get("uid")))
        row.update({"ActionType": "FileRead", "FileName": Path(path).name, "FolderPath": path, "FileSize": 0,
                    **self._process_columns("InitiatingProcess", step, when),
                    "InitiatingProcessAccountDomain": host, "InitiatingProcessAccountName": user,
                    "InitiatingProcessParentId": step["ppid"],
                    "InitiatingProcessParentFileName": Path(step.get("parent_exe") or "/usr/bin/bash").name})
        row = {k: v for k, v in row.items() if k in _columns("DeviceFileEvents")}
        self.mde_file.append(row)
        return f"{row['DeviceName']}:{row['ReportId']}"

    # ------------------------------------------------------------------
    def render(self, corpus: list[dict]) -> None:
        for number, entry in enumerate(corpus):
            host = _host(entry)
            when = START + number * 120
            for index, item in enumerate(entry["steps"]):
                when += 0.05
                self.step_number = index + 1
                kind, step = next(iter(item.items()))
                # a step may say its own truth: a wrapper that only starts the reader is context
                truth = step.get("truth", entry["truth"])
                what = (f"exec `{' '.join(map(str, step['argv']))[:90]}`" if kind == "exec"
                        else f"{Path(step['exe']).name} opens {step['path']} ({step.get('flags', 'O_RDONLY')})")
                what = what.replace("\r", "\\r").replace("\n", "\\n")      # one label line a event
                first_audit = len(self.audit)
                if kind == "exec":
                    self._label("audit", f"{host}:{self.audit_exec(when, step, entry)}", entry, what, truth)
                    self._label("sysmon", self.sysmon_exec(when, host, step), entry, what, truth)
                    self._label("tracee", self.tracee_exec(when, host, step), entry, what, truth)
                    self._label("proc", self.mde_exec(when, host, step), entry, what, truth)
                elif kind == "open":
                    self._label("audit", f"{host}:{self.audit_open(when, step, entry)}", entry, what, truth)
                    self._label("tracee", self.tracee_open(when, host, step), entry, what, truth)
                    self._label("file", self.mde_open(when, host, step), entry, what, truth)
                else:
                    raise SystemExit(f"corpus.yml: {entry['id']}: step {index + 1}: unknown kind {kind!r}")
                # several machines in one audit.log, as audisp-remote aggregates them: node= names each
                self.audit[first_audit:] = [f"node={host} {line}" for line in self.audit[first_audit:]]


FILES = {"audit": ("audit.log", "auditd", None), "sysmon": ("sysmon_syslog.log", "sysmon", None),
         "tracee": ("tracee_default.jsonl", "tracee", None), "proc": ("DeviceProcessEvents.jsonl", "mde", "DeviceProcessEvents"),
         "file": ("DeviceFileEvents.jsonl", "mde", "DeviceFileEvents")}


def _old_fires(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): v for k, v in (data.get("events") or {}).items() if isinstance(v, dict)}


def _exceptions() -> dict[tuple[str, int, str], dict[str, str]]:
    """exceptions.yml: the known misses and accepted false positives, each with its reason, by
    entry, step (1-based) and file kind (audit, sysmon, tracee, proc, file)."""
    path = CORPUS / "exceptions.yml"
    found: dict[tuple[str, int, str], dict[str, str]] = {}
    for item in (yaml.safe_load(path.read_text(encoding="utf-8")) or []) if path.exists() else []:
        kinds = item.get("files") or list(FILES)
        for step in item["steps"] if isinstance(item.get("steps"), list) else [item["step"]]:
            for kind in kinds:
                reason = {k: item[k] for k in ("known_miss", "accepted_fp") if item.get(k)}
                if not reason or kind not in FILES:
                    raise SystemExit(f"exceptions.yml: {item}: needs known_miss or accepted_fp, and files among {list(FILES)}")
                found[(item["entry"], int(step), kind)] = reason
    return found


def write(renderer: Renderer, fires: dict[str, dict[str, list[str]]] | None) -> None:
    exceptions = _exceptions()
    contents = {"audit": renderer.audit, "sysmon": renderer.sysmon, "tracee": renderer.tracee,
                "proc": [json.dumps(r) for r in renderer.mde_proc], "file": [json.dumps(r) for r in renderer.mde_file]}
    for kind, (name, fmt, table) in FILES.items():
        log = CORPUS / name
        log.write_text("".join(l + "\n" for l in contents[kind]), encoding="utf-8")
        label_path = CORPUS / f"{name}.labels.yml"
        old = _old_fires(label_path)
        lines = ["# Generated by tools/make_corpus.py from testdata/corpus/corpus.yml (truth: the entry's; fires: recorded",
                 "# from the replay with --record, the regression record). Edit corpus.yml, not this file.",
                 f"format: {fmt}", f"table: {table or 'null'}", "host: null", "events:"]
        for key, truth, comment in renderer.labels[kind]:
            recorded = (fires or {}).get(name, {}).get(key) if fires is not None else old.get(key, {}).get("fires", [])
            entry_id, step = renderer.origin[(kind, key)]
            extra = exceptions.get((entry_id, step, kind), {})
            value = {"truth": truth, "fires": sorted(recorded or []), **extra}
            lines.append(f"  {json.dumps(key)}: {yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()}  # {comment}")
        correlations = ((fires or {}).get(name, {}).get("#correlations") if fires is not None
                        else (yaml.safe_load(label_path.read_text(encoding="utf-8")) or {}).get("correlations") if label_path.exists() else None)
        if correlations:
            lines.append(yaml.safe_dump({"correlations": correlations}, sort_keys=False, width=200).rstrip())
        label_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def record() -> dict[str, dict[str, list[str]]]:
    """What every rule fires on each rendered event, by the target's own query (all engines must agree)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from dac.artifacts.build import compile_repository
    from dac.logs import read_log
    from dac.replay.labelled import Replayer
    from dac.replay.labels import load_labels
    from dac.core.repo import Layout
    layout = Layout(ROOT)
    ruleset, queries, _ = compile_repository(layout)
    replayer = Replayer(layout, queries, ruleset)
    out: dict[str, dict[str, list[str]]] = {}
    for label in load_labels(layout, ruleset):
        if not label.path.startswith("testdata/corpus/"):
            continue
        log = read_log(label.log_path, layout.rel(label.log_path), label.format, label.host, label.table, replayer.schemas)
        fired: dict[str, list[str]] = {}
        for v in replayer.run_log(label, log, queries):
            if any(isinstance(k, tuple) for k in v.hits):      # a correlation: its groups
                group_by = [str(g) for g in ruleset.by_name(v.rule).rule.group_by]
                fired.setdefault("#correlations", {})[v.rule_id] = [dict(zip(group_by, k)) for k in sorted(v.hits)]
                continue
            for key in v.hits:
                fired.setdefault(str(key), []).append(v.rule_id)
        out[label.log_path.name] = {k: (sorted(set(ids)) if k != "#correlations" else ids) for k, ids in fired.items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="replay the rendered files and record what fires")
    args = parser.parse_args()
    corpus = yaml.safe_load((CORPUS / "corpus.yml").read_text(encoding="utf-8"))
    renderer = Renderer()
    renderer.render(corpus)
    write(renderer, None)
    if args.record:
        write(renderer, record())
    return 0


if __name__ == "__main__":
    sys.exit(main())
