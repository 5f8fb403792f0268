"""The SPL engine `dac test` uses: the generated SPL compiled to DuckDB (dac.engines.spl.sql) gives the
verdicts, and the Python evaluator (dac.engines.spl.engine), the semantic reference, runs the same query
on the same events. Any difference in the result rows is recorded as a failure, so the compiler is
checked row for row on every sample file, not only where a label happens to notice.

Both engines' rows are a function of the search text, the clock and the events, so they are kept
in a process-wide memo keyed by those (the events by a digest of their repr, which tells types
and field order apart): a search run again on the same events (the next `dac test` in the same
process, as in the test suite) is neither indexed nor executed again, and its comparison is
repeated on the kept rows. The engines' run methods are part of the key, so a replaced one (a
test's) never meets a kept result. A session over an index built elsewhere (`over`, a streamed
input) keeps nothing."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
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


# (search, clock, events digest, reference?, engines' run methods) -> (DuckDB rows, reference rows or None)
_RESULTS: OrderedDict[tuple, tuple[list[dict], list[dict] | None]] = OrderedDict()
_RESULTS_LIMIT = 4096


class CheckedSpl:
    def __init__(self, events: list[dict], now: datetime | float | None, reference: bool = True):
        self.events, self.now, self.reference = events, now, reference
        self._sessions: tuple[SplSession, SqlSession] | None = None
        self.differences: list[str] = []
        self.compared = 0           # searches run on both engines
        self._digest: str | None = None
        self._keep = True           # False for a session over an index built elsewhere

    @classmethod
    def over(cls, index: SplIndex, reference_events: list[dict] | None, now) -> "CheckedSpl":
        """Over an index already built (a streamed input); the reference runs only when the
        events were few enough to keep (reference_events not None)."""
        checked = cls([], now, reference=reference_events is not None)
        checked._keep = False
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
        key = self._key(text)
        if key is not None and key in _RESULTS:
            _RESULTS.move_to_end(key)
            got, expected = _RESULTS[key]
            got = [dict(row) for row in got]
        else:
            reference, fast = self._engines()
            got = fast.run(text)
            expected = _normal(reference.run(text)) if reference is not None else None
            if key is not None:
                _RESULTS[key] = ([dict(row) for row in got], expected)
                if len(_RESULTS) > _RESULTS_LIMIT:
                    _RESULTS.popitem(last=False)
        if expected is None:
            return got
        self.compared += 1
        if expected != got:
            self.differences.append(f"{what}: the DuckDB SPL engine and the Python reference disagree: "
                                    f"{_first_difference(expected, got)}")
        return got

    def _key(self, text: str) -> tuple | None:
        if not self._keep:
            return None
        if self._digest is None:
            self._digest = hashlib.sha256(repr(self.events).encode("utf-8", "surrogatepass")).hexdigest()
        return (text, self.now, self._digest, self.reference, SqlSession.run, SplSession.run)
