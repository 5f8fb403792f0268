"""KQL engine: the generated KQL executed by duckdb-kql on DuckDB tables typed from
sentinel/schemas/, with a fixed clock so ago() is stable. A construct duckdb-kql does not
support raises KqlNotTestable: it is reported as "not testable", never as a pass."""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone

import duckdb_kql

DUCK_TYPES = {"string": "VARCHAR", "long": "BIGINT", "int": "INTEGER", "datetime": "TIMESTAMP",
              "bool": "BOOLEAN", "boolean": "BOOLEAN", "real": "DOUBLE", "double": "DOUBLE",
              "dynamic": "VARCHAR", "guid": "VARCHAR", "timespan": "INTERVAL"}


class KqlNotTestable(RuntimeError):
    pass


class KqlEngine:
    def __init__(self, tables: dict[str, list[tuple[str, str]]], now: datetime):
        self.tables = tables
        self.now = now
        self.con = duckdb_kql.connect()
        self.con.execute("SET enable_progress_bar = false")     # it would be drawn on standard output
        for table, columns in tables.items():
            ddl = ", ".join(f'"{c}" {DUCK_TYPES.get(t, "VARCHAR")}' for c, t in columns)
            self.con.execute(f'CREATE TABLE "{table}" ({ddl})')

    def load(self, table: str, rows: list[dict]) -> None:
        """Replace the table's rows."""
        self.con.execute(f'DELETE FROM "{table}"')
        self.append(table, rows)

    def append(self, table: str, rows: list[dict]) -> None:
        """Add rows (a streamed input's, a batch at a time). Rows go through a temporary JSON-lines
        file that DuckDB reads with the schema's types: row-by-row INSERTs take minutes for a million rows."""
        columns = self.tables[table]
        if not rows:
            return
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8", delete=False) as f:
            types = dict(columns)
            for row in rows:   # only the columns a row has: read_json makes the others NULL
                f.write(json.dumps({c: _cell(v, types[c]) for c, v in row.items() if c in types}, default=_json_value) + "\n")
        try:
            spec = ", ".join(f"'{c}': '{DUCK_TYPES.get(t, 'VARCHAR')}'" for c, t in columns)
            names = ", ".join(f'"{c}"' for c, _ in columns)
            self.con.execute(f"INSERT INTO \"{table}\" SELECT {names} FROM read_json(?, format='newline_delimited', "
                             f"columns={{{spec}}}, timestampformat='%Y-%m-%d %H:%M:%S.%f')", [f.name])
        finally:
            os.unlink(f.name)

    def run(self, query: str) -> list[dict]:
        try:
            relation = duckdb_kql.kql(self.con, query, query_now=self.now)
        except duckdb_kql.KqlUnsupportedError as e:
            raise KqlNotTestable(f"duckdb-kql cannot run this query: {e}") from e
        names = [d[0] for d in relation.description]
        return [dict(zip(names, row)) for row in relation.fetchall()]


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
