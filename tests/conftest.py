"""Shared fixtures: the real repository, and throw-away copies of it for bad-input tests."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from dac.cli import main
from dac.core.repo import Layout

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(session, config, items):
    """Tests marked runs_long(seconds) start first, each at the head of a different worker's share:
    pytest-xdist's worksteal scheduler gives each worker a contiguous share of the collection, and
    one of these started late would leave the other workers idle while it ends the run. The order
    is the same on every worker (xdist checks that); the other tests keep theirs."""
    long = sorted((item for item in items if item.get_closest_marker("runs_long")),
                  key=lambda item: -item.get_closest_marker("runs_long").args[0])
    if not long:
        return
    rest = [item for item in items if not item.get_closest_marker("runs_long")]
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    starts, position, remaining = [], 0, len(items)
    for i in range(workers):            # the shares worksteal hands out first (xdist.scheduler.worksteal)
        starts.append(position)
        share = remaining // (workers - i)
        position, remaining = position + share, remaining - share
    order: list = [None] * len(items)
    for k, item in enumerate(long):
        order[min(starts[k % workers] + k // workers, len(items) - 1)] = item
    others = iter(rest)
    items[:] = [item if item is not None else next(others) for item in order]


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


@pytest.fixture(scope="session")
def repo_test_json() -> tuple[int, dict]:
    """`dac test --json` on the repository (every query on every labelled log, all engines), run
    once per session and shared: its exit code and its parsed output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_dac("test", "--json")
    return code, json.loads(out.getvalue())


def write_repo_file(layout: Layout, path: str, text: str) -> None:
    """Put a file (a rule, a label…) at `path` in a sandbox repository, creating its folders."""
    target = layout.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    """A throw-away CA and a 127.0.0.1 server certificate for the SIEM stand-ins."""
    from siem_fakes import make_tls
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def waits(monkeypatch):
    """The waits a retry would sleep, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr("time.sleep", recorded.append)
    return recorded


def run_deploy(capsys, siem: str, secrets: tuple[str, ...], *args: str) -> tuple[int, str]:
    """`dac deploy <siem> …`: exit code and everything printed, checked to contain no secret."""
    code = run_dac("deploy", siem, *args)
    out = capsys.readouterr()
    text = out.out + out.err
    for secret in secrets:
        assert secret not in text, "a secret must never be printed"
    return code, text
