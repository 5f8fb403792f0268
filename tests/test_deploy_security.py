"""Deployment security: secrets never printed or written, transport HTTPS with certificate checks
unless the command line explicitly says otherwise (and never in the scheduled workflow), ARM hosts
restricted, every deploy.yml value checked with file and line. Local fakes only."""
from __future__ import annotations

import logging
import re
import shutil
import textwrap

import pytest

import dac.deploy.splunk as deploy_splunk
import test_deploy_sentinel as sentinel_tests
import test_deploy_splunk as splunk_tests
from conftest import run_dac

splunk = splunk_tests.splunk
repo = splunk_tests.repo
arm = sentinel_tests.arm
credential = sentinel_tests.credential
TOKEN = splunk_tests.TOKEN


def _everything_written(root) -> bytes:
    return b"\n".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _forms(secret: str) -> list[str]:
    return [secret, repr(secret)[1:-1], secret.strip(), secret.encode("unicode_escape").decode()]


BAD_TOKENS = {
    "trailing_cr": TOKEN + "\r",
    "trailing_lf": TOKEN + "\n",
    "crlf_inside": TOKEN[:30] + "\r\nX-Injected: 1\r\n" + TOKEN[30:],
    "space": TOKEN[:30] + " " + TOKEN[30:],
    "tab": "\t" + TOKEN,
    "unicode": TOKEN + "\u00e9\u202e",
    "escape": TOKEN + "\x1b[2K",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_a_malformed_token_is_refused_without_showing_it(repo, splunk, capsys, monkeypatch, name):
    # probed: a token ending in \r ended in `ValueError: Invalid header value b'Bearer <token>\r'`
    secret = BAD_TOKENS[name]
    monkeypatch.setenv("SPLUNK_TOKEN", secret)
    code = run_dac("deploy", "splunk", "--apply")
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 1 and "error: SPLUNK_TOKEN contains" in text and "its value is not shown" in text
    assert "Traceback" not in text
    for form in _forms(secret) + [TOKEN, TOKEN[:24], TOKEN[-24:]]:
        assert form not in text
        assert form.encode() not in _everything_written(repo.root)
    assert splunk.requests == [], "a refused token is never sent"


def test_a_token_with_quotes_is_sent_but_never_shown(repo, splunk, capsys, monkeypatch):
    secret = 'dac"quoted\'token\\with-backslash'
    monkeypatch.setenv("SPLUNK_TOKEN", secret)
    code = run_dac("deploy", "splunk")
    out = capsys.readouterr()
    assert code == 1 and "HTTP 401" in out.err
    for form in _forms(secret) + ['dac\\"quoted']:
        assert form not in out.out + out.err


def test_log_records_and_unexpected_errors_are_redacted(repo, splunk, capsys, caplog, monkeypatch):
    noisy = logging.getLogger("azure.identity._internal")        # as chatty libraries log
    original = deploy_splunk.SplunkClient.list_live

    def leaky(self, is_owned):
        noisy.warning("request headers: {'Authorization': 'Bearer %s'}", TOKEN)
        try:
            raise ValueError(f"Invalid header value b'Bearer {TOKEN}'")
        except ValueError:
            noisy.exception("failed")
        if not getattr(self, "once", False):
            self.once = True
            return original(self, is_owned)
        raise RuntimeError(f"unexpected: {TOKEN!r}")

    monkeypatch.setattr(deploy_splunk.SplunkClient, "list_live", leaky)
    with caplog.at_level(logging.WARNING):
        code = run_dac("deploy", "splunk", "--apply")
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert code == 1
    assert "error: deployment stopped by an unexpected RuntimeError: unexpected: '***'" in out.err
    assert "Bearer ***" in caplog.text and "Traceback" not in out.err
    for form in _forms(TOKEN) + [TOKEN[:24]]:
        assert form not in text
    assert logging.getLogRecordFactory() is logging.LogRecord, "the redaction is undone after the run"


def test_the_azure_token_is_checked_and_redacted(sandbox, arm, tls, capsys, monkeypatch):
    sentinel_tests.write_config(sandbox.root, arm, tls)

    class Leaky(sentinel_tests.FakeCredential):
        def get_token(self, *scopes):
            logging.getLogger("azure.identity").warning("got token %s", sentinel_tests.TOKEN + "\r\n")
            return type("T", (), {"token": sentinel_tests.TOKEN + "\r\n", "expires_on": 2**31})()

    monkeypatch.setattr(sentinel_tests.deploy_sentinel, "make_credential", lambda: Leaky())
    code, text = sentinel_tests.deploy(capsys)
    assert code == 1 and "the Azure access token contains a line break" in text
    assert arm.requests == []


# --- transport --------------------------------------------------------------------------------

def _set(config, **settings) -> None:
    text = config.read_text()
    for key, value in settings.items():
        text = re.sub(rf"(?m)^{key}:.*\n", "", text)
        if value is not None:
            text += f"{key}: {value}\n"
    config.write_text(text)


def test_cleartext_http_needs_the_command_line_flag(repo, splunk, capsys, monkeypatch):
    config = repo.root / "splunk" / "deploy.yml"
    _set(config, scheme="http")
    code, text = splunk_tests.deploy(capsys, "--apply")
    assert code == 1 and "`scheme: http` sends SPLUNK_TOKEN in cleartext" in text
    assert splunk.requests == []
    code, text = splunk_tests.deploy(capsys, "--allow-insecure-transport")
    assert "WARNING: http://127.0.0.1:" in text and "plain HTTP" in text   # the fake speaks TLS: it fails after
    monkeypatch.setenv("DAC_SCHEDULED", "1")
    code, text = splunk_tests.deploy(capsys, "--allow-insecure-transport")
    assert code == 1 and "cleartext HTTP" in text and "scheduled deployment" in text


def test_tls_off_warns_every_run_and_is_refused_when_scheduled(repo, splunk, capsys, monkeypatch):
    config = repo.root / "splunk" / "deploy.yml"
    for args, setting in ((("--insecure",), True), ((), False)):
        _set(config, verify_tls=None if setting else "false")
        for _ in range(2):
            code, text = splunk_tests.deploy(capsys, *args)
            assert code == 0 and "WARNING: TLS certificate verification is OFF" in text
    monkeypatch.setenv("DAC_SCHEDULED", "1")
    for args, setting in ((("--insecure",), True), ((), False)):
        _set(config, verify_tls=None if setting else "false")
        code, text = splunk_tests.deploy(capsys, "--apply", *args)
        assert code == 1 and "refused" in text and "scheduled deployment" in text
    assert splunk.requests == [] or all(m == "GET" for m, _ in splunk.requests)
    _set(config, verify_tls="true")
    code, text = splunk_tests.deploy(capsys)
    assert code == 0 and "WARNING" not in text, "verified TLS is fine when scheduled"


def test_a_ca_file_relative_to_the_repository_is_used(repo, splunk, tls, capsys, monkeypatch, tmp_path_factory):
    (repo.root / "certs").mkdir()
    shutil.copy(tls[0], repo.root / "certs" / "splunk-ca.pem")
    _set(repo.root / "splunk" / "deploy.yml", ca_file="certs/splunk-ca.pem")
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    code, text = splunk_tests.deploy(capsys, "--apply")
    assert code == 0 and "31 created" in text and "WARNING" not in text
    _set(repo.root / "splunk" / "deploy.yml", ca_file="certs/missing.pem")
    code, text = splunk_tests.deploy(capsys)
    assert code == 1 and "splunk/deploy.yml:4: `ca_file` 'certs/missing.pem' is not a file" in text


@pytest.mark.parametrize("endpoint, allowed", [
    ("https://management.azure.com", True), ("https://management.usgovcloudapi.net", True),
    ("https://management.chinacloudapi.cn/", True), ("https://management.azure.com.evil.example", False),
    ("https://evil.example", False), ("https://management.azure.com:8443", False),
    ("https://user@management.azure.com", False), ("https://management.azure.com/x?y", False),
    ("http://management.azure.com", False)])
def test_arm_endpoints_are_the_documented_hosts(sandbox, capsys, endpoint, allowed):
    from dac.deploy.sentinel import arm_scope, load_sentinel_config
    from dac.core.problems import DacError
    (sandbox.root / "sentinel" / "deploy.yml").write_text(
        f"arm_endpoint: {endpoint}\nworkspaces:\n  - {{subscription_id: 00000000-0000-0000-0000-000000000000, "
        "resource_group: rg, workspace: law-x}\n")
    if allowed:
        config = load_sentinel_config(sandbox.root, "sentinel/deploy.yml")
        assert arm_scope(config["arm_endpoint"]) == endpoint.rstrip("/") + "/.default"
    else:
        with pytest.raises(DacError, match=r"sentinel/deploy.yml:1: `arm_endpoint`"):
            load_sentinel_config(sandbox.root, "sentinel/deploy.yml")


def test_a_local_arm_endpoint_needs_the_explicit_opt_in(sandbox, arm, tls, capsys, credential):
    sentinel_tests.write_config(sandbox.root, arm, tls)
    config = sandbox.root / "sentinel" / "deploy.yml"
    config.write_text(config.read_text().replace("allow_custom_arm_endpoint: true\n", ""))
    code, text = sentinel_tests.deploy(capsys)
    assert code == 1 and "sentinel/deploy.yml:1: `arm_endpoint` 127.0.0.1 is not an Azure Resource Manager host" in text
    assert arm.requests == []


# --- deploy.yml values --------------------------------------------------------------------------

SPLUNK_VALUES = {
    "timeout: -1": "`timeout` must be more than 0",
    "timeout: 0": "`timeout` must be more than 0",
    "timeout: 1e9": "`timeout` must be a number",
    "timeout: 100000": "`timeout` must be more than 0 and at most 600",
    "timeout: soon": "`timeout` must be a number",
    "port: 0": "`port` must be a TCP port, 1 to 65535 (got 0)",
    "port: 70000": "`port` must be a TCP port",
    "port: true": "`port` must be a whole number",
    "host: https://splunk.example.com/x": "`host` must be a bare host name",
    "host: 'splunk example'": "`host` must be a bare host name",
    "app: ../../etc": "`app` must be a Splunk app id",
    "scheme: ftp": "`scheme` must be https",
    "verify_tls: maybe": "`verify_tls` must be a true/false",
}


@pytest.mark.parametrize("line", sorted(SPLUNK_VALUES))
def test_every_splunk_setting_is_checked_with_file_and_line(repo, splunk, capsys, line):
    config = repo.root / "splunk" / "deploy.yml"
    key = line.split(":")[0]
    lines = [l for l in config.read_text().splitlines() if not l.startswith(f"{key}:")] + [line]
    config.write_text("\n".join(lines) + "\n")
    code, text = splunk_tests.deploy(capsys)
    assert code == 1 and f"error: splunk/deploy.yml:{len(lines)}: {SPLUNK_VALUES[line]}" in text, text
    assert "Traceback" not in text and splunk.requests == []


def test_every_sentinel_setting_is_checked_with_file_and_line(sandbox, arm, tls, capsys, credential):
    sentinel_tests.write_config(sandbox.root, arm, tls, workspaces=[
        ("11111111-1111-1111-1111-111111111111", "rg-a", "law-a"),
        ("not-a-guid", "rg/../../other", "law-b/../x")])
    code, text = sentinel_tests.deploy(capsys)
    assert code == 1 and "Traceback" not in text
    assert "sentinel/deploy.yml:7: workspaces[2].subscription_id is not a valid Azure subscription id" in text
    assert "sentinel/deploy.yml:7: workspaces[2].resource_group is not a valid Azure resource group" in text
    assert "sentinel/deploy.yml:7: workspaces[2].workspace is not a valid Azure workspace" in text
    sentinel_tests.write_config(sandbox.root, arm, tls, extra="timeout: -1\n")
    code, text = sentinel_tests.deploy(capsys)
    assert code == 1 and "sentinel/deploy.yml:8: `timeout` must be more than 0" in text
    assert arm.requests == []
