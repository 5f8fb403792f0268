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

import functools
import re
from datetime import datetime, timezone
from typing import Callable, Iterable
from urllib.parse import unquote

from .parse import (COMPARISONS, NUMBER, Pipeline, Rex, Search, Sort, Stats, SplUnsupported, cache_points,
                        major_tokens, parse_pipeline, prefix_keys, python_regex, resolve_time, subsearch_terms,
                        text_value, wildcard)

__all__ = ["SplSession", "SplUnsupported", "run_spl"]

Event = dict
Value = object          # None, str, int/float, or list[str] (multivalue)


# --- values ----------------------------------------------------------------------------------------

def _values(v: Value) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _first(v: Value):
    return v[0] if isinstance(v, list) else v


def _number(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str) and NUMBER.match(v):
        return float(v)
    return None


def _mv(values: list) -> Value:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


# --- search language -----------------------------------------------------------------------------

def _exact_any(field: str, items: list[str]) -> Callable[[Event], bool]:
    """field=value / field IN (…) without wildcards: a set lookup, still without case."""
    wanted = {i.lower() for i in items}

    def match(e: Event) -> bool:
        v = e.get(field)
        if v is None:
            return False
        if type(v) is str:
            return v.lower() in wanted
        return any(text_value(x).lower() in wanted for x in _values(v))
    return match


def _raw_text(e: Event) -> str | None:
    raw = e.get("_raw")
    return None if raw is None else text_value(_first(raw))


def _subsearch(sub: Pipeline, session) -> Callable[[Event], bool]:
    """`[search …]` as a search term: its TERM(x) rows, any of which must be a token of _raw. The
    subsearch runs once, the first time an event is tested."""
    if session is None:
        raise SplUnsupported("a subsearch needs a session")
    run_sub, terms = session.compile_pipeline(sub), []

    def match(e: Event) -> bool:
        if not terms:
            terms.append(subsearch_terms(run_sub()))
        raw = _raw_text(e)
        return raw is not None and not terms[0].isdisjoint(major_tokens(raw))
    return match


def _search_predicate(tree: tuple, session=None) -> Callable[[Event], bool]:
    kind = tree[0]
    if kind == "all":
        return lambda e: True
    if kind == "raw":
        pattern = re.compile(tree[1])
        return lambda e: (raw := _raw_text(e)) is not None and pattern.search(raw) is not None
    if kind == "subsearch":
        return _subsearch(tree[1], session)
    if kind == "and":
        parts = [_search_predicate(t, session) for t in tree[1]]
        return lambda e: all(p(e) for p in parts)
    if kind == "or":
        parts = [_search_predicate(t, session) for t in tree[1]]
        return lambda e: any(p(e) for p in parts)
    if kind == "not":
        inner = _search_predicate(tree[1], session)
        return lambda e: not inner(e)
    if kind == "in":
        _, field, items = tree
        if not any("*" in i for i in items):
            return _exact_any(field, items)
        patterns = [wildcard(i) for i in items]
        return lambda e: any(p.fullmatch(text_value(v)) for v in _values(e.get(field)) for p in patterns)
    _, field, op, value = tree
    if op in ("=", "!="):
        pattern = wildcard(value)
        if op == "=" and "*" not in value:
            return _exact_any(field, [value])
        if op == "=":
            return lambda e: any(pattern.fullmatch(text_value(v)) for v in _values(e.get(field)))
        # field!=value: the field must exist and no value match (unlike NOT field=value)
        return lambda e: field in e and e[field] is not None and not any(
            pattern.fullmatch(text_value(v)) for v in _values(e[field]))
    number = float(_number(value))
    compare = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}[op]
    return lambda e: any((n := _number(v)) is not None and compare(float(n), number) for v in _values(e.get(field)))


