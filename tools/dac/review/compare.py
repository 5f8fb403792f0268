"""What changed between the two sides of a review: rules (matched by id), generated files,
verdicts on the labelled logs, scores, labels, the deploy plan (head planned against base, no
SIEM contacted), lint findings and metric deltas. Each comparison is data for the report."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from dac.core.problems import DacError, Problem
from .sides import Side, rule_docs


DIFF_LINE_LIMIT = 120            # per file, in the collapsible diffs


def rule_changes(base: Side, head: Side) -> list[dict]:
    before, after = rule_docs(base), rule_docs(head)
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
        for rid, doc in rule_docs(side).items():
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
