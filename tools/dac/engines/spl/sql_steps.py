"""SPL commands (where, eval, rex, regex, stats, streamstats, sort, table, fields, dedup, search,
head) compiled to one SQL statement each over the previous step's table: the pipeline half of
dac.engines.spl.sql, whose module docstring gives the Splunk semantics they keep."""

from __future__ import annotations

from .parse import Search, SplUnsupported, wildcard
from .pipeline import Rex, Sort, Stats
from .sql_expr import Expr, MULTIVALUE_BY, SEQ, _any, as_list, _bool, _lit, num1, re2, text1, time_filter, column, expression, search_sql


def _sort_terms(e: Expr, descending: bool) -> list[str]:
    """Splunk's order: missing values last either way, numbers before text (reversed when
    descending), numbers numerically, text by code point."""
    way = " DESC" if descending else ""
    if e.kind == "num":
        return [f"({e.sql} IS NULL)", e.sql + way]
    text = text1(e)
    return [f"({text} IS NULL)", f"(spl_num({text}) IS NULL){way}", f"spl_num({text}){way}", text + way]


class Chain:
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


def _eval_step(chain: Chain, spec: list[tuple[str, tuple]]) -> None:
    for field, tree in spec:        # one after the other: a later assignment sees an earlier one
        value = expression(tree, chain.fields)
        if value.kind == "bool":
            raise SplUnsupported(f"eval would store a boolean in {field} (Splunk rejects that)")
        chain.assign([(field, value)])


def _rex_step(chain: Chain, spec: Rex) -> None:
    regex, groups = re2(spec.pattern)
    if not groups:
        raise SplUnsupported(f"rex {spec.pattern!r} has no named group")
    source = text1(expression(("field", spec.field), chain.fields))
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


def _regex_step(chain: Chain, spec: tuple[str, bool, str]) -> None:
    field, keep, pattern = spec
    regex, _ = re2(pattern)
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
        return f"spl_nonempty(list_sort(list_distinct(flatten(list({as_list(value)})))))", "mv"
    if func == "list":
        items = f"flatten(list({as_list(value)} ORDER BY {SEQ}) FILTER (WHERE {value.sql} IS NOT NULL))"
        return f"spl_nonempty({items})", "mv"
    if func == "dc":
        return f"CAST(len(list_distinct(flatten(list({as_list(value)})))) AS DOUBLE)", "num"
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
        return f"CASE WHEN count({value.sql}) = 0 THEN NULL ELSE sum(coalesce({num1(value)}, 0)) END", "num"
    raise SplUnsupported(f"stats {func}() is outside the compiled subset")


def _stats_step(chain: Chain, spec: Stats) -> None:
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


def _streamstats_step(chain: Chain, spec: Stats) -> None:
    by = [expression(("field", f), chain.fields) for f in spec.by]
    if any(e.kind == "null" for e in by):
        return                              # no event has every by-field: nothing changes
    partition = ", ".join(text1(e) for e in by)
    present = " AND ".join(f"{text1(e)} IS NOT NULL" for e in by) or "TRUE"
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
            recent = (f"list_filter(list({{'t': {num1(now)}, 'v': {text1(value) if value.kind != 'null' else 'NULL'}}}) OVER {window}, "
                      f"lambda x: {num1(now)} - x.t <= {float(spec.window)} AND x.v IS NOT NULL)")
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


def _sort_step(chain: Chain, spec: Sort) -> None:
    keys = [(expression(("field", f), chain.fields), desc) for f, desc in spec.keys]
    terms = [t for e, desc in keys if e.kind != "null" for t in _sort_terms(e, desc)]
    chain.stage(f"SELECT * EXCLUDE ({SEQ}), row_number() OVER (ORDER BY {', '.join(terms + [SEQ])}) AS {SEQ} FROM {{src}}")
    if spec.limit:
        chain.stage(f"SELECT * FROM {{src}} WHERE {SEQ} <= {spec.limit}")


def _table_step(chain: Chain, names: list[str]) -> None:
    keep = []
    for name in names:
        if "*" in name:
            keep += [f for f in chain.fields if wildcard(name).fullmatch(f) and f not in keep]
        elif name in chain.fields and name not in keep:
            keep.append(name)
    chain.project(keep)


def _fields_step(chain: Chain, spec: tuple[bool, list[str]]) -> None:
    remove, names = spec
    wanted = set(names) | ({"_time", "_raw"} if not remove else set())
    chain.project([f for f in chain.fields if (f in wanted) != remove])


def _dedup_step(chain: Chain, names: list[str]) -> None:
    values = [expression(("field", f), chain.fields) for f in names]
    if any(v.kind == "null" for v in values):
        chain.stage("SELECT * FROM {src} WHERE FALSE")
        return
    present = " AND ".join(f"{v.sql} IS NOT NULL" for v in values)
    chain.stage(f"SELECT * FROM {{src}} WHERE {present} "
                f"QUALIFY row_number() OVER (PARTITION BY {', '.join(v.sql for v in values)} ORDER BY {SEQ}) = 1")


def search_step(chain: Chain, spec: Search, now: float) -> None:
    chain.stage(f"SELECT * FROM {{src}} WHERE {time_filter(spec, now)} AND {search_sql(spec.tree, chain.fields)}")


def _where_step(chain: Chain, spec: tuple) -> None:
    chain.stage(f"SELECT * FROM {{src}} WHERE coalesce({_bool(expression(spec, chain.fields), 'where')}, FALSE)")


def _head_step(chain: Chain, n: int) -> None:
    chain.stage(f"SELECT * FROM {{src}} WHERE {SEQ} IN (SELECT {SEQ} FROM {{src}} ORDER BY {SEQ} LIMIT {n})")


STEPS = {"where": _where_step, "eval": _eval_step, "rex": _rex_step, "regex": _regex_step, "stats": _stats_step,
          "streamstats": _streamstats_step, "sort": _sort_step, "table": _table_step, "fields": _fields_step,
          "head": _head_step, "dedup": _dedup_step}
