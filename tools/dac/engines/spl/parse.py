"""Parse the SPL subset dac generates into plain syntax trees, shared by the two SPL engines:
the Python evaluator (dac.engines.spl.engine, the semantic reference) and the DuckDB compiler
(dac.engines.spl.sql, the fast one). Anything outside the subset raises SplUnsupported here, so both
engines refuse the same queries with the same message.

Trees are tuples:
- search: ("all",) | ("cmp", field, op, value) | ("in", field, [values]) | ("and", [t…]) |
  ("or", [t…]) | ("not", t) | ("raw", regex) (a bare literal or TERM(), matched in _raw) |
  ("subsearch", Pipeline) (`[search …]` whose rows each give one `search` value TERM(x))
- eval: ("num", n) | ("str", s) | ("field", name) | ("call", name, [t…]) | ("bin", op, l, r) |
  ("not", t) | ("neg", t)
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Iterable

from dac.core.regex_safety import catastrophic
from .check import pcre_to_python


class SplUnsupported(Exception):
    """The query uses SPL outside the evaluated subset, or is malformed."""


def unquote(token: str) -> str:
    """SPL string literal: \\\\ is a backslash and \\" a quote; other backslashes stay (for regexes)."""
    if len(token) >= 2 and token[0] == token[-1] == '"':
        return re.sub(r'\\([\\"])', r"\1", token[1:-1])
    return token


def split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside strings, parentheses and square brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= len(text):
                raise SplUnsupported("unclosed double quote")
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth < 0:
                raise SplUnsupported(f"unbalanced {c!r}")
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if depth:
        raise SplUnsupported("unbalanced brackets")
    parts.append(text[start:])
    return parts


def _scan(token: re.Pattern, text: str, what: str) -> Iterable[re.Match]:
    """Successive matches of `token` from the start of `text` to its end (trailing space ignored)."""
    pos = 0
    while pos < len(text) and text[pos:].strip():
        m = token.match(text, pos)
        if m is None:
            raise SplUnsupported(f"cannot read {what} at {text[pos:pos + 30]!r}")
        yield m
        pos = m.end()


# --- search language -----------------------------------------------------------------------------

_SEARCH_TOKEN = re.compile(r"""
    \s*(?:
      (?P<in>[A-Za-z_][\w.{}:-]*)\s+IN\s*\((?P<list>(?:"(?:\\.|[^"\\])*"|[^()"])*)\)
    | (?P<field>[A-Za-z_][\w.{}:-]*)\s*(?P<op>!=|<=|>=|=|<|>)\s*(?P<value>"(?:\\.|[^"\\])*"|[^\s()"]+)
    | (?P<kw>NOT|OR|AND)(?=[\s(]|$)
    | TERM\((?P<term>[^\s()\[\]"]+)\)(?=[\s()]|$)
    | (?P<badterm>TERM\()
    | (?P<sub>\[(?:"(?:\\.|[^"\\])*"|[^\[\]"]|\[(?:"(?:\\.|[^"\\])*"|[^\[\]"])*\])*\])
    | (?P<paren>[()])
    | (?P<other>"(?:\\.|[^"\\])*"|[^\s()]+)
    )""", re.X)

TIME_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"([-+])(\d+)(s|sec|m|min|h|d|w)$")
NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def text_value(v) -> str:
    """A value as Splunk prints it: integral numbers without ".0"."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


@functools.lru_cache(maxsize=2048)
def python_regex(pattern: str) -> re.Pattern:
    """A PCRE pattern from a query, compiled by Python's re (named groups and their numbers are
    the same in DuckDB's RE2); refused when it uses what re lacks or does not compile."""
    python = pcre_to_python(pattern)
    if python is None:
        raise SplUnsupported(f"regex uses PCRE features Python's re lacks: {pattern}")
    try:
        compiled = re.compile(python)
    except re.error as e:
        raise SplUnsupported(f"invalid regex {pattern!r}: {e}") from None
    # rules with such regexes are refused when loaded; this keeps SPL from elsewhere from hanging replay
    if catastrophic(python):
        raise SplUnsupported(f"regex would backtrack catastrophically, not run: {pattern[:80]!r}")
    return compiled


