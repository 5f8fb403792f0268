"""`dac deploy splunk` against a local stand-in for Splunk's REST API (tests/siem_fakes.py says
which parts of Splunk's documented contract it follows): plan, apply, idempotency, drift,
prune, ownership, retries, partial failure, TLS, and bad input. No real Splunk is involved."""
from __future__ import annotations

import re
import textwrap

import pytest

from conftest import run_dac, run_deploy
from siem_fakes import FakeSplunk

TOKEN = "eyJraWQiOiJzcGx1bmsuc2VjcmV0IiwiYWxnIjoiSFM1MTIifQ.dac-test-token"
APP = "dac_detections"


@pytest.fixture
def splunk(tls):
    with FakeSplunk(tls, TOKEN, APP) as server:
        yield server


@pytest.fixture
def repo(sandbox, splunk, tls, monkeypatch):
    (sandbox.root / "splunk" / "deploy.yml").write_text(textwrap.dedent(f"""\
        host: 127.0.0.1
        port: {splunk.port}
        ca_file: {tls[0]}
        timeout: 10
        """))
    monkeypatch.setenv("SPLUNK_TOKEN", TOKEN)
    return sandbox


def deploy(capsys, *args: str) -> tuple[int, str]:
    return run_deploy(capsys, "splunk", (TOKEN, TOKEN[:20]), *args)


def managed(splunk: FakeSplunk) -> dict[str, dict]:
    return {n: s["content"] for n, s in splunk.searches.items() if n.startswith("dac-")}


def test_plan_apply_and_a_second_apply_changes_nothing(repo, splunk, capsys):
    code, text = deploy(capsys)
    assert code == 0
    planned = re.findall(r"\+ create\s+(dac-\S+)", text)
    assert len(planned) == 31 and "dac-hunting-t1003_007_hunting" in planned
    assert splunk.writes() == [], "a plan writes nothing"

    code, text = deploy(capsys, "--apply")
    assert code == 0 and "applied: 31 created, 0 updated, 0 deleted; 0 failed" in text
    searches = managed(splunk)
    assert sorted(searches) == sorted(planned)
    one = searches["dac-18885d11-ba42-4352-9336-aada43826561-splunk_auditd"]
    assert one["search"].startswith("index=linux sourcetype IN (\"linux_audit\", \"linux:audit\")")
    assert one["cron_schedule"] and one["dispatch.earliest_time"] and one["alert.severity"] == "5"
    assert "Managed by dac from sigma rule 18885d11-ba42-4352-9336-aada43826561 (target splunk_auditd)" in one["description"]
    assert re.search(r"\ndac-hash: [0-9a-f]{16}$", one["description"])
    assert all(("POST", f"/servicesNS/nobody/{APP}/saved/searches") == w for w in splunk.writes())

    writes = len(splunk.writes())
    code, text = deploy(capsys)
    assert code == 0 and "plan: 0 to create, 0 to update (0 drifted), 31 unchanged" in text
    code, text = deploy(capsys, "--apply")
    assert code == 0 and len(splunk.writes()) == writes, "a second apply changes nothing"


def test_a_changed_rule_is_an_update_with_its_diff(repo, splunk, capsys):
    assert deploy(capsys, "--apply")[0] == 0
    rule = repo.rules / "linux/process_creation/proc_creation_lnx_lazagne_memory.yml"
    rule.write_text(rule.read_text().replace("level: high", "level: critical"))
    assert run_dac("convert") == 0
    capsys.readouterr()
    code, text = deploy(capsys)
    assert code == 0
    assert re.search(r"~ update\s+dac-242d39f0\S*-splunk_auditd", text)
    assert "- alert.severity: 5" in text and "+ alert.severity: 6" in text
    assert "drift" not in text.split("plan:")[0]
    code, text = deploy(capsys, "--apply")
    assert code == 0 and "0 created, 3 updated" in text
    name = next(n for n in managed(splunk) if n.startswith("dac-242d39f0") and n.endswith("splunk_sysmon"))
    assert managed(splunk)[name]["alert.severity"] == "6"


