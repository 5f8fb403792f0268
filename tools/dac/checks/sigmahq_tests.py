"""Equivalents of the checks of SigmaHQ's rule tests and linters that pySigma's validators do not
make, written from their documented behaviour:

  sigmahq_test_trademark     tests/test_rules.py: no "ATT&CK" trademark in a rule file (say
                             "MITRE technique" or use the attack.tNNNN tag)
  sigmahq_test_duplicate_id  tests/test_rules.py: every rule id is used once
  sigmahq_test_references    tests/test_rules.py: references are a list of http(s) URLs, each once
  sigmahq_test_one_document  one YAML document per file (SigmaHQ's JSON-schema action parses a
                             single document; its yamllint forbids `---`)
  sigmahq_test_logsource     tests/test_logsource.py: product, category and service, and their
                             combination, are in SigmaHQ's taxonomy
  sigmahq_test_filename      tests/test_logsource.py: the file name starts with the prefix SigmaHQ
                             gives the log source (correlation rules: correlation_)
  sigmahq_test_schema        the JSON-schema check of SigmaHQ's rule repository: each file parses as
                             one YAML document that satisfies a JSON Schema of a Sigma rule
                             (sigma/reference/schema/sigma-rule.schema.json, written from the Sigma
                             specification)
  yamllint                   yamllint with SigmaHQ's settings (sigma/reference/sigmahq/yamllint.yml)

The taxonomy and prefixes are SigmaHQ's (sigma/reference/sigmahq) plus the entries of
sigma/lint_exceptions.yml.
"""
from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import yaml
from sigma.correlations import SigmaCorrelationRule

from .findings import Finding
from .lint_exceptions import TaxonomyEntry
from dac.rules.ruleset import LoadedRule, RuleSet

YAMLLINT_CONFIG = "sigma/reference/sigmahq/yamllint.yml"
RULE_SCHEMA = "sigma/reference/schema/sigma-rule.schema.json"
TRADEMARK = re.compile(r"att&ck", re.IGNORECASE)
URL = re.compile(r"^https?://\S+$")
CORRELATION_PREFIX = "correlation_"
LOGSOURCE_KEYS = ("product", "category", "service")


def _by_path(ruleset: RuleSet) -> dict[str, list[LoadedRule]]:
    out: dict[str, list[LoadedRule]] = {}
    for item in ruleset.rules:
        out.setdefault(item.path, []).append(item)
    return out


