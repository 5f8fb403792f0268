"""The offline SPL checker: each check with a query it rejects and one it accepts."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dac.engines.spl.check import KNOWN_COMMANDS, SplProblem, check_spl

REPO = Path(__file__).resolve().parents[1]

VALID = r"""index=linux sourcetype=linux_audit type IN ("SYSCALL", "PATH", "PROCTITLE")
| rex field=_raw "msg=audit\((?<audit_time>[0-9.]+):(?<audit_serial>[0-9]+)\)"
| stats min(_time) as _time values(name) as name by host audit_time audit_serial
| eval proctitle=urldecode(replace(proctitle_hex, "([0-9A-Fa-f]{2})", "%\1"))
| rex field=CommandLine "(?<CommandLineMatch>(?i)\\b(sshd|su|sudo)\\b)"
| eval CommandLineCondition=if(isnotnull(CommandLineMatch), "true", "false")
| search name="/proc/*" NOT CommandLineCondition="true"
"""


def problems(text: str) -> list[tuple[int, int, str]]:
    return [(p.line, p.column, p.message) for p in check_spl(text)]


def only(text: str) -> SplProblem:
    found = check_spl(text)
    assert len(found) == 1, found
    return found[0]


# --- API and realistic valid queries ---------------------------------------------------------------

def test_valid_query_has_no_problems():
    assert check_spl(VALID) == []


def test_leading_whitespace_and_newlines_are_fine():
    assert check_spl("\n\n   \t" + VALID) == []


@pytest.mark.parametrize("path", sorted((REPO / "conversions").rglob("*.spl")), ids=lambda p: p.name)
def test_generated_conversions_are_valid(path):
    assert check_spl(path.read_text()) == []


def test_problem_is_frozen_and_commands_are_a_frozenset():
    problem = SplProblem("m", 1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.line = 3
    assert isinstance(KNOWN_COMMANDS, frozenset)
    assert {"search", "where", "eval", "rex", "regex", "stats", "append", "tstats", "mvexpand",
            "transaction", "timechart", "return", "format", "collect"} <= KNOWN_COMMANDS


# --- 1. pipeline stages ----------------------------------------------------------------------------

def test_pipe_inside_a_string_does_not_split():
    assert check_spl('index=a x="a | frobnicate" | stats count') == []


def test_escaped_quote_does_not_end_a_string():
    assert check_spl(r'index=a x="a \" | frobnicate" | stats count') == []


def test_escaped_backslash_ends_before_the_closing_quote():
    # "\\" is one backslash, so the string closes and the next '|' starts a stage.
    assert problems(r'index=a x="\\" | frobnicate') == [(1, 18, "unknown SPL command 'frobnicate'")]


def test_pipe_inside_a_macro_or_comment_does_not_split():
    assert check_spl("index=a `filter(a|b)` ```x | frobnicate``` | stats count") == []


def test_macro_stage_is_accepted():
    assert check_spl("index=a | `my_filter` | stats count") == []


@pytest.mark.parametrize("text, column", [("index=a | | stats count", 9), ("index=a | stats count |", 23)])
def test_empty_stage(text, column):
    assert problems(text) == [(1, column, "empty pipeline stage: '|' is not followed by a command")]


# --- 2. balanced quotes, parentheses, brackets -----------------------------------------------------

def test_unbalanced_quote_reports_the_opening_quote():
    text = VALID.replace('NOT CommandLineCondition="true"', 'NOT CommandLineCondition="true')
    assert problems(text) == [(7, 50, "unclosed double quote")]


def test_unclosed_paren_reports_its_position():
    text = VALID.replace('"%\\1"))', '"%\\1")')
    assert problems(text) == [(4, 27, "unclosed '('")]


def test_unmatched_close_paren():
    assert problems("index=a (x=1 OR y=2)) | stats count") == [(1, 21, "unmatched ')'")]


def test_paren_inside_string_does_not_count():
    assert check_spl('index=a x="(" | eval y=if(x=")", 1, 0)') == []


def test_unclosed_and_unmatched_square_brackets():
    assert problems("index=a | append [ search index=b") == [(1, 18, "unclosed '[' (subsearch)")]
    assert problems("index=a ] | stats count") == [(1, 9, "unmatched ']'")]


def test_unclosed_macro():
    assert problems("index=a | `oops") == [(1, 11, "unclosed backtick macro")]


# --- 3. explicit base search -----------------------------------------------------------------------

BASE = "query does not start with an explicit base search (index=/sourcetype=)"


def test_bare_rex_start():
    text = '| rex field=_raw "(?<x>a)"\n| stats count'
    assert problems(text) == [(1, 3, f"{BASE}: '| rex' cannot begin a search")]


def test_bare_search_command_start():
    assert problems("| search index=a") == [(1, 3, f"{BASE}: '| search' cannot begin a search")]


def test_missing_index_and_sourcetype():
    assert problems('\n  host=web01 "failed password" | stats count') == [(2, 3, BASE)]


def test_index_inside_a_string_is_not_a_scope():
    assert problems('"index=linux" | stats count') == [(1, 1, BASE)]


@pytest.mark.parametrize("text", [
    "index=linux | stats count",
    "sourcetype=linux_audit | stats count",
    'search index IN ("linux", "os") | stats count',
    "| tstats count from datamodel=Endpoint.Processes by Processes.dest",
    "| tstats count where index=linux by host",
    "| inputlookup suspicious_hosts.csv | fields host",
])
def test_explicit_base_searches(text):
    assert check_spl(text) == []


def test_tstats_without_datamodel_or_index():
    assert problems("| tstats count by host") == [(1, 3, f"{BASE}: 'tstats' names no datamodel= or index=")]


def test_empty_query():
    assert problems("  \n") == [(1, 1, "query is empty")]


# --- 4. known commands -----------------------------------------------------------------------------

def test_unknown_command():
    text = VALID + "| frobnicate x\n"
    assert problems(text) == [(8, 3, "unknown SPL command 'frobnicate'")]


def test_command_names_are_case_insensitive():
    assert check_spl("index=a | STATS count BY host | Sort - count") == []


# --- subsearches -----------------------------------------------------------------------------------

def test_unknown_command_inside_a_subsearch():
    assert problems("index=b\n| append [ search index=a | badcmd ]") == [(2, 29, "unknown SPL command 'badcmd'")]


def test_subsearch_needs_its_own_base_search():
    text = "index=b | append [ search host=x | stats count ]"
    assert problems(text) == [(1, 20, "subsearch does not start with an explicit base search (index=/sourcetype=)")]


@pytest.mark.parametrize("text", [
    "index=b | append [ search index=a | stats count ]",
    "index=b [ | inputlookup users.csv | fields user ] | stats count",
    "index=b | join host [ sourcetype=x | fields host ]",
    "| multisearch [ search index=a ] [ search index=b | eval s=1 ] | stats count",
    "index=b | append [ search index=a | append [ search index=c ] ]",
])
def test_valid_subsearches(text):
    assert check_spl(text) == []


def test_nested_subsearch_is_checked():
    assert problems("index=b | append [ search index=a | append [ search index=c | nope ] ]") == [
        (1, 63, "unknown SPL command 'nope'")]


# --- 5. regular expressions ------------------------------------------------------------------------

def test_bad_rex_regex():
    problem = only(VALID + '| rex field=name "(?<x>[a-"\n')
    assert (problem.line, problem.column) == (8, 18)
    assert problem.message == 'rex regular expression "(?<x>[a-" does not compile: unterminated character set'


def test_bad_regex_inside_a_realistic_rex():
    text = VALID.replace("(?<audit_serial>[0-9]+)", "(?<audit_serial>[0-9]+")
    problem = only(text)
    assert (problem.line, problem.column) == (2, 18)
    assert "does not compile: missing ), unterminated subpattern" in problem.message


def test_inline_flag_after_the_start_compiles():
    assert check_spl(r'index=a | rex field=c "x(?<m>(?i)\\bsu\\b|sudo)(?s).(?-i:y)"') == []


def test_spl_unescaping_before_compiling():
    # "\\" is a lone backslash for the regex engine: a dangling escape.
    problem = only(r'index=a | rex field=c "(?<m>abc\\)"')
    assert "does not compile" in problem.message
    assert check_spl(r'index=a | rex field=c "say=\"(?<m>[^\"]+)\""') == []


@pytest.mark.parametrize("good, bad", [
    ('| regex CommandLine="^/proc/\\d+/mem$"', '| regex CommandLine="^/proc/\\d+/(mem$"'),
    ('| regex CommandLine!="^/proc/\\d+/mem$"', '| regex CommandLine!="^/proc/+*mem$"'),
    ('| regex "^/proc/\\d+/mem$"', '| regex "^/proc/[\\d+/mem$"'),
    ("| regex _raw=^abc$", "| regex _raw=^a{2,1}$"),
])
def test_regex_command_forms(good, bad):
    assert check_spl(f"index=a {good}") == []
    assert "regex regular expression" in only(f"index=a {bad}").message


def test_regex_command_without_pattern():
    assert problems("index=a | regex") == [(1, 16, "regex command has no pattern")]


def test_rex_without_quoted_pattern():
    assert problems("index=a | rex field=x max_match=0") == [(1, 14, "rex has no quoted regular expression")]


@pytest.mark.parametrize("bad, good", [
    ('match(x, "a(")', 'match(x, "a\\(")'),
    ('replace(x, "[z-a]", "y")', 'replace(x, "[a-z]", "y")'),
    ('mvfind(x, "*a")', 'mvfind(x, ".*a")'),
])
def test_regex_in_eval_functions(bad, good):
    function = bad.split("(")[0]
    assert only(f"index=a | where isnull(y) OR {bad}").message.startswith(f"{function}() regular expression")
    assert check_spl(f"index=a | where isnull(y) OR {good}") == []


def test_regex_argument_that_is_a_field_is_not_checked():
    assert check_spl("index=a | eval m=match(x, pattern_field)") == []


def test_sed_mode():
    assert check_spl(r'index=a | rex field=x mode=sed "s/(\d+)\/x/\1/g"') == []
    assert check_spl('index=a | rex mode=sed field=x "y/abc/xyz/"') == []
    assert "is not of the form" in only('index=a | rex field=x mode=sed "(?<x>a)"').message
    assert "rex mode=sed regular expression" in only('index=a | rex field=x mode=sed "s/a(/b/g"').message


def test_pcre_only_syntax_is_not_reported():
    assert check_spl(r'index=a | rex field=x "(?<w>\p{L}+)\K\h"') == []


# --- 6. eval / where expressions -------------------------------------------------------------------

def test_unknown_eval_function():
    assert problems("index=a | eval y=frob(x)") == [(1, 18, "unknown eval function 'frob'")]


def test_unknown_where_function():
    assert problems("index=a | where isnul(x)") == [(1, 17, "unknown eval function 'isnul'")]


def test_eval_functions_are_case_sensitive():
    assert problems('index=a | eval y=IF(x, "a", "b")') == [(1, 18, "unknown eval function 'IF'")]


def test_operators_and_quoted_field_names_are_not_calls():
    text = ("index=a | stats count(x) as c by host"
            " | where NOT (c > 1) AND host IN (\"a\", \"b\")"
            " | eval r='count(x)' + 1, m=if(in(host, \"a\"), true(), false())")
    assert check_spl(text) == []


def test_unclosed_single_quote_in_eval():
    assert problems("index=a | eval y='x(") == [(1, 18, "unclosed single quote around a field name")]


def test_unbalanced_eval_expression():
    assert problems("index=a | eval y=if(isnull(x), 1, 0") == [(1, 20, "unclosed '('")]
    assert problems("index=a | eval y=lower(x))") == [(1, 26, "unmatched ')'")]