def _search_filter(search: Search, now: float, session=None) -> Callable[[Event], bool]:
    pred = _search_predicate(search.tree, session)
    if search.earliest is None and search.latest is None:
        return pred
    low = resolve_time(search.earliest, now) if search.earliest is not None else float("-inf")
    high = resolve_time(search.latest, now) if search.latest is not None else float("inf")
    return lambda e: low <= float(e.get("_time", 0)) < high and pred(e)


# --- eval expressions ----------------------------------------------------------------------------

def _compare(op: str, a, b) -> bool | None:
    if a is None or b is None:
        return None
    pairs = [(x, y) for x in _values(a) for y in _values(b)]
    for x, y in pairs:        # a multivalue side compares true when any value does
        nx, ny = _number(x), _number(y)
        if nx is not None and ny is not None:
            x, y = float(nx), float(ny)
        else:
            x, y = text_value(x), text_value(y)
        if {"=": x == y, "==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]:
            return True
    return False


def _arith(op: str, a, b):
    if a is None or b is None:
        return None
    if op == ".":
        return text_value(_first(a)) + text_value(_first(b))
    na, nb = _number(_first(a)), _number(_first(b))
    if op == "+" and (na is None or nb is None):
        return text_value(_first(a)) + text_value(_first(b))          # + concatenates strings
    if na is None or nb is None:
        return None
    if op == "/" and nb == 0:
        return None
    result = {"+": na + nb, "-": na - nb, "*": na * nb, "/": na / nb, "%": na % nb if nb else None}[op]
    return int(result) if isinstance(result, float) and result.is_integer() and op != "/" else result


def _like(value, pattern) -> bool | None:
    if value is None or pattern is None:
        return None
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in text_value(pattern))
    return any(re.fullmatch(regex, text_value(v), re.S) for v in _values(value))


@functools.lru_cache(maxsize=256)
def _replace_template(template: str):
    """Splunk's replacement: \\N is group N, every other character literal. A template with one
    group reference becomes a plain concatenation (re's own template expansion is slow per match)."""
    parts = re.split(r"\\(\d)", template)
    if len(parts) == 1:
        return lambda m: template
    if len(parts) == 3:
        before, group, after = parts[0], int(parts[1]), parts[2]
        return lambda m: before + (m.group(group) or "") + after
    return lambda m: "".join(p if i % 2 == 0 else (m.group(int(p)) or "") for i, p in enumerate(parts))


def _fn_match(s, pattern):
    if s is None or pattern is None:
        return None
    regex = python_regex(text_value(pattern))
    return any(regex.search(text_value(v)) for v in _values(s))


def _fn_replace(s, pattern, template):
    if s is None or pattern is None or template is None:
        return None
    regex, expand = python_regex(text_value(pattern)), _replace_template(text_value(template))
    return _mv([regex.sub(expand, text_value(v)) for v in _values(s)])


def _fn_urldecode(s):
    return None if s is None else _mv([unquote(text_value(v), errors="replace") for v in _values(s)])


def _fn_mvindex(mv, start, end=None):
    values = _values(mv)
    if start is None or not values:
        return None
    i = int(float(start))
    if end is None:
        return values[i] if -len(values) <= i < len(values) else None
    j = int(float(end))
    j = j if j >= 0 else len(values) + j
    return _mv(values[i: j + 1])


def _fn_mvfind(mv, pattern):
    regex = python_regex(text_value(pattern))
    for i, v in enumerate(_values(mv)):
        if regex.search(text_value(v)):
            return i
    return None


def _fn_substr(s, start, length=None):
    if s is None:
        return None
    text, i = text_value(_first(s)), int(float(start))
    i = i - 1 if i > 0 else len(text) + i
    return text[i:] if length is None else text[i: i + int(float(length))]


def _fn_tonumber(s, base=None):
    if s is None:
        return None
    try:
        return int(text_value(_first(s)), int(base)) if base is not None else _number(_first(s))
    except ValueError:
        return None


