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
from the rule; what Sentinel needs beyond it (schedule, entity mappings, connectors, incident
settings) comes from sentinel/analytics.yml. Rule ids are GUIDs derived from (Sigma rule id,
target), so renaming a rule keeps its analytic. Each description ends with an ownership marker
(`owned_marker`, `parse_owner`) by which a deployment recognises the analytics it owns.
"""
from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass
import yaml

from dac.compile.compose import hunting_members, hunting_specs, kql_hunting
from dac.compile.convert import Query
from .sentinel_hunting import HUNTING_DIR, dumps_arm, hunting_queries
from dac.rules.tiers import is_alert
from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from .sentinel_versions import LOCK_FILE, VERSION_RE, load_lock, lock_text, query_hash, settle

# Microsoft.SecurityInsights api-version of the ARM templates and of `dac deploy`. No stable
# version's ScheduledAlertRuleProperties has `subTechniques` (up to stable 2025-09-01); the
# preview versions have since 2024-01-01-preview, and Azure-Sentinel's own solution templates
# deploy analytics with a preview version for that reason. Without it T1003.007 would be cut to
# T1003 on deploy, so the newest preview (2025-10-01-preview) is used.
API_VERSION = "2025-10-01-preview"
ARM_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
RESOURCE_TYPE = "Microsoft.OperationalInsights/workspaces/providers/alertRules"

CONFIG_FILE = "sentinel/analytics.yml"
ANALYTICS_DIR = "sentinel/analytics"
ARM_DIR = "sentinel/arm"

# Fixed namespace for the alert rule GUIDs: never change it, every deployed rule id depends on it.
NAMESPACE = uuid.UUID("d158ea35-1a5c-4700-998b-1e5ec26b5c5e")
HUNTING_TARGET = "hunting"      # the `target` of a composed union in the ownership marker

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
DURATION = re.compile(r"^([1-9][0-9]*)([mhd])$")
MIN_MINUTES, MAX_MINUTES = 5, 14 * 24 * 60                # Sentinel: 5 minutes .. 14 days

MARKER = "Managed by dac from sigma rule {rule_id} (target {target}); edit the Sigma rule, not this analytic."
_MARKER_RE = re.compile(r"Managed by dac from sigma rule (\S+) \(target ([^\s()]+)\); "
                        r"edit the Sigma rule, not this analytic\.")
_STAMP_LINES = re.compile(r"(?:\n[ \t]*dac-[a-z-]+: \S*[ \t]*)+\s*$")

DEFAULT_KEYS = ("queryFrequency", "queryPeriod", "triggerOperator", "triggerThreshold", "suppressionEnabled",
                "suppressionDuration", "eventGroupingSettings", "incidentConfiguration", "enabled", "status", "version",
                "dedupByIngestionTime")
# dedupByIngestionTime: each run alerts only on rows ingested since the previous run (see
# ingestion_window), so a queryPeriod longer than queryFrequency catches late rows without
# alerting twice on the rows of the overlap.
INGESTION_FILTER = "| where ingestion_time() > ago({window})"
# A correlation alerts on its sequences whose last event falls in one run's slice of event time,
# (now - queryFrequency - delay, now - delay], delay = queryPeriod - queryFrequency - timespan:
# consecutive runs' slices neither overlap nor leave gaps, and every step of a sequence in the
# slice is inside the lookback. Filtering a step on ingestion time would lose a sequence whose
# steps were ingested out of order in two runs.
SEQUENCE_FILTER = "| where LastTime > ago({start}m) and LastTime <= ago({delay}m)"
SHAPE_KEYS = ("entityMappings", "customDetails", "alertDetailsOverride")
OVERRIDE_KEYS = ("name", "description", "severity") + DEFAULT_KEYS + SHAPE_KEYS
REQUIRED_DEFAULTS = ("queryFrequency", "queryPeriod", "triggerOperator", "triggerThreshold",
                     "suppressionEnabled", "suppressionDuration", "version")


@dataclass
class AlertRule:
    id: str                  # the alert rule GUID (ARM resource name, template id)
    file_stem: str           # sentinel/analytics/<file_stem>.yaml, sentinel/arm/<file_stem>.json
    yaml_doc: dict           # the Azure-Sentinel template document, in output key order
    arm_properties: dict     # the REST `properties` of kind Scheduled for API_VERSION


# ---------------------------------------------------------------- identity and ownership

def alert_rule_id(rule_id: str, target: str) -> str:
    """GUID of the analytic for one Sigma rule on one target: stable across titles, names, files."""
    return str(uuid.uuid5(NAMESPACE, f"{rule_id}/{target}"))


def hunting_rule_id(hunting_name: str) -> str:
    """GUID of the analytic for a composed hunting union."""
    return str(uuid.uuid5(NAMESPACE, hunting_name))


def owned_marker(rule_id: str, target: str) -> str:
    """The line every generated description ends with."""
    return MARKER.format(rule_id=rule_id, target=target)


def parse_owner(description: str | None) -> tuple[str, str] | None:
    """(rule id, target) when the description ends with dac's ownership marker, else None.

    A composed union gives (hunting name, "hunting"). Trailing whitespace is ignored (the portal
    and the API may trim it), and so are `dac-<word>: <value>` lines after the marker (the deploy
    step appends `dac-hash: …`); a marker anywhere else does not count.
    """
    if not description:
        return None
    lines = _STAMP_LINES.sub("", description).rstrip().splitlines()
    match = _MARKER_RE.fullmatch(lines[-1].strip()) if lines else None
    return (match.group(1), match.group(2)) if match else None


# ---------------------------------------------------------------- durations

def duration_minutes(value: str) -> int:
    match = DURATION.match(str(value))
    if not match:
        raise ValueError(f"duration {value!r} must be <n>m, <n>h or <n>d")
    return int(match.group(1)) * {"m": 1, "h": 60, "d": 1440}[match.group(2)]


def iso_duration(value: str) -> str:
    """Azure-Sentinel template duration (75m, 1h, 14d) -> ISO 8601 for the API (PT1H15M, PT1H, P14D)."""
    minutes = duration_minutes(value)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


# ---------------------------------------------------------------- configuration

def load_analytics_config(layout: Layout) -> dict | None:
    """sentinel/analytics.yml, or None when the repository has none (then no analytics are built)."""
    path = layout.root / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        config = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text))
    except OSError as e:
        raise DacError([Problem(CONFIG_FILE, None, f"cannot read: {e}")])
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DacError([Problem(CONFIG_FILE, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}")])
    if not isinstance(config, dict):
        raise DacError([Problem(CONFIG_FILE, 1, "must be a YAML mapping")])
    config["_lines"] = lines
    config["_versions"] = load_lock(layout)
    return config


def _key_lines(node, path: tuple = ()) -> dict[tuple, int]:
    """(key, key, ...) -> 1-based line, for every mapping key of the document."""
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                lines[path + (key.value,)] = key.start_mark.line + 1
                lines.update(_key_lines(value, path + (key.value,)))
    return lines


class _Config:
    """Checked access to sentinel/analytics.yml; every problem is collected."""

    def __init__(self, raw: dict):
        self.raw = raw
        self.lines = raw.get("_lines", {})
        self.problems: list[Problem] = []
        self.defaults = self._mapping("defaults")
        self.connectors = self._mapping("data_connectors")
        self.shapes = self._mapping("shapes")
        self.overrides = self._mapping("overrides")
        for key in raw:
            if key not in ("defaults", "data_connectors", "shapes", "overrides", "_lines", "_versions"):
                self.problem((key,), f"unknown top-level key `{key}` (allowed: defaults, data_connectors, shapes, overrides)")
        for key in REQUIRED_DEFAULTS:
            if key not in self.defaults:
                self.problem(("defaults",), f"defaults needs `{key}`")
        self._check_keys(("defaults",), self.defaults, DEFAULT_KEYS)
        for name, shape in self.shapes.items():
            if not isinstance(shape, dict):
                self.problem(("shapes", name), f"shape {name!r} must be a mapping")
                continue
            self._check_keys(("shapes", name), shape, SHAPE_KEYS)
        for key, override in self.overrides.items():
            if not isinstance(override, dict):
                self.problem(("overrides", str(key)), f"override {key!r} must be a mapping")
                continue
            self._check_keys(("overrides", str(key)), override, OVERRIDE_KEYS)

    def problem(self, path: tuple, message: str) -> None:
        line = None
        for n in range(len(path), 0, -1):
            line = self.lines.get(tuple(str(p) for p in path[:n]))
            if line:
                break
        self.problems.append(Problem(CONFIG_FILE, line, message))

    def _mapping(self, key: str) -> dict:
        value = self.raw.get(key) or {}
        if not isinstance(value, dict):
            self.problem((key,), f"`{key}` must be a mapping")
            return {}
        return value

    def _check_keys(self, path: tuple, mapping: dict, allowed: tuple) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem(path + (key,), f"unknown key `{key}` under {'.'.join(map(str, path))} (allowed: {', '.join(allowed)})")

    def override(self, key: str) -> dict:
        value = self.overrides.get(key)
        return value if isinstance(value, dict) else {}


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


def _rule_description(rule) -> str:
    text = (rule.description or "").strip()
    parts = [text] if text else []
    if rule.falsepositives:
        parts.append("False positives: " + "; ".join(str(f).rstrip(".") for f in rule.falsepositives) + ".")
    return "\n\n".join(parts)


def _tables(query_text: str, connectors: dict) -> list[str]:
    return [t for t in connectors if re.search(rf"(?<![\w.]){re.escape(t)}(?![\w])", query_text)]


def _required_connectors(tables: list[str], connectors: dict) -> list[dict]:
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


def sequence_window(query: str, frequency: str, period: str, seconds: int) -> str | None:
    """A correlation query restricted to the sequences of this run's slice (SEQUENCE_FILTER);
    None when the lookback is too short to hold a whole sequence beyond the frequency."""
    delay = duration_minutes(period) - duration_minutes(frequency) - -(-seconds // 60)
    if delay < 0:
        return None
    start = duration_minutes(frequency) + delay
    return query.rstrip("\n") + "\n" + SEQUENCE_FILTER.format(start=start, delay=delay) + "\n"


def ingestion_window(query: str, window: str, lets: list[str] | None) -> str | None:
    """The query with `| where ingestion_time() > ago(<window>)` right after its table, or after
    the table of each named `let`; None when there is no such place."""
    lines = query.rstrip("\n").split("\n")
    flt = INGESTION_FILTER.format(window=window)
    if lets is None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", lines[0].strip()):
            return None
        return "\n".join([lines[0], flt] + lines[1:]) + "\n"
    out, found = [], set()
    for line in lines:
        out.append(line)
        match = re.fullmatch(r"let ([A-Za-z_][A-Za-z0-9_]*) = [A-Za-z_][A-Za-z0-9_]*", line.strip())
        if match and match.group(1) in lets:
            out.append(flt)
            found.add(match.group(1))
    return "\n".join(out) + "\n" if found == set(lets) else None


def _settings(spec: _Spec, cfg: _Config) -> dict:
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


def _check(spec: _Spec, s: dict, cfg: _Config) -> None:
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


def _build(spec: _Spec, cfg: _Config) -> AlertRule:
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
        "requiredDataConnectors": _required_connectors(tables, cfg.connectors),
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


# ---------------------------------------------------------------- all analytics

def _rule_specs(queries: list[Query]) -> list[_Spec]:
    sentinel = [q for q in queries if q.target.siem == "sentinel"]
    several_targets = len({q.target.name for q in sentinel}) > 1
    specs = []
    for q in sorted(sentinel, key=lambda q: (q.rule.stem, q.target.name)):
        if not is_alert(q.rule):        # hunting tier: a hunting query (dac.artifacts.sentinel_hunting), no analytic
            continue
        rule = q.rule.rule
        tactics, techniques = _tags(rule.tags)
        shape = "correlation" if q.rule.is_correlation else str(q.scope.state.get("source"))
        specs.append(_Spec(
            guid=alert_rule_id(str(rule.id), q.target.name),
            file_stem=f"{q.rule.stem}.{q.target.name}" if several_targets else q.rule.stem,
            owner=(str(rule.id), q.target.name), config_key=str(rule.id), shape=shape,
            name=str(rule.title), description=_rule_description(rule), severity=_severity(rule.level),
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
    cfg = _Config(config)
    specs = _rule_specs(queries) + _hunting_specs(queries, targets_config)
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


def version_lock(rules: list[AlertRule]) -> str:
    """sentinel/versions.lock.yml for these analytics."""
    return lock_text({r.id: {"name": r.file_stem, "version": r.yaml_doc["version"], "sha256": query_hash(r.yaml_doc["query"])}
                      for r in rules})


# ---------------------------------------------------------------- files

class _Dumper(yaml.SafeDumper):
    """Azure-Sentinel template style: block sequences indented under their key, `|` for text."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data) -> bool:      # a value used twice is written twice, never as &id/*id
        return True


