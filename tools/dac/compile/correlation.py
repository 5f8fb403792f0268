"""Sigma correlation rules compiled by dac itself, for KQL and SPL.

The Kusto backend compiles no correlation, and the Splunk backend's `multisearch` form cannot
wrap our auditd searches (they assemble records with `stats`, which multisearch refuses), nor
does it know temporal_ordered. So every correlation is generated here from the base rules'
converted queries, with sliding windows where the language allows:

* SPL: branches joined with `append`, then `streamstats` per group (time_window for
  event_count/value_count/temporal; a chained `last()` per step for temporal_ordered).
* KQL: `let` per base rule; temporal_ordered chains inner joins with `between`;
  event_count/value_count/temporal use `summarize … by bin(Timestamp, span)` (fixed windows).

Group-by fields come from the target pipeline's field mapping. A few fields are derived from
another field with a regex because no log carries them (DERIVED_FIELDS).
"""
from __future__ import annotations

from dataclasses import dataclass

from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationType

# field -> (source field, regex with one capture group on the source column)
DERIVED_FIELDS = {"TargetProcessId": ("TargetFilename", r"^/proc/([0-9]+)/"),
                  # the process whose environment a command line names (a variable or glob names none)
                  "CommandLineTargetProcessId": ("CommandLine", r"/proc/([0-9]+)/(?:task/[0-9]+/)?environ")}

_OPS = {
    SigmaCorrelationConditionOperator.LT: "<", SigmaCorrelationConditionOperator.LTE: "<=",
    SigmaCorrelationConditionOperator.GT: ">", SigmaCorrelationConditionOperator.GTE: ">=",
    SigmaCorrelationConditionOperator.EQ: "==",
}


class CorrelationError(ValueError):
    pass


@dataclass
class Branch:
    """One base rule on one target: its name, full converted query and field mapping."""
    name: str
    query: str
    field_map: dict[str, str]


def _group_columns(fields: list[str], branch: Branch) -> list[tuple[str, str | None, str | None]]:
    """(output name, column, derivation regex) per group-by field; raises on unmapped ones."""
    columns = []
    for f in fields:
        if f in branch.field_map:
            columns.append((f, branch.field_map[f], None))
        elif f in DERIVED_FIELDS and DERIVED_FIELDS[f][0] in branch.field_map:
            source, regex = DERIVED_FIELDS[f]
            columns.append((f, branch.field_map[source], regex))
        else:
            raise CorrelationError(f"group-by field {f!r} is not mapped for rule {branch.name!r}")
    return columns


def _condition(corr) -> tuple[str, int, str | None]:
    cond = corr.condition
    if cond is None:       # temporal types without condition: all rules must occur
        return ">=", len(corr.rules), None
    return _OPS[cond.op], int(cond.count), getattr(cond, "fieldref", None)


# ---------------------------------------------------------------- KQL

def _value_columns(group: list[str], value_field: str | None) -> list[str]:
    """The fields a branch outputs: the group-by fields, then a value_count's field under its
    Sigma name (mapped, or derived from another column)."""
    return group + ([value_field] if value_field and value_field not in group else [])


def _kql_branch(branch: Branch, group: list[str], value_field: str | None) -> str:
    table, _, rest = branch.query.partition("\n")
    lines = [f"let {branch.name} = {table}", rest]
    columns = _group_columns(_value_columns(group, value_field), branch)
    for out, column, regex in columns:
        if regex:
            lines.append(f'| extend {out} = extract(@"{regex}", 1, {column})')
            if out == value_field and value_field not in group:
                lines.append(f"| where isnotempty({out})")      # no value (dcount would count "")
        elif out != column:
            lines.append(f"| extend {out} = {column}")
    keep = ["Timestamp"] + [out for out, _, _ in columns]
    lines.append(f'| project {", ".join(keep)}, EventType = "{branch.name}";')
    return "\n".join(lines)


