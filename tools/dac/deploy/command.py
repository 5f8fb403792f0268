"""`dac deploy splunk|sentinel`: plan (default) or apply the repository's detections to a SIEM.

Before contacting anything: the rules compile, the checked-in generated files are up to date (a
deploy never ships what review has not seen), the config is valid, a token exists and is usable,
the transport is HTTPS with certificate checks (or the command line explicitly says otherwise),
and every object can be deployed. Any of these failing is one clear error and nothing is changed.
Then, per SIEM endpoint: list what is there (a list that is not provably complete stops the run),
plan, and with --apply carry the plan out, one object at a time, continuing past failures, then
read everything back: a change that cannot be seen in the SIEM afterwards is a failure.
"""
from __future__ import annotations

import sys
from typing import Callable

from dac.rules import content
from dac.artifacts.build import build_artifacts, compile_repository, stale_report
from .plan import Change, DeployError, apply_plan, make_plan, render_plan
from dac.core.problems import DacError, Problem
from dac.core.redaction import Redactor
from dac.core.repo import Layout
from dac.core.retry import HttpFailure, RetryPolicy
from .transport import TransportOptions

SENTINEL_QUERY_LIMIT = content.SENTINEL_QUERY_LIMIT    # checked again on the final ARM query (tests lower it)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _compiled(layout: Layout):
    _, queries, config = compile_repository(layout)
    stale = stale_report(build_artifacts(queries, config, layout), layout)
    if stale:
        raise DacError([Problem("conversions/", None, f"{len(stale)} generated file(s) are stale: run `dac convert`, "
                                                      "review and commit before deploying")])
    return queries, config


def _read_back(client, desired, normalize, is_owned, applied: list[Change], redact) -> tuple[list[str], bool]:
    """Compare what the SIEM holds now with what apply says it did."""
    try:
        after = client.list_live(is_owned)
    except (HttpFailure, DeployError) as e:
        return [f"  UNVERIFIED: reading back what was written failed: {redact(e)}",
                f"verified: no; {len(applied)} change(s) were sent but cannot be confirmed: run the plan again"], False
    present = {o.key for o in after}
    now = {c.key: c for c in make_plan(desired, after, normalize, prune=False)}
    wrong = []
    for c in applied:
        if c.action == "delete":
            if c.key in present:
                wrong.append(f"{c.key}: deleted, but still there when read back")
        elif c.key not in present:
            wrong.append(f"{c.key}: {c.action}d, but not there when read back")
        elif now[c.key].action != "unchanged":
            wrong.append(f"{c.key}: {c.action}d, but reads back different ({', '.join(now[c.key].changed) or 'owner'})")
    lines = [f"  NOT AS WRITTEN {redact(w)}" for w in wrong]
    lines.append(f"verified: read back {len(applied)} change(s): "
                 + ("all as written" if not wrong else f"{len(wrong)} not as written"))
    return lines, not wrong


def _run(title: str, client, desired, normalize, is_owned, apply: bool, prune: bool,
         redact: Callable[[str], str], out: Callable[[str], None]) -> bool:
    # a DeployError raised here (unreachable, unreadable list) comes before any change
    try:
        live = client.list_live(is_owned)
    except HttpFailure as e:
        raise DeployError(f"listing the existing objects failed: {redact(str(e))}") from None
    changes = make_plan(desired, live, normalize, prune)
    for line in render_plan(title, changes):
        out(redact(line))
    if not apply:
        return not any(c.action == "conflict" for c in changes)
    lines, ok, applied = apply_plan(changes, client, redact)
    for line in lines:
        out(redact(line))
    if not applied:
        return ok
    lines, verified = _read_back(client, desired, normalize, is_owned, applied, redact)
    for line in lines:
        out(line)
    return ok and verified


