"""Generated queries: pinned by golden files, deterministic, and faithful to the rules' meaning."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

from sigma.backends.splunk import SplunkBackend
from sigma.collection import SigmaCollection
from sigma.processing.pipeline import ProcessingPipeline

from conftest import REPO, run_dac, snapshot
from dac.compile.splunk_backend import DacSplunkBackend


def test_checked_in_conversions_match_the_rules(capsys):
    """Golden files: a pySigma/backend upgrade or a rule edit that changes a query fails here."""
    assert run_dac("convert", "--check") == 0, capsys.readouterr().out


def test_stale_conversion_is_reported_with_a_diff_then_rewritten(sandbox, capsys):
    rule = sandbox.rules / "linux/process_creation/proc_creation_lnx_mimipenguin.yml"
    rule.write_text(rule.read_text().replace("'/mimipenguin'", "'/mimipenguin2'"))
    assert run_dac("convert", "--check") == 1
    out = capsys.readouterr().out
    assert '-| where (FolderPath endswith "/mimipenguin" or' in out
    assert '+| where (FolderPath endswith "/mimipenguin2" or' in out
    assert run_dac("convert") == 0
    assert run_dac("convert", "--check") == 0


def test_removed_rule_deletes_its_artifacts(sandbox, capsys):
    (sandbox.rules / "linux/tracee/lnx_tracee_proc_mem_access.yml").unlink()
    assert run_dac("convert", "--check") == 1
    assert "stale (no rule generates it): conversions/splunk_tracee/lnx_tracee_proc_mem_access.spl" in capsys.readouterr().out
    assert run_dac("convert") == 0
    assert not (sandbox.conversions / "splunk_tracee" / "lnx_tracee_proc_mem_access.spl").exists()
    assert (sandbox.conversions / "splunk_tracee" / "file_access_lnx_proc_mem_access.spl").exists()   # other rules keep theirs


def test_output_is_byte_identical_across_processes():
    script = textwrap.dedent("""
        import hashlib, json
        from dac.core.repo import Layout
        from dac.rules.ruleset import load_rules
        from dac.compile.targets import load_targets
        from dac.compile.convert import compile_rules
        from dac.artifacts.build import build_artifacts
        layout = Layout(__import__('pathlib').Path(%r))
        targets, config = load_targets(layout)
        files = build_artifacts(compile_rules(load_rules(layout), targets), config, layout)
        print(hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest())
    """ % str(REPO))
    digests = {subprocess.run([sys.executable, "-c", script], env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2", "3")}
    assert len(digests) == 1


def test_each_rule_compiles_to_the_targets_its_telemetry_reaches():
    manifest = json.loads((REPO / "conversions/manifest.json").read_text())
    matrix = {}
    for entry in manifest["artifacts"]:
        matrix.setdefault(entry["rule_name"], set()).add(entry["target"])
    file_reads = {"sentinel", "splunk_auditd", "splunk_tracee"}        # Defender, auditd, Tracee security_file_open
    # Defender, auditd execve, Sysmon EID 1, Tracee sched_process_exec
    process_creation = {"sentinel", "splunk_auditd", "splunk_sysmon", "splunk_tracee"}
    assert matrix == {
        "ProcMemAccess": file_reads, "ProcMapsEnvironRead": file_reads, "ProcMapsThenMemRead": file_reads,
        "DebuggerCoreDumpReads": file_reads, "ProcEnvironSweep": file_reads,
        "ProcEnvironManualSweep": process_creation,
        "MimiPenguin": process_creation, "LaZagne": process_creation, "ProcMemManualDump": process_creation,
        "ProcMapsEnvironManualRead": process_creation, "DebuggerMemoryDump": process_creation,
        "AuditdProcMemOpen": {"splunk_auditd"},
        "TraceeProcMemAccess": {"splunk_tracee"},
    }
    tracee = [e for e in manifest["artifacts"] if e["rule_name"] == "ProcMemAccess"][0]["tracee"]
    assert tracee == {"signature": "TRC-1023", "severity": 3, "category": "credential-access"}


def _kql_regexes(text: str) -> list[str]:
    return [bytes(m, "utf-8").decode("unicode_escape") for m in re.findall(r'matches regex "((?:[^"\\]|\\.)*)"', text)]


def _spl_regexes(text: str) -> list[str]:
    found = re.findall(r'rex field=\S+ "\(\?<\w+>((?:[^"\\]|\\.)*)\)"', text)
    return [m.replace('\\"', '"').replace("\\\\", "\\") for m in found]


def _credential_regex(regexes: list[str]) -> re.Pattern:
    return re.compile(next(r for r in regexes if "sshd" in r and "lightdm" in r))


def test_whole_word_credential_targets_survive_compilation():
    """The seed meant has_any("sshd", …): whole terms. MimiPenguin's target names must not match
    inside other words in any compiled query."""
    kql = (REPO / "conversions/sentinel/proc_creation_lnx_mimipenguin.kql").read_text()
    spl = (REPO / "conversions/splunk_sysmon/proc_creation_lnx_mimipenguin.spl").read_text()
    for regex in (_credential_regex(_kql_regexes(kql)), _credential_regex(_spl_regexes(spl))):
        assert regex.search("grep -E ^[0-9a-f-]* r /proc/1874/maps sshd")
        assert regex.search("strings /proc/$(pidof GNOME-KEYRING-DAEMON)/environ")   # case-insensitive, like has_any
        assert regex.search("cat /proc/$(pidof kwalletd5)/maps")
        assert not regex.search("cat /proc/1/maps ./sshdump")                         # not a word of its own
        assert not regex.search("grep lightdmx /proc/1/maps")


def test_debugger_dump_commands_are_matched_and_attaches_are_not():
    kql = (REPO / "conversions/sentinel/proc_creation_lnx_debugger_memory_dump.kql").read_text()
    dump = re.compile(next(r for r in _kql_regexes(kql) if "generate-core-file" in r))
    assert dump.search('gdb -p 1874 -batch -ex dump memory /tmp/x 0x1 0x2')
    assert dump.search("gdb --pid 2310 --batch -ex dump binary memory /dev/shm/gk.bin 0x1 0x2")
    assert dump.search("/usr/bin/gdb --nx --batch -ex attach 1377 -ex gcore /tmp/apache.1377")
    assert not dump.search("gdb -p 5120")
    assert not dump.search("gdb -ex 'info memory' ./server")


def test_lazagne_module_argument_is_a_whole_argument():
    kql = (REPO / "conversions/sentinel/proc_creation_lnx_lazagne_memory.kql").read_text()
    module = re.compile(next(r for r in _kql_regexes(kql) if "memory" in r))
    assert module.search("python3 laZagne.py all")
    assert module.search("./lazagne memory -v")
    assert not module.search("python3 laZagne.py browsers --allusers")
    assert not module.search("python3 laZagne.py wifi -oA /tmp/allmemory")


def test_hunting_query_is_the_seed_shape_generated_from_rules():
    kql = (REPO / "conversions/hunting/t1003_007_hunting.sentinel.kql").read_text()
    assert kql.startswith("let ProcMemAccess = DeviceFileEvents\n| where Timestamp > ago(24h)\n")
    for name in ("MimiPenguin", "LaZagne", "ProcMemManualDump"):
        assert f"\nlet {name} = DeviceProcessEvents\n| where Timestamp > ago(24h)\n" in kql
    # the seed's three first, then every other rule of the technique (alert and hunting tier), by name
    assert ("\nunion ProcMemAccess, MimiPenguin, LaZagne, DebuggerMemoryDump, ProcMapsEnvironManualRead, "
            "ProcMapsEnvironRead, ProcMemManualDump\n| sort by Timestamp desc\n") in kql
    # DeviceFileEvents has no AccountName column (the seed's hand-written query used it)
    assert "AccountName = InitiatingProcessAccountName" in kql.split("let MimiPenguin")[0]
    assert kql.count('Detection = "') == 7
    spl = (REPO / "conversions/hunting/t1003_007_hunting.splunk.spl").read_text()
    assert spl.startswith("index=linux earliest=-24h latest=now sourcetype IN (\"linux_audit\", \"linux:audit\")")
    assert spl.count("| append [ search index=linux earliest=-24h latest=now ") == 20   # 21 rule x target branches
    assert spl.endswith("| table _time host detection target user path process command_line\n| sort 0 - _time\n")


def test_every_spl_artifact_starts_with_an_explicit_base_search():
    for path in sorted((REPO / "conversions").rglob("*.spl")):
        assert path.read_text().startswith("index="), path


NOT_REGEX_RULE = """
title: t
id: 0b1e4a52-3c5e-4c83-8f7a-4f6c0c2f4f00
logsource: {product: linux, category: process_creation}
detection:
    sel: {CommandLine|contains: '/proc/'}
    dbg: {Image|endswith: '/gdb'}
    cred: {CommandLine|re: '\\bsshd\\b'}
    condition: sel and not (dbg and not cred)
