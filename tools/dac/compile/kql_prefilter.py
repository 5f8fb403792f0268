"""Cheap term filters in front of every regex of a generated KQL query.

`Col matches regex "R"` makes Kusto scan and run R on every row; `has` and `startswith` use the
column's term index. For each regex this module derives, from R alone, a filter that every
string R matches also passes, and writes `(Col <filter> and Col matches regex "R")`: the result
is the same, the regex only runs where the index says it can match. So a new rule gets its
prefilter without anyone writing it.

What is derived (Kusto terms are maximal runs of ASCII letters and digits, compared without
case; docs: learn.microsoft.com/kusto/query/datatypes-string-operators):
- `^abc…` (a literal prefix after the start anchor): `startswith "abc…"`;
- and a run of letters/digits that every match contains with a non-alphanumeric character
  or the string's edge on both sides (`/proc/` gives the term `proc`, `\\bgcore\\b` gives
  `gcore`): `has "proc"`; for an alternation each branch must give one, and the filter is
  `has_any (…)`.
Nothing is written when no such literal exists (kql_cost then names the clause).
"""
from __future__ import annotations

import re
import string
from re import _constants as C, _parser as P

_ALNUM = set(string.ascii_letters + string.digits)
_MIN_TERM = 3          # Kusto indexes terms of three characters or more
# a single character class item that never matches a letter or digit
_NON_ALNUM_CATEGORIES = {C.CATEGORY_SPACE}


def _never_alnum(op, av) -> bool:
    if op is C.LITERAL:
        return chr(av) not in _ALNUM
    if op is C.IN:
        if any(o is C.NEGATE for o, _ in av):
            # [^A-Za-z0-9…] never matches a letter or digit when it excludes all of them
            excluded = set()
            for o, a in av:
                if o is C.LITERAL:
                    excluded.add(chr(a))
                elif o is C.RANGE:
                    excluded.update(chr(c) for c in range(a[0], a[1] + 1))
            return _ALNUM <= excluded
        for o, a in av:
            if o is C.LITERAL and chr(a) in _ALNUM:
                return False
            if o is C.RANGE and any(chr(c) in _ALNUM for c in range(a[0], a[1] + 1)):
                return False
            if o is C.CATEGORY and a not in _NON_ALNUM_CATEGORIES:
                return False
            if o not in (C.LITERAL, C.RANGE, C.CATEGORY):
                return False
        return True
    return False


def _edges(op, av) -> tuple[bool, bool]:
    """(left, right): whether the item's first / last matched position is guaranteed to be a
    non-alphanumeric character or a string edge (so an adjacent literal run ends a Kusto term)."""
    if op is C.AT:
        if av in (C.AT_BEGINNING, C.AT_BEGINNING_STRING, C.AT_END, C.AT_END_STRING, C.AT_BOUNDARY):
            return True, True       # \b next to a letter or digit means a non-word neighbour
        return False, False
    if _never_alnum(op, av):
        return True, True
    if op is C.MAX_REPEAT or op is C.MIN_REPEAT:
        low, _, inner = av
        if low >= 1 and len(inner) == 1:
            return _edges(*inner[0])
        return False, False
    if op is C.SUBPATTERN:
        return _seq_edges(av[-1])
    if op is C.BRANCH:
        edges = [_seq_edges(b) for b in av[1]]
        return all(e[0] for e in edges), all(e[1] for e in edges)
    return False, False


def _seq_edges(seq) -> tuple[bool, bool]:
    items = list(seq)
    if not items:
        return False, False
    return _edges(*items[0])[0], _edges(*items[-1])[1]


def _optional(op, av, side: int) -> bool:
    """An item that may match nothing, and whose `side` edge is non-alphanumeric when it does."""
    return op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] == 0 and len(av[2]) == 1 and _edges(*av[2][0])[side]


def _after(items, j: int, right: bool) -> bool:
    """Whether the position before items[j] is followed by a non-alphanumeric character or the end."""
    while j < len(items) and _optional(*items[j], 0):
        j += 1
    return right if j == len(items) else _edges(*items[j])[0]


def _before(items, i: int, left: bool) -> bool:
    while i > 0 and _optional(*items[i - 1], 1):
        i -= 1
    return left if i == 0 else _edges(*items[i - 1])[1]