@functools.lru_cache(maxsize=2048)
def wildcard(value: str) -> re.Pattern:
    """A search-language value (or a field-name pattern): `*` matches anything, the rest
    literally, without case."""
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", value)),
                      re.I | re.S)


def resolve_time(value: str, now: float) -> float:
    if value == "now":
        return now
    if value == "0":
        return 0.0
    m = _RELATIVE.match(value)
    if not m:
        raise SplUnsupported(f"time modifier {value!r} (only now, 0 and ±N[s|m|h|d|w] are evaluated)")
    seconds = int(m[2]) * TIME_UNITS[m[3]]
    return now + (seconds if m[1] == "+" else -seconds)


@dataclass
class Search:
    tree: tuple
    earliest: str | None = None      # time modifiers as written; resolved against the clock
    latest: str | None = None


class _SearchParser:
    def __init__(self, text: str):
        self.tokens = self._lex(text)
        self.pos = 0
        self.times: dict[str, str] = {}

    @staticmethod
    def _lex(text: str) -> list[tuple[str, object]]:
        tokens = []
        for m in _scan(_SEARCH_TOKEN, text, "search terms"):
            if m["in"]:
                items = [unquote(t.strip()) for t in split_top(m["list"], ",") if t.strip()]
                tokens.append(("in", (m["in"], items)))
            elif m["field"]:
                tokens.append(("cmp", (m["field"], m["op"], unquote(m["value"]))))
            elif m["kw"]:
                tokens.append(("kw", m["kw"]))
            elif m["badterm"]:
                raise SplUnsupported("TERM() takes one token without spaces, quotes or brackets")
            elif m["term"]:
                tokens.append(("raw", term_regex(m["term"])))
            elif m["sub"]:
                tokens.append(("subsearch", parse_pipeline(m["sub"][1:-1].strip())))
            elif m["paren"]:
                tokens.append(("paren", m["paren"]))
            else:
                other = m["other"]
                if other.startswith("["):
                    raise SplUnsupported(f"cannot read search term {other!r}")
                tokens.append(("raw", literal_regex(unquote(other))))
        return tokens

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def parse(self) -> Search:
        tree = self._and() if self.tokens else ("all",)
        if self.pos != len(self.tokens):
            raise SplUnsupported(f"unexpected {self.tokens[self.pos][1]!r} in search")
        for value in self.times.values():
            resolve_time(value, 0.0)        # refuse an unknown modifier now, not at run time
        return Search(tree, self.times.get("earliest"), self.times.get("latest"))

    def _and(self):
        # AND is explicit or implied by juxtaposition, and binds loosest
        parts = [self._or()]
        while True:
            kind, val = self._peek()
            if kind == "kw" and val == "AND":
                self.pos += 1
            elif kind is None or (kind == "paren" and val == ")") or (kind == "kw" and val == "OR"):
                break
            parts.append(self._or())
        parts = [p for p in parts if p is not None]
        if not parts:
            return ("all",)
        return parts[0] if len(parts) == 1 else ("and", parts)

    def _or(self):
        parts = [self._not()]
        while self._peek() == ("kw", "OR"):
            self.pos += 1
            parts.append(self._not())
        if len(parts) > 1 and None in parts:
            raise SplUnsupported("earliest/latest inside OR")
        return parts[0] if len(parts) == 1 else ("or", parts)

    def _not(self):
        if self._peek() == ("kw", "NOT"):
            self.pos += 1
            inner = self._not()
            if inner is None:
                raise SplUnsupported("NOT earliest/latest")
            return ("not", inner)
        return self._primary()

    def _primary(self):
        kind, val = self._peek()
        self.pos += 1
        if kind == "paren" and val == "(":
            inner = self._and()
            if self._peek() != ("paren", ")"):
                raise SplUnsupported("missing ')' in search")
            self.pos += 1
            return inner
        if kind == "in":
            return ("in", *val)
        if kind in ("raw", "subsearch"):
            return (kind, val)
        if kind == "cmp":
            field, op, value = val
            if field in ("earliest", "latest"):
                self.times[field] = value
                return None
            if op not in ("=", "!=") and NUMBER.match(value) is None:
                raise SplUnsupported(f"{field}{op}{value}: only numeric comparisons are evaluated")
            return ("cmp", field, op, value)
        raise SplUnsupported(f"unexpected {val!r} in search")


