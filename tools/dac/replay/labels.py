"""The truth labels of testdata/: one labels file per sample log, each event's key (the key of an
auditd, Sysmon, Tracee or Defender event, as the engines report it) mapped to its truth
(T1003.007, malicious-context or benign) and, for a known miss, the reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from dac.rules.ruleset import RuleSet, load_yaml_text


TRUTHS = ("T1003.007", "malicious-context", "benign")


def spl_key(fmt: str, row: dict) -> str:
    """The identity (dac_key, see dac.logs) of the event an SPL result row stands for."""
    if fmt == "auditd":
        return f"{row.get('host')}:{row.get('audit_serial')}"
    if fmt == "sysmon":
        return f"{row.get('Computer')}:{row.get('EventRecordID')}"
    return str(row.get("dac_key"))


def kql_key(row: dict) -> str:
    return f"{row.get('DeviceName')}:{row.get('ReportId')}"


@dataclass
class LabelFile:
    path: str
    log_path: Path
    format: str
    table: str | None
    host: str | None
    events: dict[str, list[str]]    # event key -> rule ids that fire on it (the regression record)
    correlations: dict[str, list[dict]]
    twin_of: str | None = None      # testdata/shapes/: the canonical file this one re-writes in another shape
    truth: dict[str, str] = field(default_factory=dict)       # event key -> T1003.007 | malicious-context | benign
    accepted: dict[str, dict[str, str]] = field(default_factory=dict)   # key -> {accepted_fp|known_miss: reason}


def load_labels(layout: Layout, ruleset: RuleSet) -> list[LabelFile]:
    known = {str(r.rule.id) for r in ruleset.generated}
    problems, labels = [], []
    for path in sorted((layout.root / "testdata").rglob("*.labels.yml")):
        rel = layout.rel(path)
        text = path.read_text(encoding="utf-8")
        try:
            # libyaml's parser where PyYAML has it (the pure-Python one took a tenth of a replay)
            data = load_yaml_text(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problems.append(Problem(rel, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}"))
            continue
        log_path = path.with_name(path.name[: -len(".labels.yml")])
        if not log_path.is_file():
            problems.append(Problem(rel, None, f"labels a missing log file {layout.rel(log_path)}"))
            continue
        raw_events = data.get("events") or {}
        events, truth, accepted = {}, {}, {}
        text_lines = text.splitlines()
        def key_line(key: str) -> int | None:
            return next((n for n, l in enumerate(text_lines, 1) if f'"{key}"' in l or l.strip().startswith(f"{key}:")), None)
        for key, value in raw_events.items():
            key = str(key)
            if not isinstance(value, dict) or value.get("truth") not in TRUTHS:
                problems.append(Problem(rel, key_line(key), f"event {key}: needs {{truth: {' | '.join(TRUTHS)}, fires: [rule ids]}}"))
                continue
            unknown = set(value) - {"truth", "fires", "accepted_fp", "known_miss", "note"}
            if unknown:
                problems.append(Problem(rel, key_line(key), f"event {key}: unknown label keys {', '.join(sorted(unknown))}"))
            events[key] = [str(i) for i in (value.get("fires") or [])]
            truth[key] = value["truth"]
            accepted[key] = {k: str(value[k]) for k in ("accepted_fp", "known_miss") if value.get(k)}
        correlations = {str(k): list(v or []) for k, v in (data.get("correlations") or {}).items()}
        for rule_id in sorted({i for ids in events.values() for i in ids} | set(correlations)):
            if rule_id not in known:
                line = next((n for n, l in enumerate(text_lines, 1) if rule_id in l), None)
                problems.append(Problem(rel, line, f"label names unknown rule id {rule_id}"))
        labels.append(LabelFile(rel, log_path, str(data.get("format")), data.get("table"), data.get("host"), events, correlations,
                                data.get("twin_of"), truth, accepted))
    if problems:
        raise DacError(problems)
    return labels
