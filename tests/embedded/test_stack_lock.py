"""The stack lock held in AWS (an SSM parameter): acquire, wait, refuse, expire, take over, refresh,
release; and the lazy scope that takes it before a stack command's first write only.

moto for the parameter's life; Stubber (pinned parameters, AWS's own error codes) for the answers
moto does not give on demand: a create whose answer was lost, a parameter deleted under us.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from datomic_aws.aws import AwsContext
from datomic_aws.errors import AwsCallError, LockedError
from datomic_aws.stack_lock import (
    TTL,
    StackLock,
    _Stop,
    holding_stack_lock,
    parameter_name,
)

REGION = "us-east-1"
STACK = "datomic-prod"
NAME = parameter_name(STACK)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


OURS = (NAME, f"{NAME}.takeover", "/x")


@pytest.fixture(scope="module")
def moto() -> Iterator[None]:
    # One mock for the module: moto's SSM loads AWS's public parameters, which takes seconds.
    with mock_aws():
        yield


@pytest.fixture
def ssm(moto: None) -> Iterator[Any]:
    client = boto3.client("ssm", region_name=REGION)
    yield client
    for name in OURS:
        with contextlib.suppress(client.exceptions.ParameterNotFound):
            client.delete_parameter(Name=name)


def lock(ssm: Any, clock: Clock | None = None, **kw: Any) -> StackLock:
    return StackLock(ssm, REGION, STACK, clock=clock or Clock(), sleep=lambda _s: None, **kw)


def value(ssm: Any, name: str = NAME) -> dict[str, Any]:
    return json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])  # type: ignore[no-any-return]


def names(ssm: Any) -> list[str]:
    """Which of the parameters these tests write exist."""
    found = []
    for name in OURS:
        with contextlib.suppress(ssm.exceptions.ParameterNotFound):
            found.append(ssm.get_parameter(Name=name)["Parameter"]["Name"])
    return sorted(found)


def test_acquire_records_the_owner_and_release_deletes_it(ssm: Any) -> None:
    clock = Clock()
    first = lock(ssm, clock, command="update-stack")
    first.acquire()
    doc = value(ssm)
    assert doc["token"] == first.token
    assert doc["owner"].endswith("@" + os.uname().nodename)
    assert doc["pid"] == os.getpid()
    assert doc["command"] == "update-stack"
    assert doc["expires_epoch"] == clock.now + TTL
    assert ssm.get_parameter(Name=NAME)["Parameter"]["Type"] == "String"
    first.release()
    assert names(ssm) == []


def test_a_second_run_refuses_at_once_naming_the_holder(ssm: Any) -> None:
    holder = lock(ssm, command="update-stack")
    holder.acquire()
    other = lock(ssm, timeout=0, command="apply")
    with pytest.raises(LockedError) as err:
        other.acquire()
    text = str(err.value)
    assert f"stack {STACK} is locked by another datomic-aws run" in text
    assert f"pid {os.getpid()}, update-stack" in text
    assert "--lock-timeout" in text and NAME in text
    assert value(ssm)["token"] == holder.token  # untouched
    other.release()  # never held: does not delete the holder's lock
    assert value(ssm)["token"] == holder.token


def test_a_second_run_waits_saying_who_holds_then_takes_it(ssm: Any) -> None:
    holder = lock(ssm, command="update-stack")
    holder.acquire()
    said: list[str] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            holder.release()

    waiter = StackLock(
        ssm, REGION, STACK, clock=Clock(), sleep=sleep, timeout=60, on_event=said.append, poll=0.5
    )
    waiter.acquire()
    assert waiter.held and value(ssm)["token"] == waiter.token
    assert len(sleeps) == 3 and all(s <= 0.5 for s in sleeps)
    assert len(said) == 1, said  # said once per holder, not once per poll
    assert said[0].startswith(f"waiting for the lock of stack {STACK}: held by ")
    assert "update-stack" in said[0]


def test_an_expired_lock_is_taken_over_and_its_holder_stops_before_its_next_write(
    ssm: Any,
) -> None:
    clock = Clock()
    stale = lock(ssm, clock, command="update-stack")
    stale.acquire()
    clock.now += TTL + 1
    said: list[str] = []
    taker = lock(ssm, clock, timeout=0, on_event=said.append)
    taker.acquire()
    assert value(ssm)["token"] == taker.token
    assert names(ssm) == [NAME]  # the takeover marker is gone
    assert any("took over the lock" in s for s in said), said

    # The stalled holder finds out at its next refresh, and writes nothing more.
    clock.now += 3600
    with pytest.raises(_Stop) as stop:
        stale.gate("autoscaling:DescribeAutoScalingGroups", False)
    assert isinstance(stop.value.error, LockedError)
    assert "this run lost the lock" in str(stop.value.error)
    stale.gate("autoscaling:DescribeAutoScalingGroups", False)  # reads go on
    with pytest.raises(_Stop):  # not a write, not even a cleanup's
        stale.gate("autoscaling:SetDesiredCapacity", True)
    stale.release()
    assert value(ssm)["token"] == taker.token  # never deletes the new holder's lock


def test_the_holder_refreshes_its_expiry_during_long_waits(ssm: Any) -> None:
    clock = Clock()
    held = lock(ssm, clock, refresh_every=60)
    held.acquire()
    first = value(ssm)["expires_epoch"]
    clock.now += 30
    held.gate("cloudformation:DescribeStacks", False)  # not due yet: no write
    assert value(ssm)["expires_epoch"] == first
    clock.now += 31
    held.gate("cloudformation:DescribeStacks", False)
    assert value(ssm)["expires_epoch"] == clock.now + TTL
    # So a run polling for an hour keeps its lock.
    for _ in range(60):
        clock.now += 61
        held.gate("autoscaling:DescribeAutoScalingGroups", False)
    other = lock(ssm, clock, timeout=0)
    with pytest.raises(LockedError):
        other.acquire()


def test_a_takeover_marker_left_by_a_dead_run_is_cleared(ssm: Any) -> None:
    clock = Clock()
    lock(ssm, clock).acquire()
    ssm.put_parameter(
        Name=f"{NAME}.takeover",
        Value=json.dumps({"token": "dead", "expires_epoch": clock.now}),
        Type="String",
    )
    clock.now += TTL + 1
    taker = lock(ssm, clock, timeout=0)
    taker.acquire()
    assert value(ssm)["token"] == taker.token
    assert names(ssm) == [NAME]


def test_the_lock_of_a_killed_run_on_this_machine_is_taken_over_at_once(ssm: Any) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    holder = lock(ssm)
    holder.acquire()
    doc = value(ssm)
    doc["pid"] = pid
    doc["token"] = "killed-run"
    ssm.put_parameter(Name=NAME, Value=json.dumps(doc), Type="String", Overwrite=True)
    taker = lock(ssm, timeout=0)
    taker.acquire()
    assert value(ssm)["token"] == taker.token


def test_a_lock_from_another_machine_is_never_presumed_dead(ssm: Any) -> None:
    holder = lock(ssm)
    holder.acquire()
    doc = value(ssm)
    doc.update(pid=999_999_999, token="elsewhere", machine="other-host/boot/1")
    ssm.put_parameter(Name=NAME, Value=json.dumps(doc), Type="String", Overwrite=True)
    with pytest.raises(LockedError):
        lock(ssm, timeout=0).acquire()


def test_a_value_we_cannot_read_is_a_lock_held_by_unknown(ssm: Any) -> None:
    ssm.put_parameter(Name=NAME, Value="someone wrote this by hand", Type="String")
    with pytest.raises(LockedError, match="unknown"):
        lock(ssm, Clock(now=time.time()), timeout=0).acquire()


# --- AWS's error codes, with Stubber ----------------------------------------------------------


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "ssm", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def _put(overwrite: bool) -> dict[str, Any]:
    return {
        "Name": NAME,
        "Value": ANY,
        "Type": "String",
        "Overwrite": overwrite,
        "Description": ANY,
    }


def test_a_create_whose_answer_was_lost_is_recognised_as_ours(
    stubbed: tuple[Any, Stubber],
) -> None:
    """botocore retried a PutParameter that had succeeded: the retry gets ParameterAlreadyExists,
    and the parameter holds our own token."""
    client, stub = stubbed
    mine = lock(client)
    stub.add_client_error(
        "put_parameter",
        "ParameterAlreadyExists",
        "The parameter already exists. To overwrite this value, set the overwrite option in the "
        "request to true.",
        400,
        expected_params=_put(False),
    )
    stub.add_response(
        "get_parameter",
        {"Parameter": {"Name": NAME, "Value": mine._record().to_json()}},
        {"Name": NAME},
    )
    mine.acquire()
    assert mine.held


def test_a_lock_released_between_our_two_calls_is_taken_at_once(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stub = stubbed
    mine = lock(client, timeout=0)
    stub.add_client_error("put_parameter", "ParameterAlreadyExists", "exists", 400, _put(False))
    stub.add_client_error("get_parameter", "ParameterNotFound", "", 400, {"Name": NAME})
    stub.add_response("put_parameter", {"Version": 1}, _put(False))
    mine.acquire()
    assert mine.held
    # Deleted under us (by hand): release says nothing and raises nothing.
    stub.add_client_error("get_parameter", "ParameterNotFound", "", 400, {"Name": NAME})
    mine.release()


def test_access_denied_names_the_action_and_the_lock(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_client_error(
        "put_parameter",
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ssm:PutParameter",
        400,
        _put(False),
    )
    with pytest.raises(AwsCallError) as err:
        lock(client).acquire()
    assert err.value.code == "AccessDeniedException"
    assert NAME in str(err.value) and "grant PutParameter" in str(err.value)


# --- the lazy scope ---------------------------------------------------------------------------


def test_the_scope_takes_the_lock_only_before_a_write_and_reruns_the_command(ssm: Any) -> None:
    if True:
        ctx = AwsContext(command="update-stack", lock_timeout=0)
        runs: list[int] = []

        @holding_stack_lock
        def command(ctx: AwsContext, region: str, stack: str, *, write: bool) -> str:
            runs.append(1)
            ctx.client("sts", region).get_caller_identity()
            if write:
                ctx.client("ssm", region).put_parameter(Name="/x", Value="1", Type="String")
                # The lock is held here, by this run.
                assert value(ctx.client("ssm", region))["command"] == "update-stack"
            return "done"

        assert command(ctx, REGION, STACK, write=False) == "done"
        assert ctx.call_log.mutating() == {}  # a no-op run makes no write, not even the lock's
        # One read: is there a lock a killed run left behind?
        assert {k: v for k, v in ctx.call_log.calls.items() if k.startswith("ssm:")} == {
            "ssm:GetParameter": 1
        }
        assert len(runs) == 1

        assert command(ctx, REGION, STACK, write=True) == "done"
        assert len(runs) == 3  # ran again from the start once the lock was held
        writes = ctx.call_log.mutating()
        assert writes == {"ssm:DeleteParameter": 1, "ssm:PutParameter": 2}, writes
        assert names(ctx.client("ssm", REGION)) == ["/x"]  # the lock was released

        dry = AwsContext(read_only=True)
        assert command(dry, REGION, STACK, write=False) == "done"
        assert not any(k.startswith("ssm:") for k in dry.call_log.calls)


def test_the_scope_releases_the_lock_when_the_command_fails(ssm: Any) -> None:
    if True:
        ctx = AwsContext(lock_timeout=0)

        @holding_stack_lock
        def command(ctx: AwsContext, region: str, stack: str) -> None:
            ctx.client("ssm", region).put_parameter(Name="/x", Value="1", Type="String")
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            command(ctx, REGION, STACK)
        assert names(ctx.client("ssm", REGION)) == ["/x"]


def test_a_command_removes_the_lock_a_killed_run_left_even_with_nothing_to_write(
    ssm: Any,
) -> None:
    killed = lock(ssm)
    killed.acquire()
    doc = value(ssm)
    doc.update(token="killed-run", pid=2**22 + 12345)  # above pid_max's default: never alive
    ssm.put_parameter(Name=NAME, Value=json.dumps(doc), Type="String", Overwrite=True)
    said: list[str] = []

    @holding_stack_lock
    def command(ctx: AwsContext, region: str, stack: str, *, waiting: Any) -> None:
        ctx.client("sts", region).get_caller_identity()

    class Waiting:
        on_event = staticmethod(said.append)

    command(AwsContext(lock_timeout=0), REGION, STACK, waiting=Waiting())
    assert names(ssm) == []
    assert said == [
        f"removed the lock of stack {STACK} left by {doc['owner']} (pid {doc['pid']}, "
        f"{doc['command'] or 'datomic-aws'}, since {doc['since']}, expires "
        f"{doc['expires']})"
    ]
    # A live holder's lock is left alone.
    holder = lock(ssm)
    holder.acquire()
    command(AwsContext(lock_timeout=0), REGION, STACK, waiting=Waiting())
    assert value(ssm)["token"] == holder.token


def test_a_refused_run_makes_no_write_not_even_a_cleanup(ssm: Any) -> None:
    """A refusal is raised past the command's own `except Exception` cleanups (a replacement's
    size restore): the run wrote nothing, so there is nothing to restore, and the lock is not
    waited for twice."""
    holder = lock(ssm)
    holder.acquire()
    ctx = AwsContext(lock_timeout=0)
    cleanups: list[str] = []

    @holding_stack_lock
    def command(ctx: AwsContext, region: str, stack: str) -> None:
        ssm_ = ctx.client("ssm", region)
        try:
            ssm_.put_parameter(Name="/x", Value="1", Type="String")
        except Exception:  # what the replace package does on a failure: restore, then re-raise
            cleanups.append("restore")
            raise

    with pytest.raises(LockedError, match="is locked by another datomic-aws run"):
        command(ctx, REGION, STACK)
    assert cleanups == []
    assert ctx.call_log.mutating() == {"ssm:PutParameter": 1}  # the lock's create, refused
    assert names(ssm) == [NAME]


def test_a_takeover_under_way_by_another_run_is_waited_for_not_raced(ssm: Any) -> None:
    clock = Clock()
    stale = lock(ssm, clock)
    stale.acquire()
    clock.now += TTL + 1
    marker = {"token": "other-taker", "expires_epoch": clock.now + 30}
    ssm.put_parameter(Name=f"{NAME}.takeover", Value=json.dumps(marker), Type="String")
    sleeps: list[float] = []
    late = StackLock(ssm, REGION, STACK, clock=clock, sleep=sleeps.append, timeout=0)
    with pytest.raises(LockedError):
        late.acquire()
    assert value(ssm)["token"] == stale.token  # left to the run taking it over
    assert value(ssm, f"{NAME}.takeover")["token"] == "other-taker"
