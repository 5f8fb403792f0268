"""Sentinel analytics: Azure-Sentinel template YAML (schema), ARM templates (structure), entity
columns (Kusto.Language output schema), stable GUIDs, severity mapping, ownership, determinism."""
from __future__ import annotations

import copy
import json
import re
import uuid

import jsonschema
import pytest

from dac.artifacts.sentinel_hunting import HUNTING_DIR
from dac.rules.tiers import is_alert
import yaml
from sigma.rule import SigmaLevel

from conftest import REPO
from dac.compile.convert import compile_rules
from dac.compile.kql_analyzer import analyze, is_error, load_schemas, result_columns
from dac.core.problems import DacError
from dac.core.repo import Layout
from dac.rules.ruleset import load_rules
from dac.artifacts.sentinel_analytics import API_VERSION, ARM_DIR, ANALYTICS_DIR, RESOURCE_TYPE, alert_rules
from dac.artifacts.sentinel_ids import NAMESPACE, alert_rule_id, hunting_rule_id, owned_marker, parse_owner
from dac.artifacts.sentinel_config import iso_duration, load_analytics_config
from dac.artifacts.sentinel_files import arm_template, build_sentinel_files, template_yaml
from dac.artifacts.sentinel_checks import check_sentinel_files, load_schema, referenced_columns, schema_errors
from dac.artifacts.sentinel_versions import LOCK_FILE
from dac.compile.targets import load_targets

LAYOUT = Layout(REPO)
ANALYZER = REPO / "tools" / "kusto-analyzer"
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ISO = re.compile(r"^P(?=\d|T\d)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?)?$")
# Azure-Sentinel template key order (its Solutions' analytic rules), as far as a document has them
KEY_ORDER = ["id", "name", "description", "severity", "status", "requiredDataConnectors", "queryFrequency",
             "queryPeriod", "triggerOperator", "triggerThreshold", "tactics", "relevantTechniques", "query",
             "entityMappings", "customDetails", "alertDetailsOverride", "incidentConfiguration",
             "eventGroupingSettings", "suppressionEnabled", "suppressionDuration", "version", "kind"]
# ScheduledAlertRuleProperties of Microsoft.SecurityInsights/alertRules, API_VERSION, writable ones
API_REQUIRED = {"displayName", "enabled", "severity", "query", "queryFrequency", "queryPeriod", "triggerOperator",
                "triggerThreshold", "suppressionEnabled", "suppressionDuration"}
API_WRITABLE = API_REQUIRED | {"description", "tactics", "techniques", "subTechniques", "entityMappings", "customDetails",
                               "alertDetailsOverride", "eventGroupingSettings", "incidentConfiguration",
                               "alertRuleTemplateName", "templateVersion"}
MIMIPENGUIN_ID = "fa334ad3-0d80-4ce5-b92d-696792e9dab8"
CORRELATION_ID = "7f62ffeb-b4af-469a-9871-1df4005ee729"


@pytest.fixture(scope="module")
def compiled():
    targets, config = load_targets(LAYOUT)
    return compile_rules(load_rules(LAYOUT), targets), config


@pytest.fixture(scope="module")
def analytics():
    return load_analytics_config(LAYOUT)


@pytest.fixture(scope="module")
def rules(compiled, analytics):
    queries, config = compiled
    return alert_rules(queries, analytics, config)


@pytest.fixture(scope="module")
def files(compiled):
    queries, config = compiled
    return build_sentinel_files(queries, config, LAYOUT)


@pytest.fixture(scope="module")
def schema():
    return load_schema(LAYOUT)


def by_stem(rules, stem):
    return next(r for r in rules if r.file_stem == stem)


