"""Query cost as a checked property, SPL side: the base search (before the first pipe) of every
search, appended subsearches included, must let Splunk's index do the selecting.

- `spl-selective-base`: the base search requires a literal term, a TERM(), a `key=` value or a
  subsearch (itself checked) in every event it keeps. index/sourcetype/type/EventID/eventName
  alone select a whole sensor: every later `stats`, `transaction` or `join` then runs over all of
  it.
- `spl-audit-key`: an auditd base search (sourcetype linux_audit) names the key of the project's
  audit rules (`key=`, sigma/datasources/auditd_t1003_007.rules), so only the records those
  rules tagged are read.

A violation names its clause: the base search as written, without index= and the time range
(the same clause in every search of one pipeline, so one documented exception in
sigma/cost_exceptions.yml covers them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from dac.engines.spl.parse import SplUnsupported
from dac.engines.spl.pipeline import Pipeline, parse_pipeline

SELECTIVE = "spl-selective-base"
AUDIT_KEY = "spl-audit-key"


@dataclass(frozen=True)
class CostViolation:
    check: str
    clause: str
    message: str


def _selective(tree: tuple) -> bool:
    """Whether every event the search tree keeps must hold a term the index can look up."""
    kind = tree[0]
    if kind in ("raw", "subsearch"):
        return True
    if kind == "cmp":
        return tree[1] == "key" and tree[2] == "=" and "*" not in tree[3]
    if kind == "and":
        return any(_selective(t) for t in tree[1])
    if kind == "or":
        return all(_selective(t) for t in tree[1])
    return False


def _subsearches(tree: tuple):
    if tree[0] == "subsearch":
        yield tree[1]
    elif tree[0] in ("and", "or"):
        for t in tree[1]:
            yield from _subsearches(t)
    elif tree[0] == "not":
        yield from _subsearches(tree[1])


def base_clause(base_text: str) -> str:
    """The base search as the pipeline wrote it: index= and earliest/latest left out, one line."""
    text = re.sub(r"(?<![\w.])(index|earliest|latest)=\S+\s*", "", base_text.split("[", 1)[0])
    rest = base_text[len(base_text.split("[", 1)[0]):]
    return " ".join((text + rest).split())


def _pipelines(pipeline: Pipeline):
    """The pipeline, its appended subsearches and the subsearches of their base searches."""
    yield pipeline
    for sub in _subsearches(pipeline.base.tree):
        yield from _pipelines(sub)
    for step in pipeline.steps:
        if step.name == "append":
            yield from _pipelines(step.spec)


def _has_key(tree: tuple) -> bool:
    if tree[0] == "cmp":
        return tree[1] == "key"
    if tree[0] in ("and", "or"):
        return any(_has_key(t) for t in tree[1])
    if tree[0] == "not":
        return False
    if tree[0] == "subsearch":
        return _has_key(tree[1].base.tree)
    return False


def check_spl_cost(text: str) -> list[CostViolation]:
    try:
        top = parse_pipeline(text)
    except SplUnsupported:
        return []           # spl_check and the engines report what cannot be read
    found: list[CostViolation] = []
    for pipeline in _pipelines(top):
        clause = base_clause(pipeline.base_text)
        shown = clause if len(clause) <= 160 else clause[:157] + "..."
        if not _selective(pipeline.base.tree):
            found.append(CostViolation(SELECTIVE, clause, (
                f"{SELECTIVE}: the base search `{shown}` has no literal term, TERM(), key= or subsearch "
                "that every event it keeps must hold: Splunk reads the whole sensor before the first pipe")))
        if "linux_audit" in clause and not _has_key(pipeline.base.tree):
            found.append(CostViolation(AUDIT_KEY, clause, (
                f"{AUDIT_KEY}: the auditd base search `{shown}` does not select the project's audit "
                "rules by key= (sigma/datasources/auditd_t1003_007.rules)")))
    return list(dict.fromkeys(found))
