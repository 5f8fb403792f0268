"""KQL engine: the generated KQL executed by duckdb-kql on DuckDB tables typed from
sentinel/schemas/, with a fixed clock so ago() is stable. A construct duckdb-kql does not
support raises KqlNotTestable: it is reported as "not testable", never as a pass."""
from __future__ import annotations

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
        for table, columns in tables.items():
            ddl = ", ".join(f'"{c}" {DUCK_TYPES.get(t, "VARCHAR")}' for c, t in columns)
            self.con.execute(f'CREATE TABLE "{table}" ({ddl})')

    def load(self, table: str, rows: list[dict]) -> None:
        columns = self.tables[table]
        self.con.execute(f'DELETE FROM "{table}"')
        values = [[_cell(row.get(c), t) for c, t in columns] for row in rows]
        if values:
            self.con.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(columns))})', values)

    def run(self, query: str) -> list[dict]:
        try:
            relation = duckdb_kql.kql(self.con, query, query_now=self.now)
        except duckdb_kql.KqlUnsupportedError as e:
            raise KqlNotTestable(f"duckdb-kql cannot run this query: {e}") from e
        names = [d[0] for d in relation.description]
        return [dict(zip(names, row)) for row in relation.fetchall()]


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
        import json
        return json.dumps(value)
    return value
