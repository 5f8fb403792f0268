"""`dac lint`: what SigmaHQ's CI would report on the rules, then the project's own checks, offline.

Upstream checks, run as SigmaHQ runs them:

  pySigma validators  the set of SigmaHQ's `sigma check` configuration (every core and SigmaHQ
                      validator minus the few its config removes), listed in
                      sigma/reference/sigmahq/validators.yml
  sigmahq_test_*      equivalents of SigmaHQ's tests/test_rules.py and tests/test_logsource.py
                      checks (dac.checks.sigmahq_tests)
  yamllint            with SigmaHQ's settings (sigma/reference/sigmahq/yamllint.yml)

Project checks (named dac_*): ATT&CK tags against the local list (dac.rules.attack.check_attack_tags),
a technique tag, falsepositives, references and level present and not empty, every field mapped
by every target that supports the rule's log source, and, given the compiled queries, the Kusto
analyzer's hints on each rule's KQL.

Every finding fails `dac lint` unless sigma/lint_exceptions.yml lists it (rule id and check, with
a reason), in SigmaHQ's exclusion semantics; that file's taxonomy entries extend SigmaHQ's log
sources. It is the only place any check is relaxed: no validator is switched off in code.

The reference data they load is the repository's, never the network's: dac.checks.reference_data.
"""
from __future__ import annotations

import re
from dataclasses import fields as dc_fields, replace
from pathlib import Path

import yaml
from sigma.rule import SigmaLogSource, SigmaRule
from sigma.validation import SigmaValidator
from sigma.validators.base import SigmaValidationIssue, SigmaValidationIssueSeverity

from dac.compile.convert import Query, rule_fields
from dac.compile.targets import Target, load_targets
from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from dac.rules.attack import AttackData, TECHNIQUE_RE, check_attack_tags, load_techniques, tag_line
from dac.rules.ruleset import LoadedRule, RuleSet
from .findings import SEVERITIES, Finding
from .lint_exceptions import EXCEPTIONS_FILE, LintExceptions, load_exceptions
from .reference_data import SIGMAHQ_DIR, load_sigmahq_documents, use_local_reference_data
from .sigmahq_tests import sigmahq_test_findings

VALIDATORS_FILE = f"{SIGMAHQ_DIR}/validators.yml"

# issue class keyword -> the rule key whose line a finding points at
_KEY_HINTS = (("Falsepositive", "falsepositives"), ("Title", "title"), ("Description", "description"),
              ("Author", "author"), ("Modified", "modified"), ("Date", "date"), ("Status", "status"),
              ("Level", "level"), ("Reference", "references"), ("GithubLink", "references"),
              ("MitreLink", "references"), ("Tag", "tags"), ("Logsource", "logsource"),
              ("Correlation", "correlation"), ("Condition", "detection"), ("Detection", "detection"),
              ("Field", "detection"), ("Identifier", "id"), ("UnknownField", "title"))




# --- pySigma validators ----------------------------------------------------------------------

def sigmahq_validator_config(layout: Layout) -> list[str]:
    """The `validators:` list of SigmaHQ's sigma-cli configuration (sigma/reference/sigmahq/validators.yml)."""
    path = layout.root / VALIDATORS_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise DacError([Problem(VALIDATORS_FILE, None, f"SigmaHQ validator set: {e}")])
    names = data.get("validators") if isinstance(data, dict) else None
    if not isinstance(names, list) or not names or names[0] != "all":
        raise DacError([Problem(VALIDATORS_FILE, 1, "`validators:` must be a list starting with `all`")])
    return [str(n) for n in names]


def all_validators() -> dict[str, type]:
    from sigma.validators.core import validators as core
    from sigma.validators.sigmahq import validators as sigmahq
    return dict(sorted({**core, **sigmahq}.items()))


def enabled_validators(layout: Layout) -> dict[str, type]:
    """Identifier -> class of every validator SigmaHQ's configuration runs."""
    known = all_validators()
    removed = {n[1:] for n in sigmahq_validator_config(layout) if n.startswith("-")}
    unknown = sorted(removed - set(known))
    if unknown:
        raise DacError([Problem(VALIDATORS_FILE, None, f"removes validators pySigma does not have: {', '.join(unknown)}")])
    return {name: cls for name, cls in known.items() if name not in removed}


