"""`dac review` with a SIEM backtest: with credentials in the environment, the old and new query
of each changed rule run on the SIEM (local stand-ins, tests/backtest_fakes.py) over the same
window, and the comment shows alerts per day before and after, new and vanished entities and the
cost; without credentials it says the backtest was skipped and why. The SIEM connection comes
from the base's config, not the pull request's."""
from __future__ import annotations

import json
import subprocess
import textwrap
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

import dac.backtest.window as backtest_window
import dac.deploy.sentinel as deploy_sentinel
from backtest_fakes import FakeLogAnalytics, FakeSplunkSearch
from conftest import run_dac

SPLUNK_TOKEN = "eyJraWQiOiJzcGx1bmsuc2VjcmV0IiwiYWxnIjoiSFM1MTIifQ.review-token"
AZURE_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.review-azure-token.signature"
NOW = datetime(2026, 12, 5, 8, 0, tzinfo=timezone.utc)
LAZAGNE = "sigma/rules/linux/process_creation/proc_creation_lnx_lazagne_memory.yml"
SUB = "11111111-1111-1111-1111-111111111111"


def git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=dac", "-c", "user.email=dac@example.org", *args],
                   check=True, capture_output=True)


@pytest.fixture
def splunk(tls):
    with FakeSplunkSearch(tls, SPLUNK_TOKEN) as server:
        yield server


@pytest.fixture
def logs(tls):
    with FakeLogAnalytics(tls, AZURE_TOKEN) as server:
        yield server


