"""Load the Sigma rules under sigma/rules/, with every problem reported as file:line: message.

pySigma parses the rules; this module adds what a reviewed repository needs on top: line numbers,
required metadata, unique ids and names, filename conventions, regexes that compile on every
target engine, and correlation references that resolve.
"""
from __future__ import annotations

import copy
import hashlib
import pickle
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.exceptions import SigmaRuleLocation
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaRegularExpression

from .content import RULE_FILE_LIMIT, check_rule_values, excerpt
from dac.core.fast_yaml import SAFE_LOADER
from dac.core.problems import DacError, Problem
from dac.core.regex_safety import analyze
from dac.core.repo import Layout
from .files import find_rule_files

REQUIRED_RULE_KEYS = ("title", "id", "name", "status", "description", "references", "author",
                      "date", "tags", "logsource", "detection", "falsepositives", "level")
REQUIRED_CORRELATION_KEYS = ("title", "id", "name", "status", "description", "references", "author",
                             "date", "tags", "correlation", "falsepositives", "level")
_PARSED: dict[str, bytes] = {}      # sha256 of a YAML text -> its data, pickled (see load_yaml_text)
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")          # also the KQL `let` / SPL label
TECHNIQUE_TAG_RE = re.compile(r"^attack\.t\d{4}(\.\d{3})?$")
FILENAME_RE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*\.yml$")
CORRELATION_PREFIX = "correlation_"


def load_yaml_text(text: str):
    """yaml.safe_load(text), parsed by libyaml where PyYAML has it (a text libyaml refuses goes to
    the pure-Python parser, so an error has the same message and line as yaml.safe_load's). The
    data is kept per text in the process, pickled: every caller gets its own copy, and the labels
    files that replay, review and coverage all read (a few MB) are parsed once."""
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    kept = _PARSED.get(key)
    if kept is not None:
        return pickle.loads(kept)
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError:
        data = yaml.safe_load(text)
    _PARSED[key] = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    return data


@dataclass
class LoadedRule:
    rule: SigmaRule | SigmaCorrelationRule
    path: str                      # repository-relative file
    line: int                      # line where the YAML document starts
    key_lines: dict[str, int]      # top-level key -> line
    stem: str                      # artifact file stem
    generated: bool = True         # False for base rules that only feed a correlation

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def is_correlation(self) -> bool:
        return isinstance(self.rule, SigmaCorrelationRule)

    def problem(self, message: str, key: str | None = None) -> Problem:
        return Problem(self.path, self.key_lines.get(key, self.line) if key else self.line, message)


@dataclass
class RuleSet:
    rules: list[LoadedRule] = field(default_factory=list)

    def by_name(self, name: str) -> LoadedRule:
        return next(r for r in self.rules if r.name == name)

    @property
    def generated(self) -> list[LoadedRule]:
        return [r for r in self.rules if r.generated]


def expected_prefix(logsource: dict) -> str | None:
    """SigmaHQ filename convention for a log source, e.g. proc_creation_lnx_."""
    product = {"linux": "lnx", "windows": "win", "macos": "macos"}.get(logsource.get("product", ""), "")
    category, service = logsource.get("category"), logsource.get("service")
    if category:
        short = {"process_creation": "proc_creation", "network_connection": "net_connection"}.get(category, category)
        return f"{short}_{product}_" if product else f"{short}_"
    if service:
        return f"{product}_{service}_" if product else f"{service}_"
    return None


def _key_lines(node: yaml.Node) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _find_line(text_lines: list[str], start: int, needles: list[str]) -> int | None:
    """First line at or after `start` (1-based) that contains one of the needles."""
    for number in range(start, len(text_lines) + 1):
        if any(n in text_lines[number - 1] for n in needles):
            return number
    return None


def _detection_items(detection: SigmaDetection):
    for item in detection.detection_items:
        if isinstance(item, SigmaDetection):
            yield from _detection_items(item)
        else:
            yield item


def rule_detection_items(rule: SigmaRule) -> list[SigmaDetectionItem]:
    return [item for det in rule.detection.detections.values() for item in _detection_items(det)]


