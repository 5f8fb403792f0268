"""Which events each log source covers is declared once, in sigma/datasources/event_scopes.yml:
the replay gives a rule exactly those events, and `dac validate` fails when a pipeline's SPL/KQL
stops saying what the declaration says."""
from __future__ import annotations

import pytest

from conftest import run_dac, write_repo_file
from dac.compile.targets import load_targets
from dac.checks.scopes import check_pipeline_scopes
from dac.core.problems import DacError
from dac.logs.scopes import SCOPES_FILE, load_scopes, parse_scopes


@pytest.fixture
def scopes(repo_layout):
    return load_scopes(repo_layout)


def test_defender_file_access_is_reads_only(scopes):
    assert scopes.categories("mde", {"ActionType": "FileRead"}) == {"process_creation", "file_access"}
    for write in ("FileCreated", "FILEMODIFIED", "FileRenamed", "FileDeleted"):
        assert "file_access" not in scopes.categories("mde", {"ActionType": write})
    assert "file_access" in scopes.categories("mde", {})        # no ActionType is not a write


def test_sysmon_process_creation_is_event_id_1_only(scopes):
    assert scopes.categories("sysmon", {"EventID": "1"}) == {"process_creation"}
    assert scopes.categories("sysmon", {"EventID": "11"}) == set()


def test_tracee_scopes(scopes):
    assert scopes.categories("tracee", {"eventName": "sched_process_exec"}) == {"tracee", "process_creation"}
    assert scopes.categories("tracee", {"eventName": "security_file_open", "flags": "32768"}) == {"tracee", "file_access"}
    assert scopes.categories("tracee", {"eventName": "security_file_open", "flags": "O_WRONLY|O_CREAT"}) == {"tracee"}
    assert scopes.categories("tracee", {"eventName": "security_file_open", "flags": "O_RDONLY|O_CLOEXEC"}) == {"tracee", "file_access"}


def test_auditd_scopes(scopes):
    assert scopes.categories("auditd", {"syscall": "322"}) == {"auditd", "process_creation"}
    assert scopes.categories("auditd", {"syscall": "257", "a2": "80000"}) == {"auditd", "file_access"}
    assert scopes.categories("auditd", {"syscall": "257", "a2": "80001"}) == {"auditd"}      # O_WRONLY
    assert scopes.categories("auditd", {"syscall": "437"}) == {"auditd", "file_access"}     # openat2: flags in a struct
    assert scopes.categories("auditd", {"syscall": "0"}) == {"auditd"}


def test_the_repository_pipelines_say_what_is_declared(repo_layout, scopes):
    assert check_pipeline_scopes(load_targets(repo_layout)[0], scopes) == []


def test_validate_fails_when_declaration_and_pipeline_disagree(sandbox):
    text = (sandbox.root / SCOPES_FILE).read_text()
    write_repo_file(sandbox, SCOPES_FILE, text.replace('EventID: ["1"]', 'EventID: ["1", "11"]'))
    problems = check_pipeline_scopes(load_targets(sandbox)[0], load_scopes(sandbox))
    assert [p.path for p in problems] == ["sigma/pipelines/splunk_sysmon_linux.yml"]
    assert "EventID value '11'" in problems[0].message
    assert run_dac("validate") == 1


def test_a_declared_log_source_the_pipeline_lacks_is_an_error(sandbox):
    text = (sandbox.root / SCOPES_FILE).read_text()
    write_repo_file(sandbox, SCOPES_FILE, text.replace("sysmon:\n", "sysmon:\n  file_access: {}\n"))
    problems = check_pipeline_scopes(load_targets(sandbox)[0], load_scopes(sandbox))
    assert any("declares no `source` for log source 'file_access'" in p.message for p in problems)


def test_malformed_declaration_is_reported():
    with pytest.raises(DacError) as e:
        parse_scopes({"sysmon": {"process_creation": {"EventID": "1"}}})
    assert "sysmon.process_creation.EventID: expected a non-empty list of values" in str(e.value.problems[0])