def rebuilt(compiled, analytics, change_rule=None, analytics_change=None):
    """alert_rules over copies of the queries/config, with one Sigma rule or the config altered."""
    queries, config = compiled
    copies = []
    for q in queries:
        q2 = copy.copy(q)
        if change_rule and str(q.rule.rule.id) == change_rule[0]:
            q2.rule = copy.copy(q.rule)
            q2.rule.rule = copy.deepcopy(q.rule.rule)
            change_rule[1](q2.rule)
        copies.append(q2)
    cfg = copy.deepcopy(analytics)
    if analytics_change:
        analytics_change(cfg)
    return alert_rules(copies, cfg, config)


# ---------------------------------------------------------------- what is generated

def test_one_analytic_per_sentinel_query_and_one_per_hunting_union(compiled, rules):
    queries, config = compiled
    expected = {q.rule.stem for q in queries if q.target.siem == "sentinel" and is_alert(q.rule)} | {h["name"] for h in config["hunting"]}
    assert {r.file_stem for r in rules} == expected
    assert "t1003_007_hunting" in expected and "correlation_lnx_proc_maps_then_mem_read" in expected
    assert len({r.id for r in rules}) == len(rules)                   # no template id twice


def test_checked_in_files_are_current(files):
    """sentinel/analytics/, sentinel/arm/ and the version lock hold exactly what the generator writes."""
    on_disk = {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8")
               for folder in (ANALYTICS_DIR, ARM_DIR, HUNTING_DIR) for p in sorted((REPO / folder).rglob("*")) if p.is_file()}
    on_disk[LOCK_FILE] = (REPO / LOCK_FILE).read_text(encoding="utf-8")
    assert sorted(on_disk) == sorted(files)
    for path, content in files.items():
        assert on_disk[path] == content, f"{path} is stale: run `dac convert`"


def test_generation_is_deterministic(compiled, files):
    queries, config = compiled
    again = build_sentinel_files(list(reversed(queries)), config, LAYOUT)
    assert list(again) == list(files) == sorted(files)
    assert again == files


def test_without_a_config_no_files_are_built_and_no_rules_listed(compiled, tmp_path):
    queries, config = compiled
    assert load_analytics_config(Layout(tmp_path)) is None
    assert build_sentinel_files(queries, config, Layout(tmp_path)) == {}
    with pytest.raises(DacError, match="sentinel/analytics.yml: missing"):     # a deployment must not prune everything
        alert_rules(queries, None, config)


# ---------------------------------------------------------------- YAML against the schema

def test_schema_is_a_valid_json_schema(schema):
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_template_is_valid(files, schema):
    templates = {p: v for p, v in files.items() if p.endswith(".yaml") and p.startswith(ANALYTICS_DIR + "/")}
    assert len(templates) >= 6
    for path, text in templates.items():
        doc = yaml.safe_load(text)
        assert schema_errors(doc, schema) == [], path


def test_templates_keep_the_azure_sentinel_key_order_and_round_trip(rules):
    for rule in rules:
        text = template_yaml(rule.yaml_doc)
        assert yaml.safe_load(text) == rule.yaml_doc
        keys = list(rule.yaml_doc)
        assert keys == [k for k in KEY_ORDER if k in keys], rule.file_stem
        assert text.startswith(f"id: {rule.id}\n") and text.endswith("kind: Scheduled\n")
        assert "\nquery: |\n" in text and "\ndescription: |\n" in text      # block text, as in that repository


def test_cross_field_rules_the_schema_cannot_state(rules):
    for rule in rules:
        doc = rule.yaml_doc
        minutes = {k: int(doc[k][:-1]) * {"m": 1, "h": 60, "d": 1440}[doc[k][-1]] for k in ("queryFrequency", "queryPeriod")}
        assert minutes["queryPeriod"] >= minutes["queryFrequency"]
        assert minutes["queryPeriod"] < 2880 or minutes["queryFrequency"] >= 60
        for mapping in doc["entityMappings"]:
            identifiers = [f["identifier"] for f in mapping["fieldMappings"]]
            assert len(identifiers) == len(set(identifiers)), rule.file_stem
        mapped = {m["entityType"] for m in doc["entityMappings"]}
        grouping = doc["incidentConfiguration"]["groupingConfiguration"]
        assert set(grouping["groupByEntities"]) <= mapped