def _jsonable(value):
    """YAML values as JSON sees them: dates as YYYY-MM-DD strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def _schema_findings(path: str, text: str, rule_id: str, schema: dict | None) -> list[Finding]:
    if schema is None:
        return []
    try:
        document = yaml.safe_load(text)
    except yaml.composer.ComposerError as e:          # what the action reports on a multi-document file
        return [Finding(path, None, "error", "sigmahq_test_schema", f"not one YAML document: {e.problem}", rule_id)]
    except yaml.YAMLError as e:
        return [Finding(path, None, "error", "sigmahq_test_schema", f"malformed YAML: {e}", rule_id)]
    import jsonschema
    validator = jsonschema.Draft202012Validator(schema)
    return [Finding(path, None, "error", "sigmahq_test_schema",
                    f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}", rule_id)
            for e in sorted(validator.iter_errors(_jsonable(document)), key=lambda e: list(map(str, e.absolute_path)))]


def _file_findings(root: Path, path: str, items: list[LoadedRule], yamllint_conf, schema: dict | None = None) -> list[Finding]:
    rule_id = str(items[0].rule.id)
    try:
        text = (root / path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    lines = text.splitlines()
    findings = [Finding(path, n, "error", "sigmahq_test_trademark",
                        "the ATT&CK trademark in a rule file: say \"MITRE technique\" or use the attack.tNNNN tag", rule_id)
                for n, line in enumerate(lines, 1) if TRADEMARK.search(line)]
    if len(items) > 1:
        findings.append(Finding(path, items[1].line, "error", "sigmahq_test_one_document",
                                f"{len(items)} YAML documents in one file: one rule per file "
                                f"(a correlation in its own {CORRELATION_PREFIX}*.yml file)", rule_id))
    findings += _schema_findings(path, text, rule_id, schema)
    if yamllint_conf is not None:
        from yamllint import linter
        for problem in linter.run(text, yamllint_conf, str(root / path)):
            findings.append(Finding(path, problem.line, "error" if problem.level == "error" else "warning",
                                    "yamllint", f"{problem.desc} ({problem.rule})", rule_id))
    return findings


def _reference_findings(item: LoadedRule) -> list[Finding]:
    rule_id, line = str(item.rule.id), item.key_lines.get("references", item.line)
    references = item.rule.references
    if references is None:
        return []
    if not isinstance(references, list):
        return [Finding(item.path, line, "error", "sigmahq_test_references", "references must be a list", rule_id)]
    findings, seen = [], set()
    for ref in references:
        if not isinstance(ref, str) or not URL.match(ref):
            findings.append(Finding(item.path, line, "error", "sigmahq_test_references", f"reference {ref!r} is not an http(s) URL", rule_id))
        elif ref in seen:
            findings.append(Finding(item.path, line, "error", "sigmahq_test_references", f"reference {ref} is listed twice", rule_id))
        seen.add(ref)
    return findings


def _logsource(item: LoadedRule) -> dict[str, str]:
    ls = item.rule.logsource
    return {k: str(getattr(ls, k)) for k in LOGSOURCE_KEYS if getattr(ls, k)}


def _logsource_findings(item: LoadedRule, known: list[dict[str, str]]) -> list[Finding]:
    ls = _logsource(item)
    rule_id, line = str(item.rule.id), item.key_lines.get("logsource", item.line)
    findings = []
    for key, value in ls.items():
        if value not in {k.get(key) for k in known}:
            findings.append(Finding(item.path, line, "error", "sigmahq_test_logsource",
                                    f"logsource {key} {value!r} is not in SigmaHQ's taxonomy", rule_id))
    if not findings and ls not in known:
        findings.append(Finding(item.path, line, "error", "sigmahq_test_logsource",
                                f"logsource {ls} is not a combination SigmaHQ's taxonomy defines", rule_id))
    return findings


def _filename_findings(item: LoadedRule, prefixes: list[tuple[dict[str, str], str]]) -> list[Finding]:
    name = Path(item.path).name
    if isinstance(item.rule, SigmaCorrelationRule):
        expected = CORRELATION_PREFIX
    else:
        ls = _logsource(item)
        expected = next((p for logsource, p in prefixes if logsource == ls), None)
        if expected is None:
            return []           # no convention for an unknown log source: sigmahq_test_logsource says so
    if name.startswith(expected):
        return []
    return [Finding(item.path, item.line, "error", "sigmahq_test_filename",
                    f"file name {name!r} should start with {expected!r}", str(item.rule.id))]


def sigmahq_test_findings(root: Path, ruleset: RuleSet, taxonomy: dict, filenames: dict,
                          extension: tuple[TaxonomyEntry, ...]) -> list[Finding]:
    """Every finding of the checks above; `taxonomy`, `filenames` are SigmaHQ's JSON documents."""
    known = [{k: str(v) for k, v in info["logsource"].items() if v} for info in taxonomy["taxonomy"].values()]
    known += [dict(e.logsource) for e in extension]
    prefixes = [({k: str(v) for k, v in info["logsource"].items() if v}, info["prefix"]) for info in filenames["pattern"].values()]
    prefixes += [(dict(e.logsource), e.prefix) for e in extension]
    conf = _yamllint_config(root)
    findings: list[Finding] = []
    if conf is None:      # never skipped silently
        findings.append(Finding(YAMLLINT_CONFIG, None, "error", "yamllint", "SigmaHQ's yamllint settings are missing: yamllint did not run"))
    schema = _rule_schema(root)
    if schema is None:
        findings.append(Finding(RULE_SCHEMA, None, "error", "sigmahq_test_schema", "the rule JSON Schema is missing: the schema check did not run"))
    for path, items in sorted(_by_path(ruleset).items()):
        findings += _file_findings(root, path, items, conf, schema)
    first: dict[str, LoadedRule] = {}
    for item in ruleset.rules:
        rule_id = str(item.rule.id)
        if rule_id in first:
            findings.append(Finding(item.path, item.key_lines.get("id", item.line), "error", "sigmahq_test_duplicate_id",
                                    f"rule id {rule_id} is also used by {first[rule_id].path}", rule_id))
        first.setdefault(rule_id, item)
        findings += _reference_findings(item)
        if not isinstance(item.rule, SigmaCorrelationRule):
            findings += _logsource_findings(item, known)
        findings += _filename_findings(item, prefixes)
    return findings


def _rule_schema(root: Path) -> dict | None:
    try:
        return json.loads((root / RULE_SCHEMA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _yamllint_config(root: Path):
    from yamllint.config import YamlLintConfig
    path = root / YAMLLINT_CONFIG
    if not path.is_file():
        return None
    return YamlLintConfig(content=path.read_text(encoding="utf-8"))
