"""`dac lint`: SigmaHQ's validator set, equivalents of SigmaHQ's rule/log-source tests and yamllint
with the repository's reference data (no network), plus the project's checks; findings name file,
line, severity and check; only sigma/lint_exceptions.yml relaxes anything."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, write_repo_file
from dac.checks.lint import Finding, all_validators, enabled_validators, failing, lint_command, lint_rules
from dac.checks.reference_data import attack_stix_bundle
from dac.rules.attack import load_techniques
from dac.rules.ruleset import load_rules

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
    assert [str(f) for f in failing(findings)] == []
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
        (21, "error", "sigmahq_field_duplicate_value"),          # '/etc/SHADOW' repeats '/etc/shadow' 
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
    assert {f.message.split("target ")[1].split(" ")[0] for f in unmapped} == {"sentinel", "splunk_auditd", "splunk_sysmon", "splunk_tracee"}
    assert "field 'Hostname' is not mapped" in unmapped[0].message
    unsupported = [f for f in findings if f.validator == "dac_unsupported_logsource"]
    assert [(f.path, f.line, f.severity) for f in unsupported] == [(plan9, lines.index("logsource:") + 1, "error")]
    assert "log source product=plan9 category=process_creation" in unsupported[0].message
    # SigmaHQ's taxonomy (sigma/reference/sigmahq) does not know product plan9
    assert any(f.validator == "sigmahq_test_logsource" and f.path == plan9 for f in findings)


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
    # the taxonomy extension of sigma/lint_exceptions.yml is added to SigmaHQ's data
    assert "linux_file_access_None" in data_taxonomy.sigmahq_taxonomy_fieldsname
    assert data_filename.sigmahq_filename_pattern["linux_None_tracee"] == "lnx_tracee_"
    assert no_network == []


@pytest.mark.skipif(shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0,
                    reason="needs `unshare -n` (root or user namespaces)")
def test_lint_runs_in_a_process_without_network():
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c",
                           "import sys; from dac.checks.lint import lint_command; from dac.core.repo import Layout; "
                           f"sys.exit(lint_command(Layout(__import__('pathlib').Path({str(REPO)!r})), kql=False))"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 errors" in proc.stdout


def test_validator_set_is_sigmahq_s(repo_layout):
    """Only what SigmaHQ's own sigma-cli configuration removes is not run; nothing else is off."""
    known = all_validators()
    enabled = enabled_validators(repo_layout)
    removed = set(known) - set(enabled)
    assert removed == {"tlptag", "tlpv1_tag", "sigmahq_fieldname_cast", "sigmahq_filename_prefix",
                       "sigmahq_logsource_unknown", "sigmahq_ofselection_condition", "sigmahq_sysmon_missing_eventid"}
    assert {"attacktag", "d3_fendtag", "sigmahq_status_to_high", "sigmahq_mitre_link", "sigmahq_github_link",
            "sigmahq_correlation_filename_prefix", "sigmahq_unknown_field", "number_as_string", "dangling_detection"} <= set(enabled)


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


def test_kql_analyzer_hints_are_attributed_to_the_rule(repo_layout, sandbox):
    from dac.compile.convert import compile_rules
    from dac.compile.targets import load_targets
    ruleset = load_rules(repo_layout)
    findings = lint_rules(repo_layout, ruleset, compile_rules(ruleset, load_targets(repo_layout)[0]))
    assert [f for f in findings if f.validator == "dac_kql_analyzer"] == []      # the shipped KQL: no hints
    write_rule(sandbox)         # CommandLine|contains: Kusto's KS500 hint
    ruleset = load_rules(sandbox)
    findings = lint_rules(sandbox, ruleset, compile_rules(ruleset, load_targets(sandbox)[0]))
    hints = [f for f in findings if f.validator == "dac_kql_analyzer"]
    assert hints and all(f.severity == "info" for f in hints)
    shadow = next(f for f in hints if "ShadowCat" in f.message)
    assert shadow.path == RULE_PATH and "KS500" in shadow.message


def test_lint_command_exit_codes(sandbox, capsys):
    assert lint_command(sandbox, kql=False) == 0
    assert "0 errors" in capsys.readouterr().out
    write_rule(sandbox)
    assert lint_command(sandbox, kql=False) == 1
    out = capsys.readouterr().out
    assert f"error: {RULE_PATH}:12: [dac_attack_tags]" in out


