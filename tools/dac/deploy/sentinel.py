"""`dac deploy sentinel`: the generated analytics rules, kept in step with one or more Microsoft
Sentinel workspaces through the Azure Resource Manager REST API.

REST contract (Microsoft.SecurityInsights alertRules, ARM; "Azure REST API reference: paging"):
  list    GET    {arm}/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/
                 workspaces/{ws}/providers/Microsoft.SecurityInsights/alertRules?api-version=…
                 -> {"value": [{"id", "name", "etag", "kind", "properties"}, …], "nextLink": <url>|absent}
  put     PUT    …/alertRules/{ruleId}?api-version=…   {"kind": "Scheduled", "etag": …, "properties": {…}}
  delete  DELETE …/alertRules/{ruleId}?api-version=…
Authentication: `Authorization: Bearer <token>` for <ARM host>/.default from azure-identity's
DefaultAzureCredential. An update sends the etag read in the plan, so a rule changed in between is
refused (409/412) instead of overwritten.

A list is only believed when every page has that shape and the nextLink chain ends; a nextLink to
another host is refused (the token would go with it), and redirects are not followed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from .config import LoadedConfig, Setting, check_ca_file, check_timeout, load_config
from .plan import DeployError, DesiredObject, LiveObject
from dac.core.problems import DacError, Problem
from dac.core.redaction import SecretError, check_secret
from .responses import json_document
from dac.core.retry import HttpFailure, RetryPolicy, with_retries
from .transport import ARM_HOSTS, TransportOptions, check_arm_endpoint, check_cleartext, same_origin, verify_tls

REQUIRED = {"workspaces": Setting(list)}
OPTIONAL = {"arm_endpoint": Setting(str), "allow_custom_arm_endpoint": Setting(bool), "verify_tls": Setting(bool),
            "ca_file": Setting(str), "timeout": Setting((int, float), check_timeout),
            # `dac backtest sentinel` only (dac.backtest.sentinel checks the hosts)
            "log_analytics_endpoint": Setting(str), "advanced_hunting": Setting(bool),
            "advanced_hunting_endpoint": Setting(str)}
WORKSPACE_KEYS = ("subscription_id", "resource_group", "workspace")
# Azure naming rules (learn.microsoft.com, "Naming rules and restrictions for Azure resources"):
# they also keep a value from adding path segments to the request URL
WORKSPACE_RE = {
    "subscription_id": re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
    "resource_group": re.compile(r"^[-\w.()]{0,89}[-\w()]$"),
    "workspace": re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]$"),
}
DEFAULT_ARM = "https://management.azure.com"
MAX_PAGES = 1000


def arm_scope(endpoint: str) -> str:
    """The token audience: the cloud's own ARM host; a custom endpoint uses the public cloud's."""
    host = urlsplit(endpoint).hostname
    return f"https://{host}/.default" if host in ARM_HOSTS else f"{DEFAULT_ARM}/.default"


ARM_SCOPE = arm_scope(DEFAULT_ARM)


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


def arm_token(credential, scope: str = ARM_SCOPE) -> str:
    from azure.core.exceptions import ClientAuthenticationError
    try:
        token = credential.get_token(scope).token
    except ClientAuthenticationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"no Azure credential for {scope}: {first}") from None
    try:
        return check_secret("the Azure access token", token or "")
    except SecretError as e:
        raise DeployError(str(e)) from None


class SentinelClient:
    """One workspace's Sentinel analytics rules (alertRules); SavedSearchClient (hunting queries)
    reuses the transport, paging and checks with another collection and body shape."""
    COLLECTION = "/providers/Microsoft.SecurityInsights/alertRules"
    WHAT = "alertRules"

    def __init__(self, config: dict, workspace: dict, token: str, api_version: str,
                 transport: TransportOptions = TransportOptions(), policy: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] | None = None, warn: Callable[[str], None] = print):
        import requests
        self.requests = requests
        self.endpoint = config.get("arm_endpoint", DEFAULT_ARM).rstrip("/")
        check_cleartext(self.endpoint, transport, "sentinel", warn)
        self.base = (f"{self.endpoint}/subscriptions/{workspace['subscription_id']}/resourceGroups/{workspace['resource_group']}"
                     f"/providers/Microsoft.OperationalInsights/workspaces/{workspace['workspace']}{self.COLLECTION}")
        self.api_version = api_version
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        verify = (verify_tls(bool(config.get("verify_tls", True)), transport, self.endpoint, warn)
                  if self.endpoint.startswith("https:") else False)
        # passed on every request: a session-level setting loses to $REQUESTS_CA_BUNDLE
        self.verify = (config.get("ca_file") or True) if verify else False
        self.timeout = config.get("timeout", 30)
        self.policy, self.sleep = policy, sleep

    def _call(self, method: str, url: str, body: dict | None = None, params: dict | None = None) -> dict | None:
        """A checked JSON object for GET; None for writes (their result is read back)."""
        def once():
            response = self.session.request(method, url, params=params, json=body, timeout=self.timeout,
                                            verify=self.verify, allow_redirects=False)
            if response.status_code >= 400:
                raise HttpFailure(response.status_code, _arm_message(response), response.headers.get("Retry-After"))
            if not 200 <= response.status_code <= 299:
                raise DeployError(f"{method} {self.WHAT}: unexpected HTTP {response.status_code}")
            if method != "GET":
                return None
            return json_document(response.content, response.headers.get("Content-Type", ""), f"GET {self.WHAT}")
        try:
            return with_retries(once, self.policy, self.sleep)
        except self.requests.exceptions.SSLError as e:
            raise DeployError(f"TLS verification failed for {self.endpoint}: {e.__class__.__name__}") from None
        except self.requests.exceptions.ConnectionError as e:
            from urllib3.exceptions import ProtocolError
            if e.args and isinstance(e.args[0], ProtocolError):      # reset or closed mid-answer
                raise DeployError(f"{self.endpoint} closed the connection before a complete answer") from None
            raise DeployError(f"cannot reach {self.endpoint}") from None
        except self.requests.exceptions.RequestException as e:   # cut-off body, bad chunking, timeout
            raise DeployError(f"no complete answer from {self.endpoint} ({e.__class__.__name__})") from None

    def list_live(self, is_owned: Callable[[str], bool]) -> list[LiveObject]:
        live, url, params, seen = [], self.base, {"api-version": self.api_version}, set()
        while url:
            if url in seen or len(seen) >= MAX_PAGES:
                raise DeployError(f"the {self.WHAT} list's nextLink chain does not end (it loops)")
            seen.add(url)
            data = self._call("GET", url, params=params)
            items, next_link = data.get("value"), data.get("nextLink")
            if not isinstance(items, list):
                raise DeployError(f"the {self.WHAT} list answer has no `value` list: not an ARM list")
            if next_link is not None and (not isinstance(next_link, str) or not same_origin(next_link, self.endpoint)):
                raise DeployError(f"the {self.WHAT} list's nextLink points to another server: refused (the token would go there)")
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                        or not isinstance(item.get("properties"), dict):
                    raise DeployError(f"the {self.WHAT} list answer has an item without a name and properties")
                live.append(self.live_object(item, is_owned))
            url, params = next_link, None       # nextLink already carries the query
        names = [o.key for o in live]
        if len(set(names)) != len(names):
            raise DeployError(f"the {self.WHAT} list names an object twice (paging shifted while reading?); run again")
        return live

    def live_object(self, item: dict, is_owned: Callable[[str], bool]) -> LiveObject:
        props = item["properties"]
        return LiveObject(item["name"], props, is_owned(str(props.get("description") or "")), item.get("etag"))

    def body(self, desired: DesiredObject) -> dict:
        return {"kind": "Scheduled", "properties": desired.attributes}

    def create(self, desired: DesiredObject) -> None:
        self._call("PUT", f"{self.base}/{desired.key}", self.body(desired), {"api-version": self.api_version})

    def update(self, desired: DesiredObject, live: LiveObject) -> None:
        body = self.body(desired)
        if live.etag:
            body["etag"] = live.etag
        self._call("PUT", f"{self.base}/{desired.key}", body, {"api-version": self.api_version})

    def delete(self, live: LiveObject) -> None:
        self._call("DELETE", f"{self.base}/{live.key}", params={"api-version": self.api_version})


def _arm_message(response) -> str:
    try:
        error = response.json().get("error") or {}
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ") or response.reason
    except (ValueError, AttributeError):
        return response.reason or "request failed"


def load_sentinel_config(root: Path, rel: str, transport: TransportOptions = TransportOptions()) -> dict:
    loaded: LoadedConfig = load_config(root, rel, REQUIRED, OPTIONAL)
    config = dict(loaded.values)
    problems = []
    for i, ws in enumerate(config["workspaces"], 1):
        where = f"workspaces[{i}]"
        if not isinstance(ws, dict) or any(not isinstance(ws.get(k), str) or not ws.get(k) for k in WORKSPACE_KEYS):
            problems.append(loaded.problem(where, f"{where} needs {', '.join(WORKSPACE_KEYS)} (strings)"))
            continue
        for key in WORKSPACE_KEYS:
            if not WORKSPACE_RE[key].match(ws[key]):
                problems.append(Problem(rel, loaded.lines.get(f"{where}.{key}", loaded.lines.get(where)),
                                        f"{where}.{key} is not a valid Azure {key.replace('_', ' ')}"))
        unknown = sorted(set(ws) - set(WORKSPACE_KEYS))
        if unknown:
            problems.append(loaded.problem(where, f"{where}: unknown setting(s) {', '.join(map(str, unknown))}"))
    if not config["workspaces"]:
        problems.append(loaded.problem("workspaces", "`workspaces` is empty"))
    endpoint = config.get("arm_endpoint", DEFAULT_ARM)
    wrong = check_arm_endpoint(endpoint, bool(config.get("allow_custom_arm_endpoint")))
    if wrong:
        problems.append(loaded.problem("arm_endpoint", f"`arm_endpoint` {wrong}"))
    elif endpoint.startswith("http:") and not transport.allow_insecure_transport:
        problems.append(loaded.problem("arm_endpoint", "`arm_endpoint` is plain HTTP: the token would travel in "
                                                       "cleartext; refused unless --allow-insecure-transport is given"))
    if problems:
        raise DacError(problems)
    if config.get("ca_file"):
        config["ca_file"] = check_ca_file(root, loaded)
    return config
