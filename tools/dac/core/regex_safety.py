"""Regex safety: what a rule's regular expression costs and where it means something different.

A rule's regex runs in three engines: PCRE in Splunk (`regex`, `match`), RE2 in Sentinel (KQL
`matches regex`) and Python's `re` in replay. PCRE and Python backtrack, so a pattern such as
`(a+)+$` takes time exponential in the input on a line that almost matches; one such rule stalls a
search head (and hung `dac test`). RE2 does not backtrack, but refuses what needs backtracking.

This module reads the pattern with Python's own parser (re._parser, the sre_parse of older
versions) and walks the tree. It reports:

- catastrophic backtracking (error): a repeat that can iterate many times whose body can match
  the same text in more than one way, i.e.
    * the body can match the empty string: `(a*)*`, `(a?b?)+`;
    * a variable-length repeat inside it can hand characters to what follows it (the rest of
      the body, or the next iteration): `(a+)+`, `(\\w+\\w)+`, `(.*,)*`; not `(\\w+\\.)+`,
      where the `.` after `\\w+` can only be a dot;
    * two alternatives can match the same text: `(a|a)*`, `(\\w|\\d)+`, `(ab|a.)+`.
  The analysis errs towards refusing (first-character sets over a probe alphabet): it can refuse
  a pattern that is in fact safe. Rewrite with a character class, an anchor, or by removing the
  nesting. It is a heuristic: replay also runs regexes under a time budget (dac.core.regex_budget).
- constructs whose meaning differs between the engines (error): backreferences, lookahead and
  lookbehind, atomic groups and possessive quantifiers, conditionals (none of these exist in
  RE2), `\\Z` (end of string in Python, end or before a final newline in PCRE, unknown to RE2),
  `(?<name>` / `(?'name'` named groups (not Python before 3.12) and the inline flags x, a, L, u
  (RE2 knows i, m, s, U only).
"""
from __future__ import annotations

import re
import re._constants as C
import re._parser as P
from dataclasses import dataclass
from functools import lru_cache

# Characters the sets are computed over: ASCII and a few non-ASCII representatives (a letter,
# a digit, a space and a line separator outside ASCII), enough to tell classes apart.
ALPHABET = frozenset(map(chr, range(128))) | frozenset("é\u0663\u00a0\u2028Ω")
MANY = 10          # a repeat that may iterate at least this often is "unbounded" for this analysis
ZERO_WIDTH = (C.AT, C.ASSERT, C.ASSERT_NOT)


@dataclass(frozen=True)
class RegexFinding:
    kind: str          # "catastrophic" or "portability"
    message: str


@lru_cache(maxsize=64)
def _category(category) -> frozenset:
    probe = {C.CATEGORY_DIGIT: r"\d", C.CATEGORY_NOT_DIGIT: r"\D", C.CATEGORY_SPACE: r"\s",
             C.CATEGORY_NOT_SPACE: r"\S", C.CATEGORY_WORD: r"\w", C.CATEGORY_NOT_WORD: r"\W"}.get(category)
    if probe is None:
        return ALPHABET
    pattern = re.compile(probe)
    return frozenset(c for c in ALPHABET if pattern.match(c))


def _fold(chars: set, ignore_case: bool) -> frozenset:
    if not ignore_case:
        return frozenset(chars)
    return frozenset(chars | {c.lower() for c in chars} | {c.upper() for c in chars if len(c.upper()) == 1})


