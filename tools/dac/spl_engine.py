"""An offline evaluator for the SPL subset the generator emits, so the searches we deploy are
executed against sample events instead of eyeballed.

Nothing runs SPL outside Splunk, so this evaluator implements exactly what `dac convert` writes and
refuses everything else with SplUnsupported (the replay reports that as "not testable", never as
a pass). Supported:

- the search language: `field=value`, `field!=value`, `field IN (…)`, `*` wildcards, values
  compared without case, NOT / OR / AND with Splunk's precedence (NOT binds tightest, then OR,
  then AND, so `a b OR c` is `a AND (b OR c)`), `earliest=`/`latest=` relative times;
- commands: search, where, eval, rex field=, regex, stats, streamstats, sort, append [subsearch],
  table, fields, head, dedup;
- eval functions: if case coalesce null isnull isnotnull match replace urldecode mvindex mvfind
  mvcount lower upper len tostring tonumber substr like true false.

Splunk semantics kept on purpose: every event of the index is its own event (auditd SYSCALL and
PATH records are separate until the search joins them), field values are strings, comparisons are
numeric when both sides are numbers, a multivalue field matches a search term when any value does,
rex reads the first value of a multivalue field, stats drops events missing a by-field and orders
its rows by the by-fields, values() is distinct and sorted, null fields are simply absent.
"""
from __future__ import annotations

import functools
import inspect
import re
from datetime import datetime, timezone
from typing import Callable, Iterable
from urllib.parse import unquote

from .spl_check import pcre_to_python

Event = dict
Value = object          # None, str, int/float, or list[str] (multivalue)


class SplUnsupported(Exception):
    """The query uses SPL outside the evaluated subset, or is malformed."""


# --- values ----------------------------------------------------------------------------------------

_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


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
    if isinstance(v, str) and _NUMBER.match(v):
        return float(v)
    return None


def _text(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _mv(values: list) -> Value:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


@functools.lru_cache(maxsize=2048)
def _regex(pattern: str, flags: int = 0) -> re.Pattern:
    python = pcre_to_python(pattern)
    if python is None:
        raise SplUnsupported(f"regex uses PCRE features Python's re lacks: {pattern}")
    try:
        return re.compile(python, flags)
    except re.error as e:
        raise SplUnsupported(f"invalid regex {pattern!r}: {e}") from None


@functools.lru_cache(maxsize=2048)
def _wildcard(value: str) -> re.Pattern:
    """A search-language value: `*` matches anything, the rest literally, without case."""
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", value)),
                      re.I | re.S)


def _unquote(token: str) -> str:
    """SPL string literal: \\\\ is a backslash and \\" a quote; other backslashes stay (for regexes)."""
    if len(token) >= 2 and token[0] == token[-1] == '"':
        return re.sub(r'\\([\\"])', r"\1", token[1:-1])
    return token


# --- splitting a query into commands -------------------------------------------------------------

def _split_top(text: str, sep: str) -> list[str]:
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


# --- search language -----------------------------------------------------------------------------

_SEARCH_TOKEN = re.compile(r"""
    \s*(?:
      (?P<in>[A-Za-z_][\w.{}:-]*)\s+IN\s*\((?P<list>(?:"(?:\\.|[^"\\])*"|[^()"])*)\)
    | (?P<field>[A-Za-z_][\w.{}:-]*)\s*(?P<op>!=|<=|>=|=|<|>)\s*(?P<value>"(?:\\.|[^"\\])*"|[^\s()"]+)
    | (?P<kw>NOT|OR|AND)(?=[\s(]|$)
    | (?P<paren>[()])
    | (?P<other>"(?:\\.|[^"\\])*"|\S+)
    )""", re.X)

_TIME_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"([-+])(\d+)(s|sec|m|min|h|d|w)$")


def _scan(token: re.Pattern, text: str, what: str) -> Iterable[re.Match]:
    """Successive matches of `token` from the start of `text` to its end (trailing space ignored)."""
    pos = 0
    while pos < len(text) and text[pos:].strip():
        m = token.match(text, pos)
        if m is None:
            raise SplUnsupported(f"cannot read {what} at {text[pos:pos + 30]!r}")
        yield m
        pos = m.end()