# --- the exceptions file and the SigmaHQ test equivalents ------------------------------------

MULTI_DOC = "sigma/rules/linux/process_creation/proc_creation_lnx_two_rules.yml"


def _second(text: str) -> str:
    return (text.replace("0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a10", "0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a12")
            .replace("name: ShadowCat", "name: ShadowCatTwo"))


def test_sigmahq_test_equivalents_find_what_sigmahq_rejects(sandbox):
    clean = (RULE.replace("    - attack.t9999\n    - attack.t1059.004\n", "")
             .replace("references: []", "references:\n    - http://example.org/a\n    - http://example.org/a\n    - not a url")
             .replace("test rule for lint", "test rule for ATT&CK lint"))
    write_rule(sandbox, clean)
    write_rule(sandbox, clean.replace("0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a10", "0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a11")
               .replace("name: ShadowCat", "name: ShadowCatOne") + "---\n" + _second(clean), MULTI_DOC)
    write_rule(sandbox, clean.replace("0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a10", "0b9f4a52-4f0e-4f43-a3c1-8d3f0e7c2a13")
               .replace("name: ShadowCat", "name: ShadowPipe").replace("category: process_creation", "category: pipe_created"),
               "sigma/rules/linux/pipe/pipe_created_lnx_shadow.yml")
    findings = lint_rules(sandbox, load_rules(sandbox))
    got = {(f.path, f.validator) for f in failing(findings)}
    assert (RULE_PATH, "sigmahq_test_trademark") in got
    assert (RULE_PATH, "sigmahq_test_references") in got
    assert (MULTI_DOC, "sigmahq_test_one_document") in got
    assert (MULTI_DOC, "yamllint") in got                       # document-start: `---` is forbidden
    assert (MULTI_DOC, "sigmahq_test_schema") in got            # the JSON-schema action parses one document
    assert ("sigma/rules/linux/pipe/pipe_created_lnx_shadow.yml", "sigmahq_test_logsource") in got
    refs = [f.message for f in findings if f.path == RULE_PATH and f.validator == "sigmahq_test_references"]
    assert any("listed twice" in m for m in refs) and any("not an http(s) URL" in m for m in refs)


def test_filename_prefix_follows_sigmahq_and_the_extension(sandbox):
    path = "sigma/rules/linux/file_access/lnx_tracee_misplaced.yml"
    text = (RULE.replace("    - attack.t9999\n    - attack.t1059.004\n", "").replace("category: process_creation", "category: file_access")
            .replace("CommandLine|contains", "TargetFilename|contains").replace("Image|endswith: '/cat'", "Image|endswith: '/cat'")
            .replace("condition: selection", "condition: selection and selection_unused"))
    write_rule(sandbox, text, path)
    try:
        load_rules(sandbox)
    except Exception as e:         # dac's loader already refuses a file named against its log source
        assert "file_access_lnx_" in str(e)
    from dac.checks.sigmahq_tests import sigmahq_test_findings
    from dac.checks.reference_data import load_sigmahq_documents
    from dac.checks.lint_exceptions import load_exceptions
    from dac.rules.ruleset import _load_file
    items, _ = _load_file(sandbox.root / path, sandbox)
    from dac.rules.ruleset import RuleSet
    docs = load_sigmahq_documents(sandbox)
    findings = sigmahq_test_findings(sandbox.root, RuleSet(items), docs["sigmahq_taxonomy"], docs["sigmahq_filename"],
                                     load_exceptions(sandbox).taxonomy)
    assert [f.validator for f in findings if f.validator.startswith("sigmahq_test")] == ["sigmahq_test_filename"]
    assert "'file_access_lnx_'" in findings[0].message


def test_an_unlisted_finding_fails_and_a_stale_exception_is_reported(sandbox, capsys):
    exceptions = sandbox.root / "sigma/lint_exceptions.yml"
    text = exceptions.read_text()
    # drop one listed exception: its finding is no longer covered
    dropped = text.replace("  - rule: 1f2ba570-2b5d-4c3f-9e65-296edbf1aa91     # TraceeProcMemAccess\n"
                           "    check: sigmahq_unknown_field\n", "  - rule: 1f2ba570-2b5d-4c3f-9e65-296edbf1aa91\n    check: sigmahq_no_such_check\n")
    assert dropped != text
    exceptions.write_text(dropped)
    findings = lint_rules(sandbox, load_rules(sandbox))
    open_ = {(f.validator, f.path) for f in failing(findings)}
    assert ("sigmahq_unknown_field", "sigma/rules/linux/tracee/lnx_tracee_proc_mem_access.yml") in open_
    assert ("dac_stale_exception", "sigma/lint_exceptions.yml") in open_
    assert lint_command(sandbox, kql=False) == 1


