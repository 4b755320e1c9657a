"""The stack package against in-process moto: a LaunchTemplate + AutoScalingGroup stack created
from the templates bucket by TemplateURL, rerun without a mutating call, updated, deleted; the
templates bucket hardened in us-east-1 and elsewhere."""

from __future__ import annotations

import json

import boto3
import pytest

from datomic_aws import names, stack
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from datomic_aws.errors import Interrupted, NotOursError
from tests.conftest import CallRecorder
from tests.datomic_era import create_datomic_stack

SYSTEM = "moto"
NAME = names.stack(SYSTEM)
AMI_PATH = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


@pytest.fixture(autouse=True)
def _corrected_moto(patched_moto: None) -> None:
    """Templates bucket policy, termination protection and UPDATE change set tags behave as on AWS
    (sandbox.moto_fixes)."""


def asg_template(ctx: AwsContext, region: str, instance_type: str = "t3.micro") -> str:
    ec2 = ctx.client("ec2", region)
    subnets = sorted(
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
            "Subnets"
        ]
    )
    doc = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {
            "ImageId": {
                "Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
                "Default": AMI_PATH,
            },
            "InstanceType": {"Type": "String", "Default": instance_type},
        },
        "Resources": {
            "LaunchTemplate": {
                "Type": "AWS::EC2::LaunchTemplate",
                "Properties": {
                    "LaunchTemplateData": {
                        "ImageId": {"Ref": "ImageId"},
                        "InstanceType": {"Ref": "InstanceType"},
                    }
                },
            },
            "Group": {
                "Type": "AWS::AutoScaling::AutoScalingGroup",
                "Properties": {
                    "AutoScalingGroupName": names.autoscaling_group(SYSTEM),
                    "MinSize": "1",
                    "MaxSize": "2",
                    "DesiredCapacity": "1",
                    "VPCZoneIdentifier": subnets,
                    "LaunchTemplate": {
                        "LaunchTemplateId": {"Ref": "LaunchTemplate"},
                        "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]},
                    },
                },
            },
        },
        "Outputs": {"GroupName": {"Value": {"Ref": "Group"}}},
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def fast(lines: list[str]) -> stack.Waiting:
    return stack.Waiting(
        timeout=30, poll_interval=0.01, on_event=lines.append, sleep=lambda _: None
    )