class _SearchParser:
    def __init__(self, text: str, now: float):
        self.tokens = self._lex(text)
        self.pos = 0
        self.now = now
        self.earliest: float | None = None
        self.latest: float | None = None

    @staticmethod
    def _lex(text: str) -> list[tuple[str, object]]:
        tokens = []
        for m in _scan(_SEARCH_TOKEN, text, "search terms"):
            if m["in"]:
                items = [_unquote(t.strip()) for t in _split_top(m["list"], ",") if t.strip()]
                tokens.append(("in", (m["in"], items)))
            elif m["field"]:
                tokens.append(("cmp", (m["field"], m["op"], _unquote(m["value"]))))
            elif m["kw"]:
                tokens.append(("kw", m["kw"]))
            elif m["paren"]:
                tokens.append(("paren", m["paren"]))
            else:
                raise SplUnsupported(f"bare search term {m['other']!r} (only field=value, IN, NOT/OR/AND are evaluated)")
        return tokens

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def parse(self) -> Callable[[Event], bool]:
        if not self.tokens:
            return lambda e: True
        pred = self._and()
        if self.pos != len(self.tokens):
            raise SplUnsupported(f"unexpected {self.tokens[self.pos][1]!r} in search")
        return pred

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
            return lambda e: True
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def _or(self):
        parts = [self._not()]
        while self._peek() == ("kw", "OR"):
            self.pos += 1
            parts.append(self._not())
        if len(parts) > 1 and None in parts:
            raise SplUnsupported("earliest/latest inside OR")
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def _not(self):
        if self._peek() == ("kw", "NOT"):
            self.pos += 1
            inner = self._not()
            if inner is None:
                raise SplUnsupported("NOT earliest/latest")
            return lambda e: not inner(e)
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
            field, items = val
            if not any("*" in i for i in items):
                return _exact_any(field, items)
            patterns = [_wildcard(i) for i in items]
            return lambda e: any(p.fullmatch(_text(v)) for v in _values(e.get(field)) for p in patterns)
        if kind == "cmp":
            return self._comparison(*val)
        raise SplUnsupported(f"unexpected {val!r} in search")

    def _comparison(self, field: str, op: str, value: str):
        if field in ("earliest", "latest"):
            moment = self._time(value)
            if field == "earliest":
                self.earliest = moment
            else:
                self.latest = moment
            return None
        if op in ("=", "!="):
            pattern = _wildcard(value)
            if op == "=" and "*" not in value:
                return _exact_any(field, [value])
            if op == "=":
                return lambda e: any(pattern.fullmatch(_text(v)) for v in _values(e.get(field)))
            # field!=value: the field must exist and no value match (unlike NOT field=value)
            return lambda e: field in e and e[field] is not None and not any(
                pattern.fullmatch(_text(v)) for v in _values(e[field]))
        number = _number(value)
        if number is None:
            raise SplUnsupported(f"{field}{op}{value}: only numeric comparisons are evaluated")
        compare = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}[op]
        return lambda e: any((n := _number(v)) is not None and compare(float(n), number) for v in _values(e.get(field)))

    def _time(self, value: str) -> float:
        if value == "now":
            return self.now
        if value == "0":
            return 0.0
        m = _RELATIVE.match(value)
        if not m:
            raise SplUnsupported(f"time modifier {value!r} (only now, 0 and ±N[s|m|h|d|w] are evaluated)")
        seconds = int(m[2]) * _TIME_UNITS[m[3]]
        return self.now + (seconds if m[1] == "+" else -seconds)


def _exact_any(field: str, items: list[str]) -> Callable[[Event], bool]:
    """field=value / field IN (…) without wildcards: a set lookup, still without case."""
    wanted = {i.lower() for i in items}

    def match(e: Event) -> bool:
        v = e.get(field)
        if v is None:
            return False
        if type(v) is str:
            return v.lower() in wanted
        return any(_text(x).lower() in wanted for x in _values(v))
    return match


def compile_search(text: str, now: float) -> Callable[[Event], bool]:
    parser = _SearchParser(text, now)
    pred = parser.parse()
    if parser.earliest is None and parser.latest is None:
        return pred
    low = parser.earliest if parser.earliest is not None else float("-inf")
    high = parser.latest if parser.latest is not None else float("inf")
    return lambda e: low <= float(e.get("_time", 0)) < high and pred(e)


# --- eval expressions ----------------------------------------------------------------------------

