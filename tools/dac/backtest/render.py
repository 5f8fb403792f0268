"""A backtest report as text (the terminal), Markdown (a PR or a ticket) or JSON (machines)."""
from __future__ import annotations

import json

from .result import Report, RuleRun

COST_LABELS = {
    "searches": "searches",
    # Splunk search job properties
    "scanCount": "events scanned", "eventCount": "events matched", "resultCount": "results",
    "runDuration": "run seconds",
    # Log Analytics / Advanced Hunting query statistics
    "cpu_seconds": "CPU seconds", "rows_scanned": "rows scanned", "extents_scanned": "extents scanned",
    "execution_seconds": "execution seconds", "result_bytes": "result bytes",
}


def number(value) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def cost_text(cost: dict) -> str:
    return ", ".join(f"{COST_LABELS.get(k, k)} {number(v)}" for k, v in sorted(cost.items(), key=_cost_order)) or "none reported"


def _cost_order(item) -> tuple[int, str]:
    order = list(COST_LABELS)
    return (order.index(item[0]) if item[0] in order else len(order), item[0])


def headline(report: Report) -> str:
    w = report.window
    line = (f"dac backtest {report.siem} at {report.endpoint}: {_iso(w.start)} .. {_iso(w.end)} "
            f"({number(round(w.days, 2))} days in {number(report.slice_hours)}-hour slices): {report.status}")
    return line


def reasons(report: Report) -> list[str]:
    out = []
    if report.fatal:
        out.append(f"ERROR: {report.fatal}")
    if report.partial:
        out.append(f"PARTIAL: {report.partial}")
    return out


def render_text(report: Report) -> str:
    lines = [headline(report), *reasons(report)]
    if report.fatal and not any(r.slices for r in report.runs):
        return "\n".join(lines) + "\n"         # nothing ran: one line per rule would only repeat it
    for run in report.runs:
        lines.append(f"{run.rule} ({run.rule_id}) [{run.target}] {run.path}")
        if run.error:
            lines.append(f"  ERROR: {run.error}")
        if not run.slices:
            lines.append("  no slice completed: no figures")
            continue
        lines.append(f"  hits: {run.hits} over {number(round(run.covered_days, 2))} days = {run.per_day_average}/day; "
                     f"distinct: {len(run.entities['host'])} hosts, {len(run.entities['user'])} users, "
                     f"{len(run.entities['process'])} processes")
        if run.per_day:
            lines.append("  per day: " + ", ".join(f"{d} {n}" for d, n in sorted(run.per_day.items())))
        if run.top():
            lines.append("  top entities: " + ", ".join(f"{k} {v} ({n})" for k, v, n in run.top()))
        lines.append(f"  cost: {cost_text(run.cost)}")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    lines = [f"### {_cell(headline(report))}", ""]
    lines += [f"**{_cell(r)}**" for r in reasons(report)]
    lines += ["", "| rule | target | hits | per day | hosts | users | processes | top entities | cost |",
              "|---|---|---|---|---|---|---|---|---|"]
    for run in report.runs:
        lines.append(_row(run))
    return "\n".join(lines) + "\n"


def _row(run: RuleRun) -> str:
    if not run.slices:
        return f"| {_cell(run.rule)} | {run.target} | ERROR: {_cell(run.error or 'not run')} | | | | | | |"
    top = "<br>".join(f"{k} `{_cell(v)}` ({n})" for k, v, n in run.top()) or "—"
    hits = f"{run.hits}" + (f" (ERROR: {_cell(run.error)})" if run.error else "")
    return (f"| {_cell(run.rule)} | {run.target} | {hits} | {run.per_day_average} | {len(run.entities['host'])} | "
            f"{len(run.entities['user'])} | {len(run.entities['process'])} | {top} | {_cell(cost_text(run.cost))} |")


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n"


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
