"""The Python SPL reference's commands: each SPL command becomes a function from the events so far
to the events after it (dac.engines.spl.engine chains them into a session)."""

from __future__ import annotations

import functools
from typing import Callable

from .engine_expr import Event, Value, _expression, _first, _mv, _number, search_filter, _values
from .parse import Search, SplUnsupported, python_regex, text_value, wildcard
from .pipeline import Pipeline, Rex, Sort, Stats


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


def cmd_search(spec: Search, session) -> Command:
    return _per_event("filter", search_filter(spec, session.now, session))


def cmd_where(spec: tuple, session) -> Command:
    expr = _expression(spec)
    return _per_event("filter", lambda e: expr(e) is True)


def cmd_eval(spec: list[tuple[str, tuple]], session) -> Command:
    assignments = [(field, _expression(tree)) for field, tree in spec]

    def apply(e):
        for field, expr in assignments:
            _set(e, field, expr(e))
    return _per_event("update", apply)


def cmd_rex(spec: Rex, session) -> Command:
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


def cmd_regex(spec: tuple[str, bool, str], session) -> Command:
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


def cmd_stats(spec: Stats, session) -> Command:
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


def cmd_streamstats(spec: Stats, session) -> Command:
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


def cmd_sort(spec: Sort, session) -> Command:
    key = _compare_events(spec.keys)
    return lambda events: sorted(events, key=key)[:spec.limit]


def cmd_table(fields: list[str], session) -> Command:
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


def cmd_fields(spec: tuple[bool, list[str]], session) -> Command:
    remove, fields = spec
    if remove:
        return lambda events: [{k: v for k, v in e.items() if k not in fields} for e in events]
    keep = set(fields) | {"_time", "_raw"}
    return lambda events: [{k: v for k, v in e.items() if k in keep} for e in events]


def cmd_head(n: int, session) -> Command:
    return lambda events: events[:n]


def cmd_dedup(fields: list[str], session) -> Command:
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


def cmd_append(sub: Pipeline, session) -> Command:
    run_sub = session.compile_pipeline(sub)
    return lambda events: events + run_sub()


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
