"""The Sentinel analytics as files: the Azure-Sentinel template YAML (sentinel/analytics/), the ARM
deployment template (sentinel/arm/), sentinel/versions.lock.yml, byte-deterministic."""

from __future__ import annotations

import json

import yaml

from dac.compile.convert import Query
from dac.core.repo import Layout
from .sentinel_analytics import ANALYTICS_DIR, API_VERSION, ARM_DIR, ARM_SCHEMA, AlertRule, RESOURCE_TYPE, required_connectors, rule_description, _tables, _tags, alert_rules
from .sentinel_config import AnalyticsConfig, load_analytics_config
from .sentinel_hunting import HUNTING_DIR, dumps_arm, hunting_queries
from .sentinel_versions import LOCK_FILE, lock_text, query_hash


def version_lock(rules: list[AlertRule]) -> str:
    """sentinel/versions.lock.yml for these analytics."""
    return lock_text({r.id: {"name": r.file_stem, "version": r.yaml_doc["version"], "sha256": query_hash(r.yaml_doc["query"])}
                      for r in rules})


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
    connectors = AnalyticsConfig(analytics).connectors
    return hunting_queries(queries, _tags, rule_description,
                           lambda text: required_connectors(_tables(text, connectors), connectors))
