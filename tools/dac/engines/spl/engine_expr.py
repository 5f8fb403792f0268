"""The Python SPL reference's values, search predicates and eval expressions: each parse tree
(dac.engines.spl.parse) becomes a function of one event, with Splunk's semantics as
dac.engines.spl.engine's module docstring states them."""

from __future__ import annotations

import functools
import re
from typing import Callable
from urllib.parse import unquote

from .parse import NUMBER, Search, SplUnsupported, major_tokens, python_regex, resolve_time, subsearch_terms, text_value, wildcard
from .pipeline import Pipeline
from .parse_eval import COMPARISONS


Event = dict


Value = object          # None, str, int/float, or list[str] (multivalue)


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


def search_filter(search: Search, now: float, session=None) -> Callable[[Event], bool]:
    pred = _search_predicate(search.tree, session)
    if search.earliest is None and search.latest is None:
        return pred
    low = resolve_time(search.earliest, now) if search.earliest is not None else float("-inf")
    high = resolve_time(search.latest, now) if search.latest is not None else float("inf")
    return lambda e: low <= float(e.get("_time", 0)) < high and pred(e)


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
