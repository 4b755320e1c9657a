"""Planner/executor per resource kind (design §6, issue 12): the state is read once, the plan is
typed frozen operations, a dry run and a real run describe the same operations, and the executor
makes only the calls those operations ask for. Also the one pass of ensure-transactor and
ensure-cf: every read once, none made twice."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from conftest import environment, new_ctx

from datomic_aws import names
from datomic_aws.app.ensure_cf import converge_cf, ensure_cf, prepare_cf
from datomic_aws.app.ensure_transactor import (
    converge_transactor,
    ensure_transactor,
    plan_transactor,
)
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import load_transactor
from datomic_aws.resources import dynamodb, ec2, iam, s3, security_group, ssm
from datomic_aws.resources.plan import lines

if TYPE_CHECKING:
    from conftest import CallRecorder

REGION = "us-east-1"
SYSTEM = "my-datomic-system"


def _allow(action: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
    }


def _ro(recorder: CallRecorder) -> AwsContext:
    return new_ctx(recorder, read_only=True)


def _frozen(plan: Any) -> None:
    """Every planned operation is a frozen dataclass that describes itself."""
    for op in plan.operations:
        assert dataclasses.is_dataclass(op) and type(op).__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert op.describe()
        with pytest.raises(dataclasses.FrozenInstanceError):
            op.changed = True


# --------------------------------------------------------------------------- pure planning


def _table_spec(**kw: Any) -> dynamodb.TableSpec:
    base: dict[str, Any] = dict(
        name="t",
        system="s",
        billing_mode="PROVISIONED",
        read_capacity=None,
        write_capacity=None,
        default_read=100,
        default_write=50,
    )
    return dynamodb.TableSpec(**{**base, **kw})


def _table_state(**kw: Any) -> dynamodb.TableState:
    base: dict[str, Any] = dict(
        arn="arn",
        status="ACTIVE",
        key_schema=(("id", "S", "HASH"),),
        billing_mode="PROVISIONED",
        read_capacity=100,
        write_capacity=50,
        deletion_protection=True,
        pitr=True,
    )
    return dynamodb.TableState(**{**base, **kw})


def test_the_table_decision_reads_the_operation_types_not_their_prose() -> None:
    on_demand = _table_state(billing_mode="PAY_PER_REQUEST", read_capacity=0, write_capacity=0)
    plan = dynamodb.plan_table(_table_spec(read_capacity=10), on_demand)
    assert [type(op) for op in plan.operations] == [dynamodb.SetBillingMode, dynamodb.SetCapacity]
    assert lines(plan.operations) == (
        "billing mode: PAY_PER_REQUEST -> PROVISIONED",
        "capacity: 0/0 -> 10/50",
    )
    hardening = dynamodb.plan_table(
        _table_spec(), _table_state(pitr=False, deletion_protection=False)
    )
    assert [type(op) for op in hardening.operations] == [
        dynamodb.EnablePitr,
        dynamodb.EnableDeletionProtection,
    ]
    assert dynamodb.plan_table(_table_spec(), _table_state()).action is Action.NOOP
    _frozen(plan)
    _frozen(hardening)


# --------------------------------------------------------------------------- per resource kind
# Each: plan against moto in a read-only context (the dry run), then run for real; both describe
# the same operations, and the real run's writes are the ones the operations name.


def test_table_dry_run_and_real_run_describe_the_same_operations(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    client = ctx.client("dynamodb", REGION)
    spec = _table_spec(name="orders", system=SYSTEM, read_capacity=7)
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )
    dry = dynamodb.read_and_plan_table(_ro(recorder).client("dynamodb", REGION), spec)
    _frozen(dry)
    recorder.operations.clear()
    real = dynamodb.read_and_plan_table(client, spec)
    dynamodb.execute_table(client, real)
    assert dry.change() == real.change()
    assert lines(real.operations) == (
        "capacity: 5/5 -> 7/5",
        "point-in-time recovery: on",
        "deletion protection: on",
    )
    # Capacity and deletion protection in one UpdateTable; PITR in its own call; no read again.
    assert recorder.mutating == ["dynamodb:UpdateTable", "dynamodb:UpdateContinuousBackups"]
    assert Counter(recorder.operations)["dynamodb:DescribeTable"] == 1
    assert dynamodb.read_and_plan_table(client, spec).action is Action.NOOP


def test_role_dry_run_and_real_run_describe_the_same_operations(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    client = ctx.client("iam", REGION)
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    role = iam.RoleSpec(
        names.transactor_role(SYSTEM),
        SYSTEM,
        False,
        {"a": doc, "b": doc},
        "test role",
        managed=lambda n: n == "old",
    )
    iam.ensure_role(
        client,
        dataclasses.replace(role, policies={"a": _allow("s3:GetObject"), "old": doc}),
        dry_run=False,
        adopt=False,
    )
    boto3.client("iam", region_name=REGION).remove_role_from_instance_profile(
        InstanceProfileName=role.name, RoleName=role.name
    )
    dry = iam.plan_role(
        role, iam.read_role_and_profile(_ro(recorder).client("iam", REGION), role), adopt=False
    )
    _frozen(dry)
    recorder.operations.clear()
    real = iam.plan_role(role, iam.read_role_and_profile(client, role), adopt=False)
    iam.execute_role(client, real)
    assert dry.change() == real.change()
    # An update shows the policy document's diff (issue 13: "policy updates show the policy diff").
    assert lines(real.operations) == (
        "inline policy a: update",
        "--- a/a.json",
        "+++ b/a.json",
        "@@ -1,7 +1,7 @@",
        " {",
        '   "Statement": [',
        "     {",
        '-      "Action": "s3:GetObject",',
        '+      "Action": "s3:*",',
        '       "Effect": "Allow",',
        '       "Resource": "*"',
        "     }",
        "inline policy b: add",
        "inline policy old: remove (no longer in the file)",
        f"instance profile {role.name}: add the role",
    )
    assert [
        op for op in recorder.operations if not op.split(":")[1].startswith(("Get", "List"))
    ] == [
        "iam:PutRolePolicy",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:AddRoleToInstanceProfile",
    ]
    assert iam.ensure_role(client, role, dry_run=False, adopt=False).action is Action.NOOP


def test_bucket_dry_run_and_real_run_describe_the_same_operations(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    client = ctx.client("s3", REGION)
    spec = s3.BucketSpec("logs-bucket", REGION, SYSTEM, True, "aws-s3-log-bucket-id")
    raw = boto3.client("s3", region_name=REGION)
    raw.create_bucket(Bucket=spec.name)
    raw.put_bucket_policy(
        Bucket=spec.name,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "Mine",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:DeleteBucket",
                        "Resource": f"arn:aws:s3:::{spec.name}",
                    }
                ],
            }
        ),
    )
    dry = s3.read_and_plan_bucket(_ro(recorder).client("s3", REGION), spec, adopt=False)
    _frozen(dry)
    recorder.operations.clear()
    real = s3.read_and_plan_bucket(client, spec, adopt=False)
    s3.execute_bucket(client, real)
    assert dry.change() == real.change()
    assert [type(op) for op in real.operations] == [
        s3.TagBucket,
        s3.BlockPublicAccess,
        s3.EncryptBucket,
        s3.DenyNonTls,
    ]
    assert recorder.mutating == [
        "s3:PutBucketTagging",
        "s3:PutPublicAccessBlock",
        "s3:PutBucketEncryption",
        "s3:PutBucketPolicy",
    ]
    statements = json.loads(raw.get_bucket_policy(Bucket=spec.name)["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["Mine", "DenyInsecureTransport"]
    assert s3.ensure_bucket(client, spec, dry_run=False, adopt=False).action is Action.NOOP


def test_parameter_dry_run_and_real_run_describe_the_same_operations(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    client = ctx.client("ssm", REGION)
    spec = ssm.ParameterSpec(
        names.ssm_parameter(SYSTEM), SYSTEM, "protocol=ddb\n", "config", digest="d" * 64
    )
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=spec.name, Value="protocol=dev\n", Type="SecureString"
    )
    dry = ssm.plan_parameter(
        spec, ssm.read_parameter_state(_ro(recorder).client("ssm", REGION), spec), adopt=True
    )
    _frozen(dry)
    recorder.operations.clear()
    real = ssm.plan_parameter(spec, ssm.read_parameter_state(client, spec), adopt=True)
    ssm.execute_parameter(client, real)
    assert dry.change() == real.change()
    assert [type(op) for op in real.operations] == [ssm.PutParameter, ssm.TagParameter]
    assert "protocol" not in " ".join(real.change().details)
    assert recorder.mutating == ["ssm:PutParameter", "ssm:AddTagsToResource"]
    again = ssm.plan_parameter(spec, ssm.read_parameter_state(client, spec), adopt=False)
    assert again.action is Action.NOOP


def test_security_group_dry_run_and_real_run_describe_the_same_operations(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    client = ctx.client("ec2", REGION)
    vpc = ec2.read_vpc(client, None)
    assert vpc is not None
    cidr = ec2.Source("cidr", "10.0.0.0/16")
    desired = ec2.SecurityGroupSpec(
        names.security_group(SYSTEM), vpc.vpc_id, SYSTEM, frozenset({cidr}), derived=True
    )
    security_group.ensure_security_group(
        client,
        dataclasses.replace(desired, sources=frozenset({ec2.Source("cidr", "10.9.0.0/16")})),
        dry_run=False,
        adopt=False,
    )
    ro = _ro(recorder).client("ec2", REGION)
    dry = security_group.converge_security_group(
        ro, desired, ec2.read_security_group(ro, desired), dry_run=True, adopt=False
    )
    recorder.operations.clear()
    state = ec2.read_security_group(client, desired)
    plan = security_group.plan_security_group(desired, state, adopt=False)
    _frozen(plan)
    real = security_group.run_security_group(client, plan, dry_run=False)
    assert state is not None and real.group_id == state.group_id
    # The real run names the group's id first; the operations are the dry run's.
    assert real.change.details == (f"id {state.group_id}", *dry.change.details)
    assert [type(op) for op in plan.operations] == [security_group.Allow, security_group.Revoke]
    assert recorder.mutating == [
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupIngress",
    ]


# --------------------------------------------------------------------------- one pass per command

# A no-op run on the samples before issue 12 (measured): the counts must not go up.
NOOP_TRANSACTOR_BEFORE = {
    "dynamodb:DescribeContinuousBackups": 1,
    "dynamodb:DescribeTable": 1,
    "iam:GetInstanceProfile": 2,
    "iam:GetRole": 2,
    "iam:GetRolePolicy": 5,
    "iam:ListRolePolicies": 2,
    # Issue 11: one read per role, for the managed policies attached to it (access drift).
    "iam:ListAttachedRolePolicies": 2,
    "s3:GetBucketEncryption": 1,
    "s3:GetBucketPolicy": 1,
    "s3:GetBucketTagging": 1,
    "s3:GetPublicAccessBlock": 1,
    # GetParameter (decrypting) until issue 11: now the keyed digest beside the parameter.
    "ssm:DescribeParameters": 1,
    "sts:GetCallerIdentity": 1,
}
NOOP_CF_BEFORE = {
    "ec2:DescribeInstanceTypeOfferings": 1,
    "ec2:DescribeInstanceTypes": 1,
    "ec2:DescribeSecurityGroups": 1,
    "ec2:DescribeSubnets": 1,
    "ec2:DescribeVpcs": 1,
}


def _not_above(calls: Counter[str], before: dict[str, int]) -> None:
    assert set(calls) <= set(before), calls
    for operation, count in calls.items():
        assert count <= before[operation], (operation, count, before[operation])


def test_ensure_transactor_reads_each_thing_once(mocked_aws: None, tmp_path: Path) -> None:
    folder = environment(tmp_path / "env")
    path = folder / "transactor.properties"

    first = AwsContext()
    ensure_transactor(first, path)
    calls = first.call_log.calls
    # Before issue 12 the first run read everything twice (a planning pass, then the real one):
    # GetRole 4, GetInstanceProfile 4, GetBucketTagging 2, GetParameter 2, DescribeTable 4.
    assert calls["iam:GetRole"] == 2  # one per role
    # One read per profile, then (issue 10, reference §11) one more per profile this run created:
    # the wait until IAM shows it holding its role, which moto does at once.
    assert calls["iam:GetInstanceProfile"] == 2 + 2
    assert calls["s3:GetBucketTagging"] == 1
    assert calls["ssm:DescribeParameters"] == 1
    assert calls["sts:GetCallerIdentity"] == 1
    # One read, then the waiter for the new table to be active (no read after the create).
    assert calls["dynamodb:DescribeTable"] <= 2

    noop = AwsContext()
    result = ensure_transactor(noop, path)
    assert not result.pending
    assert noop.call_log.mutating() == {}
    _not_above(noop.call_log.calls, NOOP_TRANSACTOR_BEFORE)
    assert noop.call_log.calls["iam:GetRole"] == 2

    # A dry run renders the same plan: every change of the no-op run, read the same number of times.
    dry = AwsContext(read_only=True)
    planned = ensure_transactor(dry, path, dry_run=True)
    assert [c.as_dict() for c in planned.changes] == [c.as_dict() for c in result.changes]
    assert dry.call_log.calls == noop.call_log.calls
    # Issue 11: neither decrypts the configuration (no GetParameter at all).
    assert "ssm:GetParameter" not in noop.call_log.calls | dry.call_log.calls


def test_ensure_cf_reads_each_thing_once(mocked_aws: None, tmp_path: Path) -> None:
    folder = environment(tmp_path / "env")
    ensure_transactor(AwsContext(), folder / "transactor.properties")
    dry = AwsContext(read_only=True)
    plan = ensure_cf(dry, folder / "cf.properties", dry_run=True, adopt=False)
    first = AwsContext()
    done = ensure_cf(first, folder / "cf.properties", dry_run=False, adopt=False)
    # The group is read once, planned, and created; nothing is described again.
    assert first.call_log.calls["ec2:DescribeSecurityGroups"] == 1
    _not_above(Counter(first.call_log.calls) - Counter(first.call_log.mutating()), NOOP_CF_BEFORE)
    assert plan.changes[-1].details == done.changes[-1].details[1:]
    noop = AwsContext()
    assert not ensure_cf(noop, folder / "cf.properties", dry_run=False, adopt=False).pending
    _not_above(noop.call_log.calls, NOOP_CF_BEFORE)


def test_plan_transactor_takes_the_loaded_file_and_does_not_read_it_again(
    ctx: AwsContext, tmp_path: Path
) -> None:
    folder = environment(tmp_path / "env")
    path = folder / "transactor.properties"
    loaded = load_transactor(path)
    path.unlink()  # a read of the file now fails
    out = tmp_path / "out.properties"
    planned = plan_transactor(ctx, path, out, loaded=loaded)
    result = converge_transactor(ctx, planned, dry_run=False)
    assert result.files[0].written
    assert "aws-transactor-role=datomic-" in out.read_text(encoding="latin-1")
    assert {c.resource for c in result.changes} >= {
        f"iam role {names.transactor_role(SYSTEM)}",
        f"ssm parameter {names.ssm_parameter(SYSTEM)}",
    }


def test_prepare_cf_takes_the_loaded_file_and_does_not_read_it_again(
    ctx: AwsContext, tmp_path: Path
) -> None:
    folder = environment(tmp_path / "env")
    path = folder / "cf.properties"
    loaded = load_cf(path)
    path.unlink()
    out = tmp_path / "out.properties"
    run = prepare_cf(ctx, path, out, adopt=False, loaded=loaded)
    result = converge_cf(ctx, run, dry_run=False)
    assert result.files[0].written
    assert "aws-security-group-id=sg-" in out.read_text(encoding="latin-1")


def test_a_noop_ensure_transactor_takes_the_account_from_the_tables_arn(
    mocked_aws: None, tmp_path: Path
) -> None:
    """The table, found by name with the run's credentials, is in the caller's account: its ARN
    names it, so a run that finds the table asks STS nothing (a first run, with no table, asks)."""
    path = environment(tmp_path / "env") / "transactor.properties"
    first = AwsContext()
    ensure_transactor(first, path)
    assert first.call_log.calls["sts:GetCallerIdentity"] == 1

    noop = AwsContext()
    assert not ensure_transactor(noop, path).pending
    assert "sts:GetCallerIdentity" not in noop.call_log.calls
    assert noop.call_log.calls["dynamodb:DescribeTable"] == 1
    assert noop.account_id("us-east-1") == first.account_id("us-east-1")
    # The log bucket's derived name carries the account: the same bucket was found again.
    assert noop.call_log.calls["s3:GetBucketTagging"] == 1


def test_an_arn_names_the_account_only_when_it_is_one() -> None:
    ctx = AwsContext()
    for arn in ("", "arn:aws:dynamodb:us-east-1::table/t", "arn:aws:s3:::bucket", "not:an:arn"):
        ctx.learn_account(arn)
        assert ctx._account is None, arn
    ctx.learn_account("arn:aws:dynamodb:us-east-1:123456789012:table/t")
    ctx.learn_account("arn:aws:dynamodb:us-east-1:210987654321:table/t")  # the first one stays
    assert ctx.account_id("us-east-1") == "123456789012"