_EVAL_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>\d+(?:\.\d+)?)
    | (?P<str>"(?:\\.|[^"\\])*")
    | (?P<qfield>'[^']*')
    | (?P<op>==|!=|<=|>=|[=<>+\-*/%.(),])
    | (?P<word>[A-Za-z_][\w]*)
    )""", re.X)

_BINARY = {  # operator -> (precedence, implementation); higher binds tighter
    "OR": 1, "XOR": 2, "AND": 3,
    "=": 5, "==": 5, "!=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5, "LIKE": 5,
    "+": 6, "-": 6, ".": 6, "*": 7, "/": 7, "%": 7,
}


def _compare(op: str, a, b) -> bool | None:
    if a is None or b is None:
        return None
    pairs = [(x, y) for x in _values(a) for y in _values(b)]
    for x, y in pairs:        # a multivalue side compares true when any value does
        nx, ny = _number(x), _number(y)
        if nx is not None and ny is not None:
            x, y = float(nx), float(ny)
        else:
            x, y = _text(x), _text(y)
        if {"=": x == y, "==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]:
            return True
    return False


def _arith(op: str, a, b):
    if a is None or b is None:
        return None
    if op == ".":
        return _text(_first(a)) + _text(_first(b))
    na, nb = _number(_first(a)), _number(_first(b))
    if op == "+" and (na is None or nb is None):
        return _text(_first(a)) + _text(_first(b))          # + concatenates strings
    if na is None or nb is None:
        return None
    if op == "/" and nb == 0:
        return None
    result = {"+": na + nb, "-": na - nb, "*": na * nb, "/": na / nb, "%": na % nb if nb else None}[op]
    return int(result) if isinstance(result, float) and result.is_integer() and op != "/" else result


def _like(value, pattern) -> bool | None:
    if value is None or pattern is None:
        return None
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in _text(pattern))
    return any(re.fullmatch(regex, _text(v), re.S) for v in _values(value))


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
    regex = _regex(_text(pattern))
    return any(regex.search(_text(v)) for v in _values(s))


def _fn_replace(s, pattern, template):
    if s is None or pattern is None or template is None:
        return None
    regex, expand = _regex(_text(pattern)), _replace_template(_text(template))
    return _mv([regex.sub(expand, _text(v)) for v in _values(s)])


def _fn_urldecode(s):
    return None if s is None else _mv([unquote(_text(v), errors="replace") for v in _values(s)])


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
    regex = _regex(_text(pattern))
    for i, v in enumerate(_values(mv)):
        if regex.search(_text(v)):
            return i
    return None


def _fn_substr(s, start, length=None):
    if s is None:
        return None
    text, i = _text(_first(s)), int(float(start))
    i = i - 1 if i > 0 else len(text) + i
    return text[i:] if length is None else text[i: i + int(float(length))]


def _fn_tonumber(s, base=None):
    if s is None:
        return None
    try:
        return int(_text(_first(s)), int(base)) if base is not None else _number(_first(s))
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
    "mvcount": lambda v: None if v is None else len(_values(v)),
    "lower": lambda v: None if v is None else _mv([_text(x).lower() for x in _values(v)]),
    "upper": lambda v: None if v is None else _mv([_text(x).upper() for x in _values(v)]),
    "len": lambda v: None if v is None else len(_text(_first(v))),
    "tostring": lambda v: None if v is None else _text(_first(v)),
    "tonumber": _fn_tonumber,
    "substr": _fn_substr,
    "like": _like,
}


_LAZY_FUNCTIONS = {"if", "case"}     # evaluate only the branch taken: built in _EvalParser._call


class _EvalParser:
    """Pratt parser turning an eval expression into a closure over the event."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = self._lex(text)
        self.pos = 0

    @staticmethod
    def _lex(text: str) -> list[tuple[str, str]]:
        return [(m.lastgroup, m.group(m.lastgroup)) for m in _scan(_EVAL_TOKEN, text, "eval expression")]

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _take(self, kind=None, value=None):
        tok = self._peek()
        if tok[0] is None or (kind and tok[0] != kind) or (value and tok[1] != value):
            raise SplUnsupported(f"eval expression {self.text!r}: expected {value or kind}, found {tok[1]!r}")
        self.pos += 1
        return tok

    def parse(self):
        expr = self.expression(0)
        if self.pos != len(self.tokens):
            raise SplUnsupported(f"eval expression {self.text!r}: unexpected {self._peek()[1]!r}")
        return expr

    def _binary_op(self):
        kind, val = self._peek()
        if kind == "op" and val in _BINARY:
            return val
        if kind == "word" and val in ("AND", "OR", "XOR", "LIKE"):
            return val
        return None

    def expression(self, min_prec: int):
        left = self.unary()
        while (op := self._binary_op()) is not None and _BINARY[op] > min_prec:
            self.pos += 1
            right = self.expression(_BINARY[op])
            left = self._combine(op, left, right)
        return left

    @staticmethod
    def _combine(op, left, right):
        if op == "AND":
            return lambda e: left(e) is True and right(e) is True
        if op == "OR":
            return lambda e: left(e) is True or right(e) is True
        if op == "XOR":
            return lambda e: (left(e) is True) != (right(e) is True)
        if op == "LIKE":
            return lambda e: _like(left(e), right(e))
        if op in ("=", "==", "!=") and getattr(right, "constant", None) is not None \
                and _number(right.constant) is None:
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
        if op in ("=", "==", "!=", "<", "<=", ">", ">="):
            return lambda e: _compare(op, left(e), right(e))
        return lambda e: _arith(op, left(e), right(e))

    def unary(self):
        kind, val = self._peek()
        if kind == "word" and val == "NOT":
            self.pos += 1
            inner = self.expression(4)
            return lambda e: (lambda v: None if v is None else v is not True)(inner(e))
        if kind == "op" and val == "-":
            self.pos += 1
            inner = self.unary()
            return lambda e: _arith("-", 0, inner(e))
        return self.primary()

    def primary(self):
        kind, val = self._take()
        if kind == "num":
            number = float(val) if "." in val else int(val)
            return lambda e: number
        if kind == "str":
            text = _unquote(val)

            def constant(e):
                return text
            constant.constant = text
            return constant
        if kind == "qfield":
            name = val[1:-1]
            return lambda e: e.get(name)
        if kind == "op" and val == "(":
            inner = self.expression(0)
            self._take("op", ")")
            return inner
        if kind == "word":
            if self._peek() == ("op", "("):
                return self._call(val)
            if val in ("true", "false", "null"):
                raise SplUnsupported(f"bare {val} in eval (write {val}())")
            return lambda e: e.get(val)
        raise SplUnsupported(f"eval expression {self.text!r}: unexpected {val!r}")

    def _call(self, name: str):
        if name not in _FUNCTIONS and name not in _LAZY_FUNCTIONS:
            raise SplUnsupported(f"eval function {name}() is outside the evaluated subset")
        self._take("op", "(")
        args = []
        if self._peek() != ("op", ")"):
            args.append(self.expression(0))
            while self._peek() == ("op", ","):
                self.pos += 1
                args.append(self.expression(0))
        self._take("op", ")")
        if name == "case":
            if len(args) % 2:
                raise SplUnsupported("case() needs condition/value pairs")
            pairs = list(zip(args[::2], args[1::2]))
            return lambda e: next((v(e) for c, v in pairs if c(e) is True), None)
        if name == "if":
            if len(args) != 3:
                raise SplUnsupported("if() takes three arguments")
            c, a, b = args
            return lambda e: a(e) if c(e) is True else b(e)
        function = _FUNCTIONS[name]
        try:
            inspect.signature(function).bind(*args)
        except TypeError:
            raise SplUnsupported(f"{name}() does not take {len(args)} arguments") from None
        return lambda e: function(*(a(e) for a in args))


