"""ATT&CK coverage: which techniques the rules cover, on which targets, and how well tested.

Inputs are the loaded rules, the compiled queries and either a replay report of the labelled
sample logs (`dac coverage`, dac.replay.labelled.run_labelled) or, without one, the labels themselves
(`dac convert`): a replay with no failure reproduces every label exactly, so both give the same
files whenever `dac test` passes, and `dac coverage` refuses to write when it does not.

Every `attack.` tag is checked against the local ATT&CK list sigma/attack/enterprise-techniques.json
(derived by tools/derive_reference_data.py; no network): an unknown, revoked or deprecated technique,
or an unknown tactic, is a Problem naming the rule file and the tag's line.

Outputs (deterministic, no timestamps), under conversions/coverage/:
  navigator-layer.json  ATT&CK Navigator layer, format 4.5. One entry per covered technique and
                        tactic; score = number of rules (generated detections; base rules that only
                        feed a correlation are not counted). Targets compiled and targets tested
                        are in each entry's comment and metadata, TP/FP/FN per rule x target too.
  coverage.md           the same as a Markdown table, and a rule x target table.

"Tested" for a technique on a target: the target's queries for the technique's rules have at
least one labelled true positive in testdata/ and no false positive, false negative,
engine disagreement or untestable query.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dac.core.atomic import write_text_atomic
from dac.compile.convert import Query
from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from dac.rules.ruleset import LoadedRule, RuleSet

ATTACK_FILE = "sigma/attack/enterprise-techniques.json"
COVERAGE_DIR = "conversions/coverage"
LAYER_FILE = f"{COVERAGE_DIR}/navigator-layer.json"
MARKDOWN_FILE = f"{COVERAGE_DIR}/coverage.md"
NAVIGATOR_VERSION = "5.2.0"        # layer format 4.5 needs Navigator >= 4.9.0
LAYER_VERSION = "4.5"
GRADIENT = ("#ffffff", "#1f6fd1")  # score 0 .. highest score
PLATFORMS = {"linux": "Linux", "windows": "Windows", "macos": "macOS", "aws": "IaaS", "azure": "IaaS",
             "gcp": "IaaS", "m365": "Office Suite", "okta": "Identity Provider"}
TECHNIQUE_RE = re.compile(r"^t\d{4}(\.\d{3})?$")
OTHER_ID_RE = re.compile(r"^(g|s|m|ds|c)\d{4}$")
_LANGUAGE_ENGINE = {"kql": "kql", "spl": "spl"}


# --- the local ATT&CK list -------------------------------------------------------------------

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


# --- tag checks ------------------------------------------------------------------------------

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
                  key=_technique_key)


def tactic_tags(item: LoadedRule) -> set[str]:
    return {t.name.lower() for t in item.rule.tags if t.namespace == "attack" and not TECHNIQUE_RE.match(t.name.lower())}


def _technique_key(tid: str):
    base, _, sub = tid.partition(".")
    return (int(base[1:]) if base[1:].isdigit() else 0, int(sub) if sub.isdigit() else -1, tid)


# --- coverage --------------------------------------------------------------------------------

@dataclass
class TargetResult:
    """One rule on one target: TP/FP/FN of the target's own query over the labelled logs."""
    target: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    clean: bool = True          # every engine reproduced the labels, nothing untestable
    runs: int = 0               # labelled log files of the target's format

    @property
    def tested(self) -> bool:
        return self.clean and self.tp > 0

    def cell(self) -> str:
        if not self.runs:
            return "no labelled logs"
        text = f"{self.tp}/{self.fp}/{self.fn}"
        if not self.clean:
            return text + " FAILING"
        return text if self.tp else text + " (no labelled hit)"


@dataclass
class RuleCoverage:
    item: LoadedRule
    targets: dict[str, TargetResult]           # every target the rule compiled for

    @property
    def name(self) -> str:
        return self.item.name


