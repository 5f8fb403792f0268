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

import json
import os
import tempfile
from datetime import datetime, timezone
from typing import Iterable
from urllib.parse import unquote

import duckdb

from .parse import NUMBER, Search, SplUnsupported, subsearch_terms, text_value
from .pipeline import Pipeline, cache_points, parse_pipeline, prefix_keys
from .sql_expr import Expr, MULTIVALUE_BY, SEQ, MACROS, _NULL, NUM_RE, SQL_TYPE, TABLE_NUMBERS, _lit, unify, column, field_of
from .sql_steps import Chain, STEPS, search_step

assert NUMBER.pattern.rstrip("$") == NUM_RE        # the same test for "reads as a number" as the reference


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
        for macro in MACROS:
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
            types = {"#ins": "BIGINT"} | {column(n)[1:-1]: ("JSON" if k == "mv" else SQL_TYPE[k])
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

    def _materialize(self, chain: Chain) -> Chain:
        table = f"spl_t{next(TABLE_NUMBERS)}"
        self.con.execute(f"CREATE TEMP TABLE {table} AS {chain.sql()}")
        return Chain(table, chain.fields)

    def _compile(self, pipeline: Pipeline) -> Chain:
        keys = prefix_keys(pipeline)
        points = cache_points(pipeline.steps)
        start = next((i + 1 for i in reversed(range(len(keys))) if keys[i] in self._cache), 0)
        if start:
            chain = Chain(*self._cache[keys[start - 1]])
        else:
            chain = Chain(f"(SELECT *, rowid AS {SEQ} FROM spl_index)", self.index.fields)
            search_step(chain, self._resolve(pipeline.base), self.now)
        for i in range(start, len(pipeline.steps)):
            self._step(chain, pipeline.steps[i])
            if i in points:
                chain = self._materialize(chain)
                self._cache[keys[i]] = (chain.current, dict(chain.fields))
        return chain

    def _step(self, chain: Chain, step) -> None:
        if step.name == "append":
            self._append(chain, step.spec)
        elif step.name == "search":
            search_step(chain, self._resolve(step.spec), self.now)
        else:
            STEPS[step.name](chain, step.spec)

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

    def _append(self, chain: Chain, sub: Pipeline) -> None:
        """The subsearch's rows after this pipeline's, fields of both (a field text on one side and
        multivalue on the other becomes multivalue)."""
        other = self._materialize(self._compile(sub))
        mine = self._materialize(chain)
        names = list(mine.fields) + [f for f in other.fields if f not in mine.fields]
        sides = {f: [Expr(column(f), side.fields[f]) if f in side.fields else _NULL for side in (mine, other)]
                 for f in names}
        unified = {f: unify(sides[f], f"append field {f}") for f in names}
        selects = [f"SELECT {', '.join([f'{unified[f][0][branch]} AS {column(f)}' for f in names] + [f'{branch} AS b', f'{SEQ} AS o'])} "
                   f"FROM {side.current}" for branch, side in enumerate((mine, other))]
        chain.ctes, chain.current = [], mine.current
        chain.stage(f"SELECT * EXCLUDE (b, o), row_number() OVER (ORDER BY b, o) AS {SEQ} FROM ({' UNION ALL '.join(selects)})")
        chain.fields = {f: unified[f][1] for f in names}


def run_spl_sql(text: str, events: Iterable[dict], now: datetime | float | None = None) -> list[dict]:
    """Execute one SPL search over events indexed as Splunk would hold them; returns result rows."""
    return SqlSession(SplIndex(events), now).run(text)
