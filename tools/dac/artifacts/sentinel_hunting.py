"""Sentinel hunting queries for the hunting-tier rules (dac.rules.tiers): what an analyst runs during a
hunt, never a scheduled alert.

* `sentinel/hunting/<stem>.yaml`: the Azure-Sentinel repository's hunting-query format (`id`,
  `name`, `description`, `requiredDataConnectors`, `tactics`, `relevantTechniques`, `query`,
  `version`, `kind`), as the `Hunting Queries/` folder of Azure/Azure-Sentinel holds them.
* `sentinel/arm/hunting_<stem>.json`: an ARM template of the Log Analytics saved search that is a
  Sentinel hunting query (`Microsoft.OperationalInsights/workspaces/savedSearches`, category
  `Hunting Queries`, tactics and techniques as tags), for Sentinel Repositories or
  `az deployment group create`.

Ids are stable uuid5 values of (Sigma rule id, target), like the analytics' ids.
"""
from __future__ import annotations

import json
import re
import uuid

from dac.compile.convert import Query
from dac.rules.tiers import is_alert

HUNTING_DIR = "sentinel/hunting"
SAVED_SEARCH_TYPE = "Microsoft.OperationalInsights/workspaces/savedSearches"
SAVED_SEARCH_API = "2020-08-01"
_NAMESPACE = uuid.UUID("0b8f6b1e-5d1c-4c0e-9a52-9f1d2c3b4a50")
MARKER = "Managed by dac from sigma rule {rule_id} (target {target}); hunting tier."
# the marker ends the description; `dac-<word>: <value>` lines after it (dac deploy's hash) do not count
_MARKER_RE = re.compile(r"Managed by dac from sigma rule (\S+) \(target (\S+)\); hunting tier\.$")
_STAMP_LINES = re.compile(r"(\n\s*dac-[a-z]+: [^\n]*)+\s*$")


def parse_owner(description: str | None) -> tuple[str, str] | None:
    """(rule id, target) when a saved search's description ends with dac's hunting marker."""
    if not description:
        return None
    match = _MARKER_RE.search(_STAMP_LINES.sub("", description).rstrip())
    return (match.group(1), match.group(2)) if match else None


def hunting_query_id(rule_id: str, target: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{rule_id}/{target}"))


def hunting_queries(queries: list[Query], tags, description, connectors) -> list[tuple[str, dict, dict]]:
    """(file stem, hunting-query YAML document, ARM template) per hunting-tier Sentinel query.
    tags, description and connectors are sentinel_analytics' helpers (tactics/techniques from the
    Sigma tags, the rule's description text, the data connectors of the query's tables)."""
    out = []
    for q in sorted((q for q in queries if q.target.siem == "sentinel" and not is_alert(q.rule)),
                    key=lambda q: (q.rule.stem, q.target.name)):
        rule = q.rule.rule
        tactics, techniques = tags(rule.tags)
        qid = hunting_query_id(str(rule.id), q.target.name)
        text = description(rule) + "\n" + MARKER.format(rule_id=rule.id, target=q.target.name)
        doc = {"id": qid, "name": str(rule.title), "description": text, "requiredDataConnectors": connectors(q.text),
               "tactics": tactics, "relevantTechniques": techniques, "query": q.text.strip() + "\n",
               "version": "1.0.0", "kind": "Hunting"}
        arm = {
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "parameters": {"workspace": {"type": "string", "metadata": {
                "description": "Name of the Log Analytics workspace Microsoft Sentinel is enabled on"}}},
            "resources": [{
                "type": SAVED_SEARCH_TYPE, "apiVersion": SAVED_SEARCH_API,
                "name": f"[concat(parameters('workspace'), '/{qid}')]",
                "properties": {
                    "eTag": "*", "category": "Hunting Queries", "displayName": str(rule.title), "query": q.text.strip(),
                    "version": 2,
                    "tags": [{"name": "description", "value": " ".join(text.split())},
                             {"name": "tactics", "value": ",".join(tactics)},
                             {"name": "techniques", "value": ",".join(techniques)}],
                },
            }],
        }
        out.append((q.rule.stem, doc, arm))
    return out


def dumps_arm(template: dict) -> str:
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"