def _render(value) -> str:
    if isinstance(value, SigmaLogSource):
        return " ".join(f"{k}={v}" for k, v in (("product", value.product), ("category", value.category), ("service", value.service)) if v)
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_render(v) for v in value)
    return str(value)


def _issue_details(issue: SigmaValidationIssue) -> dict[str, object]:
    return {f.name: getattr(issue, f.name) for f in dc_fields(issue) if f.name not in ("rules", "severity", "description")}


def _find(lines: list[str], start: int, end: int, needle: str) -> int | None:
    """First line in start..end containing needle: exact case first, then ignoring case."""
    span = range(max(start, 1), min(end, len(lines)) + 1)
    return (next((n for n in span if needle in lines[n - 1]), None)
            or next((n for n in span if needle.lower() in lines[n - 1].lower()), None))


def _document_end(item: LoadedRule, lines: list[str]) -> int:
    for number in range(item.line + 1, len(lines) + 1):
        if lines[number - 1].strip() == "---":
            return number - 1
    return len(lines)


def _locate(item: LoadedRule, issue: SigmaValidationIssue, lines: list[str]) -> int:
    details = _issue_details(issue)
    end = _document_end(item, lines)
    if "tag" in details:
        return tag_line(item, str(details["tag"]), lines)
    if isinstance(details.get("techniques"), list) and details["techniques"]:   # e.g. a technique without its tactic
        return tag_line(item, str(details["techniques"][0]), lines)
    name = type(issue).__name__
    hinted = next((item.key_lines[key] for hint, key in _KEY_HINTS if hint in name and key in item.key_lines), None)
    start = item.key_lines.get("detection", item.line)
    field_line = None
    for key in ("field", "fieldname"):
        value = details.get(key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str) and value:
            if value in item.key_lines:
                return item.key_lines[value]
            field_line = _find(lines, start, end, f"{value}|") or _find(lines, start, end, f"{value}:")
            if field_line:
                break
    if details.get("value") is not None and str(details["value"]).strip("*"):
        line = _find(lines, field_line or start, end, str(details["value"]).strip("*"))
        if line:
            return line
    if field_line:
        return field_line
    if isinstance(details.get("detection_name"), str):       # a named detection (selection) of the rule
        line = _find(lines, start, end, f"{details['detection_name']}:")
        if line:
            return line
    if details.get("string") is not None:        # a detection value, as written in YAML
        text = str(details["string"])
        line = next((n for n in (_find(lines, start, end, f"'{text}'"), _find(lines, start, end, f'"{text}"'),
                                 _find(lines, start, end, f": {text}"), _find(lines, start, end, f"- {text}")) if n), None)
        if line:
            return line
    for key in ("link", "word"):
        value = details.get(key)
        if value is not None and str(value).strip():
            line = _find(lines, hinted or item.line, end, str(value).strip())
            if line:
                return line
    return hinted or item.line


def _severity(issue: SigmaValidationIssue) -> str:
    return {SigmaValidationIssueSeverity.HIGH: "error", SigmaValidationIssueSeverity.MEDIUM: "warning"}.get(issue.severity, "info")


def _pysigma_findings(ruleset: RuleSet, validators: dict[str, type]) -> list[Finding]:
    by_rule = {id(item.rule): item for item in ruleset.rules}
    texts: dict[str, list[str]] = {}
    findings = []
    for name, cls in validators.items():
        issues = SigmaValidator([cls]).validate_rules([item.rule for item in ruleset.rules])
        for issue in issues:
            details = _issue_details(issue)
            # the first sentence: later ones are examples (the details below say what is wrong)
            message = re.split(r"\.\s+(?=[A-Z(])", issue.description.strip())[0].rstrip(".")
            if details:
                message += ": " + "; ".join(f"{k} {_render(v)}" for k, v in details.items())
            for rule in issue.rules:
                item = by_rule.get(id(rule))
                if item is None:
                    continue
                lines = texts.setdefault(item.path, _read_lines(item))
                findings.append(Finding(item.path, _locate(item, issue, lines), _severity(issue), name, message, str(rule.id)))
    return findings


