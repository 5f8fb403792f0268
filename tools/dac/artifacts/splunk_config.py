"""splunk/app.yml, the Splunk app's settings: label, version, schedule, suppression, Enterprise
Security actions and per-rule overrides, read and checked value by value (a bad value is a Problem
naming its line), before any file of the app is generated."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from dac.core.fast_yaml import compose_yaml, load_yaml
from dac.core.problems import DacError, Problem
from dac.core.repo import Layout





CONFIG_FILE = "splunk/app.yml"


# Sigma level -> alert.severity (savedsearches.conf.spec: 1 debug, 2 info, 3 warn/low,
# 4 error/medium, 5 severe/high, 6 fatal/critical)
SEVERITY = {"informational": "2", "low": "3", "medium": "4", "high": "5", "critical": "6"}
LEVELS = tuple(SEVERITY)
APP_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.{}-]*$")
SPAN_RE = re.compile(r"^\d+[smhd]?$")


# relative time modifiers (-20m@m, now, @d, -1d@d+6h) or epoch seconds; never real-time (rt...)
TIME_RE = re.compile(r"^(?!rt)(now|[+-]?\d*[a-zA-Z]+(@[a-zA-Z]+\d*)?([+-]\d*[a-zA-Z]+)?|@[a-zA-Z]+\d*([+-]\d*[a-zA-Z]+)?|\d+(\.\d+)?)$")
CRON_RE = re.compile(r"^\S+( \S+){4}$")


@dataclass(frozen=True)
class AppInfo:
    id: str
    label: str
    version: str
    author: str
    description: str


@dataclass
class AppConfig:
    """splunk/app.yml, checked. `path` and `lines` (key path -> line) locate problems."""
    app: AppInfo
    schedule: dict[str, str]
    suppress_period: str
    suppress_fields: dict[str, list[str]]          # target name or "default" -> fields
    hunting: dict[str, Any]
    es: dict[str, Any]
    overrides: dict[str, dict[str, Any]]           # lower-case rule id -> override
    path: str = CONFIG_FILE
    lines: dict[tuple, int] = field(default_factory=dict)

    def problem(self, message: str, *key) -> Problem:
        for n in range(len(key), 0, -1):
            if key[:n] in self.lines:
                return Problem(self.path, self.lines[key[:n]], message)
        return Problem(self.path, None, message)


def _node_lines(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                path = prefix + (key.value,)
                lines[path] = key.start_mark.line + 1
                lines.update(_node_lines(value, path))
    return lines


def _str(value) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    return str(value).strip()


class _Checker:
    def __init__(self, path: str, lines: dict[tuple, int]):
        self.path, self.lines, self.problems = path, lines, []

    def add(self, message: str, *key) -> None:
        for n in range(len(key), 0, -1):
            if key[:n] in self.lines:
                self.problems.append(Problem(self.path, self.lines[key[:n]], message))
                return
        self.problems.append(Problem(self.path, None, message))

    def mapping(self, data: dict, key: str, *path) -> dict:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(f"`{'.'.join(path + (key,))}` must be a mapping", *path, key)
            return {}
        return value

    def text(self, data: dict, key: str, *path, pattern: re.Pattern | None = None, what: str = "",
             required: bool = True, default: str | None = None) -> str | None:
        name = ".".join(path + (key,))
        if data.get(key) is None:
            if required and default is None:
                self.add(f"`{name}` is required", *path, key)
            return default
        value = _str(data[key])
        if not value:
            self.add(f"`{name}` must be a non-empty string", *path, key)
            return default
        if pattern and not pattern.match(value):
            self.add(f"`{name}` {value!r} is not {what}", *path, key)
            return default
        return value

    def fields(self, value, *path) -> list[str] | None:
        name = ".".join(path)
        if not isinstance(value, list) or not value:
            self.add(f"`{name}` must be a non-empty list of field names", *path)
            return None
        bad = [f for f in value if not isinstance(f, str) or not FIELD_RE.match(f)]
        if bad:
            self.add(f"`{name}` has invalid field names {bad}", *path)
            return None
        return list(value)

    def field_map(self, value, *path) -> dict[str, list[str]]:
        """A list (same fields for every target) or a mapping target|default -> list."""
        if isinstance(value, list):
            fields = self.fields(value, *path)
            return {"default": fields} if fields else {}
        if not isinstance(value, dict):
            self.add(f"`{'.'.join(path)}` must be a list of fields or a mapping of target -> fields", *path)
            return {}
        result = {}
        for target, fields in value.items():
            checked = self.fields(fields, *path, str(target))
            if checked:
                result[str(target)] = checked
        return result

    def unknown(self, data: dict, allowed: Iterable[str], *path) -> None:
        for key in data:
            if key not in allowed:
                self.add(f"unknown key `{'.'.join(path + (str(key),))}` (allowed: {', '.join(sorted(allowed))})",
                         *path, key)


def _schedule(check: _Checker, data: dict, *path, required: bool = True) -> dict[str, str]:
    schedule = {}
    for key, pattern, what in (("cron_schedule", CRON_RE, "a five-field cron expression"),
                               ("earliest_time", TIME_RE, "a Splunk time modifier"),
                               ("latest_time", TIME_RE, "a Splunk time modifier")):
        value = check.text(data, key, *path, pattern=pattern, what=what, required=required)
        if value is not None:
            schedule[key] = value
    return schedule


def parse_app_config(data: Any, path: str = CONFIG_FILE, lines: dict[tuple, int] | None = None) -> AppConfig:
    """Check splunk/app.yml's content; raise DacError naming every problem."""
    check = _Checker(path, lines or {})
    if not isinstance(data, dict):
        raise DacError([Problem(path, 1, "the Splunk app config must be a YAML mapping")])
    check.unknown(data, ("app", "schedule", "suppress", "hunting", "enterprise_security", "overrides"))

    app = check.mapping(data, "app")
    check.unknown(app, ("id", "label", "version", "author", "description"), "app")
    app_id = check.text(app, "id", "app", pattern=APP_ID_RE,
                        what="an app id (a letter, then letters, digits, _ and -)")
    label = check.text(app, "label", "app")
    if label and not 5 <= len(label) <= 80:
        check.add("`app.label` must be 5 to 80 characters long (AppInspect)", "app", "label")
    version = check.text(app, "version", "app", pattern=SEMVER_RE, what="a semantic version MAJOR.MINOR.PATCH")
    author = check.text(app, "author", "app")
    description = check.text(app, "description", "app")

    schedule = _schedule(check, check.mapping(data, "schedule"), "schedule")
    check.unknown(check.mapping(data, "schedule"), ("cron_schedule", "earliest_time", "latest_time"), "schedule")

    suppress = check.mapping(data, "suppress")
    check.unknown(suppress, ("period", "fields"), "suppress")
    period = check.text(suppress, "period", "suppress", pattern=SPAN_RE, what="a period like 1h")
    fields = check.field_map(suppress.get("fields"), "suppress", "fields")
    if suppress.get("fields") is not None and "default" not in fields:
        check.add("`suppress.fields` needs a `default` entry for targets without their own", "suppress", "fields")

    hunting_data = check.mapping(data, "hunting")
    check.unknown(hunting_data, ("cron_schedule", "latest_time", "level", "suppress"), "hunting")
    hunting = {
        "cron_schedule": check.text(hunting_data, "cron_schedule", "hunting", pattern=CRON_RE,
                                    what="a five-field cron expression", default="7 6 * * *"),
        "latest_time": check.text(hunting_data, "latest_time", "hunting", pattern=TIME_RE,
                                  what="a Splunk time modifier", default="now"),
        "level": check.text(hunting_data, "level", "hunting", pattern=re.compile(f"^({'|'.join(LEVELS)})$"),
                            what=f"a Sigma level ({', '.join(LEVELS)})", default="low"),
    }
    hunting_suppress = check.mapping(hunting_data, "suppress", "hunting")
    check.unknown(hunting_suppress, ("period", "fields"), "hunting", "suppress")
    hunting["period"] = check.text(hunting_suppress, "period", "hunting", "suppress", pattern=SPAN_RE,
                                   what="a period like 24h", default="24h")
    hunting["fields"] = (check.fields(hunting_suppress["fields"], "hunting", "suppress", "fields")
                         if hunting_suppress.get("fields") is not None else ["host", "detection"])

    es_data = check.mapping(data, "enterprise_security")
    check.unknown(es_data, ("enabled", "security_domain", "risk_object_field", "risk_object_type", "risk_score"),
                  "enterprise_security")
    enabled = es_data.get("enabled", False)
    if not isinstance(enabled, bool):
        check.add("`enterprise_security.enabled` must be true or false", "enterprise_security", "enabled")
        enabled = False
    es: dict[str, Any] = {"enabled": enabled}
    es["security_domain"] = check.text(es_data, "security_domain", "enterprise_security", required=enabled,
                                       default=None if enabled else "endpoint")
    es["risk_object_field"] = check.text(es_data, "risk_object_field", "enterprise_security", pattern=FIELD_RE,
                                         what="a field name", required=enabled, default=None if enabled else "host")
    es["risk_object_type"] = check.text(es_data, "risk_object_type", "enterprise_security", required=enabled,
                                        default=None if enabled else "system")
    scores = es_data.get("risk_score")
    es["risk_score"] = {}
    if scores is None:
        if enabled:
            check.add("`enterprise_security.risk_score` (by Sigma level) is required when enabled",
                      "enterprise_security")
    elif not isinstance(scores, dict) or set(scores) != set(LEVELS) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100 for v in scores.values()):
        check.add(f"`enterprise_security.risk_score` must map every Sigma level ({', '.join(LEVELS)}) to an "
                  "integer 0-100", "enterprise_security", "risk_score")
    else:
        es["risk_score"] = {level: int(scores[level]) for level in LEVELS}

    overrides: dict[str, dict[str, Any]] = {}
    raw_overrides = data.get("overrides") or {}
    if not isinstance(raw_overrides, dict):
        check.add("`overrides` must be a mapping of rule id -> settings", "overrides")
        raw_overrides = {}
    for rule_id, override in raw_overrides.items():
        key = ("overrides", rule_id)
        if not isinstance(override, dict):
            check.add(f"override for {rule_id!r} must be a mapping", *key)
            continue
        check.unknown(override, ("cron_schedule", "earliest_time", "latest_time", "suppress", "enterprise_security"), *key)
        entry: dict[str, Any] = {"key": rule_id, "schedule": _schedule(check, override, *key, required=False)}
        osuppress = check.mapping(override, "suppress", *key)
        check.unknown(osuppress, ("period", "fields"), *key, "suppress")
        entry["period"] = check.text(osuppress, "period", *key, "suppress", pattern=SPAN_RE,
                                     what="a period like 1h", required=False)
        entry["fields"] = (check.field_map(osuppress["fields"], *key, "suppress", "fields")
                           if osuppress.get("fields") is not None else {})
        oes = check.mapping(override, "enterprise_security", *key)
        check.unknown(oes, ("risk_object_field", "risk_object_type"), *key, "enterprise_security")
        entry["es"] = {k: v for k, v in (
            ("risk_object_field", check.text(oes, "risk_object_field", *key, "enterprise_security",
                                             pattern=FIELD_RE, what="a field name", required=False)),
            ("risk_object_type", check.text(oes, "risk_object_type", *key, "enterprise_security", required=False)),
        ) if v is not None}
        overrides[str(rule_id).lower()] = entry

    if check.problems:
        raise DacError(check.problems)
    return AppConfig(AppInfo(app_id, label, version, author, " ".join(description.split())),
                     schedule, period, fields, hunting, es, overrides, path, dict(lines or {}))


def config_path(layout: Layout) -> Path:
    return layout.root / CONFIG_FILE


def load_app_config(layout: Layout) -> AppConfig | None:
    """splunk/app.yml, checked; None when the repository has no such file (no Splunk app)."""
    file = config_path(layout)
    rel = layout.rel(file)
    if not file.exists():
        return None
    try:
        text = file.read_text(encoding="utf-8")
        node = compose_yaml(text)
        data = load_yaml(text)
    except OSError as e:
        raise DacError([Problem(rel, None, f"cannot read Splunk app config: {e}")])
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DacError([Problem(rel, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}")])
    return parse_app_config(data, rel, _node_lines(node) if node is not None else {})


def app_dir(layout: Layout, config: AppConfig | None = None) -> Path | None:
    """splunk/<app id>/, the generated app's folder (None without splunk/app.yml)."""
    config = config or load_app_config(layout)
    return layout.root / "splunk" / config.app.id if config else None
