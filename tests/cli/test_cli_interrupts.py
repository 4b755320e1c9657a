"""Interrupts and concurrency through the real process, against a moto server.

- SIGTERM (what CI cancellation sends) behaves as Ctrl-C: exit 130 with one `Error:` line; during a
  surge the group's sizes are restored; during a write-back no temporary file is left.
- An interrupt stops the parallel ensure phase of `apply` at its next AWS call: no request leaves
  the process after the signal, retries of the calls in flight included.
- One run at a time per stack, across folders: a second update-stack refuses naming the holder
  (`--lock-timeout 0`) or waits for it, and never surges alongside.
- An AWS answer that is not an AWS response (an HTML page from a proxy) is one line, exit 1.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from datomic_aws.sandbox.probe import InServicePoller
from tests.cli.faulty_proxy import FaultyProxy
from tests.cli.fixtures import Proxy, start_cli
from tests.cli.test_cli_stack import (
    FAST,
    GROUP,
    REGION,
    SCALING_WRITES,
    STACK,
    Folder,
    _change_type,
    _created,
    _group,
    _ok,
    _sizes,
    _types,
)
from tests.conftest import environment

LOCK = f"/datomic-aws/locks/{STACK}"


def _start(*args: str, endpoint: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    proc = start_cli(endpoint, *args)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def _wait_for(lines: queue.Queue[str], text: str, seen: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in seen):
        seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))


def _drain(lines: queue.Queue[str], seen: list[str]) -> str:
    while True:
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            return "".join(seen)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def _no_lock(boto: Any) -> None:
    with pytest.raises(ClientError) as err:
        boto("ssm").get_parameter(Name=LOCK)
    assert err.value.response["Error"]["Code"] == "ParameterNotFound"


# --- SIGTERM ------------------------------------------------------------------------------------


def _sigterm_mid_surge(
    proc: subprocess.Popen[str],
    lines: queue.Queue[str],
    proxy: Proxy,
    boto: Any,
    before: tuple[int, int, int],
    *,
    release: bool = False,
) -> str:
    """SIGTERM once the run has raised the group and its termination of the old instance is held
    (the restore's own calls then go through; `release` drops the held one); exit 130; stderr."""
    seen: list[str] = []
    try:
        _wait_for(lines, "launching a replacement", seen)
        assert proxy.wait_held("TerminateInstanceInAutoScalingGroup", timeout=60), seen
        assert _sizes(_group(boto))[1] == before[1] + 1  # raised
        proxy.held_operations.clear()
        proc.send_signal(signal.SIGTERM)
        if release:
            proxy.release()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = _drain(lines, seen)
    assert code == 130, stderr
    return stderr


def test_sigterm_during_a_surge_restores_the_sizes_and_exits_130(
    cli: Any, boto: Any, proxy: Proxy, tmp_path: Path
) -> None:
    folder = _created(cli, tmp_path)
    (old,) = [i["InstanceId"] for i in _group(boto)["Instances"]]
    before = _sizes(_group(boto))
    _change_type(cli, folder, "m7i.xlarge")

    # The old instance's termination is held: the run is mid-surge, the replacement serving.
    proxy.held_operations.add("TerminateInstanceInAutoScalingGroup")
    proc, lines = _start(
        "update-stack", REGION, STACK, str(folder.template), *FAST, endpoint=proxy.url
    )
    stderr = _sigterm_mid_surge(proc, lines, proxy, boto, before)
    errors = _errors(stderr)
    assert len(errors) == 1, stderr
    assert errors[0].startswith(f"Error: interrupted while terminating {old}"), errors
    assert "the group's sizes were restored" in errors[0]
    assert "Traceback" not in stderr

    group = _group(boto)
    assert _sizes(group) == before
    assert [i["InstanceId"] for i in group["Instances"]] == [old]  # the surplus went, not the old
    assert "datomic-aws:max-size" not in {t["Key"] for t in group.get("Tags", [])}
    _no_lock(boto)


def test_sigterm_during_a_fleets_surge_restores_that_folders_sizes_and_lock(
    cli: Any, boto: Any, proxy: Proxy, tmp_path: Path
) -> None:
    """`apply DIR DIR`: each folder runs in a worker thread, where no KeyboardInterrupt arrives.
    The folder's run is stopped at its next AWS call and unwinds as a single apply does: the
    raised sizes restored, the surplus gone, the stack lock released (its calls not cut short)."""
    folder = _created(cli, tmp_path)
    before = _sizes(_group(boto))
    _change_type(cli, folder, "m7i.xlarge")
    invalid = tmp_path / "invalid"
    invalid.mkdir()
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(folder.path / name, invalid / name)
    Folder(invalid).edit(
        Folder(invalid).cf, **{"aws-autoscaling-group-size=1": "aws-autoscaling-group-size=x"}
    )

    proxy.held_operations.add("TerminateInstanceInAutoScalingGroup")
    proc, lines = _start("apply", str(folder.path), str(invalid), *FAST, endpoint=proxy.url)
    # A worker blocked in a call is not woken by a signal: the held attempt is dropped, and
    # botocore's retry of it is where the interrupt reaches the folder's thread.
    stderr = _sigterm_mid_surge(proc, lines, proxy, boto, before, release=True)
    assert "Traceback" not in stderr
    group = _group(boto)
    assert _sizes(group) == before, stderr
    assert len(group["Instances"]) == before[1], stderr
    assert "datomic-aws:max-size" not in {t["Key"] for t in group.get("Tags", [])}
    _no_lock(boto)


def test_sigterm_during_a_write_back_leaves_no_temporary_file(
    endpoint: str, tmp_path: Path
) -> None:
    folder = environment(tmp_path / "env")
    path = folder / "transactor.properties"
    original = path.read_bytes()
    marker = tmp_path / "in-write-back"
    # The real CLI, with the write-back's fsync made slow so that the signal lands inside it.
    program = (
        "import os, sys, time\n"
        "def slow(fd):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "    time.sleep(60)\n"
        "os.fsync = slow\n"
        f"sys.argv = ['datomic-aws', 'ensure-transactor', {str(path)!r}]\n"
        "from datomic_aws.cli import main\n"
        "main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", program],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AWS_ENDPOINT_URL": endpoint},
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        temps = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1 and temps[0].startswith(".transactor.properties."), temps
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert _errors(stderr) == ["Error: interrupted: rerun the same command to converge"], stderr
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    assert path.read_bytes() == original


# --- an interrupt stops the parallel ensure phase --------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_apply_stops_every_aws_call(
    proxy: Proxy, tmp_path: Path, signum: int
) -> None:
    folder = environment(tmp_path / "env")
    # One write of each parallel step is held: both workers are mid-call when the signal comes.
    proxy.held_operations.update({"CreateTable", "CreateSecurityGroup"})
    proc, lines = _start("apply", str(folder), *FAST, endpoint=proxy.url)
    try:
        assert proxy.wait_held("CreateTable", timeout=120), proxy.log
        assert proxy.wait_held("CreateSecurityGroup", timeout=120), proxy.log
        sent = len(proxy.log)
        proc.send_signal(signum)
        time.sleep(1.5)
        assert len(proxy.log) == sent, proxy.log[sent:]
        # The calls in flight now fail (connection dropped): botocore would retry them.
        proxy.release()
        code = proc.wait(timeout=60)
        time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = _drain(lines, [])
    assert code == 130, stderr
    assert proxy.log[sent:] == []  # not one request after the interrupt, retries included
    assert len(_errors(stderr)) == 1 and _errors(stderr)[0].startswith("Error: interrupted"), stderr
    assert "Traceback" not in stderr


