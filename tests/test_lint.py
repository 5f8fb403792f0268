"""`dac lint`: pySigma's core and SigmaHQ validators with the repository's reference data (no
network), plus the project's checks; findings name file, line, severity and validator."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, write_repo_file
from dac.lint import DISABLED, SEVERITY_OVERRIDES, Finding, attack_stix_bundle, enabled_validators, lint_command, lint_rules
from dac.coverage import load_techniques
from dac.rules import load_rules

RULE = textwrap.dedent("""\
    title: Shadow File Read By Cat
    id: 0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a10
    name: ShadowCat
    status: experimental
    description: test rule for lint, long enough to pass the description length check of SigmaHQ
    references: []
    author: tests
    date: 2026-11-22
    tags:
        - attack.credential-access
        - attack.t1003.008
        - attack.t9999
        - attack.t1059.004
    logsource:
        product: linux
        category: process_creation
    detection:
        selection:
            CommandLine|contains:
                - '/etc/shadow'
                - '/etc/SHADOW'
        selection_unused:
            Image|endswith: '/cat'
        condition: selection
    falsepositives: []
    level: low
    """)
RULE_PATH = "sigma/rules/linux/process_creation/proc_creation_lnx_shadow_cat.yml"


def write_rule(layout, text: str = RULE, path: str = RULE_PATH):
    write_repo_file(layout, path, text)


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection or resolve a name raises and is recorded."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        raise OSError("network access attempted during lint")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_repository_rules_have_no_errors(repo_layout, no_network):
    findings = lint_rules(repo_layout, load_rules(repo_layout))
    assert [str(f) for f in findings if f.severity == "error"] == []
    assert all(f.severity in ("error", "warning", "info") for f in findings)
    assert no_network == []


def test_a_bad_rule_gets_the_expected_findings_with_lines(sandbox, no_network):
    write_rule(sandbox)
    findings = [f for f in lint_rules(sandbox, load_rules(sandbox)) if f.path == RULE_PATH]
    got = {(f.line, f.severity, f.validator) for f in findings}
    expected = {
        (6, "warning", "dac_missing_references"),
        (25, "warning", "dac_missing_falsepositives"),
        (12, "error", "dac_attack_tags"),                        # t9999: not in the local ATT&CK list
        (12, "warning", "attacktag"),                            # pySigma's ATT&CK validator, same tag, offline data
        (22, "error", "dangling_detection"),                     # selection_unused is never used
        (21, "warning", "sigmahq_field_duplicate_value"),        # '/etc/SHADOW' repeats '/etc/shadow' 
        (13, "warning", "sigmahq_tags_techniques_without_tactics"),  # t1059.004 needs attack.execution
    }
    assert expected <= got, sorted(got)
    by_validator = {f.validator: f for f in findings}
    assert "unknown ATT&CK technique T9999" in by_validator["dac_attack_tags"].message
    assert "attack.execution" in by_validator["sigmahq_tags_techniques_without_tactics"].message
    assert "selection_unused" in by_validator["dangling_detection"].message
    assert str(by_validator["dangling_detection"]).startswith(f"error: {RULE_PATH}:22: [dangling_detection] ")
    assert no_network == []


def test_project_checks_unmapped_field_and_unknown_logsource(sandbox):
    text = (RULE.replace("Image|endswith: '/cat'", "Hostname: 'x'").replace("condition: selection", "condition: selection and selection_unused")
            .replace("    - attack.t9999\n    - attack.t1059.004\n", ""))
    lines = text.splitlines()
    write_rule(sandbox, text)
    plan9 = "sigma/rules/linux/process_creation/proc_creation_test_plan9.yml"
    write_rule(sandbox, text.replace("0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a10", "0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a11")
               .replace("name: ShadowCat", "name: ShadowCatPlan9").replace("product: linux", "product: plan9"), plan9)
    findings = lint_rules(sandbox, load_rules(sandbox))
    unmapped = [f for f in findings if f.validator == "dac_unmapped_field"]
    assert {(f.path, f.line, f.severity) for f in unmapped} == {(RULE_PATH, lines.index("detection:") + 1, "error")}
    assert {f.message.split("target ")[1].split(" ")[0] for f in unmapped} == {"sentinel", "splunk_auditd", "splunk_sysmon"}
    assert "field 'Hostname' is not mapped" in unmapped[0].message
    unsupported = [f for f in findings if f.validator == "dac_unsupported_logsource"]
    assert [(f.path, f.line, f.severity) for f in unsupported] == [(plan9, lines.index("logsource:") + 1, "error")]
    assert "log source product=plan9 category=process_creation" in unsupported[0].message
    # SigmaHQ's taxonomy (sigma/reference/sigmahq) does not know product plan9
    assert any(f.validator == "sigmahq_logsource_unknown" and f.path == plan9 for f in findings)


def test_project_checks_missing_technique_tag_and_level(sandbox):
    """dac's loader already refuses both; lint checks the rule objects it is given all the same."""
    text = RULE.replace("    - attack.t9999\n    - attack.t1059.004\n", "")
    write_rule(sandbox, text)
    level_line = text.splitlines().index("level: low") + 1
    ruleset = load_rules(sandbox)
    item = ruleset.by_name("ShadowCat")
    item.rule.tags = [t for t in item.rule.tags if not t.name.startswith("t")]
    item.rule.level = None
    findings = {(f.validator, f.line, f.severity) for f in lint_rules(sandbox, ruleset) if f.path == RULE_PATH}
    assert {("dac_missing_technique_tag", 9, "error"), ("dac_missing_level", level_line, "error")} <= findings


