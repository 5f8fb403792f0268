"""The generated Splunk app (splunk/<app id>/): stanzas keyed by rule id, alert settings, .conf
syntax, deterministic packaging, and Splunk's own offline validators (slim, AppInspect)."""
from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from dac.rules.tiers import is_alert
import yaml

from conftest import REPO
from dac.compile.convert import compile_rules
from dac.core.problems import DacError
from dac.core.repo import Layout
from dac.rules.ruleset import load_rules
from dac.artifacts.splunk_app import build_app_files, generated_app_dirs, package_app, package_splunk, stale_app_files
from dac.artifacts.splunk_searches import SavedSearch, owned_marker, parse_owner, render_savedsearches, saved_searches, stanza_name
from dac.artifacts.splunk_conf import parse_conf, render_conf
from dac.artifacts.splunk_config import CONFIG_FILE, SEVERITY, AppConfig, load_app_config, parse_app_config
from dac.compile.compose import hunting_specs
from dac.compile.targets import load_targets

CORRELATION_ID = "7f62ffeb-b4af-469a-9871-1df4005ee729"      # ProcMapsThenMemRead
ES_KEYS = ("action.correlationsearch.enabled", "action.correlationsearch.label", "action.notable",
           "action.notable.param.rule_title", "action.notable.param.rule_description",
           "action.notable.param.security_domain", "action.notable.param.severity", "action.risk",
           "action.risk.param._risk")


def compile_repo(layout: Layout):
    targets, config = load_targets(layout)
    return compile_rules(load_rules(layout), targets), config


@pytest.fixture(scope="module")
def compiled():
    return compile_repo(Layout(REPO))


@pytest.fixture(scope="module")
def raw_config() -> dict:
    return yaml.safe_load((REPO / CONFIG_FILE).read_text())


@pytest.fixture(scope="module")
def app_config() -> AppConfig:
    return load_app_config(Layout(REPO))


@pytest.fixture
def app_sandbox(sandbox) -> Layout:
    """The conftest sandbox with splunk/ (app.yml and the checked-in app) copied in."""
    if not (sandbox.root / "splunk").exists():
        shutil.copytree(REPO / "splunk", sandbox.root / "splunk")
    return sandbox


def es_config(raw: dict) -> AppConfig:
    data = copy.deepcopy(raw)
    data["enterprise_security"]["enabled"] = True
    return parse_app_config(data)


def searches_by_name(queries, config, targets_config) -> dict[str, SavedSearch]:
    specs = hunting_specs(targets_config, "sigma/targets.yml")
    return {s.name: s for s in saved_searches(queries, config, specs)}


# --------------------------------------------------------------------------- checked in, stable

def test_checked_in_app_is_what_the_rules_generate(compiled, app_config):
    queries, config = compiled
    layout = Layout(REPO)
    files = build_app_files(queries, config, layout)
    assert set(files) == {f"splunk/{app_config.app.id}/{p}" for p in (
        "README.md", "app.manifest", "default/app.conf", "default/savedsearches.conf", "metadata/default.meta")}
    assert stale_app_files(files, layout, app_config) == [], "run `dac convert` (or build_app_files) and commit"