def kql_correlation(corr, name: str, branches: list[Branch]) -> str:
    group = list(corr.group_by or [])
    span = f"{corr.timespan.seconds}s"
    ctype = corr.type
    value_field = corr.condition.fieldref if ctype == SigmaCorrelationType.VALUE_COUNT else None
    parts = [_kql_branch(b, group, value_field) for b in branches]
    keys = ", ".join(group)
    if ctype == SigmaCorrelationType.TEMPORAL_ORDERED:
        first = branches[0].name
        body = [f"{first}", f"| project-rename {first}_Time = Timestamp"]
        for prev, nxt in zip(branches, branches[1:]):
            body += [f"| join kind=inner ({nxt.name} | project-rename {nxt.name}_Time = Timestamp) on {keys}",
                     f"| where {nxt.name}_Time between ({prev.name}_Time .. ({first}_Time + {span}))"]
        last = branches[-1].name
        body += [f"| summarize FirstTime = min({first}_Time), LastTime = max({last}_Time), Sequences = count() by {keys}",
                 f'| extend Detection = "{name}"']
        return "\n".join(parts + body)
    union = f"union {', '.join(b.name for b in branches)}"
    op, count, _ = _condition(corr)
    if ctype == SigmaCorrelationType.EVENT_COUNT:
        agg, metric = "EventCount = count()", "EventCount"
    elif ctype == SigmaCorrelationType.VALUE_COUNT:
        agg, metric = f"ValueCount = dcount({value_field})", "ValueCount"
    elif ctype == SigmaCorrelationType.TEMPORAL:
        agg, metric = "RuleCount = dcount(EventType)", "RuleCount"
    else:
        raise CorrelationError(f"correlation type {ctype} is not supported for KQL")
    body = [union,
            f"| summarize {agg}, FirstTime = min(Timestamp), LastTime = max(Timestamp) by bin(Timestamp, {span}), {keys}",
            f"| where {metric} {op} {count}",
            f'| extend Detection = "{name}"']
    return "\n".join(parts + body)


# ---------------------------------------------------------------- SPL

def _spl_branch(branch: Branch, group: list[str], first: bool, value_field: str | None = None) -> str:
    columns = _group_columns(_value_columns(group, value_field), branch)
    tail = [f'| eval event_type="{branch.name}"']
    for out, column, regex in columns:
        if regex:
            named = regex.replace("(", f"(?<{out}>", 1)
            tail.append(f'| rex field={column} "{named}"')
        elif out != column:
            tail.append(f"| eval {out}={column}")
    body = branch.query + "\n" + "\n".join(tail)
    if first:
        return body
    return "| append [ search " + body.replace("\n", "\n    ") + " ]"


def spl_correlation(corr, name: str, branches: list[Branch]) -> str:
    group = list(corr.group_by or [])
    keys = " ".join(group)
    span = corr.timespan.seconds
    ctype = corr.type
    value_field = corr.condition.fieldref if ctype == SigmaCorrelationType.VALUE_COUNT else None
    parts = [_spl_branch(b, group, i == 0, value_field) for i, b in enumerate(branches)]
    if ctype == SigmaCorrelationType.TEMPORAL_ORDERED:
        steps = [b.name for b in branches]
        order = ", ".join(f'event_type="{s}", {i}' for i, s in enumerate(steps, 1))
        body = [f"| eval event_order=case({order})",
                f"| sort 0 {keys} _time event_order",
                "| eval chain_1=if(event_order=1, _time, null())"]
        # chain_k carries the start time of a sequence that has reached step k in order
        for k in range(2, len(steps) + 1):
            body += [f"| streamstats last(chain_{k - 1}) as reached_{k - 1} by {keys}",
                     f"| eval chain_{k}=if(event_order={k} AND _time - reached_{k - 1} <= {span}, reached_{k - 1}, null())"]
        body += [f"| where isnotnull(chain_{len(steps)})",
                 f"| stats min(chain_{len(steps)}) as firstTime max(_time) as lastTime count as sequences by {keys}",
                 f'| eval detection="{name}"']
        return "\n".join(parts + body)
    op, count, _ = _condition(corr)
    op = "=" if op == "==" else op
    if ctype == SigmaCorrelationType.EVENT_COUNT:
        stat, metric = "count", "event_count"
    elif ctype == SigmaCorrelationType.VALUE_COUNT:
        stat, metric = f"dc({value_field})", "value_count"       # each branch outputs it under this name
    elif ctype == SigmaCorrelationType.TEMPORAL:
        stat, metric = "dc(event_type)", "event_type_count"
    else:
        raise CorrelationError(f"correlation type {ctype} is not supported for SPL")
    body = ["| sort 0 _time",
            f"| streamstats time_window={span}s {stat} as {metric} by {keys}",
            f"| where {metric} {op} {count}",
            f'| eval detection="{name}"']
    return "\n".join(parts + body)
