"""The SPL subset compiled to DuckDB SQL: the fast SPL engine, for a million events.

The Python evaluator (dac.engines.spl.engine) interprets a search event by event and stays the semantic
reference; this engine compiles the same parse trees (dac.engines.spl.parse) to one SQL statement per
pipeline segment and lets DuckDB run them vectorised. `dac test` runs both on every sample file
and fails when they disagree, so a divergence is found on real data, not assumed away.

How the Splunk semantics of the reference map to SQL:
- every field has a static kind: `str` (VARCHAR), `num` (DOUBLE), `mv` (VARCHAR[], a multivalue
  field), plus `bool`/`null` for expression results; a field the pipeline never had is NULL;
- search terms compare without case (lower/ILIKE), a multivalue field matches when any value
  does, NOT keeps events without the field (every term is two-valued);
- eval comparisons are numeric when both sides read as numbers, else textual (spl_* macros);
- rex reads the first value; an empty capture makes no field; stats drops rows missing a by-field,
  sorts groups numbers first, values() is distinct and sorted; streamstats is a window function
  partitioned by the by-fields' text, in event order; sort puts missing values last;
- event order is a `#seq` column carried through every step (Splunk returns newest first).
Field names are case-sensitive in Splunk but not in DuckDB, so columns carry an encoded name
(`~` before a lower-cased capital). A construct the compiler does not cover raises SplUnsupported.

Known differences from the reference, none reachable by the generated searches on the samples
(the row-for-row comparison in `dac test` would show them): regexes run on RE2, whose digit,
word and word-boundary classes are ASCII where Python's are Unicode; a computed non-integral number used as text prints
as DuckDB prints a DOUBLE (0.1 + 0.2 gives "0.3", Python "0.30000000000000004").
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable
from urllib.parse import unquote

import duckdb

from .parse import (MAJOR_REGEX, NUMBER, Pipeline, Rex, Search, Sort, SplUnsupported, Stats, cache_points,
                        parse_pipeline, prefix_keys, python_regex, resolve_time, subsearch_terms, text_value,
                        wildcard)

SEQ = '"#seq"'
_TABLE_NUMBERS = itertools.count(1)       # temporary tables are per connection, sessions may share one
MULTIVALUE_BY = "stats by a multivalue field is outside the evaluated subset: "
_NUM_RE = r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*"
assert NUMBER.pattern.rstrip("$") == _NUM_RE        # the same test for "reads as a number" as the reference

_MACROS = [
    f"spl_num(x) AS CASE WHEN regexp_full_match(x, '{_NUM_RE}') THEN CAST(trim(x) AS DOUBLE) END",
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


def _re2(pattern: str) -> tuple[str, dict[str, int]]:
    """A PCRE pattern in the syntax DuckDB's RE2 reads (Python's, which RE2 shares for what the
    subset uses), and its named groups' numbers."""
    compiled = python_regex(pattern)
    return compiled.pattern, dict(compiled.groupindex)


@dataclass
class Expr:
    sql: str
    kind: str       # str | num | mv | bool | null


_NULL = Expr("NULL", "null")


def _text1(e: Expr) -> str:
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


def _num1(e: Expr) -> str:
    return e.sql if e.kind == "num" else ("CAST(NULL AS DOUBLE)" if e.kind == "null" else f"spl_num({_text1(e)})")


def _as_list(e: Expr) -> str:
    if e.kind == "mv":
        return e.sql
    if e.kind == "null":
        return "CAST(NULL AS VARCHAR[])"
    text = _text1(e)
    return f"CASE WHEN {text} IS NULL THEN NULL ELSE [{text}] END"


def _any(e: Expr, predicate) -> str:
    """Predicate over every value of e (text); true when one holds, NULL when e is NULL.
    Most multivalue fields hold one value: that case skips the lambda (CASE is lazy in DuckDB)."""
    if e.kind == "mv":
        return (f"CASE WHEN len({e.sql}) = 1 THEN {predicate(f'({e.sql})[1]')} "
                f"ELSE (len(list_filter({e.sql}, lambda v: {predicate('v')})) > 0) END")
    return predicate(_text1(e))


