"""Microsoft Defender XDR advanced-hunting rows, in the shapes they are exported or streamed:

- JSON lines, one row an object (`| project *` saved by a script, Log Analytics exports);
- the Advanced Hunting API response (`{"Schema": […], "Results": […]}`, and Graph's
  `runHuntingQuery` `{"schema": …, "results": …}`), and a JSON array of rows;
- the Streaming API (Event Hub or storage account): `{"records": [{"time", "tenantId",
  "operationName", "category": "AdvancedHunting-DeviceFileEvents", "properties": {…}}]}`, or one
  such record a line;
- the portal's CSV export (header row of column names; values as text);
- Sentinel / Log Analytics rows (`TimeGenerated`, `Type` = the table name).

Each row's table comes from the record's `category`, a `Type` column, the table given for the
file, or the columns it has (ProcessCommandLine: DeviceProcessEvents; a file event otherwise).
Values are typed by the table's schema (sentinel/schemas/); a value that does not fit its type is
a reported skip. Identity: `<DeviceName>:<ReportId>` (Defender's ReportId is a per-device counter).
"""
from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from itertools import chain
from typing import Iterable, Iterator

from .model import LogProblem, SampleLog
from .source import nonblank

NAME = "mde"
TABLES = ("DeviceProcessEvents", "DeviceFileEvents")
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024
_ROW_KEYS = ("Results", "results", "records", "value")


def sniff(lines: list[str]) -> bool:
    text = "\n".join(lines[:50])
    if lines and lines[0].lstrip().startswith(("{", "[")):
        return any(k in text for k in ('"ReportId"', '"AdvancedHunting-', '"Results"', '"results"', '"DeviceName"'))
    return bool(lines) and "ReportId" in lines[0] and "DeviceName" in lines[0] and "," in lines[0]


def _table_of(row: dict, record: dict | None, given: str | None) -> str | None:
    category = str((record or {}).get("category") or "")
    if category.startswith("AdvancedHunting-"):
        return category[len("AdvancedHunting-"):]
    for candidate in (row.get("Type"), given):
        if candidate in TABLES:
            return candidate
    if "ProcessCommandLine" in row:
        return "DeviceProcessEvents"
    if "FolderPath" in row and "InitiatingProcessFolderPath" in row:
        return "DeviceFileEvents"
    return None


def _typed(value, kusto_type: str):
    if value is None or value == "":
        return None
    if kusto_type in ("long", "int"):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        return int(value)
    if kusto_type in ("bool", "boolean"):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false", "1", "0"):
            return str(value).lower() in ("true", "1")
        raise ValueError(f"{value!r} is not a boolean")
    if kusto_type == "datetime":
        _epoch(str(value))
        return str(value)
    if kusto_type == "dynamic" and isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value        # a dynamic cell that is not JSON stays text, the row is still an event
    return value


def _epoch(value: str) -> float:
    text = value.strip().replace(" ", "T")
    if "." in text:       # Defender writes 7 fractional digits; Python reads at most 6
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits):]}"
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


class _Reader:
    def __init__(self, shown: str, table: str | None, schemas: dict[str, dict[str, str]],
                 problems: list[LogProblem], shapes: set[str]):
        self.log = SampleLog(shown, NAME, problems=problems)
        self.table, self.schemas, self.shapes = table, schemas, shapes
        self.ready: list[dict] = []     # rows typed since the caller last took them

    def take(self) -> list[dict]:
        ready, self.ready = self.ready, []
        return ready

    def add(self, number: int, row, record: dict | None = None) -> None:
        shown = self.log.path
        if not isinstance(row, dict):
            self.log.problems.append(LogProblem(shown, number, "not a JSON object row"))
            return
        table = _table_of(row, record, self.table)
        if table is None:
            self.log.problems.append(LogProblem(shown, number, "cannot tell the table of this row (no category or "
                                                "Type; give --table DeviceFileEvents|DeviceProcessEvents)"))
            return
        types = self.schemas.get(table, {})
        try:
            typed = {k: (_typed(v, types[k]) if k in types else v) for k, v in row.items()}
            when = typed.get("Timestamp") or typed.get("TimeGenerated") or (record or {}).get("time")
            if not when:
                raise ValueError("no Timestamp")
            typed["Timestamp"] = str(when)
            typed["_time"] = _epoch(str(when))
            if typed.get("ReportId") is None or not typed.get("DeviceName"):
                raise ValueError("no ReportId or DeviceName")
        except (ValueError, TypeError, KeyError, RecursionError) as e:
            self.log.problems.append(LogProblem(shown, number, f"malformed {table} row: {str(e)[:200]}"))
            return
        typed["dac_table"] = table
        typed["host"] = typed["DeviceName"]
        typed["dac_key"] = f"{typed['DeviceName']}:{typed['ReportId']}"
        typed["dac_lines"] = [number]
        self.ready.append(typed)

    def rows_of(self, number: int, document) -> None:
        """One parsed JSON value that holds rows: a row, a record, an envelope or a response."""
        if isinstance(document, list):
            for item in document:
                self.rows_of(number, item)
            return
        if not isinstance(document, dict):
            self.log.problems.append(LogProblem(self.log.path, number, "not a JSON object"))
            return
        if isinstance(document.get("properties"), dict) and "category" in document:
            self.shapes.add("streaming API record")
            self.add(number, document["properties"], document)
            return
        for key in _ROW_KEYS:
            if isinstance(document.get(key), list):
                self.shapes.add({"records": "streaming API envelope", "value": "JSON array"}.get(key, "advanced hunting API response"))
                for item in document[key]:
                    self.rows_of(number, item)
                return
        self.shapes.add("JSON rows")
        self.add(number, document)


