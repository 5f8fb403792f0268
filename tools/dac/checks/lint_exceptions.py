"""sigma/lint_exceptions.yml: the one file where `dac lint` departs from the upstream checks.

Two kinds of entry, each with a reason:

* `taxonomy`: a log source SigmaHQ does not define, with its fields and file-name prefix; it is
  added to SigmaHQ's taxonomy and file-name data before any check runs.
* `exceptions`: (rule id, check) pairs in SigmaHQ's exclusion semantics (rule id -> validator
  name, as in SigmaHQ's tests/sigma_cli_conf.yml); the check may also be a dac or yamllint check.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import yaml

from dac.core.problems import DacError, Problem
from dac.core.repo import Layout

EXCEPTIONS_FILE = "sigma/lint_exceptions.yml"


@dataclass(frozen=True)
class TaxonomyEntry:
    logsource: dict[str, str]
    prefix: str
    fields: tuple[str, ...]
    reason: str

    @property
    def key(self) -> str:
        return "_".join(str(self.logsource.get(k)).lower() for k in ("product", "category", "service"))


@dataclass(frozen=True)
class Exception_:
    rule: str
    check: str
    reason: str
    line: int


@dataclass(frozen=True)
class LintExceptions:
    taxonomy: tuple[TaxonomyEntry, ...] = ()
    exceptions: tuple[Exception_, ...] = ()

    def reason(self, rule_id: str | None, check: str) -> str | None:
        return next((e.reason for e in self.exceptions if e.rule == rule_id and e.check == check), None)


def _text(value) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def load_exceptions(layout: Layout) -> LintExceptions:
    """The exceptions file, checked; an absent file means no exception at all."""
    path = layout.root / EXCEPTIONS_FILE
    if not path.is_file():
        return LintExceptions()
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        node = yaml.compose(text)
    except (OSError, UnicodeDecodeError) as e:
        raise DacError([Problem(EXCEPTIONS_FILE, None, f"cannot read: {e}")])
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DacError([Problem(EXCEPTIONS_FILE, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}")])
    if not isinstance(data, dict):
        raise DacError([Problem(EXCEPTIONS_FILE, 1, "must be a mapping with `taxonomy` and `exceptions`")])
    lines = _item_lines(node)
    problems: list[Problem] = []
    for key in data:
        if key not in ("taxonomy", "exceptions"):
            problems.append(Problem(EXCEPTIONS_FILE, 1, f"unknown key `{key}` (allowed: taxonomy, exceptions)"))
    taxonomy = []
    for n, entry in enumerate(data.get("taxonomy") or []):
        line = lines.get(("taxonomy", n))
        if not isinstance(entry, dict) or not isinstance(entry.get("logsource"), dict):
            problems.append(Problem(EXCEPTIONS_FILE, line, "a taxonomy entry needs `logsource` (product/category/service)"))
            continue
        missing = [k for k in ("prefix", "fields", "reason") if not entry.get(k)]
        if missing:
            problems.append(Problem(EXCEPTIONS_FILE, line, f"taxonomy entry needs {', '.join(missing)}"))
            continue
        taxonomy.append(TaxonomyEntry({k: str(v) for k, v in entry["logsource"].items()}, str(entry["prefix"]),
                                      tuple(str(f) for f in entry["fields"]), _text(entry["reason"])))
    exceptions = []
    seen = set()
    for n, entry in enumerate(data.get("exceptions") or []):
        line = lines.get(("exceptions", n))
        if not isinstance(entry, dict) or not all(entry.get(k) for k in ("rule", "check", "reason")):
            problems.append(Problem(EXCEPTIONS_FILE, line, "an exception needs `rule` (a rule id), `check` and `reason`"))
            continue
        try:
            uuid.UUID(str(entry["rule"]))
        except ValueError:
            problems.append(Problem(EXCEPTIONS_FILE, line, f"rule {entry['rule']!r} is not a rule id (UUID)"))
            continue
        pair = (str(entry["rule"]), str(entry["check"]))
        if pair in seen:
            problems.append(Problem(EXCEPTIONS_FILE, line, f"{pair[1]} for rule {pair[0]} is listed twice"))
        seen.add(pair)
        exceptions.append(Exception_(pair[0], pair[1], _text(entry["reason"]), line or 1))
    if problems:
        raise DacError(problems)
    return LintExceptions(tuple(taxonomy), tuple(exceptions))


def _item_lines(node) -> dict[tuple, int]:
    """(section, index) -> line of each list item under `taxonomy` and `exceptions`."""
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(value, yaml.SequenceNode):
                for n, item in enumerate(value.value):
                    lines[(key.value, n)] = item.start_mark.line + 1
    return lines
