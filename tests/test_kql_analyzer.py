"""Microsoft's Kusto.Language analyzer, driven through dac.compile.kql_analyzer, against the repo's schemas."""
from __future__ import annotations

import pytest

from conftest import REPO
from dac.compile.kql_analyzer import analyze, is_error, load_schemas

ANALYZER = REPO / "tools" / "kusto-analyzer"


@pytest.fixture(scope="module")
def tables():
    return load_schemas(REPO / "sentinel" / "schemas")


def check(tables, **queries):
    return analyze(queries, tables, ANALYZER)


def errors(diagnostics):
    return [(d.code, d.line) for d in diagnostics if is_error(d)]


def test_schemas_hold_the_real_defender_columns(tables):
    files = dict(tables["DeviceFileEvents"])
    procs = dict(tables["DeviceProcessEvents"])
    assert files["FolderPath"] == "string" and files["InitiatingProcessId"] == "long" and files["Timestamp"] == "datetime"
    assert "AccountName" not in files and "InitiatingProcessAccountName" in files
    assert procs["AccountName"] == "string" and procs["ProcessCommandLine"] == "string"


def test_failures_are_errors_with_code_and_line(tables):
    result = check(tables,
                   table='Nope\n| take 1',
                   column='DeviceFileEvents\n| where AccountName == "root"',
                   function='DeviceFileEvents\n| where frobnicate(FolderPath)',
                   syntax='DeviceFileEvents\n| where')
    assert errors(result["table"]) == [("KS204", 1)]
    assert errors(result["column"]) == [("KS142", 2)]
    assert errors(result["function"]) == [("KS211", 2)]
    assert errors(result["syntax"]) == [("KS006", 2)]


def test_seed_query_shape_is_clean_and_hints_are_reported(tables):
    query = """let A = DeviceFileEvents
| where Timestamp > ago(24h)
| where FolderPath matches regex @"/proc/\\d+/mem" and InitiatingProcessFileName !in~ ("gdb", "strace")
| extend TargetProcessId = extract(@"^/proc/([0-9]+)/", 1, FolderPath)
| project Timestamp, DeviceName, AccountName = InitiatingProcessAccountName, TargetProcessId;
let B = DeviceProcessEvents
| where ProcessCommandLine has_any ("mimipenguin", "sshd") and ProcessCommandLine contains "proc"
| project Timestamp, DeviceName, AccountName, TargetProcessId = "";
let C = A | join kind=inner (B | project-rename BTime = Timestamp) on DeviceName
| where BTime between (Timestamp .. (Timestamp + 60s))
| summarize count() by DeviceName, bin(Timestamp, 1m);
union A, B
| sort by Timestamp desc"""
    diagnostics = check(tables, q=query)["q"]
    assert errors(diagnostics) == []
    assert ("KS500", "Suggestion") in [(d.code, d.severity) for d in diagnostics]


def test_the_seeds_hand_written_query_fails_where_we_said(tables):
    """The seed projected AccountName from DeviceFileEvents, a column that table does not have."""
    seed = ('DeviceFileEvents\n| where FolderPath matches regex @"/proc/\\d+/mem"\n'
            '| project Timestamp, DeviceName, AccountName, FolderPath')
    assert errors(check(tables, seed=seed)["seed"]) == [("KS142", 3)]


def test_every_generated_kql_artifact_is_clean(tables):
    queries = {p.relative_to(REPO).as_posix(): p.read_text() for p in sorted((REPO / "conversions").rglob("*.kql"))}
    assert len(queries) >= 6
    for name, diagnostics in check(tables, **{k.replace("/", "_").replace(".", "_"): v for k, v in queries.items()}).items():
        assert errors(diagnostics) == [], name