_FUNCTIONS: dict[str, Callable] = {
    "coalesce": lambda *a: next((v for v in a if v is not None), None),
    "null": lambda: None,
    "true": lambda: True,
    "false": lambda: False,
    "isnull": lambda v: v is None,
    "isnotnull": lambda v: v is not None,
    "match": _fn_match,
    "replace": _fn_replace,
    "urldecode": _fn_urldecode,
    "mvindex": _fn_mvindex,
    "mvfind": _fn_mvfind,
    "mvjoin": lambda mv, sep: None if mv is None else text_value(_first(sep)).join(text_value(x) for x in _values(mv)),
    "mvcount": lambda v: None if v is None else len(_values(v)),
    "lower": lambda v: None if v is None else _mv([text_value(x).lower() for x in _values(v)]),
    "upper": lambda v: None if v is None else _mv([text_value(x).upper() for x in _values(v)]),
    "len": lambda v: None if v is None else len(text_value(_first(v))),
    "tostring": lambda v: None if v is None else text_value(_first(v)),
    "tonumber": _fn_tonumber,
    "substr": _fn_substr,
    "like": _like,
}




def _combine(op, left, right):
    if op == "AND":
        return lambda e: left(e) is True and right(e) is True
    if op == "OR":
        return lambda e: left(e) is True or right(e) is True
    if op == "XOR":
        return lambda e: (left(e) is True) != (right(e) is True)
    if op == "LIKE":
        return lambda e: _like(left(e), right(e))
    if op in ("=", "!=") and getattr(right, "constant", None) is not None and _number(right.constant) is None:
        # field = "text": a plain string comparison (the common case, kept fast)
        text, equal = right.constant, op != "!="

        def compare_text(e):
            v = left(e)
            if v is None:
                return None
            if type(v) is str:
                return (v == text) == equal
            return _compare(op, v, text)
        return compare_text
    if op in COMPARISONS:
        return lambda e: _compare(op, left(e), right(e))
    return lambda e: _arith(op, left(e), right(e))


def _expression(tree: tuple) -> Callable[[Event], Value]:
    kind = tree[0]
    if kind in ("num", "str"):
        value = tree[1]

        def constant(e):
            return value
        constant.constant = value if kind == "str" else None
        return constant
    if kind == "field":
        name = tree[1]
        return lambda e: e.get(name)
    if kind == "not":
        inner = _expression(tree[1])
        return lambda e: (lambda v: None if v is None else v is not True)(inner(e))
    if kind == "neg":
        inner = _expression(tree[1])
        return lambda e: _arith("-", 0, inner(e))
    if kind == "bin":
        return _combine(tree[1], _expression(tree[2]), _expression(tree[3]))
    _, name, arg_trees = tree
    args = [_expression(a) for a in arg_trees]
    if name == "case":          # if and case evaluate only the branch taken
        pairs = list(zip(args[::2], args[1::2]))
        return lambda e: next((v(e) for c, v in pairs if c(e) is True), None)
    if name == "if":
        c, a, b = args
        return lambda e: a(e) if c(e) is True else b(e)
    if name in ("match", "mvfind", "replace") and arg_trees[1][0] == "str":
        python_regex(arg_trees[1][1])     # refuse a pattern Python cannot run before any event is seen
    function = _FUNCTIONS[name]
    return lambda e: function(*(a(e) for a in args))


# --- commands ------------------------------------------------------------------------------------

Command = Callable[[list[Event]], list[Event]]


def _set(event: Event, field: str, value: Value) -> None:
    if value is None or value == []:
        event.pop(field, None)
    elif isinstance(value, bool):
        raise SplUnsupported(f"eval would store a boolean in {field} (Splunk rejects that)")
    else:
        event[field] = value


def _per_event(kind: str, fn: Callable[[Event], object]) -> Command:
    """A command that looks at one event at a time: a filter (keeps the event when fn is true)
    or an update (fn changes the event). The session runs runs of these in one pass."""
    if kind == "filter":
        def run(events):
            return [e for e in events if fn(e)]
    else:
        def run(events):
            for e in events:
                fn(e)
            return events
    run.per_event = (kind, fn)
    return run


