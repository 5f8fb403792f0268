"""What a log reader gives the replay: events as rows (Sigma and KQL engines), the same events as
Splunk would index them (SPL engine), and every input line it could not use, with the reason."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LogProblem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


@dataclass
class SampleLog:
    """One input file, read.

    rows: one dict per event (for auditd, the records of one syscall assembled), each with
      `dac_key` (the event's identity, unique across hosts: see the reader), `dac_lines` (the
      1-based input lines it was made from), `_time` (epoch seconds) and `host`.
    splunk_events: the events as Splunk indexes them (each auditd record its own event).
    """
    path: str
    format: str
    shape: str = ""
    splunk_events: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    problems: list[LogProblem] = field(default_factory=list)
    lines: int = 0                  # input lines read (blank lines included)
