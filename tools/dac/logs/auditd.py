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
from collections import OrderedDict
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
_QUOTES = "\"'"
_ANY_HEX = re.compile(r"[0-9A-Fa-f]+")
# open flags in hex: a last digit of 1, 5, 9 or d is O_WRONLY (+ O_APPEND etc.): not a read
_WRITE_FLAG_DIGITS = {"1", "5", "9", "d", "D"}
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
    if len(value) % 2 == 0 and _ANY_HEX.fullmatch(value):
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
    __slots__ = ("number", "line", "host", "type", "epoch", "serial", "pairs", "node", "shape", "_fields")

    def __init__(self, number, line, host, match, wrapped: bool):
        self.number, self.line, self.host = number, line, host
        self.type, self.epoch, self.serial, self.node = match.group("type", "epoch", "serial", "node")
        body = match["body"]
        if "#035" in body:
            # rsyslog escapes the 0x1d byte as the text #035; audisp-syslog (audit 3.x) sends a space
            body = ESCAPED_SEPARATOR.sub(ENRICHED_SEPARATOR, body)
        raw, separator, enriched = body.partition(ENRICHED_SEPARATOR)
        self.pairs = KV_RE.findall(raw) + KV_RE.findall(enriched) if separator else KV_RE.findall(raw)
        self.shape = ("syslog, " if wrapped else "") + ("node=, " if self.node else "") + ("enriched" if separator else "raw")
        self._fields = None

    @property
    def fields(self) -> dict[str, str]:
        """The pairs with quotes removed (the last of a repeated key), made once: the Splunk event
        and the assembled row both need them. Inline rather than unquote(): this runs per pair."""
        if self._fields is None:
            self._fields = {k: v[1:-1] if v[0] in _QUOTES and len(v) > 1 and v[-1] == v[0] else v
                            for k, v in self.pairs}
        return self._fields


def _records(lines: Iterable[tuple[int, str]], shown: str, default_host: str, problems: list[LogProblem]) -> Iterator[_Record]:
    last_prefix, last_host = None, None
    for number, line in nonblank(lines):
        match = AUDIT_RE.search(line)
        if not match:
            problems.append(LogProblem(shown, number, "not an audit record (expected [node=… ]type=… msg=audit(epoch:serial): …, optionally after a syslog header)"))
            continue
        host = match["node"]
        start = match.start()
        if start > 0:
            # the records of an event share their header (same second, same host): parse it once
            if line[:start] != last_prefix:
                header = parse_header(line)
                last_prefix, last_host = (line[:start], header.host) if header is not None and header.length == start else (None, None)
                if last_prefix is None:
                    problems.append(LogProblem(shown, number, "text before type=… is neither node=<host> nor a syslog header"))
                    continue
            host = host or last_host
        record = _Record(number, line, host or default_host, match, match.start() > 0)
        if record.type in ("SYSCALL", "PATH", "PROCTITLE") and not record.pairs:
            problems.append(LogProblem(shown, number, f"truncated {record.type} record"))
            continue
        yield record


def splunk_event(record: _Record) -> dict:
    """The record as the Splunk Add-on for Unix and Linux indexes it (sourcetype linux_audit):
    key=value pairs extracted with quotes removed and hex kept; the host is the machine that
    sent it (syslog header) or the forwarder's; `node` is a field of its own."""
    fields = record.fields
    event = {"_raw": record.line, "_time": float(record.epoch), "host": record.host, "index": "linux",
             "sourcetype": "linux_audit", **fields, "type": record.type}
    if record.node:
        event["node"] = record.node
    return event


def splunk_events(lines: Iterable[tuple[int, str]], shown: str, host: str) -> Iterator[dict]:
    """The records as Splunk events, one at a time (unreadable lines skipped; read() reports them)."""
    for record in _records(lines, shown, host, []):
        yield splunk_event(record)


def opens_for_read(row: dict) -> bool:
    """An assembled open(2)/openat(2)/openat2(2) event that reads: the access mode in its flags
    argument (a1 for open, a2 for openat; openat2 passes a struct) is not O_WRONLY. Which events
    are opens is declared in sigma/datasources/event_scopes.yml."""
    flags_arg = OPEN_SYSCALLS.get(row.get("syscall"))
    flags = row.get(flags_arg) if flags_arg else None
    return flags is None or flags[-1:] not in _WRITE_FLAG_DIGITS


# Open events are bounded: auditd writes an event's records together (EOE ends a multi-record
# event), so an event still open after this many newer ones have started is complete or broken;
# it is flushed to make room. Flushed keys are remembered (bounded too) so that a record arriving
# after its event is reported as a skip instead of becoming a second, partial event.
MAX_OPEN_EVENTS = 10_000
REMEMBERED_FLUSHED = 100_000


