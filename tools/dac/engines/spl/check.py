"""Offline structural checker for generated Splunk SPL.

Not a parser or an interpreter: it checks what breaks a search before Splunk runs it (unbalanced
quotes and brackets, unknown commands and eval functions, regular expressions that do not compile)
and that every search names its data (index=/sourcetype=) instead of scanning all indexes.
"""
from __future__ import annotations

import re
import warnings
from bisect import bisect_right
from dataclasses import dataclass

from .pcre import pcre_to_python


@dataclass(frozen=True)
class SplProblem:
    message: str      # one clear sentence
    line: int         # 1-based line in the query text
    column: int       # 1-based


# Commands that may follow a '|'. Command names are case-insensitive in Splunk; kept lowercase here.
KNOWN_COMMANDS: frozenset[str] = frozenset("""
    abstract accum addcoltotals addinfo addtotals analyzefields anomalies anomalousvalue
    anomalydetection append appendcols appendpipe arules associate autoregress bin bucket
    bucketdir chart cluster cofilter collect concurrency contingency convert correlate datamodel
    dbinspect dedup delete delta diff erex eval eventcount eventstats extract fieldformat fields
    fieldsummary filldown fillnull findtypes foreach format from gauge gentimes geom geostats head
    highlight history iconify inputcsv inputlookup iplocation join kmeans kv kvform loadjob
    localize localop lookup makecontinuous makemv makeresults map mcollect metadata metasearch
    meventcollect mpreview msearch mstats multikv multisearch mvcombine mvexpand nomv outlier
    outputcsv outputlookup outputtext overlap pivot predict rangemap rare redistribute regex
    reltime rename replace require rest return reverse rex rtorder run savedsearch script scrub
    search searchtxn selfjoin sendalert sendemail set setfields sichart sirare sistats
    sitimechart sitop sort spath stats strcat streamstats table tags tail timechart timewrap
    tojson top transaction transpose trendline tscollect tstats typeahead typelearner typer union
    uniq untable walklex where x11 xmlkv xmlunescape xpath xyseries
""".split())

# Functions of eval/where expressions. Evaluation expressions are case-sensitive, so no lowercasing.
EVAL_FUNCTIONS: frozenset[str] = frozenset("""
    abs acos acosh asin asinh atan atan2 atanh avg bit_and bit_not bit_or bit_shift_left
    bit_shift_right bit_xor case ceil ceiling cidrmatch coalesce commands cos cosh exact exp
    false floor hypot if in ipmask isbool isint isnotnull isnull isnum isstr json_append
    json_array json_array_to_mv json_delete json_entries json_extend json_extract
    json_extract_exact json_has_key_exact json_keys json_object json_set json_set_exact
    json_valid len like ln log lookup lower ltrim match max md5 min mv_to_json_array mvappend
    mvcount mvdedup mvfilter mvfind mvindex mvjoin mvmap mvrange mvsort mvzip now null nullif pi
    pow printf random relative_time replace round rtrim searchmatch sha1 sha256 sha512 sigfig
    sin sinh spath split sqrt strftime strptime substr sum tan tanh time tonumber tostring trim
    true typeof upper urldecode validate
""".split())

# Commands that can open a search after a leading '|' (they produce events instead of filtering them).
_GENERATING = frozenset("""
    datamodel dbinspect eventcount inputcsv inputlookup loadjob makeresults metadata mstats
    multisearch rest savedsearch tstats
""".split())
_NEEDS_SCOPE = frozenset({"tstats", "mstats"})         # these still have to say which data they read
_EXPRESSION_COMMANDS = frozenset({"eval", "where", "fieldformat"})
_REGEX_ARGUMENT = {"match": 1, "replace": 1, "mvfind": 1}    # function -> index of its regex argument
_OPERATORS = frozenset({"AND", "OR", "NOT", "XOR", "IN", "LIKE"})  # `NOT (`, `x IN (` are not calls

_HIDE = "\0"    # stands in for the characters of strings and macros in the masked copy of the query
_BASE_SCOPE = re.compile(r"(?<![\w.])(?:index|sourcetype)\s*(?:=|\s+IN\s*\()", re.I)
_TSTATS_SCOPE = re.compile(r"(?<![\w.])(?:datamodel|index)\s*(?:=|\s+IN\s*\()", re.I)
_COMMAND = re.compile(r"[A-Za-z_]\w*")
_CALL = re.compile(r"(?<![\w.$'])([A-Za-z_]\w*)\s*\(")
_MASKED_STRING = r'"[^"]*"'      # in the masked copy a string is a quote, hidden characters, a quote
_REX_TOKEN = re.compile(rf'\s*(?:([A-Za-z_][\w.]*)\s*=\s*({_MASKED_STRING}|[^\s"]+)|({_MASKED_STRING})|(\S+))')
_REGEX_ARGS = re.compile(rf'\s*(?:[A-Za-z_][\w.]*\s*!?=\s*)?(?:({_MASKED_STRING})|(.*\S))?\s*$', re.S)
_STRING = re.compile(r'"((?:\\.|[^"\\])*)"', re.S)
_SED = re.compile(r"s/((?:\\.|[^\\/])*)/(?:\\.|[^\\/])*/([0-9]*g?)|y/(?:\\.|[^\\/])*/(?:\\.|[^\\/])*/", re.S)


