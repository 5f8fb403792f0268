"""KQL engine: the generated KQL executed by duckdb-kql on DuckDB tables typed from
sentinel/schemas/, with a fixed clock so ago() is stable. A construct duckdb-kql does not
support raises KqlNotTestable: it is reported as "not testable", never as a pass.

A query's result is a function of the query text, the clock and the tables' contents, so results
are kept in a process-wide memo keyed by those (the tables by a digest of exactly the rows loaded):
a query run again on the same rows (a shape twin, or the next `dac test` in the same process, as
in the test suite) is not translated and executed again. Tables filled by `append` (a streamed
input) have no digest, and their queries always run."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from datetime import datetime, timezone

import duckdb_kql
from duckdb_kql import engine as kql_engine

_KQL = duckdb_kql.kql

DUCK_TYPES = {"string": "VARCHAR", "long": "BIGINT", "int": "INTEGER", "datetime": "TIMESTAMP",
              "bool": "BOOLEAN", "boolean": "BOOLEAN", "real": "DOUBLE", "double": "DOUBLE",
              "dynamic": "VARCHAR", "guid": "VARCHAR", "timespan": "INTERVAL"}


class KqlNotTestable(RuntimeError):
    pass


# (query, clock, schema, table digests, translator) -> (column names, rows); least recently used out
_RESULTS: OrderedDict[tuple, tuple[list[str], list[tuple]]] = OrderedDict()
_RESULTS_LIMIT = 4096
# (query, clock, schema) -> (SQL, parameters): duckdb_kql's translation
_TRANSLATIONS: dict[tuple, tuple[str, dict | None]] = {}


class KqlEngine:
    def __init__(self, tables: dict[str, list[tuple[str, str]]], now: datetime):
        self.tables = tables
        self.now = now
        # table -> sha256 of the JSON lines its rows were loaded from (all tables start empty);
        # None once rows were appended (not a known content)
        self._digests: dict[str, str | None] = {table: hashlib.sha256(b"").hexdigest() for table in tables}
        self._schema = None         # duckdb_kql's view of the tables, read at the first query
        self.con = duckdb_kql.connect()
        self.con.execute("SET enable_progress_bar = false")     # it would be drawn on standard output
        for table, columns in tables.items():
            ddl = ", ".join(f'"{c}" {DUCK_TYPES.get(t, "VARCHAR")}' for c, t in columns)
            self.con.execute(f'CREATE TABLE "{table}" ({ddl})')

    def load(self, table: str, rows: list[dict]) -> None:
        """Replace the table's rows."""
        self.con.execute(f'DELETE FROM "{table}"')
        self._digests[table] = self._insert(table, rows)

    def append(self, table: str, rows: list[dict]) -> None:
        """Add rows (a streamed input's, a batch at a time). Rows go through a temporary JSON-lines
        file that DuckDB reads with the schema's types: row-by-row INSERTs take minutes for a million rows."""
        self._insert(table, rows)
        if rows:
            self._digests[table] = None

    def _insert(self, table: str, rows: list[dict]) -> str:
        """Add rows; the sha256 of the JSON lines they were read from."""
        columns = self.tables[table]
        digest = hashlib.sha256()
        if not rows:
            return digest.hexdigest()
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8", delete=False) as f:
            types = dict(columns)
            for row in rows:   # only the columns a row has: read_json makes the others NULL
                line = json.dumps({c: _cell(v, types[c]) for c, v in row.items() if c in types}, default=_json_value) + "\n"
                digest.update(line.encode("utf-8"))
                f.write(line)
        try:
            spec = ", ".join(f"'{c}': '{DUCK_TYPES.get(t, 'VARCHAR')}'" for c, t in columns)
            names = ", ".join(f'"{c}"' for c, _ in columns)
            self.con.execute(f"INSERT INTO \"{table}\" SELECT {names} FROM read_json(?, format='newline_delimited', "
                             f"columns={{{spec}}}, timestampformat='%Y-%m-%d %H:%M:%S.%f')", [f.name])
        finally:
            os.unlink(f.name)
        return digest.hexdigest()

    def run(self, query: str) -> list[dict]:
        key = None
        if None not in self._digests.values():
            # the translator is part of the key: a replaced duckdb_kql.kql (a test's) never meets a kept result
            key = (query, self.now, tuple((t, tuple(c)) for t, c in self.tables.items()),
                   tuple(sorted(self._digests.items())), duckdb_kql.kql)
        if key is not None and key in _RESULTS:
            _RESULTS.move_to_end(key)
            names, rows = _RESULTS[key]
        else:
            relation = self._relation(query)
            names = [d[0] for d in relation.description]
            rows = relation.fetchall()
            if key is not None:
                _RESULTS[key] = (names, rows)
                if len(_RESULTS) > _RESULTS_LIMIT:
                    _RESULTS.popitem(last=False)
        return [dict(zip(names, row)) for row in rows]

    def _relation(self, query: str):
        """What duckdb_kql.kql(con, query, query_now=now) returns, with the translation to SQL
        kept per query text, clock and schema (translating took as long as executing: the same
        queries run on every Defender file)."""
        if duckdb_kql.kql is not _KQL:      # replaced (a test's): call it as before
            try:
                return duckdb_kql.kql(self.con, query, query_now=self.now)
            except duckdb_kql.KqlUnsupportedError as e:
                raise KqlNotTestable(f"duckdb-kql cannot run this query: {e}") from e
        if self._schema is None:
            self._schema = kql_engine.schema(self.con)
        key = (query, self.now, repr(self._schema))
        kept = _TRANSLATIONS.get(key)
        if kept is None:
            try:
                translated = duckdb_kql.to_sql(query, schema=self._schema, query_now=self.now)
            except duckdb_kql.KqlUnsupportedError as e:
                raise KqlNotTestable(f"duckdb-kql cannot run this query: {e}") from e
            if translated.unbound:          # duckdb_kql.kql's own error for it
                return duckdb_kql.kql(self.con, query, query_now=self.now)
            kept = _TRANSLATIONS[key] = (str(translated), translated.parameters)
            if len(_TRANSLATIONS) > _RESULTS_LIMIT:
                _TRANSLATIONS.pop(next(iter(_TRANSLATIONS)))
        sql, bound = kept
        self.con.execute("SET TimeZone='UTC'")      # as duckdb_kql.kql does before every query
        return self.con.sql(sql, params=bound) if bound else self.con.sql(sql)


def _json_value(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    return str(value)


def _cell(value, kusto_type: str):
    if value is None or value == "":
        return None
    if kusto_type == "datetime":
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc).replace(tzinfo=None)
    if kusto_type in ("long", "int"):
        return int(value)
    if kusto_type in ("bool", "boolean"):
        return bool(value) if not isinstance(value, str) else value.lower() == "true"
    if kusto_type == "dynamic" and not isinstance(value, str):
        return json.dumps(value)
    return value
