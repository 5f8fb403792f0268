"""Regex safety: the analyzer over Python's regex parse tree (catastrophic backtracking, engine
differences), and rules with such regexes failing convert, lint and test with file and line."""
from __future__ import annotations

import re
import time

import pytest

from conftest import run_dac, snapshot
from dac.core.regex_safety import analyze, catastrophic
from test_bad_input import RULE, RULE_PATH, write_rule

CATASTROPHIC = [r"(a+)+$", r"(a*)*", r"(a|a)*", r"(\w|\d)+", r"(a+)*b", r"(.*,)*x", r"(\w+\w)+", r"((ab)*)+",
                r"(a?b?)+c", r"^(([a-z])+.)+[A-Z]([a-z])+$", r"(x+x+)+y", r"(ab|a.)+", r"(a{1,5})+b",
                r"(?:\s*\S+)*$", r"(?i)(A|a)+$", r"([a-z]|[0-9]|\w)+!"]
SAFE = [r"(\w+\.)+com", r"^/proc/[0-9]+(/task/[0-9]+)?/mem$", r"(a|b)+", r"(foo|bar)+", r"a+b+c+", r".*foo.*",
        r"(ab)+", r"(a|ab)+c", r"[a-z]+(,[a-z]+)*", r"(\d{1,3}\.){3}\d{1,3}", r"[|(]+(x|y)", r"\(a+\)+",
        r"(a+)?b", r"((grep|cat)\s[^|;&]*/proc/)"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_are_found(pattern):
    assert catastrophic(pattern), pattern


@pytest.mark.parametrize("pattern", SAFE)
def test_safe_patterns_pass(pattern):
    assert analyze(pattern) == [], pattern


def test_the_repositorys_own_regexes_are_safe_and_portable(repo_layout):
    from dac.rules.ruleset import load_rules
    assert load_rules(repo_layout).rules        # loading runs the analyzer on every |re value


PORTABILITY = {
    r"(a)\1": "backreferences", r"/proc/(?!self)": "lookaround", r"(?<=x)y": "lookaround",
    r"a*+b": "possessive", r"(?>a+)b": "atomic", r"(a)?(?(1)b|c)": "conditionals", r"abc\Z": r"\Z",
    r"(?x) a b": "inline flag(s) x", r"(?a)\w": "inline flag(s) a",
}


@pytest.mark.parametrize("pattern", sorted(PORTABILITY))
def test_constructs_that_differ_between_pcre_re2_and_python(pattern):
    findings = analyze(pattern)
    assert any(f.kind == "portability" and PORTABILITY[pattern] in f.message for f in findings), findings


def test_pcre_named_group_syntax_is_reported():
    assert any("(?P<name>" in f.message for f in analyze(r"(?<pid>[0-9]+)"))
    assert analyze(r"(?P<pid>[0-9]+)") == []


def test_the_analyzer_is_fast_on_a_large_pattern():
    words = [f"word{i}" for i in range(2000)]
    started = time.perf_counter()
    assert analyze("(" + "|".join(words) + ")+") == []
    assert catastrophic("(" + "|".join(words + ["word7"]) + ")+"), "a repeated word is an ambiguous alternative"
    assert time.perf_counter() - started < 5, "a long word list costs linear time, not pairwise"


def _run(capsys, *args) -> tuple[int, str]:
    code = run_dac(*args)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("verb", ["convert", "lint", "test", "check"])
def test_a_catastrophic_rule_regex_fails_every_command_with_file_and_line(sandbox, capsys, verb):
    # probed: `(a+)+$` passed convert, lint and validate, and `dac test` hung on a 35-character line
    before = snapshot(sandbox.conversions)
    write_rule(sandbox, RULE.replace("CommandLine|contains: 'foo'", "CommandLine|re: '(a+)+$'"))
    code, text = _run(capsys, verb)
    assert code == 1
    assert re.search(re.escape(RULE_PATH) + r":18: unsafe regular expression for CommandLine: a repeat inside a "
                     r"repeat can match the same characters", text), text
    assert snapshot(sandbox.conversions) == before


def test_a_pcre_regex_in_spl_that_would_backtrack_is_not_run():
    from dac.engines.spl.parse import SplUnsupported, python_regex
    with pytest.raises(SplUnsupported, match="backtrack catastrophically"):
        python_regex(r"(a+)+$")


def test_replay_runs_each_regex_under_a_time_budget(repo_layout):
    """Second line behind the load-time refusal: a regex the analysis would miss cannot hang replay.
    The rule is built in memory (load_rules would refuse it) and its regex runs on the Sigma engine."""
    import yaml as _yaml
    from sigma.rule import SigmaRule

    from dac.core import regex_budget
    from dac.engines.sigma.engine import SigmaEngine
    from dac.compile.targets import load_targets
    data = _yaml.safe_load(RULE.replace("CommandLine|contains: 'foo'", "CommandLine|re: '(a+)+$'"))
    rule = SigmaRule.from_dict(data)
    target = load_targets(repo_layout)[0]["sentinel"]
    rows = [{"dac_key": "1", "ProcessCommandLine": "a" * 40 + "!"}]
    started = time.perf_counter()
    with pytest.raises(regex_budget.RegexBudgetExceeded, match=r"'\(a\+\)\+\$' in rule 'Test Rule' ran longer than 0.5s"):
        with regex_budget.armed(0.5):
            SigmaEngine().matches(rule, target, rows)
    assert time.perf_counter() - started < 10, "stopped by the budget, not by finishing"
    with regex_budget.armed(0.5):         # the budget does not disturb an ordinary regex
        assert SigmaEngine().matches(rule, target, [{"dac_key": "2", "ProcessCommandLine": "aaa"}]) == {"2"}
