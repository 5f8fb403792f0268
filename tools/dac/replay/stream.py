"""One pass over a streamed input (dac.logs.open_log) that loads every engine as it reads, so a
file larger than memory can be hunted: rows go to a SQLite row store (Sigma engine) in batches,
Splunk events to the DuckDB SPL index through its JSON-lines file, Defender rows to the KQL tables
a batch at a time. Nothing holds the file's events except the Python SPL reference, which is kept
only while the events are few (it re-runs every search in Python and needs them all)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator

from dac.engines.kql.engine import KqlEngine
from dac.logs import LogStream
from dac.logs.scopes import EventScopes
from .row_store import BATCH, RowStore
from dac.engines.spl.checked import CheckedSpl
from dac.engines.spl.sql import SplIndex

# DuckDB's memory for the SPL index of one streamed file (the default is 1 GB): with the Python
# side (parsing, hits, the row store's page cache) a 1 GB audit.log stays under 2 GiB; above
# this, DuckDB spills sorts, aggregates and table blocks to a temporary directory
SPL_MEMORY_LIMIT = "768MB"


@dataclass
class StoredLog:
    """What Replayer.run_log needs of a streamed input (see replay._StoredRows)."""
    path: str
    format: str
    store: RowStore
    spl: CheckedSpl | None
    events: int
    splunk_events: int

    def close(self) -> None:
        self.store.close()


def load(stream: LogStream, now: datetime, kql: Callable[[], KqlEngine], reference_limit: int,
         progress: Callable[[int], None] | None = None, progress_every: int = 250_000, *,
         scopes: EventScopes) -> StoredLog:
    """Read `stream` to its end into the engines. `kql` gives the KQL engine (built only for
    Defender input); `progress(events so far)` is called every `progress_every` events; `scopes`
    tags each row with the log sources it belongs to."""
    store = RowStore()
    counts = {"rows": 0, "splunk": 0}
    reference: list[dict] | None = []
    kql_batches: dict[str, list[dict]] = {}
    engine = kql() if stream.format == "mde" else None

    def add_row(row: dict) -> None:
        scopes.tag(stream.format, row)      # the log sources the event belongs to (the store's dac_scope)
        store.add(row)
        counts["rows"] += 1
        if progress and counts["rows"] % progress_every == 0:
            progress(counts["rows"])
        if engine is not None:
            batch = kql_batches.setdefault(row.get("dac_table"), [])
            batch.append(row)
            if len(batch) >= BATCH:
                _append(engine, row.get("dac_table"), batch)

    def splunk_events() -> Iterator[dict]:
        nonlocal reference
        for row, event in stream.items:
            if row is not None:
                add_row(row)
            if event is not None:
                counts["splunk"] += 1
                if reference is not None:
                    reference.append(event)
                    if len(reference) > reference_limit:
                        reference = None         # too many for the Python reference: DuckDB only
                yield event

    if stream.format == "mde":
        for _ in splunk_events():
            pass
        spl = None
        for table, batch in kql_batches.items():
            _append(engine, table, batch)
        for table in engine.tables:
            if table not in kql_batches:          # another file's rows must not stay in it
                engine.load(table, [])
    else:
        index = SplIndex(splunk_events(), memory_limit=SPL_MEMORY_LIMIT)
        spl = CheckedSpl.over(index, reference, now)
    store.flush()
    return StoredLog(stream.path, stream.format, store, spl, counts["rows"], counts["splunk"])


def _append(engine: KqlEngine, table: str | None, batch: list[dict]) -> None:
    if table in engine.tables:
        engine.append(table, batch)
    batch.clear()