class _Analyzer:
    def __init__(self, flags: int):
        self.ignore_case = bool(flags & re.IGNORECASE)
        self.findings: list[RegexFinding] = []

    # --- what a piece of pattern can start with, and whether it can match nothing -------------

    def char_set(self, op, av) -> frozenset | None:
        """The characters a single-character item matches; None for anything longer."""
        if op == C.LITERAL:
            return _fold({chr(av)}, self.ignore_case)
        if op == C.NOT_LITERAL:
            return ALPHABET - _fold({chr(av)}, self.ignore_case)
        if op == C.ANY:
            return ALPHABET
        if op == C.CATEGORY:
            return _category(av)
        if op == C.IN:
            chars, negate = set(), False
            for item_op, item_av in av:
                if item_op == C.NEGATE:
                    negate = True
                elif item_op == C.LITERAL:
                    chars.add(chr(item_av))
                elif item_op == C.RANGE:
                    chars |= {c for c in ALPHABET if item_av[0] <= ord(c) <= item_av[1]}
                elif item_op == C.CATEGORY:
                    chars |= _category(item_av)
                else:
                    chars |= ALPHABET
            chars = _fold(chars, self.ignore_case)
            return ALPHABET - chars if negate else frozenset(chars)
        return None

    def first(self, seq) -> tuple[frozenset, bool]:
        """(characters the sequence can start with, whether it can match the empty string)."""
        chars: set = set()
        for op, av in seq:
            item_chars, nullable = self.first_item(op, av)
            chars |= item_chars
            if not nullable:
                return frozenset(chars), False
        return frozenset(chars), True

    def first_item(self, op, av) -> tuple[frozenset, bool]:
        single = self.char_set(op, av)
        if single is not None:
            return single, False
        if op in ZERO_WIDTH:
            return frozenset(), True
        if op == C.SUBPATTERN:
            return self.first(av[3])
        if op == C.ATOMIC_GROUP:
            return self.first(av)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            chars, nullable = self.first(av[2])
            return chars, nullable or av[0] == 0
        if op == C.BRANCH:
            results = [self.first(branch) for branch in av[1]]
            return frozenset().union(*(r[0] for r in results)), any(r[1] for r in results)
        if op == C.GROUPREF_EXISTS:
            yes, no = self.first(av[1]), self.first(av[2] or [])
            return yes[0] | no[0], yes[1] or no[1]
        return ALPHABET, True       # a backreference: anything, possibly nothing

    def flat(self, seq) -> list[frozenset] | None:
        """A fixed sequence of single characters (through plain groups), or None."""
        out = []
        for op, av in seq:
            if op == C.ASSERT and len(av[1]) == 0:      # the marker _keep_alternatives adds
                continue
            single = self.char_set(op, av)
            if single is not None:
                out.append(single)
            elif op == C.SUBPATTERN and (inner := self.flat(av[3])) is not None:
                out += inner
            else:
                return None
        return out

    def ambiguous(self, branches) -> bool:
        """Whether two of the alternatives can match the same text.

        Fixed single-character branches are ambiguous when they have the same length and overlap
        at every position (a branch that is a prefix of a longer one is not ambiguous by itself:
        the next character decides). Plain literal branches (the usual word lists) are compared
        through a dictionary, so a list of thousands of words costs linear time; branches with a
        class or a repeat are compared with the others one by one (first characters for repeats).
        """
        flats = [self.flat(b) for b in branches]
        literal: dict[tuple, int] = {}
        wide, other = [], []
        for i, f in enumerate(flats):
            if f is None:
                other.append(i)
            elif all(len(chars) <= 2 for chars in f):      # a literal, maybe case-folded
                key = tuple(f)
                if key in literal:
                    return True
                literal[key] = i
            else:
                wide.append(i)
        for i in wide:
            for j in range(len(branches)):
                if j != i and flats[j] is not None and len(flats[j]) == len(flats[i]) \
                        and all(x & y for x, y in zip(flats[i], flats[j])):
                    return True
        if other:
            firsts = [self.first(b)[0] for b in branches]
            for i in other:
                if any(j != i and firsts[i] & firsts[j] for j in range(len(branches))):
                    return True
        return False

    # --- the walk -------------------------------------------------------------------------------

    def walk(self, seq, follow: frozenset, loops: int) -> None:
        """`follow`: what may come right after `seq`; `loops`: enclosing many-times repeats."""
        for i, (op, av) in enumerate(seq):
            rest_chars, rest_nullable = self.first(seq[i + 1:])
            after = rest_chars | (follow if rest_nullable else frozenset())
            if op in (C.MAX_REPEAT, C.MIN_REPEAT):
                low, high, body = av
                body_chars, body_nullable = self.first(body)
                variable = high != low and high > 1
                if loops and variable and body_chars & after:
                    self.report("catastrophic", f"a repeat inside a repeat can match the same characters as what "
                                                f"follows it ({self._show(body_chars & after)}): exponential backtracking")
                many = high >= MANY
                if many and body_nullable:
                    self.report("catastrophic", "a repeated group can match the empty string (like (a*)*): "
                                                "exponential backtracking")
                self.walk(body, body_chars | after, loops + many)
            elif op == C.POSSESSIVE_REPEAT:
                self.walk(av[2], frozenset(), 0)            # no backtracking into it
            elif op == C.SUBPATTERN:
                self.walk(av[3], after, loops)
            elif op == C.ATOMIC_GROUP:
                self.walk(av, frozenset(), 0)
            elif op == C.BRANCH:
                branches = av[1]
                if loops and self.ambiguous(branches):
                    self.report("catastrophic", "alternatives under a repeat can match the same text "
                                                "(like (a|a)*): exponential backtracking")
                for branch in branches:
                    self.walk(branch, after, loops)
            elif op in (C.ASSERT, C.ASSERT_NOT):
                self.walk(av[1], frozenset(), 0)
            elif op == C.GROUPREF_EXISTS:
                self.walk(av[1], after, loops)
                self.walk(av[2] or [], after, loops)

    def portability(self, seq) -> None:
        for op, av in seq:
            if op == C.GROUPREF or op == C.GROUPREF_EXISTS:
                self.report("portability", "backreferences and conditionals do not exist in RE2 (KQL)")
            elif op in (C.ASSERT, C.ASSERT_NOT):
                self.report("portability", "lookaround (lookahead/lookbehind) does not exist in RE2 (KQL)")
            elif op in (C.POSSESSIVE_REPEAT, C.ATOMIC_GROUP):
                self.report("portability", "possessive quantifiers and atomic groups do not exist in RE2 (KQL)")
            elif op == C.AT and av == C.AT_END_STRING:
                self.report("portability", "\\Z is the end of the string in Python but also matches before a final "
                                           "newline in PCRE (Splunk), and RE2 (KQL) has no \\Z: use $")
            for child in _children(op, av):
                self.portability(child)

    def report(self, kind: str, message: str) -> None:
        finding = RegexFinding(kind, message)
        if finding not in self.findings:
            self.findings.append(finding)

    @staticmethod
    def _show(chars: frozenset) -> str:
        sample = sorted(c for c in chars if c.isprintable() and c.isascii())[:5]
        return "e.g. " + " ".join(repr(c) for c in sample) if sample else "the same characters"


