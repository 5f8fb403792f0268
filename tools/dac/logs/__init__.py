"""Stage 4, logs: the log readers, one module per sensor format, behind this registry.

May import dac.core only; never rules, queries, engines or later stages (the engines read the
rows these readers yield, not the other way round).

A format module has NAME, `sniff(first lines) -> bool`, `stream(lines, shown, …, problems, shapes)`
yielding (row, Splunk event) pairs as it reads, and `read(lines, shown, …) -> SampleLog`.
Adding a format is one module plus its testdata: register it in READERS.
`read_log` opens any file (plain, gzip, UTF-16, `-` for standard input), picks the reader
(`auto` sniffs; a file that looks like none or several formats is an error naming it) and never
raises on bad lines: each is a reported skip (SampleLog.problems).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Iterator

from . import auditd, mde, sysmon, tracee
from .model import LogProblem, SampleLog
from .source import InputError, open_lines

READERS = {module.NAME: module for module in (mde, auditd, sysmon, tracee)}
FORMATS = tuple(READERS)
SNIFF_LINES = 50


def sniff(first_lines: list[str], shown: str) -> str:
    found = [name for name, module in READERS.items() if module.sniff(first_lines)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"{shown}: cannot tell the log format from its first lines (give --format {'|'.join(FORMATS)})")
    raise InputError(f"{shown}: ambiguous log format, looks like {' and '.join(found)} (give --format)")


@dataclass
class LogStream:
    """One input being read: `items` yields (row, Splunk event) pairs, either may be None, as
    the input is read; `problems` and `shapes` grow while it runs (complete once it is exhausted)."""
    path: str
    format: str
    container: str
    items: Iterator[tuple[dict | None, dict | None]]
    problems: list[LogProblem] = field(default_factory=list)
    shapes: set[str] = field(default_factory=set)

    @property
    def shape(self) -> str:
        return ", ".join(filter(None, [self.container if self.container != "text" else "",
                                       ("; " if self.format == "auditd" else ", ").join(sorted(self.shapes))]))

    def sorted_problems(self) -> list[LogProblem]:
        return sorted(self.problems, key=lambda p: p.line or 0)


def open_log(path: str | Path, shown: str | None = None, fmt: str = "auto", host: str | None = None,
             table: str | None = None, schemas: dict[str, dict[str, str]] | None = None,
             splunk: bool = True) -> LogStream:
    """Open one input for streaming: nothing but the sniffed first lines is read until `items`
    is iterated. Raises InputError only when the input as a whole cannot be read."""
    path = str(path)
    shown = shown or (path if path != "-" else "<stdin>")
    if fmt != "auto" and fmt not in READERS:
        raise InputError(f"unknown log format {fmt!r} (one of auto, {', '.join(FORMATS)})")
    lines, problems, container = open_lines(path, shown)
    if fmt == "auto":
        head = list(islice(lines, SNIFF_LINES))
        fmt = sniff([text for _, text in head], shown)
        lines = chain(head, lines)
    shapes: set[str] = set()
    # container problems (oversize lines, broken gzip) and the reader's go in the same list
    if fmt == "auditd":
        items = auditd.stream(lines, shown, host, problems, shapes, splunk=splunk)
    elif fmt == "mde":
        items = mde.stream(lines, shown, table, schemas, problems, shapes)
    else:
        items = READERS[fmt].stream(lines, shown, host, problems, shapes)
    return LogStream(shown, fmt, container, items, problems, shapes)


def read_log(path: str | Path, shown: str | None = None, fmt: str = "auto", host: str | None = None,
             table: str | None = None, schemas: dict[str, dict[str, str]] | None = None,
             splunk: bool = True) -> SampleLog:
    """Read one input whole (the labelled testdata; `open_log` streams). Raises InputError only
    when the input as a whole cannot be read."""
    stream = open_log(path, shown, fmt, host, table, schemas, splunk)
    log = SampleLog(stream.path, stream.format)
    for row, event in stream.items:
        if row is not None:
            log.rows.append(row)
        if event is not None:
            log.splunk_events.append(event)
    if stream.format == "auditd":
        log.rows.sort(key=lambda r: r["dac_lines"][0])    # the order events start in, whatever order they ended
    log.problems = stream.sorted_problems()
    log.shape = stream.shape
    return log


__all__ = ["FORMATS", "READERS", "InputError", "LogProblem", "LogStream", "SampleLog", "open_log", "read_log", "sniff"]
