"""Log readers: one module per sensor format, behind this registry.

A format module has NAME, `sniff(first lines) -> bool` and `read(lines, shown, …) -> SampleLog`.
Adding a format is one module plus its testdata: register it in READERS.
`read_log` opens any file (plain, gzip, UTF-16, `-` for standard input), picks the reader
(`auto` sniffs; a file that looks like none or several formats is an error naming it) and never
raises on bad lines: each is a reported skip (SampleLog.problems).
"""
from __future__ import annotations

from itertools import chain, islice
from pathlib import Path

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


def read_log(path: str | Path, shown: str | None = None, fmt: str = "auto", host: str | None = None,
             table: str | None = None, schemas: dict[str, dict[str, str]] | None = None,
             splunk: bool = True) -> SampleLog:
    """Read one input. Raises InputError only when the input as a whole cannot be read."""
    path = str(path)
    shown = shown or (path if path != "-" else "<stdin>")
    if fmt != "auto" and fmt not in READERS:
        raise InputError(f"unknown log format {fmt!r} (one of auto, {', '.join(FORMATS)})")
    lines, problems, container = open_lines(path, shown)
    if fmt == "auto":
        head = list(islice(lines, SNIFF_LINES))
        fmt = sniff([text for _, text in head], shown)
        lines = chain(head, lines)
    if fmt == "auditd":
        log = auditd.read(lines, shown, host, splunk=splunk)
    elif fmt == "mde":
        log = mde.read(lines, shown, table, schemas)
    else:
        log = READERS[fmt].read(lines, shown, host)
    log.problems[:0] = problems          # container problems (oversize lines, broken gzip) first
    log.problems.sort(key=lambda p: p.line or 0)
    log.shape = ", ".join(filter(None, [container if container != "text" else "", log.shape]))
    return log


__all__ = ["FORMATS", "READERS", "InputError", "LogProblem", "SampleLog", "read_log", "sniff"]