def _unify(exprs: list[Expr], what: str) -> tuple[list[str], str]:
    kinds = {e.kind for e in exprs} - {"null"}
    if not kinds:
        return [e.sql for e in exprs], "null"
    if len(kinds) == 1:
        kind = kinds.pop()
        return [("CAST(NULL AS " + _SQL_TYPE[kind] + ")") if e.kind == "null" else e.sql for e in exprs], kind
    if kinds <= {"str", "mv"}:
        return [_as_list(e) for e in exprs], "mv"
    raise SplUnsupported(f"{what} mixes {' and '.join(sorted(kinds))} values (outside the compiled subset)")


_SQL_TYPE = {"str": "VARCHAR", "num": "DOUBLE", "mv": "VARCHAR[]", "bool": "BOOLEAN"}


# --- search language -------------------------------------------------------------------------------

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
        raw = _text1(Expr(column("_raw"), fields["_raw"]))
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


def _time_filter(search: Search, now: float) -> str:
    parts = []
    if search.earliest is not None:
        parts.append(f"coalesce(_time, 0) >= {resolve_time(search.earliest, now)!r}")
    if search.latest is not None:
        parts.append(f"coalesce(_time, 0) < {resolve_time(search.latest, now)!r}")
    return " AND ".join(parts) or "TRUE"


# --- eval expressions ------------------------------------------------------------------------------

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
    other = _text1(b)
    if trees[1][0] == "str" and NUMBER.match(trees[1][1]) is None:
        # against text that is not a number the comparison can only be textual
        scalar = lambda t: f"({t} {_SQL_OP[op]} {other})"  # noqa: E731
    else:
        scalar = lambda t: f"spl_{_CMP_MACRO[op]}({t}, {other})"  # noqa: E731
    if a.kind == "mv":
        return Expr(f"CASE WHEN {a.sql} IS NULL OR {other} IS NULL THEN NULL ELSE {_any(a, scalar)} END", "bool")
    return Expr(scalar(_text1(a)), "bool")


def _arith(op: str, a: Expr, b: Expr, trees) -> Expr:
    if op == ".":
        return Expr(f"({_text1(a)} || {_text1(b)})", "str")
    if op == "+" and not (a.kind == b.kind == "num"):
        literal_text = [t[0] == "str" and NUMBER.match(t[1]) is None for t in trees]
        if any(literal_text):
            return Expr(f"({_text1(a)} || {_text1(b)})", "str")
        raise SplUnsupported("+ on values that may be text or numbers is outside the compiled subset")
    x, y = _num1(a), _num1(b)
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
    return Expr(fn(_text1(e)), "str")


def _replacement(template: str) -> str:
    """Splunk's replacement text (\\N a group, the rest literal) in RE2's rewrite syntax."""
    return re.sub(r"\\(\d)|\\", lambda m: "\\" + m[1] if m[1] else "\\\\", template)


