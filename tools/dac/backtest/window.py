"""The time window of a backtest and its slices: `--since 7d` ends now (rounded down to the
minute, so two runs in the same minute ask the SIEM the same question) and is cut into slices
(1 day by default) so that one expensive day cannot take the whole budget, progress can be
shown, and a run stopped by a budget still has complete days to report."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
MAX_WINDOW = timedelta(days=90)


class WindowError(ValueError):
    pass


def parse_duration(text: str, what: str = "--since") -> timedelta:
    """`30m`, `12h`, `7d`: a positive whole number and a unit."""
    match = re.fullmatch(r"\s*([0-9]{1,4})\s*([mhd])\s*", text or "")
    if not match or int(match.group(1)) == 0:
        raise WindowError(f"{what} {text!r}: expected a positive duration like 30m, 12h or 7d")
    return int(match.group(1)) * UNITS[match.group(2)]


@dataclass(frozen=True)
class Slice:
    start: datetime
    end: datetime

    def iso(self) -> str:
        """ISO 8601 interval, as Log Analytics' `timespan` takes it."""
        return f"{_iso(self.start)}/{_iso(self.end)}"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400

    def slices(self, size: timedelta) -> list[Slice]:
        """Newest first: a run that stops early has the most recent data."""
        out, end = [], self.end
        while end > self.start:
            start = max(self.start, end - size)
            out.append(Slice(start, end))
            end = start
        return out


def window(since: timedelta, now: datetime | None = None) -> Window:
    if since > MAX_WINDOW:
        raise WindowError(f"--since {since.days}d is longer than {MAX_WINDOW.days} days")
    end = (now or utc_now()).astimezone(timezone.utc).replace(second=0, microsecond=0)
    return Window(end - since, end)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(moment: datetime) -> str:
    return _iso(moment)
