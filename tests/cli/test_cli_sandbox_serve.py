"""`datomic-aws sandbox serve` (issue 10): the README's two-shell sequence, for real.

Shell 1 is the command as a real subprocess; shell 2 is every step of the README's operator loop
as its own `datomic-aws` process, with only the environment shell 1 printed, on a copy of the
repository's samples. Then SIGTERM stops the server with exit 0. Also: its JSON form, Ctrl-C, and
the one-line refusal without the `sandbox` extra.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.cli.fixtures import Run, command_line
from tests.conftest import REPO, SAMPLES

REGION = "us-east-1"
# What the samples name (cf.properties aws-stack-name).
STACK = "datomic-my-datomic-system"
WAIT = ("--poll-interval", "0.2", "--timeout", "300")


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = dict(os.environ)
    full["PYTHONPATH"] = os.pathsep.join([str(REPO), full.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full["PYTHONFAULTHANDLER"] = "1"
    full.update(env or {})
    return subprocess.Popen(
        [*command_line(), *args, "sandbox", "serve", "--transactors"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )


def _lines(stream: IO[str] | None, count: int) -> list[str]:
    assert stream is not None
    return [stream.readline() for _ in range(count)]


def _stop(proc: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        # Where it hangs: PYTHONFAULTHANDLER (see _start) prints every thread's stack on SIGABRT.
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"not stopped 30 s after signal {signum}:\n{err}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, err


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """Shell 1: `datomic-aws sandbox serve --transactors`; the environment it printed."""
    proc = _start()
    try:
        lines = _lines(proc.stdout, 4)
        exported = {}
        for line in lines:
            word, assignment = shlex.split(line)
            assert word == "export", line
            name, value = assignment.split("=", 1)
            exported[name] = value
        yield proc, exported
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _shell2(exported: dict[str, str]) -> Any:
    """Shell 2: the operator's shell after `. ./sandbox.env` (no session token, no profile)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_SESSION_TOKEN", "AWS_PROFILE")}
    env.update(exported)

    def run(*args: str, cwd: Path) -> Run:
        proc = subprocess.run(
            [*command_line(), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_the_readme_loop_runs_against_sandbox_serve_from_another_process(
    served: tuple[subprocess.Popen[str], dict[str, str]], tmp_path: Path
) -> None:
    proc, exported = served
    assert sorted(exported) == [
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_SECRET_ACCESS_KEY",
    ]
    assert exported["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert exported["AWS_DEFAULT_REGION"] == REGION
    work = tmp_path / "try"
    work.mkdir()
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, work / name)
    run = _shell2(exported)

    def step(*args: str, code: int = 0) -> Run:
        result = run(*args, cwd=work)
        assert result.code == code, (args, result.stdout, result.stderr)
        return result

    step("ensure-transactor", "transactor.properties")
    step("ensure-cf", "cf.properties")
    step("create-cf-template", "transactor.properties", "cf.properties", "cf.json")
    step("create-cf-stack", REGION, STACK, "cf.json", *WAIT)
    step("update-stack", REGION, STACK, "cf.json", *WAIT)
    step("apply", ".", *WAIT)
    before = _files(work)
    again = step("--output", "json", "apply", ".", *WAIT)
    assert again.json["aws_calls"]["mutating"] == 0
    assert again.json["changed"] is False
    assert {c["action"] for c in again.json["changes"]} == {"noop"}
    assert _files(work) == before
    status = step("status", REGION, STACK, "--template", "cf.json")
    assert "matches the deployed one" in status.stdout
    step("delete-cf-stack", REGION, STACK, "--yes", *WAIT)
    step("status", REGION, STACK, code=3)

    code, err = _stop(proc, signal.SIGTERM)
    assert code == 0, err
    assert "Embedded AWS stopped." in err
    assert "Error" not in err


def test_json_output_and_ctrl_c() -> None:
    proc = _start("--output", "json")
    try:
        (line,) = _lines(proc.stdout, 1)
        env = json.loads(line)
        assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert set(env) == {
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        }
        # The server answers AWS calls before it is stopped.
        import boto3

        sts = boto3.client("sts", region_name=REGION, endpoint_url=env["AWS_ENDPOINT_URL"])
        assert sts.get_caller_identity()["Account"]
    finally:
        code, err = _stop(proc, signal.SIGINT)
    assert code == 0, err


def test_without_moto_one_line_names_the_extra(tmp_path: Path) -> None:
    """moto (the `sandbox` extra) missing: one line saying what to install, exit 2."""
    shadow = tmp_path / "no-moto"
    (shadow / "moto").mkdir(parents=True)
    (shadow / "moto" / "__init__.py").write_text("raise ImportError('moto is not installed')\n")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "datomic_aws", "sandbox", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), str(REPO)])},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "Error: the embedded AWS needs moto, which is not installed: "
        "pip install 'datomic-aws[sandbox]'"
    ]
    assert time.monotonic() - started < 30


# moto 5.2.5 as anyone would run it, without the sandbox's corrections.
PLAIN_MOTO = """\
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
server.start()
print("PORT", server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""


def test_a_plain_moto_server_stops_create_cf_stack_with_one_line_naming_sandbox_serve(
    tmp_path: Path,
) -> None:
    """The first of the two known gaps on the loop's way: the TLS-only templates bucket over
    plain HTTP (the second, UpdateTerminationProtection, comes after the upload: see
    tests/unit/test_endpoint_gaps.py)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PLAIN_MOTO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"},
    )
    try:
        assert proc.stdout is not None
        line = ""
        while not line.startswith("PORT "):  # after moto's own "Starting a new Thread..." line
            line = proc.stdout.readline()
            assert line, "the plain moto server did not start"
        endpoint = f"http://127.0.0.1:{int(line.split()[1])}"
        work = tmp_path / "try"
        work.mkdir()
        for name in ("transactor.properties", "cf.properties"):
            shutil.copyfile(SAMPLES / name, work / name)
        run = _shell2({"AWS_ENDPOINT_URL": endpoint})
        for args in (
            ("ensure-transactor", "transactor.properties"),
            ("ensure-cf", "cf.properties"),
            ("create-cf-template", "transactor.properties", "cf.properties", "cf.json"),
        ):
            assert run(*args, cwd=work).code == 0, args
        refused = run("create-cf-stack", REGION, STACK, "cf.json", *WAIT, cwd=work)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.kill()
        proc.wait(10)
    assert refused.code == 1, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: the endpoint refused the template upload: the templates bucket's TLS-only policy "
        "(aws:SecureTransport) is applied to a plain HTTP endpoint, which a plain moto server or "
        f"LocalStack cannot tell apart from HTTPS ({endpoint}): run `datomic-aws sandbox serve` "
        "(the embedded AWS, with this gap corrected) and point AWS_ENDPOINT_URL at it, or use AWS "
        "itself"
    ]


def test_sandbox_serve_help_has_a_summary_its_options_and_an_example() -> None:
    from click.testing import CliRunner

    from datomic_aws.cli import cli

    result = CliRunner().invoke(cli, ["sandbox", "serve", "--help"], prog_name="datomic-aws")
    assert result.exit_code == 0, result.output
    paragraphs = [p.splitlines() for p in result.output.split("\n\n") if p.strip()]
    assert paragraphs[0][0].startswith("Usage: datomic-aws sandbox serve [OPTIONS]")
    summary = " ".join(line.strip() for line in paragraphs[1])
    assert summary.endswith("shell at it."), summary
    assert "--port" in result.output and "--transactors" in result.output
    assert "datomic-aws sandbox serve --transactors" in result.output
    assert "pip install 'datomic-aws[sandbox]'" in result.output
