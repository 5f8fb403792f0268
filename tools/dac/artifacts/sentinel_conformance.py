"""The checks Azure-Sentinel's template validation applies to a scheduled analytic, written here
from its documented models (the repository's .script/tests/detectionTemplateSchemaValidation:
ScheduledTemplateInternalModel and its validation attributes, EntityMappingIdentifiers,
ValidConnectorIds), plus the ARM/REST properties that the template turns into. That validation
is C# and needs dotnet, which the machine does not have; these are its rules, not its code.

`template_problems` checks one sentinel/analytics/*.yaml document, `arm_problems` the
`properties` of its ARM template against the document.
"""
from __future__ import annotations

import re
import uuid

from dac.rules.attack import AttackData
from .sentinel_analytics import TACTICS, TRIGGER_OPERATORS
from .sentinel_config import iso_duration

REQUIRED = ("id", "kind", "name", "description", "requiredDataConnectors", "severity", "query", "version",
            "queryFrequency", "queryPeriod", "triggerOperator", "triggerThreshold")
SEVERITIES = ("Informational", "Low", "Medium", "High")
MAX_NAME, MAX_DESCRIPTION, MAX_QUERY = 256, 5000, 10000
MIN_MINUTES, MAX_MINUTES = 5, 14 * 1440                     # RangeTimeSpanIsoFormat("00:05:00", "14.00:00:00")
LONG_PERIOD_MINUTES, LONG_PERIOD_MIN_FREQUENCY = 2 * 1440, 60  # FrequencyLimitationForLongPeriodQuery
THRESHOLD = (0, 10000)
TEMPLATE_OPERATORS = tuple(TRIGGER_OPERATORS)               # gt, lt, eq, ne in the template format
AGGREGATION_KINDS = ("SingleAlert", "AlertPerResult")
VERSION = re.compile(r"^\d+\.\d+\.\d+$")
TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
DURATION = re.compile(r"^(\d+)([mhd])$")
# ValidEntityMappings(entityMappingsMaxLength: 5, fieldMappingsMaxLength: 3)
MAX_ENTITIES, MAX_FIELDS = 5, 3
# customDetails: DictionaryLength(20), keys <= 20 chars, values (column names) <= 500
MAX_DETAILS, MAX_DETAIL_KEY, MAX_DETAIL_VALUE = 20, 20, 500
DETAIL_KEY, DETAIL_VALUE = re.compile(r"^[a-zA-Z]+\w*$"), re.compile(r"^[a-zA-Z_]+\w*$")
# EntityMappingIdentifiers: identifiers per entity type, and the sets one of which must be mapped
ENTITY_IDENTIFIERS = {
    "Account": ({"Name", "FullName", "NTDomain", "DnsDomain", "UPNSuffix", "Sid", "AadTenantId", "AadUserId", "PUID",
                 "IsDomainJoined", "DisplayName", "ObjectGuid"},
                [{"FullName"}, {"Sid"}, {"Name"}, {"AadUserId"}, {"PUID"}, {"ObjectGuid"}]),
    "AzureResource": ({"ResourceId"}, [{"ResourceId"}]),
    "CloudApplication": ({"AppId", "Name", "InstanceName"}, [{"AppId"}, {"Name"}]),
    "DNS": ({"DomainName"}, [{"DomainName"}]),
    "File": ({"Directory", "Name"}, [{"Name"}]),
    "FileHash": ({"Algorithm", "Value"}, [{"Algorithm", "Value"}]),
    "Host": ({"DnsDomain", "NTDomain", "HostName", "FullName", "NetBiosName", "AzureID", "OMSAgentID", "OSFamily",
              "OSVersion", "IsDomainJoined"},
             [{"FullName"}, {"HostName"}, {"NetBiosName"}, {"AzureID"}, {"OMSAgentID"}]),
    "IP": ({"Address"}, [{"Address"}]),
    "Malware": ({"Name", "Category"}, [{"Name"}]),
    "Process": ({"ProcessId", "CommandLine", "ElevationToken", "CreationTimeUtc"}, [{"CommandLine"}, {"ProcessId"}]),
    "RegistryKey": ({"Hive", "Key"}, [{"Key"}, {"Hive"}]),
    "RegistryValue": ({"Name", "Value", "ValueType"}, [{"Name"}]),
    "URL": ({"Url"}, [{"Url"}]),
}
# ValidConnectorIds entries this repository can use, with the tables each connector brings (the
# Microsoft Defender XDR connector's advanced-hunting tables)
CONNECTOR_DATA_TYPES = {
    "MicrosoftThreatProtection": {"DeviceProcessEvents", "DeviceFileEvents", "DeviceNetworkEvents", "DeviceEvents",
                                  "DeviceLogonEvents", "DeviceRegistryEvents", "DeviceImageLoadEvents",
                                  "DeviceInfo", "DeviceNetworkInfo", "DeviceFileCertificateInfo"},
}


