"""`dac deploy sentinel` against a local stand-in for Azure Resource Manager's Sentinel alertRules
API (tests/siem_fakes.py says which parts of the documented contract it follows): plan, apply,
idempotency, several workspaces, paging, etags, drift, prune, retries, partial failure, and bad
input. The Azure credential is a stand-in too: no Azure is involved."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

import dac.deploy.command as deploy_module
import dac.deploy.sentinel as deploy_sentinel
from conftest import run_dac, run_deploy
from siem_fakes import FakeArm

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.arm-test-token.signature"
WORKSPACES = [("11111111-1111-1111-1111-111111111111", "rg-a", "law-a"),
              ("22222222-2222-2222-2222-222222222222", "rg-b", "law-b")]


class FakeCredential:
    def __init__(self, fail: bool = False):
        self.fail, self.scopes = fail, []

    def get_token(self, *scopes):
        from azure.core.exceptions import ClientAuthenticationError
        self.scopes += scopes
        if self.fail:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token from the included credentials.")
        return SimpleNamespace(token=TOKEN, expires_on=2**31)


@pytest.fixture
def arm(tls):
    with FakeArm(tls, TOKEN, page_size=2) as server:
        yield server


@pytest.fixture
def credential(monkeypatch):
    cred = FakeCredential()
    monkeypatch.setattr(deploy_sentinel, "make_credential", lambda: cred)
    return cred


def write_config(root, arm, tls, workspaces=WORKSPACES, extra=""):
    entries = "".join(f"  - {{subscription_id: '{s}', resource_group: {g}, workspace: {w}}}\n" for s, g, w in workspaces)
    (root / "sentinel" / "deploy.yml").write_text(
        f"arm_endpoint: https://127.0.0.1:{arm.port}\nallow_custom_arm_endpoint: true\nca_file: {tls[0]}\ntimeout: 10\nworkspaces:\n{entries}{extra}")


@pytest.fixture
def repo(sandbox, arm, tls, credential):
    write_config(sandbox.root, arm, tls)
    return sandbox


def deploy(capsys, *args: str) -> tuple[int, str]:
    return run_deploy(capsys, "sentinel", (TOKEN, "arm-test-token"), *args)


def rules_in(arm: FakeArm, workspace: str) -> dict[str, dict]:
    return next((rules for path, rules in arm.rules.items() if path.endswith(f"/workspaces/{workspace}")), {})


def searches_in(arm: FakeArm, workspace: str) -> dict[str, dict]:
    return next((s for path, s in arm.searches.items() if path.endswith(f"/workspaces/{workspace}")), {})


def test_plan_apply_idempotent_on_every_workspace(repo, arm, capsys, credential):
    code, text = deploy(capsys)
    assert code == 0 and arm.writes() == []
    assert text.count("plan: 10 to create") == 2, "9 alert-tier rules on Sentinel + the composed union, per workspace"
    assert text.count("2 hunting queries in the repository") == 2 and text.count("plan: 2 to create") == 2
    assert credential.scopes == ["https://management.azure.com/.default"]

    code, text = deploy(capsys, "--apply")
    assert code == 0 and text.count("applied: 10 created, 0 updated, 0 deleted; 0 failed") == 2
    assert text.count("applied: 2 created, 0 updated, 0 deleted; 0 failed") == 2
    for _, _, ws in WORKSPACES:
        rules = rules_in(arm, ws)
        assert len(rules) == 10
        searches = searches_in(arm, ws)
        assert len(searches) == 2, "the two hunting-tier rules, as Sentinel hunting queries"
        for resource in searches.values():
            props = resource["properties"]
            tags = {t["name"]: t["value"] for t in props["tags"]}
            assert props["category"] == "Hunting Queries" and props["query"].startswith("Device")
            assert tags["tactics"] == "CredentialAccess" and tags["techniques"] == "T1003.007"
            assert re.search(r"Managed by dac from sigma rule \S+ \(target sentinel\); hunting tier\.\ndac-hash: [0-9a-f]{16}$",
                             tags["description"])
        for resource in rules.values():
            props = resource["properties"]
            assert props["queryFrequency"].startswith("PT") and props["severity"] in ("Low", "Medium", "High")
            assert re.search(r"Managed by dac from (sigma rule|hunting query) \S+ \(target \S+\)", props["description"])
            assert re.search(r"\ndac-hash: [0-9a-f]{16}$", props["description"])
        assert all(p == "PUT" for p, _ in arm.writes())
    assert all("api-version" not in path for _, path in arm.requests)        # the query string, not the path

    writes = len(arm.writes())
    code, text = deploy(capsys, "--apply")
    assert code == 0 and text.count("10 unchanged") == 2 and text.count("2 unchanged") == 2 and len(arm.writes()) == writes


def test_drift_update_with_etag_and_prune(repo, arm, capsys):
    assert deploy(capsys, "--apply")[0] == 0
    rules = rules_in(arm, "law-a")
    rule_id, resource = next(iter(sorted(rules.items())))
    resource["properties"]["enabled"] = False                                  # disabled in the portal
    resource["etag"] = '"edited-in-portal"'
    code, text = deploy(capsys)
    line = next(l for l in text.splitlines() if rule_id in l and "law-a" not in l and "update" in l)
    assert "drift" in line and "- enabled: false" in text and "+ enabled: true" in text
    assert deploy(capsys, "--apply")[0] == 0
    assert rules_in(arm, "law-a")[rule_id]["properties"]["enabled"] is True

    (repo.rules / "linux/process_creation/proc_creation_lnx_lazagne_memory.yml").unlink()
    assert run_dac("convert") == 0
    capsys.readouterr()
    code, text = deploy(capsys, "--apply")
    assert code == 0 and text.count("1 orphaned (kept; --prune deletes)") == 2
    code, text = deploy(capsys, "--apply", "--prune")
    assert code == 0 and text.count("1 deleted") == 2
    assert all(len(rules_in(arm, ws)) == 9 for _, _, ws in WORKSPACES)


def test_retries_conflicts_and_partial_failure(repo, arm, capsys, waits):
    code, text = deploy(capsys)
    analytics_plan = text.split("hunting queries in the repository")[0]         # law-a's analytics rules
    first, second = sorted(set(re.findall(r"\+ create\s+(\S+)", analytics_plan)))[:2]
    arm.fail("PUT", first, (429, "3"))                    # throttled once, then fine
    arm.fail("PUT", second, (409, None))                  # conflict: not retried, reported
    code, text = deploy(capsys, "--apply")
    assert code == 1
    assert waits == [3.0]
    assert f"FAILED {second}: create failed: HTTP 409" in text
    assert "9 created, 0 updated, 0 deleted; 1 failed (not changed)" in text
    assert "10 created, 0 updated, 0 deleted; 0 failed" in text                # the other workspace
    assert first in rules_in(arm, "law-a") and second not in rules_in(arm, "law-a")


def test_an_unreachable_workspace_does_not_stop_the_others(repo, arm, tls, capsys):
    write_config(repo.root, arm, tls)
    config = repo.root / "sentinel" / "deploy.yml"
    config.write_text(config.read_text().replace(f"https://127.0.0.1:{arm.port}", "https://127.0.0.1:9"))
    code, text = deploy(capsys, "--apply")
    assert code == 1 and "error: workspace law-a: cannot reach https://127.0.0.1:9; nothing was changed there" in text


def test_bad_input_and_credentials_stop_before_any_request(repo, arm, capsys, monkeypatch):
    config = repo.root / "sentinel" / "deploy.yml"
    good = config.read_text()
    config.write_text(good + "client_secret: hunter2\n")
    code, text = deploy(capsys)
    assert code == 1 and "client_secret` must not be in a file" in text and "hunter2" not in text
    config.write_text("workspaces:\n  - {subscription_id: x}\n")
    code, text = deploy(capsys)
    assert code == 1 and "workspaces[1] needs subscription_id, resource_group, workspace" in text
    config.write_text(good)
    monkeypatch.setattr(deploy_sentinel, "make_credential", lambda: FakeCredential(fail=True))
    code, text = deploy(capsys, "--apply")
    assert code == 1 and "error: no Azure credential for https://management.azure.com/.default" in text
    monkeypatch.setattr(deploy_sentinel, "make_credential", lambda: FakeCredential())
    monkeypatch.setattr(deploy_module, "SENTINEL_QUERY_LIMIT", 500)
    code, text = deploy(capsys, "--apply")
    assert code == 1 and "cannot deploy:" in text and "Sentinel's limit is 500" in text and "nothing was changed" in text
    assert arm.requests == []


def test_tls_is_verified(repo, arm, tls, capsys):
    config = repo.root / "sentinel" / "deploy.yml"
    config.write_text(re.sub(r"ca_file: .*\n", "", config.read_text()))
    code, text = deploy(capsys, "--apply")
    assert code == 1 and "TLS verification failed" in text and arm.writes() == []
    code, text = deploy(capsys, "--apply", "--insecure")
    assert code == 0


def test_hunting_queries_drift_conflict_and_prune(repo, arm, capsys):
    # a hunting-tier rule is a Sentinel hunting query (a savedSearch), kept in step like an analytic
    assert deploy(capsys, "--apply")[0] == 0
    searches = searches_in(arm, "law-a")
    search_id, resource = next(iter(sorted(searches.items())))
    resource["properties"]["query"] += "\n| take 10"                          # edited in the portal
    resource["etag"] = "W/\"datetime'2026-12-01T00:00:00Z'\""
    foreign_id = "3f2c9a1e-0000-4000-8000-000000000001"
    workspace_path = next(p for p in arm.searches if p.endswith("/workspaces/law-a"))
    arm.searches[workspace_path][foreign_id] = {"id": foreign_id, "name": foreign_id, "etag": "W/\"x\"", "properties": {
        "category": "Hunting Queries", "displayName": "SOC's own hunt", "query": "DeviceFileEvents | take 1",
        "tags": [{"name": "description", "value": "written by the SOC"}]}}
    code, text = deploy(capsys)
    line = next(l for l in text.splitlines() if search_id in l and "update" in l)
    assert "drift" in line and "+ query" in text.replace("(repository)", "")
    assert foreign_id not in text, "a saved search without dac's marker is not dac's: not listed for deletion"
    assert deploy(capsys, "--apply")[0] == 0
    assert "| take 10" not in searches_in(arm, "law-a")[search_id]["properties"]["query"]
    assert searches_in(arm, "law-a")[foreign_id]["properties"]["displayName"] == "SOC's own hunt"

    (repo.rules / "linux/file_access/file_access_lnx_proc_maps_environ_read.yml").unlink()
    assert run_dac("convert") == 0
    capsys.readouterr()
    code, text = deploy(capsys, "--apply", "--prune")
    assert code == 0 and text.count("applied: 0 created, 0 updated, 1 deleted") == 2
    left = searches_in(arm, "law-a")
    assert len(left) == 2 and foreign_id in left, "one hunting query pruned, the SOC's own kept"
    assert len(searches_in(arm, "law-b")) == 1


def test_a_hunting_query_without_dacs_marker_is_a_conflict(repo, arm, capsys):
    code, text = deploy(capsys)
    hunting_plan = text.split("hunting queries in the repository")[1]
    taken = re.findall(r"\+ create\s+(\S+)", hunting_plan)[0]
    workspace_path = "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-a/providers/" \
                     "Microsoft.OperationalInsights/workspaces/law-a"
    arm.searches[workspace_path] = {taken: {"id": taken, "name": taken, "etag": "W/\"x\"", "properties": {
        "category": "Hunting Queries", "displayName": "same id, not ours", "query": "DeviceFileEvents"}}}
    code, text = deploy(capsys, "--apply")
    assert code == 1 and f"FAILED {taken}: exists in the SIEM without dac's ownership marker; not touched" in text
    assert arm.searches[workspace_path][taken]["properties"]["displayName"] == "same id, not ours"
