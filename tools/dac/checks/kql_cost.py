"""Query cost as a checked property, KQL side (`kql-regex-prefilter`): every `matches regex` and
`contains` on a column must come after a cheap term filter on the same column (`has`,
`has_any`, `has_all`, `hasprefix`, `startswith`, `in`, `in~`, `==`, `=~`) that every row reaching
it has passed, i.e. earlier in the same conjunction: same parentheses or an enclosing group,
with no `or` between, or in an earlier `where` of the same tabular expression. Kusto then runs
the scan only on the rows its term index let through.

A violation names its clause (`Col matches regex "…"` as written) and the line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

CHECK = "kql-regex-prefilter"
CHEAP = {"has", "has_any", "has_all", "has_cs", "hasprefix", "startswith", "startswith_cs", "in", "in~", "==", "=~"}
# commands that pass on (a subset of) the rows of the previous where: its filters still apply
_PASS_THROUGH = {"where", "extend", "project"}

_TOKEN = re.compile(r'''
    (?P<str>@"[^"]*"|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
  | (?P<op>!in~|in~|!has|!contains|==|=~|!=|!~|<=|>=)
  | (?P<word>[A-Za-z_][\w]*)
  | (?P<sym>\S)
''', re.X)


@dataclass(frozen=True)
class CostViolation:
    check: str
    clause: str
    message: str
    line: int


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _matching_open(tokens, close: int) -> int:
    depth = 0
    for j in range(close, -1, -1):
        depth += {")": 1, "(": -1}.get(tokens[j][0], 0)
        if depth == 0:
            return j
    return -1


def _group_guards(tokens, open_: int, close: int, column: str) -> bool:
    """Whether a group that is one conjunct (no `or` at its top, not negated) has a cheap filter
    on `column` among its own conjuncts."""
    if open_ > 0 and tokens[open_ - 1][0] in ("not", "!"):
        return False
    i = close - 1
    while i > open_:
        t = tokens[i][0]
        if t == ")":
            j = _matching_open(tokens, i)
            if _group_guards(tokens, j, i, column):
                return True
            i = j - 1
            continue
        if t in ("or", "|", ";"):
            return False
        if t == column and tokens[i + 1][0] in CHEAP:
            # only if nothing at this group's top is an `or`: check the rest before answering
            return not any(tokens[k][0] == "or" and _depth(tokens, open_, k) == 1 for k in range(open_ + 1, close))
        i -= 1
    return False


def _depth(tokens, start: int, at: int) -> int:
    return sum({"(": 1, ")": -1}.get(tokens[k][0], 0) for k in range(start, at))


def _guarded(tokens: list[tuple[str, int, int]], at: int, column: str) -> bool:
    """Whether a cheap filter on `column` precedes token `at` in the same conjunction."""
    depth, i = 0, at - 1
    while i >= 0:
        t = tokens[i][0]
        if t == ")" and depth == 0:
            j = _matching_open(tokens, i)
            if j >= 0 and _group_guards(tokens, j, i, column):
                return True
            i = j - 1 if j >= 0 else -1         # an earlier group that is not all conjuncts: skipped
            continue
        if t == ")":
            depth += 1
        elif t == "(":
            depth = depth - 1 if depth else 0       # at 0: leaving a group, whose context still applies
        elif depth == 0:
            if t == "or" or t == ";":
                return False
            if t == "|":
                if i + 1 < len(tokens) and tokens[i + 1][0] in _PASS_THROUGH:
                    i -= 1
                    continue
                return False
            if t == column and i + 1 < at and tokens[i + 1][0] in CHEAP:
                return True
        i -= 1
    return False


def check_kql_cost(text: str) -> list[CostViolation]:
    tokens = _tokens(text)
    found = []
    for k, (t, start, _) in enumerate(tokens):
        if k == 0:
            continue
        if t == "matches" and k + 2 < len(tokens) and tokens[k + 1][0] == "regex":
            end = tokens[k + 2][2]
        elif t == "contains":
            end = tokens[k + 1][2] if k + 1 < len(tokens) else tokens[k][2]
        else:
            continue
        column, col_start = tokens[k - 1][0], tokens[k - 1][1]
        if not re.fullmatch(r"[A-Za-z_]\w*", column) or _guarded(tokens, k - 1, column):
            continue
        clause = text[col_start:end]
        found.append(CostViolation(CHECK, clause, (
            f"{CHECK}: `{clause}` has no cheap filter (has, startswith, in, ==) on {column} before it "
            "in the same conjunction: Kusto scans every row with it"), text.count("\n", 0, col_start) + 1))
    return found
