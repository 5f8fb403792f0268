"""SPL pipelines parsed: the commands of the evaluated subset (search, where, eval, rex, regex,
stats, streamstats, sort, table, fields, head, dedup, append) into Steps of a Pipeline, and where
a session can cache a prefix of one. Search terms are parsed by dac.engines.spl.parse, eval
expressions by dac.engines.spl.parse_eval."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .parse import Search, SplUnsupported, parse_search, split_top, unquote
from .parse_eval import parse_eval


FIELD_LIST = re.compile(r"[\s,]+")
AGGREGATES = ("count", "dc", "values", "list", "min", "max", "sum", "first", "last")


@dataclass
class Rex:
    field: str
    pattern: str                      # PCRE, as written


@dataclass
class Aggregation:
    func: str
    field: str | None
    alias: str


@dataclass
class Stats:
    aggs: list[Aggregation]
    by: list[str]
    window: float | None = None     # streamstats time_window=, in seconds


@dataclass
class Sort:
    limit: int | None
    keys: list[tuple[str, bool]]      # (field, descending)


@dataclass
class Step:
    name: str                         # the SPL command
    spec: object                      # its parsed arguments
    text: str                         # the command as written (cache keys)


@dataclass
class Pipeline:
    base: Search
    base_text: str                    # without a leading `search` (cache keys)
    steps: list[Step] = field(default_factory=list)


def _parse_assignments(args: str) -> list[tuple[str, tuple]]:
    assignments = []
    for part in split_top(args, ","):
        m = re.match(r"\s*([A-Za-z_][\w.]*|'[^']+')\s*=(?!=)(.*)$", part, re.S)
        if not m:
            raise SplUnsupported(f"eval assignment {part.strip()!r} is not field=expression")
        assignments.append((m[1].strip("'"), parse_eval(m[2])))
    return assignments


def _parse_rex(args: str) -> Rex:
    field, rest = "_raw", args
    m = re.match(r'\s*field\s*=\s*([\w.{}]+)\s*(.*)$', args, re.S)
    if m:
        field, rest = m[1], m[2]
    rest = rest.strip()
    if not (rest.startswith('"') and rest.endswith('"')) or split_top(rest, " ") != [rest]:
        raise SplUnsupported(f"rex {args.strip()!r}: only `rex [field=X] \"regex\"` is evaluated")
    return Rex(field, unquote(rest))


def _parse_regex(args: str) -> tuple[str, bool, str]:
    m = re.match(r'\s*(?:([\w.{}]+)\s*(!?=)\s*)?("(?:\\.|[^"\\])*")\s*$', args, re.S)
    if not m:
        raise SplUnsupported(f"regex {args.strip()!r}: only `regex [field=|!=]\"regex\"` is evaluated")
    return m[1] or "_raw", (m[2] or "=") == "=", unquote(m[3])


_WINDOW = re.compile(r"^\s*time_window=([0-9]+)(s|m|h|d)?\s+", re.I)


def _parse_stats(spec: str, command: str) -> Stats:
    window = None
    if command == "streamstats" and (m := _WINDOW.match(spec)):
        window = int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[(m[2] or "s").lower()]
        spec = spec[m.end():]
    parts = re.split(r"\s+by\s+", " " + spec.strip() + " ", maxsplit=1, flags=re.I)
    spec, by = parts[0], (parts[1] if len(parts) > 1 else "")
    by_fields = [f for f in FIELD_LIST.split(by.strip()) if f] if by else []
    aggs = []
    pattern = re.compile(r"\s*([a-z_]+)(?:\(\s*([^)\s]*)\s*\))?(?:\s+as\s+([\w.]+|\"[^\"]+\"))?\s*,?", re.I)
    pos, spec = 0, spec.strip()
    while pos < len(spec):
        m = pattern.match(spec, pos)
        if not m or m.end() == pos:
            raise SplUnsupported(f"{command}: cannot read {spec[pos:pos + 30]!r}")
        func, field_name, alias = m[1].lower(), m[2] or None, m[3]
        if func not in AGGREGATES:
            raise SplUnsupported(f"{command} function {func}() is outside the evaluated subset")
        if func != "count" and not field_name:
            raise SplUnsupported(f"{command} {func}() needs a field")
        aggs.append(Aggregation(func, field_name, (alias or (f"{func}({field_name})" if field_name else func)).strip('"')))
        pos = m.end()
    if not aggs:
        raise SplUnsupported(f"{command} without an aggregation")
    if window is not None and any(a.func not in ("count", "dc") for a in aggs):
        raise SplUnsupported("streamstats time_window= with an aggregation other than count or dc is outside the evaluated subset")
    return Stats(aggs, by_fields, window)


def _parse_sort(args: str) -> Sort:
    tokens = args.split()
    limit: int | None = 10000
    if tokens and tokens[0].isdigit():
        limit = int(tokens.pop(0)) or None
    keys, sign = [], False
    for t in tokens:
        if t in ("-", "+"):
            sign = t == "-"
            continue
        descending = sign
        if t[0] in "-+":
            descending, t = t[0] == "-", t[1:]
        if not re.fullmatch(r"[\w.{}]+", t):
            raise SplUnsupported(f"sort key {t!r} (only plain field names are evaluated)")
        keys.append((t, descending))
        sign = False
    if not keys:
        raise SplUnsupported("sort without a field")
    return Sort(limit, keys)


def _parse_fields(args: str) -> tuple[bool, list[str]]:
    text = args.strip()
    return text.startswith("-"), [f for f in FIELD_LIST.split(text.lstrip("+-").strip()) if f]


def _parse_head(args: str) -> int:
    n = args.strip() or "10"
    if not n.isdigit():
        raise SplUnsupported(f"head {n!r} (only a count is evaluated)")
    return int(n)


def _parse_dedup(args: str) -> list[str]:
    fields = [f for f in FIELD_LIST.split(args.strip()) if f]
    if not fields or any(not re.fullmatch(r"[\w.{}]+", f) for f in fields):
        raise SplUnsupported(f"dedup {args.strip()!r} (only field names are evaluated)")
    return fields


def _parse_append(args: str) -> Pipeline:
    m = re.match(r"\s*\[(.*)\]\s*$", args, re.S)
    if not m:
        raise SplUnsupported("append needs a [subsearch]")
    return parse_pipeline(m[1])


_COMMANDS = {
    "search": lambda args: parse_search(args, parse_pipeline), "where": parse_eval, "eval": _parse_assignments, "rex": _parse_rex,
    "regex": _parse_regex, "stats": lambda a: _parse_stats(a, "stats"),
    "streamstats": lambda a: _parse_stats(a, "streamstats"), "sort": _parse_sort,
    "table": lambda a: [f for f in FIELD_LIST.split(a.strip()) if f], "fields": _parse_fields,
    "head": _parse_head, "dedup": _parse_dedup, "append": _parse_append,
}


FILTERS = ("search", "where", "regex")


def parse_pipeline(text: str) -> Pipeline:
    segments = [s.strip() for s in split_top(text, "|")]
    first = segments[0]
    if not first:
        raise SplUnsupported("a search must start with a base search (index=…), not a bare command")
    if re.match(r"search\b", first):
        first = first[len("search"):].strip()
    pipeline = Pipeline(parse_search(first, parse_pipeline), first)
    for segment in segments[1:]:
        m = re.match(r"([A-Za-z_]\w*)\b(.*)$", segment, re.S)
        if not m:
            raise SplUnsupported(f"empty command in {segment!r}")
        name = m[1].lower()
        if name not in _COMMANDS:
            raise SplUnsupported(f"command `{name}` is outside the SPL subset dac evaluates")
        pipeline.steps.append(Step(name, _COMMANDS[name](m[2]), segment))
    return pipeline


def cache_points(steps: list[Step]) -> set[int]:
    """Where a session keeps a prefix's result for later searches: after each stats, and after the
    last step before the first filter that follows a stats (the end of the shared assembly, e.g.
    proctitle decoding)."""
    points, seen_stats = set(), False
    for i, step in enumerate(steps):
        if step.name == "stats":
            points.add(i)
            seen_stats = True
        elif seen_stats and step.name in FILTERS:
            points.add(i - 1)
            break
    return points


def prefix_keys(pipeline: Pipeline) -> list[tuple[str, ...]]:
    """Key of the prefix ending at each step: the same text means the same intermediate result."""
    texts = [pipeline.base_text] + [s.text for s in pipeline.steps]
    return [tuple(texts[:i + 2]) for i in range(len(pipeline.steps))]
