"""Deployment configuration files (splunk/deploy.yml, sentinel/deploy.yml): loaded and checked
before anything is contacted, with errors that name the file and line. Secrets never live here:
tokens come from the environment (SPLUNK_TOKEN) or azure-identity."""
from __future__ import annotations

from pathlib import Path

import yaml

from .problems import DacError, Problem

SECRET_KEYS = {"token", "password", "secret", "client_secret", "splunk_token", "key"}


def load_config(path: Path, rel: str, required: dict[str, type], optional: dict[str, type]) -> dict:
    if not path.is_file():
        raise DacError([Problem(rel, None, "deployment config not found (copy the example in the README)")])
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DacError([Problem(rel, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}")])
    if not isinstance(data, dict):
        raise DacError([Problem(rel, None, "expected a mapping of settings")])
    lines = {k: n for n, l in enumerate(text.splitlines(), 1) for k in data if l.lstrip().startswith(f"{k}:")}
    problems = []
    for key in data:
        if key.lower() in SECRET_KEYS:
            problems.append(Problem(rel, lines.get(key), f"`{key}` must not be in a file: secrets come from the environment"))
        elif key not in required and key not in optional:
            problems.append(Problem(rel, lines.get(key), f"unknown setting `{key}` (known: {', '.join(sorted({**required, **optional}))})"))
    for key, kind in required.items():
        if data.get(key) in (None, ""):
            problems.append(Problem(rel, None, f"missing required setting `{key}`"))
    for key, kind in {**required, **optional}.items():
        if data.get(key) is not None and not isinstance(data[key], kind):
            problems.append(Problem(rel, lines.get(key), f"`{key}` must be a {kind.__name__}"))
    if problems:
        raise DacError(problems)
    return data
