"""The events a rule sees in the replay: those its log source covers, as tagged from
sigma/datasources/event_scopes.yml (dac.logs.scopes), and for Defender the rows of the table its
target's pipeline names in `source`. The same selection as a list filter (a log read whole) and as
an SQL condition on a dac.replay.row_store table (a streamed input)."""
from __future__ import annotations

from dac.compile.convert import Query
from dac.logs import SampleLog


def _wanted(query: Query) -> str:
    logsource = query.rule.rule.logsource
    return str(logsource.category or logsource.service)


def rows_in_scope(query: Query, log: SampleLog) -> list[dict]:
    """The rows of a log the rule's log source covers (as the target's table/base search does)."""
    wanted = _wanted(query)
    rows = [r for r in log.rows if wanted in r["dac_categories"]]
    if log.format == "mde":
        return [r for r in rows if r["dac_table"] == query.scope.state.get("source")]
    return rows


def scope_where(query: Query, fmt: str) -> str:
    """rows_in_scope as an SQL condition on a dac.replay.row_store table (dac_scope holds the tags)."""
    wanted = _wanted(query).replace("'", "''")
    where = f"instr(dac_scope, '|{wanted}|') > 0"
    if fmt == "mde":
        source = str(query.scope.state.get("source")).replace("'", "''")
        where = f"dac_table = '{source}' AND {where}"
    return where