def _call(name: str, trees: list[tuple], fields: dict[str, str]) -> Expr:
    args = [expression(t, fields) for t in trees]
    if name in ("if", "case"):
        pairs = [(args[0], args[1])] if name == "if" else list(zip(args[::2], args[1::2]))
        values, kind = _unify([v for _, v in pairs] + ([args[2]] if name == "if" else []), f"{name}()")
        whens = " ".join(f"WHEN {_bool(c, name + '() condition')} THEN {v}" for (c, _), v in zip(pairs, values))
        default = f" ELSE {values[-1]}" if name == "if" else ""
        return Expr(f"CASE {whens}{default} END", kind)
    if name == "coalesce":
        values, kind = _unify(args, "coalesce()")
        return Expr(f"coalesce({', '.join(values)})", kind)
    if name == "null":
        return _NULL
    if name in ("true", "false"):
        return Expr(name.upper(), "bool")
    if name in ("isnull", "isnotnull"):
        return Expr(f"({args[0].sql} IS {'NOT ' if name == 'isnotnull' else ''}NULL)", "bool")
    if name == "match":
        regex, _ = _re2(_literal_arg(trees[1], name))
        return Expr(_any(args[0], lambda t: f"regexp_matches({t}, {_lit(regex)})"), "bool") \
            if args[0].kind != "null" else Expr("CAST(NULL AS BOOLEAN)", "bool")
    if name == "replace":
        regex, _ = _re2(_literal_arg(trees[1], name))
        rewrite = _replacement(_literal_arg(trees[2], name))
        return _per_value(args[0], lambda t: f"regexp_replace({t}, {_lit(regex)}, {_lit(rewrite)}, 'g')")
    if name == "urldecode":
        return _per_value(args[0], lambda t: f"spl_urldecode({t})")
    if name in ("lower", "upper"):
        return _per_value(args[0], lambda t: f"{name}({t})")
    if name == "mvcount":
        return Expr(f"CAST(len({_as_list(args[0])}) AS DOUBLE)", "num")
    if name == "mvfind":
        regex, _ = _re2(_literal_arg(trees[1], name))
        found = f"list_position(list_transform({_as_list(args[0])}, lambda v: regexp_matches(v, {_lit(regex)})), TRUE)"
        return Expr(f"CAST({found} - 1 AS DOUBLE)", "num")
    if name == "mvjoin":
        return Expr(f"array_to_string({_as_list(args[0])}, {_lit(_literal_arg(trees[1], name))})", "str")
    if name == "mvindex" and len(args) == 2:
        i = f"CAST(trunc({_num1(args[1])}) AS BIGINT)"
        return Expr(f"list_extract({_as_list(args[0])}, CASE WHEN {i} >= 0 THEN {i} + 1 ELSE {i} END)", "str")
    if name == "len":
        return Expr(f"CAST(length({_text1(args[0])}) AS DOUBLE)", "num")
    if name == "tostring":
        return Expr(_text1(args[0]), "str")
    if name == "tonumber" and len(args) == 1:
        return Expr(_num1(args[0]), "num")
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
        return Expr(f"(- {_num1(expression(tree[1], fields))})", "num")
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


# --- commands --------------------------------------------------------------------------------------

def _sort_terms(e: Expr, descending: bool) -> list[str]:
    """Splunk's order: missing values last either way, numbers before text (reversed when
    descending), numbers numerically, text by code point."""
    way = " DESC" if descending else ""
    if e.kind == "num":
        return [f"({e.sql} IS NULL)", e.sql + way]
    text = _text1(e)
    return [f"({text} IS NULL)", f"(spl_num({text}) IS NULL){way}", f"spl_num({text}){way}", text + way]


class _Chain:
    """A pipeline being compiled: a list of CTEs over a starting relation, and the current fields."""

    def __init__(self, source: str, fields: dict[str, str]):
        self.ctes: list[str] = []
        self.current = source
        self.fields = dict(fields)

    def stage(self, select: str) -> None:
        """`select` reads from {src}; it becomes the new current relation."""
        name = f"s{len(self.ctes)}"
        self.ctes.append(f"{name} AS ({select.replace('{src}', self.current)})")
        self.current = name

    def sql(self, tail: str = "SELECT * FROM {src}") -> str:
        body = tail.replace('{src}', self.current)
        return (f"WITH {', '.join(self.ctes)} {body}") if self.ctes else body

    def assign(self, assignments: list[tuple[str, Expr]]) -> None:
        """Replace or add fields; a null assignment removes the field (Splunk has no null values)."""
        drop = [column(f) for f, _ in assignments if f in self.fields]
        keep = ", ".join(f"{e.sql} AS {column(f)}" for f, e in assignments if e.kind != "null")
        exclude = f" EXCLUDE ({', '.join(drop)})" if drop else ""
        self.stage(f"SELECT *{exclude}{', ' + keep if keep else ''} FROM {{src}}")
        for f, e in assignments:
            if e.kind == "null":
                self.fields.pop(f, None)
            else:
                self.fields[f] = e.kind

    def project(self, names: list[str]) -> None:
        self.stage(f"SELECT {', '.join([column(f) for f in names] + [SEQ])} FROM {{src}}")
        self.fields = {f: self.fields[f] for f in names}


def _eval_step(chain: _Chain, spec: list[tuple[str, tuple]]) -> None:
    for field, tree in spec:        # one after the other: a later assignment sees an earlier one
        value = expression(tree, chain.fields)
        if value.kind == "bool":
            raise SplUnsupported(f"eval would store a boolean in {field} (Splunk rejects that)")
        chain.assign([(field, value)])


