"""Query cost as a checked property: `dac validate` refuses a generated query whose SPL base
search selects a whole sensor or whose KQL runs a regex/contains without a term filter on the
same column, naming rule, target and clause; documented exceptions are the only way past."""
from __future__ import annotations

import json
from pathlib import Path

from dac.checks.cost import check_cost
from dac.checks.kql_cost import check_kql_cost
from dac.checks.spl_cost import check_spl_cost

ROOT = Path(__file__).resolve().parents[1]
ASSEMBLY = '\n| eval host=coalesce(node, host)\n| stats count by host'
MANIFEST = json.dumps({"artifacts": [
    {"path": "conversions/splunk_auditd/x.spl", "rule_name": "ProcMemAccess", "target": "splunk_auditd"},
    {"path": "conversions/sentinel/x.kql", "rule_name": "ProcMemAccess", "target": "sentinel"}]})


def test_a_whole_sensor_base_search_is_refused_naming_rule_target_and_clause(tmp_path):
    bad = 'index=linux sourcetype=linux_audit type IN ("SYSCALL", "PATH")' + ASSEMBLY
    problems = check_cost({"conversions/splunk_auditd/x.spl": bad, "conversions/manifest.json": MANIFEST}, tmp_path)
    messages = [p.message for p in problems]
    assert messages == [
        'cost (rule ProcMemAccess, target splunk_auditd): spl-selective-base: the base search '
        '`sourcetype=linux_audit type IN ("SYSCALL", "PATH")` has no literal term, TERM(), key= or subsearch that '
        'every event it keeps must hold: Splunk reads the whole sensor before the first pipe',
        'cost (rule ProcMemAccess, target splunk_auditd): spl-audit-key: the auditd base search '
        '`sourcetype=linux_audit type IN ("SYSCALL", "PATH")` does not select the project\'s audit rules by key= '
        '(sigma/datasources/auditd_t1003_007.rules)']


def test_selective_base_searches_pass():
    ok = [
        'index=linux sourcetype=tracee TERM(security_file_open) "/proc/"' + ASSEMBLY,
        'index=linux sourcetype="sysmon:linux" EventID=1 ("/proc/" OR gcore)',
        'index=linux sourcetype=linux_audit [ search index=linux sourcetype=linux_audit type=SYSCALL key="k" '
        '| eval search="TERM(1:2)" | table search ]' + ASSEMBLY,
    ]
    assert [check_spl_cost(q) for q in ok] == [[], [], []]
    # a term under OR with an unselective branch, or under NOT, selects nothing
    assert check_spl_cost('index=linux sourcetype=t ("/proc/" OR EventID=1)')[0].check == "spl-selective-base"
    assert check_spl_cost('index=linux sourcetype=t NOT "/proc/"')[0].check == "spl-selective-base"
    # an appended search is checked as well, and so is a subsearch's own base search
    appended = 'index=linux sourcetype=t "/proc/" | append [ search index=linux sourcetype=t | eval a=1 ]'
    assert [v.clause for v in check_spl_cost(appended)] == ["sourcetype=t"]
    nested = 'index=linux sourcetype=t [ search index=linux sourcetype=u | eval search="TERM(a)" | table search ]'
    assert [v.clause for v in check_spl_cost(nested)] == ["sourcetype=u"]


def test_a_regex_without_a_term_filter_on_its_column_is_refused(tmp_path):
    kql = 'DeviceFileEvents\n| where FolderPath matches regex "^/proc/[0-9]+/mem$"'
    problems = check_cost({"conversions/sentinel/x.kql": kql, "conversions/manifest.json": MANIFEST}, tmp_path)
    assert [(p.line, p.message) for p in problems] == [(2, (
        'cost (rule ProcMemAccess, target sentinel): kql-regex-prefilter: `FolderPath matches regex '
        '"^/proc/[0-9]+/mem$"` has no cheap filter (has, startswith, in, ==) on FolderPath before it in the same '
        'conjunction: Kusto scans every row with it'))]


def test_the_filter_must_be_on_the_same_column_and_in_the_same_conjunction():
    def clauses(where: str) -> list[str]:
        return [v.clause for v in check_kql_cost(f"T\n| where {where}")]
    assert clauses('C has "a" and C matches regex "x"') == []
    assert clauses('(C has "a" and D == 1) and C contains "x"') == []
    assert clauses('C startswith "a"\n| extend Z = 1\n| where C contains "x"') == []
    assert clauses('D has "a" and C matches regex "x"') == ['C matches regex "x"']
    assert clauses('C has "a" or C matches regex "x"') == ['C matches regex "x"']
    assert clauses('(C has "a" or D == 1) and C contains "x"') == ['C contains "x"']
    assert clauses('not(C has "a") and C contains "x"') == ['C contains "x"']


def test_exceptions_need_a_reason_and_must_still_be_needed(tmp_path):
    (tmp_path / "sigma").mkdir()
    (tmp_path / "sigma" / "cost_exceptions.yml").write_text(
        "exceptions:\n"
        "  - check: [kql-regex-prefilter]\n    clause: 'C matches regex \"x\"'\n    reason: no term in x\n"
        "  - check: [kql-regex-prefilter]\n    clause: 'C matches regex \"y\"'\n    reason: gone\n"
        "  - check: [kql-regex-prefilter]\n    clause: 'C matches regex \"z\"'\n")
    problems = check_cost({"q.kql": 'T | where C matches regex "x"'}, tmp_path)
    assert [p.message for p in problems] == [
        "exception 3 needs check: [..], clause and reason",
        "exception for ['kql-regex-prefilter'] `C matches regex \"y\"` is not needed by any generated query: remove it"]


def test_every_shipped_query_meets_the_cost_rules_or_is_a_listed_exception():
    files = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
             for p in (ROOT / "conversions").rglob("*") if p.suffix in (".spl", ".kql", ".json")}
    assert [str(p) for p in check_cost(files, ROOT)] == []
