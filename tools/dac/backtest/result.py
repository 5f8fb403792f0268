"""What a backtest found per rule, from the rows the SIEM returned: hits per day, distinct hosts,
users and processes, the top 10 entities, and what the searches cost. Rows are read by column
name; the generated queries name these columns differently per target, hence the lists."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .window import Slice, Window

TIME_FIELDS = ("_time", "TimeGenerated", "Timestamp", "FirstTime", "timestamp")
HOST_FIELDS = ("host", "Computer", "DeviceName", "hostName", "hostname")
USER_FIELDS = ("user", "User", "AccountName", "InitiatingProcessAccountName", "userName", "auid", "uid")
# DeviceProcessEvents rows describe the process itself (FolderPath); DeviceFileEvents rows a file
# touched by InitiatingProcessFolderPath: see process_of()
PROCESS_FIELDS = ("exe", "Image", "processName", "ProcessName", "process", "comm")
KINDS = ("host", "user", "process")
TOP = 10


@dataclass
class RuleRun:
    rule: str
    rule_id: str
    target: str
    path: str
    hits: int = 0
    per_day: Counter = field(default_factory=Counter)
    entities: dict[str, Counter] = field(default_factory=lambda: {k: Counter() for k in KINDS})
    cost: Counter = field(default_factory=Counter)
    slices: list[Slice] = field(default_factory=list)        # the slices that ran completely
    error: str | None = None

    def add(self, part: Slice, rows: list[dict], cost: dict[str, float]) -> None:
        """One slice's verified rows and cost (a slice either counts whole or not at all)."""
        for row in rows:
            self.hits += 1
            self.per_day[_day(row, part)] += 1
            for kind, value in entities_of(row).items():
                self.entities[kind][value] += 1
        self.cost.update({k: v for k, v in cost.items() if v is not None})
        self.cost["searches"] += 1
        self.slices.append(part)

    @property
    def covered_days(self) -> float:
        return sum((s.end - s.start).total_seconds() for s in self.slices) / 86400

    @property
    def per_day_average(self) -> float | None:
        return round(self.hits / self.covered_days, 2) if self.covered_days else None

    def top(self) -> list[tuple[str, str, int]]:
        counts = [(kind, value, n) for kind in KINDS for value, n in self.entities[kind].items()]
        return sorted(counts, key=lambda e: (-e[2], e[0], e[1]))[:TOP]

    def as_dict(self) -> dict:
        return {"rule": self.rule, "rule_id": self.rule_id, "target": self.target, "path": self.path,
                "hits": self.hits, "hits_per_day": self.per_day_average, "days_covered": round(self.covered_days, 3),
                "per_day": dict(sorted(self.per_day.items())),
                "distinct": {k: len(self.entities[k]) for k in KINDS},
                "top_entities": [{"kind": k, "value": v, "hits": n} for k, v, n in self.top()],
                "entities": {k: sorted(self.entities[k]) for k in KINDS},
                "cost": {k: round(v, 3) for k, v in sorted(self.cost.items())}, "error": self.error}


@dataclass
class Report:
    siem: str
    endpoint: str
    window: Window
    slice_hours: float
    runs: list[RuleRun]
    partial: str | None = None            # why the run stopped before every slice ran
    fatal: str | None = None              # an error that stopped every rule (authentication…)

    @property
    def status(self) -> str:
        if self.fatal or any(r.error for r in self.runs):
            return "ERROR"
        return "PARTIAL" if self.partial else "COMPLETE"

    def as_dict(self) -> dict:
        return {"siem": self.siem, "endpoint": self.endpoint, "status": self.status,
                "window": {"start": _iso(self.window.start), "end": _iso(self.window.end),
                           "days": round(self.window.days, 3), "slice_hours": self.slice_hours},
                "partial": self.partial, "fatal": self.fatal, "rules": [r.as_dict() for r in self.runs]}


def _value(row: dict, names) -> str | None:
    for name in names:
        value = row.get(name)
        if isinstance(value, list):        # Splunk multivalue fields (stats values())
            value = value[0] if value else None
        if value not in (None, ""):
            return str(value)
    return None


def process_of(row: dict) -> str | None:
    value = _value(row, PROCESS_FIELDS)
    if value is None:
        value = _value(row, ("FolderPath",) if "ProcessCommandLine" in row else ("InitiatingProcessFolderPath",))
    return value


def entities_of(row: dict) -> dict[str, str]:
    found = {"host": _value(row, HOST_FIELDS), "user": _value(row, USER_FIELDS), "process": process_of(row)}
    return {k: v for k, v in found.items() if v is not None}


def parse_time(value) -> datetime | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)) or str(value).replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), timezone.utc)
        text = str(value).replace("Z", "+00:00")
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def _day(row: dict, part: Slice) -> str:
    """The UTC day of a hit: its own time, else the slice's (a query may project no time)."""
    for name in TIME_FIELDS:
        moment = parse_time(row.get(name))
        if moment:
            return moment.astimezone(timezone.utc).date().isoformat()
    return part.start.date().isoformat()


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