def _without(key):
    return lambda d: d.pop(key)


BROKEN = {
    "missing id": _without("id"),
    "missing query": _without("query"),
    "missing severity": _without("severity"),
    "missing entityMappings": _without("entityMappings"),
    "missing requiredDataConnectors": _without("requiredDataConnectors"),
    "missing version": _without("version"),
    "severity Critical": lambda d: d.update(severity="Critical"),
    "severity lower case": lambda d: d.update(severity="high"),
    "ISO duration in the template": lambda d: d.update(queryPeriod="PT1H"),
    "duration without unit": lambda d: d.update(queryFrequency="60"),
    "duration in weeks": lambda d: d.update(queryPeriod="1w"),
    "frequency under 5 minutes": lambda d: d.update(queryFrequency="4m"),
    "period over 14 days": lambda d: d.update(queryPeriod="15d"),
    "bad trigger operator": lambda d: d.update(triggerOperator=">"),
    "negative threshold": lambda d: d.update(triggerThreshold=-1),
    "unknown tactic": lambda d: d.update(tactics=["CredentialDumping"]),
    "technique without T": lambda d: d.update(relevantTechniques=["1003.007"]),
    "id not a GUID": lambda d: d.update(id="mimipenguin"),
    "kind NRT": lambda d: d.update(kind="NRT"),
    "version X.Y": lambda d: d.update(version="1.0"),
    "unknown key": lambda d: d.update(queryFrequencey="1h"),
    "unknown entity type": lambda d: d["entityMappings"][0].update(entityType="Device"),
    "identifier not allowed for Host": lambda d: d["entityMappings"][0]["fieldMappings"][0].update(identifier="Name"),
    "File without its required Name": lambda d: d["entityMappings"][3]["fieldMappings"].pop(0),
    "column name with a space": lambda d: d["entityMappings"][0]["fieldMappings"][0].update(columnName="Device Name"),
    "six entities": lambda d: d["entityMappings"].extend(copy.deepcopy(d["entityMappings"][:2])),
    "four field mappings": lambda d: d["entityMappings"][2]["fieldMappings"].extend(
        [{"identifier": "ElevationToken", "columnName": "ProcessTokenElevation"},
         {"identifier": "CreationTimeUtc", "columnName": "ProcessCreationTime"}]),
    "bad aggregation kind": lambda d: d.update(eventGroupingSettings={"aggregationKind": "AlertPerRow"}),
    "grouping without lookback": lambda d: d["incidentConfiguration"]["groupingConfiguration"].pop("lookbackDuration"),
    "custom detail key with a dash": lambda d: d.update(customDetails={"Target-Pid": "ProcessId"}),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_schema_rejects_a_broken_template(rules, schema, case):
    doc = copy.deepcopy(by_stem(rules, "proc_creation_lnx_mimipenguin").yaml_doc)
    assert schema_errors(doc, schema) == []
    BROKEN[case](doc)
    assert schema_errors(doc, schema), case


# ---------------------------------------------------------------- ARM templates

def test_arm_templates_have_the_deployable_structure(rules, files):
    # the newest api-version whose ScheduledAlertRuleProperties has subTechniques (previews only)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-preview", API_VERSION)
    for rule in rules:
        template = json.loads(files[f"{ARM_DIR}/{rule.file_stem}.json"])
        assert template == arm_template(rule)
        assert template["$schema"].startswith("https://schema.management.azure.com/schemas/")
        assert template["$schema"].endswith("/deploymentTemplate.json#")
        assert template["contentVersion"] == "1.0.0.0"
        assert template["parameters"]["workspace"]["type"] == "string"
        [resource] = template["resources"]
        assert resource["type"] == RESOURCE_TYPE == "Microsoft.OperationalInsights/workspaces/providers/alertRules"
        assert resource["apiVersion"] == API_VERSION
        assert resource["kind"] == "Scheduled"
        match = re.fullmatch(rf"\[concat\(parameters\('workspace'\),'/Microsoft\.SecurityInsights/({GUID})'\)\]", resource["name"])
        assert match and match.group(1) == rule.id == rule.yaml_doc["id"]
        props = resource["properties"]
        assert props == rule.arm_properties
        assert API_REQUIRED <= set(props) <= API_WRITABLE, set(props) - API_WRITABLE
        for key in ("queryFrequency", "queryPeriod", "suppressionDuration"):
            assert ISO.match(props[key]), (rule.file_stem, key, props[key])
        assert ISO.match(props["incidentConfiguration"]["groupingConfiguration"]["lookbackDuration"])


def test_arm_properties_match_the_template(rules):
    operators = {"gt": "GreaterThan", "lt": "LessThan", "eq": "Equal", "ne": "NotEqual"}
    for rule in rules:
        doc, props = rule.yaml_doc, rule.arm_properties
        assert props["displayName"] == doc["name"]
        assert props["description"] == doc["description"]
        assert props["severity"] == doc["severity"]
        assert props["query"] == doc["query"]
        assert props["queryFrequency"] == iso_duration(doc["queryFrequency"])
        assert props["queryPeriod"] == iso_duration(doc["queryPeriod"])
        assert props["suppressionDuration"] == iso_duration(doc["suppressionDuration"])
        assert props["suppressionEnabled"] is doc["suppressionEnabled"]
        assert props["triggerOperator"] == operators[doc["triggerOperator"]]
        assert props["triggerThreshold"] == doc["triggerThreshold"]
        assert props["tactics"] == doc["tactics"]
        assert props["techniques"] == sorted({t.split(".")[0] for t in doc["relevantTechniques"]})
        assert props["entityMappings"] == doc["entityMappings"]
        assert props.get("customDetails") == doc.get("customDetails")
        assert props["eventGroupingSettings"] == doc["eventGroupingSettings"]
        incident = copy.deepcopy(doc["incidentConfiguration"])
        incident["groupingConfiguration"]["lookbackDuration"] = iso_duration(incident["groupingConfiguration"]["lookbackDuration"])
        assert props["incidentConfiguration"] == incident


def test_durations_in_iso_8601():
    assert iso_duration("1h") == "PT1H"
    assert iso_duration("75m") == "PT1H15M"
    assert iso_duration("5m") == "PT5M"
    assert iso_duration("5h") == "PT5H"
    assert iso_duration("1d") == "P1D"
    assert iso_duration("14d") == "P14D"
    assert iso_duration("36h") == "P1DT12H"
    assert iso_duration("1500m") == "P1DT1H"
    for bad in ("PT1H", "1w", "0h", "h", "1.5h", ""):
        with pytest.raises(ValueError):
            iso_duration(bad)


def test_tactics_and_techniques_come_from_the_sigma_tags(rules):
    for rule in rules:
        assert rule.yaml_doc["tactics"] == ["CredentialAccess"]
        assert rule.yaml_doc["relevantTechniques"] == ["T1003.007"]
        assert rule.arm_properties["tactics"] == ["CredentialAccess"]
        assert rule.arm_properties["techniques"] == ["T1003"]
        assert rule.arm_properties["subTechniques"] == ["T1003.007"]


def test_required_data_connectors_follow_the_tables_read(rules):
    connectors = {r.file_stem: r.yaml_doc["requiredDataConnectors"] for r in rules}
    assert connectors["proc_creation_lnx_mimipenguin"] == [{"connectorId": "MicrosoftThreatProtection", "dataTypes": ["DeviceProcessEvents"]}]
    assert connectors["correlation_lnx_proc_maps_then_mem_read"] == [{"connectorId": "MicrosoftThreatProtection", "dataTypes": ["DeviceFileEvents"]}]
    [union] = connectors["t1003_007_hunting"]
    assert union["connectorId"] == "MicrosoftThreatProtection"
    assert sorted(union["dataTypes"]) == ["DeviceFileEvents", "DeviceProcessEvents"]


def test_schedule_and_enabled_state_from_the_config(rules):
    for rule in rules:
        assert (rule.yaml_doc["queryFrequency"], rule.yaml_doc["queryPeriod"]) == ("1h", "75m")
        assert (rule.arm_properties["queryFrequency"], rule.arm_properties["queryPeriod"]) == ("PT1H", "PT1H15M")
        assert rule.arm_properties["suppressionEnabled"] is False and rule.arm_properties["suppressionDuration"] == "PT5H"
        assert rule.arm_properties["enabled"] is (rule.file_stem != "t1003_007_hunting")


# ---------------------------------------------------------------- entity columns exist (Kusto.Language)

@pytest.fixture(scope="module")
def output_columns(rules):
    return result_columns({r.file_stem: r.yaml_doc["query"] for r in rules}, load_schemas(LAYOUT.schemas), ANALYZER)


def test_every_mapped_column_is_in_the_query_output(rules, output_columns):
    for rule in rules:
        columns = output_columns[rule.file_stem]
        assert columns, rule.file_stem
        used = referenced_columns(rule.yaml_doc)
        assert used, rule.file_stem
        assert [c for c in used if c not in columns] == [], rule.file_stem


def test_output_columns_follow_the_query_shape(output_columns):
    assert output_columns["correlation_lnx_proc_maps_then_mem_read"] == [
        "Timestamp", "Computer", "TargetProcessId", "RuleCount", "FirstTime", "LastTime", "Detection"]
    assert output_columns["t1003_007_hunting"] == [
        "Timestamp", "DeviceName", "AccountName", "FilePath", "ProcessName", "ProcessCommandLine", "Detection"]
    assert "InitiatingProcessAccountName" in output_columns["file_access_lnx_proc_mem_access"]
    assert "AccountName" not in output_columns["file_access_lnx_proc_mem_access"]


def test_the_column_check_catches_a_column_the_query_does_not_emit(compiled, analytics, output_columns):
    """The seed's mistake: AccountName on DeviceFileEvents. The schema accepts it; the column check does not."""
    def wrong_account(cfg):
        cfg["shapes"]["DeviceFileEvents"]["entityMappings"][1]["fieldMappings"][0]["columnName"] = "AccountName"
    rule = by_stem(rebuilt(compiled, analytics, analytics_change=wrong_account), "file_access_lnx_proc_mem_access")
    missing = [c for c in referenced_columns(rule.yaml_doc) if c not in output_columns["file_access_lnx_proc_mem_access"]]
    assert missing == ["AccountName"]


def test_the_analyzer_reports_columns_without_changing_diagnostics():
    tables = load_schemas(LAYOUT.schemas)
    queries = {"ok": "DeviceFileEvents\n| project DeviceName, Pid = InitiatingProcessId",
               "bad": "Nope\n| take 1"}
    assert result_columns(queries, tables, ANALYZER) == {"ok": ["DeviceName", "Pid"], "bad": []}
    diagnostics = analyze(queries, tables, ANALYZER)
    assert [d for d in diagnostics["ok"] if is_error(d)] == []
    assert [(d.code, d.line) for d in diagnostics["bad"] if is_error(d)] == [("KS204", 1)]


def test_every_analytic_query_is_clean_kql(rules):
    diagnostics = analyze({r.file_stem: r.yaml_doc["query"] for r in rules}, load_schemas(LAYOUT.schemas), ANALYZER)
    assert {k: [(d.code, d.line) for d in v if is_error(d)] for k, v in diagnostics.items()} == {r.file_stem: [] for r in rules}


# ---------------------------------------------------------------- identity, severity, ownership

def test_guids_are_stable_per_rule_and_target():
    assert alert_rule_id(MIMIPENGUIN_ID, "sentinel") == str(uuid.uuid5(NAMESPACE, f"{MIMIPENGUIN_ID}/sentinel"))
    assert alert_rule_id(MIMIPENGUIN_ID, "sentinel") == "9804876c-5c3e-58b2-a57f-75c2de347681"   # pinned: deployed ids
    assert alert_rule_id(MIMIPENGUIN_ID, "sentinel_eu") != alert_rule_id(MIMIPENGUIN_ID, "sentinel")
    assert hunting_rule_id("t1003_007_hunting") == str(uuid.uuid5(NAMESPACE, "t1003_007_hunting"))


def test_renaming_a_rule_keeps_its_analytic_id(compiled, analytics, rules):
    def rename(loaded):
        loaded.rule.title = "MimiPenguin, renamed"
    renamed = by_stem(rebuilt(compiled, analytics, change_rule=(MIMIPENGUIN_ID, rename)), "proc_creation_lnx_mimipenguin")
    original = by_stem(rules, "proc_creation_lnx_mimipenguin")
    assert renamed.yaml_doc["name"] == "MimiPenguin, renamed" != original.yaml_doc["name"]
    assert renamed.id == original.id == alert_rule_id(MIMIPENGUIN_ID, "sentinel")


@pytest.mark.parametrize("level, severity", [
    (SigmaLevel.INFORMATIONAL, None), (SigmaLevel.LOW, None), (SigmaLevel.MEDIUM, None),
    (SigmaLevel.HIGH, "High"), (SigmaLevel.CRITICAL, "High"),
])
def test_sigma_level_maps_to_sentinel_severity(compiled, analytics, level, severity):
    """High and critical are the alert tier (an analytic, severity High); below that a rule is a
    hunting query and gets no analytic at all."""
    def relevel(loaded):
        loaded.rule.level = level
    rules = rebuilt(compiled, analytics, change_rule=(MIMIPENGUIN_ID, relevel))
    if severity is None:
        assert not any(r.file_stem == "proc_creation_lnx_mimipenguin" for r in rules)
        return
    rule = by_stem(rules, "proc_creation_lnx_mimipenguin")
    assert rule.yaml_doc["severity"] == rule.arm_properties["severity"] == severity


def test_checked_in_severities(rules):
    severities = {r.file_stem: r.yaml_doc["severity"] for r in rules}
    assert severities["proc_creation_lnx_proc_mem_manual_dump"] == "High"        # level high
    assert severities["proc_creation_lnx_mimipenguin"] == "High"                 # level high
    assert "file_access_lnx_proc_maps_environ_read" not in severities           # hunting tier: a hunting query
    assert severities["t1003_007_hunting"] == "High"                             # highest member


def test_hunting_tier_rules_are_hunting_queries_not_analytics(compiled, files):
    queries, _ = compiled
    hunting = {q.rule.stem for q in queries if q.target.siem == "sentinel" and not is_alert(q.rule)}
    assert hunting == {"file_access_lnx_proc_maps_environ_read", "proc_creation_lnx_proc_maps_environ_manual_read"}
    for stem in hunting:
        doc = yaml.safe_load(files[f"{HUNTING_DIR}/{stem}.yaml"])
        assert doc["kind"] == "Hunting" and doc["relevantTechniques"] == ["T1003.007"] and doc["tactics"] == ["CredentialAccess"]
        assert doc["requiredDataConnectors"] and doc["query"].strip()
        arm = json.loads(files[f"{ARM_DIR}/hunting_{stem}.json"])
        resource = arm["resources"][0]
        assert resource["type"] == "Microsoft.OperationalInsights/workspaces/savedSearches"
        assert resource["properties"]["category"] == "Hunting Queries"
        assert f"{ANALYTICS_DIR}/{stem}.yaml" not in files


def test_descriptions_end_with_the_ownership_marker(compiled, rules):
    queries, _ = compiled
    expected = {q.rule.stem: (str(q.rule.rule.id), q.target.name) for q in queries if q.target.siem == "sentinel"}
    expected["t1003_007_hunting"] = ("t1003_007_hunting", "hunting")
    for rule in rules:
        owner = expected[rule.file_stem]
        for description in (rule.yaml_doc["description"], rule.arm_properties["description"]):
            assert description.rstrip().splitlines()[-1] == owned_marker(*owner)
            assert parse_owner(description) == owner
            assert parse_owner(description.rstrip() + "\ndac-hash: 0123456789abcdef") == owner   # as deployed


def test_parse_owner_only_accepts_the_marker_as_the_last_line():
    marker = owned_marker(MIMIPENGUIN_ID, "sentinel")
    assert marker == (f"Managed by dac from sigma rule {MIMIPENGUIN_ID} (target sentinel); "
                      "edit the Sigma rule, not this analytic.")
    assert parse_owner(f"Detects things.\n\n{marker}") == (MIMIPENGUIN_ID, "sentinel")
    assert parse_owner(f"{marker}\n  \n") == (MIMIPENGUIN_ID, "sentinel")
    assert parse_owner(f"{marker}\nEdited by hand afterwards.") is None
    assert parse_owner("A rule someone wrote in the portal.") is None
    assert parse_owner(marker.replace("Managed by dac", "Managed by someone")) is None
    assert parse_owner("") is None and parse_owner(None) is None


# ---------------------------------------------------------------- configuration errors

@pytest.mark.parametrize("change, message", [
    (lambda c: c["defaults"].update(queryPeriod="30m"), "queryPeriod 30m is shorter than queryFrequency 1h"),
    (lambda c: c["defaults"].update(queryFrequency="1 hour"), "queryFrequency: duration '1 hour' must be"),
    (lambda c: c["defaults"].update(queryPeriod="15d"), "outside Sentinel's 5m..14d"),
    (lambda c: c["defaults"].update(triggerOperator=">"), "triggerOperator must be one of"),
    (lambda c: c["defaults"].update(queryFrequncy="1h"), "unknown key `queryFrequncy` under defaults"),
    (lambda c: c["overrides"].update({"00000000-0000-0000-0000-000000000000": {"severity": "Low"}}), "which is no Sentinel analytic"),
    (lambda c: c["overrides"].update({MIMIPENGUIN_ID: {"severity": "Critical"}}), "severity must be one of"),
    (lambda c: c["overrides"].update({MIMIPENGUIN_ID: {"description": "x"}}), "the description comes from the Sigma rule"),
    (lambda c: c["defaults"]["incidentConfiguration"]["groupingConfiguration"].update(groupByEntities=["Account"]),
     "incident grouping by Account, which the rule does not map"),
    (lambda c: c["data_connectors"].pop("DeviceFileEvents"), "reads no table listed under `data_connectors`"),
    (lambda c: c["shapes"].pop("correlation"), "no shape 'correlation'"),
    (lambda c: c["shapes"]["DeviceProcessEvents"].update(entityMappings=[]), "entityMappings must be a non-empty list"),
    (lambda c: c["defaults"]["incidentConfiguration"]["groupingConfiguration"].update(lookbackDuration="5 hours"),
     "lookbackDuration: duration '5 hours' must be"),
    (lambda c: c.update(analytic_defaults={}), "unknown top-level key `analytic_defaults`"),
])
def test_config_problems_are_reported_with_the_file(compiled, analytics, change, message):
    with pytest.raises(DacError) as e:
        rebuilt(compiled, analytics, analytics_change=change)
    assert any(p.path == "sentinel/analytics.yml" and message in p.message for p in e.value.problems), e.value.problems


def test_an_override_changes_one_analytic_only(compiled, analytics, rules):
    def override(cfg):
        cfg["overrides"][CORRELATION_ID] = {"severity": "Medium", "queryFrequency": "30m", "queryPeriod": "2h", "version": "1.1.0"}
    changed = {r.file_stem: r for r in rebuilt(compiled, analytics, analytics_change=override)}
    correlation = changed["correlation_lnx_proc_maps_then_mem_read"]
    assert (correlation.yaml_doc["severity"], correlation.yaml_doc["version"]) == ("Medium", "1.1.0")
    assert (correlation.arm_properties["queryFrequency"], correlation.arm_properties["queryPeriod"]) == ("PT30M", "PT2H")
    assert correlation.id == by_stem(rules, "correlation_lnx_proc_maps_then_mem_read").id
    for rule in rules:
        if rule.file_stem != "correlation_lnx_proc_maps_then_mem_read":
            assert changed[rule.file_stem].yaml_doc == rule.yaml_doc


# ---------------------------------------------------------------- the check `dac validate` can run

def test_check_sentinel_files_passes_the_generated_files(files):
    assert check_sentinel_files(files, LAYOUT) == []


def test_check_sentinel_files_names_file_line_and_column(files):
    path = f"{ANALYTICS_DIR}/file_access_lnx_proc_mem_access.yaml"
    broken = dict(files)
    broken[path] = files[path].replace("columnName: InitiatingProcessAccountName", "columnName: AccountName")
    broken[f"{ANALYTICS_DIR}/proc_creation_lnx_mimipenguin.yaml"] = files[
        f"{ANALYTICS_DIR}/proc_creation_lnx_mimipenguin.yaml"].replace("severity: High", "severity: Critical")
    problems = {p.path: p for p in check_sentinel_files(broken, LAYOUT)}
    assert len(problems) == 2
    column = problems[path]
    assert column.line == broken[path].splitlines().index("        columnName: AccountName") + 1
    assert "column 'AccountName' is mapped but the query does not output it" in column.message
    assert "schema: severity: 'Critical' is not one of" in problems[f"{ANALYTICS_DIR}/proc_creation_lnx_mimipenguin.yaml"].message


# ---------------------------------------------------------------- `dac convert` writes them (dac.artifacts.build)

def _artifacts_build_sentinel_files() -> bool:
    from dac.artifacts import build as artifacts
    return "build_sentinel_files" in vars(artifacts)


@pytest.mark.skipif(not _artifacts_build_sentinel_files(),
                    reason="dac.artifacts.build does not generate the Sentinel files yet (the artifacts.py edit is pending)")
def test_convert_checks_writes_and_deletes_the_sentinel_files(sandbox, capsys):
    from conftest import run_dac, snapshot
    # the sandbox already holds sentinel/analytics.yml and the generated files
    inputs = snapshot(sandbox.root / "sentinel" / "schemas"), (sandbox.root / "sentinel" / "analytics.yml").read_bytes()
    assert run_dac("convert", "--check") == 0, capsys.readouterr().out

    rule = sandbox.rules / "linux/process_creation/proc_creation_lnx_mimipenguin.yml"
    rule.write_text(rule.read_text().replace("title: MimiPenguin Credential Dumper Execution", "title: MimiPenguin Run"))
    capsys.readouterr()
    assert run_dac("convert", "--check") == 1
    out = capsys.readouterr().out
    assert "+++ b/sentinel/analytics/proc_creation_lnx_mimipenguin.yaml" in out and "+name: MimiPenguin Run" in out
    assert '+        "displayName": "MimiPenguin Run",' in out
    assert run_dac("convert") == 0
    arm = json.loads((sandbox.root / ARM_DIR / "proc_creation_lnx_mimipenguin.json").read_text())
    assert arm["resources"][0]["properties"]["displayName"] == "MimiPenguin Run"
    assert arm["resources"][0]["name"].endswith(f"/Microsoft.SecurityInsights/{alert_rule_id(MIMIPENGUIN_ID, 'sentinel')}')]")

    (sandbox.rules / "linux/process_creation/proc_creation_lnx_lazagne_memory.yml").unlink()
    assert run_dac("convert") == 0
    assert not (sandbox.root / ANALYTICS_DIR / "proc_creation_lnx_lazagne_memory.yaml").exists()
    assert not (sandbox.root / ARM_DIR / "proc_creation_lnx_lazagne_memory.json").exists()
    assert run_dac("convert", "--check") == 0
    assert (snapshot(sandbox.root / "sentinel" / "schemas"), (sandbox.root / "sentinel" / "analytics.yml").read_bytes()) == inputs
