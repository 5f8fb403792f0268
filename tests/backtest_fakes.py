"""Local stand-ins for the search APIs `dac backtest` uses, on 127.0.0.1 over HTTPS (the
deploy fakes' server, TLS and failure injection: siem_fakes._Server). No Splunk, Log Analytics
or Defender runs here; these follow the vendors' documented contracts as far as dac uses them:

Splunk (REST API reference, search/jobs): POST /services/search/jobs with `search` (which must
start with a command: `search …` or `| …`), `earliest_time`/`latest_time` (epoch seconds) and
output_mode=json -> 201 {"sid"}; GET /services/search/jobs/<sid> -> {"entry": [{"content":
{dispatchState, isDone, isFailed, scanCount, eventCount, resultCount, runDuration, messages}}]},
QUEUED/RUNNING on the first read and DONE after; GET …/<sid>/results with count/offset ->
{"init_offset", "results": […], "fields", "messages"}, at most `max_page` rows a page; DELETE
…/<sid>; POST …/<sid>/control action=cancel. Bearer auth or 401.

Log Analytics (Query - Execute With Resource Id): POST /v1/<workspace resource id>/query with
{"query", "timespan": "<start>/<end>"} -> {"tables": [{"name": "PrimaryResult", "columns":
[{"name", "type"}], "rows": [[…]]}]}, plus {"statistics": {"query": {executionTime,
resourceUsage.cpu.totalCpu, inputDatasetStatistics, datasetStatistics}}} when the request says
`Prefer: include-statistics=true`; a partial error is a 200 with an `error` object beside the
tables. Errors: {"error": {"code", "message"}}.

Advanced Hunting (Defender XDR, api/advancedhunting/run): POST {"Query"} -> {"Schema": [{"Name",
"Type"}], "Results": [{…}], "Stats": {"ExecutionTime", "resource_usage": {"cpu": {"total cpu"}},
"input_dataset_statistics", "dataset_statistics"}}; a quota reached is 429 with Retry-After
(`fail("POST", "run", (429, "7"))`).

Which rows a query returns: each event is stored with a `needle`, and a query gets the events
whose needle occurs in its text and whose time is inside the asked range. That is all a
stand-in can do without a search engine, and enough to see hits, days, entities and paging.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs

from siem_fakes import _Server


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class _Events:
    def __init__(self):
        self.events: list[tuple[str, datetime, dict]] = []

    def add(self, needle: str, when: datetime, **fields) -> None:
        self.events.append((needle, when.astimezone(timezone.utc), fields))

    def matching(self, query: str, start: datetime, end: datetime) -> list[tuple[datetime, dict]]:
        return [(t, f) for n, t, f in self.events if n in query and start <= t < end]

    def in_range(self, start: datetime, end: datetime) -> int:
        return sum(1 for _, t, _ in self.events if start <= t < end)


def _authorized(server, headers) -> bool:
    return headers.get("Authorization") == f"Bearer {server.token}"


class FakeSplunkSearch(_Server, _Events):
    def __init__(self, tls, token: str, max_page: int = 2):
        _Server.__init__(self, tls, token)
        _Events.__init__(self)
        self.max_page = max_page
        self.jobs: dict[str, dict] = {}
        self.searches: list[dict] = []        # the form of every job created
        self.fail_jobs: list[str] = []        # the next jobs end in this dispatchState (FAILED…)
        self.never_done = False               # jobs stay RUNNING (a job over its time limit)
        self.short_results = 0                # the next result pages leave this many rows out

    def handle(self, method, path, query, body, headers, broken=None):
        if not _authorized(self, headers):
            return 401, {}, {"messages": [{"type": "WARN", "text": "call not properly authenticated"}]}
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if (form.pop("output_mode", None) or (query.get("output_mode") or [None])[0]) != "json":
            return 400, {}, {"messages": [{"type": "ERROR", "text": "this stand-in only speaks output_mode=json"}]}
        parts = path.rstrip("/").split("/")
        if parts[:4] != ["", "services", "search", "jobs"]:
            return 404, {}, {"messages": [{"type": "ERROR", "text": f"no handler for {path}"}]}
        sid = parts[4] if len(parts) > 4 else None
        injected = self._injected(method, sid or "jobs")
        if injected:
            status, extra = injected
            return status, extra, {"messages": [{"type": "ERROR", "text": f"injected {status}"}]}
        if method == "POST" and sid is None:
            return self._create(form)
        job = self.jobs.get(sid)
        if job is None:
            return 404, {}, {"messages": [{"type": "ERROR", "text": f"Unknown sid {sid}"}]}
        rest = parts[5] if len(parts) > 5 else None
        if method == "GET" and rest is None:
            job["reads"] += 1
            return 200, {}, {"entry": [{"name": job["search"], "content": self._content(job)}]}
        if method == "GET" and rest == "results":
            count, offset = int((query.get("count") or ["100"])[0]), int((query.get("offset") or ["0"])[0])
            size = min(count or len(job["rows"]), self.max_page)
            page = job["rows"][offset: offset + size]
            if self.short_results and page:
                self.short_results -= 1
                page = []
            return 200, {}, {"preview": False, "init_offset": offset, "messages": [],
                             "fields": [{"name": n} for n in sorted({k for r in page for k in r})], "results": page}
        if method == "POST" and rest == "control":
            job["state"] = "USER_CANCEL" if form.get("action") == "cancel" else job["state"]
            return 200, {}, {"messages": [{"type": "INFO", "text": "Search job cancelled."}]}
        if method == "DELETE" and rest is None:
            del self.jobs[sid]
            return 200, {}, {"messages": [{"type": "INFO", "text": "Search job cancelled."}]}
        return 405, {}, {"messages": []}

    def _create(self, form):
        search = form.get("search", "")
        if not (search.startswith("search ") or search.startswith("|")):
            return 400, {}, {"messages": [{"type": "FATAL", "text": "Unknown search command"}]}
        try:
            start = datetime.fromtimestamp(int(form["earliest_time"]), timezone.utc)
            end = datetime.fromtimestamp(int(form["latest_time"]), timezone.utc)
        except (KeyError, ValueError):
            return 400, {}, {"messages": [{"type": "ERROR", "text": "earliest_time/latest_time as epoch seconds"}]}
        self.searches.append(form)
        rows = [{"_time": t.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"), **f} for t, f in self.matching(search, start, end)]
        sid = f"1733{len(self.searches):06d}.{uuid.uuid4().hex[:6]}"
        self.jobs[sid] = {"search": search, "rows": rows, "reads": 0, "scanned": self.in_range(start, end) * 40,
                          "state": self.fail_jobs.pop(0) if self.fail_jobs else None}
        return 201, {}, {"sid": sid}

    def _content(self, job) -> dict:
        failed = job["state"] not in (None, "USER_CANCEL") and job["state"] != "DONE"
        running = job["reads"] < 2 or self.never_done
        state = job["state"] or ("RUNNING" if running else "DONE")
        content = {"sid": "", "dispatchState": state, "isDone": state != "RUNNING" and not (state == "USER_CANCEL"),
                   "isFailed": failed, "scanCount": job["scanned"], "eventCount": len(job["rows"]) * 3,
                   "resultCount": len(job["rows"]) if state == "DONE" else 0, "runDuration": 0.25, "messages": []}
        if failed:
            content["messages"] = [{"type": "FATAL", "text": "Error in 'rex' command: regex too big"}]
        return content


class FakeLogAnalytics(_Server, _Events):
    def __init__(self, tls, token: str):
        _Server.__init__(self, tls, token)
        _Events.__init__(self)
        self.bodies: list[dict] = []
        self.partial_errors = 0          # the next answers carry rows and a partial `error`

    def handle(self, method, path, query, body, headers, broken=None):
        if not _authorized(self, headers):
            return 401, {}, {"error": {"code": "AuthorizationRequiredError", "message": "Valid authentication was not provided"}}
        if method != "POST" or not re.fullmatch(r"/v1/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                                                r"Microsoft\.OperationalInsights/workspaces/[^/]+/query", path):
            return 404, {}, {"error": {"code": "PathNotFoundError", "message": f"The requested path does not exist: {path}"}}
        injected = self._injected(method, "query")
        if injected:
            status, extra = injected
            return status, extra, {"error": {"code": "ServiceError", "message": f"injected {status}"}}
        payload = json.loads(body or "{}")
        self.bodies.append({"body": payload, "prefer": headers.get("Prefer")})
        try:
            start, end = (_parse(p) for p in payload["timespan"].split("/"))
        except (KeyError, ValueError):
            return 400, {}, {"error": {"code": "BadArgumentError", "message": "timespan: an ISO 8601 interval"}}
        found = self.matching(payload.get("query", ""), start, end)
        names = ["TimeGenerated"] + sorted({k for _, f in found for k in f})
        rows = [[t.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")] + [f.get(n) for n in names[1:]] for t, f in found]
        answer = {"tables": [{"name": "PrimaryResult", "columns": [{"name": n, "type": "string"} for n in names],
                              "rows": rows}]}
        if "include-statistics=true" in (headers.get("Prefer") or ""):
            scanned = self.in_range(start, end) * 25
            answer["statistics"] = {"query": {
                "executionTime": 0.5, "resourceUsage": {"cache": {}, "cpu": {"user": "00:00:01.2500000", "kernel": "00:00:00",
                                                                           "totalCpu": "00:00:01.2500000"},
                                                        "memory": {"peakPerNode": 1048576}},
                "inputDatasetStatistics": {"extents": {"total": 12, "scanned": 3}, "rows": {"total": scanned * 2, "scanned": scanned}},
                "datasetStatistics": [{"tableRowCount": len(rows), "tableSize": 64 * len(rows)}]}}
        if self.partial_errors:
            self.partial_errors -= 1
            answer["error"] = {"code": "PartialError", "message": "There were some errors when processing your query.",
                               "details": [{"code": "EngineError", "message": "Query exceeded the memory limit on one node",
                                            "innererror": {"code": "E_RUNAWAY_QUERY"}}]}
        return 200, {}, answer


class FakeAdvancedHunting(_Server, _Events):
    WINDOW = re.compile(r"between \(datetime\((\S+?)\) \.\. datetime\((\S+?)\)\)")

    def __init__(self, tls, token: str):
        _Server.__init__(self, tls, token)
        _Events.__init__(self)
        self.queries: list[str] = []

    def handle(self, method, path, query, body, headers, broken=None):
        if not _authorized(self, headers):
            return 401, {}, {"error": {"code": "Unauthorized", "message": "Authorization token is missing or invalid"}}
        if method != "POST" or path != "/api/advancedhunting/run":
            return 404, {}, {"error": {"code": "ResourceNotFound", "message": path}}
        injected = self._injected("POST", "run")
        if injected:
            status, extra = injected
            message = "API calls quota exceeded! Maximal calls per minute: 45." if status == 429 else f"injected {status}"
            return status, extra, {"error": {"code": "TooManyRequests" if status == 429 else "ServerError", "message": message}}
        text = json.loads(body or "{}").get("Query", "")
        self.queries.append(text)
        window = self.WINDOW.search(text)
        if not window:           # this stand-in holds data for a window only (the real API: 30 days)
            return 400, {}, {"error": {"code": "BadRequest", "message": "no time filter"}}
        start, end = (_parse(v) for v in window.groups())
        found = self.matching(text, start, end)
        names = ["Timestamp"] + sorted({k for _, f in found for k in f})
        results = [{"Timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), **f} for t, f in found]
        return 200, {}, {"Schema": [{"Name": n, "Type": "String"} for n in names], "Results": results, "Stats": {
            "ExecutionTime": 0.75, "resource_usage": {"cache": {}, "cpu": {"user": "00:00:00.5000000", "kernel": "00:00:00",
                                                                      "total cpu": "00:00:00.5000000"},
                                                  "memory": {"peak_per_node": 2097152}},
            "input_dataset_statistics": {"extents": {"total": 8, "scanned": 2},
                                         "rows": {"total": 1000, "scanned": self.in_range(start, end) * 10}},
            "dataset_statistics": [{"table_row_count": len(results), "table_size": 100 * len(results)}]}}