def _cmd_search(spec: Search, session) -> Command:
    return _per_event("filter", _search_filter(spec, session.now, session))


def _cmd_where(spec: tuple, session) -> Command:
    expr = _expression(spec)
    return _per_event("filter", lambda e: expr(e) is True)


def _cmd_eval(spec: list[tuple[str, tuple]], session) -> Command:
    assignments = [(field, _expression(tree)) for field, tree in spec]

    def apply(e):
        for field, expr in assignments:
            _set(e, field, expr(e))
    return _per_event("update", apply)


def _cmd_rex(spec: Rex, session) -> Command:
    field, regex = spec.field, python_regex(spec.pattern)
    names = list(regex.groupindex)

    def apply(e):
        value = e.get(field)
        if value is None:
            return
        m = regex.search(value if type(value) is str else text_value(_first(value)))
        if m:
            for name in names:
                found = m.group(name)
                if found:       # an empty capture makes no field (as in the DuckDB engine)
                    e[name] = found
    return _per_event("update", apply)


def _cmd_regex(spec: tuple[str, bool, str], session) -> Command:
    field, keep, pattern = spec
    regex = python_regex(pattern)
    return _per_event("filter", lambda e: any(regex.search(text_value(v)) for v in _values(e.get(field))) == keep)


def sort_key(v) -> tuple:
    n = _number(v)
    return (0, float(n), "") if n is not None else (1, 0.0, text_value(v))


def _agg_values(values: list):
    return _mv(sorted({v if type(v) is str else text_value(v) for v in values}))


def _agg_minmax(values: list, pick):
    if not values:
        return None
    numbers = [_number(v) for v in values]
    if all(n is not None for n in numbers):
        return values[numbers.index(pick(numbers))]
    return pick((text_value(v) for v in values))


_AGGREGATES: dict[str, Callable[[list], Value]] = {
    "count": len,
    "dc": lambda vs: len({text_value(v) for v in vs}),
    "values": _agg_values,
    "list": lambda vs: _mv([text_value(v) for v in vs]),
    "min": lambda vs: _agg_minmax(vs, min),
    "max": lambda vs: _agg_minmax(vs, max),
    "sum": lambda vs: (lambda s: int(s) if float(s).is_integer() else s)(sum(float(_number(v) or 0) for v in vs)) if vs else None,
    "first": lambda vs: vs[0] if vs else None,
    "last": lambda vs: vs[-1] if vs else None,
}


def _cmd_stats(spec: Stats, session) -> Command:
    aggs, by = spec.aggs, spec.by
    needed = sorted({a.field for a in aggs if a.field})
    position = {f: i for i, f in enumerate(needed)}

    def run(events):
        # per group, the needed values of each event (one list per event); aggregates afterwards.
        # Keeping values, not events, lets a streamed input be freed as it goes.
        groups: dict[tuple, list[list]] = {}
        for e in events:
            try:
                key = tuple(e[f] for f in by)
            except KeyError:
                continue                # Splunk drops events that miss a by-field
            if any(type(v) is list for v in key):
                raise SplUnsupported(f"stats by a multivalue field ({', '.join(by)}) is outside the evaluated subset")
            values = [e.get(f) for f in needed]
            members = groups.get(key)
            if members is None:
                groups[key] = [values]
            else:
                members.append(values)
        rows = []
        for key in sorted(groups, key=lambda k: tuple(sort_key(v) for v in k)):
            row = dict(zip(by, key))
            members = groups[key]
            for a in aggs:
                if a.field is None:
                    slot = [1] * len(members)
                else:
                    slot, i = [], position[a.field]
                    for v in [m[i] for m in members if m[i] is not None]:
                        slot.extend(v) if type(v) is list else slot.append(v)
                _set(row, a.alias, _AGGREGATES[a.func](slot))
            rows.append(row)
        if not by and not rows:
            rows = [{a.alias: 0 for a in aggs if a.func in ("count", "dc")}]
        return rows
    return run


