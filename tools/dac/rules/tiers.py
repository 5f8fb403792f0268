"""Alert or hunting tier of a rule, decided in one place.

Alert tier (scheduled alert rules in both SIEMs): level high or critical, i.e. credential theft
with high probability. Everything else is a hunting query (a Sentinel hunting query, a Splunk
search without alert action): worth a look, not worth waking someone for.
"""
from __future__ import annotations

ALERT_LEVELS = {"high", "critical"}


def level_of(item) -> str:
    level = item.rule.level
    return str(level.name).lower() if level is not None else "informational"


def is_alert(item) -> bool:
    return level_of(item) in ALERT_LEVELS
