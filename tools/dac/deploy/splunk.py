"""`dac deploy splunk`: the generated saved searches, kept in step with a Splunk app over the
management port (8089) through splunk-sdk's REST binding.

REST contract (Splunk REST API reference, "saved/searches" and "Paginating and filtering"),
always with output_mode=json:
  list    GET    /servicesNS/nobody/<app>/saved/searches?count=<n>&offset=<k>
                 -> {"entry": [{"name", "acl", "content"}, …], "paging": {"total", "perPage", "offset"}}
  create  POST   /servicesNS/nobody/<app>/saved/searches          name=<name>&<attribute>=…
  update  POST   /servicesNS/nobody/<app>/saved/searches/<name>   <attribute>=…
  delete  DELETE /servicesNS/nobody/<app>/saved/searches/<name>
Authentication: `Authorization: Bearer <token>` (a Splunk authentication token from $SPLUNK_TOKEN).

A list is only believed when it has that shape and its pages add up to `paging.total`: an empty
or cut-off body, HTML from a proxy, or a short page is an error, never "Splunk has nothing".
"""
from __future__ import annotations

import http.client
import json
import os
import ssl
from pathlib import Path
from typing import Callable

from .config import LoadedConfig, Setting, check_app, check_ca_file, check_host, check_port, \
    check_scheme, check_timeout, load_config
from .plan import DeployError, DesiredObject, LiveObject
from dac.core.problems import DacError, Problem
from dac.core.redaction import SecretError, check_secret
from .responses import json_document
from dac.core.retry import HttpFailure, RetryPolicy, with_retries
from .transport import TransportOptions, check_cleartext, verify_tls

REQUIRED = {"host": Setting(str, check_host)}
OPTIONAL = {"port": Setting(int, check_port), "app": Setting(str, check_app), "scheme": Setting(str, check_scheme),
            "verify_tls": Setting(bool), "ca_file": Setting(str), "timeout": Setting((int, float), check_timeout)}
PAGE_SIZE = 100          # entries asked for per list request; Splunk may answer with fewer (perPage)


