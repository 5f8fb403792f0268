"""Microsoft Sentinel analytics from the compiled rules: Azure-Sentinel template YAML + ARM templates.

For every query compiled for a `siem: sentinel` target, and for every composed hunting union
(sigma/targets.yml `hunting:`), one scheduled analytic rule:

* `sentinel/analytics/<stem>.yaml`: the Azure-Sentinel repository's analytic-rule template format
  (id, name, description, severity, requiredDataConnectors, queryFrequency, queryPeriod,
  triggerOperator, triggerThreshold, tactics, relevantTechniques, query, entityMappings, ...,
  version, kind), key order as in that repository's templates. The JSON Schema in
  sentinel/schemas/analytic_rule.schema.json states what a valid one is.
* `sentinel/arm/<stem>.json`: an ARM deployment template with one
  `Microsoft.OperationalInsights/workspaces/providers/alertRules` resource whose `properties` are
  exactly the `Microsoft.SecurityInsights/alertRules` (kind Scheduled) REST properties for
  API_VERSION, so Sentinel Repositories (or any ARM deployment) can deploy it.

What the Sigma rule says (title, description, false positives, level, ATT&CK tags, the query) comes
from the rule; what Sentinel needs beyond it comes from sentinel/analytics.yml
(dac.artifacts.sentinel_config). Ids and the ownership marker: dac.artifacts.sentinel_ids; the
files: dac.artifacts.sentinel_files; their checks: dac.artifacts.sentinel_checks.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass

from dac.compile.compose import hunting_members, hunting_specs, kql_hunting
from dac.compile.convert import Query
from dac.core.problems import DacError, Problem
from dac.rules.tiers import is_alert
from .sentinel_config import CONFIG_FILE, AnalyticsConfig, duration_minutes, iso_duration
from .sentinel_ids import HUNTING_TARGET, alert_rule_id, hunting_rule_id, owned_marker
from .sentinel_versions import VERSION_RE, settle
from .sentinel_windows import ingestion_window, sequence_window

# Microsoft.SecurityInsights api-version of the ARM templates and of `dac deploy`. No stable
# version's ScheduledAlertRuleProperties has `subTechniques` (up to stable 2025-09-01); the
# preview versions have since 2024-01-01-preview, and Azure-Sentinel's own solution templates
# deploy analytics with a preview version for that reason. Without it T1003.007 would be cut to
# T1003 on deploy, so the newest preview (2025-10-01-preview) is used.
API_VERSION = "2025-10-01-preview"
ARM_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
RESOURCE_TYPE = "Microsoft.OperationalInsights/workspaces/providers/alertRules"

ANALYTICS_DIR = "sentinel/analytics"
ARM_DIR = "sentinel/arm"
SEVERITY = {"informational": "Informational", "low": "Low", "medium": "Medium",
            "high": "High", "critical": "High"}          # Sentinel has no Critical
SEVERITY_RANK = {"Informational": 0, "Low": 1, "Medium": 2, "High": 3}
TACTICS = {     # ATT&CK tactic tag (Sigma) -> Sentinel AttackTactic
    "reconnaissance": "Reconnaissance", "resource-development": "ResourceDevelopment",
    "initial-access": "InitialAccess", "execution": "Execution", "persistence": "Persistence",
    "privilege-escalation": "PrivilegeEscalation", "defense-evasion": "DefenseEvasion",
    "credential-access": "CredentialAccess", "discovery": "Discovery",
    "lateral-movement": "LateralMovement", "collection": "Collection",
    "command-and-control": "CommandAndControl", "exfiltration": "Exfiltration", "impact": "Impact",
    "impair-process-control": "ImpairProcessControl", "inhibit-response-function": "InhibitResponseFunction",
}
TECHNIQUE_TAG = re.compile(r"^attack\.t(\d{4})(?:\.(\d{3}))?$")
TRIGGER_OPERATORS = {"gt": "GreaterThan", "lt": "LessThan", "eq": "Equal", "ne": "NotEqual"}
MIN_MINUTES, MAX_MINUTES = 5, 14 * 24 * 60                # Sentinel: 5 minutes .. 14 days


@dataclass
class AlertRule:
    id: str                  # the alert rule GUID (ARM resource name, template id)
    file_stem: str           # sentinel/analytics/<file_stem>.yaml, sentinel/arm/<file_stem>.json
    yaml_doc: dict           # the Azure-Sentinel template document, in output key order
    arm_properties: dict     # the REST `properties` of kind Scheduled for API_VERSION


# ---------------------------------------------------------------- building one analytic

def _tags(tags) -> tuple[list[str], list[str]]:
    """Sigma tags -> (Sentinel tactics, ATT&CK technique ids incl. sub-techniques), in tag order."""
    tactics, techniques = [], []
    for tag in (str(t).lower() for t in tags):
        if not tag.startswith("attack."):
            continue
        match = TECHNIQUE_TAG.match(tag)
        if match:
            technique = f"T{match.group(1)}" + (f".{match.group(2)}" if match.group(2) else "")
            if technique not in techniques:
                techniques.append(technique)
        elif tag[len("attack."):] in TACTICS and TACTICS[tag[len("attack."):]] not in tactics:
            tactics.append(TACTICS[tag[len("attack."):]])
    return tactics, techniques


def _severity(level) -> str:
    name = str(level.name).lower() if level is not None else "medium"
    return SEVERITY[name]


def rule_description(rule) -> str:
    text = (rule.description or "").strip()
    parts = [text] if text else []
    if rule.falsepositives:
        parts.append("False positives: " + "; ".join(str(f).rstrip(".") for f in rule.falsepositives) + ".")
    return "\n\n".join(parts)


def _tables(query_text: str, connectors: dict) -> list[str]:
    return [t for t in connectors if re.search(rf"(?<![\w.]){re.escape(t)}(?![\w])", query_text)]


def required_connectors(tables: list[str], connectors: dict) -> list[dict]:
    by_connector: dict[str, list[str]] = {}
    for table in tables:
        by_connector.setdefault(str(connectors[table]), []).append(table)
    return [{"connectorId": c, "dataTypes": types} for c, types in by_connector.items()]


@dataclass
class _Spec:
    """Everything one analytic needs, before it is written out."""
    guid: str
    file_stem: str
    owner: tuple[str, str]
    config_key: str                  # key in `overrides`
    shape: str
    name: str
    description: str
    severity: str
    tactics: list[str]
    techniques: list[str]
    query: str
    # the `let` names whose rows the ingestion window applies to (a hunting union: every member);
    # None: the query starts with its table
    window_lets: list[str] | None = None
    correlation_seconds: int | None = None      # a correlation's timespan


def _settings(spec: _Spec, cfg: AnalyticsConfig) -> dict:
    shape = cfg.shapes.get(spec.shape)
    if not isinstance(shape, dict):
        cfg.problem(("shapes",), f"no shape {spec.shape!r} under `shapes` (needed by {spec.file_stem})")
        shape = {}
    override = cfg.override(spec.config_key)
    settings = {**copy.deepcopy(cfg.defaults), **copy.deepcopy(shape), **copy.deepcopy(override)}
    if "description" in override and spec.shape != "hunting":
        cfg.problem(("overrides", spec.config_key, "description"),
                    f"{spec.file_stem}: the description comes from the Sigma rule; edit the rule")
    return settings


def _check(spec: _Spec, s: dict, cfg: AnalyticsConfig) -> None:
    """What the schema cannot say, or what the ARM conversion needs; problems point at the key's origin."""
    def where(key: str) -> tuple:
        if key in cfg.override(spec.config_key):
            return ("overrides", spec.config_key, key)
        if key in (cfg.shapes.get(spec.shape) or {}):
            return ("shapes", spec.shape, key)
        return ("defaults", key)

    minutes = {}
    for key in ("queryFrequency", "queryPeriod", "suppressionDuration"):
        try:
            minutes[key] = duration_minutes(s[key])
        except (KeyError, ValueError) as e:
            cfg.problem(where(key), f"{spec.file_stem}: {key}: {e}")
    for key in ("queryFrequency", "queryPeriod"):
        if key in minutes and not MIN_MINUTES <= minutes[key] <= MAX_MINUTES:
            cfg.problem(where(key), f"{spec.file_stem}: {key} {s[key]} is outside Sentinel's 5m..14d")
    if "queryFrequency" in minutes and "queryPeriod" in minutes:
        if minutes["queryPeriod"] < minutes["queryFrequency"]:
            cfg.problem(where("queryPeriod"), f"{spec.file_stem}: queryPeriod {s['queryPeriod']} is shorter than queryFrequency {s['queryFrequency']}")
        if minutes["queryPeriod"] >= 2 * 1440 and minutes["queryFrequency"] < 60:
            cfg.problem(where("queryFrequency"), f"{spec.file_stem}: a queryPeriod of 2 days or more needs a queryFrequency of at least 1h")
    grouping = ((s.get("incidentConfiguration") or {}).get("groupingConfiguration") or {})
    if "lookbackDuration" in grouping:
        try:
            duration_minutes(grouping["lookbackDuration"])
        except ValueError as e:
            cfg.problem(where("incidentConfiguration"), f"{spec.file_stem}: lookbackDuration: {e}")
    if s.get("triggerOperator") not in TRIGGER_OPERATORS:
        cfg.problem(where("triggerOperator"), f"{spec.file_stem}: triggerOperator must be one of {sorted(TRIGGER_OPERATORS)}")
    if not isinstance(s.get("triggerThreshold"), int) or isinstance(s.get("triggerThreshold"), bool):
        cfg.problem(where("triggerThreshold"), f"{spec.file_stem}: triggerThreshold must be an integer")
    if spec.severity not in SEVERITY_RANK:
        cfg.problem(where("severity"), f"{spec.file_stem}: severity must be one of {sorted(SEVERITY_RANK)}")
    mappings = s.get("entityMappings")
    if not isinstance(mappings, list) or not mappings or not all(isinstance(m, dict) for m in mappings):
        cfg.problem(where("entityMappings"), f"{spec.file_stem}: entityMappings must be a non-empty list of mappings")
        return
    mapped = {m.get("entityType") for m in mappings}
    for entity in grouping.get("groupByEntities") or []:
        if entity not in mapped:
            cfg.problem(where("incidentConfiguration"),
                        f"{spec.file_stem}: incident grouping by {entity}, which the rule does not map (maps {sorted(mapped)})")
    for mapping in mappings:
        fields = [f.get("identifier") for f in (mapping.get("fieldMappings") or []) if isinstance(f, dict)]
        if len(fields) != len(set(fields)):
            cfg.problem(where("entityMappings"), f"{spec.file_stem}: {mapping.get('entityType')} maps an identifier twice")


