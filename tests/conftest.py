"""Fixtures shared by every test: fake credentials, in-process moto, call recording.

Tests never reach AWS: credentials are fake, the config files point nowhere, and every AWS client is
built by `AwsContext` against moto (in-process here; the CLI tests use a moto server in a separate
process, see tests/cli/fixtures.py, so `mock_aws` and a server never share a process).

Layout: tests/unit (pure), tests/embedded (in-process moto), tests/cli (the CLI end to end),
tests/faults (crash sweeps and fault injection, in-process and end to end), tests/boot, tests/sandbox,
tests/bench. The CLI fixtures (tests/cli/fixtures.py) are a plugin loaded here, so that tests/cli and
tests/faults share one moto server per worker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import moto  # noqa: F401  (see below)
import pytest

from datomic_aws.aws import AwsContext, is_mutating

pytest_plugins = ["tests.cli.fixtures"]

# moto hooks botocore when it is imported: a boto3 session built before that import (boto3's default
# session, say, in a CLI test that ran first) never reaches the mock and would call real AWS.
REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "config_samples"


def pytest_configure(config: pytest.Config) -> None:
    """Bytecode for the processes the tests start (the CLI above all), as Python writes it by
    default.

    The end-to-end tests start the CLI hundreds of times. With PYTHONDONTWRITEBYTECODE set (as it
    is in some shells and CI images), every one of them would compile each module of the package
    again (a sixth of a short command's CPU). The processes started from here (the xdist workers
    too) write it to `__pycache__` (ignored by git); the installed packages' own is read as it is.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    _sigint_as_a_terminal_delivers_it()


def _sigint_as_a_terminal_delivers_it() -> None:
    """A suite started as a background job of a shell without job control (`python -m pytest &`
    in a script) inherits SIGINT ignored, and so would every process it starts: the CLI then keeps
    ignoring it, as nohup asks (app/signals.py), and the tests that press Ctrl-C fail (serve never
    stops, an interrupted apply runs on). A handler here (in the controller and in each worker)
    becomes the default disposition in the processes they start."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than the CPUs. The end-to-end tests spend part of their time
    waiting (for a CLI process, an emulated transactor's boot, botocore's back-off between
    retries), and the extra worker keeps the CPUs busy meanwhile: on the project's 2-core machine,
    3 workers took the suite from 415 s to 327 s of wall time."""
    return (os.cpu_count() or 1) + 1