def minutes(value) -> int | None:
    match = DURATION.match(str(value))
    return int(match.group(1)) * {"m": 1, "h": 60, "d": 1440}[match.group(2)] if match else None


def _entity_problems(mappings) -> list[str]:
    if not isinstance(mappings, list) or not 1 <= len(mappings) <= MAX_ENTITIES:
        return [f"entityMappings: 1 to {MAX_ENTITIES} entities"]
    problems = []
    for mapping in mappings:
        kind = mapping.get("entityType")
        fields = mapping.get("fieldMappings") or []
        if kind not in ENTITY_IDENTIFIERS:
            problems.append(f"entityMappings: unknown entityType {kind!r}")
            continue
        if not 1 <= len(fields) <= MAX_FIELDS:
            problems.append(f"entityMappings: {kind} needs 1 to {MAX_FIELDS} fieldMappings")
        identifiers = [f.get("identifier") for f in fields]
        allowed, required = ENTITY_IDENTIFIERS[kind]
        problems += [f"entityMappings: {kind} has no identifier {i!r}" for i in identifiers if i not in allowed]
        if len(set(identifiers)) != len(identifiers):
            problems.append(f"entityMappings: {kind} maps an identifier twice")
        if not any(need <= set(identifiers) for need in required):
            problems.append(f"entityMappings: {kind} maps none of its required identifiers {required}")
        problems += [f"entityMappings: {kind}.{f.get('identifier')} has no columnName" for f in fields if not f.get("columnName")]
    return problems


def _tactic_problems(doc: dict, attack: AttackData) -> list[str]:
    """NoTechniquesWithoutMatchingTactics: every tactic of each technique (sub-techniques count as
    their parent) is in `tactics`, and `tactics` names Sentinel tactics."""
    tactics = doc.get("tactics") or []
    problems = [f"tactics: unknown tactic {t!r}" for t in tactics if t not in TACTICS.values()]
    for technique in doc.get("relevantTechniques") or []:
        if not TECHNIQUE.match(str(technique)):
            problems.append(f"relevantTechniques: {technique!r} is not Tnnnn or Tnnnn.nnn")
            continue
        parent = attack.techniques.get(str(technique).split(".")[0])
        needed = [TACTICS.get(t) for t in parent.tactics] if parent else []
        if not needed or not all(t in tactics for t in needed):
            problems.append(f"relevantTechniques: {technique} needs the tactics {needed} (has {tactics})")
    return problems


