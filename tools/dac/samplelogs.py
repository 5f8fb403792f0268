"""Read sample logs in the native formats the SIEMs hold, as each engine needs them.

Formats: `mde` (Defender XDR advanced hunting rows, JSON lines), `auditd` (raw audit.log),
`sysmon` (Sysmon for Linux Event XML, one event a line), `tracee` (Tracee JSON lines).
A malformed line is reported with file and line and skipped (LogProblem); the caller decides
whether that fails the run.

Every event gets a key (`dac_key`) that labels refer to: ReportId (mde), the audit serial
(auditd), EventRecordID (sysmon), the line number (tracee).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

FORMATS = ("mde", "auditd", "sysmon", "tracee")
AUDIT_RE = re.compile(r"^type=(?P<type>\S+) msg=audit\((?P<epoch>\d+\.\d+):(?P<serial>\d+)\): ?(?P<body>.*)$")
KV_RE = re.compile(r'(\w+)=("(?:[^"]*)"|\S+)')
EXECVE_SYSCALLS = {"59", "execve", "322", "execveat"}
OPEN_SYSCALLS = {"2": "a1", "open": "a1", "257": "a2", "openat": "a2", "437": None, "openat2": None}


@dataclass(frozen=True)
class LogProblem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class SampleLog:
    path: str
    format: str
    splunk_events: list[dict] = field(default_factory=list)   # as Splunk indexes them
    rows: list[dict] = field(default_factory=list)            # one row per labelled event (Sigma/KQL)
    problems: list[LogProblem] = field(default_factory=list)


def _iso_to_epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def read_mde(path: Path, rel: str) -> SampleLog:
    log = SampleLog(rel, "mde")
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            row["dac_key"] = str(row["ReportId"])
            row["_time"] = _iso_to_epoch(str(row["Timestamp"]))
        except (ValueError, KeyError) as e:
            log.problems.append(LogProblem(rel, number, f"malformed Defender row: {e}"))
            continue
        log.rows.append(row)
    return log


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def decode_proctitle(value: str) -> str:
    """auditd writes PROCTITLE as hex of the NUL-separated argv unless it is plain text."""
    if len(value) % 2 == 0 and re.fullmatch(r"[0-9A-Fa-f]+", value):
        return bytes.fromhex(value).replace(b"\x00", b" ").decode("utf-8", "replace").strip()
    return value


def _lines(path: Path):
    """(line number, line) without holding the whole file in memory."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            yield number, line.rstrip("\r\n")


