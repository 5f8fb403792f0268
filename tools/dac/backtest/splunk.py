"""Backtest on Splunk: each generated search, unchanged, as a REST search job per slice.

REST contract (Splunk REST API reference, "search/jobs"), always with output_mode=json:
  create   POST /services/search/jobs   search=…&earliest_time=<epoch>&latest_time=<epoch>  -> 201 {"sid"}
  status   GET  /services/search/jobs/<sid>   -> {"entry": [{"content": {"dispatchState", "isDone",
                "isFailed", "scanCount", "eventCount", "resultCount", "runDuration", "messages"}}]}
  results  GET  /services/search/jobs/<sid>/results?count=<n>&offset=<k>  -> {"results": […]}
  cancel   POST /services/search/jobs/<sid>/control  action=cancel  (a job over the time budget)
  delete   DELETE /services/search/jobs/<sid>  (the job's artifacts are not left on the search head)
The search string must start with a command, so a query that does not start with `|` is sent
as `search <query>` (what Splunk's search bar does); the query itself is not changed. A job is
believed only when it is DONE, not failed, reports no ERROR/FATAL message, and its pages of
results add up to its resultCount.
"""
from __future__ import annotations

import time
from typing import Callable

from .http import BacktestError, BudgetExhausted, JsonHttp
from .window import Slice
from dac.core.retry import RetryPolicy
from dac.deploy.transport import TransportOptions, check_cleartext, verify_tls

PAGE = 1000                  # results asked for per page (Splunk's default maxresultrows is 50,000)
POLL_SECONDS = 1.0           # between job status reads
MAX_RESULTS = 100_000        # a rule with more hits than this in one slice is not a useful alert anyway
FAILED_STATES = {"FAILED", "INTERNAL_CANCEL", "USER_CANCEL", "BAD_INPUT_CANCEL", "QUIT"}
COST_KEYS = ("scanCount", "eventCount", "resultCount", "runDuration")


class SplunkSearch:
    siem = "splunk"
    cancellable = True          # run() takes seconds_left

    def __init__(self, config: dict, token: str, transport: TransportOptions = TransportOptions(),
                 policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] | None = None,
                 warn: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
                 job_seconds: float = 600):
        scheme = config.get("scheme", "https")
        self.endpoint = f"{scheme}://{config['host']}:{config.get('port', 8089)}"
        check_cleartext(self.endpoint, transport, "splunk", warn)
        verify = verify_tls(bool(config.get("verify_tls", True)), transport, self.endpoint, warn) if scheme == "https" else False
        self.http = JsonHttp(self.endpoint, {"Authorization": f"Bearer {token}"},
                             (config.get("ca_file") or True) if verify else False, config.get("timeout", 30), policy, sleep)
        self.sleep = sleep or time.sleep
        self.clock = clock
        self.job_seconds = job_seconds       # one job longer than this is cancelled

    def run(self, query: str, part: Slice, what: str, seconds_left: float | None = None) -> tuple[list[dict], dict]:
        """The rows and the job's cost for one slice, or BacktestError. A job still running when
        the run's time budget (`seconds_left`) ends is cancelled: BudgetExhausted."""
        search = query.strip()
        if not search.startswith("|"):
            search = f"search {search}"
        created = self.http.call("POST", "/services/search/jobs", f"{what}: creating the search job", data={
            "search": search, "earliest_time": str(int(part.start.timestamp())),
            "latest_time": str(int(part.end.timestamp())), "output_mode": "json"})
        sid = created.get("sid")
        if not isinstance(sid, str) or not sid or "/" in sid:
            raise BacktestError(f"{what}: Splunk at {self.endpoint} created no job (no sid in its answer)")
        try:
            content = self._wait(sid, what, seconds_left)
            rows = self._results(sid, content, what)
        finally:
            self._delete(sid)
        return rows, {k: _number(content.get(k)) for k in COST_KEYS}

    def _wait(self, sid: str, what: str, seconds_left: float | None) -> dict:
        started = self.clock()
        limit = self.job_seconds if seconds_left is None else min(self.job_seconds, seconds_left)
        while True:
            data = self.http.call("GET", f"/services/search/jobs/{sid}", f"{what}: reading job {sid}",
                                  params={"output_mode": "json"})
            entries = data.get("entry")
            if not isinstance(entries, list) or not entries or not isinstance(entries[0].get("content"), dict):
                raise BacktestError(f"{what}: job {sid} at {self.endpoint}: the answer has no entry[0].content")
            content = entries[0]["content"]
            state = str(content.get("dispatchState", ""))
            errors = [m.get("text", "") for m in content.get("messages") or [] if isinstance(m, dict)
                      and str(m.get("type", "")).upper() in ("ERROR", "FATAL")]
            if _true(content.get("isFailed")) or state in FAILED_STATES or errors:
                raise BacktestError(f"{what}: Splunk at {self.endpoint} job {sid} {state or 'failed'}"
                                    + (f": {'; '.join(errors)}" if errors else ""))
            if _true(content.get("isDone")):
                if state != "DONE":
                    raise BacktestError(f"{what}: job {sid} at {self.endpoint} says isDone in state {state!r}")
                return content
            if self.clock() - started > limit:
                self._cancel(sid)
                if limit < self.job_seconds:
                    raise BudgetExhausted(f"{what}: job {sid} was still {state} when the time budget ran out; cancelled")
                raise BacktestError(f"{what}: job {sid} at {self.endpoint} still {state} after "
                                    f"{self.job_seconds:.0f} s; cancelled")
            self.sleep(POLL_SECONDS)

    def _results(self, sid: str, content: dict, what: str) -> list[dict]:
        expected = _number(content.get("resultCount"))
        if expected is None:
            raise BacktestError(f"{what}: job {sid} at {self.endpoint} reports no resultCount")
        if expected > MAX_RESULTS:
            raise BacktestError(f"{what}: job {sid} found {int(expected):,} results in one slice (more than "
                                f"{MAX_RESULTS:,}): the rule is far too noisy to alert on as it is")
        rows: list[dict] = []
        while len(rows) < expected:
            data = self.http.call("GET", f"/services/search/jobs/{sid}/results", f"{what}: reading results of job {sid}",
                                  params={"output_mode": "json", "count": PAGE, "offset": len(rows)})
            page = data.get("results")
            if not isinstance(page, list) or not all(isinstance(r, dict) for r in page):
                raise BacktestError(f"{what}: results of job {sid} at {self.endpoint}: no `results` list")
            if not page:
                raise BacktestError(f"{what}: job {sid} announced {int(expected)} results and sent {len(rows)}")
            rows += page
        if len(rows) != expected:
            raise BacktestError(f"{what}: job {sid} announced {int(expected)} results and sent {len(rows)}")
        return rows

    def _cancel(self, sid: str) -> None:
        try:
            self.http.call("POST", f"/services/search/jobs/{sid}/control", "cancel", data={"action": "cancel",
                           "output_mode": "json"}, expect_body=False)
        except BacktestError:
            pass            # the job's own TTL ends it; the run already reports the timeout

    def _delete(self, sid: str) -> None:
        try:
            self.http.call("DELETE", f"/services/search/jobs/{sid}", "delete", params={"output_mode": "json"},
                           expect_body=False)
        except BacktestError:
            pass            # cleanup only: Splunk expires the job (ttl) anyway


def _true(value) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