def _children(op, av):
    if op == C.SUBPATTERN:
        yield av[3]
    elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
        yield av[2]
    elif op == C.ATOMIC_GROUP:
        yield av
    elif op == C.BRANCH:
        yield from av[1]
    elif op in (C.ASSERT, C.ASSERT_NOT):
        yield av[1]
    elif op == C.GROUPREF_EXISTS:
        yield av[1]
        if av[2]:
            yield av[2]


def _keep_alternatives(pattern: str) -> str:
    """The pattern with an empty lookahead after every `|` outside a class.

    Python's parser turns `(a|b)` into the class `[ab]` and `(ab|ac)` into `a[bc]`: right for
    Python, which then does not backtrack, but PCRE (Splunk) keeps the alternation and backtracks
    over it. The empty lookahead (zero width, never fails) stops both rewrites, so the tree keeps
    the alternatives as written."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if char == "]" and not class_start:
                in_class = False
            class_start = class_start and char == "^"
        elif char == "[":
            in_class, class_start = True, True
        elif char == "|":
            char = "|(?=)"
        out.append(char)
        i += 1
    return "".join(out)


_NAMED_GROUP = re.compile(r"(?<!\\)\((\?<(?![=!])|\?')")
_INLINE_FLAGS = re.compile(r"(?<!\\)\(\?([a-zA-Z]*)[-:)]")


def analyze(pattern: str, flags: int = 0) -> list[RegexFinding]:
    """Every finding for a pattern Python can compile (an invalid one is reported elsewhere)."""
    analyzer = _Analyzer(flags)
    if _NAMED_GROUP.search(pattern):
        analyzer.report("portability", "(?<name>…) / (?'name'…) named groups are PCRE syntax Python's re does "
                                       "not read before 3.12: use (?P<name>…)")
    for letters in _INLINE_FLAGS.findall(pattern):
        odd = sorted(set(letters) - set("ims"))
        if odd:
            analyzer.report("portability", f"inline flag(s) {''.join(odd)} are not the same in PCRE, RE2 and Python "
                                           "(use only i, m, s)")
    try:
        tree = P.parse(pattern, flags)
    except re.error:
        return analyzer.findings
    analyzer.ignore_case = analyzer.ignore_case or bool(tree.state.flags & re.IGNORECASE)
    try:
        as_written = P.parse(_keep_alternatives(pattern), flags)
    except re.error:
        as_written = tree
    analyzer.walk(list(as_written), frozenset(), 0)
    analyzer.portability(list(tree))
    return analyzer.findings


def catastrophic(pattern: str, flags: int = 0) -> bool:
    return any(f.kind == "catastrophic" for f in analyze(pattern, flags))
