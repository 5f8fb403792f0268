"""`dac deploy splunk`: the generated saved searches, kept in step with a Splunk app over the
management port (8089) through splunk-sdk's REST binding.

REST contract (Splunk REST API reference, "saved/searches"), always with output_mode=json:
  list    GET    /servicesNS/nobody/<app>/saved/searches?count=0
  create  POST   /servicesNS/nobody/<app>/saved/searches          name=<name>&<attribute>=…
  update  POST   /servicesNS/nobody/<app>/saved/searches/<name>   <attribute>=…
  delete  DELETE /servicesNS/nobody/<app>/saved/searches/<name>
Authentication: `Authorization: Bearer <token>` (a Splunk authentication token from $SPLUNK_TOKEN).
TLS is verified unless the config says `verify_tls: false` or --insecure is given.
"""
from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Callable

from .deploy_plan import DeployError, DesiredObject, LiveObject
from .problems import DacError, Problem
from .retry import HttpFailure, RetryPolicy, with_retries

REQUIRED = {"host": str}
OPTIONAL = {"port": int, "app": str, "scheme": str, "verify_tls": bool, "ca_file": str, "timeout": int}



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
    def __init__(self, config: dict, token: str, insecure: bool = False, policy: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] | None = None):
        from splunklib import binding
        self.binding = binding
        self.app = config["app"]
        self.url = f"{config.get('scheme', 'https')}://{config['host']}:{config.get('port', 8089)}"
        verify = bool(config.get("verify_tls", True)) and not insecure
        context = None
        if verify and config.get("ca_file"):
            context = ssl.create_default_context(cafile=config["ca_file"])
        self.context = binding.Context(
            host=config["host"], port=int(config.get("port", 8089)), scheme=config.get("scheme", "https"),
            splunkToken=token, owner="nobody", app=self.app, autologin=False,
            handler=binding.handler(verify=verify, context=context, timeout=config.get("timeout", 30)))
        self.policy, self.sleep = policy, sleep

    def _call(self, method: str, path: str, **params) -> dict:
        def once():
            try:
                response = getattr(self.context, method)(path, output_mode="json", **params)
            except self.binding.HTTPError as e:
                headers = {k.lower(): v for k, v in (e.headers or [])}
                raise HttpFailure(e.status, _splunk_message(e), headers.get("retry-after")) from None
            body = response.body.read()
            return json.loads(body) if body else {}
        try:
            return with_retries(once, self.policy, self.sleep)
        except OSError as e:        # refused, unresolvable, timed out, TLS verification failed
            raise DeployError(f"cannot reach Splunk at {self.url}: {e}") from None

    def list_live(self, is_owned: Callable[[str], bool]) -> list[LiveObject]:
        data = self._call("get", "saved/searches", count=0)
        live = []
        for entry in data.get("entry", []):
            if (entry.get("acl") or {}).get("app") not in (None, self.app):
                continue        # visible here, but lives in another app
            content = entry.get("content") or {}
            live.append(LiveObject(entry["name"], content, is_owned(str(content.get("description") or ""))))
        return live

    def create(self, desired: DesiredObject) -> None:
        self._call("post", "saved/searches", name=desired.key, **desired.attributes)

    def update(self, desired: DesiredObject, live: LiveObject) -> None:
        self._call("post", f"saved/searches/{desired.key}", **desired.attributes)

    def delete(self, live: LiveObject) -> None:
        self._call("delete", f"saved/searches/{live.key}")


def _splunk_message(error) -> str:
    try:
        messages = json.loads(error.body).get("messages") or []
        return "; ".join(m.get("text", "") for m in messages) or error.reason
    except (ValueError, AttributeError, TypeError):
        return str(getattr(error, "reason", "")) or "request failed"


def load_splunk_config(root: Path, rel: str, app_id: str, overrides: dict) -> dict:
    from .deploy_config import load_config
    # --host (a non-empty override) stands in for the file's host; the CLI always passes the key
    config = load_config(root / rel, rel, {} if overrides.get("host") else REQUIRED, {**REQUIRED, **OPTIONAL})
    config = {**config, **{k: v for k, v in overrides.items() if v is not None}}
    config.setdefault("app", app_id)
    if config.get("scheme", "https") not in ("https", "http"):
        raise DacError([Problem(rel, None, "`scheme` must be https or http")])
    return config


def splunk_token() -> str:
    token = os.environ.get("SPLUNK_TOKEN", "")
    if not token:
        raise DeployError("SPLUNK_TOKEN is not set: create a Splunk authentication token and export it")
    return token
