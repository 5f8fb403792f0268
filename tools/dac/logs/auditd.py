"""Linux audit logs, every shape auditd and its forwarders write:

- RAW and ENRICHED (`log_format = ENRICHED`: after a 0x1d byte, the record repeats numeric values
  as names in upper-case keys: `ARCH=x86_64 SYSCALL=openat AUID="alice" UID="root"`);
- with or without `node=<host> ` in front (`name_format = hostname`, audisp-remote, aggregators);
- forwarded through syslog: an RFC 3164 or RFC 5424 header before `type=` (audisp-syslog of
  audit 3.x replaces the 0x1d byte by a space; audispd of audit 2.x puts `node=` after the tag;
  rsyslog imfile writes the byte as the text `#035` and may use a tag without a colon);
- records of several events interleaved, several PATH items, EOE records;
- hex-encoded untrusted strings (`name`, `exe`, `comm`, `cwd`, `proctitle`, EXECVE arguments are
  written as unquoted upper-case hex when they hold a space, a quote, a control or non-ASCII byte).

Splunk events: one per record, fields as Splunk's key=value extraction gives them (quotes
removed, hex left as it is, `node` a field of its own, the enriched upper-case keys as fields).
Rows: the records of one event (same host, epoch and serial) assembled, hex decoded.
Event identity: `<host>:<serial>`, host = `node=`, else the syslog header's host, else the host
given for the file.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

from .model import LogProblem, SampleLog
from .source import nonblank, open_lines
from .syslog import parse_header

NAME = "auditd"
AUDIT_RE = re.compile(r"(?:node=(?P<node>\S+) )?type=(?P<type>[A-Z_0-9]+) msg=audit\((?P<epoch>\d+\.\d+):(?P<serial>\d+)\):? ?(?P<body>.*)$")
KV_RE = re.compile(r'([A-Za-z_][\w-]*)=("(?:[^"]*)"|\'[^\']*\'|[^\s\x1d]+)')
HEX_RE = re.compile(r"(?:[0-9A-F]{2})+")
ENRICHED_SEPARATOR = "\x1d"
ESCAPED_SEPARATOR = re.compile(r"#035(?=[A-Z][A-Z0-9_]*=)")
# fields auditd writes as hex when their value is not plain printable ASCII without spaces/quotes
UNTRUSTED = {"name", "exe", "comm", "cwd", "proctitle", "path", "new", "old"}
EXECVE_SYSCALLS = {"59", "execve", "322", "execveat"}
OPEN_SYSCALLS = {"2": "a1", "open": "a1", "257": "a2", "openat": "a2", "437": None, "openat2": None}


def sniff(lines: list[str]) -> bool:
    return any(AUDIT_RE.search(line) for line in lines if "msg=audit(" in line)


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def decode_hex(value: str, nul: str = " ") -> str:
    """auditd's hex encoding of an untrusted string (NUL-separated argv for proctitle)."""
    return bytes.fromhex(value).replace(b"\x00", nul.encode()).decode("utf-8", "replace").strip()


def decode_proctitle(value: str) -> str:
    """PROCTITLE is hex of the NUL-separated argv unless it is plain text."""
    if len(value) % 2 == 0 and re.fullmatch(r"[0-9A-Fa-f]+", value):
        return decode_hex(value)
    return value


def _decoded(key: str, raw: str) -> str:
    """The value of one key=value pair as the event means it: quotes removed, hex decoded.
    (SYSCALL's a0..a3 are numbers in hex, never encoded strings: only UNTRUSTED keys decode.)"""
    if raw[:1] in "\"'":
        return unquote(raw)
    if key in UNTRUSTED and HEX_RE.fullmatch(raw):
        return decode_hex(raw)
    return raw


class _Record:
    __slots__ = ("number", "line", "host", "type", "epoch", "serial", "pairs", "node", "shape")

    def __init__(self, number, line, host, match, wrapped: bool):
        self.number, self.line, self.host = number, line, host
        self.type, self.epoch, self.serial, self.node = match["type"], match["epoch"], match["serial"], match["node"]
        # rsyslog escapes the 0x1d byte as the text #035; audisp-syslog (audit 3.x) sends a space
        body = ESCAPED_SEPARATOR.sub(ENRICHED_SEPARATOR, match["body"])
        raw, separator, enriched = body.partition(ENRICHED_SEPARATOR)
        self.pairs = KV_RE.findall(raw) + KV_RE.findall(enriched)
        self.shape = ("syslog, " if wrapped else "") + ("node=, " if self.node else "") + ("enriched" if separator else "raw")


