"""Fault injection, in-process: `apply` killed at each of its AWS writes, then run again.

A kill is simulated by a botocore hook that raises `SimulatedCrash` (a BaseException, so nothing in
the product can swallow it) at the k-th mutating call, and from then on at every call, in every
thread: the process is dead, so the other step `apply` runs side by side must not carry on either.
Two moments are covered: just before the k-th write is sent (it never happened) and just after
AWS applied it (it happened, but the tool never saw the answer).

After the crash a normal run must converge to exactly what an uninterrupted run builds (roles,
profiles, buckets, parameter, table, security group, stack, group and instances; no duplicate),
with files byte-identical to the uninterrupted run's (AWS-generated ids aside), and a third run
must be a no-op with no mutating call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from datomic_aws.aws import AwsContext, is_mutating
from datomic_aws.changes import Result
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import load_transactor
from datomic_aws.deploy import apply_dir
from datomic_aws.errors import DatomicAwsError
from datomic_aws.stack import Waiting
from tests.conftest import SimulatedCrash
from tests.conftest import environment as _environment
from tests.faults.aws_snapshot import normalise_ids, snapshot


def environment(folder: Path) -> Path:
    """The samples folder with a fixed digest key: two independent runs (a reference and a
    faulted one) store the same configuration, the key being random otherwise (issue 11)."""
    return _environment(folder, digest_secret="5e" * 32)


FILES = ("transactor.properties", "cf.properties", "cf.json")


class Kill:
    """A botocore hook pair that kills the run at its k-th write (before or after it is sent)."""

    def __init__(self, fail_at: int | None = None, *, after: bool = False) -> None:
        self.fail_at = fail_at
        self.after = after
        self.writes: list[str] = []
        self.calls = 0
        self.dead = False
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        self.writes.append(name)
        if len(self.writes) == self.fail_at:
            self.dead = True
            raise SimulatedCrash(name)

    def before(self, model: Any, **_: Any) -> None:
        with self._lock:
            if self.dead:
                raise SimulatedCrash("after the kill")
            self.calls += 1
            if is_mutating(model.name) and not self.after:
                self._count(f"{model.service_model.endpoint_prefix}:{model.name}")

    def after_call(self, model: Any, **_: Any) -> None:
        with self._lock:
            if self.dead:
                raise SimulatedCrash("after the kill")
            if is_mutating(model.name) and self.after:
                self._count(f"{model.service_model.endpoint_prefix}:{model.name}")


def files_of(folder: Path) -> dict[str, str]:
    return {
        name: normalise_ids((folder / name).read_bytes().decode("latin-1"))
        for name in FILES
        if (folder / name).exists()
    }


@pytest.fixture
def aws_change_set_names(patched_moto: None) -> Iterator[None]:
    """moto corrected where a rerun after a crash depends on it: on AWS, CreateChangeSet of type
    CREATE for a stack name that already exists is refused with AlreadyExistsException (a change
    set of that name on it, or a stack past REVIEW_IN_PROGRESS), which is how stack/ finds the
    change set a killed run left behind. moto 5.2 creates a second stack of the same name."""
    from moto.cloudformation.exceptions import AlreadyExistsException
    from moto.cloudformation.models import CloudFormationBackend

    original = CloudFormationBackend.create_change_set

    def create_change_set(self: Any, **kw: Any) -> Any:  # moto's responses pass keywords
        stack_name, change_set_name = kw["stack_name"], kw["change_set_name"]
        if kw.get("change_set_type") == "CREATE":
            for stack in self.stacks.values():
                if stack.name != stack_name or stack.status == "DELETE_COMPLETE":
                    continue
                taken = any(
                    cs.change_set_name == change_set_name and cs.stack is stack
                    for cs in self.change_sets.values()
                )
                if taken or stack.status != "REVIEW_IN_PROGRESS":
                    raise AlreadyExistsException(f"{change_set_name} already exists")
        return original(self, **kw)

    # Its own MonkeyPatch, undone at this fixture's teardown, before patched_moto's: the test's
    # `monkeypatch` may be older than patched_moto (autouse fixtures take it first), and undoing
    # it last would put this wrapper of the corrected moto back into an unpatched moto.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CloudFormationBackend, "create_change_set", create_change_set)
        yield


@pytest.fixture
def runner(patched_moto: None, aws_change_set_names: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """apply_dir with a fresh `Kill` per run on one shared AwsContext.

    A kill ends the process, but an AwsContext holds no resource state (its clients and the account
    id are the same in every moto account), so one context serves every run and its clients are
    built once; each run gets its own `Kill` through this indirection, and starts with nothing
    converged, as a new process would. moto's 2,600 default AMIs
    are not loaded (the template takes its image from an SSM parameter): resetting them on every
    `mock_aws` would cost most of the test's time.
    """
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    current = [Kill()]
    ctx = AwsContext(
        hooks=[
            ("before-call.*.*", lambda **kw: current[0].before(**kw)),
            ("after-call.*.*", lambda **kw: current[0].after_call(**kw)),
        ]
    )
    waiting = Waiting(timeout=60, poll_interval=0.01, sleep=lambda _s: None)

    def run(folder: Path, kill: Kill | None = None) -> tuple[Result, Kill]:
        current[0] = kill or Kill()
        ctx.converged.clear()
        return apply_dir(ctx, folder, waiting=waiting), current[0]

    return run


_READERS: dict[str, Any] = {}


def state() -> dict[str, Any]:
    """The AWS state, read with plain boto3 clients (not the product's) built once: a client made
    under one `mock_aws` keeps reaching moto under the next."""

    def client(service: str) -> Any:
        if service not in _READERS:
            _READERS[service] = boto3.client(service, region_name="us-east-1")
        return _READERS[service]

    return snapshot(client)


def test_an_uninterrupted_apply_builds_one_of_each(runner: Any, tmp_path: Path) -> None:
    """The reference the crash test compares with: what it must hold, so that a wrong reference
    (say, two stacks) cannot make the comparison pass."""
    from moto import mock_aws

    with mock_aws():
        folder = environment(tmp_path / "clean")
        result, kill = runner(folder)
        assert result.pending
        wanted = state()
        again, quiet = runner(folder)
    assert not again.pending and [w for w in quiet.writes] == []
    assert sorted(wanted["roles"]) == [
        "datomic-my-datomic-system-peer",
        "datomic-my-datomic-system-transactor",
    ]
    assert len(wanted["buckets"]) == 2  # the log bucket and the templates bucket
    assert [b["objects"] for n, b in wanted["buckets"].items() if "templates" in n] == [1]
    assert list(wanted["tables"]) == ["my-datomic-system"]
    assert list(wanted["parameters"]) == ["/datomic/my-datomic-system/transactor.properties"]
    assert {k: len(v) for k, v in wanted["security_groups"].items()} == {
        "datomic-my-datomic-system-transactor": 1
    }
    assert {k: [s["status"] for s in v] for k, v in wanted["stacks"].items()} == {
        "datomic-my-datomic-system": ["CREATE_COMPLETE"]
    }
    assert wanted["auto_scaling_groups"] == {
        "datomic-my-datomic-system-transactors": {"sizes": (1, 1, 2), "instances": ["InService"]}
    }
    assert wanted["running_instances"] == 1
    assert len(kill.writes) >= 25, kill.writes


# The sweep is cut into shards (every SHARDS-th write from a different start): each write is still
# killed before and after it is sent, each in its own account, with every assertion; the shards
# only let the test workers share the sweep, which would otherwise end the run alone.
SHARDS = 3
_REFERENCE: dict[str, Any] = {}


def reference(runner: Any, folder: Path) -> tuple[list[str], str, dict[str, str]]:
    """The writes, AWS state and files of an uninterrupted run, computed once per process (a run
    is deterministic: the same writes in the same order, the same state up to generated ids)."""
    from moto import mock_aws

    if not _REFERENCE:
        with mock_aws():
            clean = environment(folder)
            _, kill = runner(clean)
            wanted = normalise_ids(json.dumps(state(), sort_keys=True, default=str))
        _REFERENCE.update(writes=kill.writes, state=wanted, files=files_of(clean))
    return _REFERENCE["writes"], _REFERENCE["state"], _REFERENCE["files"]


@pytest.mark.parametrize("shard", range(SHARDS))
@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_crash_at_any_write_of_apply_then_a_rerun_converges(
    runner: Any, tmp_path: Path, moment: str, shard: int
) -> None:
    from moto import mock_aws

    writes, wanted, wanted_files = reference(runner, tmp_path / "clean")
    assert set(wanted_files) == set(FILES)
    assert len(writes) >= 25, writes  # every shard has writes to kill

    failures: list[str] = []
    for k in range(1 + shard, len(writes) + 1, SHARDS):
        with mock_aws():
            folder = environment(tmp_path / f"crash-{moment}-{k}")
            kill = Kill(k, after=moment == "after")
            with pytest.raises(SimulatedCrash):
                runner(folder, kill)
            where = f"crash {moment} write {k} of {len(writes)} ({kill.writes[-1]})"
            try:
                # The files are valid after the crash (never half-written).
                load_transactor(folder / "transactor.properties")
                load_cf(folder / "cf.properties")
                runner(folder)
                assert normalise_ids(json.dumps(state(), sort_keys=True, default=str)) == wanted
                assert files_of(folder) == wanted_files
                third, quiet = runner(folder)
                assert third.pending is False
                assert quiet.writes == [], quiet.writes
            except (AssertionError, DatomicAwsError) as exc:
                failures.append(f"{where}: {type(exc).__name__}: {exc}"[:400])
    assert failures == [], "\n".join(failures)