def compile_eval(text: str) -> Callable[[Event], Value]:
    return _EvalParser(text).parse()


# --- commands ------------------------------------------------------------------------------------

Command = Callable[[list[Event]], list[Event]]
_OPTION = re.compile(r'\s*([A-Za-z_]\w*)\s*=\s*("(?:\\.|[^"\\])*"|\S+)')
_FIELD_LIST = re.compile(r"[\s,]+")


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


def _cmd_search(args: str, ctx) -> Command:
    return _per_event("filter", compile_search(args, ctx.now))


def _cmd_where(args: str, ctx) -> Command:
    expr = compile_eval(args)
    return _per_event("filter", lambda e: expr(e) is True)


def _cmd_eval(args: str, ctx) -> Command:
    assignments = []
    for part in _split_top(args, ","):
        m = re.match(r"\s*([A-Za-z_][\w.]*|'[^']+')\s*=(?!=)(.*)$", part, re.S)
        if not m:
            raise SplUnsupported(f"eval assignment {part.strip()!r} is not field=expression")
        assignments.append((m[1].strip("'"), compile_eval(m[2])))

    def apply(e):
        for field, expr in assignments:
            _set(e, field, expr(e))
    return _per_event("update", apply)


def _cmd_rex(args: str, ctx) -> Command:
    field, rest = "_raw", args
    m = re.match(r'\s*field\s*=\s*([\w.{}]+)\s*(.*)$', args, re.S)
    if m:
        field, rest = m[1], m[2]
    rest = rest.strip()
    if not (rest.startswith('"') and rest.endswith('"')) or _split_top(rest, " ") != [rest]:
        raise SplUnsupported(f"rex {args.strip()!r}: only `rex [field=X] \"regex\"` is evaluated")
    regex = _regex(_unquote(rest))
    names = list(regex.groupindex)

    def apply(e):
        value = e.get(field)
        if value is None:
            return
        m = regex.search(value if type(value) is str else _text(_first(value)))
        if m:
            for name in names:
                found = m.group(name)
                if found is not None:
                    e[name] = found
    return _per_event("update", apply)


