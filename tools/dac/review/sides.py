"""The two sides of a review: the base ref extracted from git into a temporary folder and the
working tree, each compiled, built and (unless asked not to) replayed by this checkout's dac."""

from __future__ import annotations

import io
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dac.artifacts.build import build_artifacts, existing_artifacts
from dac.compile.convert import Query, compile_rules
from dac.compile.targets import load_targets
from dac.core.problems import DacError
from dac.core.repo import Layout
from dac.rules.ruleset import RuleSet, load_rules, load_yaml_text


class ReviewError(Exception):
    pass


@dataclass
class Side:
    """One side of the comparison: what compiles, what is generated, how the replay went."""
    label: str
    layout: Layout
    ruleset: RuleSet | None = None
    queries: list[Query] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)      # compile/load problems
    replay: object | None = None                             # replay.Report
    labels: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def _git(root: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True)
    if proc.returncode:
        raise ReviewError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def extract_ref(root: Path, ref: str, into: Path) -> str:
    """The tree of `ref` in `into`; returns the full commit id."""
    try:
        commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except ReviewError:
        raise ReviewError(f"unknown git ref {ref!r} (fetch it first, e.g. git fetch origin {ref})") from None
    archive = _git(root, "archive", "--format=tar", commit)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit


def _load_side(label: str, layout: Layout, replay: bool) -> Side:
    side = _load_side_raw(label, layout, replay)
    # the base lives in a temporary folder: its path must not reach the (deterministic) report
    side.problems = [p.replace(str(layout.root) + "/", "") for p in side.problems]
    return side


def _load_side_raw(label: str, layout: Layout, replay: bool) -> Side:
    from dac.replay.labelled import run_labelled
    side = Side(label, layout)
    try:
        side.ruleset = load_rules(layout)
        targets, side.config = load_targets(layout)
        side.queries = compile_rules(side.ruleset, targets)
    except DacError as e:
        side.problems = [str(p) for p in e.problems]
        return side
    try:
        side.files = build_artifacts(side.queries, side.config, layout)
    except DacError as e:
        # e.g. a base older than some generated file's inputs: compare with what it checked in
        side.problems = [str(p) for p in e.problems]
        side.files = existing_artifacts(layout)
    side.labels = _labels(layout)
    if replay and (layout.root / "testdata").is_dir():
        try:
            side.replay = run_labelled(layout, side.ruleset, side.queries, config=side.config)
        except DacError as e:
            side.problems += [str(p) for p in e.problems]
    return side


def _labels(layout: Layout) -> dict[tuple[str, str], list[str]]:
    labels = {}
    for path in sorted((layout.root / "testdata").rglob("*.labels.yml")) if (layout.root / "testdata").is_dir() else []:
        text = path.read_text(encoding="utf-8")
        try:
            data = load_yaml_text(text) or {}       # libyaml where PyYAML has it, kept per text
        except yaml.YAMLError:
            continue
        for key, ids in (data.get("events") or {}).items():
            labels[(layout.rel(path), str(key))] = sorted(str(i) for i in ids or [])
    return labels


def rule_docs(side: Side) -> dict[str, dict]:
    """rule id -> {name, path, text} for every rule (generated or not)."""
    docs = {}
    for item in side.ruleset.rules if side.ruleset else []:
        docs[str(item.rule.id)] = {"name": item.name, "path": item.path, "stem": item.stem,
                                   "text": yaml.safe_dump(item.rule.to_dict(), sort_keys=True)}
    return docs
