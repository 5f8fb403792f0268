"""savedsearches.conf against the savedsearches.conf.spec of the Splunk version the app targets,
written from that spec: every key is one the spec defines (or, with Enterprise Security, one
ES's own savedsearches.conf.spec adds), every value has the spec's form, the cron schedule is
valid, and the dispatch window of each scheduled search leaves no gap between two runs.

Only the keys a detection app can set are listed; a key outside the list is reported, so a new
key has to be checked against the spec before the generator may write it.
"""
from __future__ import annotations

import re
from datetime import datetime

SPLUNK_VERSION = "9.4"        # Splunk Enterprise / Splunk Cloud Platform 9.4 savedsearches.conf.spec

_BOOL = re.compile(r"^(0|1|true|false|t|f|yes|no)$", re.IGNORECASE)
_INT = re.compile(r"^\d+$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# time modifiers: now, an epoch, or [+-]<n><unit>[@<snap>] (s, m, h, d, w, mon, q, y)
_UNIT = r"(s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|week|weeks|mon|month|months|q|qtr|qtrs|quarter|quarters|y|yr|yrs|year|years)"
_TIME = re.compile(rf"^(now|\d+|([+-]\d*{_UNIT})?(@{_UNIT}\d*)?)$")
_PERIOD = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

CORE_KEYS = {
    "description": lambda v: True,
    "search": lambda v: bool(v.strip()),
    "disabled": _BOOL.match,
    "enableSched": _BOOL.match,
    "cron_schedule": lambda v: cron_error(v) is None,
    "schedule_window": lambda v: v == "auto" or bool(_INT.match(v)),
    "schedule_priority": lambda v: v in ("default", "higher", "highest"),
    "dispatch.earliest_time": _TIME.match,
    "dispatch.latest_time": _TIME.match,
    "counttype": lambda v: v in ("number of events", "number of hosts", "number of sources", "custom", "always"),
    "relation": lambda v: v in ("greater than", "less than", "equal to", "not equal to", "drops by", "rises by"),
    "quantity": _NUMBER.match,
    "alert_condition": lambda v: bool(v.strip()),
    "alert.track": lambda v: v == "auto" or bool(_BOOL.match(v)),
    "alert.severity": lambda v: v in ("1", "2", "3", "4", "5", "6"),
    "alert.digest_mode": _BOOL.match,
    "alert.suppress": _BOOL.match,
    "alert.suppress.fields": lambda v: all(f.strip() for f in v.split(",")),
    "alert.suppress.period": _PERIOD.match,
    "alert.expires": lambda v: bool(re.fullmatch(r"\d+[smhdp]?", v)),
}
# Enterprise Security's savedsearches.conf.spec (correlation searches, notable and risk actions)
ES_KEYS = {
    "action.correlationsearch.enabled": _BOOL.match,
    "action.correlationsearch.label": lambda v: bool(v.strip()),
    "action.correlationsearch.annotations": lambda v: v.startswith("{"),
    "action.notable": _BOOL.match,
    "action.notable.param.rule_title": lambda v: bool(v.strip()),
    "action.notable.param.rule_description": lambda v: bool(v.strip()),
    "action.notable.param.security_domain": lambda v: v in ("access", "endpoint", "network", "threat", "identity", "audit"),
    "action.notable.param.severity": lambda v: v in ("informational", "low", "medium", "high", "critical"),
    "action.risk": _BOOL.match,
    "action.risk.param._risk": lambda v: v.startswith("["),
    "action.risk.param._risk_message": lambda v: bool(v.strip()),
}


def cron_error(expression: str) -> str | None:
    """Why a cron_schedule is not a valid five-field cron expression, or None."""
    from croniter import croniter
    if len(expression.split()) != 5:
        return f"{expression!r} must have 5 fields (minute hour day month weekday)"
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None


def cron_interval_seconds(expression: str) -> int:
    """The longest gap between two runs of the schedule over a year (from a fixed start)."""
    from croniter import croniter
    it = croniter(expression, datetime(2026, 1, 1))
    previous, longest = it.get_next(datetime), 0
    for _ in range(600):
        current = it.get_next(datetime)
        longest = max(longest, int((current - previous).total_seconds()))
        previous = current
    return longest


def relative_seconds(value: str) -> int | None:
    """-20m@m -> -1200 (the snap ignored: it moves the edge by less than one unit); now -> 0."""
    if value == "now":
        return 0
    match = re.fullmatch(r"([+-])(\d*)([a-z]+)(@.*)?", value)
    if not match:
        return None
    unit = match.group(3)
    seconds = next((s for u, s in (("mon", 2592000), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("w", 604800))
                    if unit.startswith(u)), None)
    if seconds is None:
        return None
    amount = int(match.group(2) or 1) * seconds
    return -amount if match.group(1) == "-" else amount


def stanza_problems(name: str, settings: dict[str, str], es_enabled: bool) -> list[str]:
    problems = []
    allowed = {**CORE_KEYS, **(ES_KEYS if es_enabled else {})}
    for key, value in settings.items():
        check = allowed.get(key)
        if check is None:
            where = "" if es_enabled or key not in ES_KEYS else " (an Enterprise Security key, and ES is off)"
            problems.append(f"[{name}] {key}: not a key of savedsearches.conf.spec {SPLUNK_VERSION}{where}")
        elif not check(value):
            problems.append(f"[{name}] {key} = {value!r}: not a value the spec allows")
    if "search" not in settings:
        problems.append(f"[{name}] has no search")
    if _BOOL.match(settings.get("enableSched", "0")) and settings.get("enableSched", "0").lower() in ("1", "true", "t", "yes"):
        problems += _schedule_problems(name, settings)
    return problems


def _schedule_problems(name: str, s: dict[str, str]) -> list[str]:
    cron = s.get("cron_schedule")
    if not cron or cron_error(cron):
        return [f"[{name}] a scheduled search needs a valid cron_schedule"]
    earliest, latest = relative_seconds(s.get("dispatch.earliest_time", "")), relative_seconds(s.get("dispatch.latest_time", "now"))
    if earliest is None or latest is None:
        return [f"[{name}] dispatch.earliest_time/latest_time must be relative times for a scheduled alert"]
    problems = []
    window, interval = latest - earliest, cron_interval_seconds(cron)
    if latest > 0 or earliest >= latest:
        problems.append(f"[{name}] dispatch window {s.get('dispatch.earliest_time')}..{s.get('dispatch.latest_time')} is empty or in the future")
    elif window < interval:
        problems.append(f"[{name}] dispatch window of {window}s is shorter than the {interval}s between runs: events fall in the gap")
    overlap = window - interval
    period = _PERIOD.match(s.get("alert.suppress.period", ""))
    if overlap > 0 and not (s.get("alert.suppress", "0") in ("1", "true") and period
                            and int(period.group(1)) * _SECONDS[period.group(2)] >= overlap):
        problems.append(f"[{name}] windows overlap by {overlap}s but suppression does not cover the overlap: repeated alerts")
    return problems


def conf_problems(conf: dict[str, dict[str, str]], es_enabled: bool) -> list[str]:
    """Every problem of a parsed savedsearches.conf (dac.artifacts.splunk_conf.parse_conf)."""
    return [p for name, settings in conf.items() for p in stanza_problems(name, settings, es_enabled)]
