"""Compile every rule to every target that supports its log source.

For each rule and target: ask the target pipeline whether it covers the rule's log source, check
that every field the rule uses is mapped (an unmapped field is an error naming rule, field and
target, never a pass-through), then convert with pySigma. Correlation rules are compiled from
their base rules' queries by dac.compile.correlation. All problems are collected and raised together.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from .kql_prefilter import add_prefilters
from .correlation import Branch, CorrelationError, kql_correlation, spl_correlation
from dac.core.problems import DacError, Problem
from dac.rules.ruleset import LoadedRule, RuleSet, rule_detection_items
from .targets import Scope, Target


@dataclass
class Query:
    rule: LoadedRule
    target: Target
    text: str
    scope: Scope


def rule_fields(rule: SigmaRule) -> list[str]:
    return sorted({item.field for item in rule_detection_items(rule) if item.field is not None})


def _convert_single(item: LoadedRule, target: Target) -> str:
    rule = copy.deepcopy(item.rule)          # pySigma pipelines rewrite the rule in place
    queries = target.backend.convert_rule(rule)
    if len(queries) != 1:
        raise SigmaError(f"expected one query, pySigma produced {len(queries)}")
    # KQL: a term-index filter in front of every regex that has one (dac.compile.kql_prefilter)
    return add_prefilters(queries[0]) if target.backend_id == "kusto" else queries[0]


def _logsource_text(rule: SigmaRule) -> str:
    return " ".join(f"{k}={v}" for k, v in rule.logsource.to_dict().items())


def compile_rules(ruleset: RuleSet, targets: dict[str, Target]) -> list[Query]:
    problems: list[Problem] = []
    compiled: dict[tuple[str, str], Query] = {}
    for item in ruleset.rules:
        if item.is_correlation:
            continue
        fields = rule_fields(item.rule)
        supported = False
        for target in targets.values():
            scope = target.scope(item.rule)
            if not scope.supported:
                continue
            supported = True
            unmapped = [f for f in fields if f not in scope.field_map]
            for f in unmapped:
                problems.append(item.problem(
                    f"rule {item.name}: field {f!r} is not mapped for target {target.name} ({target.pipeline_file})", "detection"))
            if unmapped:
                continue
            try:
                text = _convert_single(item, target)
            except SigmaError as e:
                problems.append(item.problem(f"rule {item.name}: conversion for target {target.name} failed: {e}", "detection"))
                continue
            compiled[(item.name, target.name)] = Query(item, target, text, scope)
        if not supported:
            problems.append(item.problem(
                f"rule {item.name}: no target supports log source {_logsource_text(item.rule)} (see sigma/targets.yml)", "logsource"))
    for item in ruleset.rules:
        if item.is_correlation:
            problems += _compile_correlation(item, targets, compiled)
    if problems:
        raise DacError(problems)
    return [q for q in compiled.values() if q.rule.generated]


def _compile_correlation(item: LoadedRule, targets: dict[str, Target], compiled: dict) -> list[Problem]:
    names = [ref.reference for ref in item.rule.rules]
    problems, produced = [], False
    for target in targets.values():
        if not all((n, target.name) in compiled for n in names):
            continue
        produced = True
        branches = [Branch(n, compiled[(n, target.name)].text, compiled[(n, target.name)].scope.field_map) for n in names]
        generate = kql_correlation if target.language == "kql" else spl_correlation
        try:
            text = generate(item.rule, item.name, branches)
        except CorrelationError as e:
            problems.append(item.problem(f"correlation {item.name}: target {target.name}: {e}", "correlation"))
            continue
        compiled[(item.name, target.name)] = Query(item, target, text, compiled[(names[0], target.name)].scope)
    if not produced:
        problems.append(item.problem(f"correlation {item.name}: no target supports all of its rules {names}", "correlation"))
    return problems
