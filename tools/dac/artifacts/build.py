"""The generated files: computed in memory, compared, written atomically.

Everything under conversions/, splunk/<app id>/, sentinel/analytics/, sentinel/hunting/ and sentinel/arm/ is
generated (splunk/app.yml, sentinel/analytics.yml and sentinel/schemas/ are inputs): a file no
rule produces any more is deleted by `dac convert` and reported as stale by `dac convert --check`.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
from importlib import metadata
from pathlib import Path

from dac.core.atomic import write_text_atomic
from dac.rules.content import check_artifacts
from dac.compile.compose import hunting_specs, kql_hunting, spl_hunting
from .coverage_files import build_coverage_files
from .sentinel_analytics import ANALYTICS_DIR, ARM_DIR
from .sentinel_files import build_sentinel_files
from .sentinel_hunting import HUNTING_DIR
from .sentinel_versions import LOCK_FILE
from .splunk_app import build_app_files, generated_app_dirs
from dac.compile.convert import Query, compile_rules
from dac.rules.attack import check_attack_tags, load_techniques
from dac.core.problems import DacError
from dac.core.repo import Layout
from dac.rules.ruleset import RuleSet, load_rules
from dac.compile.targets import load_targets

GENERATED_FILES = (LOCK_FILE,)   # generated files outside the generated folders

VERSIONED_PACKAGES = ("pySigma", "pySigma-backend-kusto", "pysigma-backend-splunk")


def compile_repository(layout: Layout) -> tuple[RuleSet, list[Query], dict]:
    """Rules (ATT&CK tags checked), every compiled query, and the targets config: what every
    command that works from the rules starts with."""
    ruleset = load_rules(layout)
    problems = check_attack_tags(ruleset, load_techniques(layout))   # every rule, correlation base rules too
    if problems:
        raise DacError(problems)
    targets, config = load_targets(layout)
    return ruleset, compile_rules(ruleset, targets), config


def artifact_path(query: Query) -> str:
    return f"conversions/{query.target.name}/{query.rule.stem}.{query.target.language}"


def _manifest(queries: list[Query], files: dict[str, str]) -> str:
    entries = []
    for q in queries:
        path = artifact_path(q)
        rule = q.rule.rule
        entry = {
            "path": path, "rule_id": str(rule.id), "rule_name": q.rule.name, "title": rule.title,
            "level": str(rule.level.name).lower() if rule.level else None,
            "source": q.rule.path, "target": q.target.name, "siem": q.target.siem,
            "language": q.target.language, "correlation": q.rule.is_correlation,
            "tags": sorted(str(t) for t in rule.tags),
            "sha256": hashlib.sha256(files[path].encode()).hexdigest(),
        }
        if rule.custom_attributes.get("tracee"):
            entry["tracee"] = rule.custom_attributes["tracee"]
        entries.append(entry)
    hunting = sorted(p for p in files if "/hunting/" in p)
    document = {
        "generator": "dac",
        "versions": {p: metadata.version(p) for p in VERSIONED_PACKAGES},
        "artifacts": sorted(entries, key=lambda e: e["path"]),
        "hunting": [{"path": p, "sha256": hashlib.sha256(files[p].encode()).hexdigest()} for p in hunting],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def build_artifacts(queries: list[Query], config: dict, layout: Layout) -> dict[str, str]:
    """Repository-relative path -> exact file content, for every generated file."""
    files = {artifact_path(q): q.text.rstrip("\n") + "\n" for q in queries}
    for spec in hunting_specs(config, layout.rel(layout.targets_file)):
        for language, compose, folder in (("kql", kql_hunting, "sentinel"), ("spl", spl_hunting, "splunk")):
            text = compose(queries, spec)
            if text:
                files[f"conversions/hunting/{spec.name}.{folder}.{language}"] = text + "\n"
    files["conversions/manifest.json"] = _manifest(queries, files)
    files.update(build_coverage_files(layout, queries))     # conversions/coverage/: ATT&CK layer + table
    files.update(build_app_files(queries, config, layout))
    files.update(build_sentinel_files(queries, config, layout))
    problems = check_artifacts(files, _owners(queries, files))
    if problems:
        raise DacError(problems)
    return dict(sorted(files.items()))


def _owners(queries: list[Query], files: dict[str, str]):
    """owner_of(path, line) for content errors: the rule (file:line) a generated line comes from."""
    by_stem = {q.rule.stem: q.rule for q in queries}
    by_id = {str(q.rule.rule.id): q.rule for q in queries}

    def owner_of(path: str, line: int) -> str | None:
        stem = path.rsplit("/", 1)[-1].split(".")[0]
        rule = by_stem.get(stem)
        if rule is None and path.endswith(".conf"):
            for header in reversed(files[path].splitlines()[:line]):
                if header.startswith("[dac-") and (m := re.match(r"\[dac-([0-9a-f-]{36})-", header)):
                    rule = by_id.get(m.group(1))
                    break
        return f"rule {rule.path}:{rule.line}" if rule else None
    return owner_of


def generated_roots(layout: Layout) -> list[Path]:
    """Folders whose every file is generated: checked for staleness, stale files deleted."""
    return [layout.conversions, *generated_app_dirs(layout), layout.root / ANALYTICS_DIR, layout.root / ARM_DIR, layout.root / HUNTING_DIR]


def existing_artifacts(layout: Layout) -> dict[str, str]:
    files = {}
    for root in generated_roots(layout):
        if root.is_dir():
            files.update({layout.rel(p): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*")) if p.is_file()})
    # generated files outside those folders (the Sentinel version lock), compared when present
    for path in GENERATED_FILES:
        if (layout.root / path).is_file():
            files[path] = (layout.root / path).read_text(encoding="utf-8")
    return dict(sorted(files.items()))


def stale_report(desired: dict[str, str], layout: Layout) -> list[str]:
    """Unified diffs and notes for every file that differs from what would be generated."""
    on_disk = existing_artifacts(layout)
    report = []
    for path in sorted(set(desired) | set(on_disk)):
        old, new = on_disk.get(path), desired.get(path)
        if old == new:
            continue
        if old is None:
            report.append(f"missing: {path}")
        elif new is None:
            report.append(f"stale (no rule generates it): {path}")
        else:
            report.append("".join(difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}")))
    return report


def write_artifacts(desired: dict[str, str], layout: Layout) -> tuple[int, int]:
    """Write changed files atomically, delete stale ones. Returns (written, deleted)."""
    on_disk = existing_artifacts(layout)
    roots = generated_roots(layout)
    written = 0
    for path, content in desired.items():
        if on_disk.get(path) == content:
            continue
        write_text_atomic(layout.root / path, content)
        written += 1
    stale = [p for p in on_disk if p not in desired]
    for path in stale:
        (layout.root / path).unlink()
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted(root.rglob("*"), reverse=True) + ([root] if root != layout.conversions else []):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return written, len(stale)