def _document_lines(text: str, key_start: int) -> list[int]:
    """1-based line of each element of the JSON array that starts at key_start. The newlines are
    counted between one element and the next (str.count), not by walking every character."""
    decoder = json.JSONDecoder()
    index, found = text.index("[", key_start) + 1, []
    line, counted = 1 + text.count("\n", 0, index), index
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "]":
            return found
        line += text.count("\n", counted, index)
        counted = index
        found.append(line)
        _, index = decoder.raw_decode(text, index)


def stream(lines: Iterable[tuple[int, str]], shown: str, table: str | None, schemas: dict[str, dict[str, str]] | None,
           problems: list[LogProblem], shapes: set[str]) -> Iterator[tuple[dict, None]]:
    """(row, None) per row as the input is read (Defender rows have no Splunk events). A
    pretty-printed JSON document is the exception: it is parsed whole (up to MAX_DOCUMENT_BYTES)."""
    reader = _Reader(shown, table, schemas or {}, problems, shapes)
    iterator = iter(lines)
    first = None
    for number, line in iterator:
        if line.strip():
            first = (number, line)
            break
    if first is None:
        return
    number, line = first
    stripped = line.lstrip()
    if not stripped.startswith(("{", "[")):
        for _ in _read_csv(reader, first, iterator):
            yield from ((row, None) for row in reader.take())
        yield from ((row, None) for row in reader.take())
        return
    try:
        reader.rows_of(number, json.loads(line))
    except json.JSONDecodeError:
        # a pretty-printed document (API response, envelope, array): read it whole
        _read_document(reader, number, line, iterator)
        yield from ((row, None) for row in reader.take())
        return
    except RecursionError:
        problems.append(LogProblem(shown, number, "JSON nested too deeply"))
    yield from ((row, None) for row in reader.take())
    for number, line in nonblank(iterator):
        try:
            reader.rows_of(number, json.loads(line))
        except (json.JSONDecodeError, RecursionError) as e:
            problems.append(LogProblem(shown, number, f"malformed JSON: {str(e)[:200]}"))
        yield from ((row, None) for row in reader.take())


def read(lines: Iterable[tuple[int, str]], shown: str, table: str | None = None,
         schemas: dict[str, dict[str, str]] | None = None) -> SampleLog:
    log = SampleLog(shown, NAME)
    shapes: set[str] = set()
    log.rows = [row for row, _ in stream(lines, shown, table, schemas, log.problems, shapes)]
    log.shape = ", ".join(sorted(shapes))
    return log


def _read_document(reader: _Reader, first_number: int, first_line: str, rest) -> None:
    parts, size = [first_line], len(first_line)
    for _, line in rest:
        parts.append(line)
        size += len(line) + 1
        if size > MAX_DOCUMENT_BYTES:
            reader.log.problems.append(LogProblem(reader.log.path, first_number, f"JSON document over {MAX_DOCUMENT_BYTES:,} bytes: give one row a line instead"))
            return
    text = "\n".join(parts)
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        line = getattr(e, "lineno", 0) + first_number - 1 if isinstance(e, json.JSONDecodeError) else first_number
        reader.log.problems.append(LogProblem(reader.log.path, line, f"malformed JSON: {str(e)[:200]}"))
        return
    key = next((k for k in _ROW_KEYS if isinstance(document, dict) and isinstance(document.get(k), list)), None)
    if isinstance(document, list) or key:
        items = document if isinstance(document, list) else document[key]
        start = text.index(f'"{key}"') if key else 0
        numbers = [n + first_number - 1 for n in _document_lines(text, start)]
        reader.shapes.add({"records": "streaming API envelope", None: "JSON array"}.get(key, "advanced hunting API response"))
        for number, item in zip(numbers, items):
            reader.rows_of(number, item)
    else:
        reader.rows_of(first_number, document)


def _read_csv(reader: _Reader, first, rest) -> Iterator[None]:
    """Reads the CSV rows into the reader, yielding after each so the caller can take them."""
    reader.shapes.add("CSV export")
    last = [0]          # the number of the last line the csv module took

    def texts():
        for number, line in chain([first], rest):
            last[0] = number
            yield line
    rows = csv.reader(texts())
    try:
        header = next(rows)
        for values in rows:
            number = last[0] - _continuations(values)
            if not any(values):
                continue
            if len(values) != len(header):
                reader.log.problems.append(LogProblem(reader.log.path, number, f"CSV row has {len(values)} fields, the header {len(header)}"))
                continue
            reader.add(number, dict(zip(header, values)))
            yield
    except csv.Error as e:
        reader.log.problems.append(LogProblem(reader.log.path, last[0] or None, f"malformed CSV: {e}"))


def _continuations(values: list[str]) -> int:
    """Input lines a CSV record spans beyond its first (quoted fields may hold line breaks)."""
    return sum(v.count("\n") for v in values)