def _rex_step(chain: _Chain, spec: Rex) -> None:
    regex, groups = _re2(spec.pattern)
    if not groups:
        raise SplUnsupported(f"rex {spec.pattern!r} has no named group")
    source = _text1(expression(("field", spec.field), chain.fields))
    several = len(groups) > 1
    if several:         # one regex pass for all groups: a struct of groups 1..n, then its members
        slots = ", ".join(f"'g{i}'" for i in range(1, max(groups.values()) + 1))
        chain.stage(f"SELECT *, regexp_extract({source}, {_lit(regex)}, [{slots}]) AS \"#rex\" FROM {{src}}")
    assignments = []
    for name, number in groups.items():
        extract = f'"#rex".g{number}' if several else f"regexp_extract({source}, {_lit(regex)}, {number})"
        found = f"NULLIF({extract}, '')"
        old = expression(("field", name), chain.fields)
        if old.kind in ("null", "str"):
            assignments.append((name, Expr(f"coalesce({found}, {old.sql})", "str")))
        elif old.kind == "mv":
            assignments.append((name, Expr(f"CASE WHEN {found} IS NULL THEN {old.sql} ELSE [{found}] END", "mv")))
        else:
            raise SplUnsupported(f"rex into the numeric field {name} is outside the compiled subset")
    chain.assign(assignments)
    if several:
        chain.stage('SELECT * EXCLUDE ("#rex") FROM {src}')


def _regex_step(chain: _Chain, spec: tuple[str, bool, str]) -> None:
    field, keep, pattern = spec
    regex, _ = _re2(pattern)
    value = expression(("field", field), chain.fields)
    hit = "FALSE" if value.kind == "null" else f"coalesce({_any(value, lambda t: f'regexp_matches({t}, {_lit(regex)})')}, FALSE)"
    chain.stage(f"SELECT * FROM {{src}} WHERE {hit} = {'TRUE' if keep else 'FALSE'}")


def _aggregate(func: str, value: Expr) -> tuple[str, str]:
    """(SQL aggregate, kind) of stats func over value, Splunk's way (multivalues flattened)."""
    if func == "count":
        if value.kind == "mv":
            return f"CAST(coalesce(sum(len({value.sql})), 0) AS DOUBLE)", "num"
        return f"CAST(count({value.sql}) AS DOUBLE)", "num"
    if func == "values":
        # distinct drops NULLs; values of a multivalue field are flattened first
        if value.kind == "str":
            return f"spl_values(list({value.sql}) FILTER (WHERE {value.sql} IS NOT NULL))", "mv"
        return f"spl_nonempty(list_sort(list_distinct(flatten(list({_as_list(value)})))))", "mv"
    if func == "list":
        items = f"flatten(list({_as_list(value)} ORDER BY {SEQ}) FILTER (WHERE {value.sql} IS NOT NULL))"
        return f"spl_nonempty({items})", "mv"
    if func == "dc":
        return f"CAST(len(list_distinct(flatten(list({_as_list(value)})))) AS DOUBLE)", "num"
    if func in ("first", "last"):
        pick = "arg_min" if func == "first" else "arg_max"
        element = f"({value.sql})[{1 if func == 'first' else -1}]" if value.kind == "mv" else value.sql
        return f"{pick}({element}, {SEQ}) FILTER (WHERE {value.sql} IS NOT NULL)", \
            "str" if value.kind == "mv" else value.kind
    if value.kind == "mv":
        raise SplUnsupported(f"stats {func}() of a multivalue field is outside the compiled subset")
    if func in ("min", "max"):
        if value.kind == "num":
            return f"{func}({value.sql})", "num"
        pick = "arg_min" if func == "min" else "arg_max"
        # numbers compare as numbers only when every value is one, as in the reference
        return (f"CASE WHEN count({value.sql}) = count(spl_num({value.sql})) "
                f"THEN {pick}({value.sql}, spl_num({value.sql})) ELSE {func}({value.sql}) END"), "str"
    if func == "sum":
        return f"CASE WHEN count({value.sql}) = 0 THEN NULL ELSE sum(coalesce({_num1(value)}, 0)) END", "num"
    raise SplUnsupported(f"stats {func}() is outside the compiled subset")