def deploy_splunk(layout: Layout, apply: bool, prune: bool, config_file: str, overrides: dict,
                  transport: TransportOptions, redact: Redactor, out: Callable[[str], None] = print,
                  warn: Callable[[str], None] = _stderr, sleep=None, policy: RetryPolicy = RetryPolicy()) -> bool:
    from . import splunk as ds
    from dac.artifacts.splunk_searches import parse_owner, saved_searches
    from dac.artifacts.splunk_config import load_app_config
    from dac.compile.compose import hunting_specs
    queries, config = _compiled(layout)
    app_config = load_app_config(layout)
    if app_config is None:
        raise DacError([Problem("splunk/app.yml", None, "missing: the Splunk app config is needed to deploy")])
    settings = ds.load_splunk_config(layout.root, config_file, app_config.app.id, overrides, transport)
    token = ds.splunk_token()
    redact.add(token)
    searches = saved_searches(queries, app_config, hunting_specs(config, "sigma/targets.yml"))
    desired = ds.desired_objects(searches)
    client = ds.SplunkClient(settings, token, transport, policy, sleep, warn)
    title = f"plan for Splunk {client.url} app {settings['app']} ({len(desired)} saved searches in the repository):"
    try:
        return _run(title, client, desired, ds.normalize, lambda d: parse_owner(d) is not None, apply, prune,
                    redact, out)
    except DeployError as e:
        raise DeployError(f"{e}; nothing was changed") from None


def deploy_sentinel(layout: Layout, apply: bool, prune: bool, config_file: str, transport: TransportOptions,
                    redact: Redactor, out: Callable[[str], None] = print, warn: Callable[[str], None] = _stderr,
                    sleep=None, policy: RetryPolicy = RetryPolicy(), credential=None) -> bool:
    from . import sentinel as dsn
    from . import sentinel_hunting as dsh
    from dac.artifacts.sentinel_analytics import API_VERSION, alert_rules
    from dac.artifacts.sentinel_ids import parse_owner
    from dac.artifacts.sentinel_config import load_analytics_config
    from dac.artifacts.sentinel_files import hunting_documents
    queries, config = _compiled(layout)
    settings = dsn.load_sentinel_config(layout.root, config_file, transport)
    analytics = load_analytics_config(layout)
    rules = alert_rules(queries, analytics, config)
    hunting = dsh.desired_objects([(stem, arm) for stem, _, arm in hunting_documents(queries, analytics)])
    too_long = [r for r in rules if len(r.arm_properties.get("query", "")) > SENTINEL_QUERY_LIMIT]
    if too_long:
        raise DeployError("cannot deploy: " + "; ".join(
            f"{r.file_stem} has a {len(r.arm_properties['query'])}-character query (Sentinel's limit is "
            f"{SENTINEL_QUERY_LIMIT})" for r in too_long) + "; nothing was changed")
    desired = dsn.desired_objects(rules)
    scope = dsn.arm_scope(settings.get("arm_endpoint", dsn.DEFAULT_ARM))
    token = dsn.arm_token(credential or dsn.make_credential(), scope)
    redact.add(token)
    ok = True
    for ws in settings["workspaces"]:
        where = (f"Sentinel workspace {ws['workspace']} (subscription {ws['subscription_id']}, "
                 f"resource group {ws['resource_group']}")
        try:
            client = dsn.SentinelClient(settings, ws, token, API_VERSION, transport, policy, sleep, warn)
            ok = _run(f"plan for {where}; {len(desired)} analytics rules in the repository):", client, desired,
                      dsn.normalize, lambda d: parse_owner(d) is not None, apply, prune, redact, out) and ok
        except DeployError as e:
            # this workspace is unreachable or refused us: report it and go on with the others
            out(f"error: workspace {ws['workspace']}: {redact(str(e))}; nothing was changed there")
            ok = False
            continue
        try:
            searches = dsh.SavedSearchClient(settings, ws, token, dsh.API_VERSION, transport, policy, sleep, warn)
            ok = _run(f"plan for {where}; {len(hunting)} hunting queries in the repository):", searches, hunting,
                      dsn.normalize, dsh.is_owned, apply, prune, redact, out) and ok
        except DeployError as e:
            out(f"error: workspace {ws['workspace']}: hunting queries: {redact(str(e))}; no hunting query was changed there")
            ok = False
    return ok