@dataclass
class TechniqueCoverage:
    technique: Technique
    tactics: list[str]
    rules: list[RuleCoverage] = field(default_factory=list)

    @property
    def score(self) -> int:
        return len(self.rules)

    @property
    def targets_compiled(self) -> list[str]:
        return sorted({t for r in self.rules for t in r.targets})

    def target_totals(self) -> dict[str, TargetResult]:
        totals = {}
        for target in self.targets_compiled:
            total = TargetResult(target)
            for r in self.rules:
                res = r.targets.get(target)
                if res is None:
                    continue
                total.tp, total.fp, total.fn = total.tp + res.tp, total.fp + res.fp, total.fn + res.fn
                total.clean = total.clean and res.clean
                total.runs = max(total.runs, res.runs)
            totals[target] = total
        return totals

    @property
    def targets_tested(self) -> list[str]:
        return [t for t, total in self.target_totals().items() if total.tested]


@dataclass
class Coverage:
    attack: AttackData
    techniques: list[TechniqueCoverage]
    targets: list[str]                        # every target some rule compiled for
    rules: list[RuleCoverage]
    tested_from: str | None                   # "replay", "labels" or None (not known)
    platforms: list[str] = field(default_factory=list)


def _results_from_report(report, rule: LoadedRule, target) -> TargetResult:
    result = TargetResult(target.name)
    engine = _LANGUAGE_ENGINE.get(target.language)
    for v in report.verdicts:
        if v.rule != rule.name or v.target != target.name or v.twin:
            continue
        result.runs += 1
        if v.not_testable:
            result.clean = False
        for name, keys in v.engines.items():
            if keys is None:
                continue
            tp, fp, fn = len(keys & v.expected), len(keys - v.expected), len(v.expected - keys)
            if fp or fn:
                result.clean = False
            if name == engine:
                result.tp, result.fp, result.fn = result.tp + tp, result.fp + fp, result.fn + fn
        if v.engines.get(engine) is None:
            result.clean = False               # the deployed query did not run
    return result


def read_labels(layout: Layout) -> list[dict]:
    """The label files of testdata/, leniently (`dac test` reports their problems): [{format, events, correlations}]."""
    labels = []
    for path in sorted((layout.root / "testdata").rglob("*.labels.yml")) if (layout.root / "testdata").is_dir() else []:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and not data.get("twin_of"):     # a shape twin repeats its canonical file's events
            labels.append({"path": layout.rel(path), "format": str(data.get("format")),
                           "events": data.get("events") or {}, "correlations": data.get("correlations") or {}})
    return labels


def _results_from_labels(labels: list[dict], rule: LoadedRule, target) -> TargetResult:
    """What a passing replay reports: every labelled positive found, nothing else."""
    result = TargetResult(target.name)
    rule_id = str(rule.rule.id)
    for label in labels:
        if target.format is None or label["format"] != target.format:
            continue
        result.runs += 1
        if rule.is_correlation:
            group_by = list(rule.rule.group_by or [])
            groups = label["correlations"].get(rule_id) or []
            result.tp += len({tuple(str(g.get(f)) for f in group_by) for g in groups if isinstance(g, dict)})
        else:
            fires = [(e.get("fires") if isinstance(e, dict) else e) or [] for e in label["events"].values()]
            result.tp += sum(1 for ids in fires if rule_id in [str(i) for i in ids])
    return result


