"""A deploy only reports what it can prove: a list that is empty, cut off, not JSON or does not
add up stops the run before any change, and after an apply everything is read back. The fakes
(tests/siem_fakes.py) misbehave as proxies and throttled APIs do; no real SIEM is involved."""
from __future__ import annotations

import pytest

import test_deploy_sentinel as sentinel_tests
import test_deploy_splunk as splunk_tests
from siem_fakes import FakeArm, FakeSplunk

# fixtures of the per-SIEM test modules, reused
splunk = splunk_tests.splunk
repo = splunk_tests.repo
arm = sentinel_tests.arm
credential = sentinel_tests.credential


@pytest.fixture
def arm_repo(sandbox, arm, tls, credential):
    sentinel_tests.write_config(sandbox.root, arm, tls)
    return sandbox


BROKEN_READS = {
    "empty_body": "cannot reach Splunk at",
    "short_body": "the answer was cut off",
    "reset": "closed the connection without answering",
    "truncated_json": "the answer is not complete JSON",
    "html": "answered text/html",
    "inflated_total": "announced 32 saved searches but stopped answering at 31",
}


@pytest.mark.parametrize("kind", sorted(BROKEN_READS))
def test_a_splunk_list_that_cannot_be_trusted_stops_before_any_change(repo, splunk, capsys, kind):
    # found by probing: a 200 whose announced body never came made an empty list, "11 created", exit 0
    assert splunk_tests.deploy(capsys, "--apply")[0] == 0
    writes = len(splunk.writes())
    (repo.root / "sigma/rules/linux/process_creation/proc_creation_lnx_lazagne_memory.yml").unlink()
    assert splunk_tests.run_dac("convert") == 0
    capsys.readouterr()
    # every page of the list broken the same way (31 searches are 8 pages of 4)
    splunk.misbehave(*[kind] * (10 if kind == "inflated_total" else 1))
    code, text = splunk_tests.deploy(capsys, "--apply", "--prune")
    assert code == 1, text
    assert BROKEN_READS[kind] in text and "nothing was changed" in text
    assert "deleted" not in text and len(splunk.writes()) == writes
    assert "Traceback" not in text


def test_a_splunk_list_is_read_page_by_page_to_the_end(repo, splunk, capsys):
    splunk.max_page = 3
    assert splunk_tests.deploy(capsys, "--apply")[0] == 0
    lists = [r for r in splunk.requests if r[0] == "GET"]
    assert len(lists) == 1 + 11, "the plan reads an empty list; the read-back 31 searches in 11 pages of 3"
    code, text = splunk_tests.deploy(capsys)
    assert code == 0 and "0 to create, 0 to update (0 drifted), 31 unchanged" in text


def test_a_splunk_apply_that_does_not_stick_fails_the_read_back(repo, splunk, capsys):
    splunk.drop_writes(2)                  # accepted with 201, never stored
    code, text = splunk_tests.deploy(capsys, "--apply")
    assert code == 1
    assert "applied: 31 created" in text
    assert text.count("created, but not there when read back") == 2
    assert "verified: read back 31 change(s): 2 not as written" in text


def test_a_read_back_that_fails_is_not_a_success(repo, splunk, capsys):
    splunk.misbehave(None, "html")         # the plan's list is fine, the read-back gets a proxy page
    code, text = splunk_tests.deploy(capsys, "--apply")
    assert code == 1 and "31 created" in text
    assert "UNVERIFIED: reading back what was written failed" in text and "verified: no" in text


BROKEN_ARM_READS = {
    "empty_body": "no complete answer from",
    "short_body": "no complete answer from",
    "reset": "closed the connection before a complete answer",
    "truncated_json": "the answer is not complete JSON",
    "html": "answered text/html",
    "foreign_next_link": "nextLink points to another server",
}


@pytest.mark.parametrize("kind", sorted(BROKEN_ARM_READS))
def test_an_arm_list_that_cannot_be_trusted_stops_that_workspace(arm_repo, arm, capsys, kind):
    assert sentinel_tests.deploy(capsys, "--apply")[0] == 0       # 8 analytics: 4 pages of 2 per workspace
    arm.requests.clear()
    arm.misbehave(kind)
    code, text = sentinel_tests.deploy(capsys, "--apply", "--prune")
    assert code == 1, text
    assert f"error: workspace law-a:" in text and BROKEN_ARM_READS[kind] in text
    assert "nothing was changed there" in text and arm.writes() == []
    assert "Traceback" not in text and "evil.example" not in str(arm.requests)


def test_an_arm_apply_that_does_not_stick_fails_the_read_back(arm_repo, arm, capsys):
    arm.drop_writes(1)
    code, text = sentinel_tests.deploy(capsys, "--apply")
    assert code == 1
    assert "created, but not there when read back" in text
    assert "verified: read back 10 change(s): 1 not as written" in text
    assert "verified: read back 10 change(s): all as written" in text        # the other workspace


@pytest.mark.parametrize("body, content_type, message", [
    (b"", "application/json", "empty body"),
    (b'{"entry": [', "application/json", "not complete JSON"),
    (b"<html>502</html>", "text/html; charset=utf-8", "answered text/html"),
    (b"[]", "application/json", "JSON but not an object"),
    (b"\xff\xfe", "", "not complete JSON"),
])
def test_a_response_body_must_be_a_json_object(body, content_type, message):
    from dac.deploy.plan import DeployError
    from dac.deploy.responses import json_document
    with pytest.raises(DeployError, match=message):
        json_document(body, content_type, "GET x")
