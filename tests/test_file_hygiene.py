"""File handling: atomic writes keep modes; rule files that are symlink loops, FIFOs, devices or
links out of the repository are clear errors; symlinked rule folders are followed."""
from __future__ import annotations

import os
import stat

from dac.atomic import write_text_atomic


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
