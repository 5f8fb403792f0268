"""An offline evaluator for the SPL subset the generator emits, so the searches we deploy are
executed against sample events instead of eyeballed.

Nothing runs SPL outside Splunk, so this evaluator implements exactly what `dac convert` writes and
refuses everything else with SplUnsupported (the replay reports that as "not testable", never as
a pass). Supported:

- the search language: `field=value`, `field!=value`, `field IN (…)`, `*` wildcards, values
  compared without case, NOT / OR / AND with Splunk's precedence (NOT binds tightest, then OR,
  then AND, so `a b OR c` is `a AND (b OR c)`), `earliest=`/`latest=` relative times; bare
  terms and TERM() matched in _raw on Splunk's breakers, and `[search …]` subsearches whose rows
  are `search=TERM(x)` (spl_parse);
- commands: search, where, eval, rex field=, regex, stats, streamstats, sort, append [subsearch],
  table, fields, head, dedup;
- eval functions: if case coalesce null isnull isnotnull match replace urldecode mvindex mvfind
  mvjoin mvcount lower upper len tostring tonumber substr like true false.

Splunk semantics kept on purpose: every event of the index is its own event (auditd SYSCALL and
PATH records are separate until the search joins them), field values are strings, comparisons are
numeric when both sides are numbers, a multivalue field matches a search term when any value does,
rex reads the first value of a multivalue field, stats drops events missing a by-field and orders
its rows by the by-fields, values() is distinct and sorted, null fields are simply absent, and an
empty rex capture makes no field.

The query text is parsed once by dac.engines.spl.parse; the DuckDB engine (dac.engines.spl.sql) compiles the same
trees to SQL for speed and is checked against this one, which stays the semantic reference.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Iterable

from .engine_commands import Command, cmd_append, cmd_dedup, cmd_eval, cmd_fields, cmd_head, cmd_regex, cmd_rex, cmd_search, cmd_sort, cmd_stats, cmd_streamstats, cmd_table, cmd_where
from .engine_expr import Event, search_filter
from .parse import SplUnsupported
from .pipeline import Pipeline, cache_points, parse_pipeline, prefix_keys

__all__ = ["SplSession", "SplUnsupported", "run_spl"]


_COMMANDS: dict[str, Callable[[object, "SplSession"], Command]] = {
    "search": cmd_search, "where": cmd_where, "eval": cmd_eval, "rex": cmd_rex, "regex": cmd_regex,
    "stats": cmd_stats, "streamstats": cmd_streamstats, "sort": cmd_sort, "table": cmd_table,
    "fields": cmd_fields, "head": cmd_head, "dedup": cmd_dedup, "append": cmd_append,
}


class SplSession:
    """One index of events and a fixed clock, on which several searches run.

    Searches generated for one log source share a long prefix (base search, record assembly by
    stats, proctitle decoding). The session keeps the result of each prefix that ends in `stats`
    and starts later searches with the same prefix from a copy of it: the answer is the same,
    the work is done once. Runs of per-event commands (search, where, eval, rex, regex) are done
    in one pass, and a stats right after them consumes that pass as a stream, so the events in
    between are never all held at once. The caller's events are never modified."""

    def __init__(self, events: Iterable[Event], now: datetime | float | None = None):
        if isinstance(now, datetime):
            now = (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).timestamp()
        self.now = float(now) if now is not None else datetime.now(timezone.utc).timestamp()
        # Splunk returns events newest first
        self.events = sorted(events, key=lambda e: -float(e.get("_time", 0)))
        self._cache: dict[tuple[str, ...], list[Event]] = {}

    def run(self, text: str) -> list[Event]:
        """Execute one SPL search; returns its result rows."""
        return self.compile(text)()

    def compile(self, text: str) -> Callable[[], list[Event]]:
        return self.compile_pipeline(parse_pipeline(text))

    def compile_pipeline(self, pipeline: Pipeline) -> Callable[[], list[Event]]:
        base = search_filter(pipeline.base, self.now, self)
        steps = [(step.name, _COMMANDS[step.name](step.spec, self)) for step in pipeline.steps]
        keys = prefix_keys(pipeline)
        cache_at = cache_points(pipeline.steps)

        def run() -> list[Event]:
            start = next((i + 1 for i in reversed(range(len(steps))) if keys[i] in self._cache), 0)
            # events come from the index (filtered by the base search) or a cached prefix; they
            # are copied lazily, the first time a step changes them
            events: Iterable[Event] = self._cache[keys[start - 1]] if start else self.events
            first_filter = None if start else base
            owned = False
            i = start
            while i < len(steps) or not owned:
                ops = []
                while i < len(steps) and hasattr(steps[i][1], "per_event"):
                    ops.append(steps[i][1].per_event)
                    i += 1
                    if i - 1 in cache_at:
                        break
                if ops or not owned:
                    events = _stream(events, first_filter, ops, owned)
                    first_filter, owned = None, True
                    if not (i < len(steps) and steps[i][0] == "stats" and i - 1 not in cache_at):
                        events = list(events)       # only stats consumes a stream directly
                    if ops and i - 1 in cache_at:
                        self._cache[keys[i - 1]] = [dict(e) for e in events]
                    continue
                name, step = steps[i]
                events = step(events)
                if i in cache_at:
                    self._cache[keys[i]] = [dict(e) for e in events]
                i += 1
            return events if isinstance(events, list) else list(events)
        return run


def _stream(source: Iterable[Event], base, ops: list, owned: bool) -> Iterable[Event]:
    """One pass of per-event filters and updates; an event not yet owned is copied before its
    first update (or on the way out), so the index and the cache are never changed."""
    for e in source:
        if base is not None and not base(e):
            continue
        mine = owned
        for kind, fn in ops:
            if kind == "filter":
                if not fn(e):
                    break
            else:
                if not mine:
                    e, mine = dict(e), True
                fn(e)
        else:
            yield e if mine else dict(e)


def run_spl(text: str, events: Iterable[Event], now: datetime | float | None = None) -> list[Event]:
    """Execute one SPL search over events indexed as Splunk would hold them; returns result rows."""
    return SplSession(events, now).run(text)