def _check_regexes(loaded: LoadedRule, text_lines: list[str]) -> list[Problem]:
    problems = []
    for item in rule_detection_items(loaded.rule):
        for value in item.value:
            if not isinstance(value, SigmaRegularExpression):
                continue
            line = _find_line(text_lines, loaded.line, [f"{item.field}|re"]) or loaded.line
            pattern = value.to_plain()
            try:
                value.compile()
            except SigmaError as e:
                problems.append(Problem(loaded.path, line, f"invalid regular expression for {item.field}: {e}"))
                continue
            flags = 0
            for flag in value.flags:
                flags |= value.sigma_to_python_flags[flag]
            # catastrophic backtracking and engine differences (PCRE / RE2 / Python): dac.core.regex_safety
            for finding in analyze(pattern, flags):
                what = "unsafe" if finding.kind == "catastrophic" else "not portable"
                problems.append(Problem(loaded.path, line, f"{what} regular expression for {item.field}: "
                                                           f"{finding.message}: {excerpt(pattern)}"))
    return problems


def _check_document(path: str, start: int, data, key_lines: dict[str, int], text_lines: list[str]) -> list[Problem]:
    """Structural checks made before pySigma sees the document, so messages can name lines."""
    if not isinstance(data, dict):
        return [Problem(path, start, "a rule document must be a YAML mapping")]
    is_correlation = "correlation" in data
    required = REQUIRED_CORRELATION_KEYS if is_correlation else REQUIRED_RULE_KEYS
    problems = [Problem(path, start, f"missing required key `{k}`") for k in required if k not in data]
    if not is_correlation and isinstance(data.get("detection"), dict) and "condition" not in data["detection"]:
        problems.append(Problem(path, key_lines.get("detection", start), "detection has no `condition`"))
    if not is_correlation and "detection" in data and not isinstance(data["detection"], dict):
        problems.append(Problem(path, key_lines.get("detection", start), "`detection` must be a mapping"))
    rule_id = data.get("id")
    if rule_id is not None:
        try:
            uuid.UUID(str(rule_id))
        except ValueError:
            problems.append(Problem(path, key_lines.get("id", start), f"id {rule_id!r} is not a UUID"))
    name = data.get("name")
    if name is not None and not NAME_RE.match(str(name)):
        problems.append(Problem(path, key_lines.get("name", start), f"name {name!r} must be an identifier (letters, digits, _), it names the generated queries"))
    tags = data.get("tags") or []
    if "tags" in data and not any(TECHNIQUE_TAG_RE.match(str(t)) for t in tags):
        problems.append(Problem(path, key_lines.get("tags", start), "tags name no ATT&CK technique (attack.tNNNN[.NNN])"))
    return problems


def _parse(data: dict) -> SigmaRule | SigmaCorrelationRule:
    if "correlation" in data:
        return SigmaCorrelationRule.from_dict(data, collect_errors=True)
    return SigmaRule.from_dict(data, collect_errors=True)


def _load_file(file: Path, layout: Layout) -> tuple[list[LoadedRule], list[Problem]]:
    rel = layout.rel(file)
    try:
        if file.stat().st_size > RULE_FILE_LIMIT:
            return [], [Problem(rel, None, f"rule file is {file.stat().st_size} bytes (limit {RULE_FILE_LIMIT}): refused")]
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [], [Problem(rel, None, f"cannot read rule file: {e}")]
    text_lines = text.splitlines()
    try:
        # libyaml's parser when PyYAML has it (a third of conversion time was pure-Python parsing)
        nodes = list(yaml.compose_all(text, Loader=SAFE_LOADER))
        documents = list(yaml.load_all(text, Loader=SAFE_LOADER))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        reason = getattr(e, "problem", None) or str(e)
        return [], [Problem(rel, mark.line + 1 if mark else None, f"malformed YAML: {reason}")]
    if not documents:
        return [], [Problem(rel, 1, "empty rule file")]
    loaded, problems = [], []
    for node, data in zip(nodes, documents):
        start = node.start_mark.line + 1
        key_lines = _key_lines(node)
        doc_problems = check_rule_values(rel, node) + _check_document(rel, start, data, key_lines, text_lines)
        if doc_problems:
            problems += doc_problems
            continue
        try:
            rule = _parse(data)
        except SigmaError as e:
            problems.append(_sigma_problem(rel, start, text_lines, e))
            continue
        rule.source = SigmaRuleLocation(file)
        for error in getattr(rule, "errors", []):
            problems.append(_sigma_problem(rel, start, text_lines, error))
        if rule.errors:
            continue
        item = LoadedRule(rule, rel, start, key_lines, file.stem)
        if isinstance(rule, SigmaRule):
            problems += _check_regexes(item, text_lines)
        loaded.append(item)
    return loaded, problems


