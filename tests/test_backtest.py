"""`dac backtest splunk|sentinel` against local stand-ins of Splunk's search/jobs API, the Log
Analytics query API and Defender's Advanced Hunting API (tests/backtest_fakes.py says which
parts of each documented contract they follow). What is checked is what a user sees: hits per
day, distinct and top entities, the search cost, PARTIAL and why, error messages naming the rule
and the endpoint, exit codes, and that no token is ever printed. No real SIEM, no real waiting."""
from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

import dac.backtest.window as backtest_window
import dac.deploy.sentinel as deploy_sentinel
from backtest_fakes import FakeAdvancedHunting, FakeLogAnalytics, FakeSplunkSearch
from conftest import run_dac

SPLUNK_TOKEN = "eyJraWQiOiJzcGx1bmsuc2VjcmV0IiwiYWxnIjoiSFM1MTIifQ.backtest-token"
AZURE_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.backtest-azure-token.signature"
NOW = datetime(2026, 12, 5, 8, 0, tzinfo=timezone.utc)
LAZAGNE = "LaZagne"
LAZAGNE_ID = "242d39f0-b4c5-4d7a-b62c-91e0a04f5615"
SUB = "11111111-1111-1111-1111-111111111111"


def ago(days: float = 0, hours: float = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours)


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch):
    monkeypatch.setattr(backtest_window, "utc_now", lambda: NOW)


class FakeCredential:
    def __init__(self, fail: bool = False):
        self.fail, self.scopes = fail, []

    def get_token(self, *scopes):
        from azure.core.exceptions import ClientAuthenticationError
        self.scopes += scopes
        if self.fail:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token.")
        return SimpleNamespace(token=AZURE_TOKEN, expires_on=2**31)


@pytest.fixture
def splunk(tls):
    with FakeSplunkSearch(tls, SPLUNK_TOKEN, max_page=2) as server:
        yield server


@pytest.fixture
def splunk_repo(sandbox, splunk, tls, monkeypatch):
    (sandbox.root / "splunk" / "deploy.yml").write_text(
        f"host: 127.0.0.1\nport: {splunk.port}\nca_file: {tls[0]}\ntimeout: 10\n")
    monkeypatch.setenv("SPLUNK_TOKEN", SPLUNK_TOKEN)
    return sandbox


@pytest.fixture
def logs(tls):
    with FakeLogAnalytics(tls, AZURE_TOKEN) as server:
        yield server


@pytest.fixture
def hunting(tls):
    with FakeAdvancedHunting(tls, AZURE_TOKEN) as server:
        yield server


@pytest.fixture
def credential(monkeypatch):
    cred = FakeCredential()
    monkeypatch.setattr(deploy_sentinel, "make_credential", lambda: cred)
    return cred


def sentinel_config(root, tls, logs, hunting=None):
    extra = (f"advanced_hunting: true\nadvanced_hunting_endpoint: https://127.0.0.1:{hunting.port}\n" if hunting else "")
    (root / "sentinel" / "deploy.yml").write_text(textwrap.dedent(f"""\
        allow_custom_arm_endpoint: true
        log_analytics_endpoint: https://127.0.0.1:{logs.port}
        ca_file: {tls[0]}
        timeout: 10
        workspaces:
          - {{subscription_id: '{SUB}', resource_group: rg-sec, workspace: law-sec}}
        """) + extra)


def backtest(capsys, *args: str) -> tuple[int, str, str]:
    code = run_dac("backtest", *args)
    out = capsys.readouterr()
    for secret in (SPLUNK_TOKEN, AZURE_TOKEN, "backtest-token", "backtest-azure-token"):
        assert secret not in out.out + out.err, "a token must never be printed"
    assert "Traceback" not in out.err
    return code, out.out, out.err


