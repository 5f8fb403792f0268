"""Syslog headers in front of a forwarded event: RFC 3164 (`Nov 22 10:02:11 host tag[pid]: `,
with or without `<PRI>`), RFC 3339 timestamps as rsyslog's high-precision templates write them
(`2026-11-22T10:02:11.204+00:00 host tag: `; rsyslog imfile with a tag that has no colon writes
`host tag type=…`) and RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID
[SD]… `). Only the host and the tag are used: the event's own time and fields come from the event."""
from __future__ import annotations

import re
from dataclasses import dataclass

_RFC3164 = re.compile(r"^(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) "
                      r"(?P<host>\S+) (?P<tag>[^\s:\[]+)(?:\[\d+\])?(?:: ?| )")
_RFC5424 = re.compile(r"^<\d{1,3}>1 \S+ (?P<host>\S+) (?P<tag>\S+) \S+ \S+ (?:-|(?:\[(?:[^\]\\\"]|\\.|\"(?:[^\"\\]|\\.)*\")*\])+) ?")


@dataclass(frozen=True)
class SyslogHeader:
    host: str | None
    tag: str
    length: int          # characters of the line the header takes


def parse_header(line: str) -> SyslogHeader | None:
    for pattern in (_RFC5424, _RFC3164):
        match = pattern.match(line)
        if match:
            host = match["host"]
            return SyslogHeader(None if host == "-" else host, match["tag"], match.end())
    return None
