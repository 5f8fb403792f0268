"""The local ATT&CK Enterprise list and the rules' `attack.` tags checked against it.

sigma/attack/enterprise-techniques.json is derived by tools/derive_reference_data.py (no network):
an unknown, revoked or deprecated technique, or an unknown tactic, is a Problem naming the rule
file and the tag's line. Coverage (dac.artifacts.coverage) and lint (dac.checks.lint) read the same
list from here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from .ruleset import LoadedRule, RuleSet


ATTACK_FILE = "sigma/attack/enterprise-techniques.json"
TECHNIQUE_RE = re.compile(r"^t\d{4}(\.\d{3})?$")
OTHER_ID_RE = re.compile(r"^(g|s|m|ds|c)\d{4}$")


@dataclass(frozen=True)
class Technique:
    id: str
    name: str
    tactics: tuple[str, ...]
    revoked: bool = False
    deprecated: bool = False
    revoked_by: str | None = None

    @property
    def parent(self) -> str | None:
        return self.id.split(".")[0] if "." in self.id else None

    @property
    def url(self) -> str:
        return "https://attack.mitre.org/techniques/" + self.id.replace(".", "/") + "/"


@dataclass(frozen=True)
class Tactic:
    id: str
    shortname: str
    name: str


@dataclass
class AttackData:
    version: str
    domain: str
    complete: bool                       # False: a partial list (say so in every output)
    path: str                            # repository-relative file
    source: dict
    tactics: dict[str, Tactic]           # shortname -> tactic, in matrix order
    techniques: dict[str, Technique]     # "T1003.007" -> technique (revoked/deprecated included)
    other_ids: dict[str, str]            # group, software, mitigation, data source ids -> name

    @property
    def major_version(self) -> str:
        return self.version.split(".")[0]


def load_techniques(layout: Layout) -> AttackData:
    """The local ATT&CK Enterprise list; a missing or malformed file is a DacError."""
    path = layout.root / ATTACK_FILE
    rel = layout.rel(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DacError([Problem(rel, None, f"cannot read the ATT&CK technique list: {e}")])
    except json.JSONDecodeError as e:
        raise DacError([Problem(rel, e.lineno, f"malformed JSON: {e.msg}")])
    try:
        tactics = {t["shortname"]: Tactic(t["id"], t["shortname"], t["name"]) for t in doc["tactics"]}
        techniques = {
            tid: Technique(tid, e["name"], tuple(e.get("tactics", [])), bool(e.get("revoked")),
                           bool(e.get("deprecated")), e.get("revoked_by"))
            for tid, e in doc["techniques"].items()
        }
        other = {}
        for section in ("groups", "software", "mitigations", "data_sources", "campaigns"):
            other.update(doc.get(section) or {})
        return AttackData(str(doc["attack_version"]), doc.get("domain", "enterprise-attack"), bool(doc.get("complete")),
                          rel, doc.get("source") or {}, tactics, techniques, other)
    except (KeyError, TypeError, AttributeError) as e:
        raise DacError([Problem(rel, None, f"not an ATT&CK technique list (expected attack_version, tactics, techniques): {e!r}")])


def _rule_text_lines(item: LoadedRule) -> list[str]:
    source = getattr(item.rule, "source", None)
    try:
        return Path(source.path).read_text(encoding="utf-8").splitlines() if source is not None else []
    except (OSError, AttributeError, UnicodeDecodeError):
        return []


def tag_line(item: LoadedRule, tag: str, text_lines: list[str] | None = None) -> int:
    """Line of `tag` in the rule's tags list (the `tags:` line when it cannot be found)."""
    lines = text_lines if text_lines is not None else _rule_text_lines(item)
    start = item.key_lines.get("tags", item.line)
    pattern = re.compile(r"^\s*-\s*['\"]?" + re.escape(tag) + r"['\"]?\s*(#.*)?$", re.IGNORECASE)
    inline = re.compile(r"[\[,\s'\"]" + re.escape(tag) + r"['\",\]\s]", re.IGNORECASE)
    for number in range(start, len(lines) + 1):
        line = lines[number - 1]
        if pattern.match(line) or (number == start and inline.search(line + " ")):
            return number
        if number > start and line and not line[0].isspace() and not line.startswith("-"):
            break                          # next top-level key: the tags list is over
    return start


def check_attack_tags(ruleset: RuleSet, techniques: AttackData) -> list[Problem]:
    """Every `attack.` tag of every rule against the local ATT&CK list."""
    problems = []
    where = f"ATT&CK {techniques.version} ({techniques.path})"
    for item in ruleset.rules:
        text_lines: list[str] | None = None
        for tag in item.rule.tags:
            if tag.namespace != "attack":
                continue
            name, full = tag.name.lower(), f"attack.{tag.name}"
            if _tag_ok(name, techniques):
                continue
            if text_lines is None:                 # read the file only to place a problem
                text_lines = _rule_text_lines(item)
            line = tag_line(item, full, text_lines)
            if TECHNIQUE_RE.match(name):
                technique = techniques.techniques.get(name.upper())
                if technique is None:
                    problems.append(Problem(item.path, line, f"rule {item.name}: unknown ATT&CK technique {name.upper()} in tag {full!r}: not in {where}"))
                elif technique.revoked:
                    instead = techniques.techniques.get(technique.revoked_by or "")
                    hint = f"; tag attack.{instead.id.lower()} ({instead.name}) instead" if instead else ""
                    problems.append(Problem(item.path, line, f"rule {item.name}: ATT&CK technique {technique.id} ({technique.name}) in tag {full!r} is revoked in {where}{hint}"))
                elif technique.deprecated:
                    problems.append(Problem(item.path, line, f"rule {item.name}: ATT&CK technique {technique.id} ({technique.name}) in tag {full!r} is deprecated in {where}"))
            elif OTHER_ID_RE.match(name):
                if name.upper() not in techniques.other_ids:
                    problems.append(Problem(item.path, line, f"rule {item.name}: unknown ATT&CK id {name.upper()} in tag {full!r}: not in {where}"))
            elif name not in techniques.tactics:
                problems.append(Problem(item.path, line, f"rule {item.name}: unknown ATT&CK tactic {name!r} in tag {full!r}: "
                                                          f"tactics are {', '.join(techniques.tactics)}"))
    return problems


def _tag_ok(name: str, techniques: AttackData) -> bool:
    if TECHNIQUE_RE.match(name):
        technique = techniques.techniques.get(name.upper())
        return technique is not None and not technique.revoked and not technique.deprecated
    if OTHER_ID_RE.match(name):
        return name.upper() in techniques.other_ids
    return name in techniques.tactics


def technique_ids(item: LoadedRule) -> list[str]:
    return sorted({t.name.upper() for t in item.rule.tags if t.namespace == "attack" and TECHNIQUE_RE.match(t.name.lower())},
                  key=technique_sort_key)


def tactic_tags(item: LoadedRule) -> set[str]:
    return {t.name.lower() for t in item.rule.tags if t.namespace == "attack" and not TECHNIQUE_RE.match(t.name.lower())}


def technique_sort_key(tid: str):
    base, _, sub = tid.partition(".")
    return (int(base[1:]) if base[1:].isdigit() else 0, int(sub) if sub.isdigit() else -1, tid)
