"""`dac review --base <ref>`: what a pull request does to every SIEM query and to detection
quality, as one Markdown report (and JSON) a reviewer can read without running anything.

The base is the given git ref, extracted to a temporary folder; the head is the working tree.
Both are compiled and replayed by this checkout's dac, so differences come from the rules,
pipelines, settings and labels, not from the tool. Rules are matched by id (a moved file is a
change, not a delete and an add). Nothing contacts a SIEM: the deploy plan is the head's
objects planned against the base's, as if the SIEM held exactly what the base deployed.
"""
from __future__ import annotations

import difflib
import io
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dac.artifacts.build import build_artifacts, existing_artifacts, stale_report
from dac.compile.convert import Query, compile_rules
from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from dac.rules.ruleset import RuleSet, load_rules
from dac.compile.targets import load_targets

MARKER = "<!-- dac-review -->"
COMMENT_LIMIT = 60_000           # GitHub refuses comments over 65,536 characters
DIFF_LINE_LIMIT = 120            # per file, in the collapsible diffs


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


# --------------------------------------------------------------------------- git

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


# --------------------------------------------------------------------------- one side

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
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        for key, ids in (data.get("events") or {}).items():
            labels[(layout.rel(path), str(key))] = sorted(str(i) for i in ids or [])
    return labels


def _rule_docs(side: Side) -> dict[str, dict]:
    """rule id -> {name, path, text} for every rule (generated or not)."""
    docs = {}
    for item in side.ruleset.rules if side.ruleset else []:
        docs[str(item.rule.id)] = {"name": item.name, "path": item.path, "stem": item.stem,
                                   "text": yaml.safe_dump(item.rule.to_dict(), sort_keys=True)}
    return docs


# --------------------------------------------------------------------------- comparisons

def rule_changes(base: Side, head: Side) -> list[dict]:
    before, after = _rule_docs(base), _rule_docs(head)
    changes = []
    for rid in sorted(set(before) | set(after)):
        old, new = before.get(rid), after.get(rid)
        if old is None:
            changes.append({"change": "added", "id": rid, "name": new["name"], "path": new["path"]})
        elif new is None:
            changes.append({"change": "removed", "id": rid, "name": old["name"], "path": old["path"]})
        elif old["text"] != new["text"] or old["path"] != new["path"]:
            entry = {"change": "changed", "id": rid, "name": new["name"], "path": new["path"]}
            if old["path"] != new["path"]:
                entry["moved_from"] = old["path"]
            changes.append(entry)
    order = {"removed": 0, "changed": 1, "added": 2}
    return sorted(changes, key=lambda c: (order[c["change"]], c["name"]))


def _owner_of(path: str, stems: dict[str, str]) -> str | None:
    """Rule id a generated file belongs to (by file stem), or None for shared files."""
    stem = Path(path).name.split(".")[0]
    return stems.get(stem)