def test_create_rerun_update_delete(ctx: AwsContext, recorder: CallRecorder) -> None:
    region = "eu-west-1"
    body = asg_template(ctx, region)
    cfn = ctx.client("cloudformation", region)
    s3 = ctx.client("s3", region)
    lines: list[str] = []

    changes = stack.create_stack(ctx, region, NAME, body, system=SYSTEM, waiting=fast(lines))
    assert (f"stack/{NAME}", Action.CREATE) in [(c.resource, c.action) for c in changes]
    assert {c.resource for c in changes} >= {f"stack/{NAME}/Group", f"stack/{NAME}/LaunchTemplate"}
    info = stack.read_stack(cfn, NAME)
    assert info is not None and info.status == "CREATE_COMPLETE"
    assert names.is_ours(dict(info.tags), SYSTEM)
    assert any("CREATE_COMPLETE" in line for line in lines)

    # The template went by URL, from the templates bucket, under <stack>/<sha256>.json.
    (create_cs,) = [op for op in recorder.operations if op == "cloudformation:CreateChangeSet"]
    assert create_cs
    account = ctx.account_id(region)
    bucket = names.templates_bucket(account, region)
    key = stack.template_key(NAME, body)
    assert (
        boto3.client("s3", region_name=region).get_object(Bucket=bucket, Key=key)["Body"].read()
        == body.encode()
    )
    assert stack.template_matches(cfn, NAME, body)
    asg = ctx.client("autoscaling", region).describe_auto_scaling_groups(
        AutoScalingGroupNames=[names.autoscaling_group(SYSTEM)]
    )["AutoScalingGroups"]
    assert len(asg) == 1

    change_sets_before = boto3.client("cloudformation", region_name=region).list_change_sets(
        StackName=NAME
    )["Summaries"]

    # Rerun: create and update are no-ops with no mutating call and no change set left behind.
    recorder.operations.clear()
    assert [c.action for c in stack.create_stack(ctx, region, NAME, body, system=SYSTEM)] == [
        Action.NOOP
    ]
    assert [c.action for c in stack.update_stack(ctx, region, NAME, body, system=SYSTEM)] == [
        Action.NOOP
    ]
    assert recorder.mutating == []
    after = boto3.client("cloudformation", region_name=region).list_change_sets(StackName=NAME)[
        "Summaries"
    ]
    assert after == change_sets_before
    assert all(cs["ExecutionStatus"] == "EXECUTE_COMPLETE" for cs in after)

    # A dry-run preview under the read-only guard leaves nothing behind either.
    bigger = asg_template(ctx, region, instance_type="t3.small")
    dry = AwsContext(read_only=True, allowed_writes=stack.dry_run_writes(bigger))
    preview = stack.update_stack(dry, region, NAME, bigger, system=SYSTEM, dry_run=True)
    assert preview[0].action is Action.UPDATE
    assert (
        boto3.client("cloudformation", region_name=region).list_change_sets(StackName=NAME)[
            "Summaries"
        ]
        == change_sets_before
    )
    assert stack.template_matches(cfn, NAME, body)

    # Update for real.
    updated = stack.update_stack(ctx, region, NAME, bigger, system=SYSTEM, waiting=fast(lines))
    assert updated[0].action is Action.UPDATE
    assert stack.template_matches(cfn, NAME, bigger)
    info = stack.read_stack(cfn, NAME)
    assert info is not None and info.parameters["InstanceType"] == "t3.small"

    # Delete, then delete again: a no-op.
    recorder.operations.clear()
    deleted = stack.delete_stack(ctx, region, NAME, waiting=fast(lines))
    assert [c.action for c in deleted] == [Action.DELETE]
    assert stack.read_stack(cfn, NAME) is None
    assert [c.action for c in stack.delete_stack(ctx, region, NAME)] == [Action.NOOP]
    assert [op for op in recorder.mutating if not op.startswith("cloudformation:")] == []
    # The bucket and the uploaded templates stay: delete touches the stack only.
    assert s3.head_object(Bucket=bucket, Key=key)


def test_upload_is_skipped_when_the_template_is_already_there(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    region = "us-east-1"
    s3 = ctx.client("s3", region)
    account = ctx.account_id(region)
    stack.ensure_templates_bucket(s3, account, region)
    url = stack.upload_template(s3, account, region, NAME, "{}")
    recorder.operations.clear()
    assert stack.upload_template(s3, account, region, NAME, "{}") == url
    assert recorder.mutating == []
    assert url == (
        f"https://{names.templates_bucket(account, region)}.s3.us-east-1.amazonaws.com/"
        f"{NAME}/{stack.template_digest('{}')}.json"
    )


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_templates_bucket_is_hardened_and_idempotent(
    ctx: AwsContext, recorder: CallRecorder, region: str
) -> None:
    s3 = ctx.client("s3", region)
    account = ctx.account_id(region)
    bucket = names.templates_bucket(account, region)

    change = stack.ensure_templates_bucket(s3, account, region)
    assert change.action is Action.CREATE
    location = s3.get_bucket_location(Bucket=bucket)["LocationConstraint"]
    assert location == (None if region == "us-east-1" else region)
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert pab == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(statement["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags[names.TAG_MANAGED] == names.MANAGED_BY
    assert names.TAG_SYSTEM not in tags  # shared by every system of the account and region

    recorder.operations.clear()
    assert stack.ensure_templates_bucket(s3, account, region).action is Action.NOOP
    assert recorder.mutating == []


def test_templates_bucket_converges_a_weakened_bucket(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    region = "eu-west-1"
    s3 = ctx.client("s3", region)
    account = ctx.account_id(region)
    bucket = names.templates_bucket(account, region)
    stack.ensure_templates_bucket(s3, account, region)
    boto3.client("s3", region_name=region).delete_public_access_block(Bucket=bucket)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "data"}]})

    recorder.operations.clear()
    change = stack.ensure_templates_bucket(s3, account, region)
    assert change.action is Action.UPDATE
    assert recorder.mutating == ["s3:PutBucketTagging", "s3:PutPublicAccessBlock"]
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags["team"] == "data" and tags[names.TAG_MANAGED] == names.MANAGED_BY


