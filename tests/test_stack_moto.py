"""stack.py against in-process moto: a LaunchTemplate + AutoScalingGroup stack created from the
templates bucket by TemplateURL, rerun without a mutating call, updated, deleted; the templates
bucket hardened in us-east-1 and elsewhere."""

from __future__ import annotations

import json

import pytest

from datomic_aws import names, stack
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from tests.conftest import CallRecorder

SYSTEM = "moto"
NAME = names.stack(SYSTEM)
AMI_PATH = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


@pytest.fixture(autouse=True)
def _corrected_moto(patched_moto: None) -> None:
    """Templates bucket policy and termination protection behave as on AWS (sandbox.moto_fixes)."""


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
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body.encode()
    assert stack.template_matches(cfn, NAME, body)
    asg = ctx.client("autoscaling", region).describe_auto_scaling_groups(
        AutoScalingGroupNames=[names.autoscaling_group(SYSTEM)]
    )["AutoScalingGroups"]
    assert len(asg) == 1

    change_sets_before = cfn.list_change_sets(StackName=NAME)["Summaries"]

    # Rerun: create and update are no-ops with no mutating call and no change set left behind.
    recorder.operations.clear()
    assert [c.action for c in stack.create_stack(ctx, region, NAME, body, system=SYSTEM)] == [
        Action.NOOP
    ]
    assert [c.action for c in stack.update_stack(ctx, region, NAME, body, system=SYSTEM)] == [
        Action.NOOP
    ]
    assert recorder.mutating == []
    after = cfn.list_change_sets(StackName=NAME)["Summaries"]
    assert after == change_sets_before
    assert all(cs["ExecutionStatus"] == "EXECUTE_COMPLETE" for cs in after)

    # A dry-run preview under the read-only guard leaves nothing behind either.
    bigger = asg_template(ctx, region, instance_type="t3.small")
    dry = AwsContext(read_only=True, allowed_writes=stack.dry_run_writes(bigger))
    preview = stack.update_stack(dry, region, NAME, bigger, system=SYSTEM, dry_run=True)
    assert preview[0].action is Action.UPDATE
    assert cfn.list_change_sets(StackName=NAME)["Summaries"] == change_sets_before
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
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "data"}]})

    recorder.operations.clear()
    change = stack.ensure_templates_bucket(s3, account, region)
    assert change.action is Action.UPDATE
    assert recorder.mutating == ["s3:PutBucketTagging", "s3:PutPublicAccessBlock"]
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags["team"] == "data" and tags[names.TAG_MANAGED] == names.MANAGED_BY