# Splunk's default segmenters (segmenters.conf): an event's raw text is indexed as the tokens
# between major breakers, and each of those again split at minor breakers. A bare search term
# matches where it lies on token boundaries; TERM(x) only where x is a whole major-breaker token
# (so TERM(1795341600.100:100) finds that audit serial and nothing else). Both without case.
MAJOR_BREAKERS = " \t\r\n[]<>(){}|!;,'\"*&?+"
MINOR_BREAKERS = "/:=@.$#%\\_-"
_MAJOR = "[ \\t\\r\\n\\[\\]<>(){}|!;,'\"*&?+]"
MAJOR_REGEX = _MAJOR                   # for splitting _raw into its major tokens (DuckDB and re)
_ANY_BREAKER = "[ \\t\\r\\n\\[\\]<>(){}|!;,'\"*&?+/:=@.$#%\\\\_-]"


def _glob(text: str) -> str:
    # `*` stays inside one major token, as Splunk's wildcard terms do
    # escapes only regex syntax, which Python's re and RE2 read alike
    return "".join(f"[^{_MAJOR[1:-1]}]*" if part == "*" else re.sub(r"([.^$+?{}\[\]\\|()])", r"\\\1", part)
                   for part in re.split(r"(\*)", text))


def term_regex(text: str) -> str:
    """TERM(text): text is a whole token between major breakers (or the ends) of _raw."""
    return f"(?i)(?:^|{_MAJOR}){_glob(text)}(?:{_MAJOR}|$)"


def literal_regex(text: str) -> str:
    """A bare (or quoted) term: text in _raw, starting and ending on a breaker boundary."""
    breakers = MAJOR_BREAKERS + MINOR_BREAKERS
    if not text.strip("*"):
        raise SplUnsupported(f"search term {text!r} matches everything")
    left = "" if text[0] in breakers or text[0] == "*" else f"(?:^|{_ANY_BREAKER})"
    right = "" if text[-1] in breakers or text[-1] == "*" else f"(?:{_ANY_BREAKER}|$)"
    return f"(?i){left}{_glob(text)}{right}"


_SUBSEARCH_TERM = re.compile(r"TERM\(([^\s()\[\]\"*]+)\)")


def subsearch_terms(rows: list[dict]) -> set[str]:
    """The major tokens a subsearch's rows stand for. Splunk ORs the rows of a subsearch and uses a
    field named `search` verbatim; the subset evaluated is rows of that one field, each TERM(x)."""
    terms = set()
    for row in rows:
        value = row.get("search")
        extra = set(row) - {"search"}
        m = _SUBSEARCH_TERM.fullmatch(value) if isinstance(value, str) else None
        if extra or m is None:
            raise SplUnsupported("a subsearch in a search must return rows of one field `search`, each "
                                 f"TERM(x) without wildcards (found {row!r:.80})")
        terms.add(m[1].lower())
    return terms


def major_tokens(raw: str) -> set[str]:
    return set(re.split(MAJOR_REGEX, raw.lower()))


def parse_search(text: str) -> Search:
    return _SearchParser(text).parse()


# --- eval expressions ----------------------------------------------------------------------------