def test_every_exception_has_a_reason(repo_layout):
    from dac.checks.lint_exceptions import load_exceptions
    listed = load_exceptions(repo_layout)
    assert listed.exceptions and all(len(e.reason) > 20 for e in listed.exceptions)
    assert {e.key for e in listed.taxonomy} == {"linux_file_access_none", "linux_none_tracee"}
    assert all(len(e.reason) > 40 for e in listed.taxonomy)


def test_exceptions_file_errors_name_the_line(sandbox):
    from dac.checks.lint_exceptions import load_exceptions
    from dac.core.problems import DacError
    (sandbox.root / "sigma/lint_exceptions.yml").write_text("exceptions:\n  - rule: not-a-uuid\n    check: x\n    reason: y\n")
    with pytest.raises(DacError) as e:
        load_exceptions(sandbox)
    assert e.value.problems[0].line == 2 and "UUID" in e.value.problems[0].message


def test_sigmahq_ci_command_passes_offline(repo_layout, tmp_path):
    """SigmaHQ's CI command, sigma-cli unmodified, with SigmaHQ's validator set and the listed
    exclusions, in a process without network when `unshare -n` is available."""
    from dac.checks.sigma_cli import validation_config
    conf = tmp_path / "sigma_cli_conf.yml"
    conf.write_text(validation_config(repo_layout))
    command = [sys.executable, "-m", "dac.checks.sigma_cli", "check", "--fail-on-error", "--fail-on-issues",
               "--validation-config", str(conf), str(REPO / "sigma" / "rules")]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0:
        command = ["unshare", "-n"] + command
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Found 0 errors, 0 condition errors and 0 issues" in proc.stdout


def test_sigmahq_ci_command_fails_on_an_unlisted_issue(sandbox, tmp_path):
    from dac.checks.sigma_cli import validation_config
    rule = sandbox.root / "sigma/rules/linux/tracee/lnx_tracee_proc_mem_access.yml"
    rule.write_text(rule.read_text().replace("status: experimental", "status: experimental\nmodified: 2026-11-21"))
    conf = tmp_path / "conf.yml"
    conf.write_text(validation_config(sandbox))
    proc = subprocess.run([sys.executable, "-m", "dac.checks.sigma_cli", "check", "--fail-on-error", "--fail-on-issues",
                           "--validation-config", str(conf), str(sandbox.root / "sigma" / "rules")],
                          capture_output=True, text=True, timeout=300, cwd=sandbox.root)
    assert proc.returncode != 0
    assert "SigmahqModifiedDateOrderIssue" in proc.stdout or "modified" in proc.stdout.lower()


def test_schema_check_reports_what_the_json_schema_action_rejects(repo_layout):
    import json
    from dac.checks.sigmahq_tests import RULE_SCHEMA, _schema_findings
    schema = json.loads((repo_layout.root / RULE_SCHEMA).read_text())
    assert _schema_findings("r.yml", RULE, "x", schema) == []
    two = _schema_findings("r.yml", RULE + "---\n" + RULE, "x", schema)
    assert [f.validator for f in two] == ["sigmahq_test_schema"] and "one YAML document" in two[0].message
    bad = _schema_findings("r.yml", RULE.replace("status: experimental", "status: beta").replace("date: 2026-11-22", "date: 22.11.2026"), "x", schema)
    assert {m.message.split(":")[0] for m in bad} == {"status", "date"}


def test_sigma_cli_runner_reports_a_bad_exceptions_file_without_a_traceback(sandbox, capsys):
    from dac.checks.sigma_cli import main
    (sandbox.root / "sigma/lint_exceptions.yml").write_text("exceptions: [{rule: nope, check: x, reason: y}]\n")
    assert main(["check", str(sandbox.rules)]) == 1
    err = capsys.readouterr().err
    assert "error: sigma/lint_exceptions.yml" in err and "Traceback" not in err