def check_spl(text: str) -> list[SplProblem]:
    """Problems found in one SPL query, in text order; an empty list means structurally valid."""
    return _Checker(text).run()


class _Checker:
    def __init__(self, text: str):
        self.text = text
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.problems: list[tuple[int, str]] = []

    def report(self, pos: int, message: str) -> None:
        self.problems.append((pos, message))

    def run(self) -> list[SplProblem]:
        self.masked = self._mask()
        self.pairs = self._match_brackets()
        # After a lexical error nothing downstream can be located reliably, so stop there.
        if not self.problems:
            self._query(0, len(self.text), subsearch=False)
        result = []
        for pos, message in sorted(set(self.problems)):
            line = bisect_right(self.line_starts, pos)
            result.append(SplProblem(message, line, pos - self.line_starts[line - 1] + 1))
        return result

    # --- lexical layer: strings, macros, comments, square brackets -------------------------------

    def _mask(self) -> str:
        """Copy of the text with the insides of strings and macros hidden and comments blanked, so
        that '|', brackets and parentheses in them are never taken for structure."""
        t, out, i = self.text, list(self.text), 0
        while i < len(t):
            if t[i] == '"':
                j = i + 1
                while j < len(t) and t[j] != '"':
                    j += 2 if t[j] == "\\" else 1      # \" and \\ do not end the string
                if j >= len(t):
                    self.report(i, "unclosed double quote")
                out[i + 1:j] = _HIDE * (min(j, len(t)) - i - 1)
                i = j + 1
            elif t.startswith("```", i):               # ```comment```
                j = t.find("```", i + 3)
                if j < 0:
                    self.report(i, "unclosed ``` comment")
                    j = len(t)
                out[i:j + 3] = " " * (min(j + 3, len(t)) - i)
                i = j + 3
            elif t[i] == "`":                          # `macro(args)`
                j = t.find("`", i + 1)
                if j < 0:
                    self.report(i, "unclosed backtick macro")
                    j = len(t)
                out[i + 1:j] = _HIDE * (j - i - 1)
                i = j + 1
            else:
                i += 1
        return "".join(out)

    def _match_brackets(self) -> dict[int, int]:
        """Position of each '[' mapped to its ']'; every unquoted square bracket delimits a subsearch."""
        pairs, stack = {}, []
        for i, c in enumerate(self.masked):
            if c == "[":
                stack.append(i)
            elif c == "]":
                if stack:
                    pairs[stack.pop()] = i
                else:
                    self.report(i, "unmatched ']'")
        for i in stack:
            self.report(i, "unclosed '[' (subsearch)")
        return pairs

    # --- pipeline layer ---------------------------------------------------------------------------

    def _split(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Stages of the pipeline in text[lo:hi], split on '|' outside strings, macros and subsearches."""
        stages, start, i = [], lo, lo
        while i < hi:
            c = self.masked[i]
            if c == "[" and i in self.pairs:
                i = self.pairs[i]
            elif c == "|":
                stages.append((start, i))
                start = i + 1
            i += 1
        stages.append((start, hi))
        return stages

    def _query(self, lo: int, hi: int, subsearch: bool) -> None:
        what = "subsearch" if subsearch else "query"
        stages = self._split(lo, hi)
        first_text = self.masked[stages[0][0]:stages[0][1]]
        if not first_text.strip():
            if len(stages) == 1:
                self.report(lo, f"{what} is empty")
                return
            # A leading '|': the first command has to generate events itself.
            self._stage(*stages[1], role="generating", what=what)
            rest = stages[2:]
        else:
            self._stage(*stages[0], role="base", what=what)
            rest = stages[1:]
        for start, end in rest:
            self._stage(start, end, role="command", what=what)

    def _stage(self, start: int, end: int, role: str, what: str) -> None:
        # Subsearches are checked on their own; in this stage only their brackets remain.
        sm = list(self.masked[start:end])
        i = start
        while i < end:
            if self.masked[i] == "[" and i in self.pairs:
                close = self.pairs[i]
                self._query(i + 1, close, subsearch=True)
                sm[i + 1 - start:close - start] = _HIDE * (close - i - 1)
                i = close
            i += 1
        sm = "".join(sm)

        body = len(sm) - len(sm.lstrip())
        if body == len(sm):
            self.report(start - 1, "empty pipeline stage: '|' is not followed by a command")
            return
        head = start + body
        missing_base = f"{what} does not start with an explicit base search (index=/sourcetype=)"
        m = _COMMAND.match(sm, body)
        name = m.group() if m else ""
        if role == "base":
            args = sm[m.end():] if name.lower() == "search" else sm[body:]
            if not _BASE_SCOPE.search(args):
                self.report(head, missing_base)
        elif role == "generating":
            if name.lower() not in _GENERATING:
                self.report(head, f"{missing_base}: '| {name or sm[body]}' cannot begin a search")
            elif name.lower() in _NEEDS_SCOPE and not _TSTATS_SCOPE.search(sm, m.end()):
                self.report(head, f"{missing_base}: '{name}' names no datamodel= or index=")
        elif sm[body] == "`":
            pass                                # a macro stage expands to unknown SPL: accept it
        elif not name:
            self.report(head, f"pipeline stage starts with {self.text[head]!r} instead of a command name")
        elif name.lower() not in KNOWN_COMMANDS:
            self.report(head, f"unknown SPL command '{name}'")

        command = name.lower() if role != "base" else "search"
        if command in _EXPRESSION_COMMANDS:
            sm = self._hide_field_names(sm, start)
        self._check_parentheses(sm, start)
        if command in _EXPRESSION_COMMANDS:
            self._check_expression(sm, start)
        elif command == "rex":
            self._check_rex(sm, start, m.end())
        elif command == "regex":
            self._check_regex_command(sm, start, m.end())

    # --- stage contents ---------------------------------------------------------------------------

    def _hide_field_names(self, sm: str, start: int) -> str:
        """In eval/where, 'single quotes' delimit field names, which may hold parentheses."""
        out, i = list(sm), 0
        while (i := sm.find("'", i)) >= 0:
            j = sm.find("'", i + 1)
            if j < 0:
                self.report(start + i, "unclosed single quote around a field name")
                j = len(sm)                     # its rest is the field name, not structure
            out[i + 1:j] = _HIDE * (j - i - 1)
            i = j + 1
        return "".join(out)

    def _check_parentheses(self, sm: str, start: int) -> None:
        stack = []
        for i, c in enumerate(sm):
            if c == "(":
                stack.append(i)
            elif c == ")":
                if stack:
                    stack.pop()
                else:
                    self.report(start + i, "unmatched ')'")
        for i in stack:
            self.report(start + i, "unclosed '('")

    def _check_expression(self, sm: str, start: int) -> None:
        for m in _CALL.finditer(sm):
            name = m.group(1)
            if name in _OPERATORS:
                continue
            if name not in EVAL_FUNCTIONS:
                self.report(start + m.start(1), f"unknown eval function '{name}'")
            elif name in _REGEX_ARGUMENT:
                args = _arguments(sm, m.end() - 1)
                if len(args) > _REGEX_ARGUMENT[name]:
                    a, b = args[_REGEX_ARGUMENT[name]]
                    literal = sm[a:b].strip()
                    if re.fullmatch(_MASKED_STRING, literal):   # a field or expression is not checkable
                        pos = start + a + sm[a:b].index('"')
                        self._check_regex(pos, _spl_string(self.text, pos), f"{name}()")

    def _check_rex(self, sm: str, start: int, i: int) -> None:
        pattern, sed = None, False
        for m in _REX_TOKEN.finditer(sm, i):
            key, value, string = m.group(1), m.group(2), m.group(3)
            if key and key.lower() == "mode" and value.lower() == "sed":
                sed = True
            elif string and pattern is None:
                pattern = start + m.start(3)
        if pattern is None:
            self.report(start + i, "rex has no quoted regular expression")
            return
        expression = _spl_string(self.text, pattern)
        if not sed:
            self._check_regex(pattern, expression, "rex")
            return
        m = _SED.fullmatch(expression)
        if not m:
            self.report(pattern, f'rex mode=sed expression "{expression}" is not of the form '
                                 "s/regex/replacement/flags or y/from/to/")
        elif m.group(1) is not None:
            self._check_regex(pattern, m.group(1), "rex mode=sed")

    def _check_regex_command(self, sm: str, start: int, i: int) -> None:
        m = _REGEX_ARGS.match(sm, i)
        if m.group(1):
            pos = start + m.start(1)
            self._check_regex(pos, _spl_string(self.text, pos), "regex")
        elif m.group(2):
            self._check_regex(start + m.start(2), self.text[start + m.start(2):start + m.end(2)], "regex")
        else:
            self.report(start + i, "regex command has no pattern")

    def _check_regex(self, pos: int, pattern: str, where: str) -> None:
        python = pcre_to_python(pattern)
        if python is None:
            return                              # PCRE-only syntax: Python cannot judge it
        try:
            with warnings.catch_warnings():     # e.g. "possible nested set" for POSIX classes
                warnings.simplefilter("ignore")
                re.compile(python)
        except re.error as e:
            self.report(pos, f'{where} regular expression "{pattern}" does not compile: {e.msg}')


def _arguments(sm: str, open_paren: int) -> list[tuple[int, int]]:
    """Spans of the top-level arguments of the call whose '(' is at open_paren; [] if it never closes."""
    args, depth, start = [], 0, open_paren + 1
    for i in range(open_paren + 1, len(sm)):
        c = sm[i]
        if c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif c in ",)" and not depth:
            args.append((start, i))
            start = i + 1
            if c == ")":
                return args
    return []


def _spl_string(text: str, quote: int) -> str:
    """Value of the SPL string literal opening at `quote`: \\\\ is a backslash and \\" a quote;
    every other backslash is kept, for the regex engine."""
    m = _STRING.match(text, quote)
    return re.sub(r'\\([\\"])', r"\1", m.group(1))