def normalize(value) -> str:
    """Splunk answers JSON with booleans and numbers where dac sends strings."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value)
    return {"true": "1", "false": "0"}.get(text.lower(), text)


def desired_objects(searches) -> list[DesiredObject]:
    return [DesiredObject(s.name, s.name, dict(s.attributes), "description") for s in searches]


class SplunkClient:
    def __init__(self, config: dict, token: str, transport: TransportOptions = TransportOptions(),
                 policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] | None = None,
                 warn: Callable[[str], None] = print):
        from splunklib import binding
        self.binding = binding
        self.app = config["app"]
        scheme = config.get("scheme", "https")
        self.url = f"{scheme}://{config['host']}:{config.get('port', 8089)}"
        check_cleartext(self.url, transport, "splunk", warn)
        verify = verify_tls(bool(config.get("verify_tls", True)), transport, self.url, warn) if scheme == "https" else False
        context = None
        if verify and config.get("ca_file"):
            try:
                context = ssl.create_default_context(cafile=config["ca_file"])
            except (ssl.SSLError, OSError) as e:
                raise DeployError(f"ca_file {config['ca_file']} is not a PEM CA bundle ({e.__class__.__name__})") from None
        self.context = binding.Context(
            host=config["host"], port=int(config.get("port", 8089)), scheme=scheme,
            splunkToken=token, owner="nobody", app=self.app, autologin=False,
            handler=binding.handler(verify=verify, context=context, timeout=config.get("timeout", 30)))
        self.policy, self.sleep = policy, sleep

    def _call(self, method: str, path: str, **params) -> dict | None:
        """A JSON object for GET (checked: a 2xx JSON body), None for writes (their result is read back)."""
        def once():
            try:
                response = getattr(self.context, method)(path, output_mode="json", **params)
                body = response.body.read()
            except self.binding.HTTPError as e:
                headers = {k.lower(): v for k, v in (e.headers or [])}
                raise HttpFailure(e.status, _splunk_message(e), headers.get("retry-after")) from None
            if not 200 <= response.status <= 299:
                raise DeployError(f"{method.upper()} {path}: unexpected HTTP {response.status}")
            if method != "get":
                return None
            headers = {k.lower(): v for k, v in (response.headers or [])}
            return json_document(body, headers.get("content-type", ""), f"GET {path}")
        try:
            return with_retries(once, self.policy, self.sleep)
        except (OSError, http.client.HTTPException) as e:
            # refused, unresolvable, timed out, reset mid-answer, cut-off body, TLS verification failed
            raise DeployError(f"cannot reach Splunk at {self.url}: {_describe(e)}") from None

    def list_live(self, is_owned: Callable[[str], bool]) -> list[LiveObject]:
        entries, offset, total = [], 0, None
        while True:
            data = self._call("get", "saved/searches", count=PAGE_SIZE, offset=offset)
            page, page_total = _check_list_page(data, offset)
            if total is None:
                total = page_total
            elif page_total != total:
                raise DeployError(f"the saved searches changed while being read (paging.total {total} then "
                                  f"{page_total}); run again")
            entries += page
            offset += len(page)
            if offset >= total:
                break
            if not page:
                raise DeployError(f"Splunk announced {total} saved searches but stopped answering at {offset}")
        if len(entries) != total:
            raise DeployError(f"Splunk announced {total} saved searches and sent {len(entries)}")
        names = [e["name"] for e in entries]
        if len(set(names)) != len(names):
            raise DeployError("Splunk's list names a saved search twice (paging shifted while reading?); run again")
        live = []
        for entry in entries:
            if (entry.get("acl") or {}).get("app") not in (None, self.app):
                continue        # visible here, but lives in another app
            content = entry["content"]
            live.append(LiveObject(entry["name"], content, is_owned(str(content.get("description") or ""))))
        return live

    def create(self, desired: DesiredObject) -> None:
        self._call("post", "saved/searches", name=desired.key, **desired.attributes)

    def update(self, desired: DesiredObject, live: LiveObject) -> None:
        self._call("post", f"saved/searches/{desired.key}", **desired.attributes)

    def delete(self, live: LiveObject) -> None:
        self._call("delete", f"saved/searches/{live.key}")


def _check_list_page(data: dict, offset: int) -> tuple[list[dict], int]:
    """One page of a Splunk collection, checked against the documented shape."""
    entries, paging = data.get("entry"), data.get("paging")
    if not isinstance(entries, list) or not isinstance(paging, dict):
        raise DeployError("Splunk's list answer has no `entry` list and `paging` object: not a saved/searches list")
    total = paging.get("total")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise DeployError("Splunk's list answer has no valid paging.total")
    if paging.get("offset", offset) != offset:
        raise DeployError(f"Splunk answered offset {paging.get('offset')} when asked for {offset}")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("content"), dict):
            raise DeployError("Splunk's list answer has an entry without a name and content")
    return entries, total


def _describe(error: BaseException) -> str:
    if isinstance(error, http.client.IncompleteRead):
        return f"the answer was cut off ({len(error.partial)} bytes of {len(error.partial) + (error.expected or 0)})"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return str(error) or error.__class__.__name__


def _splunk_message(error) -> str:
    try:
        messages = json.loads(error.body).get("messages") or []
        return "; ".join(m.get("text", "") for m in messages) or error.reason
    except (ValueError, AttributeError, TypeError):
        return str(getattr(error, "reason", "")) or "request failed"


def load_splunk_config(root: Path, rel: str, app_id: str, overrides: dict,
                       transport: TransportOptions = TransportOptions()) -> dict:
    # --host (a non-empty override) stands in for the file's host; the CLI always passes the key
    loaded: LoadedConfig = load_config(root, rel, {} if overrides.get("host") else REQUIRED, {**REQUIRED, **OPTIONAL})
    problems = []
    for key, value in overrides.items():
        setting = OPTIONAL.get(key) or REQUIRED.get(key)
        if value is not None and setting and setting.check and (wrong := setting.check(value)):
            problems.append(Problem(f"--{key}", None, wrong))
    if problems:
        raise DacError(problems)
    config = {**loaded.values, **{k: v for k, v in overrides.items() if v is not None}}
    config.setdefault("app", app_id)
    if config.get("scheme") == "http" and not transport.allow_insecure_transport:
        raise DacError([loaded.problem("scheme", "`scheme: http` sends SPLUNK_TOKEN in cleartext: refused unless "
                                                 "--allow-insecure-transport is given on the command line")])
    if config.get("ca_file"):
        config["ca_file"] = check_ca_file(root, loaded)
    return config


def splunk_token() -> str:
    token = os.environ.get("SPLUNK_TOKEN", "")
    if not token:
        raise DeployError("SPLUNK_TOKEN is not set: create a Splunk authentication token and export it")
    try:
        return check_secret("SPLUNK_TOKEN", token)
    except SecretError as e:
        raise DeployError(str(e)) from None