@pytest.fixture(autouse=True, scope="session")
def shared_botocore_loader() -> Iterator[None]:
    """One botocore data loader per test process instead of one per session.

    Every `AwsContext` (and every boto3 session a test builds) makes a new botocore session, whose
    loader would read and parse the service models (EC2's is megabytes of JSON) again: about half
    of a client's creation. The models are read-only data, the same in every session (a session
    already shares them between its own clients), so the test process keeps one loader per search
    path. The CLI processes the end-to-end tests start are untouched.
    """
    import botocore.loaders
    import botocore.session

    loaders: dict[str | None, botocore.loaders.Loader] = {}
    create = botocore.loaders.create_loader

    def shared(search_path_string: str | None = None) -> botocore.loaders.Loader:
        if search_path_string not in loaders:
            loaders[search_path_string] = create(search_path_string)
        return loaders[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("aws-home")
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # The trimmed botocore models (datomic_aws/aws_models.py): one cache per test worker, never
    # the user's own ~/.cache.
    monkeypatch.setenv(
        "DATOMIC_AWS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "datomic-aws-cache")
    )
    # moto's ~2,600 default AMIs are loaded into every fresh EC2 backend (each `mock_aws`, each
    # server reset): most of a small test's time. No test needs them: the template takes its image
    # from an SSM parameter (moto's default parameters stay), and an AMI a test names is its own.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


def environment(folder: Path, *, digest_secret: str | None = None) -> Path:
    """The operator's folder: both samples, with the log bucket and metrics turned on; with
    `digest_secret`, the key of the configuration's digest that a first ensure-transactor would
    have generated at random (so that two independent runs store the same configuration)."""
    folder.mkdir()
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    for old in ("# aws-s3-log-bucket-id=\n", "# aws-cloudwatch-region=us-east-1\n"):
        assert text.count(old) == 1, old
        text = text.replace(old, old[2:])
    if digest_secret is not None:
        text += f"datomic-aws-digest-secret={digest_secret}\n"
    (folder / "transactor.properties").write_bytes(text.encode("latin-1"))
    shutil.copyfile(SAMPLES / "cf.properties", folder / "cf.properties")
    return folder


class CallRecorder:
    """Records every AWS operation (once per call, before retries) and can fail the k-th write."""

    def __init__(self) -> None:
        self.operations: list[str] = []
        self.fail_at: int | None = None
        self._writes = 0

    def __call__(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.endpoint_prefix}:{model.name}"
        if is_mutating(model.name):
            self._writes += 1
            if self.fail_at is not None and self._writes == self.fail_at:
                raise SimulatedCrash(name)
        self.operations.append(name)

    @property
    def mutating(self) -> list[str]:
        return [op for op in self.operations if is_mutating(op.split(":", 1)[1])]


class SimulatedCrash(BaseException):
    """Stands for a kill: a BaseException, so no `except Exception` in the product swallows it."""


@pytest.fixture
def mocked_aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def recorder() -> CallRecorder:
    return CallRecorder()


@pytest.fixture
def ctx(mocked_aws: None, recorder: CallRecorder) -> AwsContext:
    """An AwsContext against in-process moto whose calls `recorder` sees."""
    return AwsContext(hooks=[("before-call.*.*", recorder)])


def new_ctx(recorder: CallRecorder | None = None, **kwargs: Any) -> AwsContext:
    hooks = [("before-call.*.*", recorder)] if recorder else []
    return AwsContext(hooks=hooks, **kwargs)


@pytest.fixture
def patched_moto() -> Iterator[None]:
    """moto corrected to AWS's behaviour where our flows depend on it (each module of
    datomic_aws/sandbox/moto_fixes states its correction); moto's own behaviour is put back
    afterwards."""
    from datomic_aws.sandbox import moto_fixes as sandbox_moto

    already = sandbox_moto.is_patched()
    sandbox_moto.patch_moto()
    yield
    if not already:
        sandbox_moto.unpatch_moto()


@pytest.fixture
def unpatched_moto() -> Iterator[None]:
    """moto as it is, for tests that show why a correction is needed."""
    from datomic_aws.sandbox import moto_fixes as sandbox_moto

    was = sandbox_moto.is_patched()
    sandbox_moto.unpatch_moto()
    yield
    if was:
        sandbox_moto.patch_moto()


# --- the embedded AWS as a server in its own process (tests/moto_server.py) ----------------------


@contextmanager
def moto_server(*args: str) -> Iterator[str]:
    """tests/moto_server.py in its own process (never in a process that uses `mock_aws`); yields
    its endpoint; stops when its standard input closes."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "moto_server.py"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().strip())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            # Its state is thrown away: no need to wait the seconds werkzeug takes to let go of
            # the connections boto3 keeps alive.
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_transactors_endpoint() -> Iterator[str]:
    """A server whose Auto Scaling runs an emulated transactor on every instance it launches."""
    with moto_server("--transactors", "--boot-seconds", "0.2") as endpoint:
        yield endpoint


@pytest.fixture
def transactors_endpoint(moto_transactors_endpoint: str) -> Iterator[str]:
    """The transactor-enabled server, reset (no transactor, empty probe, default settings); reset
    again afterwards, so that no emulated transactor keeps heartbeating (and taking CPU from the
    other tests) until the next test that uses the server."""
    from datomic_aws.sandbox.embedded import SandboxControl

    SandboxControl(moto_transactors_endpoint).reset()
    yield moto_transactors_endpoint
    SandboxControl(moto_transactors_endpoint).reset()


@pytest.fixture
def sandbox_control(transactors_endpoint: str) -> Any:
    """The control API of the transactor-enabled server (faults, boot time, probe)."""
    from datomic_aws.sandbox.embedded import SandboxControl

    return SandboxControl(transactors_endpoint)
