"""The generated savedsearches.conf against savedsearches.conf.spec of the targeted Splunk version
(dac.artifacts.splunk_conformance): keys, values, cron, dispatch windows; with and without Enterprise
Security's keys."""
from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO
from dac.compile.compose import hunting_specs
from dac.compile.convert import compile_rules
from dac.core.repo import Layout
from dac.rules.ruleset import load_rules
from dac.artifacts.splunk_searches import render_savedsearches, saved_searches
from dac.artifacts.splunk_conf import parse_conf
from dac.artifacts.splunk_config import CONFIG_FILE, parse_app_config
from dac.artifacts.splunk_conformance import SPLUNK_VERSION, conf_problems, cron_error, cron_interval_seconds, relative_seconds, stanza_problems
from dac.compile.targets import load_targets

CONF = REPO / "splunk" / "dac_detections" / "default" / "savedsearches.conf"


@pytest.fixture(scope="module")
def raw_config():
    return yaml.safe_load((REPO / CONFIG_FILE).read_text())


def test_checked_in_savedsearches_conform_to_the_spec():
    conf = {k: v for k, v in parse_conf(CONF.read_text(encoding="utf-8")).items() if k != "default"}
    assert len(conf) >= 7
    assert conf_problems(conf, es_enabled=False) == []


def test_enterprise_security_stanzas_conform_too(raw_config):
    targets, config = load_targets(Layout(REPO))
    queries = compile_rules(load_rules(Layout(REPO)), targets)
    data = copy.deepcopy(raw_config)
    data["enterprise_security"]["enabled"] = True
    searches = saved_searches(queries, parse_app_config(data), hunting_specs(config, "sigma/targets.yml"))
    conf = {k: v for k, v in parse_conf(render_savedsearches(searches)).items() if k != "default"}
    assert any("action.notable" in s for s in conf.values())
    assert conf_problems(conf, es_enabled=True) == []
    # the same keys in an app without ES are not spec keys
    assert any("Enterprise Security key" in p for p in conf_problems(conf, es_enabled=False))


def test_spec_version_is_stated():
    assert SPLUNK_VERSION == "9.4"


GOOD = {"search": "index=x", "enableSched": "1", "cron_schedule": "*/15 * * * *", "dispatch.earliest_time": "-20m@m",
        "dispatch.latest_time": "now", "alert.suppress": "1", "alert.suppress.period": "1h", "alert.severity": "4"}


@pytest.mark.parametrize("change, message", [
    ({"alert.suppres": "1"}, "not a key of savedsearches.conf.spec"),
    ({"cron_schedule": "*/15 * * *"}, "valid cron_schedule"),
    ({"cron_schedule": "61 * * * *"}, "valid cron_schedule"),
    ({"dispatch.earliest_time": "-10m@m"}, "shorter than the 900s between runs"),
    ({"dispatch.earliest_time": "now", "dispatch.latest_time": "-5m"}, "empty or in the future"),
    ({"alert.suppress": "0"}, "suppression does not cover the overlap"),
    ({"alert.suppress.period": "2m"}, "suppression does not cover the overlap"),
    ({"alert.severity": "7"}, "not a value the spec allows"),
    ({"counttype": "number of results"}, "not a value the spec allows"),
    ({"dispatch.earliest_time": "-20x"}, "not a value the spec allows"),
])
def test_each_rule_is_enforced(change, message):
    problems = stanza_problems("s", {**GOOD, **change}, es_enabled=False)
    assert any(message in p for p in problems), problems


def test_a_good_stanza_passes():
    assert stanza_problems("s", GOOD, es_enabled=False) == []


def test_helpers():
    assert cron_error("7 6 * * *") is None and cron_error("* * *") is not None
    assert cron_interval_seconds("*/15 * * * *") == 900 and cron_interval_seconds("7 6 * * *") == 86400
    assert relative_seconds("-20m@m") == -1200 and relative_seconds("now") == 0 and relative_seconds("-24h") == -86400
