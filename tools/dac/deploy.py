"""`dac deploy splunk|sentinel`: plan (default) or apply the repository's detections to a SIEM.

Before contacting anything: the rules compile, the checked-in generated files are up to date (a
deploy never ships what review has not seen), the config is valid, a token exists, and every
object can be deployed. Any of these failing is one clear error and nothing is changed. Then,
per SIEM endpoint: list what is there, plan, and with --apply carry the plan out, one object at a
time, continuing past failures and ending with what was and was not changed.
"""
from __future__ import annotations

from typing import Callable

from .artifacts import build_artifacts, compile_repository, stale_report
from .deploy_plan import DeployError, apply_plan, make_plan, render_plan
from .problems import DacError, Problem
from .repo import Layout
from .retry import HttpFailure, RetryPolicy

SENTINEL_QUERY_LIMIT = 10_000      # characters: Sentinel refuses longer scheduled-rule queries


def _compiled(layout: Layout):
    _, queries, config = compile_repository(layout)
    stale = stale_report(build_artifacts(queries, config, layout), layout)
    if stale:
        raise DacError([Problem("conversions/", None, f"{len(stale)} generated file(s) are stale: run `dac convert`, "
                                                      "review and commit before deploying")])
    return queries, config


def _redactor(*secrets: str) -> Callable[[str], str]:
    def redact(text: str) -> str:
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text
    return redact


def _run(title: str, client, desired, normalize, is_owned, apply: bool, prune: bool,
         redact: Callable[[str], str], out: Callable[[str], None]) -> bool:
    try:
        live = client.list_live(is_owned)
    except HttpFailure as e:
        raise DeployError(f"listing the existing objects failed: {redact(str(e))}; nothing was changed") from None
    changes = make_plan(desired, live, normalize, prune)
    for line in render_plan(title, changes):
        out(redact(line))
    if not apply:
        return not any(c.action == "conflict" for c in changes)
    lines, ok = apply_plan(changes, client, redact)
    for line in lines:
        out(line)
    return ok


def deploy_splunk(layout: Layout, apply: bool, prune: bool, config_file: str, overrides: dict, insecure: bool,
                  out: Callable[[str], None] = print, sleep=None, policy: RetryPolicy = RetryPolicy()) -> bool:
    from . import deploy_splunk as ds
    from .splunk_app import load_app_config, parse_owner, saved_searches
    from .compose import hunting_specs
    queries, config = _compiled(layout)
    app_config = load_app_config(layout)
    if app_config is None:
        raise DacError([Problem("splunk/app.yml", None, "missing: the Splunk app config is needed to deploy")])
    settings = ds.load_splunk_config(layout.root, config_file, app_config.app.id, overrides)
    token = ds.splunk_token()
    searches = saved_searches(queries, app_config, hunting_specs(config, "sigma/targets.yml"))
    desired = ds.desired_objects(searches)
    client = ds.SplunkClient(settings, token, insecure, policy, sleep)
    title = f"plan for Splunk {client.url} app {settings['app']} ({len(desired)} saved searches in the repository):"
    return _run(title, client, desired, ds.normalize, lambda d: parse_owner(d) is not None, apply, prune,
                _redactor(token), out)


def deploy_sentinel(layout: Layout, apply: bool, prune: bool, config_file: str, insecure: bool,
                    out: Callable[[str], None] = print, sleep=None, policy: RetryPolicy = RetryPolicy(),
                    credential=None) -> bool:
    from . import deploy_sentinel as dsn
    from .sentinel_analytics import API_VERSION, alert_rules, load_analytics_config, parse_owner
    queries, config = _compiled(layout)
    settings = dsn.load_sentinel_config(layout.root, config_file)
    rules = alert_rules(queries, load_analytics_config(layout), config)
    too_long = [r for r in rules if len(r.arm_properties.get("query", "")) > SENTINEL_QUERY_LIMIT]
    if too_long:
        raise DeployError("cannot deploy: " + "; ".join(
            f"{r.file_stem} has a {len(r.arm_properties['query'])}-character query (Sentinel's limit is "
            f"{SENTINEL_QUERY_LIMIT})" for r in too_long) + "; nothing was changed")
    desired = dsn.desired_objects(rules)
    token = dsn.arm_token(credential or dsn.make_credential())
    redact = _redactor(token)
    ok = True
    for ws in settings["workspaces"]:
        client = dsn.SentinelClient(settings, ws, token, API_VERSION, insecure, policy, sleep)
        title = (f"plan for Sentinel workspace {ws['workspace']} (subscription {ws['subscription_id']}, "
                 f"resource group {ws['resource_group']}; {len(desired)} analytics rules in the repository):")
        try:
            ok = _run(title, client, desired, dsn.normalize, lambda d: parse_owner(d) is not None, apply, prune,
                      redact, out) and ok
        except DeployError as e:
            # this workspace is unreachable or refused us: report it and go on with the others
            out(f"error: workspace {ws['workspace']}: {redact(str(e))}; nothing was changed there")
            ok = False
    return ok
