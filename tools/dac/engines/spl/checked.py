"""The SPL engine `dac test` uses: the generated SPL compiled to DuckDB (dac.engines.spl.sql) gives the
verdicts, and the Python evaluator (dac.engines.spl.engine), the semantic reference, runs the same query
on the same events. Any difference in the result rows is recorded as a failure, so the compiler is
checked row for row on every sample file, not only where a label happens to notice."""
from __future__ import annotations

from datetime import datetime

from .engine import SplSession
from .sql import SplIndex, SqlSession


def _normal(rows: list[dict]) -> list[dict]:
    # the reference may carry fields whose value is None (absent in Splunk); numbers compare by value
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def _first_difference(expected: list[dict], got: list[dict]) -> str:
    if len(expected) != len(got):
        return f"{len(expected)} rows from the reference, {len(got)} from DuckDB"
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            shown = "; ".join(f"{k}: reference {a.get(k)!r}, DuckDB {b.get(k)!r}" for k in fields[:5])
            return f"row {i + 1} differs ({shown})"
    return "rows differ"


class CheckedSpl:
    def __init__(self, events: list[dict], now: datetime | float | None, reference: bool = True):
        self.events, self.now, self.reference = events, now, reference
        self._sessions: tuple[SplSession, SqlSession] | None = None
        self.differences: list[str] = []
        self.compared = 0           # searches run on both engines

    @classmethod
    def over(cls, index: SplIndex, reference_events: list[dict] | None, now) -> "CheckedSpl":
        """Over an index already built (a streamed input); the reference runs only when the
        events were few enough to keep (reference_events not None)."""
        checked = cls([], now, reference=reference_events is not None)
        checked._sessions = (SplSession(reference_events, now) if reference_events is not None else None,
                             SqlSession(index, now))
        return checked

    def _engines(self) -> tuple[SplSession | None, SqlSession]:
        # built at the first search: a Defender file has no Splunk events and never needs them
        if self._sessions is None:
            self._sessions = (SplSession(self.events, self.now) if self.reference else None,
                              SqlSession(SplIndex(self.events), self.now))
        return self._sessions

    def run(self, text: str, what: str) -> list[dict]:
        """Rows of the DuckDB engine; `what` names the query in a difference report. Raises
        SplUnsupported when either engine refuses the query. Without the reference (large
        offline hunts, where it would take minutes) only the DuckDB engine runs."""
        reference, fast = self._engines()
        got = fast.run(text)
        if reference is None:
            return got
        expected = _normal(reference.run(text))
        self.compared += 1
        if expected != got:
            self.differences.append(f"{what}: the DuckDB SPL engine and the Python reference disagree: "
                                    f"{_first_difference(expected, got)}")
        return got
