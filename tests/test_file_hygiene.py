"""File handling: atomic writes keep modes; rule files that are symlink loops, FIFOs, devices or
links out of the repository are clear errors; symlinked rule folders are followed."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

from conftest import run_dac
from dac.core.atomic import write_text_atomic


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_keeps_an_existing_files_mode(tmp_path):
    target = tmp_path / "savedsearches.conf"
    target.write_text("old\n")
    target.chmod(0o640)
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n" and _mode(target) == 0o640
    target.chmod(0o755)
    write_text_atomic(target, "newer\n")
    assert _mode(target) == 0o755


def test_atomic_write_gives_a_new_file_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a" / "new.spl", "x\n")
        assert _mode(tmp_path / "a" / "new.spl") == 0o644
        os.umask(0o077)
        write_text_atomic(tmp_path / "private.spl", "x\n")
        assert _mode(tmp_path / "private.spl") == 0o600
    finally:
        os.umask(old)
    assert not list(tmp_path.rglob(".*.tmp")), "no temp file is left behind"


RULE_DIR = "sigma/rules/linux/process_creation"


def _check(capsys) -> tuple[int, str]:
    code = run_dac("check")
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_symlink_loop_between_two_rule_files_is_an_error_not_a_traceback(sandbox, capsys):
    folder = sandbox.root / RULE_DIR
    (folder / "proc_creation_lnx_loop_a.yml").symlink_to("proc_creation_lnx_loop_b.yml")
    (folder / "proc_creation_lnx_loop_b.yml").symlink_to("proc_creation_lnx_loop_a.yml")
    code, text = _check(capsys)
    assert code == 1 and "Traceback" not in text
    assert f"error: {RULE_DIR}/proc_creation_lnx_loop_a.yml: symlink loop" in text
    assert f"error: {RULE_DIR}/proc_creation_lnx_loop_b.yml: symlink loop" in text


def test_a_link_leaving_the_repository_is_refused(sandbox, capsys, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "rule.yml"
    outside.write_text((sandbox.root / RULE_DIR / "proc_creation_lnx_mimipenguin.yml").read_text())
    (sandbox.root / RULE_DIR / "proc_creation_lnx_outside.yml").symlink_to(outside)
    code, text = _check(capsys)
    assert code == 1 and f"error: {RULE_DIR}/proc_creation_lnx_outside.yml: symlink leaves the repository" in text


def test_a_fifo_named_like_a_rule_is_refused_without_opening_it(sandbox):
    os.mkfifo(sandbox.root / RULE_DIR / "proc_creation_lnx_fifo.yml")
    # a subprocess with a timeout: opening a FIFO blocks forever, and that must fail the test, not hang it
    proc = subprocess.run([sys.executable, "-m", "dac.cli", "check"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DAC_ROOT": str(sandbox.root)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: {RULE_DIR}/proc_creation_lnx_fifo.yml: is a FIFO (named pipe), not a rule file" in proc.stderr


def test_a_symlinked_rule_folder_inside_the_repository_is_followed(sandbox, capsys):
    assert run_dac("check") == 0
    before = re.search(r"ok: (\d+) rules", capsys.readouterr().out).group(1)
    extra = sandbox.root / "shared-rules"
    extra.mkdir()
    rule = (sandbox.root / RULE_DIR / "proc_creation_lnx_mimipenguin.yml").read_text()
    rule = (rule.replace("fa334ad3-0d80-4ce5-b92d-696792e9dab8", "0d6b3a9c-2f37-4f59-9d0e-5b7d9b3f1a42")
                .replace("name: ", "name: Linked", 1))
    (extra / "proc_creation_lnx_linked.yml").write_text(rule)
    (sandbox.root / RULE_DIR / "linked").symlink_to(extra)
    code, text = _check(capsys)
    assert code == 0, text
    assert int(re.search(r"ok: (\d+) rules", text).group(1)) == int(before) + 1
    (sandbox.root / RULE_DIR / "loop").symlink_to(sandbox.root / "sigma" / "rules")
    code, text = _check(capsys)
    assert code == 1 and f"error: {RULE_DIR}/loop: folder loop" in text


def test_a_socket_or_device_named_like_a_rule_is_refused(sandbox, capsys, monkeypatch):
    import socket
    folder = sandbox.root / RULE_DIR
    monkeypatch.chdir(folder)          # a relative name: AF_UNIX paths are limited to 108 bytes
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind("proc_creation_lnx_sock.yml")
        try:
            os.mknod(folder / "proc_creation_lnx_dev.yml", stat.S_IFCHR | 0o600, os.makedev(1, 3))   # /dev/null
            device = True
        except PermissionError:       # not root: the socket alone shows the check
            device = False
        code, text = _check(capsys)
    finally:
        server.close()
    assert code == 1 and "Traceback" not in text
    assert f"error: {RULE_DIR}/proc_creation_lnx_sock.yml: is a socket, not a rule file" in text
    if device:
        assert f"error: {RULE_DIR}/proc_creation_lnx_dev.yml: is a device, not a rule file" in text


def test_a_pipeline_or_targets_file_linking_out_of_the_repository_is_refused(sandbox, capsys, tmp_path_factory):
    pipelines = sorted((sandbox.sigma / "pipelines").glob("*.yml"))
    outside = tmp_path_factory.mktemp("outside") / pipelines[0].name
    outside.write_text(pipelines[0].read_text())
    pipelines[0].unlink()
    pipelines[0].symlink_to(outside)
    code, text = _check(capsys)
    assert code == 1 and f"error: sigma/pipelines/{pipelines[0].name}: symlink leaves the repository" in text
    targets = sandbox.sigma / "targets.yml"
    targets.rename(sandbox.sigma / "targets.real.yml")
    targets.symlink_to("targets.yml")
    code, text = _check(capsys)
    assert code == 1 and "error: sigma/targets.yml: symlink loop" in text and "Traceback" not in text
