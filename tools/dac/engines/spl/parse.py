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

This module holds the shared lexing helpers and the search-term parser; eval expressions are
parsed by dac.engines.spl.parse_eval, whole pipelines (commands) by dac.engines.spl.pipeline.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from dac.core.regex_safety import catastrophic
from .pcre import pcre_to_python


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


def scan(token: re.Pattern, text: str, what: str) -> Iterable[re.Match]:
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
    def __init__(self, text: str, parse_subsearch: Callable[[str], object]):
        self.tokens = self._lex(text, parse_subsearch)
        self.pos = 0
        self.times: dict[str, str] = {}

    @staticmethod
    def _lex(text: str, parse_subsearch: Callable[[str], object]) -> list[tuple[str, object]]:
        tokens = []
        for m in scan(_SEARCH_TOKEN, text, "search terms"):
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
                tokens.append(("subsearch", parse_subsearch(m["sub"][1:-1].strip())))
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


def parse_search(text: str, parse_subsearch: Callable[[str], object]) -> Search:
    """`parse_subsearch` parses the pipeline inside `[…]` (dac.engines.spl.pipeline.parse_pipeline,
    passed in: a subsearch is a whole pipeline, and pipelines are parsed on top of this module)."""
    return _SearchParser(text, parse_subsearch).parse()