# --- ownership and Datomic-era stacks (issue 9) ---------------------------------------------


def _groups(ctx: AwsContext, region: str) -> dict[str, tuple[str, ...]]:
    """Every group: the ids of its InService instances."""
    found = ctx.client("autoscaling", region).describe_auto_scaling_groups()["AutoScalingGroups"]
    return {
        g["AutoScalingGroupName"]: tuple(
            i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "InService"
        )
        for g in found
    }


def test_untagged_and_foreign_stacks_are_refused_before_any_write(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    region = "eu-west-1"
    cfn = ctx.client("cloudformation", region)
    topic = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    cfn.create_stack(StackName=NAME, TemplateBody=json.dumps(topic))
    body = asg_template(ctx, region)
    recorder.operations.clear()
    for call in (
        lambda: stack.update_stack(ctx, region, NAME, body, system=SYSTEM),
        lambda: stack.update_stack(ctx, region, NAME, body, system=SYSTEM, dry_run=True),
        lambda: stack.delete_stack(ctx, region, NAME),
        lambda: stack.check_ownership(ctx, region, NAME, system=SYSTEM),
    ):
        with pytest.raises(NotOursError) as err:
            call()
        assert f"stack {NAME} is not managed by datomic-aws (tags: no tags)" in str(err.value)
    assert recorder.mutating == []

    # Tagged for another system: refused by all, --adopt or not.
    cfn.update_stack(StackName=NAME, TemplateBody=json.dumps(topic), Tags=names.tag_list("billing"))
    recorder.operations.clear()
    for call in (
        lambda: stack.update_stack(ctx, region, NAME, body, system=SYSTEM, adopt=True),
        lambda: stack.delete_stack(ctx, region, NAME),
        lambda: stack.check_ownership(ctx, region, NAME, system=SYSTEM, adopt=True),
    ):
        with pytest.raises(NotOursError) as err:
            call()
        assert "belongs to another system" in str(err.value)
        assert "datomic:system=billing" in str(err.value)
    assert recorder.mutating == []
    assert stack.read_stack(cfn, NAME) is not None


def test_a_datomic_era_stack_is_migrated_without_a_gap_then_a_rerun_is_a_noop(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    region = "us-east-1"
    cfn = ctx.client("cloudformation", region)
    old_group = create_datomic_stack(cfn, ctx.client("ec2", region), NAME)
    (old_instance,) = _groups(ctx, region)[old_group]
    body = asg_template(ctx, region)
    new_group = names.autoscaling_group(SYSTEM)

    recorder.operations.clear()
    with pytest.raises(NotOursError) as err:
        stack.update_stack(ctx, region, NAME, body, system=SYSTEM)
    assert "made by Datomic's bin/datomic create-cf-stack" in str(err.value)
    assert "--adopt" in str(err.value)
    assert recorder.mutating == []

    # The plan: the first update's change set (created, described, deleted), then the removals.
    before = _groups(ctx, region)
    dry = AwsContext(read_only=True, allowed_writes=stack.dry_run_writes(body))
    plan = stack.update_stack(dry, region, NAME, body, system=SYSTEM, adopt=True, dry_run=True)
    planned = {(c.resource, c.action): c.details for c in plan}
    assert planned[(f"stack/{NAME}/LaunchGroup", Action.DELETE)] == (
        "AWS::AutoScaling::AutoScalingGroup",
        "removed once the new group is in service",
    )
    assert (f"stack/{NAME}/Group", Action.CREATE) in planned
    assert planned[(f"stack/{NAME}", Action.UPDATE)][0].startswith("Datomic bin/datomic stack")
    assert _groups(ctx, region) == before
    assert (
        boto3.client("cloudformation", region_name=region).list_change_sets(StackName=NAME)[
            "Summaries"
        ]
        == []
    )

    # Each progress line records the groups at that moment.
    seen: list[tuple[str, dict[str, tuple[str, ...]]]] = []
    waiting = stack.Waiting(
        timeout=60,
        poll_interval=0.01,
        on_event=lambda line: seen.append((line, _groups(ctx, region))),
        sleep=lambda _: None,
    )
    changes = stack.update_stack(
        ctx, region, NAME, body, system=SYSTEM, adopt=True, waiting=waiting
    )
    head = next(c for c in changes if c.resource == f"stack/{NAME}")
    assert head.action is Action.UPDATE
    assert head.details[0] == (
        "Datomic bin/datomic stack: LaunchConfiguration -> LaunchTemplate; the group LaunchGroup"
        " is replaced by Group"
    )
    assert head.details[1].startswith("adopted: the stack had no tags")
    actions = {(c.resource, c.action) for c in changes}
    assert {
        (f"stack/{NAME}/LaunchTemplate", Action.CREATE),
        (f"stack/{NAME}/Group", Action.CREATE),
        (f"stack/{NAME}/LaunchGroup", Action.DELETE),
        (f"stack/{NAME}/LaunchConfig", Action.DELETE),
    } <= actions

    # The order: the new group InService while the old one (its first instance untouched) still
    # ran, and only then the second update.
    lines = [line for line, _ in seen]
    ready = next(
        i for i, line in enumerate(lines) if line.startswith(f"group {new_group} is in service")
    )
    groups_then = seen[ready][1]
    assert groups_then[old_group] == (old_instance,)
    assert len(groups_then[new_group]) == 1
    executed = [i for i, line in enumerate(lines) if line.startswith("executing change set")]
    assert len(executed) == 2 and executed[0] < ready < executed[1]
    assert not any(new_group in groups for _, groups in seen[: executed[0] + 1])
    # Until the second update, the old group kept its first instance.
    assert all(groups.get(old_group) == (old_instance,) for _, groups in seen[: executed[1] + 1])
    after = _groups(ctx, region)
    assert old_group not in after and len(after[new_group]) == 1

    info = stack.read_stack(cfn, NAME)
    assert info is not None and names.is_ours(dict(info.tags), SYSTEM)
    assert info.termination_protection is True
    assert stack.template_matches(cfn, NAME, body)
    deployed = stack.deployed_template(cfn, NAME)
    assert not any(k.startswith(stack.LEGACY_PREFIX) for k in deployed["Parameters"])

    recorder.operations.clear()
    again = stack.update_stack(ctx, region, NAME, body, system=SYSTEM)
    assert [c.action for c in again] == [Action.NOOP]
    assert recorder.mutating == []


def test_a_migration_interrupted_between_its_two_updates_converges_on_rerun(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    region = "us-east-1"
    cfn = ctx.client("cloudformation", region)
    old_group = create_datomic_stack(cfn, ctx.client("ec2", region), NAME)
    body = asg_template(ctx, region)

    def interrupt(line: str) -> None:
        if line.startswith("group ") and "instance(s) in service" in line:
            raise KeyboardInterrupt

    waiting = stack.Waiting(
        timeout=60, poll_interval=0.01, on_event=interrupt, sleep=lambda _: None
    )
    with pytest.raises(Interrupted, match="the old group keeps running"):
        stack.update_stack(ctx, region, NAME, body, system=SYSTEM, adopt=True, waiting=waiting)
    both = _groups(ctx, region)
    assert old_group in both and names.autoscaling_group(SYSTEM) in both
    info = stack.read_stack(cfn, NAME)
    assert info is not None and names.is_ours(dict(info.tags), SYSTEM)

    # The rerun (the stack is ours now: no --adopt needed) skips the first update.
    recorder.operations.clear()
    changes = stack.update_stack(ctx, region, NAME, body, system=SYSTEM, waiting=fast([]))
    assert recorder.mutating.count("cloudformation:ExecuteChangeSet") == 1
    assert (f"stack/{NAME}/LaunchGroup", Action.DELETE) in [(c.resource, c.action) for c in changes]
    assert old_group not in _groups(ctx, region)
    recorder.operations.clear()
    assert [c.action for c in stack.update_stack(ctx, region, NAME, body, system=SYSTEM)] == [
        Action.NOOP
    ]
    assert recorder.mutating == []
