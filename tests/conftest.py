"""Shared fixtures: the real repository, and throw-away copies of it for bad-input tests."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dac.cli import main
from dac.repo import Layout

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_layout() -> Layout:
    return Layout(REPO)


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> Layout:
    """A copy of the repository's sigma/, conversions/, testdata/ and schemas in tmp_path, with DAC_ROOT pointing at it."""
    shutil.copytree(REPO / "sigma", tmp_path / "sigma")
    shutil.copytree(REPO / "conversions", tmp_path / "conversions")
    if (REPO / "splunk").is_dir():
        shutil.copytree(REPO / "splunk", tmp_path / "splunk")
    if (REPO / "testdata").is_dir():
        shutil.copytree(REPO / "testdata", tmp_path / "testdata")
    shutil.copytree(REPO / "sentinel", tmp_path / "sentinel")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "kusto-analyzer").symlink_to(REPO / "tools" / "kusto-analyzer")
    monkeypatch.setenv("DAC_ROOT", str(tmp_path))
    return Layout(tmp_path)


def run_dac(*args: str) -> int:
    return main(list(args))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
