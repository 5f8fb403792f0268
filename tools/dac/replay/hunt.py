"""`dac test --events`: every rule over unlabelled logs, as an offline hunting tool.

Inputs are files, directories (every regular file below, sorted) or `-` (standard input), plain,
gzip or UTF-16; each file's format is given or sniffed (`auto`). Each file is replayed on its
own with the engines of its format (Sigma semantics always; KQL for Defender rows, SPL for the
Splunk sources). A hit names the rule, its tier (alert or hunting), the target and engines that
fired, the host, and the 1-based input lines of every event that makes it up.
A file is streamed through the engines (dac.replay.stream), so its size is not bounded by memory.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from dac.compile.convert import Query
from dac.logs import InputError, open_log
from .labelled import Replayer, column_types
from .labels import LabelFile
from .stream import StoredLog, load
from dac.core.repo import Layout
from dac.rules.ruleset import RuleSet
from dac.rules.tiers import is_alert

# the Python SPL reference re-runs every search at ~20k events/s and needs the events in memory;
# above this many Splunk events per file only the DuckDB engine runs (`dac test` on testdata/
# always runs both)
REFERENCE_LIMIT = 100_000
PROGRESS_EVERY = 250_000


@dataclass
class FileResult:
    path: str
    format: str | None
    shape: str = ""
    events: int = 0
    skipped: list[dict] = field(default_factory=list)
    error: str | None = None


@dataclass
class HuntReport:
    files: list[FileResult] = field(default_factory=list)
    hits: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"files": [{"path": f.path, "format": f.format, "shape": f.shape, "events": f.events,
                           "skipped": f.skipped, **({"error": f.error} if f.error else {})} for f in self.files],
                "hits": self.hits, "failures": self.failures}


def expand_inputs(inputs: list[str]) -> tuple[list[str], list[FileResult]]:
    """Files to read, in order, and the inputs that are not readable at all."""
    files, bad = [], []
    for given in inputs:
        if given == "-":
            files.append(given)
            continue
        path = Path(given)
        if path.is_dir():
            # label files and READMEs sit beside sample logs; they are not logs
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and not p.is_symlink()
                           and not p.name.endswith(".labels.yml") and not p.name.startswith((".", "README")))
            if not found:
                bad.append(FileResult(given, None, error=f"{given}: directory holds no files"))
            files += found
        elif path.exists() or path.is_symlink():
            files.append(given)
        else:
            bad.append(FileResult(given, None, error=f"{given}: no such file or directory"))
    return files, bad


def hunt(layout: Layout, ruleset: RuleSet, queries: list[Query], inputs: list[str], fmt: str = "auto",
         host: str | None = None, table: str | None = None, progress: bool = True) -> HuntReport:
    report = HuntReport()
    files, bad = expand_inputs(inputs)
    report.files += bad
    schemas = column_types(layout) if files else {}
    for path in files:
        shown = "<stdin>" if path == "-" else path
        result = FileResult(shown, None)
        report.files.append(result)
        try:
            stream = open_log(path, shown, fmt, host, table, schemas)
        except InputError as e:
            result.error = str(e)
            continue
        # streamed: the file is read once, into every engine, and never held in memory
        selected = [q for q in queries if q.target.format == stream.format]
        replayer = Replayer(layout, selected, ruleset)
        say = (lambda n: print(f"… {shown}: {n:,} events read", file=sys.stderr, flush=True)) if progress else None
        log = load(stream, replayer.now, lambda: replayer.kql, REFERENCE_LIMIT, say, PROGRESS_EVERY,
                   scopes=replayer.scopes)
        try:
            result.format, result.shape, result.events = stream.format, stream.shape, log.events
            result.skipped = [{"line": p.line, "reason": p.message} for p in stream.sorted_problems()]
            if say and log.events >= PROGRESS_EVERY:
                print(f"… {shown}: {log.events:,} events read, running the rules", file=sys.stderr, flush=True)
            hits, failures = _hits(replayer, ruleset, selected, log, shown)
        finally:
            log.close()
        report.hits += hits
        report.failures += failures
    return report


def _hits(replayer: Replayer, ruleset: RuleSet, selected: list[Query], log: StoredLog, shown: str) -> tuple[list[dict], list[str]]:
    """The hits of every rule of the log's format, and the SPL engines' disagreements."""
    label = LabelFile(shown, Path(shown), log.format, None, None, {}, {})
    hits = []
    for v in replayer.run_log(label, log, selected):
        item = ruleset.by_name(v.rule)
        for key in sorted(v.hits, key=str):
            rows = v.evidence.get(key, [])
            hits.append({
                "rule_id": v.rule_id, "rule": v.rule, "level": str(item.rule.level.name).lower() if item.rule.level else None,
                "alert": is_alert(item), "target": v.target,
                "engines": [e for e, k in v.engines.items() if k is not None and key in k],
                "host": rows[0].get("host") if rows else None,
                "file": shown,
                "lines": sorted({n for r in rows for n in r.get("dac_lines", [])}),
                **({"group": dict(zip([str(g) for g in item.rule.group_by or []], key))} if item.is_correlation else {"event": key}),
            })
    return hits, replayer.spl_differences


def render_table(report: HuntReport) -> list[str]:
    lines = []
    for f in report.files:
        if f.error:
            lines.append(f"error: {f.error}")
            continue
        lines.append(f"{f.path}: {f.format} ({f.shape or 'no events'}), {f.events:,} events, {len(f.skipped):,} lines skipped")
    per_rule: dict[tuple[str, str], list[dict]] = {}
    for hit in report.hits:
        per_rule.setdefault((hit["rule"], hit["target"]), []).append(hit)
    if per_rule:
        lines.append("")
        lines.append(f"{'rule':24} {'tier':8} {'target':14} {'hits':>6}  hosts")
        for (rule, target), hits in sorted(per_rule.items()):
            hosts = sorted({str(h["host"]) for h in hits})
            tier = "alert" if hits[0]["alert"] else "hunting"
            lines.append(f"{rule:24} {tier:8} {target:14} {len(hits):>6}  {', '.join(hosts[:5])}{' …' if len(hosts) > 5 else ''}")
        lines.append("")
        for hit in report.hits:
            where = f"{hit['file']}:{','.join(map(str, hit['lines'][:8]))}{'…' if len(hit['lines']) > 8 else ''}"
            lines.append(f"{'ALERT' if hit['alert'] else 'hunt '} {hit['rule']} ({hit['target']}; {'+'.join(hit['engines'])}) "
                         f"host {hit['host']} at {where}")
    return lines


def skipped_lines(report: HuntReport, shown_max: int = 20) -> list[str]:
    out = []
    for f in report.files:
        for item in f.skipped[:shown_max]:
            out.append(f"skipped: {f.path}:{item['line']}: {item['reason']}" if item["line"] else f"skipped: {f.path}: {item['reason']}")
        if len(f.skipped) > shown_max:
            out.append(f"skipped: {f.path}: … and {len(f.skipped) - shown_max:,} more lines")
    return out