"""


def test_splunk_backend_keeps_regex_inside_not():
    """Stock pySigma-backend-splunk turns `not (dbg and not cred)` into `NOT dbg | regex cred!=`."""
    rule = SigmaCollection.from_yaml(NOT_REGEX_RULE).rules[0]
    stock = SplunkBackend(ProcessingPipeline()).convert_rule(rule)[0]
    assert stock.endswith('| regex CommandLine!="\\\\bsshd\\\\b"')          # the silent mis-translation
    rule = SigmaCollection.from_yaml(NOT_REGEX_RULE).rules[0]
    ours = DacSplunkBackend(ProcessingPipeline()).convert_rule(rule)[0]
    assert '| search CommandLine="*/proc/*" NOT (Image="*/gdb" NOT CommandLineCondition="true")' in ours
    assert "| regex" not in ours


def test_build_refuses_to_write_when_a_query_fails_validation(sandbox, capsys):
    """A pipeline mapping to a column the Defender table does not have fails the analyzer: nothing written."""
    pipeline = sandbox.sigma / "pipelines/sentinel_defender_xdr.yml"
    pipeline.write_text(pipeline.read_text().replace("TargetFilename: FolderPath", "TargetFilename: TargetFilePath"))
    before = snapshot(sandbox.conversions)
    assert run_dac("build") == 1
    captured = capsys.readouterr()
    assert "conversions/sentinel/file_access_lnx_proc_mem_access.kql:3: Error KS142" in captured.err
    assert "'TargetFilePath'" in captured.err
    assert "nothing written" in captured.err
    assert snapshot(sandbox.conversions) == before