def _with_iso_lookback(value):
    """A copy of an incident configuration with lookbackDuration in ISO 8601."""
    value = copy.deepcopy(value)
    grouping = value.get("groupingConfiguration") if isinstance(value, dict) else None
    if isinstance(grouping, dict) and "lookbackDuration" in grouping:
        grouping["lookbackDuration"] = iso_duration(grouping["lookbackDuration"])
    return value


def _build(spec: _Spec, cfg: AnalyticsConfig) -> AlertRule:
    s = _settings(spec, cfg)
    severity = s.get("severity", spec.severity)
    spec.severity = severity
    name = str(s.get("name", spec.name))
    description = (str(s["description"]).strip() if spec.shape == "hunting" and "description" in s else spec.description)
    description = (description + "\n\n" if description else "") + owned_marker(*spec.owner)
    _check(spec, s, cfg)
    tables = _tables(spec.query, cfg.connectors)
    if not tables:
        cfg.problem(("data_connectors",), f"{spec.file_stem}: the query reads no table listed under `data_connectors`")
    query = spec.query.rstrip("\n") + "\n"
    if s.get("dedupByIngestionTime") and not cfg.problems:
        if spec.correlation_seconds is not None:
            filtered = sequence_window(query, str(s["queryFrequency"]), str(s["queryPeriod"]), spec.correlation_seconds)
            why = (f"queryPeriod must exceed queryFrequency by the correlation's timespan "
                   f"({spec.correlation_seconds}s) for one alert per sequence")
        else:
            filtered = ingestion_window(query, str(s["queryFrequency"]), spec.window_lets)
            why = "no place for the ingestion-time filter in the query"
        if filtered is None:
            cfg.problem(("defaults", "dedupByIngestionTime"), f"{spec.file_stem}: {why}")
        query = filtered or query
    doc: dict = {
        "id": spec.guid,
        "name": name,
        "description": description + "\n",
        "severity": severity,
        "status": s.get("status"),
        "requiredDataConnectors": required_connectors(tables, cfg.connectors),
        "queryFrequency": s.get("queryFrequency"),
        "queryPeriod": s.get("queryPeriod"),
        "triggerOperator": s.get("triggerOperator"),
        "triggerThreshold": s.get("triggerThreshold"),
        "tactics": spec.tactics,
        "relevantTechniques": spec.techniques,
        "query": query,
        "entityMappings": s.get("entityMappings"),
        "customDetails": s.get("customDetails"),
        "alertDetailsOverride": s.get("alertDetailsOverride"),
        "incidentConfiguration": s.get("incidentConfiguration"),
        "eventGroupingSettings": s.get("eventGroupingSettings"),
        "suppressionEnabled": s.get("suppressionEnabled"),
        "suppressionDuration": s.get("suppressionDuration"),
        "version": str(s.get("version")),
        "kind": "Scheduled",
    }
    doc = {k: v for k, v in doc.items() if v is not None}
    if cfg.problems:                 # durations or operators are not convertible: stop here
        return AlertRule(spec.guid, spec.file_stem, doc, {})
    techniques = sorted({t.split(".")[0] for t in spec.techniques})
    props: dict = {
        "displayName": name,
        "description": doc["description"],
        "severity": severity,
        "enabled": bool(s.get("enabled", True)),
        "query": query,
        "queryFrequency": iso_duration(doc["queryFrequency"]),
        "queryPeriod": iso_duration(doc["queryPeriod"]),
        "triggerOperator": TRIGGER_OPERATORS[doc["triggerOperator"]],
        "triggerThreshold": doc["triggerThreshold"],
        "suppressionDuration": iso_duration(doc["suppressionDuration"]),
        "suppressionEnabled": bool(doc["suppressionEnabled"]),
        "tactics": spec.tactics,
        "techniques": techniques,
        "subTechniques": [t for t in spec.techniques if "." in t],
    }
    props["entityMappings"] = copy.deepcopy(doc["entityMappings"])
    for key in ("customDetails", "alertDetailsOverride", "eventGroupingSettings"):
        if key in doc:
            props[key] = copy.deepcopy(doc[key])
    if "incidentConfiguration" in doc:
        props["incidentConfiguration"] = _with_iso_lookback(doc["incidentConfiguration"])
    return AlertRule(spec.guid, spec.file_stem, doc, props)


