"""A time budget for the regexes replay runs with Python's `re` (the Sigma engine's SQLite REGEXP).

Rules whose regexes could backtrack catastrophically are refused when they are loaded
(dac.core.regex_safety), so replay should never meet one; this is the second line, for what the
analysis does not catch. A regex that runs longer than the budget on one value stops the replay
with an error naming the pattern and the rule, instead of hanging.

How: Python's regex engine checks for signals while it backtracks, so an interval timer
(SIGALRM, every 1/4 s) runs a handler that raises when the regex under way started more than
`seconds` ago. Marking a call costs two assignments and a clock read. Only the main thread gets
signals; elsewhere (or without SIGALRM) the budget is simply not armed.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time

TICK = 0.25
DEFAULT_SECONDS = 2.0       # one regex on one value; real ones take microseconds

_started: float | None = None      # when the current guarded regex call began
_pattern: str | None = None
_limit: float | None = None         # None: no budget armed


class RegexBudgetExceeded(Exception):
    def __init__(self, pattern: str, seconds: float, rule: str | None = None):
        self.pattern, self.seconds, self.rule = pattern, seconds, rule
        where = f" in {rule}" if rule else ""
        shown = pattern if len(pattern) <= 80 else pattern[:80] + "…"
        super().__init__(f"regular expression {shown!r}{where} ran longer than {seconds:g}s on one value "
                         "(catastrophic backtracking?); replay stopped")


def search(compiled, text: str):
    """compiled.search(text), under the budget when one is armed."""
    global _started, _pattern
    if _limit is None:
        return compiled.search(text)
    _started, _pattern = time.monotonic(), compiled.pattern
    try:
        return compiled.search(text)
    finally:
        _started = None


_tripped: str | None = None


def tripped() -> str | None:
    """The pattern that ran over the budget since the budget was armed, if any."""
    return _tripped


def limit() -> float | None:
    return _limit


def _on_tick(signum, frame):
    global _tripped
    started, limit = _started, _limit
    if started is not None and limit is not None and time.monotonic() - started > limit:
        _tripped = _pattern
        raise RegexBudgetExceeded(_pattern or "", limit)


@contextlib.contextmanager
def armed(seconds: float = DEFAULT_SECONDS):
    global _limit, _tripped
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_tick)
    signal.siginterrupt(signal.SIGALRM, False)   # SA_RESTART: C libraries (DuckDB, SQLite) never see EINTR
    _limit, _tripped = seconds, None
    signal.setitimer(signal.ITIMER_REAL, TICK, TICK)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
        _limit = None