def compute_coverage(ruleset: RuleSet, queries: list[Query], techniques: AttackData, report=None,
                     labels: list[dict] | None = None) -> Coverage:
    """Per technique: rules, targets compiled, targets tested.

    `report` (dac.replay.labelled.Report) gives measured TP/FP/FN; without it `labels` (read_labels) give
    the expected ones; with neither, nothing counts as tested. Bad ATT&CK tags raise DacError.
    """
    problems = check_attack_tags(ruleset, techniques)
    if problems:
        raise DacError(problems)
    compiled: dict[str, dict[str, object]] = {}
    for q in queries:
        compiled.setdefault(q.rule.name, {})[q.target.name] = q.target
    tested_from = "replay" if report is not None else ("labels" if labels is not None else None)
    rules: list[RuleCoverage] = []
    for item in sorted(ruleset.generated, key=lambda r: r.name):
        results = {}
        for target_name, target in sorted(compiled.get(item.name, {}).items()):
            if report is not None:
                results[target_name] = _results_from_report(report, item, target)
            elif labels is not None:
                results[target_name] = _results_from_labels(labels, item, target)
            else:
                results[target_name] = TargetResult(target_name)
        rules.append(RuleCoverage(item, results))
    by_technique: dict[str, TechniqueCoverage] = {}
    for rc in rules:
        tagged_tactics = tactic_tags(rc.item)
        for tid in technique_ids(rc.item):
            technique = techniques.techniques[tid]
            entry = by_technique.get(tid)
            if entry is None:
                entry = by_technique[tid] = TechniqueCoverage(technique, [])
            entry.rules.append(rc)
            # the technique's tactics the rules name; all of them when no rule names one
            named = [t for t in technique.tactics if t in tagged_tactics]
            entry.tactics = sorted(set(entry.tactics) | set(named or technique.tactics),
                                   key=lambda t: list(techniques.tactics).index(t) if t in techniques.tactics else 99)
    products = sorted({str(rc.item.rule.logsource.product) for rc in rules
                       if not rc.item.is_correlation and rc.item.rule.logsource.product})
    platforms = sorted({PLATFORMS[p] for p in products if p in PLATFORMS}) if all(p in PLATFORMS for p in products) else []
    return Coverage(techniques, [by_technique[t] for t in sorted(by_technique, key=_technique_key)],
                    sorted({t for r in rules for t in r.targets}), rules, tested_from, platforms)


# --- outputs ---------------------------------------------------------------------------------

def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def _gradient_color(score: int, maximum: int) -> str:
    low, high = _hex(GRADIENT[0]), _hex(GRADIENT[1])
    f = score / maximum if maximum else 1.0
    return "#" + "".join(f"{round(a + (b - a) * f):02x}" for a, b in zip(low, high))


def _tested_text(tc: TechniqueCoverage) -> str:
    totals = tc.target_totals()
    parts = [f"{t} {r.tp}/{r.fp}/{r.fn}" for t, r in totals.items() if r.tested]
    failing = [f"{t} {r.tp}/{r.fp}/{r.fn} FAILING" for t, r in totals.items() if not r.clean]
    return ", ".join(parts + failing) or "none"


TESTED_MEANING = ("a target counts as tested when its queries for the technique have at least one labelled true "
                  "positive in testdata/ and no false positive, false negative, engine disagreement or untestable "
                  "query (`dac test` checks this in CI; `dac coverage` replays the logs and writes nothing when it fails)")