def correlation_shape(corr, cfg) -> str:
    """`correlation_<type>` (e.g. correlation_value_count) when analytics.yml has that shape, else
    `correlation`: the output columns of a correlation depend on its type (dac.compile.correlation)."""
    typed = f"correlation_{corr.type.name.lower()}"
    return typed if typed in cfg.shapes else "correlation"


# ---------------------------------------------------------------- all analytics

def _rule_specs(queries: list[Query], cfg: "AnalyticsConfig") -> list[_Spec]:
    sentinel = [q for q in queries if q.target.siem == "sentinel"]
    several_targets = len({q.target.name for q in sentinel}) > 1
    specs = []
    for q in sorted(sentinel, key=lambda q: (q.rule.stem, q.target.name)):
        if not is_alert(q.rule):        # hunting tier: a hunting query (dac.artifacts.sentinel_hunting), no analytic
            continue
        rule = q.rule.rule
        tactics, techniques = _tags(rule.tags)
        shape = correlation_shape(q.rule.rule, cfg) if q.rule.is_correlation else str(q.scope.state.get("source"))
        specs.append(_Spec(
            guid=alert_rule_id(str(rule.id), q.target.name),
            file_stem=f"{q.rule.stem}.{q.target.name}" if several_targets else q.rule.stem,
            owner=(str(rule.id), q.target.name), config_key=str(rule.id), shape=shape,
            name=str(rule.title), description=rule_description(rule), severity=_severity(rule.level),
            tactics=tactics, techniques=techniques, query=q.text,
            correlation_seconds=int(rule.timespan.seconds) if q.rule.is_correlation else None))
    return specs


