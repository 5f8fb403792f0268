"""Composed hunting queries: every single-event rule of one ATT&CK technique in one search.

Sentinel: `let <RuleName> = …;` per rule, each projected onto a common column set, then
`union … | sort by Timestamp desc` (the shape of the seed's hand-written hunting query, but
generated from the Sigma rules). Splunk: the per-target searches joined with `append`, each
branch projected onto the same columns with `eval`, then `table` and `sort`.
Column sources per log source come from the pipelines' `projection` state.
"""
from __future__ import annotations

from dataclasses import dataclass

from .convert import Query
from dac.core.problems import DacError, Problem

KQL_COLUMNS = ("AccountName", "FilePath", "ProcessName", "ProcessCommandLine")
SPL_COLUMNS = ("user", "path", "process", "command_line")


@dataclass(frozen=True)
class HuntingSpec:
    technique: str
    name: str
    lookback: str
    order: tuple[str, ...]


def hunting_specs(config: dict, targets_rel: str) -> list[HuntingSpec]:
    specs = []
    for entry in config.get("hunting") or []:
        try:
            specs.append(HuntingSpec(entry["technique"], entry["name"], str(entry.get("lookback", "24h")),
                                     tuple(entry.get("order") or ())))
        except (KeyError, TypeError):
            raise DacError([Problem(targets_rel, None, "each hunting entry needs `technique` and `name`")])
    return specs


def hunting_members(queries: list[Query], spec: HuntingSpec, language: str) -> list[Query]:
    chosen = [q for q in queries
              if q.target.language == language and not q.rule.is_correlation
              and spec.technique in {str(t) for t in q.rule.rule.tags}]
    rank = {name: i for i, name in enumerate(spec.order)}
    return sorted(chosen, key=lambda q: (rank.get(q.rule.name, len(rank)), q.rule.name, q.target.name))


def detection_label(query: Query, members: list[Query]) -> str:
    """The rule name, suffixed with the target only when one rule has several targets here."""
    if sum(1 for m in members if m.rule.name == query.rule.name) > 1:
        return f"{query.rule.name}_{query.target.name}"
    return query.rule.name


def _projection(query: Query, columns: tuple[str, ...]) -> dict[str, str | None]:
    projection = query.scope.state.get("projection") or {}
    missing = [c for c in columns if c not in projection]
    if missing:
        raise DacError([Problem(query.target.pipeline_file, None,
                                f"pipeline sets no projection for {missing} (needed by the hunting query, rule {query.rule.name})")])
    return projection


def kql_hunting(queries: list[Query], spec: HuntingSpec) -> str | None:
    members = hunting_members(queries, spec, "kql")
    if not members:
        return None
    lets = []
    for q in members:
        table, _, rest = q.text.partition("\n")
        label = detection_label(q, members)
        proj = _projection(q, KQL_COLUMNS)
        columns = ["Timestamp", "DeviceName"] + [
            c if proj[c] == c else f"{c} = {proj[c] if proj[c] else 'string(null)'}" for c in KQL_COLUMNS]
        lets.append(f"let {label} = {table}\n| where Timestamp > ago({spec.lookback})\n{rest}\n"
                    f'| project {", ".join(columns)}, Detection = "{q.rule.name}";')
    labels = ", ".join(detection_label(q, members) for q in members)
    return "\n".join(lets) + f"\nunion {labels}\n| sort by Timestamp desc"


def _with_lookback(spl: str, lookback: str) -> str:
    first, _, rest = spl.partition(" ")
    return f"{first} earliest=-{lookback} latest=now {rest}"


def spl_hunting(queries: list[Query], spec: HuntingSpec) -> str | None:
    members = hunting_members(queries, spec, "spl")
    if not members:
        return None
    branches = []
    for i, q in enumerate(members):
        proj = _projection(q, SPL_COLUMNS)
        evals = [f'detection="{q.rule.name}"', f'target="{q.target.name}"'] + [
            f"{c}={proj[c] if proj[c] else 'null()'}" for c in SPL_COLUMNS]
        body = _with_lookback(q.text, spec.lookback) + "\n| eval " + ", ".join(evals)
        branches.append(body if i == 0 else "| append [ search " + body.replace("\n", "\n    ") + " ]")
    return "\n".join(branches) + "\n| table _time host detection target " + " ".join(SPL_COLUMNS) + "\n| sort 0 - _time"
