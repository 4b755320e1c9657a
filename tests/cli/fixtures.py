"""End-to-end harness: the real `datomic-aws` process against a moto server on 127.0.0.1.

The server runs in its own process (tests/moto_server.py) so it never shares one with the
in-process `mock_aws` tests; it is reset between tests with POST /moto-api/reset. A pytest plugin
(tests/conftest.py loads it), so tests/cli and tests/faults share its fixtures and its server.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import moto_server

from .faulty_proxy import read_body
from .forkserver import ForkServer

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def endpoint(moto_endpoint: str) -> str:
    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    return moto_endpoint


def command_line() -> list[str]:
    """How to start the real `datomic-aws` of this environment."""
    script = Path(sys.executable).parent / "datomic-aws"
    if script.exists():
        return [str(script)]
    found = shutil.which("datomic-aws")
    return [found] if found else [sys.executable, "-m", "datomic_aws"]


def start_cli(endpoint: str, *args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """`datomic-aws ARGS...` against `endpoint` in a new process, left running: for the tests that
    signal or kill it, or read its progress as it comes (stderr is a pipe, stdin empty)."""
    return subprocess.Popen(
        [*command_line(), *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AWS_ENDPOINT_URL": endpoint},
    )


_FORK_SERVER: list[ForkServer] = []


@pytest.fixture(scope="session", autouse=True)
def _stop_fork_server() -> Iterator[None]:
    yield
    for server in _FORK_SERVER:
        server.close()


def _fork_server() -> ForkServer:
    """This worker's fork server (tests/cli/forkserver.py), started at its first CLI run."""
    if not _FORK_SERVER:
        _FORK_SERVER.append(ForkServer())
    return _FORK_SERVER[0]


def _starts_fresh(env: dict[str, str]) -> bool:
    """A run whose environment changes how Python starts (a PYTHON* or locale variable the fork
    server was not started with) starts as a new process, as does every run with
    DATOMIC_AWS_TEST_FRESH=1."""
    if os.environ.get("DATOMIC_AWS_TEST_FRESH"):
        return True
    started = _fork_server().env
    keys = {k for k in (*env, *started) if k.startswith(("PYTHON", "LC_")) or k == "LANG"}
    return any(env.get(k) != started.get(k) for k in keys)


def runner(endpoint: str) -> Any:
    """Run `datomic-aws ARGS...` against the server at `endpoint`; returns a Run. Each run is its
    own process, forked from this worker's fork server (see tests/cli/forkserver.py)."""

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        unset: tuple[str, ...] = (),
    ) -> Run:
        full_env = dict(os.environ)
        full_env["AWS_ENDPOINT_URL"] = endpoint
        full_env.update(env or {})
        for key in unset:  # e.g. the credentials, for a command that must not need them
            full_env.pop(key, None)
        if not _starts_fresh(full_env):
            return Run(*_fork_server().run(list(args), full_env, timeout))
        proc = subprocess.run(
            [*command_line(), *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def cli(endpoint: str) -> Any:
    """Run `datomic-aws ARGS...` against the moto server; returns a Run."""
    return runner(endpoint)


@pytest.fixture
def transactors_cli(transactors_endpoint: str) -> Any:
    """`cli` against the (reset) server that runs emulated transactors; drive its faults, boot
    time and probe with the `sandbox_control` fixture (tests/conftest.py)."""
    return runner(transactors_endpoint)


@pytest.fixture
def boto(endpoint: str) -> Any:
    """boto3 clients on the moto server, for assertions."""
    import boto3

    def client(service: str, region: str = "us-east-1") -> Any:
        return boto3.client(service, region_name=region, endpoint_url=endpoint)

    return client


def operation_of(headers: Any, body: bytes) -> str:
    """The AWS operation of a request: query protocol (`Action=...` in the form body) or JSON
    protocol (`X-Amz-Target: Service.Operation`); '' when neither (S3's REST calls)."""
    target = headers.get("X-Amz-Target") or ""
    if target:
        return str(target).rsplit(".", 1)[-1]
    if body and b"Action=" in body:
        from urllib.parse import parse_qs

        return parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    return ""


class Proxy:
    """An HTTP proxy between the `datomic-aws` process and the moto server that can slow down or
    hold chosen operations, so that a test sees (or interrupts) the state between two AWS calls.

    moto does every Auto Scaling step synchronously (a new instance is InService the moment the
    group asks for it); on AWS each step takes minutes. `delay` answers the named operations only
    after a pause, `hold` never forwards them (the request waits until the test is done with it,
    then the connection is dropped: the server never sees it). `log` lists the operations seen.
    """

    def __init__(self, upstream: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(upstream)
        self.host, self.port = str(parts.hostname), int(parts.port or 80)
        self.delays: dict[str, float] = {}
        self.held_operations: set[str] = set()
        self.held: list[str] = []
        self.log: list[str] = []
        # (HTTP method, operation) of every request, for `mutating()`.
        self.requests: list[tuple[str, str]] = []
        self._release = threading.Event()
        self._changed = threading.Condition()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                return None

            def _body(self) -> bytes:
                return read_body(self)

            def _forward(self) -> None:
                body = self._body()
                operation = operation_of(self.headers, body)
                with proxy._changed:
                    proxy.log.append(operation)
                    proxy.requests.append((self.command, operation))
                    if operation in proxy.held_operations:
                        proxy.held.append(operation)
                        proxy._changed.notify_all()
                        held = True
                    else:
                        held = False
                if held:
                    proxy._release.wait()
                    self.close_connection = True
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("transfer-encoding", "connection", "content-length")
                }
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    status, reason, resp_headers = resp.status, resp.reason, resp.getheaders()
                finally:
                    conn.close()
                pause = proxy.delays.get(operation, 0.0)
                if pause:
                    time.sleep(pause)
                self.send_response(status, reason)
                for key, value in resp_headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def mutating(self) -> list[str]:
        """The writes that went through: mutating operations, and S3's REST PUT/POST/DELETE."""
        from datomic_aws.aws import is_mutating

        return [
            op or method
            for method, op in self.requests
            if (is_mutating(op) if op else method in ("PUT", "POST", "DELETE"))
        ]

    def wait_held(self, operation: str, timeout: float = 30) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: operation in self.held, timeout=timeout)

    def release(self) -> None:
        """End every held request (and later ones of held operations): the connection is dropped,
        the server never sees them."""
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def proxy(endpoint: str) -> Iterator[Proxy]:
    """A `Proxy` in front of the (reset) moto server; pass `proxy.url` as AWS_ENDPOINT_URL."""
    p = Proxy(endpoint)
    try:
        yield p
    finally:
        p.close()