def _hunting_specs(queries: list[Query], config: dict) -> list[_Spec]:
    sentinel = [q for q in queries if q.target.siem == "sentinel"]
    specs = []
    for hunt in hunting_specs(config, "sigma/targets.yml"):
        text = kql_hunting(sentinel, hunt)
        if not text:
            continue
        members = hunting_members(sentinel, hunt, "kql")
        tactics, techniques, severity = [], [], "Informational"
        for q in members:
            t, tech = _tags(q.rule.rule.tags)
            tactics += [x for x in t if x not in tactics]
            techniques += [x for x in tech if x not in techniques]
            s = _severity(q.rule.rule.level)
            severity = s if SEVERITY_RANK[s] > SEVERITY_RANK[severity] else severity
        names = ", ".join(q.rule.name for q in members)
        technique = hunt.technique.split(".", 1)[1].upper() if "." in hunt.technique else hunt.technique
        specs.append(_Spec(
            guid=hunting_rule_id(hunt.name), file_stem=hunt.name, owner=(hunt.name, HUNTING_TARGET),
            config_key=hunt.name, shape="hunting",
            name=f"{technique}: composed detection ({names})",
            description=f"Composed union of the Sigma rules tagged {hunt.technique}: {names}.",
            severity=severity, tactics=tactics, techniques=techniques, query=text,
            window_lets=[q.rule.name for q in members]))
    return specs


