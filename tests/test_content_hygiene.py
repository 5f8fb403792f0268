"""Content hygiene: control characters, bidi overrides and oversize text never reach a generated
artifact; errors name the rule file and line and show a short excerpt."""
from __future__ import annotations

import pytest

import dac.rules.content as content
from conftest import run_dac, snapshot
from dac.core.problems import Problem
from test_bad_input import RULE, RULE_PATH, write_rule


def _run(capsys, *args) -> tuple[int, str]:
    code = run_dac(*args)
    out = capsys.readouterr()
    return code, out.out + out.err


def _generated(layout) -> dict[str, bytes]:
    return {**snapshot(layout.conversions), **snapshot(layout.root / "splunk"), **snapshot(layout.root / "sentinel")}


@pytest.mark.parametrize("value, line, shown", [
    ('"foo\\u0000bar"', 18, "control character U+0000"),     # a NUL, written as a YAML escape
    ('"foo\\x1b[31m"', 18, "control character U+001B"),
    ('"foo\\rbar"', 18, "control character U+000D"),
])
def test_a_control_character_in_a_rule_value_fails_convert_with_file_and_line(sandbox, capsys, value, line, shown):
    # probed: a \u0000 value converted with exit 0 and put NUL bytes in savedsearches.conf, .kql and .spl
    before = _generated(sandbox)
    write_rule(sandbox, RULE.replace("CommandLine|contains: 'foo'", f"CommandLine|contains: {value}"))
    code, text = _run(capsys, "convert")
    assert code == 1 and f"error: {RULE_PATH}:{line}: value contains a {shown}" in text
    assert "\x00" not in text and "\x1b" not in text
    assert _generated(sandbox) == before, "nothing written"


def test_a_bidi_override_in_a_description_fails_with_its_line(sandbox, capsys):
    # probed: U+202E passed into Splunk and Sentinel descriptions
    write_rule(sandbox, RULE.replace("description: test", "description: \"harmless \u202etxt.exe\""))
    code, text = _run(capsys, "convert")
    assert code == 1
    assert f"error: {RULE_PATH}:5: value contains a bidirectional override/isolate U+202E" in text
    assert "\u202e" not in text, "the excerpt shows it escaped"
    block = RULE.replace("description: test", "description: |\n    first line\n    second \u2066line")
    write_rule(sandbox, block)
    code, text = _run(capsys, "lint")
    assert code == 1 and f"error: {RULE_PATH}:7: value contains a bidirectional override/isolate U+2066" in text


def test_an_oversized_rule_file_is_refused_before_parsing(sandbox, capsys):
    write_rule(sandbox, RULE + "# " + "x" * content.RULE_FILE_LIMIT + "\n")
    code, text = _run(capsys, "check")
    assert code == 1 and f"error: {RULE_PATH}: rule file is" in text and "(limit 1000000): refused" in text
    assert len(text) < 2000


def test_a_query_over_sentinels_limit_names_the_rule_and_shows_an_excerpt(sandbox, capsys, monkeypatch):
    before = _generated(sandbox)
    long_value = "x" * 12_000
    write_rule(sandbox, RULE.replace("CommandLine|contains: 'foo'", f"CommandLine|contains: '{long_value}'"))
    code, text = _run(capsys, "convert")
    assert code == 1
    assert ("conversions/sentinel/proc_creation_lnx_test_rule.kql:1: KQL query is" in text
            and "Sentinel's limit for a scheduled rule query is 10000" in text)
    assert f"(from rule {RULE_PATH}:1)" in text
    assert long_value not in text and max(len(l) for l in text.splitlines()) < 1000
    assert _generated(sandbox) == before


def test_a_savedsearches_line_over_the_limit_names_its_rule(sandbox, capsys, monkeypatch):
    monkeypatch.setattr(content, "SPL_LINE_LIMIT", 1000)
    write_rule(sandbox, RULE.replace("CommandLine|contains: 'foo'", f"CommandLine|contains: '{'y' * 1200}'"))
    code, text = _run(capsys, "convert")
    assert code == 1
    assert "splunk/dac_detections/default/savedsearches.conf:" in text
    assert "dac's limit for a Splunk search is 1000" in text and f"(from rule {RULE_PATH}:1)" in text


def test_generated_text_is_checked_even_when_it_does_not_come_from_a_rule():
    problems = content.check_artifacts({"conversions/x.spl": "index=a\nsearch \x00 x\n",
                                        "sentinel/analytics/y.yaml": "name: \u202ey\n"}, lambda p, l: None)
    assert [str(p).split(": generated")[0] for p in problems] == ["conversions/x.spl:2", "sentinel/analytics/y.yaml:1"]
    assert all("\x00" not in str(p) and "\u202e" not in str(p) for p in problems)


def test_an_error_line_is_never_megabytes_long():
    # probed: a 5 MB rule made `dac validate` print a 6.6 MB query in its error line
    line = str(Problem("conversions/a.kql", 1, "error KS001: " + "q" * 6_600_000))
    assert len(line) < 600 and line.endswith("(6600013 characters)")
