"""`dac backtest` as a command: options checked, the SIEM connected, the run, the report on
standard output and progress on standard error. Exit 0 complete, 1 on any error (with the rule
and endpoint named), 3 when a budget stopped the run early (PARTIAL)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from dac.artifacts.build import existing_artifacts
from .run import Budget, run_backtest, select_queries
from .connect import connect_sentinel, connect_splunk
from .render import render_json, render_markdown, render_text
from .window import parse_duration, window
from dac.core.redaction import Redactor
from dac.core.repo import Layout
from dac.core.retry import RetryPolicy
from dac.deploy.transport import TransportOptions

EXIT_PARTIAL = 3


@dataclass
class Options:
    siem: str
    since: str = "7d"
    slice: str = "1d"
    rules: list[str] | None = None
    output: str = "text"                    # text, json, markdown
    time_budget: str = "30m"
    cost_budget: float | None = None
    config: str | None = None
    workspace: str | None = None
    overrides: dict | None = None           # splunk --host/--port/--app


def backtest_command(layout: Layout, options: Options, transport: TransportOptions, redact: Redactor,
                     out: Callable[[str], None] | None = None, progress: Callable[[str], None] | None = None,
                     warn: Callable[[str], None] | None = None, sleep=None, policy: RetryPolicy = RetryPolicy(),
                     credential=None, now: datetime | None = None, clock=None) -> int:
    out = out or sys.stdout.write
    progress = progress or (lambda line: print(line, file=sys.stderr))
    warn = warn or progress
    span = window(parse_duration(options.since), now)
    size = parse_duration(options.slice, "--slice")
    budget = Budget(parse_duration(options.time_budget, "--time-budget").total_seconds(), options.cost_budget)
    queries = select_queries(existing_artifacts(layout), options.siem, options.rules)
    if options.siem == "splunk":
        connection = connect_splunk(layout.root, options.config or "splunk/deploy.yml", options.overrides or {},
                                    transport, redact, warn, sleep, policy, clock)
    else:
        connection = connect_sentinel(layout.root, options.config or "sentinel/deploy.yml", transport, redact, warn,
                                      span.days, options.workspace, sleep, policy, credential)
    progress(f"backtest: {len(queries)} {options.siem} queries over {options.since} in {options.slice} slices "
             f"at {connection.endpoint}")
    extra = {"clock": clock} if clock else {}
    report = run_backtest(options.siem, connection.endpoint, queries, connection.route, span, size, budget, redact,
                          progress, check=connection.check, **extra)
    render = {"json": render_json, "markdown": render_markdown}.get(options.output, render_text)
    out(redact(render(report)))
    if report.status == "ERROR":
        for line in ([report.fatal] if report.fatal else []) + [f"{r.rule} ({r.target}): {r.error}" for r in report.runs if r.error]:
            print(redact(f"error: {line}"), file=sys.stderr)
        return 1
    return EXIT_PARTIAL if report.status == "PARTIAL" else 0