def alert_rules(queries: list[Query], config: dict | None, targets_config: dict) -> list[AlertRule]:
    """One AlertRule per Sentinel query and per composed hunting union, sorted by file stem.

    `config` is sentinel/analytics.yml as returned by load_analytics_config, `targets_config`
    sigma/targets.yml as returned by load_targets (its `hunting:` section). Raises DacError
    listing every configuration problem, and when there is no analytics config at all (so that a
    deployment never reads a missing file as "no analytics" and prunes them).
    """
    if config is None:
        raise DacError([Problem(CONFIG_FILE, None, "missing: the Sentinel analytics configuration is needed")])
    cfg = AnalyticsConfig(config)
    specs = _rule_specs(queries, cfg) + _hunting_specs(queries, targets_config)
    known = {s.config_key for s in specs}
    for key in cfg.overrides:
        if str(key) not in known:
            cfg.problem(("overrides", str(key)), f"override for {key!r}, which is no Sentinel analytic (a Sigma rule id or hunting name)")
    stems: dict[str, str] = {}
    rules = []
    for spec in sorted(specs, key=lambda s: s.file_stem):
        if spec.file_stem in stems:
            cfg.problem(("overrides",), f"two analytics would be written as {spec.file_stem}")
        stems[spec.file_stem] = spec.guid
        rules.append(_build(spec, cfg))
    if cfg.problems:
        raise DacError(cfg.problems)
    locked = config.get("_versions") or {}
    for rule in rules:
        configured = rule.yaml_doc["version"]
        if not VERSION_RE.match(configured):
            cfg.problem(("defaults", "version"), f"{rule.file_stem}: version {configured!r} must be x.y.z")
            continue
        rule.yaml_doc["version"] = settle(configured, rule.yaml_doc["query"], locked.get(rule.id))
    if cfg.problems:
        raise DacError(cfg.problems)
    return rules
