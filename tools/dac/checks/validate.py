"""Validate generated queries: KQL with Microsoft's Kusto.Language analyzer against the table
schemas in sentinel/schemas/, SPL with dac's structural checker, both against the query-cost
rules (dac.checks.cost), Sentinel analytic templates against their schema and their entity
columns against the query output, the pipelines against the declared event scopes
(dac.checks.scopes). Errors fail; analyzer hints and warnings are reported."""
from __future__ import annotations

from dataclasses import dataclass, field

from .cost import check_cost
from .scopes import check_pipeline_scopes
from dac.compile.kql_analyzer import analyze, is_error, load_schemas
from dac.core.problems import Problem
from dac.artifacts.sentinel_checks import check_sentinel_files
from dac.compile.targets import load_targets
from dac.core.repo import Layout
from dac.engines.spl.check import check_spl
from dac.logs.scopes import load_scopes


@dataclass
class ValidationReport:
    errors: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)      # analyzer hints and warnings
    kql_checked: int = 0
    spl_checked: int = 0


def validate_artifacts(files: dict[str, str], layout: Layout) -> ValidationReport:
    report = ValidationReport()
    kql = {path: text for path, text in files.items() if path.endswith(".kql")}
    spl = {path: text for path, text in files.items() if path.endswith(".spl")}
    if kql:
        tables = load_schemas(layout.schemas)
        for path, diagnostics in sorted(analyze(kql, tables, layout.kusto_analyzer).items()):
            for d in diagnostics:
                problem = Problem(path, d.line, f"{d.severity} {d.code}: {' '.join(d.message.split())}")
                (report.errors if is_error(d) else report.notes).append(problem)
        report.kql_checked = len(kql)
    for path, text in sorted(spl.items()):
        for p in check_spl(text):
            report.errors.append(Problem(path, p.line, f"SPL: {p.message}"))
        report.spl_checked += 1
    # query cost: selective SPL base searches, a term filter before every KQL regex/contains
    report.errors += check_cost(files, layout.root)
    # Sentinel analytic templates: schema, and every entity column present in the query output
    report.errors += check_sentinel_files(files, layout)
    # which events each log source covers: the pipelines say what sigma/datasources/event_scopes.yml declares
    report.errors += check_pipeline_scopes(load_targets(layout)[0], load_scopes(layout))
    return report
