"""Backtest on Microsoft Sentinel: each generated KQL query, unchanged, per slice, through

- the Log Analytics query API (default), by the workspace's Azure resource id, so the
  subscription / resource group / workspace of sentinel/deploy.yml are all it needs:
    POST {logs}/v1/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/
         workspaces/{ws}/query   {"query", "timespan": "<start>/<end>"}   Prefer: include-statistics=true
    -> 200 {"tables": [{"name", "columns": [{"name", "type"}], "rows": [[…]]}], "statistics": {"query": …}}
    A partial result is a 200 that also carries an `error` object: it is an error here, never hits.
  Token audience https://api.loganalytics.io/.default.
- the Defender XDR Advanced Hunting API, for queries on Defender tables (Device*Events) when
  `advanced_hunting: true` is set:
    POST {hunting}/api/advancedhunting/run  {"Query"}  -> 200 {"Schema", "Results": [{…}], "Stats"}
    429 with Retry-After when a quota is reached (retried, the wait honoured).
  Token audience https://api.security.microsoft.com/.default. That API has no time parameter:
  each Defender table the query reads is narrowed to the slice by a `let` that shadows the table
  (`let DeviceFileEvents = DeviceFileEvents | where Timestamp between (…);`) before the unchanged
  query. It only holds 30 days.
"""
from __future__ import annotations

import re
from typing import Callable
from urllib.parse import urlsplit

from .http import BacktestError, JsonHttp
from .window import Slice, iso
from dac.core.retry import RetryPolicy
from dac.deploy.transport import TransportOptions, check_cleartext, verify_tls

LOGS_ENDPOINT = "https://api.loganalytics.io"
LOGS_HOSTS = ("api.loganalytics.io", "api.loganalytics.us", "api.loganalytics.azure.cn")
HUNTING_ENDPOINT = "https://api.security.microsoft.com"
HUNTING_HOSTS = ("api.security.microsoft.com", "us.api.security.microsoft.com", "eu.api.security.microsoft.com",
                 "uk.api.security.microsoft.com", "au.api.security.microsoft.com", "swa.api.security.microsoft.com",
                 "ina.api.security.microsoft.com", "aea.api.security.microsoft.com", "api-gcc.security.microsoft.us",
                 "api-gov.security.microsoft.us")
LOGS_SCOPE = "https://api.loganalytics.io/.default"
HUNTING_SCOPE = "https://api.security.microsoft.com/.default"
DEFENDER_TABLE = re.compile(r"\b(Device[A-Za-z]*Events|DeviceInfo|DeviceNetworkInfo)\b")
HUNTING_DAYS = 30


def check_endpoint(value: str, hosts: tuple[str, ...], allow_custom: bool, key: str) -> str | None:
    """What is wrong with a query endpoint setting, or None (the scheme is checked by check_cleartext)."""
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"`{key}` must be a URL like https://{hosts[0]}"
    if parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"):
        return f"`{key}` must be scheme and host only (no user, path or query)"
    if not allow_custom and (parts.hostname not in hosts or parts.port not in (None, 443)):
        return f"`{key}`: {parts.hostname} is not a documented host ({', '.join(hosts)}); " \
               "set allow_custom_arm_endpoint: true to use another one"
    return None


def uses_defender_tables(query: str) -> bool:
    return bool(DEFENDER_TABLE.search(query))


def _verify(config: dict, transport: TransportOptions, endpoint: str, warn):
    verify = verify_tls(bool(config.get("verify_tls", True)), transport, endpoint, warn) \
        if endpoint.startswith("https:") else False
    return (config.get("ca_file") or True) if verify else False


class LogAnalytics:
    siem = "sentinel"

    def __init__(self, config: dict, workspace: dict, token: str, transport: TransportOptions = TransportOptions(),
                 policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] | None = None,
                 warn: Callable[[str], None] = print):
        self.endpoint = config.get("log_analytics_endpoint", LOGS_ENDPOINT).rstrip("/")
        check_cleartext(self.endpoint, transport, "sentinel (Log Analytics)", warn)
        self.path = (f"/v1/subscriptions/{workspace['subscription_id']}/resourceGroups/{workspace['resource_group']}"
                     f"/providers/Microsoft.OperationalInsights/workspaces/{workspace['workspace']}/query")
        self.http = JsonHttp(self.endpoint, {"Authorization": f"Bearer {token}"},
                             _verify(config, transport, self.endpoint, warn), config.get("timeout", 30), policy, sleep)

    def run(self, query: str, part: Slice, what: str) -> tuple[list[dict], dict]:
        data = self.http.call("POST", self.path, f"{what}: Log Analytics query",
                              json_body={"query": query, "timespan": part.iso()},
                              headers={"Prefer": "include-statistics=true"})
        error = data.get("error")
        if error is not None:
            # a partial result: some shards or a limit failed; the rows are not all there is
            raise BacktestError(f"{what}: Log Analytics at {self.endpoint} answered with a partial error: "
                                f"{_error_text(error)}")
        tables = data.get("tables")
        if not isinstance(tables, list) or not tables or not isinstance(tables[0], dict):
            raise BacktestError(f"{what}: Log Analytics at {self.endpoint}: the answer has no `tables`")
        return _table_rows(tables[0], what, self.endpoint), query_cost(data.get("statistics"), "query")


