"""`dac coverage`: replay the labelled logs, then write (or check) conversions/coverage/ from the
measured results. It lives in the replay stage because it runs the replay; the files themselves
are computed by dac.artifacts.coverage."""

from __future__ import annotations

from dac.artifacts.coverage import Coverage, compute_coverage, read_labels
from dac.artifacts.coverage_files import coverage_files, tested_text, write_coverage
from dac.compile.convert import Query
from dac.core.repo import Layout
from dac.rules.attack import load_techniques
from dac.rules.ruleset import RuleSet


def summary_lines(coverage: Coverage) -> list[str]:
    lines = []
    for tc in coverage.techniques:
        lines.append(f"{tc.technique.id} {tc.technique.name} [{', '.join(tc.tactics)}]: {tc.score} rules; "
                     f"compiled for {', '.join(tc.targets_compiled) or 'none'}; tested on {tested_text(tc)}")
    return lines


def coverage_command(layout: Layout, ruleset: RuleSet, queries: list[Query], config: dict, replay: bool = True,
                     check: bool = False, out=print, err=print) -> int:
    """`dac coverage`: replay the labelled logs (unless `replay` is False: labels only), then write
    conversions/coverage/ (or, with `check`, compare it). Nothing is written when the replay fails."""
    report = None
    if replay:
        from dac.replay.labelled import run_labelled
        report = run_labelled(layout, ruleset, queries, config=config)
        if report.failures:
            for failure in report.failures:
                err(f"FAIL {failure}")
            err(f"coverage not written: {len(report.failures)} replay failure(s); `dac test` shows them")
            return 1
    techniques = load_techniques(layout)
    labels = None if report is not None else read_labels(layout)
    coverage = compute_coverage(ruleset, queries, techniques, report, labels)
    files = coverage_files(coverage)
    for line in summary_lines(coverage):
        out(line)
    if check:
        stale = [p for p, content in files.items()
                 if not (layout.root / p).is_file() or (layout.root / p).read_text(encoding="utf-8") != content]
        for path in stale:
            err(f"stale: {path}")
        if stale:
            err("run `dac coverage` (or `dac convert`) and commit the result")
            return 1
        out(f"up to date: {', '.join(sorted(files))}")
        return 0
    written = write_coverage(files, layout)
    out(f"coverage: {len(coverage.techniques)} technique(s), ATT&CK {techniques.version}; "
        f"{', '.join(sorted(files))} ({written} written, {len(files) - written} unchanged)"
        + ("" if replay else "; tested = labelled (no replay)"))
    return 0
