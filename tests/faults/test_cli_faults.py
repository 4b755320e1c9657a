"""Fault injection through the real process: a faulty proxy between `datomic-aws` and moto.

- Throttling and HTTP 500 on the first two attempts of every call: every command still succeeds,
  and AWS and the files end exactly as after a run without faults.
- Writes whose answer is lost (applied, then answered 500): botocore repeats them; still the same
  end state.
- AccessDenied on one call: exit 1, one `Error:` line naming the action (`service:Operation`) and
  the resource, no traceback; `--debug` adds the traceback and the AWS request id.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.faulty_proxy import REQUEST_ID, FaultyProxy
from tests.conftest import environment as _environment
from tests.faults.aws_snapshot import normalise_ids, snapshot


def environment(folder: Path) -> Path:
    """The samples folder with a fixed digest key: two independent runs (a reference and a
    faulted one) store the same configuration, the key being random otherwise (issue 11)."""
    return _environment(folder, digest_secret="5e" * 32)


SYSTEM = "my-datomic-system"
STACK = f"datomic-{SYSTEM}"
FILES = ("transactor.properties", "cf.properties", "cf.json")


COMMANDS = ("ensure-transactor", "ensure-cf", "create-cf-template", "create-cf-stack", "apply")


def sequence(
    cli: Any, folder: Path, proxy: FaultyProxy | None = None, through: tuple[str, ...] = COMMANDS
) -> list[Any]:
    """The four commands one by one, then `apply` on the result: a no-op rerun of everything.
    The commands named in `through` go through `proxy` when given (the others straight to moto);
    its `marks` get the number of calls it saw before each command."""
    t, cf, out = (str(folder / n) for n in FILES)
    runs = []
    for command, args in zip(
        COMMANDS,
        (
            ("ensure-transactor", t),
            ("ensure-cf", cf),
            ("create-cf-template", t, cf, out),
            ("create-cf-stack", "us-east-1", STACK, out, "--poll-interval", "0.1"),
            ("--output", "json", "apply", str(folder), "--poll-interval", "0.1"),
        ),
        strict=True,
    ):
        env = {"AWS_ENDPOINT_URL": proxy.url} if proxy and command in through else None
        if proxy:
            proxy.marks.append(len(proxy.calls))
        run = cli(*args, env=env)
        assert run.code == 0, f"{args[0]}: {run.stderr}"
        runs.append(run)
    rerun = runs[-1].json
    assert rerun["changed"] is False, rerun["changes"]
    assert rerun["aws_calls"]["mutating"] == 0, rerun["aws_calls"]
    return runs


def end_state(boto: Any, folder: Path) -> tuple[str, dict[str, str]]:
    state = normalise_ids(json.dumps(snapshot(boto), sort_keys=True, default=str))
    files = {n: normalise_ids((folder / n).read_bytes().decode("latin-1")) for n in FILES}
    return state, files


_REFERENCE: dict[str, Any] = {}


def calls_by_command(proxy: FaultyProxy) -> dict[str, list[Any]]:
    """The calls `proxy` saw, by command of the sequence (from its marks)."""
    calls = list(proxy.calls.values())
    ends = [*proxy.marks[1:], len(calls)]
    return {c: calls[a:b] for c, a, b in zip(COMMANDS, proxy.marks, ends, strict=True)}


@pytest.fixture
def reference(cli: Any, boto: Any, endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The end state of the sequence without faults (computed once, on a reset moto server), and
    the calls each of its commands made (through a proxy that injects nothing)."""

    def get() -> tuple[str, dict[str, str]]:
        if not _REFERENCE:
            reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
            urllib.request.urlopen(reset, timeout=10).close()
            folder = environment(tmp_path_factory.mktemp("reference") / "env")
            proxy = FaultyProxy(endpoint)
            try:
                sequence(cli, folder, proxy)
            finally:
                proxy.close()
            _REFERENCE["state"] = end_state(boto, folder)
            _REFERENCE["calls"] = calls_by_command(proxy)
        return _REFERENCE["state"]  # type: ignore[no-any-return]

    return get


@pytest.fixture
def throttling_proxy(endpoint: str) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(endpoint, fail_attempts=2)
    yield proxy
    proxy.close()


# The sequence split in shards that run in parallel (the faults cost botocore's back-off, about
# half a second a call): each shard sends its commands through the faulty proxy, the others
# straight to moto. Together they cover every command, and every call of each; the calls each
# shard sees at least (37, 25 and 29 of 91 in a run) add up to the 80 the whole sequence sees at
# least. (apply's was 30 until a rerun of ensure-cf stopped reading the VPC its subnets prove.)
SHARDS = {
    ("ensure-transactor", "ensure-cf", "create-cf-template"): 31,
    ("create-cf-stack",): 20,
    ("apply",): 29,
}


