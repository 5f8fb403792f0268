"""YAML parsed by libyaml where PyYAML has it (several times faster than the pure-Python parser).

A document libyaml refuses is parsed again by the pure-Python parser, so an error carries the
same message and line as yaml.safe_load's.
"""
from __future__ import annotations

import yaml

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    """yaml.safe_load, by libyaml where available."""
    try:
        return yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError:
        return yaml.safe_load(text)


def compose_yaml(text: str):
    """yaml.compose (the nodes, for line numbers), by libyaml where available."""
    try:
        return yaml.compose(text, Loader=SAFE_LOADER)
    except yaml.YAMLError:
        return yaml.compose(text)