def test_app_files_are_byte_identical_across_processes():
    script = textwrap.dedent("""
        import hashlib, json, pathlib
        from dac.core.repo import Layout
        from dac.rules.ruleset import load_rules
        from dac.compile.targets import load_targets
        from dac.compile.convert import compile_rules
        from dac.artifacts.splunk_app import build_app_files
        layout = Layout(pathlib.Path(%r))
        targets, config = load_targets(layout)
        files = build_app_files(compile_rules(load_rules(layout), targets), config, layout)
        print(hashlib.sha256(json.dumps(files).encode()).hexdigest())
    """ % str(REPO))
    digests = {subprocess.run([sys.executable, "-c", script], env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2", "3")}
    assert len(digests) == 1


def test_one_stanza_per_splunk_query_keyed_by_rule_id_and_target(compiled, app_config):
    queries, config = compiled
    searches = searches_by_name(queries, app_config, config)
    splunk = [q for q in queries if q.target.siem == "splunk"]
    expected = {f"dac-{str(q.rule.rule.id).lower()}-{q.target.name}" for q in splunk}
    assert len(expected) == len(splunk)
    assert set(searches) == expected | {"dac-hunting-t1003_007_hunting"}
    assert list(searches) == sorted(searches)
    for q in splunk:
        search = searches[stanza_name(str(q.rule.rule.id), q.target.name)]
        assert search.attributes["search"] == q.text.strip()
        assert parse_owner(search.attributes["description"]) == (str(q.rule.rule.id), q.target.name)
        assert search.attributes["description"].splitlines()[0] == q.rule.rule.title
        assert all(isinstance(v, str) for v in search.attributes.values())
    assert not any(q.target.name in name for name in searches for q in queries if q.target.siem != "splunk")


def test_renaming_a_rule_keeps_its_stanza(app_sandbox):
    rule = app_sandbox.rules / "linux/process_creation/proc_creation_lnx_mimipenguin.yml"
    before_queries, config = compile_repo(app_sandbox)
    before = searches_by_name(before_queries, load_app_config(app_sandbox), config)
    text = rule.read_text()
    rule.write_text(text.replace("title: MimiPenguin Credential Dumper Execution", "title: MimiPenguin Renamed")
                        .replace("name: MimiPenguin\n", "name: MimiPenguinRenamed\n"))
    after_queries, config = compile_repo(app_sandbox)
    after = searches_by_name(after_queries, load_app_config(app_sandbox), config)
    assert set(after) == set(before)
    renamed = [n for n in after if n.startswith("dac-fa334ad3-0d80-4ce5-b92d-696792e9dab8-")]
    assert sorted(renamed) == ["dac-fa334ad3-0d80-4ce5-b92d-696792e9dab8-splunk_auditd",
                               "dac-fa334ad3-0d80-4ce5-b92d-696792e9dab8-splunk_sysmon",
                               "dac-fa334ad3-0d80-4ce5-b92d-696792e9dab8-splunk_tracee"]
    for name in renamed:
        assert after[name].attributes["description"].startswith("MimiPenguin Renamed\n")
    # the app on disk is now stale, and packaging refuses it until `dac convert` rewrites it
    app_config = load_app_config(app_sandbox)
    files = build_app_files(after_queries, config, app_sandbox)
    assert stale_app_files(files, app_sandbox, app_config) == [
        "splunk/dac_detections/README.md", "splunk/dac_detections/default/savedsearches.conf"]
    with pytest.raises(DacError, match="run `dac convert`"):
        package_splunk(app_sandbox, after_queries, config, app_sandbox.root / "dist")


# --------------------------------------------------------------------------- alert settings

def test_severity_follows_the_sigma_level(compiled, app_config):
    assert SEVERITY == {"informational": "2", "low": "3", "medium": "4", "high": "5", "critical": "6"}
    queries, config = compiled
    searches = searches_by_name(queries, app_config, config)
    levels = set()
    for q in (q for q in queries if q.target.siem == "splunk" and is_alert(q.rule)):
        level = q.rule.rule.level.name.lower()
        levels.add(level)
        assert searches[stanza_name(str(q.rule.rule.id), q.target.name)].attributes["alert.severity"] == SEVERITY[level]
    assert {"high"} <= levels


def test_hunting_tier_rules_are_saved_searches_without_an_alert(compiled, app_config):
    queries, config = compiled
    searches = searches_by_name(queries, app_config, config)
    hunting = [q for q in queries if q.target.siem == "splunk" and not is_alert(q.rule)]
    assert {q.rule.name for q in hunting} == {"ProcMapsEnvironRead", "ProcMapsEnvironManualRead", "AuditdProcMemOpen",
                                              "TraceeProcMemAccess"}
    for q in hunting:
        a = searches[stanza_name(str(q.rule.rule.id), q.target.name)].attributes
        assert a["enableSched"] == "0" and a["dispatch.earliest_time"] == "-7d@d", q.rule.name
        assert not any(k.startswith(("alert.", "action.", "cron")) for k in a), q.rule.name


def test_every_stanza_is_a_scheduled_suppressed_alert(compiled, app_config):
    queries, config = compiled
    searches = searches_by_name(queries, app_config, config)
    hunting_tier = {stanza_name(str(q.rule.rule.id), q.target.name) for q in queries
                    if q.target.siem == "splunk" and not is_alert(q.rule)}
    for name, search in searches.items():
        if name in hunting_tier:
            continue
        a = search.attributes
        assert {k: a[k] for k in ("enableSched", "counttype", "relation", "quantity", "alert.track",
                                  "alert.digest_mode", "alert.suppress")} == {
            "enableSched": "1", "counttype": "number of events", "relation": "greater than", "quantity": "0",
            "alert.track": "1", "alert.digest_mode": "0", "alert.suppress": "1"}, name
        assert a["alert.suppress.fields"] and a["alert.suppress.period"]
        if not name.startswith("dac-hunting-"):
            assert (a["cron_schedule"], a["dispatch.earliest_time"], a["dispatch.latest_time"],
                    a["alert.suppress.period"]) == ("*/15 * * * *", "-20m@m", "now", "1h")
    by_target = {name.rsplit("-", 1)[1]: searches[name].attributes["alert.suppress.fields"]
                 for name in searches if CORRELATION_ID not in name and not name.startswith("dac-hunting-")
                 and name not in hunting_tier}
    assert by_target == {"splunk_auditd": "host,exe", "splunk_sysmon": "host,Image", "splunk_tracee": "host,processName"}
    # the correlation's results have no host column: its override names the chain's fields
    assert searches[f"dac-{CORRELATION_ID}-splunk_auditd"].attributes["alert.suppress.fields"] == \
        "Computer,TargetProcessId"
    hunting = searches["dac-hunting-t1003_007_hunting"].attributes
    assert (hunting["cron_schedule"], hunting["dispatch.earliest_time"], hunting["alert.suppress.fields"],
            hunting["alert.severity"]) == ("7 6 * * *", "-24h", "host,detection", "3")
    assert parse_owner(hunting["description"]) == ("t1003_007_hunting", "hunting")


def test_enterprise_security_settings_only_when_enabled(compiled, app_config, raw_config):
    queries, config = compiled
    assert app_config.es["enabled"] is False
    plain = searches_by_name(queries, app_config, config)
    assert not any(k.startswith("action.") for s in plain.values() for k in s.attributes)

    searches = searches_by_name(queries, es_config(raw_config), config)
    assert set(searches) == set(plain)
    for name, search in searches.items():
        a = search.attributes
        if name.startswith("dac-hunting-") or a.get("enableSched") == "0":
            assert not any(k.startswith("action.") for k in a), "hunting searches are not correlation searches"
            continue
        assert all(k in a for k in ES_KEYS), name
        assert {k: v for k, v in a.items() if not k.startswith("action.")} == plain[name].attributes
        level = next(lvl for lvl, sev in SEVERITY.items() if sev == a["alert.severity"])
        assert a["action.correlationsearch.enabled"] == a["action.notable"] == a["action.risk"] == "1"
        assert a["action.notable.param.security_domain"] == "endpoint"
        assert a["action.notable.param.severity"] == level
        assert json.loads(a["action.correlationsearch.annotations"]) == {"mitre_attack": ["T1003.007"]}
        risk = json.loads(a["action.risk.param._risk"])
        expected_field = "Computer" if CORRELATION_ID in name else "host"
        assert risk == [{"risk_object_field": expected_field, "risk_object_type": "system",
                         "risk_score": raw_config["enterprise_security"]["risk_score"][level]}]


@pytest.mark.parametrize("old, new, message, at", [
    ('cron_schedule: "*/15 * * * *"', 'cron_schedule: "every 5 minutes"',
     "`schedule.cron_schedule` 'every 5 minutes' is not a five-field cron expression", None),
    ('earliest_time: "-20m@m"', 'earliest_time: "rt-5m"', "`schedule.earliest_time` 'rt-5m' is not a Splunk time", None),
    ("version: 1.0.0", "version: '1.0'", "`app.version` '1.0' is not a semantic version", None),
    ("id: dac_detections", "id: dac detections", "`app.id` 'dac detections' is not an app id", None),
    ("  period: 1h", "  perod: 1h", "unknown key `suppress.perod`", None),
    ("    default: [host]", "    other: [host]", "`suppress.fields` needs a `default` entry", "  fields:\n    other"),
    ("    low: 25", "    lo: 25", "`enterprise_security.risk_score` must map every Sigma level", "  risk_score:"),
    ("  7f62ffeb-b4af-469a-9871-1df4005ee729:", "  00000000-0000-0000-0000-000000000000:",
     "override for unknown rule id '00000000-0000-0000-0000-000000000000'", None),
])
def test_config_problems_name_file_line_and_key(app_sandbox, old, new, message, at):
    """Each problem names splunk/app.yml and the line of the key (`at`: of the enclosing mapping)."""
    config = app_sandbox.root / CONFIG_FILE
    text = config.read_text()
    assert text.count(old) == 1
    config.write_text(text.replace(old, new))
    text = config.read_text()
    anchor = at or new
    assert text.count(anchor) == 1, anchor
    line = text[:text.index(anchor)].count("\n") + 1
    queries, targets_config = compile_repo(app_sandbox)
    with pytest.raises(DacError) as error:
        build_app_files(queries, targets_config, app_sandbox)
    problems = [str(p) for p in error.value.problems]
    assert all(p.startswith("splunk/app.yml:") for p in problems), problems
    matching = [p for p in problems if message in p]
    assert len(matching) == 1, problems
    assert int(matching[0].split(":")[1]) == line, (line, problems)


def test_no_app_config_means_no_app(sandbox, compiled):
    shutil.rmtree(sandbox.root / "splunk", ignore_errors=True)
    queries, config = compiled
    assert build_app_files(queries, config, sandbox) == {}
    assert generated_app_dirs(sandbox) == []


def test_generated_app_dirs_include_an_app_left_behind_by_an_id_change(app_sandbox):
    config = app_sandbox.root / CONFIG_FILE
    config.write_text(config.read_text().replace("id: dac_detections ", "id: dac_renamed "))
    assert generated_app_dirs(app_sandbox) == [app_sandbox.root / "splunk/dac_detections",
                                               app_sandbox.root / "splunk/dac_renamed"]


# --------------------------------------------------------------------------- ownership marker

def test_owner_marker_round_trips_and_only_counts_as_last_line():
    rule_id = "fa334ad3-0d80-4ce5-b92d-696792e9dab8"
    marker = owned_marker(rule_id, "splunk_sysmon")
    assert marker == ("Managed by dac from sigma rule fa334ad3-0d80-4ce5-b92d-696792e9dab8 (target splunk_sysmon); "
                      "edit the Sigma rule, not this search.")
    assert parse_owner(f"Title\nText\n{marker}") == (rule_id, "splunk_sysmon")
    assert parse_owner(f"Title\r\nText\r\n{marker}\n  \n") == (rule_id, "splunk_sysmon")
    assert parse_owner(f"Title\n{marker}\ndac-hash: 0123456789abcdef") == (rule_id, "splunk_sysmon")   # as deployed
    assert parse_owner(f"{marker}\nI copied this search and changed it") is None
    assert parse_owner("A hand-written search") is None
    assert parse_owner("") is None and parse_owner(None) is None
    hunting = owned_marker("t1003_007_hunting", "hunting")
    assert hunting == ("Managed by dac from hunting query t1003_007_hunting (target hunting); "
                       "edit the Sigma rules, not this search.")
    assert parse_owner(f"{hunting}\ndac-hash: 0123456789abcdef\n") == ("t1003_007_hunting", "hunting")
    assert stanza_name(*parse_owner(hunting)) == "dac-hunting-t1003_007_hunting"
    assert stanza_name(*parse_owner(marker)) == f"dac-{rule_id}-splunk_sysmon"


# --------------------------------------------------------------------------- .conf syntax

TRICKY = "\n".join([
    'index=linux sourcetype=x "a = b"',
    "    | search path=C:\\temp\\",      # ends in a backslash: kept, the continuation adds its own
    "[ not a stanza ]",
    "# not a comment",
    "key = not a setting",
    "| table x",
])
TRICKY_ATTRIBUTES = {"search": TRICKY, "description": "one\ntwo\nthree", "enableSched": "1"}


def appinspect_parse(text: str) -> dict[str, dict[str, str]]:
    """Splunk AppInspect's own .conf parser (splunk_appinspect.configuration_parser)."""
    from splunk_appinspect.configuration_file import ConfigurationFile
    from splunk_appinspect.configuration_parser import configuration_lexer, parse
    conf = parse(text, ConfigurationFile(), configuration_lexer)
    assert not conf.errors, conf.errors
    return {section.name: {o.name: o.value for o in section.options.values()} for section in conf.sections()}


def test_multiline_values_round_trip():
    text = render_conf([("dac-x", TRICKY_ATTRIBUTES)])
    assert "\n[ not a stanza ]\\\n" in text and "\n    | search path=C:\\temp\\\\\n" in text
    assert parse_conf(text) == {"dac-x": TRICKY_ATTRIBUTES}


@pytest.mark.parametrize("value", ["ends with a backslash\\", " leading space", "trailing space ", "a\r\nb"])
def test_values_the_conf_syntax_cannot_hold_are_refused(value):
    with pytest.raises(ValueError):
        render_conf([("s", {"search": value})])


def test_generated_savedsearches_round_trip(compiled, app_config):
    queries, config = compiled
    searches = list(searches_by_name(queries, app_config, config).values())
    text = render_savedsearches(searches)
    expected = {s.name: s.attributes for s in searches}
    assert any("\n" in s.attributes["search"] for s in searches)
    assert parse_conf(text) == expected
    checked_in = (REPO / f"splunk/{app_config.app.id}/default/savedsearches.conf").read_text()
    assert parse_conf(checked_in) == expected


# --------------------------------------------------------------------------- packaging

def _touch_all(folder: Path, when: int) -> None:
    for path in folder.rglob("*"):
        os.utime(path, (when, when))


def test_package_is_deterministic(tmp_path, app_config):
    app = tmp_path / "src" / app_config.app.id
    shutil.copytree(REPO / "splunk" / app_config.app.id, app)
    first = package_app(app, tmp_path / "a")
    _touch_all(app, 2_000_000_000)
    for path in app.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    second = package_app(app, tmp_path / "b")
    assert first.name == second.name == f"{app_config.app.id}-{app_config.app.version}.tgz"
    assert first.read_bytes() == second.read_bytes()
    assert not [p for p in (tmp_path / "a").iterdir() if p != first], "no temporary file left behind"

    raw = first.read_bytes()
    assert raw[4:8] == b"\x00\x00\x00\x00" or int.from_bytes(raw[4:8], "little") == 315532800   # gzip mtime
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert names[0] == app_config.app.id and all(n == names[0] or n.startswith(names[0] + "/") for n in names)
    assert {n.split("/", 1)[1] for n in names[1:] if members[names.index(n)].isfile()} == {
        "README.md", "app.manifest", "default/app.conf", "default/savedsearches.conf", "metadata/default.meta"}
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "root", "root", 315532800)
        assert m.mode == (0o755 if m.isdir() else 0o644), m.name


def test_package_refuses_a_folder_that_is_not_the_app(tmp_path):
    shutil.copytree(REPO / "splunk/dac_detections", tmp_path / "other_name")
    with pytest.raises(ValueError, match="differs from the folder name"):
        package_app(tmp_path / "other_name", tmp_path / "dist")
    with pytest.raises(FileNotFoundError):
        package_app(tmp_path, tmp_path / "dist")


def test_package_splunk_builds_the_checked_in_app(compiled, tmp_path):
    queries, config = compiled
    tgz = package_splunk(Layout(REPO), queries, config, tmp_path)
    assert tgz == tmp_path / "dac_detections-1.0.0.tgz"
    with tarfile.open(tgz) as tar:
        conf = tar.extractfile("dac_detections/default/savedsearches.conf").read().decode()
    assert conf == (REPO / "splunk/dac_detections/default/savedsearches.conf").read_text()


# --------------------------------------------------------------------------- Splunk's validators

def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False


needs_slim = pytest.mark.skipif(not _installed("splunk-packaging-toolkit"),
                                reason="splunk-packaging-toolkit (slim) is not installed: pip install -r requirements.lock")
needs_appinspect = pytest.mark.skipif(not _installed("splunk-appinspect"),
                                      reason="splunk-appinspect is not installed: pip install -r requirements.lock")


@pytest.fixture(params=["default", "enterprise_security"])
def package(request, tmp_path, compiled, raw_config) -> Path:
    """The tarball of the app as configured, and of the same app with Enterprise Security enabled."""
    queries, config = compiled
    layout = Layout(REPO)
    app_config = load_app_config(layout) if request.param == "default" else es_config(raw_config)
    files = build_app_files(queries, config, layout, app_config)
    root = tmp_path / "src"
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    return package_app(root / "splunk" / app_config.app.id, tmp_path / "dist")


def _tool_env(tmp_path: Path) -> dict[str, str]:
    # slim keeps a package cache under ~/.config/slim: keep it in the test's folder
    return {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}


SLIM = "import sys; from slim.__main__ import main; sys.argv[0] = 'slim'; sys.exit(main())"


@needs_slim
def test_slim_validate(package, tmp_path):
    run = subprocess.run([sys.executable, "-c", SLIM, "validate", str(package)], env=_tool_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    print(output)
    problems = [line for line in output.splitlines() if any(t in line for t in ("[WARNING]", "[ERROR]", "[FATAL]"))]
    assert run.returncode == 0, output
    assert "App validation complete" in output, output
    assert not problems, "slim validate reported:\n" + "\n".join(problems)


APPINSPECT = ("import sys; from splunk_appinspect.main import execute; "
              "sys.argv[0] = 'splunk-appinspect'; sys.exit(execute())")


@needs_appinspect
def test_appinspect_precert(package, tmp_path):
    report = tmp_path / "appinspect.json"
    # --skip-trusted-libraries-update: the only thing AppInspect downloads; everything else is offline
    run = subprocess.run([sys.executable, "-c", APPINSPECT, "inspect", str(package), "--mode", "precert",
                          "--skip-trusted-libraries-update", "--data-format", "json", "--output-file", str(report)],
                         env=_tool_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert report.is_file(), run.stdout[-5000:] + run.stderr[-5000:]
    document = json.loads(report.read_text())
    summary = document["summary"]
    print("appinspect summary:", json.dumps(summary, sort_keys=True))
    failing = [f"{c['result']}: {c['name']}: " + " | ".join(m.get("message", "") for m in c.get("messages", []))
               for r in document["reports"] for g in r["groups"] for c in g["checks"]
               if c["result"] in ("failure", "error", "future_failure")]
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    assert summary["failure"] == 0 and summary["error"] == 0 and summary.get("future_failure", 0) == 0, \
        "AppInspect (precert):\n" + "\n".join(failing)
    assert summary["success"] > 0
    assert [r["app_package_id"] for r in document["reports"]] == ["dac_detections"]


@needs_appinspect
def test_appinspect_parser_reads_what_we_write(compiled, app_config):
    """The same round trips through AppInspect's .conf parser, an implementation that is not ours."""
    assert appinspect_parse(render_conf([("dac-x", TRICKY_ATTRIBUTES)])) == {"dac-x": TRICKY_ATTRIBUTES}
    queries, config = compiled
    searches = list(searches_by_name(queries, app_config, config).values())
    assert appinspect_parse(render_savedsearches(searches)) == {s.name: s.attributes for s in searches}