def _str(dumper: yaml.SafeDumper, value: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def template_yaml(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100000, default_flow_style=False)


def arm_template(rule: AlertRule) -> dict:
    """The ARM deployment template deploying one analytic into the workspace given as a parameter."""
    return {
        "$schema": ARM_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {
            "workspace": {
                "type": "string",
                "metadata": {"description": "Name of the Log Analytics workspace Microsoft Sentinel is enabled on"},
            },
        },
        "resources": [{
            "type": RESOURCE_TYPE,
            "apiVersion": API_VERSION,
            "name": f"[concat(parameters('workspace'),'/Microsoft.SecurityInsights/{rule.id}')]",
            "kind": "Scheduled",
            "properties": rule.arm_properties,
        }],
    }


def build_sentinel_files(queries: list[Query], config: dict, layout: Layout) -> dict[str, str]:
    """Repository-relative path -> content of every generated Sentinel analytics file.

    Empty when the repository has no sentinel/analytics.yml. Byte-identical across runs.
    """
    analytics = load_analytics_config(layout)
    if analytics is None:
        return {}
    files = {}
    rules = alert_rules(queries, analytics, config)
    for rule in rules:
        files[f"{ANALYTICS_DIR}/{rule.file_stem}.yaml"] = template_yaml(rule.yaml_doc)
        files[f"{ARM_DIR}/{rule.file_stem}.json"] = json.dumps(arm_template(rule), indent=2, ensure_ascii=False) + "\n"
    files[LOCK_FILE] = version_lock(rules)
    for stem, doc, arm in hunting_documents(queries, analytics):
        files[f"{HUNTING_DIR}/{stem}.yaml"] = template_yaml(doc)
        files[f"{ARM_DIR}/hunting_{stem}.json"] = dumps_arm(arm)
    return dict(sorted(files.items()))


def hunting_documents(queries: list[Query], analytics: dict) -> list[tuple[str, dict, dict]]:
    """(file stem, hunting-query YAML document, ARM template) per hunting-tier Sentinel query;
    `dac deploy sentinel` deploys the ARM templates' saved searches."""
    connectors = _Config(analytics).connectors
    return hunting_queries(queries, _tags, _rule_description,
                           lambda text: _required_connectors(_tables(text, connectors), connectors))


# ---------------------------------------------------------------- checks shared with tests and validation

def load_schema(layout: Layout) -> dict:
    return json.loads((layout.root / "sentinel" / "schemas" / "analytic_rule.schema.json").read_text(encoding="utf-8"))


def schema_errors(doc: dict, schema: dict) -> list[str]:
    """Every JSON Schema violation of a template document, as `path: message` (needs jsonschema)."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                  for e in validator.iter_errors(doc))


def referenced_columns(doc: dict) -> list[str]:
    """The query output columns a template relies on: entity mappings, custom details, overrides."""
    columns = [f["columnName"] for m in doc.get("entityMappings") or [] for f in m.get("fieldMappings") or []]
    columns += list((doc.get("customDetails") or {}).values())
    override = doc.get("alertDetailsOverride") or {}
    columns += [override[k] for k in ("alertTacticsColumnName", "alertSeverityColumnName") if override.get(k)]
    columns += [p["value"] for p in override.get("alertDynamicProperties") or [] if p.get("value")]
    for key in ("alertDisplayNameFormat", "alertDescriptionFormat"):
        columns += re.findall(r"\{\{(\w+)\}\}", override.get(key) or "")
    return list(dict.fromkeys(columns))


def check_sentinel_files(files: dict[str, str], layout: Layout) -> list[Problem]:
    """Problems in generated Sentinel templates, for `dac validate` / `dac build`.

    Each sentinel/analytics/*.yaml must satisfy the JSON Schema, and every column its entity
    mappings, custom details and alert overrides name must be an output column of its query
    (Kusto.Language against sentinel/schemas/). Needs jsonschema and the Kusto analyzer.
    """
    from dac.compile.kql_analyzer import load_schemas, result_columns
    problems, templates = [], {}
    for path, text in sorted(files.items()):
        if not (path.startswith(ANALYTICS_DIR + "/") and path.endswith(".yaml")):
            continue
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problems.append(Problem(path, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}"))
            continue
        if not isinstance(doc, dict):
            problems.append(Problem(path, 1, "an analytic rule template must be a YAML mapping"))
            continue
        templates[path] = doc
    if not templates:
        return problems
    schema = load_schema(layout)
    for path, doc in list(templates.items()):
        errors = schema_errors(doc, schema)
        problems += [Problem(path, None, f"schema: {e}") for e in errors]
        if errors:                       # the column check needs a well-formed template
            del templates[path]
    queries = {p: d["query"] for p, d in templates.items()}
    columns = result_columns(queries, load_schemas(layout.schemas), layout.kusto_analyzer)
    for path, doc in templates.items():
        if path not in columns:
            continue
        lines = files[path].splitlines()
        start = next((n for n, text in enumerate(lines) if text.startswith("entityMappings:")), 0)
        for column in referenced_columns(doc):
            if column not in columns[path]:
                value = re.compile(rf"^\s*(?:- )?\w+: ['\"]?{re.escape(column)}['\"]?\s*$")
                line = next((n + 1 for n in range(start, len(lines)) if value.match(lines[n])), None)
                shown = ", ".join(columns[path][:12]) + (", ..." if len(columns[path]) > 12 else "")
                problems.append(Problem(path, line, f"column {column!r} is mapped but the query does not output it "
                                                    f"(it outputs: {shown or 'no table'})"))
    return problems
