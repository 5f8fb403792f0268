"""The term filters dac puts in front of KQL regexes: derived from the regex alone, and never
changing a result (a value the regex matches always passes its filter, on the KQL engine)."""
from __future__ import annotations

import re
from datetime import datetime

import pytest

from dac.engines.kql.engine import KqlEngine
from dac.compile.kql_prefilter import add_prefilters, prefilter


@pytest.mark.parametrize("regex, expected", [
    (r"^/proc/[0-9]+(/task/[0-9]+)?/mem$", 'C startswith "/proc/" and C has "mem"'),   # literal prefix, then a term
    (r"^/proc/[0-9]+/(maps?|environ)$", 'C startswith "/proc/" and C has_any ("environ", "map", "maps")'),
    (r"^/usr/bin/(perl|python3) (/usr/sbin/needrestart|/usr/share/apport)$",      # rare terms beat a common one
     'C startswith "/usr/bin/" and C has_any ("apport", "needrestart")'),
    (r"/proc/([^/ ]+|\$\([^)]*\))/(mem|maps?)", 'C has "proc"'),              # bounded by "/" both sides
    (r"(\bgcore\b|\bgenerate-core-file\b|\bdump\s+memory\b)", 'C has_any ("gcore", "generate", "memory")'),  # the longest term per branch
    (r"(?i)\s(memory|all)(\s|$)", 'C has_any ("all", "memory")'),
    (r"/lldb(-[0-9]+)?$", 'C has "lldb"'),                                    # an optional "-…" still ends the term
    (r"(?i)(^|[^A-Za-z0-9])mimipenguin([^A-Za-z0-9]|$)", 'C has "mimipenguin"'),
    (r"mimipenguin", None),                 # a substring may sit inside a longer term: no `has`
    (r"/maps?x", None),                     # "map" is not a term of "mapsx"
    (r"(\brw-p\b|\b(heap|stack)\b)", None),  # "rw" is shorter than Kusto's indexed terms
    (r"(?i)\b(sshd|kwallet[a-z0-9-]*)\b", None),  # one branch without a whole term: no filter
])
def test_prefilter_is_derived_from_the_regex(regex, expected):
    assert prefilter("C", regex) == expected


def test_generated_kql_gets_the_filter_in_front_of_the_regex():
    kql = 'T\n| where FolderPath matches regex "^/proc/[0-9]+/mem$" or Cmd matches regex "\\\\bgcore\\\\b"'
    assert add_prefilters(kql) == (
        'T\n| where (FolderPath startswith "/proc/" and FolderPath has "mem" and FolderPath matches regex "^/proc/[0-9]+/mem$") '
        'or (Cmd has "gcore" and Cmd matches regex "\\\\bgcore\\\\b")')


VALUES = ["/proc/12/mem", "/proc/12/task/3/mem", "/PROC/12/mem", "x/proc/12/mem", "gcore 12", "gdb -batch -ex gcore",
          "gdb -ex 'dump memory /tmp/m 0x1 0x2'", "generate-core-file", "xgcore", "gcore_x", "python laZagne.py all",
          "lazagne_memory", "/opt/mimipenguin/mimipenguin.sh", "runmimipenguin", "mimipenguin2", "/usr/bin/lldb-15",
          "/usr/bin/lldb", "/usr/bin/lldbx", "cat /proc/$(pidof sshd)/maps", "", "dump\tmemory", "ALL memory",
          "/proc/1/map", "/proc/1/maps", "/proc/1/environ", "/proc/1/mapsx", "/proc/1/stat"]
REGEXES = [r"^/proc/[0-9]+(/task/[0-9]+)?/mem$", r"^/proc/[0-9]+(/task/[0-9]+)?/(maps?|environ)$", r"(\bgcore\b|\bgenerate-core-file\b|\bdump\s+memory\b)",
           r"(^|[\s/])gcore\s+[0-9]+", r"(?i)\s(memory|all)(\s|$)", r"/lldb(-[0-9]+)?$",
           r"(?i)(^|[^A-Za-z0-9])mimipenguin([^A-Za-z0-9]|$)", r"(?i)(^|[^A-Za-z0-9])lazagne([^A-Za-z0-9]|$)",
           r"/proc/([^/ ]+|\$\([^)]*\)|`[^`]*`)/(task/[^/ ]+/)?(mem|maps?|environ)"]


@pytest.mark.parametrize("regex", REGEXES)
def test_the_filter_never_changes_what_the_regex_finds(regex):
    engine = KqlEngine({"T": [("Timestamp", "datetime"), ("Id", "long"), ("C", "string")]}, datetime(2026, 11, 22))
    engine.load("T", [{"Timestamp": "2026-11-21T00:00:00Z", "Id": i, "C": v} for i, v in enumerate(VALUES)])
    literal = regex.replace("\\", "\\\\").replace('"', '\\"')
    plain = engine.run(f'T | where C matches regex "{literal}" | project Id')
    filtered = engine.run(add_prefilters(f'T | where C matches regex "{literal}" | project Id'))
    assert "matches regex" in add_prefilters(f'T | where C matches regex "{literal}"')
    assert sorted(r["Id"] for r in filtered) == sorted(r["Id"] for r in plain)
    assert sorted(r["Id"] for r in plain) == [i for i, v in enumerate(VALUES) if re.search(regex, v)]