def _audit_records(path: Path, rel: str):
    """(line number, line, record match, key=value fields) per audit record, or a LogProblem."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        match = AUDIT_RE.match(line)
        if not match:
            yield LogProblem(rel, number, "malformed audit record (expected type=… msg=audit(epoch:serial): …)")
            continue
        fields = {k: _unquote(v) for k, v in KV_RE.findall(match["body"])}
        if match["type"] in ("SYSCALL", "PATH", "PROCTITLE") and not fields:
            yield LogProblem(rel, number, f"truncated {match['type']} record")
            continue
        yield number, line, match, fields


def _splunk_audit_event(line: str, match: re.Match, fields: dict, host: str) -> dict:
    return {"_raw": line, "_time": float(match["epoch"]), "host": host, "index": "linux",
            "sourcetype": "linux_audit", "type": match["type"], **fields}


def auditd_splunk_events(path: Path, host: str):
    """The records of an audit.log as Splunk events, one at a time (malformed lines skipped;
    read_auditd reports them)."""
    for record in _audit_records(path, str(path)):
        if not isinstance(record, LogProblem):
            number, line, match, fields = record
            yield _splunk_audit_event(line, match, fields, host)


def read_auditd(path: Path, rel: str, host: str, splunk: bool = True) -> SampleLog:
    """Records become Splunk events (one per record, key=value extracted with quotes removed,
    as Splunk's automatic extraction does); records sharing a serial become one assembled row,
    the same assembly the Splunk auditd pipeline performs with stats. splunk=False skips the
    per-record events (for callers that only need the rows: they are most of the memory)."""
    log = SampleLog(rel, "auditd")
    assembled: dict[str, dict] = {}
    for record in _audit_records(path, rel):
        if isinstance(record, LogProblem):
            log.problems.append(record)
            continue
        number, line, match, fields = record
        if splunk:
            log.splunk_events.append(_splunk_audit_event(line, match, fields, host))
        row = assembled.setdefault(match["serial"], {"dac_key": match["serial"], "host": host,
                                                     "_time": float(match["epoch"]), "dac_line": number})
        if match["type"] == "SYSCALL":
            row.update({k: v for k, v in fields.items() if k != "type"})
        elif match["type"] == "PATH" and "name" in fields:
            row.setdefault("names", []).append(fields["name"])
        elif match["type"] == "CWD":
            row["cwd"] = fields.get("cwd")
        elif match["type"] == "PROCTITLE":
            row["proctitle"] = decode_proctitle(fields.get("proctitle", ""))
    for row in assembled.values():
        names = row.pop("names", [])
        row["name"] = names[0] if len(names) == 1 else (sorted(set(names)) or None)
        row["dac_categories"] = auditd_categories(row)
        log.rows.append(row)
    return log


def auditd_categories(row: dict) -> set[str]:
    """The Sigma log sources an assembled auditd event belongs to (mirrors the Splunk
    pipeline's source_filter: execve for process_creation, read opens for file_access)."""
    categories = {"auditd"}
    syscall = row.get("syscall")
    if syscall in EXECVE_SYSCALLS:
        categories.add("process_creation")
    if syscall in OPEN_SYSCALLS:
        flags_arg = OPEN_SYSCALLS[syscall]
        flags = row.get(flags_arg) if flags_arg else None
        if flags is None or not re.search(r"[159dD]$", flags):
            categories.add("file_access")
    return categories


def read_sysmon(path: Path, rel: str) -> SampleLog:
    log = SampleLog(rel, "sysmon")
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            root = ET.fromstring(re.sub(r'\sxmlns="[^"]+"', "", line, count=1))
            system = root.find("System")
            row = {
                "EventID": system.findtext("EventID"),
                "Computer": system.findtext("Computer"),
                "EventRecordID": system.findtext("EventRecordID"),
            }
            for data in root.find("EventData"):
                row[data.get("Name")] = data.text or ""
            row["dac_key"] = row["EventRecordID"]
            row["_time"] = _iso_to_epoch(row.get("UtcTime", "1970-01-01 00:00:00").replace(" ", "T") + "+00:00")
        except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
            log.problems.append(LogProblem(rel, number, f"malformed Sysmon event XML: {e}"))
            continue
        log.rows.append(row)
        log.splunk_events.append({**row, "_raw": line, "host": row["Computer"], "index": "linux",
                                  "sourcetype": "sysmon:linux"})
    return log


def read_tracee(path: Path, rel: str) -> SampleLog:
    log = SampleLog(rel, "tracee")
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            args = event.get("args") or []
            if not isinstance(event, dict) or not isinstance(args, list):
                raise ValueError("not a Tracee event object")
            names = [str(a["name"]) for a in args]
            values = ["" if a.get("value") is None else str(a["value"]) for a in args]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.problems.append(LogProblem(rel, number, f"malformed Tracee event: {e}"))
            continue
        scalars = {k: str(v) for k, v in event.items() if not isinstance(v, (dict, list)) and v is not None}
        row = {**scalars, **dict(zip(names, values)), "dac_key": str(number),
               "_time": int(event.get("timestamp", 0)) / 1e9}
        log.rows.append(row)
        # Splunk KV_MODE=json: the args list becomes two parallel multivalue fields
        log.splunk_events.append({**scalars, "args{}.name": names, "args{}.value": values, "_raw": line,
                                  "_time": row["_time"], "host": scalars.get("hostName", ""), "index": "linux",
                                  "sourcetype": "tracee", "dac_key": str(number)})
    return log


def read_log(path: Path, rel: str, fmt: str, host: str | None = None) -> SampleLog:
    if fmt == "mde":
        return read_mde(path, rel)
    if fmt == "auditd":
        return read_auditd(path, rel, host or "localhost")
    if fmt == "sysmon":
        return read_sysmon(path, rel)
    if fmt == "tracee":
        return read_tracee(path, rel)
    raise ValueError(f"unknown log format {fmt!r} (one of {', '.join(FORMATS)})")