def _cmd_regex(args: str, ctx) -> Command:
    m = re.match(r'\s*(?:([\w.{}]+)\s*(!?=)\s*)?("(?:\\.|[^"\\])*")\s*$', args, re.S)
    if not m:
        raise SplUnsupported(f"regex {args.strip()!r}: only `regex [field=|!=]\"regex\"` is evaluated")
    field, op, regex = m[1] or "_raw", m[2] or "=", _regex(_unquote(m[3]))
    keep = op == "="
    return _per_event("filter", lambda e: any(regex.search(_text(v)) for v in _values(e.get(field))) == keep)


def _parse_aggregations(spec: str, command: str) -> tuple[list[tuple[str, str | None, str]], list[str]]:
    parts = re.split(r"\s+by\s+", " " + spec.strip() + " ", maxsplit=1, flags=re.I)
    spec, by = parts[0], (parts[1] if len(parts) > 1 else "")
    by_fields = [f for f in _FIELD_LIST.split(by.strip()) if f] if by else []
    aggs = []
    pattern = re.compile(r"\s*([a-z_]+)(?:\(\s*([^)\s]*)\s*\))?(?:\s+as\s+([\w.]+|\"[^\"]+\"))?\s*,?", re.I)
    pos, spec = 0, spec.strip()
    while pos < len(spec):
        m = pattern.match(spec, pos)
        if not m or m.end() == pos:
            raise SplUnsupported(f"{command}: cannot read {spec[pos:pos + 30]!r}")
        func, field, alias = m[1].lower(), m[2] or None, m[3]
        if func not in _AGGREGATES:
            raise SplUnsupported(f"{command} function {func}() is outside the evaluated subset")
        if func != "count" and not field:
            raise SplUnsupported(f"{command} {func}() needs a field")
        aggs.append((func, field, (alias or (f"{func}({field})" if field else func)).strip('"')))
        pos = m.end()
    if not aggs:
        raise SplUnsupported(f"{command} without an aggregation")
    return aggs, by_fields


def _sort_key(v) -> tuple:
    n = _number(v)
    return (0, float(n), "") if n is not None else (1, 0.0, _text(v))


def _agg_values(values: list):
    return _mv(sorted({v if type(v) is str else _text(v) for v in values}))


def _agg_minmax(values: list, pick):
    if not values:
        return None
    numbers = [_number(v) for v in values]
    if all(n is not None for n in numbers):
        return values[numbers.index(pick(numbers))]
    return pick((_text(v) for v in values))


_AGGREGATES: dict[str, Callable[[list], Value]] = {
    "count": len,
    "dc": lambda vs: len({_text(v) for v in vs}),
    "values": _agg_values,
    "list": lambda vs: _mv([_text(v) for v in vs]),
    "min": lambda vs: _agg_minmax(vs, min),
    "max": lambda vs: _agg_minmax(vs, max),
    "sum": lambda vs: (lambda s: int(s) if float(s).is_integer() else s)(sum(float(_number(v) or 0) for v in vs)) if vs else None,
    "first": lambda vs: vs[0] if vs else None,
    "last": lambda vs: vs[-1] if vs else None,
}


