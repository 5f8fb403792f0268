"""The verdicts of `dac test`: per rule, target and log file, what each engine matched, compared
with the labels and with each other (any disagreement is a failure), and the summary table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


ENGINES = ("sigma", "kql", "spl")


@dataclass
class Verdicts:
    """Per rule x target x log file: the expected keys and each engine's keys (None = not run)."""
    rule: str
    rule_id: str
    target: str
    log: str
    expected: set
    engines: dict[str, set | None]
    not_testable: dict[str, str] = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)    # key -> the rows it stands for (a group: all its events)
    twin: bool = False                              # replayed on a shape twin (testdata/shapes/), not a canonical file

    @property
    def hits(self) -> set:
        return set().union(*(k for k in self.engines.values() if k is not None))


@dataclass
class Report:
    verdicts: list[Verdicts] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped_lines: list[str] = field(default_factory=list)
    spl_cross_checks: int = 0       # SPL searches whose rows the DuckDB engine and the reference both gave
    metrics: object = None          # dac.replay.metrics.Metrics over the truth labels (a full run only)


def compare(verdicts: list[Verdicts], queries_by_key: dict) -> list[str]:
    """Failure messages: label mismatches and engine disagreements, naming event, rule, target."""
    failures = []
    for v in verdicts:
        for engine, reason in sorted(v.not_testable.items()):
            # a query the engine cannot run proves nothing: that is a failure, never a pass
            failures.append(f"{v.log}: rule {v.rule} on {v.target}: not testable on the {engine} engine: {reason}")
        ran = {e: keys for e, keys in v.engines.items() if keys is not None}
        universe = set(v.expected).union(*ran.values()) if ran else set(v.expected)
        for key in sorted(universe, key=str):
            verdict = {e: key in keys for e, keys in ran.items()}
            wanted = key in v.expected
            shown = ", ".join(f"{e}={'hit' if hit else 'miss'}" for e, hit in verdict.items())
            if any(hit != wanted for hit in verdict.values()):
                failures.append(f"{v.log}: event {key}: rule {v.rule} on {v.target}: label says "
                                f"{'hit' if wanted else 'no hit'}; {shown}")
            if len(set(verdict.values())) > 1:
                query = queries_by_key.get((v.rule, v.target))
                failures.append(f"{v.log}: event {key}: engines disagree on rule {v.rule} / {v.target} ({shown})\n"
                                f"  query:\n    " + (query.text.replace("\n", "\n    ") if query else "?"))
    return failures


def summary_table(verdicts: list[Verdicts]) -> list[str]:
    """One line per rule x target: TP/FP/FN summed over files, per engine."""
    totals: dict[tuple[str, str], Counter] = {}
    for v in verdicts:
        counter = totals.setdefault((v.rule, v.target), Counter())
        for engine, keys in v.engines.items():
            if keys is None:
                if engine in v.not_testable:
                    counter[f"{engine}:not-testable"] += 1
                continue
            counter[f"{engine}:TP"] += len(keys & v.expected)
            counter[f"{engine}:FP"] += len(keys - v.expected)
            counter[f"{engine}:FN"] += len(v.expected - keys)
    lines = [f"{'rule':24} {'target':14} " + " ".join(f"{e:>14}" for e in ENGINES)]
    for (rule, target), c in sorted(totals.items()):
        cells = []
        for e in ENGINES:
            if c[f"{e}:not-testable"]:
                cells.append(f"{'not testable':>14}")
            elif any(k.startswith(e + ":") for k in c):
                cells.append(f"{c[e + ':TP']:>4}/{c[e + ':FP']}/{c[e + ':FN']:<4}".rjust(14))
            else:
                cells.append(f"{'-':>14}")
        lines.append(f"{rule:24} {target:14} " + " ".join(cells))
    lines.append("cells: TP/FP/FN against the labels")
    return lines
