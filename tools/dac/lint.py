"""`dac lint`: pySigma's validators (core and SigmaHQ's) plus the project's own checks, offline.

pySigma 1.5 and pySigma-validators-sigmahq 0.21 load their reference data on first use, from the
network by default: ATT&CK from MITRE's STIX bundle (sigma.data.mitre_attack), D3FEND's
ontology (sigma.data.mitre_d3fend), SigmaHQ's log source taxonomy, file name prefixes and Windows
provider lists (sigma.validators.sigmahq.data.*). Each loader has a documented `set_url(<url or
local file>)` and `set_cache_dir(<dir>)`; `use_local_reference_data` points every loader used
here at files derived from the repository before any validator runs, and the disk cache at a
private temporary folder (never ~/.cache), so no validator downloads anything:

  ATT&CK     sigma/attack/enterprise-techniques.json, written as the minimal STIX bundle
             (collection, tactics, techniques with revoked/deprecated flags, groups, software,
             mitigations, data sources) that sigma.data.mitre_attack parses
  SigmaHQ    sigma/reference/sigmahq/*.json (SigmaHQ's own JSON formats), with the log sources
             SigmaHQ does not define (linux file_access, linux tracee) added from the project:
             known when a target pipeline supports them, with the fields those pipelines map,
             and the file name prefix dac.rules enforces

Validators disabled (DISABLED, with the reason each). Severity: pySigma's HIGH is an error,
MEDIUM a warning, LOW info, except where SEVERITY_OVERRIDES says otherwise (with the reason).

Project checks (validator names starting with `dac_`): ATT&CK tags against the local list
(dac.coverage.check_attack_tags), a technique tag, falsepositives, references and level present
and not empty, every field mapped by every target that supports the rule's log source, and,
given the compiled queries, the Kusto analyzer's hints on each rule's KQL.
"""
from __future__ import annotations

import atexit
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, fields as dc_fields
from pathlib import Path

from sigma.rule import SigmaLogSource, SigmaRule
from sigma.validation import SigmaValidator
from sigma.validators.base import SigmaValidationIssue, SigmaValidationIssueSeverity

from .convert import Query, rule_fields
from .coverage import AttackData, TECHNIQUE_RE, check_attack_tags, load_techniques, tag_line
from .problems import DacError, Problem
from .repo import Layout
from .rules import LoadedRule, RuleSet, expected_prefix
from .targets import Target, load_targets

SIGMAHQ_DIR = "sigma/reference/sigmahq"
SEVERITIES = ("error", "warning", "info")

DISABLED = {
    "d3_fendtag": "needs MITRE's D3FEND ontology, which no registry package ships and the repository does not keep; "
                  "the rules carry no d3fend tags",
    "tlpv1_tag": "superseded by tlptag (either TLP version); v1 and v2 contradict each other",
    "tlpv2_tag": "superseded by tlptag (either TLP version); v1 and v2 contradict each other",
    "sigmahq_status_to_high": "compares the rule date with today's date: the result changes from one day to the next",
    "sigmahq_correlation_filename_prefix": "wants correlation_*.yml; this repository names a correlation file by its "
                                           "base rules' log source (file_access_lnx_...), which dac.rules enforces",
    "sigmahq_mitre_link": "the rules cite the ATT&CK technique page in references by convention, next to the "
                          "technique tag that dac requires and checks",
}
SEVERITY_OVERRIDES = {
    # Sigma matches values case-insensitively: a value repeated with other case is redundant, the
    # rule's logic is unchanged (pySigma rates it HIGH)
    "sigmahq_field_duplicate_value": "warning",
}
# custom rule attributes the project defines (README: TRC-1023 metadata for the SIEM packages)
PROJECT_ATTRIBUTES = {"tracee"}

# issue class keyword -> the rule key whose line a finding points at
_KEY_HINTS = (("Falsepositive", "falsepositives"), ("Title", "title"), ("Description", "description"),
              ("Author", "author"), ("Modified", "modified"), ("Date", "date"), ("Status", "status"),
              ("Level", "level"), ("Reference", "references"), ("GithubLink", "references"),
              ("MitreLink", "references"), ("Tag", "tags"), ("Logsource", "logsource"),
              ("Correlation", "correlation"), ("Condition", "detection"), ("Detection", "detection"),
              ("Field", "detection"), ("Identifier", "id"))


