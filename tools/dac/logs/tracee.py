"""Tracee JSON events (`tracee --output json`), both shapes:

- default: arguments as the kernel passed them, e.g. `security_file_open`'s `flags` an integer
  (32768 = O_RDONLY|O_LARGEFILE);
- `--output option:parse-arguments`: the same arguments as names (`"O_RDONLY|O_LARGEFILE"`).

Nested objects are flattened with dotted names (`executable.path`, `container.id`,
`kubernetes.podName`), as Splunk's JSON extraction (KV_MODE=json / INDEXED_EXTRACTIONS=json) names
them; `args` becomes one field per argument name in rows, and the multivalue fields `args{}.name` /
`args{}.value` (and `args{}.value{}` for array values such as argv) in Splunk events. Identity: the line number (Tracee has no event id).
"""
from __future__ import annotations

import json
from typing import Iterable, Iterator

from .model import LogProblem, SampleLog
from .source import nonblank

NAME = "tracee"


def sniff(lines: list[str]) -> bool:
    return any(line.lstrip().startswith("{") and '"eventName"' in line and '"args"' in line for line in lines)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        scalars = [_text(v) for v in value if v is not None and not isinstance(v, (dict, list))]
        if scalars:     # Splunk: one value is a plain field, several a multivalue field
            out[f"{prefix}{{}}"] = scalars if len(scalars) > 1 else scalars[0]
    elif value is not None:
        out[prefix] = _text(value)


def is_read(flags: str | None) -> bool:
    """Read access: O_RDONLY (0) or O_RDWR (2) in the access mode, i.e. flags & 3 is not 1. As
    names (parse-arguments) or as the integer (default output: an even number)."""
    if flags is None:
        return False
    if flags.lstrip("-").isdigit():
        return int(flags) % 2 == 0
    return "O_RDONLY" in flags or "O_RDWR" in flags


def target_path(arguments: dict) -> str | None:
    """The file a security_file_open is about: Tracee's resolved `pathname`, except that
    /proc/self/… and /proc/thread-self/… stay as the program asked (`syscall_pathname`): Tracee
    resolves them to the program's own pid, which would look like reading another process.
    (The Splunk pipeline's file_access source computes the same field.)"""
    asked = arguments.get("syscall_pathname") or ""
    if asked.startswith(("/proc/self/", "/proc/thread-self/")):
        return asked
    return arguments.get("pathname")


def opens_for_read(row: dict) -> bool:
    """The event's open flags read (is_read); which events are opens is declared in
    sigma/datasources/event_scopes.yml."""
    return is_read(row.get("flags"))


def splunk_args(args: list[dict]) -> dict:
    """`args` as Splunk's JSON extraction names it: `args{}.name` every name; `args{}.value` the
    scalar values only; the elements of an array value (sched_process_exec's argv) go to
    `args{}.value{}`. So after an array argument the names and values no longer line up, as in
    Splunk: the pipeline reads by position only arguments that come before it."""
    scalars = ["" if a.get("value") is None else _text(a["value"]) for a in args if not isinstance(a.get("value"), (list, dict))]
    nested = [_text(v) for a in args if isinstance(a.get("value"), list) for v in a["value"] if v is not None]
    out = {"args{}.name": [str(a["name"]) for a in args], "args{}.value": scalars}
    if nested:
        out["args{}.value{}"] = nested if len(nested) > 1 else nested[0]
    return out


def command_line(arguments: dict, raw_args: list[dict]) -> str | None:
    """sched_process_exec's argv joined with spaces (the pipeline's mvjoin of args{}.value{})."""
    argv = next((a.get("value") for a in raw_args if a.get("name") == "argv"), None)
    if not isinstance(argv, list):
        return None
    return " ".join(_text(v) for v in argv if v is not None)


def stream(lines: Iterable[tuple[int, str]], shown: str, host: str | None, problems: list[LogProblem],
           shapes: set[str]) -> Iterator[tuple[dict, dict]]:
    """(row, Splunk event) per event line, as the input is read."""
    for number, line in nonblank(lines):
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or "eventName" not in event:
                raise ValueError("not a Tracee event object (no eventName)")
            args = event.get("args") or []
            if not isinstance(args, list) or not all(isinstance(a, dict) and "name" in a for a in args):
                raise ValueError("args is not a list of {name, value} objects")
            names = [str(a["name"]) for a in args]
            values = ["" if a.get("value") is None else _text(a["value"]) for a in args]
            flat: dict = {}
            _flatten("", {k: v for k, v in event.items() if k != "args"}, flat)
            when = int(event.get("timestamp") or 0) / 1e9
        except (ValueError, TypeError, RecursionError) as e:
            problems.append(LogProblem(shown, number, f"not a Tracee event: {str(e)[:200]}"))
            continue
        flags = dict(zip(names, values)).get("flags")
        if flags:
            shapes.add("default (integer arguments)" if flags.lstrip("-").isdigit() else "parse-arguments")
        event_host = flat.get("hostName") or host or "localhost"
        scalars = {k: v for k, v in flat.items() if not k.endswith("{}")}
        arguments = dict(zip(names, values))
        row = {**scalars, **arguments, "host": event_host, "dac_key": str(number), "dac_lines": [number], "_time": when}
        row["target_path"] = target_path(arguments)
        row["command_line"] = command_line(arguments, args)
        yield row, {**flat, **splunk_args(args), "_raw": line, "_time": when,
                    "host": event_host, "index": "linux", "sourcetype": "tracee", "dac_key": str(number)}


def read(lines: Iterable[tuple[int, str]], shown: str, host: str | None = None) -> SampleLog:
    log = SampleLog(shown, NAME)
    shapes: set[str] = set()
    for row, event in stream(lines, shown, host, log.problems, shapes):
        log.rows.append(row)
        log.splunk_events.append(event)
    log.shape = ", ".join(sorted(shapes))
    return log
