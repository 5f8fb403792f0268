"""Bad rules: one clear line per problem naming file and line, exit 1, nothing written."""
from __future__ import annotations

import textwrap

import pytest

from conftest import run_dac, snapshot, write_repo_file

RULE = textwrap.dedent("""\
    title: Test Rule
    id: 5a0c9f39-5b0e-4a43-9d7b-1f6bde7a0c11
    name: TestRule
    status: experimental
    description: test
    references:
        - https://attack.mitre.org/techniques/T1003/007/
    author: tests
    date: 2026-11-22
    tags:
        - attack.credential-access
        - attack.t1003.007
    logsource:
        product: linux
        category: process_creation
    detection:
        selection:
            CommandLine|contains: 'foo'
        condition: selection
    falsepositives:
        - none
    level: low
    """)
RULE_PATH = "sigma/rules/linux/process_creation/proc_creation_lnx_test_rule.yml"


def write_rule(layout, text: str, path: str = RULE_PATH):
    write_repo_file(layout, path, text)


CASES = {
    "malformed_yaml": (RULE.replace("    condition: selection", "    condition: [selection"),
                       r"proc_creation_lnx_test_rule\.yml:\d+: malformed YAML"),
    "missing_detection": ("\n".join(l for l in RULE.splitlines()
                                    if not l.startswith(("detection:", "    selection:", "        CommandLine", "    condition:"))) + "\n",
                          r"proc_creation_lnx_test_rule\.yml:1: missing required key `detection`"),
    "missing_condition": (RULE.replace("    condition: selection\n", ""),
                          r"proc_creation_lnx_test_rule\.yml:16: detection has no `condition`"),
    "unknown_modifier": (RULE.replace("CommandLine|contains:", "CommandLine|containz:"),
                         r"proc_creation_lnx_test_rule\.yml:18: .*containz"),
    "invalid_regex": (RULE.replace("CommandLine|contains: 'foo'", "CommandLine|re: '(unclosed'"),
                      r"proc_creation_lnx_test_rule\.yml:18: SigmaRegularExpressionError: Regular expression '\(unclosed' is invalid"),
    "re2_lookahead": (RULE.replace("CommandLine|contains: 'foo'", "CommandLine|re: '/proc/(?!self)'"),
                      r"proc_creation_lnx_test_rule\.yml:18: .*lookaround.*RE2"),
    "duplicate_id": (RULE.replace("5a0c9f39-5b0e-4a43-9d7b-1f6bde7a0c11", "fa334ad3-0d80-4ce5-b92d-696792e9dab8"),
                     r"duplicate rule id 'fa334ad3-0d80-4ce5-b92d-696792e9dab8' \(first used at sigma/rules/.*mimipenguin\.yml:2\)"),
    "unsupported_logsource": (RULE.replace("category: process_creation", "category: network_connection")
                              .replace("proc_creation", "network_connection"),
                              r"rule TestRule: no target supports log source category=network_connection product=linux"),
    "unmapped_field": (RULE.replace("CommandLine|contains", "OriginalFileName|contains"),
                       r"rule TestRule: field 'OriginalFileName' is not mapped for target sentinel \(sigma/pipelines/sentinel_defender_xdr\.yml\)"),
    "no_technique_tag": (RULE.replace("    - attack.t1003.007\n", ""),
                         r"proc_creation_lnx_test_rule\.yml:10: tags name no ATT&CK technique"),
}


@pytest.mark.parametrize("verb", [["check"], ["convert"], ["build"]])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_rule_is_reported_and_nothing_written(sandbox, capsys, case, verb):
    text, expected = CASES[case]
    path = RULE_PATH
    if case == "unsupported_logsource":
        path = "sigma/rules/linux/network_connection/net_connection_lnx_test_rule.yml"
    write_rule(sandbox, text, path)
    before = snapshot(sandbox.conversions)

    assert run_dac(*verb) == 1

    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert lines, err
    import re
    assert any(re.search(expected, l) for l in lines), err
    assert snapshot(sandbox.conversions) == before


def test_every_problem_is_listed_not_just_the_first(sandbox, capsys):
    write_rule(sandbox, CASES["invalid_regex"][0])
    write_rule(sandbox, CASES["missing_condition"][0], "sigma/rules/linux/process_creation/proc_creation_lnx_other.yml")
    assert run_dac("check") == 1
    err = capsys.readouterr().err
    assert "proc_creation_lnx_test_rule.yml:18: SigmaRegularExpressionError" in err
    assert "proc_creation_lnx_other.yml:16: detection has no `condition`" in err
    assert "2 problem(s); nothing written" in err


def test_filename_convention_is_enforced(sandbox, capsys):
    write_rule(sandbox, RULE, "sigma/rules/linux/process_creation/lnx_test_rule.yml")
    assert run_dac("check") == 1
    assert "should start with 'proc_creation_lnx_'" in capsys.readouterr().err


def test_unknown_correlation_reference(sandbox, capsys):
    path = sandbox.rules / "linux/correlation/correlation_lnx_proc_maps_then_mem_read.yml"
    path.write_text(path.read_text().replace("        - ProcMemRead\n", "        - NoSuchRule\n", 1))
    assert run_dac("check") == 1
    assert "correlation refers to unknown rule 'NoSuchRule'" in capsys.readouterr().err


def test_broken_pipeline_is_reported_with_its_file(sandbox, capsys):
    path = sandbox.sigma / "pipelines/splunk_tracee.yml"
    path.write_text(path.read_text().replace("type: field_name_mapping", "type: no_such_transformation"))
    assert run_dac("check") == 1
    assert "sigma/pipelines/splunk_tracee.yml: invalid pySigma pipeline" in capsys.readouterr().err
