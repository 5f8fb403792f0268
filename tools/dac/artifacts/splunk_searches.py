"""The saved searches of the Splunk app: one scheduled alert per compiled Splunk query (rule x
Splunk target), in a stanza named from the rule id and the target (`dac-<rule id>-<target>`),
never from the title, so renaming a rule keeps its saved search; one more per composed hunting
search (`dac-hunting-<name>`).

Each stanza's description ends with an ownership line (`owned_marker`): the deploy step finds the
saved searches this repository manages with `parse_owner`, whatever their stanza name."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable

from dac.compile.compose import HuntingSpec, spl_hunting
from dac.compile.convert import Query
from dac.core.problems import DacError, Problem
from dac.rules.tiers import is_alert
from .splunk_conf import GENERATED_NOTE, check_value, render_conf
from .splunk_config import AppConfig, LEVELS, SEVERITY, parse_app_config


HUNTING_TARGET = "hunting"
HUNTING_WINDOW = "-7d@d"        # what a hunting-tier search looks back over when an analyst runs it      # the `target` of a composed hunting search (as in sentinel_analytics)
STANZA_PREFIX = "dac-"
TECHNIQUE_RE = re.compile(r"^attack\.(t\d{4}(\.\d{3})?)$")
_RULE_MARKER = "Managed by dac from sigma rule {id} (target {target}); edit the Sigma rule, not this search."
_HUNTING_MARKER = "Managed by dac from hunting query {name} (target {target}); edit the Sigma rules, not this search."
_MARKER_RE = re.compile(
    r"^Managed by dac from (?:sigma rule (?P<id>[0-9A-Fa-f-]{36})|hunting query (?P<hunting>[A-Za-z0-9_.-]+))"
    r" \(target (?P<target>[A-Za-z0-9_.-]+)\); edit the Sigma rules?, not this search\.$")


_STAMP_RE = re.compile(r"^dac-[a-z-]+: \S*$")          # e.g. `dac-hash: <hex>`, appended by the deploy step


def owned_marker(rule_id: str, target: str) -> str:
    """The last line of the description of every saved search dac generates.

    (Sigma rule id, target name), or (hunting name, "hunting") for a composed hunting search."""
    if target == HUNTING_TARGET:
        return _HUNTING_MARKER.format(name=rule_id, target=target)
    return _RULE_MARKER.format(id=str(rule_id).lower(), target=target)


def parse_owner(description: str | None) -> tuple[str, str] | None:
    """(rule id, target) from a description whose last line is an `owned_marker`, else None.

    Hunting searches give (hunting name, "hunting"). Only the last non-blank line counts, after
    dropping `dac-<word>: <value>` lines (the deploy step appends `dac-hash: <hex>`), so a marker
    quoted inside a hand-written description does not claim the search."""
    lines = [line.strip() for line in (description or "").replace("\r\n", "\n").split("\n") if line.strip()]
    while lines and _STAMP_RE.match(lines[-1]):
        lines.pop()
    if not lines:
        return None
    match = _MARKER_RE.match(lines[-1])
    if not match:
        return None
    if match["hunting"]:
        return match["hunting"], match["target"]
    return match["id"].lower(), match["target"]


def stanza_name(rule_id: str, target: str) -> str:
    """Stable savedsearches.conf stanza name: `dac-<rule id>-<target>`, or `dac-hunting-<name>`
    for (hunting name, "hunting"). `stanza_name(*parse_owner(description))` names the stanza."""
    if target == HUNTING_TARGET:
        return f"{STANZA_PREFIX}hunting-{rule_id}"
    return f"{STANZA_PREFIX}{str(rule_id).lower()}-{target}"


@dataclass
class SavedSearch:
    name: str
    attributes: dict[str, str]


def _level(query: Query) -> str:
    level = query.rule.rule.level
    name = str(level.name).lower() if level is not None else None
    if name not in SEVERITY:
        raise DacError([query.rule.problem(f"rule {query.rule.name}: level {name!r} is not one of {', '.join(LEVELS)}"
                                           " (needed for alert.severity)", "level")])
    return name


def _techniques(query: Query) -> list[str]:
    found = {m.group(1).upper() for m in (TECHNIQUE_RE.match(str(t)) for t in query.rule.rule.tags) if m}
    return sorted(found)


def _description(title: str, text: str | None, marker: str) -> str:
    """Three lines: the title, the description as one paragraph, the ownership marker."""
    lines = [" ".join(title.split()), " ".join((text or "").split())]
    return "\n".join([line for line in lines if line] + [marker])


def _alert(search: str, description: str, cron: str, earliest: str, latest: str, level: str,
           fields: list[str], period: str) -> dict[str, str]:
    return {
        "description": description,
        "search": search.strip(),
        "enableSched": "1",
        "cron_schedule": cron,
        "dispatch.earliest_time": earliest,
        "dispatch.latest_time": latest,
        "counttype": "number of events",
        "relation": "greater than",
        "quantity": "0",
        "alert.track": "1",
        "alert.severity": SEVERITY[level],
        "alert.digest_mode": "0",
        "alert.suppress": "1",
        "alert.suppress.fields": ",".join(fields),
        "alert.suppress.period": period,
    }


def _hunting_search(search: str, description: str, earliest: str, latest: str) -> dict[str, str]:
    """A hunting-tier rule: a saved search an analyst runs (Search & Reporting, or a hunting
    dashboard), not scheduled and with no alert action."""
    return {
        "description": description,
        "search": search.strip(),
        "enableSched": "0",
        "dispatch.earliest_time": earliest,
        "dispatch.latest_time": latest,
    }


def _es_attributes(query: Query, config: AppConfig, override: dict) -> dict[str, str]:
    es = dict(config.es, **override.get("es", {}))
    rule = query.rule.rule
    level = _level(query)
    title = " ".join(str(rule.title).split())
    attributes = {
        "action.correlationsearch.enabled": "1",
        "action.correlationsearch.label": f"{title} ({query.target.name})",
    }
    techniques = _techniques(query)
    if techniques:
        attributes["action.correlationsearch.annotations"] = json.dumps({"mitre_attack": techniques})
    attributes.update({
        "action.notable": "1",
        "action.notable.param.rule_title": title,
        "action.notable.param.rule_description": " ".join(str(rule.description or title).split()),
        "action.notable.param.security_domain": es["security_domain"],
        "action.notable.param.severity": level,
        "action.risk": "1",
        "action.risk.param._risk": json.dumps([{
            "risk_object_field": es["risk_object_field"],
            "risk_object_type": es["risk_object_type"],
            "risk_score": es["risk_score"][level],
        }]),
        "action.risk.param._risk_message": title,
    })
    return attributes


def _suppress_fields(fields: dict[str, list[str]], target: str) -> list[str] | None:
    return fields.get(target) or fields.get("default")


def saved_searches(queries: list[Query], config: AppConfig | dict,
                   hunting: Iterable[HuntingSpec] = ()) -> list[SavedSearch]:
    """One scheduled alert per Splunk query, plus one per composed hunting search; sorted by name."""
    if not isinstance(config, AppConfig):
        config = parse_app_config(config)
    problems: list[Problem] = []
    searches: list[SavedSearch] = []
    splunk = [q for q in queries if q.target.siem == "splunk"]
    known_ids = {str(q.rule.rule.id).lower() for q in queries}
    for rule_id, override in config.overrides.items():
        if rule_id not in known_ids:
            problems.append(config.problem(f"override for unknown rule id {rule_id!r}", "overrides",
                                           override.get("key", rule_id)))
    for q in splunk:
        if q.target.name == HUNTING_TARGET:
            problems.append(Problem("sigma/targets.yml", None, f"a Splunk target cannot be named {HUNTING_TARGET!r}: "
                                    "the name marks the composed hunting searches"))
            break
    for q in splunk:
        rule = q.rule.rule
        rule_id = str(rule.id).lower()
        override = config.overrides.get(rule_id, {})
        schedule = dict(config.schedule, **override.get("schedule", {}))
        fields = _suppress_fields(override.get("fields") or {}, q.target.name) or \
            _suppress_fields(config.suppress_fields, q.target.name)
        if not fields:
            problems.append(config.problem(f"no suppress fields for target {q.target.name} (rule {q.rule.name}): "
                                           "set `suppress.fields.default`", "suppress"))
            continue
        marker = owned_marker(rule_id, q.target.name)
        if not is_alert(q.rule):
            attributes = _hunting_search(q.text, _description(str(rule.title), rule.description, marker),
                                         HUNTING_WINDOW, "now")
        else:
            attributes = _alert(q.text, _description(str(rule.title), rule.description, marker),
                                schedule["cron_schedule"], schedule["earliest_time"], schedule["latest_time"],
                                _level(q), fields, override.get("period") or config.suppress_period)
            if config.es["enabled"]:
                attributes.update(_es_attributes(q, config, override))
        try:
            for key, value in attributes.items():
                check_value(stanza_name(rule_id, q.target.name), key, value)
        except ValueError as e:
            problems.append(q.rule.problem(f"rule {q.rule.name}, target {q.target.name}: {e}"))
            continue
        searches.append(SavedSearch(stanza_name(rule_id, q.target.name), attributes))
    for spec in hunting:
        text = spl_hunting(queries, spec)
        if not text:
            continue
        description = _description(f"Hunting: {spec.technique.removeprefix('attack.').upper()} ({spec.name})",
                                   f"Every Splunk detection tagged {spec.technique} over the last {spec.lookback}, "
                                   "one row per hit, for an analyst to review.",
                                   owned_marker(spec.name, HUNTING_TARGET))
        h = config.hunting
        searches.append(SavedSearch(stanza_name(spec.name, HUNTING_TARGET), _alert(
            text, description, h["cron_schedule"], f"-{spec.lookback}", h["latest_time"], h["level"],
            h["fields"], h["period"])))
    names = [s.name for s in searches]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(config.path, None, f"two saved searches would be named {name!r}"))
    if problems:
        raise DacError(problems)
    for s in searches:                       # hunting searches: composed from checked queries
        for key, value in s.attributes.items():
            check_value(s.name, key, value)
    return sorted(searches, key=lambda s: s.name)


def render_savedsearches(searches: Iterable[SavedSearch]) -> str:
    return render_conf(((s.name, s.attributes) for s in searches),
                       GENERATED_NOTE + "\nOne scheduled alert per rule and Splunk target: "
                       "[dac-<rule id>-<target>]; hunting searches: [dac-hunting-<name>].")