@dataclass(frozen=True)
class Finding:
    path: str
    line: int | None
    severity: str          # error | warning | info
    validator: str         # pySigma validator identifier, or dac_<check>
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{self.severity}: {where}: [{self.validator}] {self.message}"

    def sort_key(self):
        return (self.path, self.line or 0, SEVERITIES.index(self.severity), self.validator, self.message)


# --- offline reference data ------------------------------------------------------------------

_private_dir: Path | None = None


def _scratch() -> Path:
    """A fresh folder under one private temporary folder per process (removed at exit)."""
    global _private_dir
    if _private_dir is None:
        _private_dir = Path(tempfile.mkdtemp(prefix="dac-pysigma-"))
        atexit.register(shutil.rmtree, _private_dir, True)
    return Path(tempfile.mkdtemp(dir=_private_dir))


def attack_stix_bundle(attack: AttackData) -> dict:
    """The local ATT&CK list as the STIX objects sigma.data.mitre_attack reads (nothing else)."""
    def ref(external_id):
        return [{"source_name": "mitre-attack", "external_id": external_id}]
    objects = [{"type": "x-mitre-collection", "id": "x-mitre-collection--dac", "name": "Enterprise ATT&CK",
                "x_mitre_version": attack.version}]
    objects += [{"type": "x-mitre-tactic", "name": t.name, "x_mitre_shortname": t.shortname, "external_references": ref(t.id)}
                for t in attack.tactics.values()]
    for t in attack.techniques.values():
        objects.append({"type": "attack-pattern", "name": t.name, "revoked": t.revoked, "x_mitre_deprecated": t.deprecated,
                        "kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": p} for p in t.tactics],
                        "external_references": ref(t.id)})
    kinds = {"G": "intrusion-set", "S": "tool", "M": "course-of-action", "DS": "x-mitre-data-source"}
    for other_id, name in attack.other_ids.items():
        kind = kinds.get(re.sub(r"\d+$", "", other_id))
        if kind:
            objects.append({"type": kind, "name": name, "external_references": ref(other_id)})
    return {"type": "bundle", "id": "bundle--dac-local", "objects": objects}


def _logsource_key(ls: SigmaLogSource) -> str:
    return f"{ls.product}_{ls.category}_{ls.service}"


def _project_logsources(ruleset: RuleSet, targets: dict[str, Target], known: set[str]) -> dict[str, tuple[dict, list[str]]]:
    """Log sources the rules use that SigmaHQ does not define, with the fields the targets map."""
    out: dict[str, tuple[dict, list[str]]] = {}
    for item in ruleset.rules:
        if item.is_correlation:
            continue
        ls = item.rule.logsource
        key = _logsource_key(ls)
        if key in known:
            continue
        mapped = set(out.get(key, ({}, []))[1])
        supported = False
        for target in targets.values():
            scope = target.scope(item.rule)
            if scope.supported:
                supported = True
                mapped |= set(scope.field_map)
        if supported:
            logsource = {k: v for k, v in (("product", ls.product), ("category", ls.category), ("service", ls.service)) if v}
            out[key] = (logsource, sorted(mapped, key=str.casefold))
    return out