@pytest.mark.parametrize("through", SHARDS, ids="+".join)
def test_throttling_and_500_on_the_first_two_attempts_of_every_call(
    cli: Any,
    boto: Any,
    tmp_path: Path,
    throttling_proxy: FaultyProxy,
    reference: Any,
    through: tuple[str, ...],
) -> None:
    assert sorted(c for shard in SHARDS for c in shard) == sorted(COMMANDS)
    assert sum(SHARDS.values()) >= 80
    folder = environment(tmp_path / "env")
    runs = sequence(cli, folder, throttling_proxy, through)
    got = end_state(boto, folder)
    expected = reference()  # after the snapshot: the reference run resets the server

    # Every call that reached moto was throttled, then answered 500, then sent: the faults hit
    # every one of the ~90 calls of the sequence, and no call needed more than its third attempt.
    calls = throttling_proxy.forwarded()
    assert len(calls) >= SHARDS[through], len(calls)
    assert {tuple(c.outcomes) for c in calls} == {("throttle", "500", "sent")}
    # Every call of this shard's commands met the faults: the same operations as without faults,
    # and the sequence without faults makes at least 80 calls to the eight services.
    plain = _REFERENCE["calls"]
    assert sum(len(v) for v in plain.values()) >= 80, plain
    assert {c.service for v in plain.values() for c in v} >= {
        "sts",
        "iam",
        "s3",
        "ssm",
        "dynamodb",
        "ec2",
        "cloudformation",
        "autoscaling",
    }
    wanted = {(c.service, c.operation) for command in through for c in plain[command]}
    assert {(c.service, c.operation) for c in calls} == wanted
    if "apply" in through:
        # The report counts API calls, not attempts: apply's count is the calls the proxy saw
        # for it.
        assert (
            runs[-1].json["aws_calls"]["total"]
            == len(throttling_proxy.calls) - throttling_proxy.marks[-1]
        )
    assert got == expected


LOST = ("sts", "iam", "s3", "ssm", "dynamodb", "ec2", "autoscaling")


def test_writes_whose_answer_is_lost_are_repeated_safely(
    cli: Any, boto: Any, endpoint: str, tmp_path: Path, reference: Any
) -> None:
    """The nastier 500: AWS did the write, the answer never arrived, botocore sends it again.
    CloudFormation is left out: its writes carry idempotency tokens that moto ignores (a repeated
    CreateChangeSet makes a second stack there, where AWS returns the first)."""
    proxy = FaultyProxy(endpoint, lose_answers=LOST)
    try:
        folder = environment(tmp_path / "env")
        sequence(cli, folder, proxy)
        lost = [c for c in proxy.forwarded() if c.outcomes[0] == "lost"]
    finally:
        proxy.close()
    assert len(lost) >= 20, lost
    assert end_state(boto, folder) == reference()


@pytest.mark.parametrize(
    ("action", "command", "resource"),
    [
        ("iam:CreateRole", "ensure-transactor", f"iam role datomic-{SYSTEM}-transactor"),
        ("dynamodb:CreateTable", "ensure-transactor", f"dynamodb table {SYSTEM}"),
        ("ec2:CreateSecurityGroup", "ensure-cf", f"ec2 security group datomic-{SYSTEM}-transactor"),
    ],
)
def test_access_denied_on_one_call_names_the_action_and_the_resource(
    cli: Any, endpoint: str, tmp_path: Path, action: str, command: str, resource: str
) -> None:
    folder = environment(tmp_path / "env")
    path = folder / ("cf.properties" if command == "ensure-cf" else "transactor.properties")
    before = path.read_bytes()
    proxy = FaultyProxy(endpoint, deny={action})
    try:
        env = {"AWS_ENDPOINT_URL": proxy.url}
        run = cli(command, str(path), env=env)
        debug = cli("--debug", command, str(path), env=env)
        as_json = cli("--output", "json", command, str(path), env=env)
    finally:
        proxy.close()

    assert run.code == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, run.stderr
    assert action in errors[0] and resource in errors[0], errors[0]
    assert f"grant {action}" in errors[0], errors[0]
    assert "Traceback" not in run.stderr and REQUEST_ID not in run.stderr, run.stderr
    assert path.read_bytes() == before  # refused runs leave the file as it was

    assert debug.code == 1
    assert [line for line in debug.stderr.splitlines() if line.startswith("Error:")] == errors
    assert f"AWS request id: {REQUEST_ID}" in debug.stderr, debug.stderr
    assert "Traceback (most recent call last)" in debug.stderr, debug.stderr

    assert as_json.code == 1
    error = as_json.json["error"]
    assert error["exit_code"] == 1 and error["request_id"] == REQUEST_ID
    assert error["messages"] == errors

    # Once the permission is granted, the same command converges.
    again = cli(command, str(path))
    assert again.code == 0, again.stderr
