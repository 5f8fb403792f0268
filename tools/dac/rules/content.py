"""Content hygiene: what dac writes into a SIEM artifact is plain, visible and of a size the SIEM takes.

A rule is text a reviewer reads; what reaches Splunk or Sentinel must be what they read. So:
- no control characters but newline and tab (a NUL ends a C string early in some readers and
  corrupts savedsearches.conf), and no bidirectional overrides or isolates (U+202A-U+202E,
  U+2066-U+2069: "Trojan Source", text that displays differently from what it is);
- sizes each target takes: a Sentinel scheduled rule's query is at most 10,000 characters
  (Microsoft's documented limit); Splunk documents no limit for a saved search, so dac picks a
  sanity limit of 100,000 characters per savedsearches.conf line and .spl file (its largest
  search today is about 12,500), and 2 MB for any generated file;
- a rule file is at most 1 MB (the largest is a few KB); bigger is a mistake or an attack.

Checked twice: on every YAML value of a rule when it is loaded (so the error names the rule file
and line), and on every generated file before anything is written (the second line of defence, for
what comes from other inputs). Messages show a short escaped excerpt, never the whole text.
"""
from __future__ import annotations

import re
import unicodedata

import yaml

from dac.core.problems import Problem

SENTINEL_QUERY_LIMIT = 10_000
SPL_LINE_LIMIT = 100_000
# a guard against runaway output, not a SIEM limit: 500 rules on three Splunk targets write a
# savedsearches.conf of about 4 MB (the auditd searches carry their record-assembly preamble)
ARTIFACT_LIMIT = 8_000_000
RULE_FILE_LIMIT = 1_000_000
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ALLOWED_CONTROLS = frozenset("\n\t")
# the Cc category (C0, DEL, C1) but newline and tab, and the bidi characters: one regex scan
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def excerpt(text: str, limit: int = 60) -> str:
    """A short, escaped, quoted excerpt: control and bidi characters shown as \\uXXXX."""
    shown = "".join(f"\\u{ord(c):04x}" if _bad(c) or c in "\r\n\t" else c for c in text[:limit])
    return repr(shown) + (f"… ({len(text)} characters)" if len(text) > limit else "")


def _bad(char: str) -> bool:
    return char in BIDI or (unicodedata.category(char) == "Cc" and char not in ALLOWED_CONTROLS)


def forbidden(text: str) -> tuple[int, int, str] | None:
    """(line, column, character) of the first forbidden character, or None."""
    match = FORBIDDEN.search(text)
    if match is None:
        return None
    index = match.start()
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1, match.group()


def describe(char: str) -> str:
    kind = "bidirectional override/isolate" if char in BIDI else "control character"
    return f"{kind} U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})"


def check_rule_values(rel: str, node: yaml.Node) -> list[Problem]:
    """Every scalar (keys too) of a rule document, with the line it is on."""
    problems: list[Problem] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.ScalarNode):
            found = forbidden(current.value)
            if found:
                # a block scalar's text starts on the line after its | or >
                line = current.start_mark.line + 1 + (found[0] if current.style in ("|", ">") else 0)
                problems.append(Problem(rel, line, f"value contains a {describe(found[2])}: "
                                                   f"{excerpt(current.value)}; it would reach the SIEM as is"))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.extend((key, value))
    return problems


def check_artifacts(files: dict[str, str], owner_of) -> list[Problem]:
    """Problems in generated files. owner_of(path, line) names the rule behind that line (a
    "file:line" or label), or None."""
    problems = []
    for path, text in files.items():
        def problem(line: int, message: str) -> Problem:
            owner = owner_of(path, line)
            return Problem(path, line, f"{message}" + (f" (from {owner})" if owner else ""))
        found = forbidden(text)
        if found:
            line_text = text.splitlines()[found[0] - 1]
            problems.append(problem(found[0], f"generated text contains a {describe(found[2])}: {excerpt(line_text)}"))
        if len(text) > ARTIFACT_LIMIT:
            problems.append(problem(1, f"generated file is {len(text)} characters (limit {ARTIFACT_LIMIT}): "
                                       f"{excerpt(text)}"))
            continue
        if path.endswith(".kql") and len(text.rstrip("\n")) > SENTINEL_QUERY_LIMIT:
            problems.append(problem(1, f"KQL query is {len(text.rstrip())} characters; Sentinel's limit for a "
                                       f"scheduled rule query is {SENTINEL_QUERY_LIMIT}: {excerpt(text)}"))
        if path.endswith((".spl", "savedsearches.conf")):
            for number, line in enumerate(text.splitlines(), 1):
                if len(line) > SPL_LINE_LIMIT:
                    problems.append(problem(number, f"line is {len(line)} characters (dac's limit for a Splunk "
                                                    f"search is {SPL_LINE_LIMIT}): {excerpt(line)}"))
                    break
    return problems