def use_local_reference_data(layout: Layout, ruleset: RuleSet | None = None, targets: dict[str, Target] | None = None,
                             attack: AttackData | None = None) -> dict[str, str]:
    """Point pySigma's and the SigmaHQ validators' data loaders at repository data; returns versions."""
    from sigma.data import mitre_attack
    from sigma.validators.sigmahq.data import data_filename, data_taxonomy, data_windows_eventid, data_windows_provider

    attack = attack or load_techniques(layout)
    scratch = _scratch()
    problems = []
    documents = {}
    for name in ("sigmahq_taxonomy", "sigmahq_filename", "sigmahq_windows_eventid", "sigmahq_windows_provider"):
        path = layout.root / SIGMAHQ_DIR / f"{name}.json"
        try:
            documents[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            problems.append(Problem(layout.rel(path), getattr(e, "lineno", None), f"SigmaHQ reference data: {e}"))
    if problems:
        raise DacError(problems)
    if ruleset is not None and targets is not None:
        taxonomy, patterns = documents["sigmahq_taxonomy"], documents["sigmahq_filename"]
        known = {"_".join(str(info["logsource"].get(k)) for k in ("product", "category", "service"))
                 for info in taxonomy["taxonomy"].values()}
        for key, (logsource, fields) in sorted(_project_logsources(ruleset, targets, known).items()):
            taxonomy["taxonomy"][f"dac_{key}"] = {"logsource": logsource, "field": {"native": [], "custom": fields, "redundant": []}}
            prefix = expected_prefix(logsource)
            if prefix:
                patterns["pattern"][f"dac_{key}"] = {"logsource": logsource, "prefix": prefix}
    loaders = {"sigmahq_taxonomy": data_taxonomy, "sigmahq_filename": data_filename,
               "sigmahq_windows_eventid": data_windows_eventid, "sigmahq_windows_provider": data_windows_provider}
    for name, module in loaders.items():
        path = scratch / f"{name}.json"
        path.write_text(json.dumps(documents[name]), encoding="utf-8")
        module.set_cache_dir(str(scratch / f"cache_{name}"))      # before set_url: it opens the cache
        module.set_url(str(path))
    bundle = scratch / "enterprise-attack.json"
    bundle.write_text(json.dumps(attack_stix_bundle(attack)), encoding="utf-8")
    mitre_attack.set_cache_dir(str(scratch / "cache_mitre_attack"))
    mitre_attack.set_url(str(bundle))
    loaded = mitre_attack.mitre_attack_version                          # load now, from the local file
    return {"attack": loaded, **{n: str(documents[n].get("version")) for n in loaders}}


# --- pySigma validators ----------------------------------------------------------------------

def enabled_validators() -> dict[str, type]:
    """Identifier -> class of every pySigma core and SigmaHQ validator not in DISABLED."""
    from sigma.validators.core import validators as core
    from sigma.validators.sigmahq import validators as sigmahq
    return {name: cls for name, cls in sorted({**core, **sigmahq}.items()) if name not in DISABLED}


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


def _severity(validator: str, issue: SigmaValidationIssue) -> str:
    if validator in SEVERITY_OVERRIDES:
        return SEVERITY_OVERRIDES[validator]
    return {SigmaValidationIssueSeverity.HIGH: "error", SigmaValidationIssueSeverity.MEDIUM: "warning"}.get(issue.severity, "info")


def _pysigma_findings(ruleset: RuleSet, validators: dict[str, type]) -> list[Finding]:
    by_rule = {id(item.rule): item for item in ruleset.rules}
    texts: dict[str, list[str]] = {}
    findings = []
    for name, cls in validators.items():
        issues = SigmaValidator([cls]).validate_rules([item.rule for item in ruleset.rules])
        for issue in issues:
            details = _issue_details(issue)
            if name == "sigmahq_unknown_field":
                unknown = [f for f in details.get("fieldname", []) if f not in PROJECT_ATTRIBUTES]
                if not unknown:
                    continue
                details["fieldname"] = issue.fieldname = unknown
            # the first sentence: later ones are examples (the details below say what is wrong)
            message = re.split(r"\.\s+(?=[A-Z(])", issue.description.strip())[0].rstrip(".")
            if details:
                message += ": " + "; ".join(f"{k} {_render(v)}" for k, v in details.items())
            for rule in issue.rules:
                item = by_rule.get(id(rule))
                if item is None:
                    continue
                lines = texts.setdefault(item.path, _read_lines(item))
                findings.append(Finding(item.path, _locate(item, issue, lines), _severity(name, issue), name, message))
    return findings


def _read_lines(item: LoadedRule) -> list[str]:
    source = getattr(item.rule, "source", None)
    try:
        return Path(source.path).read_text(encoding="utf-8").splitlines()
    except (AttributeError, OSError, UnicodeDecodeError):
        return []


# --- project checks --------------------------------------------------------------------------

def _project_findings(ruleset: RuleSet, attack: AttackData, targets: dict[str, Target]) -> list[Finding]:
    findings = [Finding(p.path, p.line, "error", "dac_attack_tags", p.message) for p in check_attack_tags(ruleset, attack)]
    for item in ruleset.rules:
        rule = item.rule
        where = item.key_lines
        if not any(t.namespace == "attack" and TECHNIQUE_RE.match(t.name.lower()) for t in rule.tags):
            findings.append(Finding(item.path, where.get("tags", item.line), "error", "dac_missing_technique_tag",
                                    f"rule {item.name}: no ATT&CK technique tag (attack.tNNNN[.NNN]); coverage cannot count it"))
        if not [fp for fp in (rule.falsepositives or []) if str(fp).strip()]:
            findings.append(Finding(item.path, where.get("falsepositives", item.line), "warning", "dac_missing_falsepositives",
                                    f"rule {item.name}: no falsepositives: say what benign activity matches (or why nothing does)"))
        if not [r for r in (rule.references or []) if str(r).strip()]:
            findings.append(Finding(item.path, where.get("references", item.line), "warning", "dac_missing_references",
                                    f"rule {item.name}: no references: link the technique, tool or report the rule is based on"))
        if rule.level is None:
            findings.append(Finding(item.path, where.get("level", item.line), "error", "dac_missing_level",
                                    f"rule {item.name}: no level: the SIEM packages derive alert severity from it"))
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
                                        f"rule {item.name}: field {f!r} is not mapped for target {target.name} ({target.pipeline_file})"))
    if not supported:
        ls = _render(item.rule.logsource)
        findings.append(Finding(item.path, item.key_lines.get("logsource", item.line), "error", "dac_unsupported_logsource",
                                f"rule {item.name}: no target supports log source {ls} (sigma/targets.yml)"))
    return findings