def _cmd_streamstats(spec: Stats, session) -> Command:
    aggs, by = spec.aggs, spec.by

    def run(events):
        state: dict[tuple, list[list]] = {}
        times: dict[tuple, list[float]] = {}
        for e in events:
            key = tuple(text_value(_first(e.get(f))) if e.get(f) is not None else None for f in by)
            if None in key:     # Splunk leaves events without a by-field alone
                continue
            if spec.window is not None:
                # time_window: only the earlier events of the group at most `window` seconds older
                # (the stream is in time order: the searches sort by _time first)
                now = float(e.get("_time", 0))
                kept = times.setdefault(key, [])
                slots = state.setdefault(key, [[] for _ in aggs])
                kept.append(now)
                for slot, a in zip(slots, aggs):
                    slot.append([1] if a.func == "count" and a.field is None else _values(e.get(a.field)))
                start = next((i for i, t in enumerate(kept) if now - t <= spec.window), len(kept))
                del kept[:start]
                for slot, a in zip(slots, aggs):
                    del slot[:start]
                    _set(e, a.alias, _AGGREGATES[a.func]([v for values in slot for v in values]))
                continue
            slots = state.setdefault(key, [[] for _ in aggs])
            for slot, a in zip(slots, aggs):
                slot.extend([1] if a.func == "count" and a.field is None else _values(e.get(a.field)))
                _set(e, a.alias, _AGGREGATES[a.func](slot))
        return events
    return run


def _compare_events(keys: list[tuple[str, bool]]):
    def cmp(a: Event, b: Event) -> int:
        for field, descending in keys:
            va, vb = a.get(field), b.get(field)
            if va is None and vb is None:
                continue
            if va is None or vb is None:        # missing values sort last either way
                return 1 if va is None else -1
            ka, kb = sort_key(_first(va)), sort_key(_first(vb))
            if ka != kb:
                return (1 if ka > kb else -1) * (-1 if descending else 1)
        return 0
    return functools.cmp_to_key(cmp)


def _cmd_sort(spec: Sort, session) -> Command:
    key = _compare_events(spec.keys)
    return lambda events: sorted(events, key=key)[:spec.limit]


def _cmd_table(fields: list[str], session) -> Command:
    patterns = [wildcard(f) for f in fields]

    def run(events):
        out = []
        for e in events:
            row = {}
            for f, p in zip(fields, patterns):
                if "*" in f:
                    row.update({k: v for k, v in e.items() if p.fullmatch(k)})
                elif f in e:
                    row[f] = e[f]
            out.append(row)
        return out
    return run


def _cmd_fields(spec: tuple[bool, list[str]], session) -> Command:
    remove, fields = spec
    if remove:
        return lambda events: [{k: v for k, v in e.items() if k not in fields} for e in events]
    keep = set(fields) | {"_time", "_raw"}
    return lambda events: [{k: v for k, v in e.items() if k in keep} for e in events]


def _cmd_head(n: int, session) -> Command:
    return lambda events: events[:n]


def _cmd_dedup(fields: list[str], session) -> Command:
    def run(events):
        seen, out = set(), []
        for e in events:
            if any(e.get(f) is None for f in fields):
                continue
            key = tuple(repr(e.get(f)) for f in fields)
            if key not in seen:
                seen.add(key)
                out.append(e)
        return out
    return run


def _cmd_append(sub: Pipeline, session) -> Command:
    run_sub = session.compile_pipeline(sub)
    return lambda events: events + run_sub()


_COMMANDS: dict[str, Callable[[object, "SplSession"], Command]] = {
    "search": _cmd_search, "where": _cmd_where, "eval": _cmd_eval, "rex": _cmd_rex, "regex": _cmd_regex,
    "stats": _cmd_stats, "streamstats": _cmd_streamstats, "sort": _cmd_sort, "table": _cmd_table,
    "fields": _cmd_fields, "head": _cmd_head, "dedup": _cmd_dedup, "append": _cmd_append,
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
        base = _search_filter(pipeline.base, self.now, self)
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
