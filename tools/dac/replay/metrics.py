"""Detection quality over the truth labels: precision, recall and F1 per rule, per target and per
tier, the alert volume on benign events, and the explicit known misses and accepted false
positives.

Counting (each event of a canonical labelled file once; shape twins repeat events and are left
out): a hit is an event the target's own query (KQL or SPL) returns; a correlation hit counts
every event of its group. True positive: a hit on a `T1003.007` event. False positive: a hit on
a `benign` event. A hit on `malicious-context` (an attack step that is not the observable) is
reported apart and counts as neither. Recall of a rule, a target or a tier is over the T1003.007
events of the telemetry it runs on (the files of its target's format).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

TIERS = ("alert", "hunting")


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    context: int = 0
    positives: int = 0          # T1003.007 events the rule(s) could see

    @property
    def fn(self) -> int:
        return self.positives - self.tp

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / self.positives if self.positives else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)

    def as_dict(self) -> dict:
        def rnd(x):
            return None if x is None else round(x, 4)
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "context": self.context, "positives": self.positives,
                "precision": rnd(self.precision), "recall": rnd(self.recall), "f1": rnd(self.f1)}


@dataclass
class Metrics:
    rules: dict[tuple[str, str], Score] = field(default_factory=dict)      # (rule, target)
    targets: dict[tuple[str, str], Score] = field(default_factory=dict)    # (tier, target)
    tiers: dict[str, Score] = field(default_factory=dict)                  # tier, every telemetry
    benign_events: int = 0
    benign_alerts: int = 0                                                   # benign events at least one alert fires on
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"rules": {f"{r} / {t}": s.as_dict() for (r, t), s in sorted(self.rules.items())},
                "targets": {f"{tier} / {t}": s.as_dict() for (tier, t), s in sorted(self.targets.items())},
                "tiers": {tier: s.as_dict() for tier, s in sorted(self.tiers.items())},
                "benign_events": self.benign_events, "benign_alerts": self.benign_alerts}


def _hit_events(v) -> set[str]:
    """Event keys the deployed query (the target's own engine) hit; a group counts all its events."""
    keys = v.engines.get("kql") if v.engines.get("kql") is not None else v.engines.get("spl")
    if keys is None:
        keys = v.engines.get("sigma") or set()
    events = set()
    for key in keys:
        rows = v.evidence.get(key)
        if rows is not None and isinstance(key, tuple):
            events |= {r["dac_key"] for r in rows}
        else:
            events.add(str(key))
    return events


def compute(verdicts, labels, tier_of: dict[str, str], target_format: dict[str, str]) -> Metrics:
    """verdicts: replay.Verdicts; labels: replay.LabelFile (twins are skipped); tier_of: rule name ->
    alert|hunting; target_format: target -> log format."""
    m = Metrics()
    canonical = {l.path: l for l in labels if not l.twin_of}
    hits: dict[tuple[str, str], dict[str, set]] = defaultdict(lambda: defaultdict(set))   # (log, key) -> tier -> rules
    for v in verdicts:
        label = canonical.get(v.log)            # v.log is the label file's path
        if label is None:
            continue
        score = m.rules.setdefault((v.rule, v.target), Score())
        for key in _hit_events(v):
            truth = label.truth.get(key)
            score.tp += truth == "T1003.007"
            score.fp += truth == "benign"
            score.context += truth == "malicious-context"
            hits[(label.path, key)][tier_of[v.rule]].add((v.rule, v.target))
    positives_by_format: dict[str, int] = defaultdict(int)
    for label in canonical.values():
        positives_by_format[label.format] += sum(1 for t in label.truth.values() if t == "T1003.007")
    for (rule, target), score in m.rules.items():
        score.positives = positives_by_format[target_format[target]]
    targets = sorted(set(target_format))
    for label in canonical.values():
        for key, truth in label.truth.items():
            fired = hits.get((label.path, key), {})
            reasons = label.accepted.get(key, {})
            alerted = bool(fired.get("alert"))
            if truth == "benign":
                m.benign_events += 1
                m.benign_alerts += alerted
                if alerted and "accepted_fp" not in reasons:
                    rules = ", ".join(sorted(f"{r} on {t}" for r, t in fired["alert"]))
                    m.failures.append(f"{label.path}: event {key} is benign and alerts ({rules}): fix the rule, or "
                                      f"list it with accepted_fp: <reason>")
                if not alerted and "accepted_fp" in reasons:
                    m.failures.append(f"{label.path}: event {key}: accepted_fp is listed but no alert fires any more: remove it")
            if truth == "T1003.007":
                if not alerted and "known_miss" not in reasons:
                    m.failures.append(f"{label.path}: event {key} is T1003.007 and no alert rule detects it: fix a rule, or "
                                      f"list it with known_miss: <reason>")
                if alerted and "known_miss" in reasons:
                    m.failures.append(f"{label.path}: event {key}: known_miss is listed but an alert detects it now: remove it")
            for tier in TIERS:
                for target in targets:
                    if target_format[target] == label.format:
                        _count(m.targets.setdefault((tier, target), Score()), truth,
                               any(t == target for _, t in fired.get(tier, set())))
                _count(m.tiers.setdefault(tier, Score()), truth, bool(fired.get(tier)))
    return m


def _count(score: Score, truth: str, hit: bool) -> None:
    score.positives += truth == "T1003.007"
    if hit:
        score.tp += truth == "T1003.007"
        score.fp += truth == "benign"
        score.context += truth == "malicious-context"


def render(m: Metrics) -> list[str]:
    def cell(x):
        return "  -  " if x is None else f"{x:.3f}"
    lines = [f"{'metrics (truth labels)':34} {'TP':>4} {'FP':>4} {'FN':>4} {'ctx':>4}  precision recall    F1"]
    for title, table in (("tier", {(t,): s for t, s in m.tiers.items()}), ("tier / target", m.targets), ("rule / target", m.rules)):
        for key, s in sorted(table.items()):
            name = " / ".join(key)
            lines.append(f"{title + ' ' + name:34} {s.tp:>4} {s.fp:>4} {s.fn:>4} {s.context:>4}  {cell(s.precision):>9} {cell(s.recall):>6} {cell(s.f1):>5}")
    lines.append(f"benign events: {m.benign_events}, of which {m.benign_alerts} raise an alert")
    lines.append("ctx = hits on malicious-context events (neither true nor false positives)")
    return lines


def regressions(current: dict, baseline: dict) -> list[str]:
    """Every metric that got worse than the checked-in baseline."""
    out = []
    for section in ("rules", "targets", "tiers"):
        for name, old in baseline.get(section, {}).items():
            new = current.get(section, {}).get(name)
            if new is None:
                out.append(f"{section} {name}: in the baseline, not measured any more")
                continue
            for metric in ("precision", "recall", "f1"):
                if old.get(metric) is not None and (new.get(metric) is None or new[metric] < old[metric] - 1e-9):
                    out.append(f"{section} {name}: {metric} {old[metric]} -> {new.get(metric)}")
            if new["fp"] > old["fp"]:
                out.append(f"{section} {name}: false positives {old['fp']} -> {new['fp']}")
    if current.get("benign_alerts", 0) > baseline.get("benign_alerts", 0):
        out.append(f"benign alerts {baseline.get('benign_alerts')} -> {current['benign_alerts']}")
    return out


def dumps(m: Metrics) -> str:
    return json.dumps(m.as_dict(), indent=2, sort_keys=True) + "\n"