def test_an_edit_in_splunk_shows_as_drift_and_apply_puts_the_repository_back(repo, splunk, capsys):
    assert deploy(capsys, "--apply")[0] == 0
    name = "dac-18885d11-ba42-4352-9336-aada43826561-splunk_auditd"
    splunk.searches[name]["content"]["cron_schedule"] = "0 3 * * *"          # somebody in the UI
    code, text = deploy(capsys)
    assert code == 0
    line = next(l for l in text.splitlines() if name in l)
    assert "~ update" in line and "drift" in line
    assert "- cron_schedule: 0 3 * * *" in text
    assert deploy(capsys, "--apply")[0] == 0
    assert splunk.searches[name]["content"]["cron_schedule"] != "0 3 * * *"
    assert "0 to update (0 drifted)" in deploy(capsys)[1]


def test_a_removed_rule_is_kept_until_prune(repo, splunk, capsys):
    assert deploy(capsys, "--apply")[0] == 0
    (repo.rules / "linux/process_creation/proc_creation_lnx_lazagne_memory.yml").unlink()
    assert run_dac("convert") == 0
    capsys.readouterr()
    code, text = deploy(capsys, "--apply")
    assert code == 0 and "3 orphaned (kept; --prune deletes)" in text
    assert sum(n.startswith("dac-242d39f0") for n in managed(splunk)) == 3
    code, text = deploy(capsys, "--apply", "--prune")
    assert code == 0 and "0 created, 0 updated, 3 deleted" in text
    assert not any(n.startswith("dac-242d39f0") for n in managed(splunk))


def test_objects_dac_does_not_own_are_never_touched(repo, splunk, capsys):
    splunk.add_foreign("SOC - failed logins", {"search": "index=auth action=failure", "description": "hand made"})
    splunk.add_foreign("dac-18885d11-ba42-4352-9336-aada43826561-splunk_auditd", {"search": "index=x", "description": "mine!"})
    splunk.add_foreign("dac-elsewhere", {"search": "index=y", "description": "Managed by dac from sigma rule "
                                         "18885d11-ba42-4352-9336-aada43826561 (target splunk_auditd); x"}, app="search")
    code, text = deploy(capsys, "--apply", "--prune")
    assert code == 1, "a name taken by an object dac does not own cannot be deployed"
    assert "x conflict" in text and "exists in the SIEM without dac's ownership marker" in text
    assert splunk.searches["SOC - failed logins"]["content"]["search"] == "index=auth action=failure"
    assert splunk.searches["dac-18885d11-ba42-4352-9336-aada43826561-splunk_auditd"]["content"]["search"] == "index=x"
    assert "dac-elsewhere" in splunk.searches, "a search in another app is not this app's to prune"
    assert "SOC - failed logins" not in text
    assert "25 created" in text and "1 failed" in text


def test_429_and_5xx_are_retried_with_retry_after(repo, splunk, capsys, waits):
    name = "dac-18885d11-ba42-4352-9336-aada43826561-splunk_auditd"
    splunk.fail("POST", "", (429, "7"), (503, None))      # the create call: POST …/saved/searches
    splunk.fail("GET", "", (500, None))
    code, text = deploy(capsys, "--apply")
    assert code == 0 and "31 created" in text and name in managed(splunk)
    assert waits == [1.0, 7.0, 2.0]                         # backoff 1 s, then Retry-After 7, then backoff 2 s