def _read_lines(item: LoadedRule) -> list[str]:
    source = getattr(item.rule, "source", None)
    try:
        return Path(source.path).read_text(encoding="utf-8").splitlines()
    except (AttributeError, OSError, UnicodeDecodeError):
        return []


# --- project checks --------------------------------------------------------------------------

def _project_findings(ruleset: RuleSet, attack: AttackData, targets: dict[str, Target]) -> list[Finding]:
    ids = {}
    for item in ruleset.rules:
        ids.setdefault(item.path, str(item.rule.id))
    findings = [Finding(p.path, p.line, "error", "dac_attack_tags", p.message, ids.get(p.path))
                for p in check_attack_tags(ruleset, attack)]
    for item in ruleset.rules:
        rule = item.rule
        where = item.key_lines
        if not any(t.namespace == "attack" and TECHNIQUE_RE.match(t.name.lower()) for t in rule.tags):
            findings.append(Finding(item.path, where.get("tags", item.line), "error", "dac_missing_technique_tag",
                                    f"rule {item.name}: no ATT&CK technique tag (attack.tNNNN[.NNN]); coverage cannot count it", str(item.rule.id)))
        if not [fp for fp in (rule.falsepositives or []) if str(fp).strip()]:
            findings.append(Finding(item.path, where.get("falsepositives", item.line), "warning", "dac_missing_falsepositives",
                                    f"rule {item.name}: no falsepositives: say what benign activity matches (or why nothing does)", str(item.rule.id)))
        if not [r for r in (rule.references or []) if str(r).strip()]:
            findings.append(Finding(item.path, where.get("references", item.line), "warning", "dac_missing_references",
                                    f"rule {item.name}: no references: link the technique, tool or report the rule is based on", str(item.rule.id)))
        if rule.level is None:
            findings.append(Finding(item.path, where.get("level", item.line), "error", "dac_missing_level",
                                    f"rule {item.name}: no level: the SIEM packages derive alert severity from it", str(item.rule.id)))
        if isinstance(rule, SigmaRule):
            findings += _mapping_findings(item, targets)
    return findings


def _mapping_findings(item: LoadedRule, targets: dict[str, Target]) -> list[Finding]:
    fields = rule_fields(item.rule)
    line = item.key_lines.get("detection", item.line)
    supported, findings = False, []
    for target in targets.values():
        scope = target.scope(item.rule)
        if not scope.supported:
            continue
        supported = True
        for f in fields:
            if f not in scope.field_map:
                findings.append(Finding(item.path, line, "error", "dac_unmapped_field",
                                        f"rule {item.name}: field {f!r} is not mapped for target {target.name} ({target.pipeline_file})", str(item.rule.id)))
    if not supported:
        ls = _render(item.rule.logsource)
        findings.append(Finding(item.path, item.key_lines.get("logsource", item.line), "error", "dac_unsupported_logsource",
                                f"rule {item.name}: no target supports log source {ls} (sigma/targets.yml)", str(item.rule.id)))
    return findings


def _kql_findings(layout: Layout, queries: list[Query]) -> list[Finding]:
    from dac.compile.kql_analyzer import KqlAnalyzerUnavailable, analyze, load_schemas
    kql = {f"{q.target.name}/{q.rule.stem}.kql": q for q in queries if q.target.language == "kql"}
    if not kql:
        return []
    try:
        results = analyze({name: q.text for name, q in kql.items()}, load_schemas(layout.schemas), layout.kusto_analyzer)
    except KqlAnalyzerUnavailable as e:
        return [Finding(layout.rel(layout.kusto_analyzer), None, "warning", "dac_kql_analyzer", str(e))]
    findings = []
    severity = {"Error": "error", "Warning": "warning"}
    for name, diagnostics in sorted(results.items()):
        q = kql[name]
        for d in diagnostics:
            findings.append(Finding(q.rule.path, q.rule.key_lines.get("detection", q.rule.line), severity.get(d.severity, "info"),
                                    "dac_kql_analyzer", f"rule {q.rule.name} on target {q.target.name}, line {d.line} of the KQL: "
                                                        f"{d.severity} {d.code}: {' '.join(d.message.split())}", str(q.rule.rule.id)))
    return findings