def _optional_letter(items, j: int, right: bool) -> str | None:
    """`x?` of one letter or digit right after a literal run, with a term boundary after it."""
    if j < len(items) and items[j][0] is C.MAX_REPEAT:
        low, high, inner = items[j][1]
        if (low, high) == (0, 1) and len(inner) == 1 and inner[0][0] is C.LITERAL and chr(inner[0][1]) in _ALNUM:
            if _after(items, j + 1, right):
                return chr(inner[0][1])
    return None


def _terms(seq, left: bool, right: bool) -> list[str] | None:
    """Terms of which every match of seq contains at least one; None when there are none.
    left/right: whether what precedes / follows seq is guaranteed non-alphanumeric."""
    items = list(seq)
    best: list[str] | None = None

    def consider(found: list[str]) -> None:
        nonlocal best
        # longer terms are rarer: the candidate whose shortest term is longest, then the fewest terms
        def score(terms: list[str]) -> tuple[int, int]:
            return min(len(t) for t in terms), -len(terms)
        if best is None or score(found) > score(best):
            best = found

    i = 0
    while i < len(items):
        op, av = items[i]
        if op is C.LITERAL:
            j = i
            while j < len(items) and items[j][0] is C.LITERAL:
                j += 1
            text = "".join(chr(a) for _, a in items[i:j])
            before, after = _before(items, i, left), _after(items, j, right)
            for m in re.finditer(r"[A-Za-z0-9]+", text):
                bounded_left = m.start() > 0 or before
                bounded_right = m.end() < len(text) or after
                if bounded_left and bounded_right and len(m[0]) >= _MIN_TERM:
                    consider([m[0].lower()])
                elif bounded_left and m.end() == len(text) and (tail := _optional_letter(items, j, right)):
                    consider(sorted({m[0].lower(), (m[0] + tail).lower()}))       # maps? -> map or maps
            i = j
            continue
        if op is C.SUBPATTERN or op is C.BRANCH:
            before, after = _before(items, i, left), _after(items, i + 1, right)
            branches = av[1] if op is C.BRANCH else [av[-1]]
            if op is C.SUBPATTERN and len(av[-1]) == 1 and av[-1][0][0] is C.BRANCH:
                branches = av[-1][0][1][1]
            found = [_terms(b, before, after) for b in branches]
            if all(f is not None for f in found):
                consider(sorted({t for f in found for t in f}))
        i += 1
    return best


def _prefix(seq) -> tuple[str | None, list]:
    """A literal prefix after `^`, and the items after it."""
    items = list(seq)
    if not items or items[0] != (C.AT, C.AT_BEGINNING):
        return None, items
    text = ""
    for op, av in items[1:]:
        if op is not C.LITERAL:
            break
        text += chr(av)
    return (text, items[1 + len(text):]) if len(text) >= 2 else (None, items)


def prefilter(column: str, regex: str) -> str | None:
    """The cheap KQL predicate on `column` that every value matching `regex` satisfies, or None."""
    try:
        parsed = P.parse(regex)
    except re.error:
        return None
    prefix, rest = _prefix(parsed)
    # after a prefix, a term of the rest narrows further (`startswith "/proc/"` is most of /proc)
    terms = _terms(rest, prefix is not None and prefix[-1] not in _ALNUM, False)
    filters = [f"{column} startswith {_kql_string(prefix)}"] if prefix is not None else []
    if terms is not None and len(terms) == 1:
        filters.append(f"{column} has {_kql_string(terms[0])}")
    elif terms is not None:
        filters.append(f"{column} has_any ({', '.join(_kql_string(t) for t in terms)})")
    return " and ".join(filters) or None


def _kql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# `Col matches regex "…"` as the Kusto backend writes it (a plain string literal, \\ and \" escaped)
_MATCH = re.compile(r'(?P<col>\b[A-Za-z_]\w*) matches regex "(?P<re>(?:\\.|[^"\\])*)"')


def _unescape(literal: str) -> str:
    return re.sub(r'\\(.)', r"\1", literal)


def add_prefilters(kql: str) -> str:
    """Every `Col matches regex "R"` with a derivable filter F becomes `(F and Col matches regex "R")`."""
    def rewrite(m: re.Match) -> str:
        pre = prefilter(m["col"], _unescape(m["re"]))
        return f"({pre} and {m[0]})" if pre else m[0]
    return _MATCH.sub(rewrite, kql)