def template_problems(doc: dict, attack: AttackData) -> list[str]:
    """Every rule of Azure-Sentinel's scheduled template validation that the document breaks."""
    problems = [f"missing required field {k}" for k in REQUIRED if doc.get(k) in (None, "")]
    if problems:
        return problems
    try:
        uuid.UUID(str(doc["id"]))
    except ValueError:
        problems.append(f"id {doc['id']!r} is not a GUID")
    if doc["kind"] != "Scheduled":
        problems.append(f"kind {doc['kind']!r} is not Scheduled")
    for key, limit in (("name", MAX_NAME), ("description", MAX_DESCRIPTION), ("query", MAX_QUERY)):
        if not 1 <= len(str(doc[key])) <= limit:
            problems.append(f"{key}: 1 to {limit} characters (has {len(str(doc[key]))})")
    if doc["severity"] not in SEVERITIES:
        problems.append(f"severity {doc['severity']!r} is not one of {SEVERITIES}")
    if not VERSION.match(str(doc["version"])):
        problems.append(f"version {doc['version']!r} is not X.Y.Z")
    span = {k: minutes(doc[k]) for k in ("queryFrequency", "queryPeriod")}
    for key, value in span.items():
        if value is None:
            problems.append(f"{key} {doc[key]!r} is not <number><m|h|d>")
        elif not MIN_MINUTES <= value <= MAX_MINUTES:
            problems.append(f"{key} {doc[key]} is outside 5m..14d")
    if None not in span.values():
        if span["queryPeriod"] < span["queryFrequency"]:
            problems.append("queryPeriod is shorter than queryFrequency")
        if span["queryPeriod"] >= LONG_PERIOD_MINUTES and span["queryFrequency"] < LONG_PERIOD_MIN_FREQUENCY:
            problems.append("a queryPeriod of 2 days or more needs a queryFrequency of 1h or more")
    if doc["triggerOperator"] not in TEMPLATE_OPERATORS:
        problems.append(f"triggerOperator {doc['triggerOperator']!r} is not one of {TEMPLATE_OPERATORS}")
    threshold = doc["triggerThreshold"]
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not THRESHOLD[0] <= threshold <= THRESHOLD[1]:
        problems.append(f"triggerThreshold {threshold!r} is not an integer in 0..10000")
    connectors = doc["requiredDataConnectors"]
    if not isinstance(connectors, list) or not connectors:
        problems.append("requiredDataConnectors: at least one connector")
    for connector in connectors if isinstance(connectors, list) else []:
        types = CONNECTOR_DATA_TYPES.get(connector.get("connectorId"))
        if types is None:
            problems.append(f"requiredDataConnectors: unknown connectorId {connector.get('connectorId')!r}")
            continue
        data_types = connector.get("dataTypes") or []
        if not data_types:
            problems.append(f"requiredDataConnectors: {connector['connectorId']} lists no dataTypes")
        problems += [f"requiredDataConnectors: {connector['connectorId']} brings no {t}" for t in data_types if t not in types]
        problems += [f"requiredDataConnectors: the query does not read {t}" for t in data_types
                     if not re.search(rf"(?<![\w.]){re.escape(t)}(?!\w)", doc["query"])]
    problems += _tactic_problems(doc, attack)
    if "entityMappings" in doc:
        problems += _entity_problems(doc["entityMappings"])
    details = doc.get("customDetails") or {}
    if len(details) > MAX_DETAILS:
        problems.append(f"customDetails: at most {MAX_DETAILS}")
    for key, value in details.items():
        if not DETAIL_KEY.match(key) or len(key) > MAX_DETAIL_KEY:
            problems.append(f"customDetails: key {key!r} (a letter, then letters, digits, _; at most {MAX_DETAIL_KEY})")
        if not DETAIL_VALUE.match(str(value)) or len(str(value)) > MAX_DETAIL_VALUE:
            problems.append(f"customDetails: column {value!r} is not a column name")
    grouping = doc.get("eventGroupingSettings") or {}
    if grouping and grouping.get("aggregationKind") not in AGGREGATION_KINDS:
        problems.append(f"eventGroupingSettings.aggregationKind {grouping.get('aggregationKind')!r}")
    return problems


def arm_problems(props: dict, doc: dict) -> list[str]:
    """The ARM/REST properties carry what the template says, in the API's own forms."""
    problems = []
    expected = {
        "displayName": doc["name"], "description": doc["description"], "severity": doc["severity"], "query": doc["query"],
        "queryFrequency": iso_duration(doc["queryFrequency"]), "queryPeriod": iso_duration(doc["queryPeriod"]),
        "triggerOperator": TRIGGER_OPERATORS.get(doc["triggerOperator"]), "triggerThreshold": doc["triggerThreshold"],
        "tactics": doc.get("tactics") or [],
        "techniques": sorted({t.split(".")[0] for t in doc.get("relevantTechniques") or []}),
        "subTechniques": [t for t in doc.get("relevantTechniques") or [] if "." in t],
        "entityMappings": doc.get("entityMappings"),
    }
    for key, value in expected.items():
        if props.get(key) != value:
            problems.append(f"properties.{key} is {props.get(key)!r}, the template says {value!r}")
    for key in ("enabled", "suppressionEnabled"):
        if not isinstance(props.get(key), bool):
            problems.append(f"properties.{key} must be a boolean")
    suppression = props.get("suppressionDuration")
    if not isinstance(suppression, str) or not re.fullmatch(r"P(?=\d|T\d)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?)?", suppression):
        problems.append(f"properties.suppressionDuration {suppression!r} is not an ISO 8601 duration")
    return problems