def _stats_step(chain: _Chain, spec: Stats) -> None:
    by = [expression(("field", f), chain.fields) for f in spec.by]
    for i, e in enumerate(by):
        if e.kind == "mv":
            # a field that may hold several values: fine while every row has one (as in the reference)
            by[i] = Expr(f"CASE WHEN len({e.sql}) > 1 THEN error({_lit(MULTIVALUE_BY + ', '.join(spec.by))}) "
                         f"ELSE ({e.sql})[1] END", "str")
    outputs, kinds = [], {}
    for a in spec.aggs:
        if a.alias in spec.by or a.alias in kinds:
            raise SplUnsupported(f"stats alias {a.alias} repeats a field (outside the compiled subset)")
        value = Expr("1", "str") if a.field is None else expression(("field", a.field), chain.fields)
        if value.kind == "null":
            sql, kind = ("CAST(0 AS DOUBLE)", "num") if a.func in ("count", "dc") else ("NULL", "null")
        else:
            sql, kind = _aggregate(a.func, value)
        if kind != "null":
            outputs.append(f"{sql} AS {column(a.alias)}")
            kinds[a.alias] = kind
    pairs = [(f, e) for f, e in zip(spec.by, by) if e.kind != "null"]
    present = " AND ".join(f"{e.sql} IS NOT NULL" for _, e in pairs) or "TRUE"
    group = f" GROUP BY {', '.join(e.sql for _, e in pairs)}" if pairs else ""
    cols = ", ".join([f"{e.sql} AS {column(f)}" for f, e in pairs] + outputs)
    # a by-field no event has: every event lacks it, so there is no group at all
    never = " HAVING FALSE" if len(pairs) < len(by) else ""
    chain.stage(f"SELECT {cols} FROM {{src}} WHERE {present}{group}{never}")
    chain.fields = {f: e.kind for f, e in pairs} | kinds
    order = ", ".join(t for f, e in pairs for t in _sort_terms(Expr(column(f), e.kind), False)) or "1"
    chain.stage(f"SELECT *, row_number() OVER (ORDER BY {order}) AS {SEQ} FROM {{src}}")


def _streamstats_step(chain: _Chain, spec: Stats) -> None:
    by = [expression(("field", f), chain.fields) for f in spec.by]
    if any(e.kind == "null" for e in by):
        return                              # no event has every by-field: nothing changes
    partition = ", ".join(_text1(e) for e in by)
    present = " AND ".join(f"{_text1(e)} IS NOT NULL" for e in by) or "TRUE"
    window = f"(PARTITION BY {partition} ORDER BY {SEQ} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)" \
        if partition else f"(ORDER BY {SEQ} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    now = expression(("field", "_time"), chain.fields)
    assignments = []
    for a in spec.aggs:
        value = Expr("1", "str") if a.field is None else expression(("field", a.field), chain.fields)
        if spec.window is not None:
            # time_window: the earlier events of the group (stream order, as the reference) at most
            # `window` seconds older than this one
            if value.kind == "mv":
                raise SplUnsupported("streamstats time_window= over a multivalue field is outside the compiled subset")
            if now.kind == "null":
                raise SplUnsupported("streamstats time_window= needs _time")
            recent = (f"list_filter(list({{'t': {_num1(now)}, 'v': {_text1(value) if value.kind != 'null' else 'NULL'}}}) OVER {window}, "
                      f"lambda x: {_num1(now)} - x.t <= {float(spec.window)} AND x.v IS NOT NULL)")
            counted = f"list_transform({recent}, lambda x: x.v)"
            sql = f"CAST(len({'list_distinct(' + counted + ')' if a.func == 'dc' else counted}) AS DOUBLE)"
            kind = "num"
        elif a.func == "count":
            counted = "*" if a.field is None else (value.sql if value.kind != "mv" else None)
            if counted is None:
                raise SplUnsupported("streamstats count() of a multivalue field is outside the compiled subset")
            sql, kind = f"CAST(count({counted}) OVER {window} AS DOUBLE)", "num"
        elif a.func in ("first", "last") and value.kind != "null":
            element = f"({value.sql})[{1 if a.func == 'first' else -1}]" if value.kind == "mv" else value.sql
            sql = f"{a.func}_value({element} IGNORE NULLS) OVER {window}"
            kind = "str" if value.kind == "mv" else value.kind
        elif a.func in ("first", "last"):
            sql, kind = "NULL", "null"
        else:
            raise SplUnsupported(f"streamstats {a.func}() is outside the compiled subset")
        old = expression(("field", a.alias), chain.fields)
        if kind == "null":
            sql, kind = (f"CASE WHEN {present} THEN NULL ELSE {old.sql} END", old.kind) if old.kind != "null" \
                else ("NULL", "null")
        elif old.kind not in ("null", kind):
            raise SplUnsupported(f"streamstats into {a.alias} changes its kind (outside the compiled subset)")
        else:
            sql = f"CASE WHEN {present} THEN {sql} ELSE {old.sql if old.kind != 'null' else 'NULL'} END"
        assignments.append((a.alias, Expr(sql, kind)))
    chain.assign(assignments)


