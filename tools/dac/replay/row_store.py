"""The rows of one streamed input in an on-disk SQLite table, for `dac test --events` on files
larger than memory: rows are inserted in batches as the reader yields them, and the Sigma engine
runs each rule's SQL on the table (through a view per log-source scope) instead of on a list.

Cells are stored as the Sigma engine compares them (TEXT COLLATE NOCASE; a list is its values one
a line, see engine_sigma._text). `_time`, `dac_lines` and `dac_categories` are kept apart so the
rows a hit is made of can be given back as the replay's rows were (float time, list of lines).
The database is a temporary file: SQLite's page cache (CACHE_KIB) is all it holds in memory.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
from typing import Iterable

BATCH = 10_000
CACHE_KIB = 64 * 1024
_OWN = ("dac_key", "_time", "dac_lines", "dac_categories")     # not stored as ordinary cells


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cell(value):
    if value is None or type(value) is str:
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return "\n".join(str(v) for v in value)
    return str(value)


class RowStore:
    def __init__(self, batch: int = BATCH):
        self._dir = tempfile.TemporaryDirectory(prefix="dac-rows-")
        self.con = sqlite3.connect(os.path.join(self._dir.name, "rows.db"))
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{CACHE_KIB}", "temp_store = FILE"):
            self.con.execute(f"PRAGMA {pragma}")
        self.con.execute("CREATE TABLE logs (dac_key TEXT, dac_time REAL, dac_lines TEXT, dac_scope TEXT)")
        # SQLite column names ignore case; auditd's enriched records repeat fields in upper case
        # (`syscall` and `SYSCALL`): the first spelling seen owns the name, the others get one of their own
        self.columns: dict[str, str] = {}          # field name -> column name
        self._folded: set[str] = {c.casefold() for c in ("dac_key", "dac_time", "dac_lines", "dac_scope")}
        self.batch_size = batch
        self._pending: list[dict] = []
        self._views: dict[str, str] = {}
        self.count = 0
        self.peak_pending = 0

    # writing -----------------------------------------------------------------------------------
    def add(self, row: dict) -> None:
        self._pending.append(row)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def extend(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.add(row)

    def flush(self) -> None:
        rows, self._pending = self._pending, []
        if not rows:
            return
        self.peak_pending = max(self.peak_pending, len(rows))
        fields: dict[str, None] = {}
        for row in rows:
            fields.update(dict.fromkeys(row))
        names = [f for f in fields if f not in _OWN]
        self.add_columns(names)
        columns = ["dac_key", "dac_time", "dac_lines", "dac_scope"] + [self.columns[n] for n in names]
        sql = f"INSERT INTO logs ({', '.join(map(quoted, columns))}) VALUES ({', '.join('?' * len(columns))})"
        self.con.executemany(sql, (
            [row.get("dac_key"), row.get("_time"), ",".join(map(str, row.get("dac_lines") or ())),
             "|" + "|".join(row.get("dac_categories") or ()) + "|"]
            + [v if (v := row.get(n)) is None or type(v) is str else _cell(v) for n in names]
            for row in rows))
        self.count += len(rows)

    def add_columns(self, names: Iterable[str]) -> None:
        for name in names:
            if name in self.columns:
                continue
            column = name
            while column.casefold() in self._folded:
                column += "#"
            self._folded.add(column.casefold())
            self.columns[name] = column
            self.con.execute(f"ALTER TABLE logs ADD COLUMN {quoted(column)} TEXT COLLATE NOCASE")

    # reading -----------------------------------------------------------------------------------
    def view(self, where: str) -> str:
        """A view of the rows `where` holds for (a rule's log-source scope), named for SQL."""
        name = self._views.get(where)
        if name is None:
            name = self._views[where] = f"scope_{len(self._views)}"
            self.con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM logs WHERE {where}")
        return name

    def any(self, where: str) -> bool:
        return self.con.execute(f"SELECT 1 FROM logs WHERE {where} LIMIT 1").fetchone() is not None

    def rows(self, keys: Iterable[str], where: str = "1", fields: Iterable[str] | None = None) -> list[dict]:
        """The rows (in scope) whose dac_key is one of keys, as the reader gave them, except
        that every cell is text; with `fields`, only those fields (and the row's own: key, time,
        lines, categories), so that a million hits do not carry every column."""
        keys = list(keys)
        if not keys:
            return []
        self.con.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (key TEXT PRIMARY KEY)")
        self.con.execute("DELETE FROM wanted")
        self.con.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((k,) for k in keys))
        selected = "*" if fields is None else ", ".join(
            ["dac_key", "dac_time", "dac_lines", "dac_scope"] + [quoted(self.columns[f]) for f in fields if f in self.columns])
        cursor = self.con.execute(f"SELECT {selected} FROM logs WHERE dac_key IN (SELECT key FROM wanted) AND ({where}) ORDER BY rowid")
        by_column = {c: n for n, c in self.columns.items()}
        names = [d[0] for d in cursor.description]
        found = []
        for values in cursor:
            row = {}
            for column, value in zip(names, values):
                if value is None:
                    continue
                if column == "dac_time":
                    row["_time"] = value
                elif column == "dac_lines":
                    row["dac_lines"] = [int(n) for n in value.split(",") if n]
                elif column == "dac_scope":
                    row["dac_categories"] = set(value.strip("|").split("|")) - {""}
                else:
                    row[by_column.get(column, column)] = value
            found.append(row)
        return found

    def close(self) -> None:
        self.con.close()
        self._dir.cleanup()
