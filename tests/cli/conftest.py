"""End-to-end harness: the real `datomic-aws` process against a moto server on 127.0.0.1.

The server runs in its own process (tests/moto_server.py) so it never shares one with the
in-process `mock_aws` tests; it is reset between tests with POST /moto-api/reset.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "moto_server.py")],
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
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


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


@pytest.fixture
def cli(endpoint: str) -> Any:
    """Run `datomic-aws ARGS...` against the moto server; returns a Run."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
        full_env = dict(os.environ)
        full_env["AWS_ENDPOINT_URL"] = endpoint
        full_env.update(env or {})
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
def boto(endpoint: str) -> Any:
    """boto3 clients on the moto server, for assertions."""
    import boto3

    def client(service: str, region: str = "us-east-1") -> Any:
        return boto3.client(service, region_name=region, endpoint_url=endpoint)

    return client
