"""The CLI runs of the end-to-end tests are forked from a server that imported the package
(tests/cli/forkserver.py): a forked run must be what a new process does, to the byte."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cli import fixtures
from tests.conftest import environment

UNREACHABLE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}


def _both(
    cli: Any, endpoint: str, monkeypatch: pytest.MonkeyPatch, folder: Path, *args: str, **kw: Any
) -> tuple[Any, Any]:
    """One run forked (no subprocess may start) and the same run in a new process, each from its
    own copy of `folder` (the runs may write to it) and a fresh moto state, named alike so that
    outputs compare."""
    runs = []
    for fresh in (False, True):
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=10).close()
        shutil.rmtree(folder.parent / "run", ignore_errors=True)
        work = shutil.copytree(folder, folder.parent / "run")
        with monkeypatch.context() as patch:
            patch.chdir(work)
            if fresh:
                patch.setenv("DATOMIC_AWS_TEST_FRESH", "1")
            else:
                patch.setattr(fixtures.subprocess, "run", _no_subprocess)
            runs.append((cli(*args, **kw), sorted(p.name for p in work.iterdir())))
    return runs[0], runs[1]


def _no_subprocess(*_a: Any, **_k: Any) -> Any:
    raise AssertionError("a run meant for the fork server started a new process")


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("apply", "--help"),
        ("--output", "json", "ensure-transactor", "transactor.properties", "--dry-run"),
        ("ensure-cf", "cf.properties", "--dry-run"),
        ("--output", "json", "status", "us-east-1", "datomic-my-datomic-system"),
        ("apply", "."),
        ("--no-color", "apply", "--dry-run", "."),
        ("ensure-cf", "missing.properties"),
    ],
    ids=lambda a: " ".join(a),
)
def test_a_forked_run_prints_and_exits_as_a_new_process(
    cli: Any, endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: tuple[str, ...]
) -> None:
    folder = environment(tmp_path / "env", digest_secret="ab" * 32)
    (forked, forked_files), (fresh, fresh_files) = _both(cli, endpoint, monkeypatch, folder, *args)
    assert forked.code == fresh.code
    assert _same(forked.stdout) == _same(fresh.stdout)
    assert _same(forked.stderr) == _same(fresh.stderr)
    assert forked_files == fresh_files


def test_the_environment_and_the_folder_are_the_runs_own(
    cli: Any, endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Credentials removed, an unreachable endpoint, another folder: the forked run sees what
    it is given, not what the server started with."""
    folder = environment(tmp_path / "env")
    forked, fresh = _both(
        cli,
        endpoint,
        monkeypatch,
        folder,
        "ensure-transactor",
        "transactor.properties",
        env=UNREACHABLE,
        unset=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    )
    assert forked[0].code == fresh[0].code != 0
    assert forked[0].stderr == fresh[0].stderr
    assert "credentials" in forked[0].stderr.lower()


def test_a_run_past_its_timeout_is_killed(cli: Any) -> None:
    # An endpoint that takes the connection and never answers holds the run.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(subprocess.TimeoutExpired):
            cli("status", "us-east-1", "datomic-x", env={"AWS_ENDPOINT_URL": url}, timeout=1)


def _same(text: str) -> str:
    """What differs between two runs of one command on two fresh moto states: the elapsed time
    and the clock of AWS events in progress lines, and the ids moto draws at random."""
    text = re.sub(r"\[\d+:\d\d\]", "[m:ss]", text)
    text = re.sub(r"\b\d\d:\d\d:\d\dZ\b", "hh:mm:ssZ", text)
    text = re.sub(r"\b(sg|subnet|vpc|i|lt|ami)-[0-9a-f]{8,17}\b", r"\1-ID", text)
    return re.sub(r"\b(datomic-aws-(?:create|update))-[0-9a-f]+\b", r"\1-ID", text)
