"""Conversion targets: a pySigma backend plus one pipeline file from sigma/pipelines/ each.

A target supports a rule when its pipeline sets the `source` state for the rule's log source
(the table for KQL, the base search for SPL). The fields a target maps are the keys of the
pipeline's `field_name_mapping` items that apply to the rule: anything else is unmapped.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.backends.kusto import KustoBackend
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation

from dac.core.fast_yaml import load_yaml
from dac.core.problems import DacError, Problem
from dac.core.repo import Layout
from dac.rules.files import check_input_file
from .splunk_backend import DacSplunkBackend



BACKENDS = {"kusto": (KustoBackend, "kql"), "splunk": (DacSplunkBackend, "spl")}


@dataclass
class Scope:
    """What a target's pipeline says about one rule, before conversion."""
    supported: bool
    field_map: dict[str, str]          # Sigma field -> target column
    state: dict[str, Any]


@dataclass
class Target:
    name: str
    backend_id: str
    pipeline_file: str                 # repository-relative
    pipeline_dict: dict
    siem: str
    format: str | None = None          # native log format replayed by `dac test`
    _backend: Any = field(default=None, repr=False)
    _scope_pipeline: Any = field(default=None, repr=False)

    @property
    def language(self) -> str:
        return BACKENDS[self.backend_id][1]

    def new_pipeline(self) -> ProcessingPipeline:
        return ProcessingPipeline.from_dict(copy.deepcopy(self.pipeline_dict))

    @property
    def backend(self):
        """One backend per target, reused: pySigma resets pipeline state for every rule."""
        if self._backend is None:
            self._backend = BACKENDS[self.backend_id][0](self.new_pipeline())
        return self._backend

    @property
    def scope_pipeline(self) -> ProcessingPipeline:
        """One pipeline per target for scoping, reused: apply() resets its state for every rule
        (building it anew per rule was a quarter of conversion time: from_dict, Jinja templates)."""
        if self._scope_pipeline is None:
            self._scope_pipeline = self.new_pipeline()
        return self._scope_pipeline

    def scope(self, rule) -> Scope:
        pipeline = self.scope_pipeline
        pipeline.apply(copy.deepcopy(rule))
        field_map: dict[str, str] = {}
        for item, applied in zip(pipeline.items, pipeline.applied):
            if applied and isinstance(item.transformation, FieldMappingTransformation):
                for source, target in item.transformation.mapping.items():
                    field_map[source] = target if isinstance(target, str) else target[0]
        return Scope("source" in pipeline.state, field_map, dict(pipeline.state))


def load_targets(layout: Layout) -> tuple[dict[str, Target], dict]:
    """Targets by name, and the raw config (for the hunting section)."""
    rel = layout.rel(layout.targets_file)
    if unsafe := check_input_file(layout, layout.targets_file):
        raise DacError([unsafe])
    try:
        config = load_yaml(layout.targets_file.read_text(encoding="utf-8"))
    except OSError as e:
        raise DacError([Problem(rel, None, f"cannot read targets file: {e}")])
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DacError([Problem(rel, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}")])
    if not isinstance(config, dict) or not isinstance(config.get("targets"), dict) or not config["targets"]:
        raise DacError([Problem(rel, None, "targets file must have a non-empty `targets` mapping")])
    targets, problems = {}, []
    for name, spec in config["targets"].items():
        if not isinstance(spec, dict) or spec.get("backend") not in BACKENDS or "pipeline" not in spec:
            problems.append(Problem(rel, None, f"target {name!r} needs `backend` (one of {sorted(BACKENDS)}) and `pipeline`"))
            continue
        pipeline_path = layout.sigma / spec["pipeline"]
        prel = layout.rel(pipeline_path)
        if unsafe := check_input_file(layout, pipeline_path):
            problems.append(unsafe)
            continue
        try:
            pipeline_dict = load_yaml(pipeline_path.read_text(encoding="utf-8"))
            pipeline_dict.setdefault("vars", {}).update(spec.get("vars") or {})
            ProcessingPipeline.from_dict(copy.deepcopy(pipeline_dict))   # validate now, fail early
        except OSError as e:
            problems.append(Problem(prel, None, f"cannot read pipeline of target {name!r}: {e}"))
            continue
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problems.append(Problem(prel, mark.line + 1 if mark else None, f"malformed YAML: {getattr(e, 'problem', e)}"))
            continue
        except (SigmaError, AttributeError, TypeError) as e:
            problems.append(Problem(prel, None, f"invalid pySigma pipeline: {e}"))
            continue
        targets[name] = Target(name, spec["backend"], prel, pipeline_dict, spec.get("siem", name), spec.get("format"))
    if problems:
        raise DacError(problems)
    return targets, config