def test_validators_use_only_local_reference_data(sandbox, no_network):
    """A rule the SigmaHQ and ATT&CK data decide: the verdicts prove the data was loaded, the
    socket patch proves none of it came from the network."""
    from sigma.data import mitre_attack
    from sigma.validators.sigmahq.data import data_filename, data_taxonomy
    write_rule(sandbox, RULE.replace("CommandLine|contains", "NotAField|contains"))
    findings = lint_rules(sandbox, load_rules(sandbox))
    validators = {f.validator for f in findings if f.path == RULE_PATH}
    assert {"attacktag", "sigmahq_tags_techniques_without_tactics", "sigmahq_invalid_fieldname"} <= validators
    assert mitre_attack.mitre_attack_version == "18.1"
    assert "T1003.007" in mitre_attack.mitre_attack_techniques
    assert data_taxonomy.sigmahq_taxonomy_version == "20251117"
    # the project's own log sources are added to SigmaHQ's taxonomy and file name patterns
    assert "linux_file_access_None" in data_taxonomy.sigmahq_taxonomy_fieldsname
    assert data_filename.sigmahq_filename_pattern["linux_None_tracee"] == "lnx_tracee_"
    assert no_network == []


@pytest.mark.skipif(shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0,
                    reason="needs `unshare -n` (root or user namespaces)")
def test_lint_runs_in_a_process_without_network():
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c",
                           "import sys; from dac.lint import lint_command; from dac.repo import Layout; "
                           f"sys.exit(lint_command(Layout(__import__('pathlib').Path({str(REPO)!r})), kql=False))"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 errors" in proc.stdout


def test_disabled_validators_exist_and_are_not_run():
    from sigma.validators.core import validators as core
    from sigma.validators.sigmahq import validators as sigmahq
    known = {**core, **sigmahq}
    assert set(DISABLED) <= set(known), "a disabled validator was renamed or removed upstream"
    assert set(SEVERITY_OVERRIDES) <= set(known)
    enabled = enabled_validators()
    assert not set(DISABLED) & set(enabled)
    assert {"attacktag", "sigmahq_invalid_fieldname", "sigmahq_logsource_unknown", "sigmahq_filename_prefix",
            "dangling_detection"} <= set(enabled)
    assert all(reason for reason in DISABLED.values())


def test_findings_are_deterministic_and_sorted(sandbox):
    write_rule(sandbox)
    first = lint_rules(sandbox, load_rules(sandbox))
    second = lint_rules(sandbox, load_rules(sandbox))
    assert first == second == sorted(first, key=Finding.sort_key)
    assert len(set(first)) == len(first)


def test_stix_bundle_keeps_revoked_and_deprecated_out_of_pysigma(repo_layout):
    bundle = attack_stix_bundle(load_techniques(repo_layout))
    t1002 = next(o for o in bundle["objects"] if o["type"] == "attack-pattern" and o["external_references"][0]["external_id"] == "T1002")
    assert t1002["revoked"] is True
    assert sum(1 for o in bundle["objects"] if o["type"] == "x-mitre-tactic") == 14


def test_kql_analyzer_hints_are_attributed_to_the_rule(repo_layout):
    from dac.convert import compile_rules
    from dac.targets import load_targets
    ruleset = load_rules(repo_layout)
    findings = lint_rules(repo_layout, ruleset, compile_rules(ruleset, load_targets(repo_layout)[0]))
    hints = [f for f in findings if f.validator == "dac_kql_analyzer"]
    assert hints and all(f.severity == "info" for f in hints)
    mimi = next(f for f in hints if "MimiPenguin" in f.message)
    assert mimi.path.endswith("proc_creation_lnx_mimipenguin.yml") and "KS500" in mimi.message


def test_lint_command_exit_codes(sandbox, capsys):
    assert lint_command(sandbox, kql=False) == 0
    assert "0 errors" in capsys.readouterr().out
    write_rule(sandbox)
    assert lint_command(sandbox, kql=False) == 1
    out = capsys.readouterr().out
    assert f"error: {RULE_PATH}:12: [dac_attack_tags]" in out