def _records(lines: Iterable[tuple[int, str]], shown: str, default_host: str, problems: list[LogProblem]) -> Iterator[_Record]:
    for number, line in nonblank(lines):
        match = AUDIT_RE.search(line)
        if not match:
            problems.append(LogProblem(shown, number, "not an audit record (expected [node=… ]type=… msg=audit(epoch:serial): …, optionally after a syslog header)"))
            continue
        host = match["node"]
        if match.start() > 0:
            header = parse_header(line)
            if header is None or header.length != match.start():
                problems.append(LogProblem(shown, number, "text before type=… is neither node=<host> nor a syslog header"))
                continue
            host = host or header.host
        record = _Record(number, line, host or default_host, match, match.start() > 0)
        if record.type in ("SYSCALL", "PATH", "PROCTITLE") and not record.pairs:
            problems.append(LogProblem(shown, number, f"truncated {record.type} record"))
            continue
        yield record


def splunk_event(record: _Record) -> dict:
    """The record as the Splunk Add-on for Unix and Linux indexes it (sourcetype linux_audit):
    key=value pairs extracted with quotes removed and hex kept; the host is the machine that
    sent it (syslog header) or the forwarder's; `node` is a field of its own."""
    fields = {k: unquote(v) for k, v in record.pairs}
    event = {"_raw": record.line, "_time": float(record.epoch), "host": record.host, "index": "linux",
             "sourcetype": "linux_audit", **fields, "type": record.type}
    if record.node:
        event["node"] = record.node
    return event


def splunk_events(lines: Iterable[tuple[int, str]], shown: str, host: str) -> Iterator[dict]:
    """The records as Splunk events, one at a time (unreadable lines skipped; read() reports them)."""
    for record in _records(lines, shown, host, []):
        yield splunk_event(record)


def categories(row: dict) -> set[str]:
    """The Sigma log sources an assembled event belongs to (the Splunk pipeline's source_filter
    says the same: execve for process_creation, opens that read for file_access)."""
    found = {"auditd"}
    syscall = row.get("syscall")
    if syscall in EXECVE_SYSCALLS:
        found.add("process_creation")
    if syscall in OPEN_SYSCALLS:
        flags_arg = OPEN_SYSCALLS[syscall]
        flags = row.get(flags_arg) if flags_arg else None
        if flags is None or not re.search(r"[159dD]$", flags):
            found.add("file_access")
    return found


def read(lines: Iterable[tuple[int, str]], shown: str, host: str | None, splunk: bool = True) -> SampleLog:
    """splunk=False skips the per-record Splunk events (most of the memory) for callers that
    only need the assembled rows."""
    log = SampleLog(shown, NAME)
    assembled: dict[tuple[str, str, str], dict] = {}
    shapes = set()
    for record in _records(lines, shown, host or "localhost", log.problems):
        shapes.add(record.shape)
        if splunk:
            log.splunk_events.append(splunk_event(record))
        key = (record.host, record.epoch, record.serial)
        row = assembled.get(key)
        if row is None:
            row = assembled[key] = {"dac_key": f"{record.host}:{record.serial}", "host": record.host,
                                    "_time": float(record.epoch), "dac_lines": []}
        row["dac_lines"].append(record.number)
        if record.type == "SYSCALL":
            for k, v in record.pairs:
                if k != "type":
                    row[k] = _decoded(k, v)
        elif record.type == "PATH":
            name = dict(record.pairs).get("name")
            if name is not None:
                row.setdefault("names", []).append(_decoded("name", name))
        elif record.type == "CWD":
            cwd = dict(record.pairs).get("cwd")
            row["cwd"] = _decoded("cwd", cwd) if cwd is not None else None
        elif record.type == "PROCTITLE":
            title = dict(record.pairs).get("proctitle", "")
            row["proctitle"] = decode_proctitle(unquote(title))
    for row in assembled.values():
        names = row.pop("names", [])
        row["name"] = names[0] if len(names) == 1 else (sorted(set(names)) or None)
        row["dac_categories"] = categories(row)
        log.rows.append(row)
    log.shape = "; ".join(sorted(shapes))
    return log


def splunk_events_of_file(path, host: str) -> Iterator[dict]:
    lines, _, _ = open_lines(str(path))
    return splunk_events(lines, str(path), host)
