"""ATT&CK coverage: which techniques the rules cover, on which targets, and how well tested.

Inputs are the loaded rules, the compiled queries and either a replay report of the labelled
sample logs (`dac coverage`, dac.replay.labelled.run_labelled) or, without one, the labels themselves
(`dac convert`): a replay with no failure reproduces every label exactly, so both give the same
files whenever `dac test` passes, and `dac coverage` refuses to write when it does not.

The `attack.` tags are checked against the local ATT&CK list by dac.rules.attack. This module
computes the coverage; dac.artifacts.coverage_files renders and writes it.

Outputs (deterministic, no timestamps), under conversions/coverage/:
  navigator-layer.json  ATT&CK Navigator layer, format 4.5. One entry per covered technique and
                        tactic; score = number of rules (generated detections; base rules that only
                        feed a correlation are not counted). Targets compiled and targets tested
                        are in each entry's comment and metadata, TP/FP/FN per rule x target too.
  coverage.md           the same as a Markdown table, and a rule x target table.

"Tested" for a technique on a target: the target's queries for the technique's rules have at
least one labelled true positive in testdata/ and no false positive, false negative,
engine disagreement or untestable query.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import yaml

from dac.compile.convert import Query
from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from dac.rules.ruleset import LoadedRule, RuleSet, load_yaml_text
from dac.rules.attack import AttackData, Technique, technique_sort_key, check_attack_tags, tactic_tags, technique_ids

PLATFORMS = {"linux": "Linux", "windows": "Windows", "macos": "macOS", "aws": "IaaS", "azure": "IaaS",
             "gcp": "IaaS", "m365": "Office Suite", "okta": "Identity Provider"}
_LANGUAGE_ENGINE = {"kql": "kql", "spl": "spl"}


# --- the local ATT&CK list -------------------------------------------------------------------


# --- tag checks ------------------------------------------------------------------------------


# --- coverage --------------------------------------------------------------------------------

@dataclass
class TargetResult:
    """One rule on one target: TP/FP/FN of the target's own query over the labelled logs."""
    target: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    clean: bool = True          # every engine reproduced the labels, nothing untestable
    runs: int = 0               # labelled log files of the target's format

    @property
    def tested(self) -> bool:
        return self.clean and self.tp > 0

    def cell(self) -> str:
        if not self.runs:
            return "no labelled logs"
        text = f"{self.tp}/{self.fp}/{self.fn}"
        if not self.clean:
            return text + " FAILING"
        return text if self.tp else text + " (no labelled hit)"


@dataclass
class RuleCoverage:
    item: LoadedRule
    targets: dict[str, TargetResult]           # every target the rule compiled for

    @property
    def name(self) -> str:
        return self.item.name


@dataclass
class TechniqueCoverage:
    technique: Technique
    tactics: list[str]
    rules: list[RuleCoverage] = field(default_factory=list)

    @property
    def score(self) -> int:
        return len(self.rules)

    @property
    def targets_compiled(self) -> list[str]:
        return sorted({t for r in self.rules for t in r.targets})

    def target_totals(self) -> dict[str, TargetResult]:
        totals = {}
        for target in self.targets_compiled:
            total = TargetResult(target)
            for r in self.rules:
                res = r.targets.get(target)
                if res is None:
                    continue
                total.tp, total.fp, total.fn = total.tp + res.tp, total.fp + res.fp, total.fn + res.fn
                total.clean = total.clean and res.clean
                total.runs = max(total.runs, res.runs)
            totals[target] = total
        return totals

    @property
    def targets_tested(self) -> list[str]:
        return [t for t, total in self.target_totals().items() if total.tested]


@dataclass
class Coverage:
    attack: AttackData
    techniques: list[TechniqueCoverage]
    targets: list[str]                        # every target some rule compiled for
    rules: list[RuleCoverage]
    tested_from: str | None                   # "replay", "labels" or None (not known)
    platforms: list[str] = field(default_factory=list)


def _results_from_report(report, rule: LoadedRule, target) -> TargetResult:
    result = TargetResult(target.name)
    engine = _LANGUAGE_ENGINE.get(target.language)
    for v in report.verdicts:
        if v.rule != rule.name or v.target != target.name or v.twin:
            continue
        result.runs += 1
        if v.not_testable:
            result.clean = False
        for name, keys in v.engines.items():
            if keys is None:
                continue
            tp, fp, fn = len(keys & v.expected), len(keys - v.expected), len(v.expected - keys)
            if fp or fn:
                result.clean = False
            if name == engine:
                result.tp, result.fp, result.fn = result.tp + tp, result.fp + fp, result.fn + fn
        if v.engines.get(engine) is None:
            result.clean = False               # the deployed query did not run
    return result


