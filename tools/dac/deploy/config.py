"""Deployment configuration files (splunk/deploy.yml, sentinel/deploy.yml): loaded and checked
before anything is contacted, with errors that name the file and line. Secrets never live here:
tokens come from the environment (SPLUNK_TOKEN) or azure-identity.

Every value is checked, not only its type: a timeout of 0 or -1, a port out of range or a host
with a path in it would otherwise reach the HTTP library and end in a traceback (or a request to
somewhere else than intended).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from dac.core.problems import DacError, Problem

SECRET_KEYS = {"token", "password", "secret", "client_secret", "splunk_token", "key"}
MAX_TIMEOUT = 600          # seconds; longer than this is a typo, not a slow Splunk
HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")

Check = Callable[[object], "str | None"]      # returns what is wrong, or None


@dataclass(frozen=True)
class Setting:
    kind: type | tuple[type, ...]
    check: Check | None = None


@dataclass
class LoadedConfig:
    values: dict
    lines: dict[str, int]        # setting -> line; "workspaces[2]" -> line of that item
    rel: str

    def problem(self, key: str, message: str) -> Problem:
        return Problem(self.rel, self.lines.get(key), message)


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:
        return "number"
    return " or ".join({"str": "string", "int": "whole number", "float": "number", "bool": "true/false",
                        "list": "list", "dict": "mapping"}.get(k.__name__, k.__name__) for k in kinds)


def is_kind(value, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:       # YAML `true` is not a port number
        return False
    return isinstance(value, kinds)


def check_timeout(value) -> str | None:
    if not 0 < value <= MAX_TIMEOUT:
        return f"must be more than 0 and at most {MAX_TIMEOUT} seconds (got {value})"
    return None


def check_port(value) -> str | None:
    return None if 1 <= value <= 65535 else f"must be a TCP port, 1 to 65535 (got {value})"


def check_host(value) -> str | None:
    if not HOST_RE.match(value) or len(value) > 253:
        return "must be a bare host name or IPv4 address (no scheme, port, path, user or spaces)"
    return None


def check_app(value) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", value) else \
        "must be a Splunk app id (letters, digits, _, ., -)"


def check_scheme(value) -> str | None:
    return None if value in ("https", "http") else "must be https (or http, which also needs --allow-insecure-transport)"


def _lines(node) -> dict[str, int]:
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode):
            lines[key.value] = key.start_mark.line + 1
            if isinstance(value, yaml.SequenceNode):
                for i, item in enumerate(value.value, 1):
                    lines[f"{key.value}[{i}]"] = item.start_mark.line + 1
                    for sub_key, _ in (item.value if isinstance(item, yaml.MappingNode) else []):
                        lines[f"{key.value}[{i}].{sub_key.value}"] = sub_key.start_mark.line + 1
    return lines


def load_config(root: Path, rel: str, required: dict[str, Setting], optional: dict[str, Setting]) -> LoadedConfig:
    path = root / rel
    if path.is_symlink() or path.exists():
        if not path.is_file():
            raise DacError([Problem(rel, None, "deployment config is not a regular file")])
    else:
        raise DacError([Problem(rel, None, "deployment config not found (copy the example in the README)")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DacError([Problem(rel, None, f"cannot read: {getattr(e, 'strerror', None) or e}")])
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DacError([Problem(rel, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}")])
    if not isinstance(data, dict):
        raise DacError([Problem(rel, None, "expected a mapping of settings")])
    config = LoadedConfig(data, _lines(node), rel)
    known = {**required, **optional}
    problems = []
    for key in data:
        if str(key).lower() in SECRET_KEYS:
            problems.append(config.problem(key, f"`{key}` must not be in a file: secrets come from the environment"))
        elif key not in known:
            problems.append(config.problem(key, f"unknown setting `{key}` (known: {', '.join(sorted(known))})"))
    for key in required:
        if data.get(key) in (None, ""):
            problems.append(Problem(rel, None, f"missing required setting `{key}`"))
    for key, setting in known.items():
        value = data.get(key)
        if value is None:
            continue
        if not is_kind(value, setting.kind):
            problems.append(config.problem(key, f"`{key}` must be a {_kind_name(setting.kind)}"))
        elif setting.check and (wrong := setting.check(value)):
            problems.append(config.problem(key, f"`{key}` {wrong}"))
    if problems:
        raise DacError(problems)
    return config


def check_ca_file(root: Path, config: LoadedConfig) -> str | None:
    """The CA bundle, relative to the repository root (or absolute); it must be a readable file."""
    value = config.values.get("ca_file")
    if not value:
        return None
    path = Path(value) if Path(value).is_absolute() else root / value
    if not path.is_file():
        raise DacError([config.problem("ca_file", f"`ca_file` {value!r} is not a file (a PEM CA bundle)")])
    return str(path)