def lazagne_hits(server, needle="lazagne"):
    server.add(needle, ago(days=0, hours=2), host="web-01", user="root", exe="/tmp/lazagne")
    server.add(needle, ago(days=0, hours=3), host="web-01", user="root", exe="/tmp/lazagne")
    server.add(needle, ago(days=2, hours=1), host="db-02", user="alice", exe="/usr/bin/python3")
    server.add(needle, ago(days=9), host="old-host", user="bob", exe="/tmp/lazagne")      # outside 7 days
    server.add("never-in-a-query", ago(hours=1), host="noise", user="x", exe="/bin/true")


# --------------------------------------------------------------------------- Splunk

def test_splunk_hits_per_day_entities_and_cost(splunk_repo, splunk, capsys, waits):
    lazagne_hits(splunk)
    code, out, err = backtest(capsys, "splunk", "--rule", LAZAGNE, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "COMPLETE" and report["partial"] is None
    assert report["window"] == {"start": "2026-11-28T08:00:00Z", "end": "2026-12-05T08:00:00Z", "days": 7.0,
                                "slice_hours": 24.0}
    [run] = [r for r in report["rules"] if r["target"] == "splunk_auditd"]
    assert run["hits"] == 3 and run["hits_per_day"] == round(3 / 7, 2)
    assert run["per_day"] == {"2026-12-03": 1, "2026-12-05": 2}
    assert run["distinct"] == {"host": 2, "user": 2, "process": 2}
    assert run["top_entities"][:3] == [{"kind": "host", "value": "web-01", "hits": 2},
                                       {"kind": "process", "value": "/tmp/lazagne", "hits": 2},
                                       {"kind": "user", "value": "root", "hits": 2}]
    # 7 one-day jobs, each job's documented properties summed
    assert run["cost"]["searches"] == 7 and run["cost"]["resultCount"] == 3 and run["cost"]["eventCount"] == 9
    assert run["cost"]["scanCount"] == 4 * 40 and run["cost"]["runDuration"] == 7 * 0.25
    # the query is sent unchanged (after the `search` command), one job per slice, with epoch bounds
    text = (splunk_repo.root / "conversions/splunk_auditd/proc_creation_lnx_lazagne_memory.spl").read_text().strip()
    auditd = [s for s in splunk.searches if s["search"] == f"search {text}"]
    assert len(auditd) == 7
    assert {int(s["latest_time"]) - int(s["earliest_time"]) for s in auditd} == {86400}
    assert max(int(s["latest_time"]) for s in auditd) == int(NOW.timestamp())
    assert splunk.jobs == {}, "every job is deleted after its results are read"
    assert waits and set(waits) == {1.0}, "the job status is polled with the injected sleep"
    assert "[1/21] LaZagne [splunk_auditd]" in err or "[1/21] LaZagne [splunk_sysmon]" in err, "progress on stderr"


def test_splunk_results_are_paged_until_the_job_s_result_count(splunk_repo, splunk, capsys, waits):
    for hour in range(5):
        splunk.add("lazagne", ago(hours=hour + 1), host=f"h{hour}", user="root", exe="/tmp/lazagne")
    code, out, _ = backtest(capsys, "splunk", "--rule", LAZAGNE_ID, "--since", "1d", "--json")
    assert code == 0
    runs = json.loads(out)["rules"]
    assert {r["hits"] for r in runs} == {5}
    pages = [p for m, p in splunk.requests if p.endswith("/results")]
    assert len(pages) == 3 * 3, "5 results, 2 a page: 3 pages per job, one job per Splunk target"


def test_splunk_text_and_markdown_reports(splunk_repo, splunk, capsys, waits):
    lazagne_hits(splunk)
    code, out, _ = backtest(capsys, "splunk", "--rule", LAZAGNE, "--since", "3d")
    assert code == 0
    assert f"dac backtest splunk at https://127.0.0.1:{splunk.port}: 2026-12-02T08:00:00Z .. 2026-12-05T08:00:00Z " \
           "(3 days in 24-hour slices): COMPLETE" in out
    assert "  hits: 3 over 3 days = 1.0/day; distinct: 2 hosts, 2 users, 2 processes" in out
    assert "  per day: 2026-12-03 1, 2026-12-05 2" in out
    assert "  top entities: host web-01 (2), process /tmp/lazagne (2), user root (2), host db-02 (1)" in out
    assert "  cost: searches 3, events scanned 160, events matched 9, results 3, run seconds 0.75" in out
    code, out, _ = backtest(capsys, "splunk", "--rule", LAZAGNE, "--since", "3d", "--markdown")
    assert code == 0 and "| LaZagne | splunk_auditd | 3 | 1.0 | 2 | 2 | 2 | host `web-01` (2)" in out


def test_a_failed_job_is_an_error_naming_rule_and_endpoint_not_zero_hits(splunk_repo, splunk, capsys, waits):
    lazagne_hits(splunk)
    splunk.fail_jobs = ["FAILED"]
    code, out, err = backtest(capsys, "splunk", "--rule", LAZAGNE, "--since", "2d")
    assert code == 1
    assert "COMPLETE" not in out and ": ERROR" in out.splitlines()[0]
    assert (f"error: LaZagne (splunk_auditd): rule LaZagne (splunk_auditd, conversions/splunk_auditd/"
            f"proc_creation_lnx_lazagne_memory.spl): Splunk at https://127.0.0.1:{splunk.port} job ") in err
    assert "FAILED: Error in 'rex' command: regex too big" in err


def test_a_short_result_page_is_an_error(splunk_repo, splunk, capsys, waits):
    lazagne_hits(splunk)
    splunk.short_results = 1
    code, out, err = backtest(capsys, "splunk", "--rule", LAZAGNE, "--since", "1d")
    assert code == 1 and "announced 2 results and sent 0" in err


def test_a_proxy_page_instead_of_json_is_an_error(splunk_repo, splunk, capsys, waits):
    lazagne_hits(splunk)
    splunk.misbehave("html")          # the first job status read answers a 200 HTML page
    code, out, err = backtest(capsys, "splunk", "--rule", "242d39f0", "--since", "1d")
    assert code == 1
    assert f"reading job" in err and f"at https://127.0.0.1:{splunk.port}" in err
    assert "answered text/html" in err and "not JSON (a proxy or login page?)" in err


def test_bad_token_stops_the_run_without_echoing_it(splunk_repo, splunk, capsys, waits, monkeypatch):
    monkeypatch.setenv("SPLUNK_TOKEN", SPLUNK_TOKEN[:-3] + "xyz")
    code, out, err = backtest(capsys, "splunk", "--since", "1d")
    assert code == 1
    assert "HTTP 401: call not properly authenticated" in err and f"127.0.0.1:{splunk.port}" in err
    assert ": ERROR" in out.splitlines()[0] and "ERROR: rule " in out and "no slice completed" not in out
    assert SPLUNK_TOKEN[:-3] not in out + err


def test_missing_token_and_unknown_rule_are_clear_errors(splunk_repo, capsys, monkeypatch):
    code, _, err = backtest(capsys, "splunk", "--rule", "NoSuchRule")
    assert code == 1 and "no splunk query for --rule NoSuchRule" in err
    monkeypatch.delenv("SPLUNK_TOKEN")
    code, _, err = backtest(capsys, "splunk")
    assert code == 1 and "SPLUNK_TOKEN is not set" in err
    code, _, err = backtest(capsys, "splunk", "--since", "7x")
    assert code == 1 and "expected a positive duration like 30m, 12h or 7d" in err


def test_cost_budget_stops_early_and_says_partial(splunk_repo, splunk, capsys, waits):
    lazagne_hits(splunk)
    code, out, err = backtest(capsys, "splunk", "--rule", LAZAGNE, "--cost-budget", "150", "--json")
    assert code == 3
    report = json.loads(out)
    assert report["status"] == "PARTIAL"
    # the newest slice of the first two targets ran (120 events scanned each), then the budget was used up
    assert report["partial"] == ("cost budget of 150 events scanned used up (240) after 2 of 21 searches; "
                                 "the figures cover only the slices that ran")
    assert {r["target"]: (r["days_covered"], r["hits_per_day"]) for r in report["rules"]} == {
        "splunk_auditd": (1.0, 2.0), "splunk_sysmon": (1.0, 2.0), "splunk_tracee": (0.0, None)}   # never ran: no rate
    assert {r["target"]: r["hits"] for r in report["rules"]} == {"splunk_auditd": 2, "splunk_sysmon": 2, "splunk_tracee": 0}


def test_time_budget_stops_early_and_says_partial(splunk_repo, splunk, capsys, waits):
    from dac.backtest.command import Options, backtest_command
    from dac.core.redaction import Redactor
    from dac.core.repo import Layout
    from dac.deploy.transport import TransportOptions
    ticks = iter(range(0, 10_000, 400))          # each clock read: 400 s later
    lines: list[str] = []
    code = backtest_command(Layout(splunk_repo.root), Options("splunk", rules=[LAZAGNE], time_budget="30m"),
                            TransportOptions(), Redactor(SPLUNK_TOKEN), out=lines.append, progress=lambda _: None,
                            clock=lambda: next(ticks))
    assert code == 3
    assert "PARTIAL: time budget of 30 min used up after" in lines[0]


def test_a_job_running_when_the_time_budget_ends_is_cancelled(splunk_repo, splunk, capsys, waits):
    from dac.backtest.command import Options, backtest_command
    from dac.core.redaction import Redactor
    from dac.core.repo import Layout
    from dac.deploy.transport import TransportOptions
    splunk.never_done = True
    ticks = iter(range(0, 100_000, 100))         # each clock read: 100 s later
    lines: list[str] = []
    code = backtest_command(Layout(splunk_repo.root), Options("splunk", rules=[LAZAGNE], time_budget="5m"),
                            TransportOptions(), Redactor(SPLUNK_TOKEN), out=lines.append, progress=lambda _: None,
                            clock=lambda: next(ticks))
    assert code == 3
    assert "PARTIAL: time budget of 5 min used up after 0 of 21 searches (rule LaZagne (splunk_auditd" in lines[0]
    assert "was still RUNNING when the time budget ran out; cancelled)" in lines[0]
    assert [m for m, p in splunk.requests if p.endswith("/control")] == ["POST"], "the job was cancelled"


# --------------------------------------------------------------------------- Sentinel

def test_log_analytics_hits_entities_and_statistics(sandbox, tls, logs, credential, capsys):
    sentinel_config(sandbox.root, tls, logs)
    logs.add("lazagne", ago(hours=2), DeviceName="web-01", AccountName="root",
             FolderPath="/tmp/lazagne", ProcessCommandLine="lazagne all")
    logs.add("lazagne", ago(days=1, hours=2), DeviceName="web-02", AccountName="root",
             FolderPath="/tmp/lazagne", ProcessCommandLine="lazagne memory")
    code, out, err = backtest(capsys, "sentinel", "--rule", LAZAGNE, "--since", "2d", "--json")
    assert code == 0, err
    [run] = json.loads(out)["rules"]
    assert run["hits"] == 2 and run["per_day"] == {"2026-12-04": 1, "2026-12-05": 1}
    assert run["distinct"] == {"host": 2, "user": 1, "process": 1}
    assert run["cost"] == {"cpu_seconds": 2.5, "execution_seconds": 1.0, "extents_scanned": 6.0,
                           "result_bytes": 128.0, "rows_scanned": 50.0, "searches": 2}
    query = (sandbox.root / "conversions/sentinel/proc_creation_lnx_lazagne_memory.kql").read_text()
    assert [b["body"]["query"] for b in logs.bodies] == [query, query], "the query is sent unchanged"
    assert logs.bodies[0]["body"]["timespan"] == "2026-12-04T08:00:00Z/2026-12-05T08:00:00Z"
    assert logs.bodies[0]["prefer"] == "include-statistics=true"
    assert credential.scopes == ["https://api.loganalytics.io/.default"]


def test_log_analytics_partial_error_is_not_a_result(sandbox, tls, logs, credential, capsys):
    sentinel_config(sandbox.root, tls, logs)
    logs.add("lazagne", ago(hours=2), DeviceName="web-01")
    logs.partial_errors = 1
    code, out, err = backtest(capsys, "sentinel", "--rule", LAZAGNE, "--since", "1d")
    assert code == 1
    assert (f"Log Analytics at https://127.0.0.1:{logs.port} answered with a partial error: PartialError: There were "
            "some errors when processing your query.: Query exceeded the memory limit on one node") in err
    assert "rule LaZagne (sentinel" in err and "hits: 1" not in out


def test_log_analytics_html_answer_and_refused_credential(sandbox, tls, logs, credential, capsys, monkeypatch):
    sentinel_config(sandbox.root, tls, logs)
    logs.fail("POST", "query", (403, None))
    code, _, err = backtest(capsys, "sentinel", "--since", "1d")
    assert code == 1 and "HTTP 403" in err and f"127.0.0.1:{logs.port}" in err
    monkeypatch.setattr(deploy_sentinel, "make_credential", lambda: FakeCredential(fail=True))
    code, _, err = backtest(capsys, "sentinel", "--since", "1d")
    assert code == 1 and "no Azure credential for https://api.loganalytics.io/.default" in err


def test_advanced_hunting_results_stats_and_quota_429(sandbox, tls, logs, hunting, credential, capsys, waits):
    sentinel_config(sandbox.root, tls, logs, hunting)
    hunting.add("lazagne", ago(hours=5), DeviceName="web-01", AccountName="root", FolderPath="/tmp/lazagne",
                ProcessCommandLine="lazagne all")
    hunting.fail("POST", "run", (429, "7"), (429, "3"))
    code, out, err = backtest(capsys, "sentinel", "--rule", LAZAGNE, "--since", "2d", "--json")
    assert code == 0, err
    [run] = json.loads(out)["rules"]
    assert run["hits"] == 1 and run["top_entities"][0] == {"kind": "host", "value": "web-01", "hits": 1}
    assert run["cost"]["cpu_seconds"] == 1.0 and run["cost"]["execution_seconds"] == 1.5
    assert waits == [7.0, 3.0], "the documented Retry-After of the quota answers is honoured (and not slept here)"
    query = (sandbox.root / "conversions/sentinel/proc_creation_lnx_lazagne_memory.kql").read_text()
    assert hunting.queries[0] == ("let DeviceProcessEvents = DeviceProcessEvents | where Timestamp between "
                                  "(datetime(2026-12-04T08:00:00Z) .. datetime(2026-12-05T08:00:00Z));\n" + query)
    assert logs.bodies == [], "Defender tables go to Advanced Hunting when it is configured"
    assert "https://api.security.microsoft.com/.default" in credential.scopes


def test_advanced_hunting_quota_that_never_clears_is_an_error(sandbox, tls, logs, hunting, credential, capsys, waits):
    sentinel_config(sandbox.root, tls, logs, hunting)
    hunting.fail("POST", "run", *[(429, "60")] * 5)
    code, _, err = backtest(capsys, "sentinel", "--rule", LAZAGNE, "--since", "1d")
    assert code == 1 and "HTTP 429: TooManyRequests: API calls quota exceeded! Maximal calls per minute: 45." in err
    assert waits == [60.0] * 4
    code, _, err = backtest(capsys, "sentinel", "--rule", LAZAGNE, "--since", "31d")
    assert code == 1 and "Advanced Hunting holds 30 days; --since is 31 days" in err


def test_a_query_endpoint_outside_the_documented_hosts_is_refused(sandbox, tls, logs, credential, capsys):
    sentinel_config(sandbox.root, tls, logs)
    config = sandbox.root / "sentinel" / "deploy.yml"
    config.write_text(config.read_text().replace("allow_custom_arm_endpoint: true\n", ""))
    code, _, err = backtest(capsys, "sentinel")
    assert code == 1 and "`log_analytics_endpoint`: 127.0.0.1 is not a documented host" in err
    assert logs.requests == []