def read_labels(layout: Layout) -> list[dict]:
    """The label files of testdata/, leniently (`dac test` reports their problems): [{format, events, correlations}]."""
    labels = []
    for path in sorted((layout.root / "testdata").rglob("*.labels.yml")) if (layout.root / "testdata").is_dir() else []:
        try:
            text = path.read_text(encoding="utf-8")
            data = load_yaml_text(text) or {}       # libyaml where PyYAML has it, kept per text
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and not data.get("twin_of"):     # a shape twin repeats its canonical file's events
            labels.append({"path": layout.rel(path), "format": str(data.get("format")),
                           "events": data.get("events") or {}, "correlations": data.get("correlations") or {}})
    return labels


def _results_from_labels(labels: list[dict], rule: LoadedRule, target) -> TargetResult:
    """What a passing replay reports: every labelled positive found, nothing else."""
    result = TargetResult(target.name)
    rule_id = str(rule.rule.id)
    for label in labels:
        if target.format is None or label["format"] != target.format:
            continue
        result.runs += 1
        if rule.is_correlation:
            group_by = list(rule.rule.group_by or [])
            groups = label["correlations"].get(rule_id) or []
            result.tp += len({tuple(str(g.get(f)) for f in group_by) for g in groups if isinstance(g, dict)})
        else:
            fires = [(e.get("fires") if isinstance(e, dict) else e) or [] for e in label["events"].values()]
            result.tp += sum(1 for ids in fires if rule_id in [str(i) for i in ids])
    return result


def compute_coverage(ruleset: RuleSet, queries: list[Query], techniques: AttackData, report=None,
                     labels: list[dict] | None = None) -> Coverage:
    """Per technique: rules, targets compiled, targets tested.

    `report` (dac.replay.verdicts.Report) gives measured TP/FP/FN; without it `labels` (read_labels) give
    the expected ones; with neither, nothing counts as tested. Bad ATT&CK tags raise DacError.
    """
    problems = check_attack_tags(ruleset, techniques)
    if problems:
        raise DacError(problems)
    compiled: dict[str, dict[str, object]] = {}
    for q in queries:
        compiled.setdefault(q.rule.name, {})[q.target.name] = q.target
    tested_from = "replay" if report is not None else ("labels" if labels is not None else None)
    rules: list[RuleCoverage] = []
    for item in sorted(ruleset.generated, key=lambda r: r.name):
        results = {}
        for target_name, target in sorted(compiled.get(item.name, {}).items()):
            if report is not None:
                results[target_name] = _results_from_report(report, item, target)
            elif labels is not None:
                results[target_name] = _results_from_labels(labels, item, target)
            else:
                results[target_name] = TargetResult(target_name)
        rules.append(RuleCoverage(item, results))
    by_technique: dict[str, TechniqueCoverage] = {}
    for rc in rules:
        tagged_tactics = tactic_tags(rc.item)
        for tid in technique_ids(rc.item):
            technique = techniques.techniques[tid]
            entry = by_technique.get(tid)
            if entry is None:
                entry = by_technique[tid] = TechniqueCoverage(technique, [])
            entry.rules.append(rc)
            # the technique's tactics the rules name; all of them when no rule names one
            named = [t for t in technique.tactics if t in tagged_tactics]
            entry.tactics = sorted(set(entry.tactics) | set(named or technique.tactics),
                                   key=lambda t: list(techniques.tactics).index(t) if t in techniques.tactics else 99)
    products = sorted({str(rc.item.rule.logsource.product) for rc in rules
                       if not rc.item.is_correlation and rc.item.rule.logsource.product})
    platforms = sorted({PLATFORMS[p] for p in products if p in PLATFORMS}) if all(p in PLATFORMS for p in products) else []
    return Coverage(techniques, [by_technique[t] for t in sorted(by_technique, key=technique_sort_key)],
                    sorted({t for r in rules for t in r.targets}), rules, tested_from, platforms)


# --- outputs ---------------------------------------------------------------------------------