def _sigma_problem(path: str, start: int, text_lines: list[str], error: Exception) -> Problem:
    """Turn a pySigma error into a Problem, locating the line from a quoted token in its message."""
    message = str(error).split(" in rule ")[0].strip()
    tokens = re.findall(r"'([^']+)'", message)
    line = None
    if tokens:   # prefer a modifier or key match, then any mention of the quoted token
        line = (_find_line(text_lines, start, [f"|{t}" for t in tokens] + [f"{t}:" for t in tokens])
                or _find_line(text_lines, start, tokens))
    return Problem(path, line or start, f"{type(error).__name__}: {message}")


def _check_filename(item: LoadedRule, ruleset: RuleSet) -> list[Problem]:
    file_name = Path(item.path).name
    if not FILENAME_RE.match(file_name):
        return [item.problem(f"file name {file_name!r} must be lower-case snake_case ending in .yml")]
    rule = item.rule
    # SigmaHQ: a correlation rule lives in its own correlation_*.yml file, its base rules in theirs
    prefix = CORRELATION_PREFIX if isinstance(rule, SigmaCorrelationRule) else expected_prefix(rule.logsource.to_dict())
    if prefix and not file_name.startswith(prefix):
        return [item.problem(f"file name {file_name!r} should start with {prefix!r} for its log source (SigmaHQ convention)")]
    return []


def _check_unique(ruleset: RuleSet) -> list[Problem]:
    problems, seen_ids, seen_names = [], {}, {}
    for item in ruleset.rules:
        for key, seen, value in (("id", seen_ids, str(item.rule.id)), ("name", seen_names, item.name)):
            if value in seen:
                first = seen[value]
                problems.append(item.problem(f"duplicate rule {key} {value!r} (first used at {first.path}:{first.key_lines.get(key, first.line)})", key))
            else:
                seen[value] = item
    return problems


def _resolve_correlations(ruleset: RuleSet) -> list[Problem]:
    """Check references, mark base rules as not generated on their own, give outputs their stems."""
    problems = []
    names = {r.name for r in ruleset.rules}
    for item in ruleset.rules:
        if not item.is_correlation:
            continue
        for ref in item.rule.rules:
            if ref.reference not in names:
                problems.append(item.problem(f"correlation refers to unknown rule {ref.reference!r}", "correlation"))
                continue
            base = ruleset.by_name(ref.reference)
            if base.is_correlation:
                problems.append(item.problem(f"correlation of correlation ({ref.reference!r}) is not supported", "correlation"))
            base.generated = bool(item.rule.generate)
    # one generated rule per file keeps one artifact per file; more get the rule name appended
    per_file: dict[str, list[LoadedRule]] = {}
    for item in ruleset.generated:
        per_file.setdefault(item.path, []).append(item)
    for items in per_file.values():
        if len(items) > 1:
            for item in items:
                item.stem = f"{item.stem}.{item.name}"
    return problems


def load_rules(layout: Layout, files: list[Path] | None = None) -> RuleSet:
    """Load and check every rule; raise DacError listing every problem found."""
    ruleset, problems = RuleSet(), []
    if files is None:
        files, problems = find_rule_files(layout)
    if not files and not problems:
        problems.append(Problem(layout.rel(layout.rules), None, "no rules found (*.yml)"))
    for file in files:
        loaded, file_problems = _load_file(file, layout)
        ruleset.rules += loaded
        problems += file_problems
    problems += _check_unique(ruleset)
    if not problems:
        problems += _resolve_correlations(ruleset)
    if not problems:
        for item in ruleset.rules:
            problems += _check_filename(item, ruleset)
    if problems:
        raise DacError(problems)
    # Resolve pySigma's own references on a throw-away collection, so it validates them too.
    try:
        SigmaCollection([copy.deepcopy(r.rule) for r in ruleset.rules]).resolve_rule_references()
    except SigmaError as e:
        raise DacError([Problem(layout.rel(layout.rules), None, f"{type(e).__name__}: {e}")])
    return ruleset