def _cmd_stats(args: str, ctx) -> Command:
    aggs, by = _parse_aggregations(args, "stats")
    needed = sorted({field for _, field, _ in aggs if field})
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
        for key in sorted(groups, key=lambda k: tuple(_sort_key(v) for v in k)):
            row = dict(zip(by, key))
            members = groups[key]
            for func, field, alias in aggs:
                if field is None:
                    slot = [1] * len(members)
                else:
                    slot, i = [], position[field]
                    for v in [m[i] for m in members if m[i] is not None]:
                        slot.extend(v) if type(v) is list else slot.append(v)
                _set(row, alias, _AGGREGATES[func](slot))
            rows.append(row)
        if not by and not rows:
            rows = [{alias: 0 for func, field, alias in aggs if func in ("count", "dc")}]
        return rows
    return run


def _cmd_streamstats(args: str, ctx) -> Command:
    aggs, by = _parse_aggregations(args, "streamstats")

    def run(events):
        state: dict[tuple, list[list]] = {}
        for e in events:
            key = tuple(_text(_first(e.get(f))) if e.get(f) is not None else None for f in by)
            if None in key:     # Splunk leaves events without a by-field alone
                continue
            slots = state.setdefault(key, [[] for _ in aggs])
            for slot, (func, field, alias) in zip(slots, aggs):
                slot.extend([1] if func == "count" and field is None else _values(e.get(field)))
                _set(e, alias, _AGGREGATES[func](slot))
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
            ka, kb = _sort_key(_first(va)), _sort_key(_first(vb))
            if ka != kb:
                return (1 if ka > kb else -1) * (-1 if descending else 1)
        return 0
    return functools.cmp_to_key(cmp)


def _cmd_sort(args: str, ctx) -> Command:
    tokens = args.split()
    limit = 10000
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
    key = _compare_events(keys)
    return lambda events: sorted(events, key=key)[:limit]


def _cmd_table(args: str, ctx) -> Command:
    fields = [f for f in _FIELD_LIST.split(args.strip()) if f]
    patterns = [_wildcard(f) for f in fields]

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


def _cmd_fields(args: str, ctx) -> Command:
    text = args.strip()
    remove = text.startswith("-")
    fields = [f for f in _FIELD_LIST.split(text.lstrip("+-").strip()) if f]
    if remove:
        return lambda events: [{k: v for k, v in e.items() if k not in fields} for e in events]
    keep = set(fields) | {"_time", "_raw"}
    return lambda events: [{k: v for k, v in e.items() if k in keep} for e in events]


def _cmd_head(args: str, ctx) -> Command:
    n = args.strip() or "10"
    if not n.isdigit():
        raise SplUnsupported(f"head {n!r} (only a count is evaluated)")
    return lambda events: events[: int(n)]


def _cmd_dedup(args: str, ctx) -> Command:
    fields = [f for f in _FIELD_LIST.split(args.strip()) if f]
    if not fields or any(not re.fullmatch(r"[\w.{}]+", f) for f in fields):
        raise SplUnsupported(f"dedup {args.strip()!r} (only field names are evaluated)")

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


def _cmd_append(args: str, ctx) -> Command:
    m = re.match(r"\s*\[(.*)\]\s*$", args, re.S)
    if not m:
        raise SplUnsupported("append needs a [subsearch]")
    sub = ctx.compile(m[1])
    return lambda events: events + sub()


_COMMANDS: dict[str, Callable[[str, "SplSession"], Command]] = {
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
        segments = [s.strip() for s in _split_top(text, "|")]
        first = segments[0]
        if not first:
            raise SplUnsupported("a search must start with a base search (index=…), not a bare command")
        if re.match(r"search\b", first):
            first = first[len("search"):].strip()
        base = compile_search(first, self.now)
        steps = []
        for segment in segments[1:]:
            m = re.match(r"([A-Za-z_]\w*)\b(.*)$", segment, re.S)
            if not m:
                raise SplUnsupported(f"empty command in {segment!r}")
            name = m[1].lower()
            if name not in _COMMANDS:
                raise SplUnsupported(f"command `{name}` is outside the SPL subset dac evaluates")
            steps.append((name, _COMMANDS[name](m[2], self)))
        keys = [tuple([first] + segments[1:i + 2]) for i in range(len(steps))]
        # Cache points: after each stats, and after the last step before the first filter that
        # follows a stats (the end of the shared assembly, e.g. proctitle decoding)
        cache_at, seen_stats = set(), False
        for i, (name, _) in enumerate(steps):
            if name == "stats":
                cache_at.add(i)
                seen_stats = True
            elif seen_stats and name in ("search", "where", "regex"):
                cache_at.add(i - 1)
                break

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
