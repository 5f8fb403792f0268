"""The backtest part of `dac review`: when SIEM credentials are in the environment (as in the
deploy workflow: $SPLUNK_TOKEN; an Azure identity, $AZURE_CLIENT_ID), the old (base) and new
(head) query of every changed rule run on the SIEM over the same window, and the review shows the
difference: alerts per day, entities that are new or gone, and what the searches cost.
Without credentials the review says the backtest was skipped and why.

The connection comes from the BASE's splunk/deploy.yml or sentinel/deploy.yml, never the pull
request's: a change to the config must not be able to send the token to another host.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from dac.backtest.run import Budget, BacktestQuery, run_backtest, select_queries
from dac.backtest.http import BacktestError
from dac.backtest.result import KINDS, RuleRun
from dac.backtest.window import parse_duration, window
from dac.core.redaction import Redactor
from dac.core.retry import RetryPolicy
from dac.deploy.transport import TransportOptions

SIEMS = ("splunk", "sentinel")
ENTITY_LIMIT = 10          # entities listed per rule and direction in the comment


@dataclass
class ReviewBacktest:
    since: str = "7d"
    slice: str = "1d"
    time_budget: str = "10m"                 # per SIEM and side
    environ: dict = field(default_factory=lambda: dict(os.environ))
    credential: object | None = None         # tests: a stand-in for DefaultAzureCredential
    sleep: Callable[[float], None] | None = None
    now: datetime | None = None
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr)


def why_not(siem: str, base_root: Path, environ: dict) -> str | None:
    """Why this SIEM cannot be backtested here, or None."""
    config = base_root / siem / "deploy.yml"
    if siem == "splunk" and not environ.get("SPLUNK_TOKEN"):
        return "SPLUNK_TOKEN is not set (no Splunk credentials in this job)"
    if siem == "sentinel" and not environ.get("AZURE_CLIENT_ID"):
        return "no Azure identity in this job (AZURE_CLIENT_ID is not set)"
    if not config.is_file():
        return f"the base has no {siem}/deploy.yml"
    return None


def review_backtest(base_root: Path, base_files: dict, head_files: dict, changed_ids: set[str],
                    settings: ReviewBacktest) -> dict:
    span = window(parse_duration(settings.since), settings.now)
    out = {"since": settings.since, "siems": []}
    for siem in SIEMS:
        reason = why_not(siem, base_root, settings.environ)
        if reason is None and not changed_ids:
            reason = "no rule changed"
        if reason:
            out["siems"].append({"siem": siem, "status": "skipped", "reason": reason})
            continue
        out["siems"].append(_one_siem(siem, base_root, base_files, head_files, changed_ids, span, settings))
    return out


def _queries(files: dict, siem: str, changed: set[str]) -> dict[tuple[str, str], BacktestQuery]:
    try:
        queries = select_queries(files, siem)
    except BacktestError:
        return {}            # no manifest or no query for this SIEM on that side
    return {(q.rule_id, q.target): q for q in queries if q.rule_id in changed}


def _one_siem(siem, base_root, base_files, head_files, changed, span, settings: ReviewBacktest) -> dict:
    from dac.backtest.connect import connect_sentinel, connect_splunk
    from dac.deploy.plan import DeployError
    from dac.core.problems import DacError
    redact = Redactor(*(settings.environ.get(v) for v in ("SPLUNK_TOKEN", "AZURE_CLIENT_SECRET", "AZURE_PASSWORD")))
    old, new = _queries(base_files, siem, changed), _queries(head_files, siem, changed)
    if not old and not new:
        return {"siem": siem, "status": "skipped", "reason": f"no changed rule has a {siem} query"}
    # never --insecure or cleartext from a review; with DAC_SCHEDULED=1 (CI) not even from the config
    transport = TransportOptions(scheduled=settings.environ.get("DAC_SCHEDULED", "") not in ("", "0"))
    try:
        with redact.logging():
            if siem == "splunk":
                connection = connect_splunk(base_root, "splunk/deploy.yml", {}, transport, redact, settings.progress,
                                            settings.sleep, RetryPolicy())
            else:
                connection = connect_sentinel(base_root, "sentinel/deploy.yml", transport, redact, settings.progress,
                                              span.days, None, settings.sleep, RetryPolicy(), settings.credential)
            size, budget = parse_duration(settings.slice, "slice"), Budget(parse_duration(settings.time_budget).total_seconds())
            # a rule whose query did not change is searched once and counts for both sides
            same = {k for k in old.keys() & new.keys() if old[k].text == new[k].text}
            before = _run(siem, connection, [q for k, q in sorted(old.items())], span, size, budget, redact, settings)
            after = _run(siem, connection, [q for k, q in sorted(new.items()) if k not in same], span, size, budget,
                         redact, settings)
    except (BacktestError, DeployError) as e:
        return {"siem": siem, "status": "ERROR", "reason": redact(str(e))}
    except DacError as e:
        return {"siem": siem, "status": "ERROR", "reason": redact("; ".join(str(p) for p in e.problems))}
    runs_before = {(r.rule_id, r.target): r for r in before.runs}
    runs_after = {**{k: runs_before[k] for k in same}, **{(r.rule_id, r.target): r for r in after.runs}}
    rows = []
    for key in sorted(set(old) | set(new), key=lambda k: ((old.get(k) or new.get(k)).rule, k[1])):
        query = new.get(key) or old.get(key)
        b, a = runs_before.get(key), runs_after.get(key)
        rows.append({"rule": query.rule, "rule_id": key[0], "target": key[1], "query_changed": key not in same,
                     "before": _side(b), "after": _side(a), **_entity_diff(b, a)})
    statuses = {before.status, after.status}
    status = "ERROR" if "ERROR" in statuses else "PARTIAL" if "PARTIAL" in statuses else "COMPLETE"
    notes = [n for n in (before.fatal, after.fatal, before.partial, after.partial) if n]
    return {"siem": siem, "status": status, "endpoint": connection.endpoint, "notes": notes, "rules": rows,
            "window": {"start": _iso(span.start), "end": _iso(span.end)}}


def _run(siem, connection, queries, span, size, budget, redact, settings):
    return run_backtest(siem, connection.endpoint, queries, connection.route, span, size, budget, redact,
                        settings.progress, check=connection.check)


def _side(run: RuleRun | None) -> dict | None:
    if run is None:
        return None
    return {"hits": run.hits, "hits_per_day": run.per_day_average, "days_covered": round(run.covered_days, 3),
            "cost": {k: round(v, 3) for k, v in sorted(run.cost.items())}, "error": run.error}


def _entity_diff(before: RuleRun | None, after: RuleRun | None) -> dict:
    def entities(run):
        return {(k, v) for k in KINDS for v in run.entities[k]} if run and run.slices else set()
    if (before and before.error) or (after and after.error):
        return {"new_entities": [], "vanished_entities": []}
    old, new = entities(before), entities(after)
    return {"new_entities": [f"{k} {v}" for k, v in sorted(new - old)],
            "vanished_entities": [f"{k} {v}" for k, v in sorted(old - new)]}


def render_markdown(section: dict | None) -> list[str]:
    from dac.backtest.render import cost_text
    if section is None:
        return []
    lines = [f"\n### Backtest on the SIEM (old and new query of each changed rule, last {section['since']})"]
    for s in section["siems"]:
        if s["status"] == "skipped":
            lines.append(f"- **{s['siem']}**: skipped: {_cell(s['reason'])}")
            continue
        if "rules" not in s:
            lines.append(f"- **{s['siem']}**: ERROR: {_cell(s['reason'])}")
            continue
        w = s["window"]
        lines.append(f"\n**{s['siem']}** at `{s['endpoint']}`, {w['start']} .. {w['end']}: {s['status']}")
        lines += [f"- {_cell(n)}" for n in s["notes"]]
        lines += ["", "| rule | target | alerts/day before → after | hits | new entities | vanished entities | cost before → after |",
                  "|---|---|---|---|---|---|---|"]
        for r in s["rules"]:
            b, a = r["before"], r["after"]

            def per_day(side):
                if side is None:
                    return "—"
                return f"ERROR: {_cell(side['error'])}" if side["error"] else str(side["hits_per_day"])

            hits = f"{b['hits'] if b else '—'} → {a['hits'] if a else '—'}"
            cost = f"{_cell(cost_text(b['cost'])) if b else '—'} → " + \
                   ("(same query)" if not r["query_changed"] else _cell(cost_text(a["cost"])) if a else "—")
            lines.append(f"| {_cell(r['rule'])} | {r['target']} | {per_day(b)} → {per_day(a)} | {hits} | "
                         f"{_entities(r['new_entities'])} | {_entities(r['vanished_entities'])} | {cost} |")
    return lines


def _entities(values: list[str]) -> str:
    shown = ", ".join(f"`{_cell(v)}`" for v in values[:ENTITY_LIMIT])
    more = f" and {len(values) - ENTITY_LIMIT} more" if len(values) > ENTITY_LIMIT else ""
    return (shown + more) or "—"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