def _conf_stanzas(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    from dac.artifacts.splunk_conf import parse_conf, render_conf
    return {name: render_conf([(name, attrs)], header="").strip() for name, attrs in parse_conf(text).items()}


def artifact_diffs(base: Side, head: Side) -> dict[str, list[tuple[str, str]]]:
    """rule id (or "shared") -> [(name, unified diff)] for every generated file or Splunk stanza
    that differs between base and head."""
    stems = {}
    for side in (base, head):
        for rid, doc in _rule_docs(side).items():
            stems[doc["stem"]] = rid
    grouped: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(set(base.files) | set(head.files)):
        old, new = base.files.get(path), head.files.get(path)
        if old == new:
            continue
        if path.endswith("savedsearches.conf"):
            before, after = _conf_stanzas(old), _conf_stanzas(new)
            for stanza in sorted(set(before) | set(after)):
                if before.get(stanza) != after.get(stanza):
                    rid = next((r for r in stems.values() if r.lower() in stanza), None)
                    grouped.setdefault(rid or "shared", []).append(
                        (f"{path} [{stanza}]", _diff(before.get(stanza), after.get(stanza), f"{path} [{stanza}]")))
            continue
        rid = _owner_of(path, stems) if not path.endswith("manifest.json") else None
        grouped.setdefault(rid or "shared", []).append((path, _diff(old, new, path)))
    return grouped


def _diff(old: str | None, new: str | None, name: str) -> str:
    lines = list(difflib.unified_diff((old or "").splitlines(), (new or "").splitlines(),
                                      f"a/{name}" if old is not None else "/dev/null",
                                      f"b/{name}" if new is not None else "/dev/null", lineterm="", n=2))
    if len(lines) > DIFF_LINE_LIMIT:
        lines = lines[:DIFF_LINE_LIMIT] + [f"… {len(lines) - DIFF_LINE_LIMIT} more diff lines (run `dac review` locally)"]
    return "\n".join(lines)


def _hits(report) -> dict[tuple, set]:
    """(rule id, target, log, engine) -> keys the engine reported."""
    out = {}
    for v in report.verdicts if report else []:
        for engine, keys in v.engines.items():
            if keys is not None:
                out[(v.rule_id, v.target, v.log, engine)] = {str(k) for k in keys}
    return out


def _expected(report) -> dict[tuple, set]:
    return {(v.rule_id, v.target, v.log): {str(k) for k in v.expected} for v in report.verdicts} if report else {}


def verdict_changes(base: Side, head: Side) -> list[dict]:
    """Every event whose verdict changed, classified against the head's labels; new false
    positives and lost true positives first."""
    if base.replay is None or head.replay is None:
        return []               # the report says which side could not be replayed
    before, after = _hits(base.replay), _hits(head.replay)
    # the head's labels decide; a removed rule has none there, so its base labels do
    expected = {**_expected(base.replay), **_expected(head.replay)}
    names = {v.rule_id: v.rule for r in (base.replay, head.replay) if r for v in r.verdicts}
    found: dict[tuple, dict] = {}
    for key in sorted(set(before) | set(after)):
        rule_id, target, log, engine = key
        old, new = before.get(key, set()), after.get(key, set())
        wanted = expected.get((rule_id, target, log), set())
        for event in sorted(new - old):
            kind = "new true positive" if event in wanted else "new false positive"
            found.setdefault((kind, rule_id, target, log, event), set()).add(engine)
        for event in sorted(old - new):
            kind = "lost true positive" if event in wanted else "false positive removed"
            found.setdefault((kind, rule_id, target, log, event), set()).add(engine)
    order = {"new false positive": 0, "lost true positive": 1, "false positive removed": 2, "new true positive": 3}
    rows = [{"kind": k, "rule": names.get(r, r), "rule_id": r, "target": t, "log": l, "event": e, "engines": sorted(engines)}
            for (k, r, t, l, e), engines in found.items()]
    return sorted(rows, key=lambda x: (order[x["kind"]], x["rule"], x["target"], x["log"], x["event"]))


def score_table(base: Side, head: Side) -> list[dict]:
    """Per rule x target: TP/FP/FN before and after (Sigma engine as the reference, which runs
    on every target; the engines must agree anyway or dac test fails)."""
    def scores(report):
        out: dict[tuple, list[int]] = {}
        for v in report.verdicts if report else []:
            keys = v.engines.get("sigma")
            if keys is None:
                continue
            s = out.setdefault((v.rule, v.target), [0, 0, 0])
            s[0] += len(keys & v.expected)
            s[1] += len(keys - v.expected)
            s[2] += len(v.expected - keys)
        return out
    old, new = scores(base.replay), scores(head.replay)
    return [{"rule": r, "target": t, "before": old.get((r, t)), "after": new.get((r, t))} for r, t in sorted(set(old) | set(new))]


def label_changes(base: Side, head: Side) -> list[dict]:
    out = []
    for key in sorted(set(base.labels) | set(head.labels)):
        if base.labels.get(key) != head.labels.get(key):
            out.append({"file": key[0], "event": key[1], "before": base.labels.get(key), "after": head.labels.get(key)})
    return out


def deploy_changes(base: Side, head: Side) -> list[dict]:
    """The plan `dac deploy --apply --prune` would carry out on a SIEM holding the base's objects."""
    from dac.compile.compose import hunting_specs
    from dac.deploy.plan import LiveObject, make_plan, stamped
    out = []
    for siem in ("splunk", "sentinel"):
        try:
            desired = {s.label: _desired(siem, s, hunting_specs) for s in (base, head)}
        except (DacError, ValueError, KeyError):
            continue
        if desired[base.label] is None and desired[head.label] is None:
            continue
        normalize, objects = _normalizer(siem), desired[base.label] or []
        live = [LiveObject(d.key, stamped(d, normalize).attributes, True) for d in objects]
        for change in make_plan(desired[head.label] or [], live, normalize, prune=True):
            if change.action != "unchanged":
                out.append({"siem": siem, "action": change.action, "object": change.key, "label": change.label,
                            "changed": change.changed})
    return out


def _normalizer(siem: str):
    if siem == "splunk":
        from dac.deploy.splunk import normalize
    else:
        from dac.deploy.sentinel import normalize
    return normalize


def _desired(siem: str, side: Side, hunting_specs):
    if not side.queries:
        return None
    if siem == "splunk":
        from dac.deploy.splunk import desired_objects
        from dac.artifacts.splunk_searches import saved_searches
        from dac.artifacts.splunk_config import load_app_config
        app_config = load_app_config(side.layout)
        if app_config is None:
            return None
        return desired_objects(saved_searches(side.queries, app_config, hunting_specs(side.config, "sigma/targets.yml")))
    from dac.deploy.sentinel import desired_objects
    from dac.artifacts.sentinel_analytics import alert_rules
    from dac.artifacts.sentinel_config import load_analytics_config
    config = load_analytics_config(side.layout)
    if config is None:
        return None
    return desired_objects(alert_rules(side.queries, config, side.config))


def findings(head: Side) -> list[dict]:
    """Validator findings on the head: pySigma's SigmaHQ validators and the project's checks
    (dac.checks.lint), ATT&CK tags, and the generated queries' validation (KQL analyzer, SPL checks,
    Sentinel templates)."""
    from dac.checks.validate import validate_artifacts
    out = []
    if not head.ruleset:
        return out
    from dac.checks.lint import lint_rules
    try:
        for f in lint_rules(head.layout, head.ruleset, head.queries):     # includes the KQL analyzer's hints, per rule
            out.append({"severity": f.severity, "where": f"{f.path}:{f.line}" if f.line else f.path,
                        "check": f.validator, "message": f.message})
    except DacError as e:          # e.g. the offline reference data is missing
        out += [{"severity": "error", "where": _where(p), "check": "lint", "message": p.message} for p in e.problems]
    for p in validate_artifacts(head.files, head.layout).errors:
        out.append({"severity": "error", "where": _where(p), "check": "validate", "message": p.message})
    seen, unique = set(), []
    for f in out:
        key = (f["severity"], f["where"], f["message"])
        if key not in seen:
            seen.add(key)
            unique.append(f)
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(unique, key=lambda f: (order.get(f["severity"], 3), f["where"], f["check"], f["message"]))


def _where(p: Problem) -> str:
    return f"{p.path}:{p.line}" if p.line else p.path


def metric_deltas(base: Side, head: Side) -> list[dict]:
    """Precision, recall and F1 over the truth labels per tier and per alert-tier rule x target,
    before and after, for every row that changed (a base without truth labels has none)."""
    def table(side: Side) -> dict[str, dict]:
        metrics = getattr(side.replay, "metrics", None) if side.replay else None
        if metrics is None:
            return {}
        data = metrics.as_dict()
        rows = {f"tier {k}": v for k, v in data["tiers"].items()}
        rows.update({f"{k}": v for k, v in data["rules"].items()})
        rows["benign events that alert"] = {"count": data["benign_alerts"]}
        return rows
    before, after = table(base), table(head)
    out = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            out.append({"name": name, "before": before.get(name), "after": after.get(name)})
    return out


# --------------------------------------------------------------------------- report

def review(root: Path, base_ref: str, replay: bool = True, backtest=None) -> dict:
    """`backtest`: a review_backtest.ReviewBacktest to run the changed rules on the SIEM (when
    credentials are there), or None for no backtest section at all."""
    head = _load_side("head", Layout(root), replay)
    with tempfile.TemporaryDirectory(prefix="dac-review-") as tmp:
        commit = extract_ref(root, base_ref, Path(tmp))
        base = _load_side("base", Layout(Path(tmp)), replay)
        result = {
            "base": {"ref": base_ref, "commit": commit, "problems": base.problems},
            "rules": rule_changes(base, head),
            "artifacts": {k: [{"name": n, "diff": d} for n, d in v] for k, v in sorted(artifact_diffs(base, head).items())},
            "verdict_changes": verdict_changes(base, head),
            "scores": score_table(base, head),
            "metrics": metric_deltas(base, head),
            "label_changes": label_changes(base, head),
            "deploy_plan": deploy_changes(base, head),
            "replayed_base": base.replay is not None,
            "replayed": base.replay is not None and head.replay is not None,
        }
        if backtest is not None:
            from .backtest import review_backtest
            changed = {c["id"] for c in result["rules"]}
            result["backtest"] = review_backtest(Path(tmp), base.files, head.files, changed, backtest)
    result["head"] = {"problems": head.problems,
                      "stale": [s.splitlines()[0] for s in stale_report(head.files, head.layout)] if head.files else [],
                      "test_failures": list(head.replay.failures) if head.replay else [],
                      "skipped_lines": list(head.replay.skipped_lines) if head.replay else []}
    result["findings"] = findings(head)
    result["blockers"] = _blockers(result)
    result["verdict"] = "blocked" if result["blockers"] else "ready"
    return result


def _blockers(r: dict) -> list[str]:
    blockers = []
    if r["head"]["problems"]:
        blockers.append(f"{len(r['head']['problems'])} problem(s) in the rules, settings or labels")
    if r["head"]["stale"]:
        blockers.append(f"{len(r['head']['stale'])} generated file(s) not regenerated: run `dac convert` and commit")
    new_fp = sum(1 for c in r["verdict_changes"] if c["kind"] == "new false positive")
    lost_tp = sum(1 for c in r["verdict_changes"] if c["kind"] == "lost true positive")
    if new_fp:
        blockers.append(f"{new_fp} new false positive(s) on the labelled logs")
    if lost_tp:
        blockers.append(f"{lost_tp} lost true positive(s) on the labelled logs")
    if r["head"]["test_failures"]:
        blockers.append(f"`dac test` fails ({len(r['head']['test_failures'])} failure(s))")
    errors = sum(1 for f in r["findings"] if f["severity"] == "error")
    if errors:
        blockers.append(f"{errors} validator error(s)")
    return blockers


def _fence(text: str, lang: str = "diff") -> str:
    return f"```{lang}\n{text.replace('```', '` ` `')}\n```"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(r: dict) -> str:
    head = [MARKER]
    if r["verdict"] == "ready":
        head.append("## dac review: ✅ ready")
    else:
        head.append("## dac review: ⛔ blocked — " + "; ".join(r["blockers"]))
    head.append(f"Base `{r['base']['ref']}` (`{r['base']['commit'][:12]}`) → this pull request.")
    body: list[str] = []

    body.append("\n### Rules")
    if r["rules"]:
        body += ["| change | rule | id | file |", "|---|---|---|---|"]
        for c in r["rules"]:
            moved = f" (moved from `{c['moved_from']}`)" if c.get("moved_from") else ""
            body.append(f"| {c['change']} | {_cell(c['name'])} | `{c['id']}` | `{c['path']}`{moved} |")
    else:
        body.append("No rule added, changed or removed.")

    body.append("\n### Detection quality on the labelled sample logs")
    important = [c for c in r["verdict_changes"] if c["kind"] in ("new false positive", "lost true positive")]
    other = [c for c in r["verdict_changes"] if c not in important]
    if important:
        body.append("**Verdicts that got worse** (a new false positive or a lost true positive):\n")
        body += ["| | rule | target | log | event | engines |", "|---|---|---|---|---|---|"]
        body += [f"| ⚠️ {c['kind']} | {_cell(c['rule'])} | {c['target']} | `{c['log']}` | `{c['event']}` | {', '.join(c['engines'])} |"
                 for c in important]
    if other:
        body.append("\nOther verdict changes:\n")
        body += ["| | rule | target | log | event | engines |", "|---|---|---|---|---|---|"]
        body += [f"| {c['kind']} | {_cell(c['rule'])} | {c['target']} | `{c['log']}` | `{c['event']}` | {', '.join(c['engines'])} |"
                 for c in other]
    if r["base"]["problems"]:
        body.append("Notes on the base (" + r["base"]["commit"][:12] + "):\n")
        body += [f"- {_cell(p)}" for p in r["base"]["problems"][:20]]
        body.append("")
    if not r["replayed"]:
        body.append("Verdicts were not compared: " + ("the base" if not r["replayed_base"] else "this change")
                    + " could not be replayed (see the problems above and below).")
    elif not r["verdict_changes"]:
        body.append("No event's verdict changed.")
    if r.get("metrics"):
        def cell(m):
            if m is None:
                return "-"
            if "count" in m:
                return str(m["count"])
            return f"P {m['precision']} R {m['recall']} F1 {m['f1']} (FP {m['fp']})"
        body.append("\n**Metrics over the truth labels that changed** (before → after):\n")
        body += ["| what | before | after |", "|---|---|---|"]
        body += [f"| {_cell(m['name'])} | {cell(m['before'])} | {cell(m['after'])} |" for m in r["metrics"][:40]]
    changed_scores = [s for s in r["scores"] if s["before"] != s["after"]]
    rows = changed_scores or r["scores"]
    if rows:
        body.append("\n<details><summary>TP / FP / FN per rule × target (before → after)</summary>\n")
        body += ["| rule | target | before | after |", "|---|---|---|---|"]
        fmt = lambda s: "/".join(map(str, s)) if s else "—"
        body += [f"| {_cell(s['rule'])} | {s['target']} | {fmt(s['before'])} | {fmt(s['after'])} |" for s in r["scores"]]
        body.append("\n</details>")
    if r["label_changes"]:
        body.append("\n<details><summary>Label changes (" + str(len(r["label_changes"])) + ")</summary>\n")
        body += ["| file | event | before | after |", "|---|---|---|---|"]
        body += [f"| `{c['file']}` | `{c['event']}` | {c['before'] if c['before'] is not None else '—'} | "
                 f"{c['after'] if c['after'] is not None else '—'} |" for c in r["label_changes"]]
        body.append("\n</details>")
    failures = r["head"]["test_failures"]
    if failures:
        body.append("\n<details><summary>`dac test` failures (" + str(len(failures)) + ")</summary>\n")
        body.append(_fence("\n".join(failures[:50]) + (f"\n… {len(failures) - 50} more" if len(failures) > 50 else ""), "text"))
        body.append("\n</details>")

    body.append("\n### Validator findings")
    if r["head"]["problems"]:
        body.append(_fence("\n".join(r["head"]["problems"]), "text"))
    if r["head"]["stale"]:
        body.append("Generated files not up to date:\n" + "\n".join(f"- `{s}`" for s in r["head"]["stale"]))
    if r["findings"]:
        body += ["| severity | where | check | message |", "|---|---|---|---|"]
        body += [f"| {f['severity']} | `{f['where']}` | {f['check']} | {_cell(f['message'])} |" for f in r["findings"]]
    elif not r["head"]["problems"]:
        body.append("No findings.")

    body.append("\n### Deploy plan after merge")
    if r["deploy_plan"]:
        body += ["| SIEM | action | object | what changes |", "|---|---|---|---|"]
        body += [f"| {d['siem']} | {d['action']} | `{d['object']}` | {', '.join(d['changed'])} |" for d in r["deploy_plan"]]
        body.append("\n(Planned against a SIEM holding exactly what the base deploys; no SIEM was contacted.)")
    else:
        body.append("No SIEM object changes.")
    from .backtest import render_markdown as backtest_markdown
    body += backtest_markdown(r.get("backtest"))

    diffs: list[str] = ["\n### Generated artifacts"]
    names = {c["id"]: c["name"] for c in r["rules"]}
    if not r["artifacts"]:
        diffs.append("No generated file changed.")
    for owner, entries in r["artifacts"].items():
        title = "Shared files (manifest, hunting queries, app metadata)" if owner == "shared" else f"{names.get(owner, owner)} (`{owner}`)"
        section = [f"\n<details><summary>{_cell(title)}: {len(entries)} file(s) changed</summary>\n"]
        for entry in entries:
            section += [f"`{entry['name']}`", _fence(entry["diff"])]
        section.append("\n</details>")
        diffs.append("\n".join(section))

    ref = r["base"]["ref"]
    # a change that touches everything can outgrow a comment with its body alone: cut it too
    text, cut = _fit("\n".join(head), body, 400, "line(s) of this report", ref)
    if not cut:
        text, _ = _fit(text, diffs, 200, "diff section(s)", ref)
    return _blank_line_before_tables(text) + "\n"


def _fit(text: str, parts: list[str], margin: int, what: str, ref: str) -> tuple[str, int]:
    """Append parts while the comment stays under COMMENT_LIMIT; say how many were left out."""
    for i, part in enumerate(parts):
        if len(text) + len(part) + margin > COMMENT_LIMIT:
            left = len(parts) - i
            return (text + f"\n\n_Truncated: {left} more {what} do not fit a GitHub comment; run "
                    f"`dac review --base {ref}` locally for the whole report._"), left
        text += "\n" + part
    return text, 0


def _blank_line_before_tables(text: str) -> str:
    """GitHub Markdown only starts a table after a blank line (or a heading)."""
    out: list[str] = []
    for line in text.split("\n"):
        if line.startswith("| ") and out and out[-1].strip() and not out[-1].startswith(("|", "#")):
            out.append("")
        out.append(line)
    return "\n".join(out)


def render_json(r: dict) -> str:
    return json.dumps(r, indent=2, sort_keys=True, default=str) + "\n"