# --- entry point -----------------------------------------------------------------------------

def _apply_exceptions(findings: list[Finding], exceptions: LintExceptions, not_run: set[str]) -> list[Finding]:
    """Mark listed findings; a listed exception that matches no finding of a check that ran is
    itself a finding."""
    out, used = [], set()
    for f in findings:
        reason = exceptions.reason(f.rule_id, f.validator)
        if reason:
            used.add((f.rule_id, f.validator))
            f = replace(f, excepted=reason)
        out.append(f)
    for e in exceptions.exceptions:
        if (e.rule, e.check) not in used and e.check not in not_run:
            out.append(Finding(EXCEPTIONS_FILE, e.line, "error", "dac_stale_exception",
                               f"exception for {e.check} on rule {e.rule} matches no finding: remove it"))
    return out


def lint_rules(layout: Layout, ruleset: RuleSet, queries: list[Query] | None = None) -> list[Finding]:
    """Every finding for the loaded rules, in a stable order (file, line, severity, check).

    With `queries` (dac.compile.convert.compile_rules) the Kusto analyzer's hints on each rule's KQL are
    included (needs node and tools/kusto-analyzer/node_modules).
    """
    attack = load_techniques(layout)
    targets, _ = load_targets(layout)
    exceptions = load_exceptions(layout)
    use_local_reference_data(layout, exceptions.taxonomy, attack)
    documents = load_sigmahq_documents(layout, ())
    findings = _pysigma_findings(ruleset, enabled_validators(layout))
    findings += sigmahq_test_findings(layout.root, ruleset, documents["sigmahq_taxonomy"], documents["sigmahq_filename"],
                                      exceptions.taxonomy)
    findings += _project_findings(ruleset, attack, targets)
    if queries is not None:
        findings += _kql_findings(layout, queries)
    not_run = set() if queries is not None else {"dac_kql_analyzer"}
    return sorted(set(_apply_exceptions(findings, exceptions, not_run)), key=Finding.sort_key)


def failing(findings: list[Finding]) -> list[Finding]:
    """The findings no exception covers: any one of them fails lint and CI."""
    return [f for f in findings if not f.excepted]


def summary(findings: list[Finding]) -> str:
    open_ = failing(findings)
    counts = {s: sum(1 for f in open_ if f.severity == s) for s in SEVERITIES}
    return (f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} info, "
            f"{len(findings) - len(open_)} listed exceptions")


def lint_command(layout: Layout, strict: bool = False, kql: bool = True, out=print) -> int:
    """`dac lint`: print every finding and a summary; 1 when any finding is not a listed exception.

    Rules that do not load are reported by load_rules (DacError) before anything else runs. The KQL
    hints need the queries: when a rule does not compile, lint reports why (dac_unmapped_field,
    dac_unsupported_logsource) and skips the hints. `strict` is kept for compatibility: every
    finding not listed in sigma/lint_exceptions.yml already fails, whatever its severity.
    """
    from dac.compile.convert import compile_rules
    from dac.rules.ruleset import load_rules
    ruleset = load_rules(layout)
    queries = None
    if kql:
        try:
            queries = compile_rules(ruleset, load_targets(layout)[0])
        except DacError:
            queries = None
    findings = lint_rules(layout, ruleset, queries)
    for finding in findings:
        out(str(finding))
    out(f"lint: {len(ruleset.rules)} rules, {len(enabled_validators(layout))} pySigma validators (SigmaHQ's set), "
        f"SigmaHQ's rule and log-source tests, yamllint and the dac checks: {summary(findings)}")
    return 1 if failing(findings) else 0
