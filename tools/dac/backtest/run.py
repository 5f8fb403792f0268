"""`dac backtest splunk|sentinel`: the checked-in generated queries (conversions/, what `dac
deploy` ships), unchanged, on the SIEM of splunk/deploy.yml or sentinel/deploy.yml over a past
window, per rule: hits per day, distinct hosts, users and processes, the top entities, and what
the searches cost.

The window is cut into slices, run newest first and slice by slice across all rules, so a run
stopped by its time or cost budget still covers every rule over the most recent days; the report
then says PARTIAL and why. An error on one rule stops that rule only (reported, exit 1);
authentication or an unreachable SIEM stops the run. Nothing is reported from an answer that
could not be verified.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from .http import BacktestError, BudgetExhausted
from .result import Report, RuleRun
from .window import Window

MANIFEST = "conversions/manifest.json"
# what the cost budget counts: Splunk's events scanned, Kusto's CPU time
COST_UNIT = {"splunk": ("scanCount", "events scanned"), "sentinel": ("cpu_seconds", "CPU seconds")}
DEFAULT_COST = {"splunk": 500_000_000, "sentinel": 3600}


@dataclass(frozen=True)
class BacktestQuery:
    rule: str
    rule_id: str
    target: str
    path: str
    text: str


@dataclass(frozen=True)
class Budget:
    seconds: float = 1800          # wall-clock time for the whole run
    cost: float | None = None      # in COST_UNIT[siem]; None: the default for that SIEM


def select_queries(files: dict[str, str], siem: str, wanted: list[str] | None = None) -> list[BacktestQuery]:
    """The rules' queries for this SIEM, from the manifest and the generated files it lists.
    `wanted`: rule names, ids or id prefixes; a selector that matches nothing is an error."""
    try:
        manifest = json.loads(files[MANIFEST])
        artifacts = manifest["artifacts"]
    except (KeyError, ValueError, TypeError):
        raise BacktestError(f"{MANIFEST} is missing or unreadable: run `dac convert`") from None
    def picks(w: str, name: str, rule_id: str) -> bool:
        return w in (name, rule_id) or (len(w) >= 8 and rule_id.startswith(w))     # an id prefix, as git takes them
    chosen = []
    for a in sorted(artifacts, key=lambda a: (a["rule_name"], a["target"])):
        if a.get("siem") != siem or a["path"] not in files:
            continue
        if wanted and not any(picks(w, a["rule_name"], a["rule_id"]) for w in wanted):
            continue
        chosen.append(BacktestQuery(a["rule_name"], a["rule_id"], a["target"], a["path"], files[a["path"]]))
    unmatched = [w for w in wanted or [] if not any(picks(w, q.rule, q.rule_id) for q in chosen)]
    if unmatched:
        raise BacktestError(f"no {siem} query for --rule {', '.join(unmatched)} (a rule name or id from {MANIFEST})")
    if not chosen:
        raise BacktestError(f"no {siem} query to backtest")
    return chosen


def run_backtest(siem: str, endpoint: str, queries: list[BacktestQuery], route: Callable[[BacktestQuery], object],
                 window: Window, slice_size: timedelta, budget: Budget, redact: Callable[[str], str],
                 progress: Callable[[str], None], clock: Callable[[], float] | None = None,
                 check: Callable[[BacktestQuery], str | None] = lambda q: None) -> Report:
    runs = [RuleRun(q.rule, q.rule_id, q.target, q.path) for q in queries]
    for query, run in zip(queries, runs):
        run.error = check(query)
    report = Report(siem, endpoint, window, slice_size.total_seconds() / 3600, runs)
    clock = clock or time.monotonic
    unit, unit_name = COST_UNIT[siem]
    limit = budget.cost if budget.cost is not None else DEFAULT_COST[siem]
    slices = window.slices(slice_size)
    total, done, spent, started = len(slices) * sum(1 for r in runs if not r.error), 0, 0.0, clock()
    for part in slices:
        for query, run in zip(queries, runs):
            if run.error:
                continue
            elapsed = clock() - started
            if elapsed >= budget.seconds:
                report.partial = (f"time budget of {_duration(budget.seconds)} used up after {done} of {total} "
                                  f"searches; the figures cover only the slices that ran")
                return report
            if spent >= limit:
                report.partial = (f"cost budget of {limit:,.0f} {unit_name} used up ({spent:,.0f}) after {done} of "
                                  f"{total} searches; the figures cover only the slices that ran")
                return report
            what = f"rule {query.rule} ({query.target}, {query.path})"
            searcher = route(query)
            try:
                # a Splunk job can be cancelled when the budget ends; a Log Analytics or Advanced
                # Hunting query is one request, bounded by the HTTP timeout
                if getattr(searcher, "cancellable", False):
                    rows, cost = searcher.run(query.text, part, what, seconds_left=budget.seconds - elapsed)
                else:
                    rows, cost = searcher.run(query.text, part, what)
            except BudgetExhausted as e:
                report.partial = (f"time budget of {_duration(budget.seconds)} used up after {done} of {total} "
                                  f"searches ({redact(e)}); the figures cover only the slices that ran")
                return report
            except BacktestError as e:
                if e.fatal:
                    report.fatal = redact(str(e))
                    return report
                run.error = redact(str(e))
                progress(redact(f"  error: {e}"))
                continue
            run.add(part, rows, cost)
            spent += cost.get(unit) or 0
            done += 1
            progress(f"[{done}/{total}] {query.rule} [{query.target}] {_when(part.start)}..{_when(part.end)}: "
                     f"{len(rows)} hit(s)")
    return report


def _when(moment: datetime) -> str:
    return moment.strftime("%m-%d %H:%M")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
