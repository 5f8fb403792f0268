"""SPL search terms and eval expressions compiled to DuckDB SQL expressions, each with its static
kind (`str`, `num`, `mv`, `bool`, `null`): the expression half of dac.engines.spl.sql, whose
module docstring gives the Splunk semantics they keep."""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

from .parse import MAJOR_REGEX, NUMBER, Search, SplUnsupported, python_regex, resolve_time


SEQ = '"#seq"'
TABLE_NUMBERS = itertools.count(1)       # temporary tables are per connection, sessions may share one
MULTIVALUE_BY = "stats by a multivalue field is outside the evaluated subset: "
NUM_RE = r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*"
MACROS = [
    f"spl_num(x) AS CASE WHEN regexp_full_match(x, '{NUM_RE}') THEN CAST(trim(x) AS DOUBLE) END",
    # Python's str() of a float, as the reference prints numbers (integral values without ".0")
    "spl_text(x) AS CASE WHEN x = trunc(x) AND abs(x) < 1e15 THEN CAST(CAST(x AS BIGINT) AS VARCHAR) "
    "ELSE CAST(x AS VARCHAR) END",
    "spl_nonempty(l) AS CASE WHEN len(l) = 0 THEN NULL ELSE l END",
    # url_decode fails on bytes that are not UTF-8, where the reference writes U+FFFD: only text
    # that encodes a byte >= 0x80 can fail, and only that goes to Python (try() costs 2 us a row)
    "spl_urldecode(x) AS CASE WHEN regexp_matches(x, '%[89A-Fa-f][0-9A-Fa-f]') THEN spl_py_unquote(x) "
    "ELSE url_decode(x) END",
    "spl_values(l) AS CASE WHEN len(l) = 0 THEN NULL WHEN len(l) = 1 THEN l ELSE list_sort(list_distinct(l)) END",
] + [f"spl_{name}(a, b) AS CASE WHEN a IS NULL OR b IS NULL THEN NULL "
     f"WHEN spl_num(a) IS NOT NULL AND spl_num(b) IS NOT NULL THEN spl_num(a) {op} spl_num(b) ELSE a {op} b END"
     for name, op in (("eq", "="), ("ne", "<>"), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="))]


_CMP_MACRO = {"=": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_SQL_OP = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@functools.lru_cache(maxsize=4096)
def column(name: str) -> str:
    """The quoted DuckDB column of a Splunk field (case-sensitive names kept apart)."""
    encoded = re.sub(r"[A-Z~]", lambda m: "~" + m[0].lower(), name)
    return '"' + encoded.replace('"', '""') + '"'


def field_of(col: str) -> str:
    return re.sub(r"~(.)", lambda m: m[1].upper() if m[1] != "~" else "~", col)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def re2(pattern: str) -> tuple[str, dict[str, int]]:
    """A PCRE pattern in the syntax DuckDB's RE2 reads (Python's, which RE2 shares for what the
    subset uses), and its named groups' numbers."""
    compiled = python_regex(pattern)
    return compiled.pattern, dict(compiled.groupindex)


@dataclass
class Expr:
    sql: str
    kind: str       # str | num | mv | bool | null


_NULL = Expr("NULL", "null")


def text1(e: Expr) -> str:
    """The first value as text."""
    if e.kind == "str":
        return e.sql
    if e.kind == "num":
        return f"spl_text({e.sql})"
    if e.kind == "mv":
        return f"({e.sql})[1]"
    if e.kind == "null":
        return "CAST(NULL AS VARCHAR)"
    raise SplUnsupported("a boolean used as a value is outside the compiled subset")


def num1(e: Expr) -> str:
    return e.sql if e.kind == "num" else ("CAST(NULL AS DOUBLE)" if e.kind == "null" else f"spl_num({text1(e)})")


def as_list(e: Expr) -> str:
    if e.kind == "mv":
        return e.sql
    if e.kind == "null":
        return "CAST(NULL AS VARCHAR[])"
    text = text1(e)
    return f"CASE WHEN {text} IS NULL THEN NULL ELSE [{text}] END"


def _any(e: Expr, predicate) -> str:
    """Predicate over every value of e (text); true when one holds, NULL when e is NULL.
    Most multivalue fields hold one value: that case skips the lambda (CASE is lazy in DuckDB)."""
    if e.kind == "mv":
        return (f"CASE WHEN len({e.sql}) = 1 THEN {predicate(f'({e.sql})[1]')} "
                f"ELSE (len(list_filter({e.sql}, lambda v: {predicate('v')})) > 0) END")
    return predicate(text1(e))


def unify(exprs: list[Expr], what: str) -> tuple[list[str], str]:
    kinds = {e.kind for e in exprs} - {"null"}
    if not kinds:
        return [e.sql for e in exprs], "null"
    if len(kinds) == 1:
        kind = kinds.pop()
        return [("CAST(NULL AS " + SQL_TYPE[kind] + ")") if e.kind == "null" else e.sql for e in exprs], kind
    if kinds <= {"str", "mv"}:
        return [as_list(e) for e in exprs], "mv"
    raise SplUnsupported(f"{what} mixes {' and '.join(sorted(kinds))} values (outside the compiled subset)")


SQL_TYPE = {"str": "VARCHAR", "num": "DOUBLE", "mv": "VARCHAR[]", "bool": "BOOLEAN"}


def _like_pattern(value: str) -> str:
    return _lit(re.sub(r"([\\%_])", r"\\\1", value).replace("*", "%"))


def _value_match(value: str):
    if "*" not in value:
        return lambda t: f"lower({t}) = {_lit(value.lower())}"
    return lambda t: f"{t} ILIKE {_like_pattern(value)} ESCAPE '\\'"


def search_sql(tree: tuple, fields: dict[str, str]) -> str:
    kind = tree[0]
    if kind == "all":
        return "TRUE"
    if kind in ("and", "or"):
        return "(" + f" {kind.upper()} ".join(search_sql(t, fields) for t in tree[1]) + ")"
    if kind == "not":
        return f"(NOT {search_sql(tree[1], fields)})"
    if kind in ("raw", "terms"):
        if "_raw" not in fields:
            return "FALSE"
        raw = text1(Expr(column("_raw"), fields["_raw"]))
        if kind == "raw":
            return f"coalesce(regexp_matches({raw}, {_lit(tree[1])}), FALSE)"
        if not tree[1]:
            return "FALSE"
        # a semi-join of the events' major tokens with the terms (one hash probe per token; testing
        # each event against a list of thousands of terms would be quadratic)
        listed = ", ".join(_lit(t) for t in sorted(tree[1]))
        return (f"coalesce({raw} IN (SELECT r FROM (SELECT r, unnest(string_split_regex(lower(r), {_lit(MAJOR_REGEX)})) AS tok "
                f"FROM (SELECT {raw} AS r FROM {{src}})) WHERE tok IN (SELECT unnest([{listed}]))), FALSE)")
    if kind == "subsearch":
        raise SplUnsupported("subsearch not resolved before compiling")      # SqlSession resolves it
    field = tree[1]
    if field not in fields:
        return "FALSE"          # a term on a field the events lack never matches
    value = Expr(column(field), fields[field])
    if kind == "in":
        exact = [i.lower() for i in tree[2] if "*" not in i]
        matchers = [_value_match(i) for i in tree[2] if "*" in i]
        if exact:
            listed = ", ".join(_lit(i) for i in exact)
            matchers.append(lambda t: f"lower({t}) IN ({listed})")
        return f"coalesce({_any(value, lambda t: '(' + ' OR '.join(m(t) for m in matchers) + ')')}, FALSE)"
    _, _, op, text = tree
    if op == "=":
        return f"coalesce({_any(value, _value_match(text))}, FALSE)"
    if op == "!=":
        return f"({value.sql} IS NOT NULL AND NOT coalesce({_any(value, _value_match(text))}, FALSE))"
    number = float(text)
    return f"coalesce({_any(value, lambda t: f'spl_num({t}) {op} {number!r}')}, FALSE)"


def time_filter(search: Search, now: float) -> str:
    parts = []
    if search.earliest is not None:
        parts.append(f"coalesce(_time, 0) >= {resolve_time(search.earliest, now)!r}")
    if search.latest is not None:
        parts.append(f"coalesce(_time, 0) < {resolve_time(search.latest, now)!r}")
    return " AND ".join(parts) or "TRUE"


def _compare(op: str, a: Expr, b: Expr, trees: tuple[tuple, tuple]) -> Expr:
    if "bool" in (a.kind, b.kind):
        raise SplUnsupported("comparing a boolean is outside the compiled subset")
    if "null" in (a.kind, b.kind):
        return Expr("CAST(NULL AS BOOLEAN)", "bool")
    if a.kind == b.kind == "num":
        return Expr(f"({a.sql} {_SQL_OP[op]} {b.sql})", "bool")
    if a.kind == "mv" and b.kind == "mv":
        raise SplUnsupported("comparing two multivalue fields is outside the compiled subset")
    if b.kind == "mv":
        a, b, trees = b, a, (trees[1], trees[0])
        op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
    other = text1(b)
    if trees[1][0] == "str" and NUMBER.match(trees[1][1]) is None:
        # against text that is not a number the comparison can only be textual
        scalar = lambda t: f"({t} {_SQL_OP[op]} {other})"  # noqa: E731
    else:
        scalar = lambda t: f"spl_{_CMP_MACRO[op]}({t}, {other})"  # noqa: E731
    if a.kind == "mv":
        return Expr(f"CASE WHEN {a.sql} IS NULL OR {other} IS NULL THEN NULL ELSE {_any(a, scalar)} END", "bool")
    return Expr(scalar(text1(a)), "bool")


def _arith(op: str, a: Expr, b: Expr, trees) -> Expr:
    if op == ".":
        return Expr(f"({text1(a)} || {text1(b)})", "str")
    if op == "+" and not (a.kind == b.kind == "num"):
        literal_text = [t[0] == "str" and NUMBER.match(t[1]) is None for t in trees]
        if any(literal_text):
            return Expr(f"({text1(a)} || {text1(b)})", "str")
        raise SplUnsupported("+ on values that may be text or numbers is outside the compiled subset")
    x, y = num1(a), num1(b)
    if op in ("/", "%"):
        y = f"NULLIF({y}, 0)"
    sql = {"+": f"({x} + {y})", "-": f"({x} - {y})", "*": f"({x} * {y})", "/": f"({x} / {y})",
           "%": f"({x} - {y} * floor({x} / {y}))"}[op]       # the sign of the divisor, as Python's %
    return Expr(sql, "num")


def _bool(e: Expr, what: str) -> str:
    if e.kind == "null":
        return "CAST(NULL AS BOOLEAN)"
    if e.kind != "bool":
        raise SplUnsupported(f"{what} of a non-boolean value is outside the compiled subset")
    return e.sql


def _literal_arg(tree: tuple, function: str) -> str:
    if tree[0] != "str":
        raise SplUnsupported(f"{function}() with a non-literal pattern is outside the compiled subset")
    return tree[1]


def _per_value(e: Expr, fn) -> Expr:
    """A string function applied to every value (multivalue stays multivalue)."""
    if e.kind == "mv":
        return Expr(f"CASE WHEN len({e.sql}) = 1 THEN [{fn(f'({e.sql})[1]')}] "
                    f"ELSE list_transform({e.sql}, lambda v: {fn('v')}) END", "mv")
    if e.kind == "null":
        return e
    return Expr(fn(text1(e)), "str")


def _replacement(template: str) -> str:
    """Splunk's replacement text (\\N a group, the rest literal) in RE2's rewrite syntax."""
    return re.sub(r"\\(\d)|\\", lambda m: "\\" + m[1] if m[1] else "\\\\", template)


def _call(name: str, trees: list[tuple], fields: dict[str, str]) -> Expr:
    args = [expression(t, fields) for t in trees]
    if name in ("if", "case"):
        pairs = [(args[0], args[1])] if name == "if" else list(zip(args[::2], args[1::2]))
        values, kind = unify([v for _, v in pairs] + ([args[2]] if name == "if" else []), f"{name}()")
        whens = " ".join(f"WHEN {_bool(c, name + '() condition')} THEN {v}" for (c, _), v in zip(pairs, values))
        default = f" ELSE {values[-1]}" if name == "if" else ""
        return Expr(f"CASE {whens}{default} END", kind)
    if name == "coalesce":
        values, kind = unify(args, "coalesce()")
        return Expr(f"coalesce({', '.join(values)})", kind)
    if name == "null":
        return _NULL
    if name in ("true", "false"):
        return Expr(name.upper(), "bool")
    if name in ("isnull", "isnotnull"):
        return Expr(f"({args[0].sql} IS {'NOT ' if name == 'isnotnull' else ''}NULL)", "bool")
    if name == "match":
        regex, _ = re2(_literal_arg(trees[1], name))
        return Expr(_any(args[0], lambda t: f"regexp_matches({t}, {_lit(regex)})"), "bool") \
            if args[0].kind != "null" else Expr("CAST(NULL AS BOOLEAN)", "bool")
    if name == "replace":
        regex, _ = re2(_literal_arg(trees[1], name))
        rewrite = _replacement(_literal_arg(trees[2], name))
        return _per_value(args[0], lambda t: f"regexp_replace({t}, {_lit(regex)}, {_lit(rewrite)}, 'g')")
    if name == "urldecode":
        return _per_value(args[0], lambda t: f"spl_urldecode({t})")
    if name in ("lower", "upper"):
        return _per_value(args[0], lambda t: f"{name}({t})")
    if name == "mvcount":
        return Expr(f"CAST(len({as_list(args[0])}) AS DOUBLE)", "num")
    if name == "mvfind":
        regex, _ = re2(_literal_arg(trees[1], name))
        found = f"list_position(list_transform({as_list(args[0])}, lambda v: regexp_matches(v, {_lit(regex)})), TRUE)"
        return Expr(f"CAST({found} - 1 AS DOUBLE)", "num")
    if name == "mvjoin":
        return Expr(f"array_to_string({as_list(args[0])}, {_lit(_literal_arg(trees[1], name))})", "str")
    if name == "mvindex" and len(args) == 2:
        i = f"CAST(trunc({num1(args[1])}) AS BIGINT)"
        return Expr(f"list_extract({as_list(args[0])}, CASE WHEN {i} >= 0 THEN {i} + 1 ELSE {i} END)", "str")
    if name == "len":
        return Expr(f"CAST(length({text1(args[0])}) AS DOUBLE)", "num")
    if name == "tostring":
        return Expr(text1(args[0]), "str")
    if name == "tonumber" and len(args) == 1:
        return Expr(num1(args[0]), "num")
    if name == "like":
        return _like_expr(args[0], trees[1])
    raise SplUnsupported(f"eval function {name}() with these arguments is outside the compiled subset")


def _like_expr(value: Expr, pattern_tree: tuple) -> Expr:
    pattern = _lit(_literal_arg(pattern_tree, "like").replace("\\", "\\\\"))
    return Expr(_any(value, lambda t: f"({t} LIKE {pattern} ESCAPE '\\')"), "bool")


def expression(tree: tuple, fields: dict[str, str]) -> Expr:
    kind = tree[0]
    if kind == "num":
        return Expr(f"CAST({tree[1]!r} AS DOUBLE)", "num")
    if kind == "str":
        return Expr(_lit(tree[1]), "str")
    if kind == "field":
        return Expr(column(tree[1]), fields[tree[1]]) if tree[1] in fields else _NULL
    if kind == "not":
        return Expr(f"(NOT {_bool(expression(tree[1], fields), 'NOT')})", "bool")
    if kind == "neg":
        return Expr(f"(- {num1(expression(tree[1], fields))})", "num")
    if kind == "call":
        return _call(tree[1], tree[2], fields)
    _, op, left, right = tree
    a, b = expression(left, fields), expression(right, fields)
    if op in ("AND", "OR", "XOR"):
        x, y = f"coalesce({_bool(a, op)}, FALSE)", f"coalesce({_bool(b, op)}, FALSE)"
        return Expr(f"({x} {'<>' if op == 'XOR' else op} {y})", "bool")
    if op == "LIKE":
        return _like_expr(a, right)
    if op in _SQL_OP:
        return _compare(op, a, b, (left, right))
    return _arith(op, a, b, (left, right))