class AdvancedHunting:
    siem = "sentinel"

    def __init__(self, config: dict, token: str, transport: TransportOptions = TransportOptions(),
                 policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] | None = None,
                 warn: Callable[[str], None] = print):
        self.endpoint = config.get("advanced_hunting_endpoint", HUNTING_ENDPOINT).rstrip("/")
        check_cleartext(self.endpoint, transport, "Defender Advanced Hunting", warn)
        self.http = JsonHttp(self.endpoint, {"Authorization": f"Bearer {token}"},
                             _verify(config, transport, self.endpoint, warn), config.get("timeout", 30), policy, sleep)

    def run(self, query: str, part: Slice, what: str) -> tuple[list[dict], dict]:
        data = self.http.call("POST", "/api/advancedhunting/run", f"{what}: Advanced Hunting query",
                              json_body={"Query": windowed(query, part)})
        results = data.get("Results")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results) or "Schema" not in data:
            raise BacktestError(f"{what}: Advanced Hunting at {self.endpoint}: the answer has no `Schema` and "
                                "`Results` list")
        return results, query_cost(data.get("Stats"), None)


def windowed(query: str, part: Slice) -> str:
    """The query, unchanged, after one `let` per Defender table it reads, narrowing it to the slice."""
    tables = sorted(set(DEFENDER_TABLE.findall(query)))
    lets = "".join(f"let {t} = {t} | where Timestamp between (datetime({iso(part.start)}) .. datetime({iso(part.end)}));\n"
                   for t in tables)
    return lets + query


def _table_rows(table: dict, what: str, endpoint: str) -> list[dict]:
    columns, rows = table.get("columns"), table.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise BacktestError(f"{what}: Log Analytics at {endpoint}: a table without `columns` and `rows`")
    names = [c.get("name") if isinstance(c, dict) else None for c in columns]
    if None in names:
        raise BacktestError(f"{what}: Log Analytics at {endpoint}: a column without a name")
    out = []
    for row in rows:
        if not isinstance(row, list) or len(row) != len(names):
            raise BacktestError(f"{what}: Log Analytics at {endpoint}: a row does not match the {len(names)} columns")
        out.append(dict(zip(names, row)))
    return out


def query_cost(stats, key: str | None) -> dict:
    """CPU, rows and extents scanned, execution time, from Kusto's query statistics; Log Analytics
    nests them under statistics.query in camelCase, Advanced Hunting's Stats uses snake_case."""
    if not isinstance(stats, dict):
        return {}
    if key:
        stats = stats.get(key) if isinstance(stats.get(key), dict) else {}
    usage = _get(stats, "resourceUsage", "resource_usage") or {}
    cpu = _get(usage, "cpu") or {}
    inputs = _get(stats, "inputDatasetStatistics", "input_dataset_statistics") or {}
    tables = _get(stats, "datasetStatistics", "dataset_statistics") or []
    cost = {
        "cpu_seconds": timespan_seconds(_get(cpu, "totalCpu", "total cpu", "total_cpu")),
        "execution_seconds": _float(_get(stats, "executionTime", "ExecutionTime", "execution_time")),
        "rows_scanned": _float(_get(_get(inputs, "rows") or {}, "scanned")),
        "extents_scanned": _float(_get(_get(inputs, "extents") or {}, "scanned")),
        "result_bytes": sum(_float(_get(t, "tableSize", "table_size")) or 0 for t in tables if isinstance(t, dict)) or None,
    }
    return {k: v for k, v in cost.items() if v is not None}


def timespan_seconds(value) -> float | None:
    """A .NET TimeSpan string ("00:00:01.2500000", "1.02:03:04") in seconds."""
    if not isinstance(value, str):
        return _float(value)
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", value.strip())
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _get(data, *names):
    if not isinstance(data, dict):
        return None
    for name in names:
        if name in data:
            return data[name]
    return None


def _float(value) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _error_text(error) -> str:
    if not isinstance(error, dict):
        return str(error)
    parts = [str(error.get(k)) for k in ("code", "message") if error.get(k)]
    inner = error.get("innererror") or (error.get("details") or [None])[0]
    if isinstance(inner, dict) and inner.get("message"):
        parts.append(str(inner["message"]))
    return ": ".join(parts) or "unspecified error"
