"""Sysmon for Linux events, in every shape they reach a SIEM:

- as it writes them to syslog (`/var/log/syslog`, `/var/log/messages`): an RFC 3164 header
  (`Nov 22 10:02:11 host sysmon: <Event>…`), an RFC 3339 one (rsyslog high-precision templates)
  or an RFC 5424 one, then the event XML, usually without `xmlns` on `<Event>`;
- `journalctl -o json` exports: one JSON object a line, the XML in `MESSAGE` (a string, or an
  array of byte values when journald stored it as binary), the host in `_HOSTNAME`;
- bare event XML, one event a line, with or without `xmlns`.

Rows and Splunk events carry EventID, Computer, EventRecordID and every `<Data Name=…>` field
(the Splunk Add-on for Sysmon for Linux, sourcetype `sysmon:linux`, extracts the same names).
Host: the syslog header's or journald's host, else `<Computer>`. Identity: `<Computer>:<EventRecordID>`.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Iterable, Iterator

from .model import LogProblem, SampleLog
from .source import nonblank
from .syslog import parse_header

NAME = "sysmon"
_XMLNS = re.compile(r'\sxmlns(:\w+)?="[^"]*"')


def sniff(lines: list[str]) -> bool:
    return any("<Event" in line and ("<EventID>" in line or "Sysmon" in line) for line in lines)


def _event_xml(line: str) -> tuple[str | None, str | None, str]:
    """(host from the wrapper, wrapper name, the XML text) of one input line."""
    stripped = line.lstrip()
    if stripped.startswith("<Event"):
        return None, "xml", stripped
    if stripped.startswith("{"):
        record = json.loads(stripped)
        if not isinstance(record, dict) or "MESSAGE" not in record:
            raise ValueError("a JSON line without MESSAGE (expected a `journalctl -o json` record)")
        message = record["MESSAGE"]
        if isinstance(message, list):      # journald exports non-UTF-8 messages as byte arrays
            message = bytes(int(b) & 0xFF for b in message).decode("utf-8", "replace")
        return record.get("_HOSTNAME"), "journald", str(message)
    header = parse_header(line)
    if header is None:
        raise ValueError("neither event XML, a journald JSON record nor a syslog line")
    return header.host, "syslog", line[header.length:]


def _parse(xml_text: str) -> dict:
    start = xml_text.find("<Event")
    root = ET.fromstring(_XMLNS.sub("", xml_text[start:], count=1))
    system = root.find("System")
    data = root.find("EventData")
    if system is None or data is None:
        raise ValueError("no <System> or <EventData>")
    row = {"EventID": system.findtext("EventID"), "Computer": system.findtext("Computer"),
           "EventRecordID": system.findtext("EventRecordID")}
    for item in data:
        row[item.get("Name")] = item.text or ""
    if not row["EventID"] or not row["EventRecordID"]:
        raise ValueError("no EventID or EventRecordID")
    return row


def _utc(value: str) -> float:
    return datetime.fromisoformat(value.replace(" ", "T") + "+00:00").astimezone(timezone.utc).timestamp()


def stream(lines: Iterable[tuple[int, str]], shown: str, host: str | None, problems: list[LogProblem],
           shapes: set[str]) -> Iterator[tuple[dict, dict]]:
    """(row, Splunk event) per event line, as the input is read."""
    for number, line in nonblank(lines):
        try:
            wrapper_host, shape, xml_text = _event_xml(line)
            row = _parse(xml_text)
            row["_time"] = _utc(row.get("UtcTime") or "1970-01-01 00:00:00")
        except (ET.ParseError, ValueError, TypeError, RecursionError, AttributeError) as e:
            problems.append(LogProblem(shown, number, f"not a Sysmon event: {str(e)[:200]}"))
            continue
        shapes.add(shape)
        event_host = wrapper_host or row["Computer"] or host or "localhost"
        event = {**row, "_raw": line, "host": event_host, "index": "linux", "sourcetype": "sysmon:linux"}
        row["host"] = event_host
        row["dac_key"] = f"{row['Computer']}:{row['EventRecordID']}"
        row["dac_lines"] = [number]
        yield row, event


def read(lines: Iterable[tuple[int, str]], shown: str, host: str | None = None) -> SampleLog:
    log = SampleLog(shown, NAME)
    shapes: set[str] = set()
    for row, event in stream(lines, shown, host, log.problems, shapes):
        log.rows.append(row)
        log.splunk_events.append(event)
    log.shape = ", ".join(sorted(shapes))
    return log
