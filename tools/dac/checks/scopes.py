"""The pipelines against sigma/datasources/event_scopes.yml: for every target that names a log
format, each log source declared for that format must be one its pipeline supports, and every value
the declaration lists (syscalls, event names, Event IDs, ActionTypes) must appear in the SPL/KQL the
pipeline puts in front of a rule of that log source (its `base`, `source` and `source_filter`).
So the replay (which reads the declaration) and the SIEM (which runs the pipeline) cannot drift
apart without `dac validate` failing."""
from __future__ import annotations

import re

from sigma.rule import SigmaRule

from dac.compile.targets import Target
from dac.core.problems import Problem
from dac.logs.scopes import SCOPES_FILE, EventScopes

_STATE_KEYS = ("base", "source", "source_filter")
SERVICES = {"auditd", "tracee"}          # log sources that are Sigma services, not categories


def _probe(name: str) -> SigmaRule:
    kind = "service" if name in SERVICES else "category"
    return SigmaRule.from_dict({"title": f"scope probe {name}", "status": "test",
                                "logsource": {"product": "linux", kind: name},
                                "detection": {"probe": {"probe": "probe"}, "condition": "probe"}})


def _mentions(text: str, value: str) -> bool:
    return re.search(r"(?<![\w])" + re.escape(value) + r"(?![\w])", text, re.IGNORECASE) is not None


def check_pipeline_scopes(targets: dict[str, Target], scopes: EventScopes) -> list[Problem]:
    problems = []
    for target in sorted(targets.values(), key=lambda t: t.name):
        if not target.format:
            continue
        declared = scopes.sources(target.format)
        if not declared:
            problems.append(Problem(SCOPES_FILE, None, f"no log source declared for format {target.format!r} "
                                                       f"(target {target.name})"))
        for source, scope in sorted(declared.items()):
            state = target.scope(_probe(source))
            if not state.supported:
                problems.append(Problem(target.pipeline_file, None, f"declares no `source` for log source {source!r}, "
                                                                    f"which {SCOPES_FILE} lists for {target.format}"))
                continue
            text = "\n".join(str(state.state.get(k) or "") for k in _STATE_KEYS)
            for field, values in scope.declared_values().items():
                for value in values:
                    if not _mentions(text, value):
                        problems.append(Problem(target.pipeline_file, None,
                                                f"{source}: {field} value {value!r} of {SCOPES_FILE} does not appear "
                                                f"in the pipeline's base search/filter"))
    return problems