@pytest.fixture
def history(sandbox, splunk, logs, tls, monkeypatch):
    """A base commit whose deploy configs point at the stand-ins, and a change to LaZagne's
    module regex (`memory|all` -> `memory|all|browsers`) in the working tree."""
    monkeypatch.setattr(backtest_window, "utc_now", lambda: NOW)
    root = sandbox.root
    (root / "splunk" / "deploy.yml").write_text(f"host: 127.0.0.1\nport: {splunk.port}\nca_file: {tls[0]}\ntimeout: 10\n")
    (root / "sentinel" / "deploy.yml").write_text(textwrap.dedent(f"""\
        allow_custom_arm_endpoint: true
        log_analytics_endpoint: https://127.0.0.1:{logs.port}
        ca_file: {tls[0]}
        workspaces:
          - {{subscription_id: '{SUB}', resource_group: rg-sec, workspace: law-sec}}
        """))
    (root / ".gitignore").write_text("tools/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    rule = root / LAZAGNE
    rule.write_text(rule.read_text().replace(r"'\s(memory|all)(\s|$)'", r"'\s(memory|all|browsers)(\s|$)'"))
    assert run_dac("convert") == 0
    return sandbox


def add_events(server, **time_field):
    at = lambda hours: NOW - timedelta(hours=hours)
    # found by both versions, by the old one only, by the new one only
    server.add("lazagne", at(3), host="web-01", user="root", exe="/tmp/lazagne", DeviceName="web-01")
    server.add("memory|all)", at(30), host="gone-02", user="alice", exe="/tmp/lazagne", DeviceName="gone-02")
    server.add("browsers", at(5), host="new-03", user="bob", exe="/tmp/lazagne", DeviceName="new-03")
    server.add("browsers", at(50), host="new-03", user="bob", exe="/tmp/lazagne", DeviceName="new-03")


def review(capsys, *args) -> tuple[int, str, str]:
    code = run_dac("review", "--base", "main", "--no-replay", *args)
    out = capsys.readouterr()
    for secret in (SPLUNK_TOKEN, AZURE_TOKEN, "review-token", "review-azure-token"):
        assert secret not in out.out + out.err
    return code, out.out, out.err


def test_without_credentials_the_review_says_it_skipped_the_backtest(history, capsys, monkeypatch):
    for name in ("SPLUNK_TOKEN", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    capsys.readouterr()
    code, out, _ = review(capsys)
    assert "### Backtest on the SIEM (old and new query of each changed rule, last 7d)" in out
    assert "- **splunk**: skipped: SPLUNK_TOKEN is not set (no Splunk credentials in this job)" in out
    assert "- **sentinel**: skipped: no Azure identity in this job (AZURE_CLIENT_ID is not set)" in out
    code, out, _ = review(capsys, "--no-backtest")
    assert "Backtest on the SIEM" not in out


def test_with_credentials_old_and_new_queries_are_compared_on_the_siem(history, splunk, logs, capsys, monkeypatch, waits):
    add_events(splunk)
    add_events(logs)
    monkeypatch.setenv("SPLUNK_TOKEN", SPLUNK_TOKEN)
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-00000000c11e")
    monkeypatch.setattr(deploy_sentinel, "make_credential",
                        lambda: SimpleNamespace(get_token=lambda *s: SimpleNamespace(token=AZURE_TOKEN, expires_on=2**31)))
    capsys.readouterr()
    code, out, err = review(capsys, "--json")
    section = json.loads(out)["backtest"]
    by_siem = {s["siem"]: s for s in section["siems"]}
    assert by_siem["splunk"]["status"] == "COMPLETE" and by_siem["sentinel"]["status"] == "COMPLETE", err
    rows = {(r["target"]): r for s in section["siems"] for r in s["rules"]}
    auditd = rows["splunk_auditd"]
    assert auditd["rule"] == "LaZagne" and auditd["query_changed"]
    assert (auditd["before"]["hits"], auditd["after"]["hits"]) == (2, 3)
    assert (auditd["before"]["hits_per_day"], auditd["after"]["hits_per_day"]) == (0.29, 0.43)
    assert auditd["new_entities"] == ["host new-03", "user bob"]
    assert auditd["vanished_entities"] == ["host gone-02", "user alice"]
    assert auditd["before"]["cost"]["searches"] == 7 and "scanCount" in auditd["after"]["cost"]
    sentinel = rows["sentinel"]
    assert (sentinel["before"]["hits"], sentinel["after"]["hits"]) == (2, 3)
    assert sentinel["new_entities"] == ["host new-03", "user bob"] and sentinel["vanished_entities"] == ["host gone-02", "user alice"]
    assert sentinel["after"]["cost"]["cpu_seconds"] == 7 * 1.25
    # the window is the same for both versions: 7 daily slices each, ending at the same minute
    assert len({s["latest_time"] for s in splunk.searches}) == 7 and len(splunk.searches) == 7 * 3 * 2      # 3 Splunk targets, old and new

    code, out, _ = review(capsys)
    assert f"**splunk** at `https://127.0.0.1:{splunk.port}`, 2026-11-28T08:00:00Z .. 2026-12-05T08:00:00Z: COMPLETE" in out
    line = next(l for l in out.splitlines() if l.startswith("| LaZagne | splunk_auditd |"))
    assert "| 0.29 → 0.43 | 2 → 3 | `host new-03`, `user bob` | `host gone-02`, `user alice` |" in line
    assert "searches 7" in line


def test_the_connection_comes_from_the_base_config_not_the_pull_request(history, splunk, capsys, monkeypatch, waits):
    """A pull request that points splunk/deploy.yml elsewhere does not get the token sent there."""
    monkeypatch.setenv("SPLUNK_TOKEN", SPLUNK_TOKEN)
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    (history.root / "splunk" / "deploy.yml").write_text("host: attacker.example\nport: 8089\n")
    capsys.readouterr()
    code, out, _ = review(capsys, "--json")
    [s] = [s for s in json.loads(out)["backtest"]["siems"] if s["siem"] == "splunk"]
    assert s["status"] == "COMPLETE" and s["endpoint"] == f"https://127.0.0.1:{splunk.port}"


def test_in_ci_a_base_config_without_certificate_checks_is_refused(history, splunk, capsys, monkeypatch, waits):
    monkeypatch.setenv("SPLUNK_TOKEN", SPLUNK_TOKEN)
    monkeypatch.setenv("DAC_SCHEDULED", "1")
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    config = history.root / "splunk" / "deploy.yml"
    config.write_text(config.read_text() + "verify_tls: false\n")
    git(history.root, "add", "splunk/deploy.yml")
    git(history.root, "commit", "-q", "--amend", "--no-edit")
    capsys.readouterr()
    code, out, _ = review(capsys)
    assert "- **splunk**: ERROR: TLS certificate verification is off (verify_tls: false) in a scheduled deployment" in out
    assert splunk.requests == [] and code == 0, "the backtest does not block the review"
