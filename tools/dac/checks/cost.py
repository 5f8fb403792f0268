"""Run the query-cost checks (dac.checks.spl_cost, dac.checks.kql_cost) over generated files for `dac
validate`: a violation is an error naming rule, target and clause, unless
sigma/cost_exceptions.yml lists its check and clause with a reason; a listed exception that
no query needs is an error too."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .kql_cost import check_kql_cost
from dac.core.problems import Problem
from .spl_cost import check_spl_cost

EXCEPTIONS = "sigma/cost_exceptions.yml"


def load_exceptions(root: Path) -> tuple[list[dict], list[Problem]]:
    path = root / EXCEPTIONS
    if not path.is_file():
        return [], []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries, problems = [], []
    for i, entry in enumerate(data.get("exceptions") or []):
        checks = entry.get("check") if isinstance(entry, dict) else None
        if (not isinstance(checks, list) or not isinstance(entry.get("clause"), str)
                or not str(entry.get("reason") or "").strip()):
            problems.append(Problem(EXCEPTIONS, None, f"exception {i + 1} needs check: [..], clause and reason"))
            continue
        entries.append(entry)
    return entries, problems


def _owners(files: dict[str, str]) -> dict[str, str]:
    """Generated path -> "rule R, target T", from conversions/manifest.json when it is there."""
    try:
        manifest = json.loads(files.get("conversions/manifest.json", "{}"))
    except ValueError:
        return {}
    owners = {a["path"]: f"rule {a.get('rule_name')}, target {a.get('target')}" for a in manifest.get("artifacts", [])}
    owners.update({h["path"]: f"hunting query {h.get('name', Path(h['path']).stem)}"
                   for h in manifest.get("hunting", []) if "path" in h})
    return owners


def check_cost(files: dict[str, str], root: Path) -> list[Problem]:
    exceptions, problems = load_exceptions(root)
    used = set()
    owners = _owners(files)
    for path, text in sorted(files.items()):
        if path.endswith(".spl"):
            found = [(None, v) for v in check_spl_cost(text)]
        elif path.endswith(".kql"):
            found = [(v.line, v) for v in check_kql_cost(text)]
        else:
            continue
        for line, v in found:
            listed = next((i for i, e in enumerate(exceptions) if v.check in e["check"] and e["clause"] == v.clause), None)
            if listed is not None:
                used.add(listed)
                continue
            owner = owners.get(path, path)
            problems.append(Problem(path, line, f"cost ({owner}): {v.message}"))
    for i, e in enumerate(exceptions):
        if i not in used:
            problems.append(Problem(EXCEPTIONS, None, f"exception for {e['check']} `{e['clause'][:80]}` is not needed by any "
                                                      "generated query: remove it"))
    return problems
