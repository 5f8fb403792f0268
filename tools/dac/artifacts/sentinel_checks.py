"""Checks of the generated Sentinel files shared by `dac validate` and the tests: each analytic
template against sentinel/schemas/analytic_rule.schema.json, and every column an entity mapping or
custom detail names present in the query's output (Kusto.Language's result columns)."""

from __future__ import annotations

import json
import re

import yaml

from dac.core.problems import Problem
from dac.core.repo import Layout
from .sentinel_analytics import ANALYTICS_DIR


def load_schema(layout: Layout) -> dict:
    return json.loads((layout.root / "sentinel" / "schemas" / "analytic_rule.schema.json").read_text(encoding="utf-8"))


def schema_errors(doc: dict, schema: dict) -> list[str]:
    """Every JSON Schema violation of a template document, as `path: message` (needs jsonschema)."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                  for e in validator.iter_errors(doc))


def referenced_columns(doc: dict) -> list[str]:
    """The query output columns a template relies on: entity mappings, custom details, overrides."""
    columns = [f["columnName"] for m in doc.get("entityMappings") or [] for f in m.get("fieldMappings") or []]
    columns += list((doc.get("customDetails") or {}).values())
    override = doc.get("alertDetailsOverride") or {}
    columns += [override[k] for k in ("alertTacticsColumnName", "alertSeverityColumnName") if override.get(k)]
    columns += [p["value"] for p in override.get("alertDynamicProperties") or [] if p.get("value")]
    for key in ("alertDisplayNameFormat", "alertDescriptionFormat"):
        columns += re.findall(r"\{\{(\w+)\}\}", override.get(key) or "")
    return list(dict.fromkeys(columns))


def check_sentinel_files(files: dict[str, str], layout: Layout) -> list[Problem]:
    """Problems in generated Sentinel templates, for `dac validate` / `dac build`.

    Each sentinel/analytics/*.yaml must satisfy the JSON Schema, and every column its entity
    mappings, custom details and alert overrides name must be an output column of its query
    (Kusto.Language against sentinel/schemas/). Needs jsonschema and the Kusto analyzer.
    """
    from dac.compile.kql_analyzer import load_schemas, result_columns
    problems, templates = [], {}
    for path, text in sorted(files.items()):
        if not (path.startswith(ANALYTICS_DIR + "/") and path.endswith(".yaml")):
            continue
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problems.append(Problem(path, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}"))
            continue
        if not isinstance(doc, dict):
            problems.append(Problem(path, 1, "an analytic rule template must be a YAML mapping"))
            continue
        templates[path] = doc
    if not templates:
        return problems
    schema = load_schema(layout)
    for path, doc in list(templates.items()):
        errors = schema_errors(doc, schema)
        problems += [Problem(path, None, f"schema: {e}") for e in errors]
        if errors:                       # the column check needs a well-formed template
            del templates[path]
    queries = {p: d["query"] for p, d in templates.items()}
    columns = result_columns(queries, load_schemas(layout.schemas), layout.kusto_analyzer)
    for path, doc in templates.items():
        if path not in columns:
            continue
        lines = files[path].splitlines()
        start = next((n for n, text in enumerate(lines) if text.startswith("entityMappings:")), 0)
        for column in referenced_columns(doc):
            if column not in columns[path]:
                value = re.compile(rf"^\s*(?:- )?\w+: ['\"]?{re.escape(column)}['\"]?\s*$")
                line = next((n + 1 for n in range(start, len(lines)) if value.match(lines[n])), None)
                shown = ", ".join(columns[path][:12]) + (", ..." if len(columns[path]) > 12 else "")
                problems.append(Problem(path, line, f"column {column!r} is mapped but the query does not output it "
                                                    f"(it outputs: {shown or 'no table'})"))
    return problems