def _sort_step(chain: _Chain, spec: Sort) -> None:
    keys = [(expression(("field", f), chain.fields), desc) for f, desc in spec.keys]
    terms = [t for e, desc in keys if e.kind != "null" for t in _sort_terms(e, desc)]
    chain.stage(f"SELECT * EXCLUDE ({SEQ}), row_number() OVER (ORDER BY {', '.join(terms + [SEQ])}) AS {SEQ} FROM {{src}}")
    if spec.limit:
        chain.stage(f"SELECT * FROM {{src}} WHERE {SEQ} <= {spec.limit}")


def _table_step(chain: _Chain, names: list[str]) -> None:
    keep = []
    for name in names:
        if "*" in name:
            keep += [f for f in chain.fields if wildcard(name).fullmatch(f) and f not in keep]
        elif name in chain.fields and name not in keep:
            keep.append(name)
    chain.project(keep)


def _fields_step(chain: _Chain, spec: tuple[bool, list[str]]) -> None:
    remove, names = spec
    wanted = set(names) | ({"_time", "_raw"} if not remove else set())
    chain.project([f for f in chain.fields if (f in wanted) != remove])


def _dedup_step(chain: _Chain, names: list[str]) -> None:
    values = [expression(("field", f), chain.fields) for f in names]
    if any(v.kind == "null" for v in values):
        chain.stage("SELECT * FROM {src} WHERE FALSE")
        return
    present = " AND ".join(f"{v.sql} IS NOT NULL" for v in values)
    chain.stage(f"SELECT * FROM {{src}} WHERE {present} "
                f"QUALIFY row_number() OVER (PARTITION BY {', '.join(v.sql for v in values)} ORDER BY {SEQ}) = 1")


def _search_step(chain: _Chain, spec: Search, now: float) -> None:
    chain.stage(f"SELECT * FROM {{src}} WHERE {_time_filter(spec, now)} AND {search_sql(spec.tree, chain.fields)}")


def _where_step(chain: _Chain, spec: tuple) -> None:
    chain.stage(f"SELECT * FROM {{src}} WHERE coalesce({_bool(expression(spec, chain.fields), 'where')}, FALSE)")


def _head_step(chain: _Chain, n: int) -> None:
    chain.stage(f"SELECT * FROM {{src}} WHERE {SEQ} IN (SELECT {SEQ} FROM {{src}} ORDER BY {SEQ} LIMIT {n})")


_STEPS = {"where": _where_step, "eval": _eval_step, "rex": _rex_step, "regex": _regex_step, "stats": _stats_step,
          "streamstats": _streamstats_step, "sort": _sort_step, "table": _table_step, "fields": _fields_step,
          "head": _head_step, "dedup": _dedup_step}


# --- the index and sessions ------------------------------------------------------------------------

def _kind_of(value) -> str:
    return "mv" if isinstance(value, list) else "str"


def _cell(value):
    if isinstance(value, list):
        return [text_value(v) for v in value]
    return text_value(value)