_EVAL_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>\d+(?:\.\d+)?)
    | (?P<str>"(?:\\.|[^"\\])*")
    | (?P<qfield>'[^']*')
    | (?P<op>==|!=|<=|>=|[=<>+\-*/%.(),])
    | (?P<word>[A-Za-z_][\w]*)
    )""", re.X)

BINARY = {  # operator -> precedence; higher binds tighter
    "OR": 1, "XOR": 2, "AND": 3,
    "=": 5, "==": 5, "!=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5, "LIKE": 5,
    "+": 6, "-": 6, ".": 6, "*": 7, "/": 7, "%": 7,
}
COMPARISONS = ("=", "==", "!=", "<", "<=", ">", ">=")

# eval function -> accepted argument counts (None: any)
FUNCTIONS: dict[str, tuple[int, ...] | None] = {
    "if": (3,), "case": None, "coalesce": None, "null": (0,), "true": (0,), "false": (0,),
    "isnull": (1,), "isnotnull": (1,), "match": (2,), "replace": (3,), "urldecode": (1,),
    "mvindex": (2, 3), "mvfind": (2,), "mvjoin": (2,), "mvcount": (1,), "lower": (1,), "upper": (1,), "len": (1,),
    "tostring": (1,), "tonumber": (1, 2), "substr": (2, 3), "like": (2,),
}


class _EvalParser:
    """Pratt parser turning an eval expression into a tree."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _scan(_EVAL_TOKEN, text, "eval expression")]
        self.pos = 0

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _take(self, kind=None, value=None):
        tok = self._peek()
        if tok[0] is None or (kind and tok[0] != kind) or (value and tok[1] != value):
            raise SplUnsupported(f"eval expression {self.text!r}: expected {value or kind}, found {tok[1]!r}")
        self.pos += 1
        return tok

    def parse(self) -> tuple:
        expr = self.expression(0)
        if self.pos != len(self.tokens):
            raise SplUnsupported(f"eval expression {self.text!r}: unexpected {self._peek()[1]!r}")
        return expr

    def _binary_op(self):
        kind, val = self._peek()
        if kind == "op" and val in BINARY:
            return val
        if kind == "word" and val in ("AND", "OR", "XOR", "LIKE"):
            return val
        return None

    def expression(self, min_prec: int):
        left = self.unary()
        while (op := self._binary_op()) is not None and BINARY[op] > min_prec:
            self.pos += 1
            right = self.expression(BINARY[op])
            left = ("bin", "=" if op == "==" else op, left, right)
        return left

    def unary(self):
        kind, val = self._peek()
        if kind == "word" and val == "NOT":
            self.pos += 1
            return ("not", self.expression(4))
        if kind == "op" and val == "-":
            self.pos += 1
            return ("neg", self.unary())
        return self.primary()

    def primary(self):
        kind, val = self._take()
        if kind == "num":
            return ("num", float(val) if "." in val else int(val))
        if kind == "str":
            return ("str", unquote(val))
        if kind == "qfield":
            return ("field", val[1:-1])
        if kind == "op" and val == "(":
            inner = self.expression(0)
            self._take("op", ")")
            return inner
        if kind == "word":
            if self._peek() == ("op", "("):
                return self._call(val)
            if val in ("true", "false", "null"):
                raise SplUnsupported(f"bare {val} in eval (write {val}())")
            return ("field", val)
        raise SplUnsupported(f"eval expression {self.text!r}: unexpected {val!r}")

    def _call(self, name: str):
        if name not in FUNCTIONS:
            raise SplUnsupported(f"eval function {name}() is outside the evaluated subset")
        self._take("op", "(")
        args = []
        if self._peek() != ("op", ")"):
            args.append(self.expression(0))
            while self._peek() == ("op", ","):
                self.pos += 1
                args.append(self.expression(0))
        self._take("op", ")")
        counts = FUNCTIONS[name]
        if name == "case" and len(args) % 2:
            raise SplUnsupported("case() needs condition/value pairs")
        if counts is not None and len(args) not in counts:
            raise SplUnsupported(f"{name}() does not take {len(args)} arguments")
        return ("call", name, args)


def parse_eval(text: str) -> tuple:
    return _EvalParser(text).parse()


# --- commands ------------------------------------------------------------------------------------

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
    "search": parse_search, "where": parse_eval, "eval": _parse_assignments, "rex": _parse_rex,
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
    pipeline = Pipeline(parse_search(first), first)
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