class Assembler:
    """The records of each event (host, epoch, serial) gathered into one row, with at most
    `max_open` events open at once. `add` returns the rows it completes (EOE or eviction);
    `finish` the rest. A record of an event already flushed is a problem, not a row."""

    def __init__(self, shown: str, problems: list[LogProblem], max_open: int = MAX_OPEN_EVENTS,
                 remembered: int = REMEMBERED_FLUSHED):
        self.shown, self.problems, self.max_open, self.remembered = shown, problems, max_open, remembered
        # OrderedDict: popping the oldest is O(1); next(iter(dict)) after many pops from the front
        # of a plain dict walks its deleted slots
        self.open: OrderedDict[tuple[str, str, str], dict] = OrderedDict()     # oldest first
        self.flushed: OrderedDict[tuple[str, str, str], str] = OrderedDict()   # key -> why it was flushed
        self.peak_open = 0

    def add(self, record: _Record) -> list[dict]:
        key = (record.host, record.epoch, record.serial)
        row = self.open.get(key)
        done: list[dict] = []
        if row is None:
            why = self.flushed.get(key)
            if why is not None:
                self.problems.append(LogProblem(self.shown, record.number, f"{record.type} record of event "
                                                f"{record.host}:{record.serial} arrives after the event was {why}"))
                return done
            if len(self.open) >= self.max_open:
                oldest = next(iter(self.open))
                done.append(self._flush(oldest, f"closed ({self.max_open:,} newer events were open)"))
            row = self.open[key] = {"dac_key": f"{record.host}:{record.serial}", "host": record.host,
                                    "_time": float(record.epoch), "dac_lines": []}
            self.peak_open = max(self.peak_open, len(self.open))
        row["dac_lines"].append(record.number)
        kind = record.type
        if kind == "SYSCALL":
            fields = record.fields
            row.update(fields)
            for k in UNTRUSTED.intersection(fields):
                # hex-looking and not quoted in the record (comm="AB" is text): decode
                if HEX_RE.fullmatch(fields[k]) and _raw_value(record.pairs, k)[0] not in _QUOTES:
                    row[k] = decode_hex(fields[k])
            if "type" in row:
                del row["type"]
        elif kind == "PATH":
            name = _first(record.pairs, "name")
            if name is not None:
                row.setdefault("names", []).append(_decoded("name", name))
        elif kind == "CWD":
            cwd = _first(record.pairs, "cwd")
            row["cwd"] = _decoded("cwd", cwd) if cwd is not None else None
        elif kind == "PROCTITLE":
            row["proctitle"] = decode_proctitle(unquote(_first(record.pairs, "proctitle") or ""))
        elif kind == "EOE":
            done.append(self._flush(key, "ended (EOE)"))
        return done

    def finish(self) -> Iterator[dict]:
        while self.open:
            yield self._flush(next(iter(self.open)), "closed at the end of the input")

    def _flush(self, key, why: str) -> dict:
        row = self.open.pop(key)
        self.flushed[key] = why
        if len(self.flushed) > self.remembered:
            self.flushed.popitem(last=False)
        names = row.pop("names", [])
        row["name"] = names[0] if len(names) == 1 else (sorted(set(names)) or None)
        return row


def _raw_value(pairs: list[tuple[str, str]], key: str) -> str:
    return next(v for k, v in reversed(pairs) if k == key)      # the last, as the fields dict keeps


def _first(pairs: list[tuple[str, str]], key: str) -> str | None:
    # dict(pairs).get(key) keeps the last of repeated keys; they do not repeat in these records
    for k, v in pairs:
        if k == key:
            return v
    return None


def stream(lines: Iterable[tuple[int, str]], shown: str, host: str | None, problems: list[LogProblem],
           shapes: set[str], splunk: bool = True, assembler: Assembler | None = None) -> Iterator[tuple[dict | None, dict | None]]:
    """(row, Splunk event) pairs as the input is read: each record gives its Splunk event
    (row None) as soon as it is read, each assembled event its row (event None) when complete.
    Memory is bounded by the assembler's open-event table, not by the input."""
    assembler = assembler or Assembler(shown, problems)
    for record in _records(lines, shown, host or "localhost", problems):
        shapes.add(record.shape)
        if splunk:
            yield None, splunk_event(record)
        for row in assembler.add(record):
            yield row, None
    for row in assembler.finish():
        yield row, None


def read(lines: Iterable[tuple[int, str]], shown: str, host: str | None, splunk: bool = True) -> SampleLog:
    """The whole input in memory (the labelled testdata). splunk=False skips the per-record
    Splunk events for callers that only need the assembled rows."""
    log = SampleLog(shown, NAME)
    shapes: set[str] = set()
    for row, event in stream(lines, shown, host, log.problems, shapes, splunk):
        if row is not None:
            log.rows.append(row)
        if event is not None:
            log.splunk_events.append(event)
    log.rows.sort(key=lambda r: r["dac_lines"][0])      # the order events start in, whatever order they ended
    log.shape = "; ".join(sorted(shapes))
    return log


def splunk_events_of_file(path, host: str) -> Iterator[dict]:
    lines, _, _ = open_lines(str(path))
    return splunk_events(lines, str(path), host)