# --- one run at a time per stack ----------------------------------------------------------------


def test_two_update_stack_runs_from_two_folders_never_surge_together(
    cli: Any, boto: Any, endpoint: str, proxy: Proxy, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    first = _created(cli, tmp_path / "a")
    _change_type(cli, first, "m7i.xlarge")
    shutil.copytree(first.path, tmp_path / "b" / "env")
    second = Folder(tmp_path / "b" / "env")
    assert second.template.read_bytes() == first.template.read_bytes()
    for op in SCALING_WRITES:
        proxy.delays[op] = 0.3
    # The holder's termination of the old instance is held: until the test lets it go, the group
    # runs the replacement next to the outdated instance, which the other runs would terminate
    # (or surge for) if they did not wait.
    proxy.held_operations.add("TerminateInstanceInAutoScalingGroup")

    args = ("--output", "json", "update-stack", REGION, STACK)
    waiter: subprocess.Popen[str] | None = None
    with InServicePoller(endpoint, REGION, GROUP) as poller:
        holder, holder_lines = _start(*args, str(first.template), *FAST, endpoint=proxy.url)
        seen: list[str] = []
        waited: list[str] = []
        try:
            _wait_for(holder_lines, "launching a replacement", seen)
            assert proxy.wait_held("TerminateInstanceInAutoScalingGroup", timeout=60), seen
            lock = json.loads(boto("ssm").get_parameter(Name=LOCK)["Parameter"]["Value"])
            assert lock["pid"] == holder.pid and lock["command"] == "update-stack"

            # The others talk to moto directly: nothing of theirs is held.
            waiter, waiter_lines = _start(*args, str(second.template), *FAST, endpoint=endpoint)
            refused = cli("--lock-timeout", "0", *args, str(second.template), *FAST)
            _wait_for(waiter_lines, "waiting for the lock", waited)
            # Let the holder finish: its held attempt is dropped, botocore sends it again.
            proxy.held_operations.clear()
            proxy.release()
            assert holder.wait(timeout=120) == 0, _drain(holder_lines, seen)
            assert waiter.wait(timeout=120) == 0, _drain(waiter_lines, waited)
            assert holder.stdout is not None and waiter.stdout is not None
            held_out, waited_out = holder.stdout.read(), waiter.stdout.read()
        finally:
            for proc in (holder, waiter):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
    waiter_err = _drain(waiter_lines, waited)

    # Never more than one extra transactor, never fewer than the group size.
    assert max(s.desired for s in poller.samples) == 2, poller.samples
    assert min(s.in_service for s in poller.samples) >= 1, poller.samples

    assert refused.code == 1, (refused.stdout, refused.stderr)
    (error,) = _errors(refused.stderr)
    assert f"stack {STACK} is locked by another datomic-aws run" in error
    assert f"(pid {holder.pid}, update-stack" in error and "--lock-timeout" in error
    assert "Traceback" not in refused.stderr

    assert f"waiting for the lock of stack {STACK}: held by " in waiter_err
    assert f"(pid {holder.pid}, update-stack" in waiter_err
    # The waiter decided again once it held the lock: nothing was left to do.
    done = json.loads(waited_out)
    assert done["changed"] is False, done["changes"]
    calls = done["aws_calls"]["by_operation"]
    assert not {
        op for op in calls if op.startswith("autoscaling:") and op.split(":")[1] in SCALING_WRITES
    }
    assert "cloudformation:ExecuteChangeSet" not in calls
    assert json.loads(held_out)["changed"] is True

    group = _group(boto)
    assert _sizes(group)[:2] == (1, 1) and len(group["Instances"]) == 1
    assert set(_types(boto, group).values()) == {"m7i.xlarge"}
    _no_lock(boto)
    # A no-op run takes no lock: zero mutating calls.
    again = _ok(cli("--output", "json", *args, str(second.template)))
    assert again.json["aws_calls"]["mutating"] == 0, again.json["aws_calls"]


# --- an answer that is not an AWS response ------------------------------------------------------


@pytest.mark.parametrize("action", ["iam:GetRole", "dynamodb:DescribeTable"])  # XML, JSON
def test_an_html_answer_is_one_line_exit_1(
    cli: Any, endpoint: str, tmp_path: Path, action: str
) -> None:
    folder = environment(tmp_path / "env")
    path = folder / "transactor.properties"
    before = path.read_bytes()
    proxy = FaultyProxy(endpoint, html={action})
    try:
        env = {"AWS_ENDPOINT_URL": proxy.url}
        run = cli("ensure-transactor", str(path), env=env)
        debug = cli("--debug", "ensure-transactor", str(path), env=env)
    finally:
        proxy.close()
    assert run.code == 1, run.stderr
    assert _errors(run.stderr) == [
        f"Error: the answer to {action} is not an AWS response (an HTML error page from a "
        "proxy?): check the network, HTTPS_PROXY/NO_PROXY and --endpoint-url, then rerun; "
        "--debug shows the answer"
    ], run.stderr
    assert "Traceback" not in run.stderr and "<html" not in run.stderr
    assert path.read_bytes() == before
    assert debug.code == 1
    assert _errors(debug.stderr) == _errors(run.stderr)
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ResponseParserError" in debug.stderr