def test_a_failure_on_one_object_does_not_stop_the_others(repo, splunk, capsys, waits):
    assert deploy(capsys, "--apply")[0] == 0
    for rule in ("proc_creation_lnx_lazagne_memory.yml", "proc_creation_lnx_mimipenguin.yml"):
        path = repo.rules / "linux/process_creation" / rule
        path.write_text(path.read_text().replace("level: high", "level: medium"))
    assert run_dac("convert") == 0
    capsys.readouterr()
    broken = next(n for n in managed(splunk) if n.startswith("dac-242d39f0") and n.endswith("splunk_sysmon"))
    splunk.fail("POST", broken, *[(500, None)] * 5)
    code, text = deploy(capsys, "--apply")
    assert code == 1
    assert f"FAILED {broken}: update failed: HTTP 500" in text
    assert "0 created, 5 updated, 0 deleted; 1 failed (not changed)" in text
    assert len(waits) == 4                                  # 5 attempts, 4 waits, capped backoff
    assert managed(splunk)[broken]["alert.severity"] == "5"


def test_bad_input_stops_before_anything_is_contacted(repo, splunk, capsys, monkeypatch):
    config = repo.root / "splunk" / "deploy.yml"
    good = config.read_text()
    config.write_text(good + "token: abc\n")
    code, text = deploy(capsys)
    assert code == 1 and "splunk/deploy.yml:5: `token` must not be in a file" in text
    config.write_text("host: [unclosed\n")
    code, text = deploy(capsys)
    assert code == 1 and "splunk/deploy.yml:" in text and "malformed YAML" in text
    config.write_text("port: 8089\n")
    code, text = deploy(capsys)
    assert code == 1 and "splunk/deploy.yml: missing required setting `host`" in text
    config.unlink()
    code, text = deploy(capsys)
    assert code == 1 and "splunk/deploy.yml: deployment config not found" in text
    config.write_text(good)
    monkeypatch.delenv("SPLUNK_TOKEN")
    code, text = deploy(capsys, "--apply")
    assert code == 1 and "error: SPLUNK_TOKEN is not set" in text
    monkeypatch.setenv("SPLUNK_TOKEN", TOKEN)
    code, text = deploy(capsys, "--apply", "--port", "9")
    assert code == 1 and "cannot reach Splunk at https://127.0.0.1:9" in text
    (repo.conversions / "splunk_auditd" / "lnx_auditd_proc_mem_open.spl").write_text("index=tampered\n")
    code, text = deploy(capsys, "--apply")
    assert code == 1 and "generated file(s) are stale" in text
    assert splunk.requests == []


def test_tls_is_verified_unless_explicitly_disabled(repo, splunk, capsys):
    config = repo.root / "splunk" / "deploy.yml"
    config.write_text(re.sub(r"ca_file: .*\n", "", config.read_text()))
    code, text = deploy(capsys, "--apply")
    assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in text and splunk.writes() == []
    code, text = deploy(capsys, "--apply", "--insecure")
    assert code == 0 and "31 created" in text


def test_a_wrong_token_is_a_clear_failure(repo, splunk, capsys, monkeypatch):
    monkeypatch.setenv("SPLUNK_TOKEN", "wrong")
    code = run_dac("deploy", "splunk")
    text = "".join(capsys.readouterr())
    assert code == 1 and "HTTP 401: call not properly authenticated" in text


def test_an_object_deleted_between_plan_and_apply_is_reported_not_retried(repo, splunk, capsys, waits):
    assert deploy(capsys, "--apply")[0] == 0
    rule = repo.rules / "linux/process_creation" / "proc_creation_lnx_lazagne_memory.yml"
    rule.write_text(rule.read_text().replace("level: high", "level: medium"))
    assert run_dac("convert") == 0
    capsys.readouterr()
    gone = next(n for n in managed(splunk) if n.startswith("dac-242d39f0") and n.endswith("splunk_auditd"))
    splunk.fail("POST", gone, (404, None))
    code, text = deploy(capsys, "--apply")
    assert code == 1 and f"FAILED {gone}: update failed: HTTP 404" in text
    assert waits == [], "a 404 is not retried"
    assert "0 created, 2 updated, 0 deleted; 1 failed (not changed)" in text
