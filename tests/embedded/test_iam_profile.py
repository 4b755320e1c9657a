"""resources/iam.py: the instance profile at a derived name follows the ownership rule on its own.

A profile named datomic-<system>-transactor that we did not create (it holds another role, a role
we did not create, or nothing, and carries no tags of ours) is refused before any write, naming it
and --adopt; --adopt tags it and makes it hold our role; a rerun converges with no write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import SAMPLES, CallRecorder, new_ctx

from datomic_aws import errors, names
from datomic_aws.app.ensure_transactor import ensure_transactor
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from datomic_aws.resources.iam import RoleSpec, ensure_role, read_profile

SYSTEM = "my-datomic-system"  # aws-dynamodb-table of the ddb sample
ROLE = names.transactor_role(SYSTEM)
PROFILE = f"iam instance profile {ROLE}"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def _sample(tmp_path: Path) -> Path:
    path = tmp_path / "transactor.properties"
    path.write_bytes((SAMPLES / "transactor.properties").read_bytes())
    return path


def _iam() -> Any:
    return boto3.client("iam", region_name="us-east-1")


def _foreign_profile(holding: str | None, tags: dict[str, str] | None = None) -> None:
    iam = _iam()
    iam.create_instance_profile(
        InstanceProfileName=ROLE,
        Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    )
    if holding:
        iam.create_role(RoleName=holding, AssumeRolePolicyDocument=TRUST)
        iam.add_role_to_instance_profile(InstanceProfileName=ROLE, RoleName=holding)


def _spec(explicit: bool = False) -> RoleSpec:
    return RoleSpec(ROLE, SYSTEM, explicit, {}, "test role")


def test_a_profile_holding_another_role_is_refused_then_adopted_then_converged(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    _foreign_profile(holding="someone-elses-role")
    path = _sample(tmp_path)
    before = path.read_bytes()
    recorder.operations.clear()

    with pytest.raises(errors.OwnershipError) as refused:
        ensure_transactor(ctx, path)
    assert PROFILE in str(refused.value)
    assert "--adopt" in str(refused.value)
    assert recorder.mutating == []
    assert path.read_bytes() == before
    assert boto3.client("dynamodb", region_name="us-east-1").list_tables()["TableNames"] == []

    adopted = ensure_transactor(new_ctx(CallRecorder()), path, adopt=True)
    (change,) = [c for c in adopted.changes if c.resource == f"iam role {ROLE}"]
    # The role did not exist: creating it is what "create" reports; the profile was adopted.
    assert change.action is Action.CREATE
    assert f"instance profile {ROLE}: adopt (tag datomic:system={SYSTEM})" in change.details
    assert any("remove the role someone-elses-role" in d for d in change.details)
    profile = read_profile(_iam(), ROLE)
    assert profile is not None
    assert profile.roles == (ROLE,)
    assert names.is_ours(profile.tags, SYSTEM)
    # The other role is left alone: only taken out of the profile.
    assert _iam().get_role(RoleName="someone-elses-role")["Role"]

    again = CallRecorder()
    assert ensure_transactor(new_ctx(again), path).pending is False
    assert again.mutating == []


def test_a_profile_holding_a_role_we_did_not_create_is_refused(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    # The role at our derived name exists too, untagged: neither is ours.
    _foreign_profile(holding=ROLE)
    recorder.operations.clear()
    with pytest.raises(errors.OwnershipError):
        ensure_role(ctx.client("iam", "us-east-1"), _spec(), dry_run=False, adopt=False)
    assert recorder.mutating == []

    change = ensure_role(ctx.client("iam", "us-east-1"), _spec(), dry_run=False, adopt=True)
    assert change.action is Action.UPDATE
    profile = read_profile(_iam(), ROLE)
    assert profile is not None and profile.roles == (ROLE,) and names.is_ours(profile.tags, SYSTEM)
    # Our role was already in it: tagged, and nothing removed or added.
    assert recorder.mutating == ["iam:TagInstanceProfile"]


def test_an_empty_profile_we_did_not_create_is_refused_when_our_role_is_ours(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    iam = ctx.client("iam", "us-east-1")
    _iam().create_role(RoleName=ROLE, AssumeRolePolicyDocument=TRUST, Tags=names.tag_list(SYSTEM))
    _foreign_profile(holding=None)
    recorder.operations.clear()
    with pytest.raises(errors.OwnershipError) as refused:
        ensure_role(iam, _spec(), dry_run=True, adopt=False)
    assert PROFILE in str(refused.value)
    with pytest.raises(errors.OwnershipError):
        ensure_role(iam, _spec(), dry_run=False, adopt=False)
    assert recorder.mutating == []

    planned = ensure_role(iam, _spec(), dry_run=True, adopt=True)
    assert planned.action is Action.UPDATE
    assert recorder.mutating == []
    done = ensure_role(iam, _spec(), dry_run=False, adopt=True)
    assert done.details == planned.details
    assert sorted(recorder.mutating) == ["iam:AddRoleToInstanceProfile", "iam:TagInstanceProfile"]
    recorder.operations.clear()
    assert ensure_role(iam, _spec(), dry_run=False, adopt=False).action is Action.NOOP
    assert recorder.mutating == []


def test_a_profile_of_another_system_is_refused_even_with_adopt(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    _foreign_profile(holding="theirs", tags=names.tags("another-system"))
    recorder.operations.clear()
    for explicit in (False, True):
        with pytest.raises(errors.ResourceMismatch) as refused:
            ensure_role(ctx.client("iam", "us-east-1"), _spec(explicit), dry_run=False, adopt=True)
        assert PROFILE in str(refused.value)
        assert "datomic:system=another-system" in str(refused.value)
    assert recorder.mutating == []
    profile = read_profile(_iam(), ROLE)
    assert profile is not None and profile.roles == ("theirs",)


def test_our_own_profile_holding_a_stray_role_is_converged_without_adopt(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    _foreign_profile(holding="stray", tags=names.tags(SYSTEM))
    iam = ctx.client("iam", "us-east-1")
    change = ensure_role(iam, _spec(), dry_run=False, adopt=False)
    assert change.action is Action.CREATE
    assert f"instance profile {ROLE}: remove the role stray (a profile holds one role)" in (
        change.details
    )
    profile = read_profile(_iam(), ROLE)
    assert profile is not None and profile.roles == (ROLE,)
    recorder.operations.clear()
    assert ensure_role(iam, _spec(), dry_run=False, adopt=False).action is Action.NOOP
    assert recorder.mutating == []


def test_a_fresh_role_reports_the_profile_it_creates(ctx: AwsContext) -> None:
    iam = ctx.client("iam", "us-east-1")
    change = ensure_role(iam, _spec(), dry_run=False, adopt=False)
    assert change.action is Action.CREATE
    assert f"instance profile {ROLE}: create, holding the role" in change.details
    profile = read_profile(_iam(), ROLE)
    assert profile is not None and profile.roles == (ROLE,) and names.is_ours(profile.tags, SYSTEM)
    assert ensure_role(iam, _spec(), dry_run=False, adopt=False).action is Action.NOOP


def test_a_profile_named_in_the_file_that_holds_another_role_needs_adopt(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    # The name is the operator's (written in the file, or written back by an earlier run), but
    # taking a role out of a profile we did not create would strip whatever runs with it.
    _foreign_profile(holding="in-use-elsewhere")
    iam = ctx.client("iam", "us-east-1")
    recorder.operations.clear()
    with pytest.raises(errors.OwnershipError) as refused:
        ensure_role(iam, _spec(explicit=True), dry_run=False, adopt=False)
    assert f"{PROFILE} (holds the role in-use-elsewhere)" in str(refused.value)
    assert "--adopt" in str(refused.value)
    assert recorder.mutating == []

    ensure_role(iam, _spec(explicit=True), dry_run=False, adopt=True)
    profile = read_profile(_iam(), ROLE)
    assert profile is not None and profile.roles == (ROLE,)
    recorder.operations.clear()
    assert ensure_role(iam, _spec(explicit=True), dry_run=False, adopt=False).action is Action.NOOP
    assert recorder.mutating == []


def test_an_empty_profile_named_in_the_file_is_used_without_adopt(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    _foreign_profile(holding=None)
    iam = ctx.client("iam", "us-east-1")
    change = ensure_role(iam, _spec(explicit=True), dry_run=False, adopt=False)
    assert change.action is Action.CREATE
    profile = read_profile(_iam(), ROLE)
    assert profile is not None and profile.roles == (ROLE,)
    assert profile.tags == {}  # the operator's profile: not tagged for a system
