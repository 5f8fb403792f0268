"""sentinel/analytics.yml, the Sentinel settings the Sigma rule does not carry (schedule, entity
mappings, connectors, incident settings, per-rule overrides), read and checked, and the
durations (`5m`, `1h`, `14d`) it is written in."""

from __future__ import annotations

import re

import yaml

from dac.core.fast_yaml import compose_yaml, load_yaml
from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from .sentinel_versions import load_lock





CONFIG_FILE = "sentinel/analytics.yml"
DURATION = re.compile(r"^([1-9][0-9]*)([mhd])$")
DEFAULT_KEYS = ("queryFrequency", "queryPeriod", "triggerOperator", "triggerThreshold", "suppressionEnabled",
                "suppressionDuration", "eventGroupingSettings", "incidentConfiguration", "enabled", "status", "version",
                "dedupByIngestionTime")


SHAPE_KEYS = ("entityMappings", "customDetails", "alertDetailsOverride")
OVERRIDE_KEYS = ("name", "description", "severity") + DEFAULT_KEYS + SHAPE_KEYS
REQUIRED_DEFAULTS = ("queryFrequency", "queryPeriod", "triggerOperator", "triggerThreshold",
                     "suppressionEnabled", "suppressionDuration", "version")


def duration_minutes(value: str) -> int:
    match = DURATION.match(str(value))
    if not match:
        raise ValueError(f"duration {value!r} must be <n>m, <n>h or <n>d")
    return int(match.group(1)) * {"m": 1, "h": 60, "d": 1440}[match.group(2)]


def iso_duration(value: str) -> str:
    """Azure-Sentinel template duration (75m, 1h, 14d) -> ISO 8601 for the API (PT1H15M, PT1H, P14D)."""
    minutes = duration_minutes(value)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


def load_analytics_config(layout: Layout) -> dict | None:
    """sentinel/analytics.yml, or None when the repository has none (then no analytics are built)."""
    path = layout.root / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        config = load_yaml(text)
        lines = _key_lines(compose_yaml(text))
    except OSError as e:
        raise DacError([Problem(CONFIG_FILE, None, f"cannot read: {e}")])
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DacError([Problem(CONFIG_FILE, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}")])
    if not isinstance(config, dict):
        raise DacError([Problem(CONFIG_FILE, 1, "must be a YAML mapping")])
    config["_lines"] = lines
    config["_versions"] = load_lock(layout)
    return config


def _key_lines(node, path: tuple = ()) -> dict[tuple, int]:
    """(key, key, ...) -> 1-based line, for every mapping key of the document."""
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                lines[path + (key.value,)] = key.start_mark.line + 1
                lines.update(_key_lines(value, path + (key.value,)))
    return lines


class AnalyticsConfig:
    """Checked access to sentinel/analytics.yml; every problem is collected."""

    def __init__(self, raw: dict):
        self.raw = raw
        self.lines = raw.get("_lines", {})
        self.problems: list[Problem] = []
        self.defaults = self._mapping("defaults")
        self.connectors = self._mapping("data_connectors")
        self.shapes = self._mapping("shapes")
        self.overrides = self._mapping("overrides")
        for key in raw:
            if key not in ("defaults", "data_connectors", "shapes", "overrides", "_lines", "_versions"):
                self.problem((key,), f"unknown top-level key `{key}` (allowed: defaults, data_connectors, shapes, overrides)")
        for key in REQUIRED_DEFAULTS:
            if key not in self.defaults:
                self.problem(("defaults",), f"defaults needs `{key}`")
        self._check_keys(("defaults",), self.defaults, DEFAULT_KEYS)
        for name, shape in self.shapes.items():
            if not isinstance(shape, dict):
                self.problem(("shapes", name), f"shape {name!r} must be a mapping")
                continue
            self._check_keys(("shapes", name), shape, SHAPE_KEYS)
        for key, override in self.overrides.items():
            if not isinstance(override, dict):
                self.problem(("overrides", str(key)), f"override {key!r} must be a mapping")
                continue
            self._check_keys(("overrides", str(key)), override, OVERRIDE_KEYS)

    def problem(self, path: tuple, message: str) -> None:
        line = None
        for n in range(len(path), 0, -1):
            line = self.lines.get(tuple(str(p) for p in path[:n]))
            if line:
                break
        self.problems.append(Problem(CONFIG_FILE, line, message))

    def _mapping(self, key: str) -> dict:
        value = self.raw.get(key) or {}
        if not isinstance(value, dict):
            self.problem((key,), f"`{key}` must be a mapping")
            return {}
        return value

    def _check_keys(self, path: tuple, mapping: dict, allowed: tuple) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem(path + (key,), f"unknown key `{key}` under {'.'.join(map(str, path))} (allowed: {', '.join(allowed)})")

    def override(self, key: str) -> dict:
        value = self.overrides.get(key)
        return value if isinstance(value, dict) else {}