class SplIndex:
    """Events as Splunk holds them, in a DuckDB table: `_time` a number, every other field text or
    a list of texts (a multivalue field), plus the newest-first order Splunk returns them in.

    Events are streamed through a temporary JSON-lines file that DuckDB reads, so a million events
    never sit in Python at once."""

    def __init__(self, events: Iterable[dict], memory_limit: str | None = "1GB"):
        # no progress bar: DuckDB draws it on standard output, inside `dac test --events --json`
        self.con = duckdb.connect()
        self.con.execute("SET enable_progress_bar = false")
        # above the limit DuckDB spills sorts and aggregates to disk instead of growing (a million
        # audit records are ~400 MB of table)
        self._spill = tempfile.TemporaryDirectory(prefix="dac-spl-")
        self.con.execute(f"SET temp_directory = {_lit(self._spill.name)}")
        if memory_limit:
            self.con.execute(f"SET memory_limit = {_lit(memory_limit)}")
        self.con.create_function("spl_py_unquote", lambda s: unquote(s, errors="replace"), ["VARCHAR"], "VARCHAR")
        for macro in _MACROS:
            self.con.execute(f"CREATE OR REPLACE MACRO {macro}")
        self.fields: dict[str, str] = {"_time": "num"}
        self._load(events)

    def _load(self, events: Iterable[dict]) -> None:
        fields, keys = self.fields, {}
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8", delete=False) as f:
            for position, event in enumerate(events):
                row = {"#ins": position}
                for name, value in event.items():
                    if value is None or value == []:
                        continue
                    if name == "_time":
                        row["_time"] = float(value)
                        continue
                    key = keys.get(name)
                    if key is None:
                        key = keys[name] = column(name)[1:-1]
                    if type(value) is str:
                        row[key] = value
                        if name not in fields:
                            fields[name] = "str"
                        continue
                    kind = _kind_of(value)
                    if fields.setdefault(name, kind) != kind:
                        fields[name] = "mv"
                    row[key] = _cell(value)
                f.write(json.dumps(row) + "\n")
        try:
            # a field that is a list in some events is read as JSON and made a list in all of them
            types = {"#ins": "BIGINT"} | {column(n)[1:-1]: ("JSON" if k == "mv" else _SQL_TYPE[k])
                                          for n, k in self.fields.items()}
            spec = ", ".join(f"{_lit(c)}: {_lit(t)}" for c, t in types.items())
            select = ", ".join(
                f"CASE WHEN {column(n)} IS NULL THEN NULL WHEN json_type({column(n)}) = 'ARRAY' THEN CAST({column(n)} AS VARCHAR[]) "
                f"ELSE [{column(n)} ->> '$'] END AS {column(n)}" if k == "mv" else column(n)
                for n, k in self.fields.items())
            # stored newest first (stable), so a row's position (rowid) is Splunk's order; an ORDER BY
            # with insertion order kept costs a third of a row_number() window over every column
            self.con.execute("SET preserve_insertion_order = true")
            self.con.execute(f"CREATE OR REPLACE TABLE spl_index AS SELECT {select} "
                             f"FROM read_json(?, format='newline_delimited', columns={{{spec}}}) "
                             f"ORDER BY -coalesce(_time, 0), \"#ins\"", [f.name])
        finally:
            self.con.execute("SET preserve_insertion_order = false")     # from here on, order is #seq
            os.unlink(f.name)


