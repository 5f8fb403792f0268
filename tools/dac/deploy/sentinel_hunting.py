"""`dac deploy sentinel`, hunting tier: the hunting-tier rules' Sentinel hunting queries, which are
Log Analytics saved searches of category "Hunting Queries" (the ARM templates in sentinel/arm/
hunting_*.json describe the same resources).

REST contract (learn.microsoft.com/rest/api/loganalytics/saved-searches, api-version 2020-08-01):
  list    GET    {arm}/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/
                 workspaces/{ws}/savedSearches?api-version=2020-08-01   -> {"value": [{"id", "name",
                 "etag", "properties": {"category", "displayName", "query", "version", "tags": [{"name",
                 "value"}]}}]} (the list is not paged; a nextLink, if ever sent, is followed like alertRules')
  put     PUT    …/savedSearches/{id}?api-version=…   {"etag": <current>, "properties": {…}}
                 (an etag that is no longer current is refused: 409 "Newer data exists")
  delete  DELETE …/savedSearches/{id}?api-version=…
A hunting query's description, tactics and techniques are tags (Sentinel's portal reads them so);
the plan compares them as flat attributes, so the ownership marker and dac's hash live in the
`description` tag like an analytic's description.
"""
from __future__ import annotations

import re
from typing import Callable

from .plan import DesiredObject, LiveObject
from .sentinel import SentinelClient
from dac.artifacts.sentinel_hunting import SAVED_SEARCH_API, parse_owner

TAGGED = ("description", "tactics", "techniques")
_TEMPLATE_NAME = re.compile(r"^\[concat\(parameters\('workspace'\), '/([0-9a-f-]{36})'\)\]$")
API_VERSION = SAVED_SEARCH_API


def flatten(properties: dict) -> dict:
    """REST properties -> the flat attributes the plan compares (tags by name)."""
    flat = {k: v for k, v in properties.items() if k != "tags"}
    tags = properties.get("tags")
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict) and tag.get("name") in TAGGED:
            flat[tag["name"]] = tag.get("value")
    return flat


def unflatten(attributes: dict) -> dict:
    properties = {k: v for k, v in attributes.items() if k not in TAGGED}
    properties["tags"] = [{"name": k, "value": attributes[k]} for k in TAGGED if k in attributes]
    return properties


def desired_objects(arm_templates: list[tuple[str, dict]]) -> list[DesiredObject]:
    """(file stem, ARM template) -> one object per saved search. The template's `eTag: "*"`
    (overwrite whatever is there) is what a template deployment needs; the REST plan sends the etag
    it read instead, so it is dropped."""
    out = []
    for stem, template in arm_templates:
        for resource in template["resources"]:
            key = _TEMPLATE_NAME.match(resource["name"]).group(1)
            properties = {k: v for k, v in resource["properties"].items() if k != "eTag"}
            out.append(DesiredObject(key, stem, flatten(properties), "description"))
    return out


def is_owned(description: str) -> bool:
    return parse_owner(description) is not None


class SavedSearchClient(SentinelClient):
    COLLECTION = "/savedSearches"
    WHAT = "savedSearches"

    def live_object(self, item: dict, owned: Callable[[str], bool]) -> LiveObject:
        attributes = flatten(item["properties"])
        return LiveObject(item["name"], attributes, owned(str(attributes.get("description") or "")), item.get("etag"))

    def body(self, desired: DesiredObject) -> dict:
        return {"properties": unflatten(desired.attributes)}