def _kql_findings(layout: Layout, queries: list[Query]) -> list[Finding]:
    from .kql_analyzer import KqlAnalyzerUnavailable, analyze, load_schemas
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
                                                        f"{d.severity} {d.code}: {' '.join(d.message.split())}"))
    return findings


# --- entry point -----------------------------------------------------------------------------

def lint_rules(layout: Layout, ruleset: RuleSet, queries: list[Query] | None = None) -> list[Finding]:
    """Every finding for the loaded rules, in a stable order (file, line, severity, validator).

    With `queries` (dac.convert.compile_rules) the Kusto analyzer's hints on each rule's KQL are
    included (needs node and tools/kusto-analyzer/node_modules).
    """
    attack = load_techniques(layout)
    targets, _ = load_targets(layout)
    use_local_reference_data(layout, ruleset, targets, attack)
    findings = _pysigma_findings(ruleset, enabled_validators())
    findings += _project_findings(ruleset, attack, targets)
    if queries is not None:
        findings += _kql_findings(layout, queries)
    return sorted(set(findings), key=Finding.sort_key)


def summary(findings: list[Finding]) -> str:
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
    return f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} info"


def lint_command(layout: Layout, strict: bool = False, kql: bool = True, out=print) -> int:
    """`dac lint`: print every finding and a summary; 1 on an error (with `strict`, on a warning too).

    Rules that do not load are reported by load_rules (DacError) before anything else runs. The KQL
    hints need the queries: when a rule does not compile, lint reports why (dac_unmapped_field,
    dac_unsupported_logsource) and skips the hints.
    """
    from .convert import compile_rules
    from .rules import load_rules
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
    out(f"lint: {len(ruleset.rules)} rules, {len(enabled_validators())} pySigma validators "
        f"({len(DISABLED)} disabled) and the dac checks: {summary(findings)}")
    failing = {"error", "warning"} if strict else {"error"}
    return 1 if any(f.severity in failing for f in findings) else 0
