"""`dac deploy sentinel`: the generated analytics rules, kept in step with one or more Microsoft
Sentinel workspaces through the Azure Resource Manager REST API.

REST contract (Microsoft.SecurityInsights alertRules, ARM):
  list    GET    {arm}/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/
                 workspaces/{ws}/providers/Microsoft.SecurityInsights/alertRules?api-version=…   (paged: nextLink)
  put     PUT    …/alertRules/{ruleId}?api-version=…   {"kind": "Scheduled", "etag": …, "properties": {…}}
  delete  DELETE …/alertRules/{ruleId}?api-version=…
Authentication: `Authorization: Bearer <token>` for https://management.azure.com/.default from
azure-identity's DefaultAzureCredential. An update sends the etag read in the plan, so a rule
changed in between is refused (409/412) instead of overwritten.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .deploy_plan import DeployError, DesiredObject, LiveObject
from .problems import DacError, Problem
from .retry import HttpFailure, RetryPolicy, with_retries

REQUIRED = {"workspaces": list}
OPTIONAL = {"arm_endpoint": str, "verify_tls": bool, "ca_file": str, "timeout": int}
WORKSPACE_KEYS = ("subscription_id", "resource_group", "workspace")
ARM_SCOPE = "https://management.azure.com/.default"



def normalize(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def desired_objects(rules) -> list[DesiredObject]:
    return [DesiredObject(r.id, r.file_stem, dict(r.arm_properties), "description") for r in rules]


def make_credential():
    """DefaultAzureCredential: environment, workload or managed identity, Azure CLI login…"""
    from azure.identity import DefaultAzureCredential
    return DefaultAzureCredential()


def arm_token(credential) -> str:
    from azure.core.exceptions import ClientAuthenticationError
    try:
        return credential.get_token(ARM_SCOPE).token
    except ClientAuthenticationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"no Azure credential for {ARM_SCOPE}: {first}") from None


class SentinelClient:
    def __init__(self, config: dict, workspace: dict, token: str, api_version: str, insecure: bool = False,
                 policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] | None = None):
        import requests
        self.requests = requests
        endpoint = config.get("arm_endpoint", "https://management.azure.com").rstrip("/")
        self.base = (f"{endpoint}/subscriptions/{workspace['subscription_id']}/resourceGroups/{workspace['resource_group']}"
                     f"/providers/Microsoft.OperationalInsights/workspaces/{workspace['workspace']}"
                     f"/providers/Microsoft.SecurityInsights/alertRules")
        self.api_version = api_version
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        verify = bool(config.get("verify_tls", True)) and not insecure
        # passed on every request: a session-level setting loses to $REQUESTS_CA_BUNDLE
        self.verify = (config.get("ca_file") or True) if verify else False
        self.timeout = config.get("timeout", 30)
        self.policy, self.sleep = policy, sleep

    def _call(self, method: str, url: str, body: dict | None = None, params: dict | None = None) -> dict:
        def once():
            response = self.session.request(method, url, params=params, json=body, timeout=self.timeout,
                                            verify=self.verify)
            if response.status_code >= 400:
                raise HttpFailure(response.status_code, _arm_message(response), response.headers.get("Retry-After"))
            return response.json() if response.content else {}
        try:
            return with_retries(once, self.policy, self.sleep)
        except self.requests.exceptions.SSLError as e:
            raise DeployError(f"TLS verification failed for {self.base.split('/subscriptions')[0]}: {e.__class__.__name__}") from None
        except self.requests.exceptions.ConnectionError:
            raise DeployError(f"cannot reach {self.base.split('/subscriptions')[0]}") from None

    def list_live(self, is_owned: Callable[[str], bool]) -> list[LiveObject]:
        live, url, params = [], self.base, {"api-version": self.api_version}
        while url:
            data = self._call("GET", url, params=params)
            for item in data.get("value", []):
                props = item.get("properties") or {}
                live.append(LiveObject(item["name"], props, is_owned(str(props.get("description") or "")), item.get("etag")))
            url, params = data.get("nextLink"), None       # nextLink already carries the query
        return live

    def create(self, desired: DesiredObject) -> None:
        self._call("PUT", f"{self.base}/{desired.key}", {"kind": "Scheduled", "properties": desired.attributes},
                   {"api-version": self.api_version})

    def update(self, desired: DesiredObject, live: LiveObject) -> None:
        body = {"kind": "Scheduled", "properties": desired.attributes}
        if live.etag:
            body["etag"] = live.etag
        self._call("PUT", f"{self.base}/{desired.key}", body, {"api-version": self.api_version})

    def delete(self, live: LiveObject) -> None:
        self._call("DELETE", f"{self.base}/{live.key}", params={"api-version": self.api_version})


def _arm_message(response) -> str:
    try:
        error = response.json().get("error") or {}
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ") or response.reason
    except ValueError:
        return response.reason or "request failed"


def load_sentinel_config(root: Path, rel: str) -> dict:
    from .deploy_config import load_config
    config = load_config(root / rel, rel, REQUIRED, OPTIONAL)
    problems = []
    for i, ws in enumerate(config["workspaces"], 1):
        if not isinstance(ws, dict) or any(not isinstance(ws.get(k), str) or not ws.get(k) for k in WORKSPACE_KEYS):
            problems.append(Problem(rel, None, f"workspaces[{i}] needs {', '.join(WORKSPACE_KEYS)} (strings)"))
    if not config["workspaces"]:
        problems.append(Problem(rel, None, "`workspaces` is empty"))
    if problems:
        raise DacError(problems)
    return config
