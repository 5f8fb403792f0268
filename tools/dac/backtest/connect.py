"""The SIEM a backtest talks to, configured exactly like `dac deploy`: splunk/deploy.yml and
$SPLUNK_TOKEN, or sentinel/deploy.yml and azure-identity (DefaultAzureCredential); the same
transport rules (HTTPS, certificate checks, no cleartext without the command-line flag). The
tokens join the run's Redactor before any request is made."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .run import BacktestQuery
from .http import BacktestError
from dac.core.problems import DacError
from dac.core.redaction import Redactor
from dac.core.retry import RetryPolicy
from dac.deploy.transport import TransportOptions


@dataclass
class Connection:
    endpoint: str
    route: Callable[[BacktestQuery], object]      # which client runs a query
    check: Callable[[BacktestQuery], str | None]  # why a query cannot run over this window, or None


def connect_splunk(root: Path, config_file: str, overrides: dict, transport: TransportOptions, redact: Redactor,
                   warn: Callable[[str], None], sleep=None, policy: RetryPolicy = RetryPolicy(),
                   clock=None) -> Connection:
    from .splunk import SplunkSearch
    from dac.deploy.splunk import load_splunk_config, splunk_token
    from dac.artifacts.splunk_config import load_app_config
    from dac.core.repo import Layout
    app = load_app_config(Layout(root))
    settings = load_splunk_config(root, config_file, app.app.id if app else "search", overrides, transport)
    token = splunk_token()
    redact.add(token)
    extra = {"clock": clock} if clock else {}
    client = SplunkSearch(settings, token, transport, policy, sleep, warn, **extra)
    return Connection(client.endpoint, lambda q: client, lambda q: None)


def connect_sentinel(root: Path, config_file: str, transport: TransportOptions, redact: Redactor,
                     warn: Callable[[str], None], window_days: float, workspace: str | None = None, sleep=None,
                     policy: RetryPolicy = RetryPolicy(), credential=None) -> Connection:
    from . import sentinel as bs
    from dac.deploy.sentinel import arm_token, load_sentinel_config, make_credential
    from dac.core.problems import Problem
    settings = load_sentinel_config(root, config_file, transport)
    allow = bool(settings.get("allow_custom_arm_endpoint"))
    problems = []
    for key, default, hosts in (("log_analytics_endpoint", bs.LOGS_ENDPOINT, bs.LOGS_HOSTS),
                                ("advanced_hunting_endpoint", bs.HUNTING_ENDPOINT, bs.HUNTING_HOSTS)):
        value = settings.get(key, default)
        wrong = bs.check_endpoint(value, hosts, allow, key)
        if wrong is None and value.startswith("http:") and not transport.allow_insecure_transport:
            wrong = f"`{key}` is plain HTTP: refused unless --allow-insecure-transport is given"
        if wrong:
            problems.append(Problem(config_file, None, wrong))
    if problems:
        raise DacError(problems)
    workspaces = settings["workspaces"]
    chosen = next((w for w in workspaces if w["workspace"] == workspace), None) if workspace else workspaces[0]
    if chosen is None:
        raise BacktestError(f"--workspace {workspace}: not in {config_file} "
                            f"({', '.join(w['workspace'] for w in workspaces)})")
    credential = credential or make_credential()
    token = _token(arm_token, credential, bs.LOGS_SCOPE)
    redact.add(token)
    logs = bs.LogAnalytics(settings, chosen, token, transport, policy, sleep, warn)
    hunting = None
    if settings.get("advanced_hunting"):
        hunting_token = _token(arm_token, credential, bs.HUNTING_SCOPE)
        redact.add(hunting_token)
        hunting = bs.AdvancedHunting(settings, hunting_token, transport, policy, sleep, warn)

    def route(query: BacktestQuery):
        return hunting if hunting and bs.uses_defender_tables(query.text) else logs

    def check(query: BacktestQuery) -> str | None:
        if route(query) is hunting and window_days > bs.HUNTING_DAYS:
            return f"Advanced Hunting holds {bs.HUNTING_DAYS} days; --since is {window_days:g} days"
        return None

    endpoint = f"{logs.endpoint} (workspace {chosen['workspace']})" + (f" and {hunting.endpoint}" if hunting else "")
    return Connection(endpoint, route, check)


def _token(arm_token, credential, scope: str) -> str:
    from dac.deploy.plan import DeployError
    try:
        return arm_token(credential, scope)
    except DeployError as e:
        raise BacktestError(str(e), fatal=True) from None