def navigator_layer(coverage: Coverage) -> dict:
    """ATT&CK Navigator layer (format 4.5), scored by the number of rules per technique."""
    attack = coverage.attack
    entries = []
    covered = {tc.technique.id for tc in coverage.techniques}
    parents: dict[tuple[str, str], list[str]] = {}
    for tc in coverage.techniques:
        t = tc.technique
        comment = (f"{tc.score} rule(s): {', '.join(r.name for r in tc.rules)}. "
                   f"Compiled for: {', '.join(tc.targets_compiled) or 'none'}. "
                   f"Tested (TP/FP/FN): {_tested_text(tc)}.")
        metadata = [
            {"name": "rules", "value": ", ".join(r.name for r in tc.rules)},
            {"name": "targets compiled", "value": ", ".join(tc.targets_compiled) or "none"},
            {"name": "targets tested", "value": ", ".join(tc.targets_tested) or "none"},
            {"divider": True},
        ]
        metadata += [{"name": r.name, "value": "; ".join(f"{target} {res.cell()}" for target, res in r.targets.items())}
                     for r in tc.rules]
        for tactic in tc.tactics:
            entries.append({"techniqueID": t.id, "tactic": tactic, "score": tc.score,
                            "comment": comment, "enabled": True, "metadata": metadata,
                            "links": [{"label": f"ATT&CK {t.id}", "url": t.url}], "showSubtechniques": False})
            if t.parent and t.parent not in covered:
                parents.setdefault((t.parent, tactic), []).append(t.id)
    for (parent, tactic), subs in sorted(parents.items(), key=lambda kv: (_technique_key(kv[0][0]), kv[0][1])):
        entries.append({"techniqueID": parent, "tactic": tactic, "comment": f"sub-techniques covered: {', '.join(subs)}",
                        "enabled": True, "metadata": [], "links": [], "showSubtechniques": True})
    entries.sort(key=lambda e: (_technique_key(e["techniqueID"]), e["tactic"]))
    maximum = max([tc.score for tc in coverage.techniques] or [1])
    legend = [{"label": f"{s} rule{'s' if s != 1 else ''}", "color": _gradient_color(s, maximum)}
              for s in sorted({tc.score for tc in coverage.techniques})]
    partial = "" if attack.complete else " PARTIAL technique list: only the techniques it names are checked."
    layer = {
        "name": "dac: detection coverage",
        "versions": {"attack": attack.major_version, "navigator": NAVIGATOR_VERSION, "layer": LAYER_VERSION},
        "domain": attack.domain,
        "description": ("Techniques covered by the Sigma rules in sigma/rules/ (generated by dac; do not edit). "
                        "Score = number of rules (detections deployed; correlation base rules not counted). "
                        "Comments and metadata list the targets each technique compiles for and the targets "
                        f"tested; {TESTED_MEANING}.{partial}"),
        "filters": {"platforms": coverage.platforms} if coverage.platforms else {},
        "sorting": 3,
        "layout": {"layout": "side", "aggregateFunction": "max", "showID": True, "showName": True,
                   "showAggregateScores": False, "countUnscored": False, "expandedSubtechniques": "annotated"},
        "hideDisabled": False,
        "techniques": entries,
        "gradient": {"colors": list(GRADIENT), "minValue": 0, "maxValue": maximum},
        "legendItems": legend,
        "showTacticRowBackground": False,
        "tacticRowBackground": "#dddddd",
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
        "selectVisibleTechniques": False,
        "metadata": [
            {"name": "generator", "value": "dac (tools/dac/coverage.py)"},
            {"name": "ATT&CK data", "value": f"{attack.domain} {attack.version} from {attack.path}" + (" (partial)" if not attack.complete else "")},
            {"name": "score", "value": "number of rules"},
            {"name": "targets", "value": ", ".join(coverage.targets)},
        ],
        "links": [],
    }
    if not layer["filters"]:
        del layer["filters"]
    return layer


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def coverage_markdown(coverage: Coverage) -> str:
    attack = coverage.attack
    lines = [
        "# ATT&CK coverage",
        "",
        "Generated by `dac` from `sigma/rules/` (do not edit; `dac convert` rewrites it). "
        f"Techniques and tactics are checked against ATT&CK Enterprise {attack.version} "
        f"(`{attack.path}`)" + ("." if attack.complete else ", a **partial** list: techniques outside it are reported unknown.") +
        " `navigator-layer.json` beside this file is the same coverage as an ATT&CK Navigator layer "
        "(format 4.5, score = number of rules).",
        "",
        f"Targets tested: {TESTED_MEANING}. TP/FP/FN are summed over the labelled log files of the "
        "target's format, for the query the target deploys (KQL or SPL).",
        "",
        "| technique | name | tactic | rules | targets compiled | targets tested (TP/FP/FN) |",
        "|---|---|---|---|---|---|",
    ]
    for tc in coverage.techniques:
        t = tc.technique
        lines.append(f"| [{t.id}]({t.url}) | {_md(t.name)} | {', '.join(tc.tactics)} | "
                     f"{tc.score}: {', '.join(r.name for r in tc.rules)} | {', '.join(tc.targets_compiled) or 'none'} | "
                     f"{_md(_tested_text(tc))} |")
    if not coverage.techniques:
        lines.append("| none | | | 0 | | |")
    lines += ["", "## Rules x targets", "",
              "Cells: TP/FP/FN of the target's query on the labelled logs; `-` = the rule does not compile for the target.", "",
              "| rule | level | techniques | file | " + " | ".join(coverage.targets) + " |",
              "|---|---|---|---|" + "---|" * len(coverage.targets)]
    for rc in coverage.rules:
        level = str(rc.item.rule.level.name).lower() if rc.item.rule.level else ""
        cells = [rc.targets[t].cell() if t in rc.targets else "-" for t in coverage.targets]
        kind = " (correlation)" if rc.item.is_correlation else ""
        lines.append(f"| {rc.name}{kind} | {level} | {', '.join(technique_ids(rc.item))} | `{rc.item.path}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def coverage_files(coverage: Coverage) -> dict[str, str]:
    """Repository-relative path -> exact content of the coverage outputs."""
    return {LAYER_FILE: json.dumps(navigator_layer(coverage), indent=2, ensure_ascii=False) + "\n",
            MARKDOWN_FILE: coverage_markdown(coverage)}


def build_coverage_files(layout: Layout, queries: list[Query], ruleset: RuleSet | None = None, report=None) -> dict[str, str]:
    """The coverage outputs for `dac convert` (labels) or `dac coverage` (a replay report).

    Without a ruleset the rules are those of the queries (every generated rule compiles somewhere).
    """
    if ruleset is None:
        seen: dict[str, LoadedRule] = {}
        for q in queries:
            seen.setdefault(q.rule.name, q.rule)
        ruleset = RuleSet(list(seen.values()))
    techniques = load_techniques(layout)
    labels = None if report is not None else read_labels(layout)
    return coverage_files(compute_coverage(ruleset, queries, techniques, report, labels))


def write_coverage(files: dict[str, str], layout: Layout) -> int:
    """Write changed files atomically (temp file + rename); returns how many were written."""
    written = 0
    for path, content in sorted(files.items()):
        target = layout.root / path
        if target.is_file() and target.read_text(encoding="utf-8") == content:
            continue
        write_text_atomic(target, content)
        written += 1
    return written


def summary_lines(coverage: Coverage) -> list[str]:
    lines = []
    for tc in coverage.techniques:
        lines.append(f"{tc.technique.id} {tc.technique.name} [{', '.join(tc.tactics)}]: {tc.score} rules; "
                     f"compiled for {', '.join(tc.targets_compiled) or 'none'}; tested on {_tested_text(tc)}")
    return lines


def coverage_command(layout: Layout, ruleset: RuleSet, queries: list[Query], config: dict, replay: bool = True,
                     check: bool = False, out=print, err=print) -> int:
    """`dac coverage`: replay the labelled logs (unless `replay` is False: labels only), then write
    conversions/coverage/ (or, with `check`, compare it). Nothing is written when the replay fails."""
    report = None
    if replay:
        from dac.replay.labelled import run_labelled
        report = run_labelled(layout, ruleset, queries, config=config)
        if report.failures:
            for failure in report.failures:
                err(f"FAIL {failure}")
            err(f"coverage not written: {len(report.failures)} replay failure(s); `dac test` shows them")
            return 1
    techniques = load_techniques(layout)
    labels = None if report is not None else read_labels(layout)
    coverage = compute_coverage(ruleset, queries, techniques, report, labels)
    files = coverage_files(coverage)
    for line in summary_lines(coverage):
        out(line)
    if check:
        stale = [p for p, content in files.items()
                 if not (layout.root / p).is_file() or (layout.root / p).read_text(encoding="utf-8") != content]
        for path in stale:
            err(f"stale: {path}")
        if stale:
            err("run `dac coverage` (or `dac convert`) and commit the result")
            return 1
        out(f"up to date: {', '.join(sorted(files))}")
        return 0
    written = write_coverage(files, layout)
    out(f"coverage: {len(coverage.techniques)} technique(s), ATT&CK {techniques.version}; "
        f"{', '.join(sorted(files))} ({written} written, {len(files) - written} unchanged)"
        + ("" if replay else "; tested = labelled (no replay)"))
    return 0