class SqlSession:
    """Runs SPL searches on an SplIndex with a fixed clock. Like the reference session, the result
    of a prefix shared by several searches (the auditd record assembly) is kept, here as a
    temporary table, and later searches start from it."""

    def __init__(self, index: SplIndex, now: datetime | float | None = None):
        if isinstance(now, datetime):
            now = (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).timestamp()
        self.now = float(now) if now is not None else datetime.now(timezone.utc).timestamp()
        self.index = index
        self.con = index.con
        self._cache: dict[tuple[str, ...], tuple[str, dict[str, str]]] = {}

    def run(self, text: str) -> list[dict]:
        """Execute one SPL search; returns its result rows, as the reference engine does."""
        return self._rows(parse_pipeline(text))

    def _rows(self, pipeline: Pipeline) -> list[dict]:
        try:
            chain = self._compile(pipeline)
            cursor = self.con.execute(chain.sql(f"SELECT * FROM {{src}} ORDER BY {SEQ}"))
        except duckdb.Error as e:
            if MULTIVALUE_BY in str(e):
                raise SplUnsupported(MULTIVALUE_BY + str(e).split(MULTIVALUE_BY, 1)[1]) from None
            # a compiler defect: reported as a failure of this query (never a pass), not a traceback
            raise SplUnsupported(f"DuckDB could not run the SQL compiled from this search: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
        names = [d[0] for d in cursor.description]
        kinds = [chain.fields.get(field_of(n)) for n in names]
        rows = []
        for values in cursor.fetchall():
            row = {}
            for name, kind, value in zip(names, kinds, values):
                if kind is None or value is None or value == []:
                    continue
                if kind == "num":
                    value = int(value) if float(value).is_integer() else value
                elif kind == "mv":
                    value = value[0] if len(value) == 1 else list(value)
                row[field_of(name)] = value
            rows.append(row)
        return rows

    def _materialize(self, chain: _Chain) -> _Chain:
        table = f"spl_t{next(_TABLE_NUMBERS)}"
        self.con.execute(f"CREATE TEMP TABLE {table} AS {chain.sql()}")
        return _Chain(table, chain.fields)

    def _compile(self, pipeline: Pipeline) -> _Chain:
        keys = prefix_keys(pipeline)
        points = cache_points(pipeline.steps)
        start = next((i + 1 for i in reversed(range(len(keys))) if keys[i] in self._cache), 0)
        if start:
            chain = _Chain(*self._cache[keys[start - 1]])
        else:
            chain = _Chain(f"(SELECT *, rowid AS {SEQ} FROM spl_index)", self.index.fields)
            _search_step(chain, self._resolve(pipeline.base), self.now)
        for i in range(start, len(pipeline.steps)):
            self._step(chain, pipeline.steps[i])
            if i in points:
                chain = self._materialize(chain)
                self._cache[keys[i]] = (chain.current, dict(chain.fields))
        return chain

    def _step(self, chain: _Chain, step) -> None:
        if step.name == "append":
            self._append(chain, step.spec)
        elif step.name == "search":
            _search_step(chain, self._resolve(step.spec), self.now)
        else:
            _STEPS[step.name](chain, step.spec)

    def _resolve(self, search: Search) -> Search:
        """Run each subsearch of a search first (as Splunk does) and put its terms in its place."""
        def walk(tree: tuple) -> tuple:
            if tree[0] == "subsearch":
                return ("terms", frozenset(subsearch_terms(self._rows(tree[1]))))
            if tree[0] in ("and", "or"):
                return (tree[0], [walk(t) for t in tree[1]])
            if tree[0] == "not":
                return ("not", walk(tree[1]))
            return tree
        return Search(walk(search.tree), search.earliest, search.latest)

    def _append(self, chain: _Chain, sub: Pipeline) -> None:
        """The subsearch's rows after this pipeline's, fields of both (a field text on one side and
        multivalue on the other becomes multivalue)."""
        other = self._materialize(self._compile(sub))
        mine = self._materialize(chain)
        names = list(mine.fields) + [f for f in other.fields if f not in mine.fields]
        sides = {f: [Expr(column(f), side.fields[f]) if f in side.fields else _NULL for side in (mine, other)]
                 for f in names}
        unified = {f: _unify(sides[f], f"append field {f}") for f in names}
        selects = [f"SELECT {', '.join([f'{unified[f][0][branch]} AS {column(f)}' for f in names] + [f'{branch} AS b', f'{SEQ} AS o'])} "
                   f"FROM {side.current}" for branch, side in enumerate((mine, other))]
        chain.ctes, chain.current = [], mine.current
        chain.stage(f"SELECT * EXCLUDE (b, o), row_number() OVER (ORDER BY b, o) AS {SEQ} FROM ({' UNION ALL '.join(selects)})")
        chain.fields = {f: unified[f][1] for f in names}


def run_spl_sql(text: str, events: Iterable[dict], now: datetime | float | None = None) -> list[dict]:
    """Execute one SPL search over events indexed as Splunk would hold them; returns result rows."""
    return SqlSession(SplIndex(events), now).run(text)
