"""ensure-cf end to end in moto: plan, validation before any write, convergence, write-back."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.app.ensure_cf import ensure_cf
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action, Result
from datomic_aws.config.cf import DEFAULT_JAVA_OPTS, LATEST_DATOMIC_VERSION
from datomic_aws.errors import InvalidInput, OwnershipError
from datomic_aws.properties import PropertiesText
from datomic_aws.resources import ec2 as ec2r

if TYPE_CHECKING:
    # Not imported from conftest at run time: with several conftest.py files in one run, the name
    # `conftest` may resolve to either file.
    from conftest import CallRecorder

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"

TRANSACTOR = """protocol=ddb
host=localhost
port=4334
aws-dynamodb-table=orders
aws-dynamodb-region=us-east-1
"""

# Datomic's 2014 cf-template.properties, as operators kept it.
DATOMIC_2014_CF = """#Fri Mar 14 10:12:03 EDT 2014
aws-autoscaling-group-size=1
aws-ingress-groups=datomic
aws-instance-type=c3.large
aws-instance-monitoring=true
aws-security-group=datomic
java-xmx=
datomic-deploy-s3-bucket=deploy-a0dbc565-faf2-4760-9b7e-29a8e45f428e
aws-region=us-east-1
aws-ingress-cidrs=0.0.0.0/0
datomic-version=
"""

# Issue 11: its 0.0.0.0/0 now needs the opt-in, which an operator migrating the file adds.
OPT_IN = "aws-ingress-allow-public=true\n"
DATOMIC_2014_OPTED_IN = DATOMIC_2014_CF + OPT_IN
DATOMIC_2014_CF_CURRENT = DATOMIC_2014_OPTED_IN.replace("c3.large", "c7i.large")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An environment folder: the cf sample next to a transactor file, as `apply DIR` expects."""
    shutil.copy(SAMPLES / "cf.properties", tmp_path / "cf.properties")
    (tmp_path / "transactor.properties").write_text(TRANSACTOR)
    return tmp_path


def run(ctx: AwsContext, path: Path, *, dry_run: bool = False, adopt: bool = False) -> Result:
    return ensure_cf(ctx, path, dry_run=dry_run, adopt=adopt)


def changed_keys(diff: str) -> set[str]:
    added = {m.group(1) for m in re.finditer(r"^\+([A-Za-z0-9_.-]+)=", diff, re.M)}
    removed = {m.group(1) for m in re.finditer(r"^-([A-Za-z0-9_.-]+)=", diff, re.M)}
    assert added == removed, "every changed line is a key's line, rewritten in place"
    return added


def group_rules(ctx: AwsContext, group_id: str) -> set[tuple[str, str]]:
    raw = ec2r.find_group(ctx.client("ec2", "us-east-1"), group_id=group_id)
    assert raw is not None
    return {(s.kind, s.value) for s in ec2r.sources_of(raw)}


def set_value(path: Path, key: str, value: str) -> None:
    props = PropertiesText.load(path)
    path.write_bytes(props.with_values({key: value}).text.encode("latin-1"))


def test_sample_converges_and_writes_back_only_generated_keys(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    cf = folder / "cf.properties"
    before = cf.read_text()
    result = run(ctx, cf)

    ec2 = ctx.client("ec2", "us-east-1")
    vpc = ec2r.read_vpc(ec2, None)
    assert vpc is not None
    # Issue 10: only the default subnets in zones that offer the type (moto, like AWS, has no
    # m7i.large in us-east-1e); the one left out is named in a warning.
    offered = ec2r.read_instance_type(ec2, "m7i.large")
    assert offered is not None and offered.zones is not None
    defaults = ec2r.default_subnets(ec2, vpc.vpc_id)
    subnets = [s.subnet_id for s in defaults if s.availability_zone in offered.zones]
    left_out = [s for s in defaults if s.availability_zone not in offered.zones]
    assert left_out
    for subnet in left_out:
        assert (
            f"default subnet {subnet.subnet_id} left out: m7i.large is not offered in"
            f" {subnet.availability_zone}"
        ) in result.warnings
    ram = ec2.describe_instance_types(InstanceTypes=["m7i.large"])["InstanceTypes"][0]
    xmx = int(ram["MemoryInfo"]["SizeInMiB"] * 0.7)

    values = PropertiesText.load(cf).values()
    group_id = values["aws-security-group-id"]
    assert values["datomic-system"] == "orders"
    assert values["aws-vpc-id"] == vpc.vpc_id
    assert values["aws-subnet-ids"] == ",".join(subnets)
    assert values["java-xmx"] == f"{xmx}m"
    assert values["java-opts"] == DEFAULT_JAVA_OPTS
    assert values["datomic-version"] == LATEST_DATOMIC_VERSION
    assert values["aws-stack-name"] == "datomic-orders"

    (file_change,) = result.files
    assert file_change.written
    assert changed_keys(file_change.diff) == {
        "datomic-system",
        "aws-vpc-id",
        "aws-subnet-ids",
        "aws-security-group-id",
        "java-xmx",
        "java-opts",
        "datomic-version",
        "aws-stack-name",
    }
    # Everything else, comments included, is byte for byte what it was.
    kept = [line for line in before.splitlines() if not re.match(r"^[a-z-]+=$", line)]
    after = cf.read_text().splitlines()
    assert all(line in after for line in kept)

    raw = ec2r.find_group(ec2, group_id=group_id)
    assert raw is not None
    assert raw["VpcId"] == vpc.vpc_id
    assert raw["GroupName"] == names.security_group("orders")
    assert names.is_ours({t["Key"]: t["Value"] for t in raw["Tags"]}, "orders")
    assert group_rules(ctx, group_id) == {("cidr", "172.31.0.0/16")}
    assert [c.action for c in result.changes] == [Action.NOOP, Action.CREATE]
    assert recorder.mutating == ["ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupIngress"]


def test_rerun_changes_nothing(ctx: AwsContext, folder: Path, recorder: CallRecorder) -> None:
    cf = folder / "cf.properties"
    run(ctx, cf)
    content, mtime = cf.read_bytes(), cf.stat().st_mtime_ns
    os.utime(cf, ns=(mtime - 10_000_000_000, mtime - 10_000_000_000))
    mtime = cf.stat().st_mtime_ns
    recorder.operations.clear()

    result = run(ctx, cf)
    assert recorder.mutating == []
    assert not result.pending
    assert all(c.action is Action.NOOP for c in result.changes)
    assert result.files[0].diff == "" and not result.files[0].written
    assert cf.read_bytes() == content
    assert cf.stat().st_mtime_ns == mtime


def test_removing_a_cidr_revokes_exactly_that_rule(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    cf = folder / "cf.properties"
    set_value(cf, "aws-ingress-cidrs", "172.31.0.0/16,10.20.0.0/16,2001:db8::/32")
    set_value(cf, "aws-ingress-allow-public", "true")  # 2001:db8::/32 is public (issue 11)
    run(ctx, cf)
    group_id = PropertiesText.load(cf).values()["aws-security-group-id"]
    assert group_rules(ctx, group_id) == {
        ("cidr", "172.31.0.0/16"),
        ("cidr", "10.20.0.0/16"),
        ("cidr6", "2001:db8::/32"),
    }
    set_value(cf, "aws-ingress-cidrs", "172.31.0.0/16,2001:db8::/32")
    recorder.operations.clear()
    result = run(ctx, cf)
    assert recorder.mutating == ["ec2:RevokeSecurityGroupIngress"]
    assert result.changes[-1].action is Action.UPDATE
    assert "revoke tcp/4334 from 10.20.0.0/16 (not declared)" in result.changes[-1].details
    assert group_rules(ctx, group_id) == {("cidr", "172.31.0.0/16"), ("cidr6", "2001:db8::/32")}
    assert result.files[0].diff == ""


def test_dry_run_plans_without_writing(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    cf = folder / "cf.properties"
    before = cf.read_bytes()
    result = run(ctx, cf, dry_run=True)
    assert recorder.mutating == []
    assert cf.read_bytes() == before
    assert result.pending
    assert result.changes[-1].action is Action.CREATE
    assert "allow tcp/4334 from 172.31.0.0/16" in result.changes[-1].details
    assert "+java-xmx=" in result.files[0].diff and not result.files[0].written
    # The id does not exist yet: no placeholder is shown as if it were real.
    assert "aws-security-group-id=sg-" not in result.files[0].diff


def test_output_file_leaves_input_alone(ctx: AwsContext, folder: Path) -> None:
    cf = folder / "cf.properties"
    before = cf.read_bytes()
    out = folder / "cf.out.properties"
    ensure_cf(ctx, cf, out, dry_run=False, adopt=False)
    assert cf.read_bytes() == before
    assert PropertiesText.load(out).values()["java-xmx"].endswith("m")


def test_datomic_2014_file_with_a_current_type_converges(
    ctx: AwsContext, tmp_path: Path, recorder: CallRecorder
) -> None:
    cf = tmp_path / "my-cf.properties"
    # c3.large is refused (CurrentGeneration=false, see below): the operator picked a current type.
    cf.write_text(DATOMIC_2014_CF_CURRENT)
    (tmp_path / "my-transactor.properties").write_text(TRANSACTOR)
    result = run(ctx, cf)
    assert any("datomic-deploy-s3-bucket is obsolete" in w for w in result.warnings)

    values = PropertiesText.load(cf).values()
    group_id = values["aws-security-group-id"]
    raw = ec2r.find_group(ctx.client("ec2", "us-east-1"), group_id=group_id)
    assert raw is not None and raw["GroupName"] == "datomic"
    # aws-ingress-groups=datomic: the group admits itself, as Datomic's samples meant.
    assert group_rules(ctx, group_id) == {("cidr", "0.0.0.0/0"), ("group", ec2r.SELF)}
    assert values["java-xmx"] == "2867m"  # 70% of the 4096 MiB of a c7i.large
    assert values["datomic-version"] == LATEST_DATOMIC_VERSION
    assert values["datomic-deploy-s3-bucket"].startswith("deploy-")

    recorder.operations.clear()
    again = run(ctx, cf)
    assert recorder.mutating == []
    assert not again.pending


def test_datomic_2014_previous_generation_type_is_refused_before_any_write(
    ctx: AwsContext, tmp_path: Path, recorder: CallRecorder
) -> None:
    cf = tmp_path / "my-cf.properties"
    cf.write_text(DATOMIC_2014_OPTED_IN)
    (tmp_path / "my-transactor.properties").write_text(TRANSACTOR)
    with pytest.raises(InvalidInput) as info:
        run(ctx, cf)
    (problem,) = info.value.problems
    assert problem.key == "aws-instance-type" and problem.line == 4
    # moto answers CurrentGeneration=false for c3.large, as AWS does.
    assert "c3.large is a previous-generation type" in problem.message
    for modern in ("m7i.large", "c7i.large", "m7g.large"):
        assert modern in problem.hint
    assert recorder.mutating == []
    assert cf.read_text() == DATOMIC_2014_OPTED_IN


def test_existing_operator_group_keeps_its_extra_rules(
    ctx: AwsContext, tmp_path: Path, recorder: CallRecorder
) -> None:
    ec2 = ctx.client("ec2", "us-east-1")
    vpc = ec2r.read_vpc(ec2, None)
    assert vpc is not None
    group_id = ec2.create_security_group(GroupName="datomic", Description="2014", VpcId=vpc.vpc_id)[
        "GroupId"
    ]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 4334,
                "ToPort": 4334,
                "IpRanges": [{"CidrIp": "10.1.0.0/16"}],
            }
        ],
    )
    cf = tmp_path / "cf.properties"
    cf.write_text(DATOMIC_2014_CF_CURRENT + "datomic-system=orders\n")
    result = run(ctx, cf)
    assert PropertiesText.load(cf).values()["aws-security-group-id"] == group_id
    assert group_rules(ctx, group_id) == {
        ("cidr", "0.0.0.0/0"),
        ("group", ec2r.SELF),
        ("cidr", "10.1.0.0/16"),
    }
    assert any("kept tcp/4334 from 10.1.0.0/16" in d for d in result.changes[-1].details)
    assert "ec2:RevokeSecurityGroupIngress" not in recorder.mutating
    assert "ec2:CreateTags" not in recorder.mutating


def test_obsolete_type_not_offered_names_modern_alternatives(
    ctx: AwsContext, tmp_path: Path, recorder: CallRecorder
) -> None:
    cf = tmp_path / "cf.properties"
    # moto, like AWS, does not offer c3 in eu-north-1 (opened in 2018).
    text = DATOMIC_2014_OPTED_IN.replace("aws-region=us-east-1", "aws-region=eu-north-1")
    cf.write_text(text + "datomic-system=orders\n")
    with pytest.raises(InvalidInput) as info:
        run(ctx, cf)
    (problem,) = info.value.problems
    assert problem.key == "aws-instance-type" and problem.line == 4
    assert "previous-generation" in problem.message and "eu-north-1" in problem.message
    for modern in ("m7i.large", "c7i.large", "m7g.large"):
        assert modern in problem.hint
    assert recorder.mutating == []
    assert cf.read_text() == text + "datomic-system=orders\n"


def invalid(
    ctx: AwsContext, folder: Path, recorder: CallRecorder, updates: dict[str, str]
) -> InvalidInput:
    cf = folder / "cf.properties"
    for key, value in updates.items():
        set_value(cf, key, value)
    before = cf.read_bytes()
    with pytest.raises(InvalidInput) as info:
        run(ctx, cf)
    assert cf.read_bytes() == before
    assert recorder.mutating == []
    return info.value


@pytest.mark.parametrize(
    ("updates", "key", "text"),
    [
        ({"aws-instance-type": "zz9.large"}, "aws-instance-type", "not an instance type offered"),
        ({"java-xmx": "64g"}, "java-xmx", "does not fit"),
        ({"aws-vpc-id": "vpc-0000000000000000f"}, "aws-vpc-id", "does not exist"),
        ({"aws-subnet-ids": "subnet-0000000000000000f"}, "aws-subnet-ids", "does not exist"),
        ({"aws-ingress-groups": "no-such-group"}, "aws-ingress-groups", "no security group named"),
        ({"aws-ami": "ami-0000000000000000f"}, "aws-ami", "not an image"),
    ],
)
def test_invalid_values_found_in_aws_are_refused_before_any_write(
    ctx: AwsContext,
    folder: Path,
    recorder: CallRecorder,
    updates: dict[str, str],
    key: str,
    text: str,
) -> None:
    err = invalid(ctx, folder, recorder, updates)
    assert [p.key for p in err.problems] == [key]
    assert text in err.problems[0].message
    assert err.problems[0].line is not None


def test_subnet_outside_the_vpc(ctx: AwsContext, folder: Path, recorder: CallRecorder) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    other = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=other, CidrBlock="10.50.1.0/24")["Subnet"]["SubnetId"]
    recorder.operations.clear()
    err = invalid(ctx, folder, recorder, {"aws-subnet-ids": subnet, "java-xmx": "64g"})
    # Both problems, at once, in file order.
    assert [p.key for p in err.problems] == ["java-xmx", "aws-subnet-ids"]
    assert f"is in {other}" in err.problems[1].message
    assert f"aws-vpc-id={other}" in err.problems[1].hint


def test_a_vpc_is_proven_by_its_subnets(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    """Once the file names the VPC and its subnets (written back by the first run), the subnets
    found in that VPC prove it exists: no DescribeVpcs (issue 12, one read per attribute)."""
    cf = folder / "cf.properties"
    first = run(ctx, cf)
    assert "default VPC, subnets " in first.changes[0].details[0]
    recorder.operations.clear()
    again = run(ctx, cf)
    assert "ec2:DescribeVpcs" not in recorder.operations
    assert recorder.operations.count("ec2:DescribeSubnets") == 1
    # Worded the same: the written-back subnets are the default VPC's own (DefaultForAz).
    assert again.changes[0].details == first.changes[0].details


def test_a_named_vpc_that_is_gone_is_still_named(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    """Subnets that do not prove the VPC (one is in another VPC): the VPC is read, and a VPC that
    does not exist is reported as such, beside the subnet."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    other = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=other, CidrBlock="10.50.1.0/24")["Subnet"]["SubnetId"]
    recorder.operations.clear()
    err = invalid(
        ctx, folder, recorder, {"aws-vpc-id": "vpc-0000000000000000f", "aws-subnet-ids": subnet}
    )
    assert recorder.operations.count("ec2:DescribeVpcs") == 1
    assert [p.key for p in err.problems] == ["aws-vpc-id"]
    assert "vpc-0000000000000000f does not exist" in err.problems[0].message


def test_aws_refuses_to_delete_a_vpc_that_has_subnets(mocked_aws: None) -> None:
    """The claim `_vpc_of_subnets` rests on (EC2 API reference, DeleteVpc: every subnet must be
    deleted first, else DependencyViolation "has dependencies and cannot be deleted")."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.60.1.0/24")
    with pytest.raises(ClientError) as info:
        ec2.delete_vpc(VpcId=vpc)
    assert info.value.response["Error"]["Code"] == "DependencyViolation"
    assert "has dependencies and cannot be deleted" in info.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("aws-autoscaling-group-size", "0"),
        ("aws-ingress-cidrs", "10.0.0.0/33"),
        ("aws-instance-monitoring", "maybe"),
        ("aws-instance-type", "large"),
    ],
)
def test_invalid_values_in_the_file_are_refused_without_any_aws_call(
    ctx: AwsContext, folder: Path, recorder: CallRecorder, key: str, value: str
) -> None:
    err = invalid(ctx, folder, recorder, {key: value})
    assert [p.key for p in err.problems] == [key]
    assert recorder.operations == []


def test_system_name_is_required_without_a_transactor_file(
    ctx: AwsContext, tmp_path: Path, recorder: CallRecorder
) -> None:
    cf = tmp_path / "cf.properties"
    shutil.copy(SAMPLES / "cf.properties", cf)
    with pytest.raises(InvalidInput) as info:
        run(ctx, cf)
    (problem,) = info.value.problems
    assert problem.key == "datomic-system"
    assert "transactor.properties" in problem.message
    assert recorder.operations == []


def test_derived_group_of_someone_else_needs_adopt(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    ec2 = ctx.client("ec2", "us-east-1")
    vpc = ec2r.read_vpc(ec2, None)
    assert vpc is not None
    group_id = ec2.create_security_group(
        GroupName=names.security_group("orders"), Description="x", VpcId=vpc.vpc_id
    )["GroupId"]
    cf = folder / "cf.properties"
    before = cf.read_bytes()
    recorder.operations.clear()
    with pytest.raises(OwnershipError):
        run(ctx, cf)
    assert recorder.mutating == []
    assert cf.read_bytes() == before
    result = run(ctx, cf, adopt=True)
    assert result.changes[-1].action is Action.UPDATE
    assert PropertiesText.load(cf).values()["aws-security-group-id"] == group_id


def test_a_stale_group_id_is_replaced(ctx: AwsContext, folder: Path) -> None:
    cf = folder / "cf.properties"
    run(ctx, cf)
    old = PropertiesText.load(cf).values()["aws-security-group-id"]
    boto3.client("ec2", region_name="us-east-1").delete_security_group(GroupId=old)
    result = run(ctx, cf)
    new = PropertiesText.load(cf).values()["aws-security-group-id"]
    assert new != old
    assert result.changes[-1].action is Action.CREATE
    assert changed_keys(result.files[0].diff) == {"aws-security-group-id"}


def test_graviton_type_gets_checked_against_aws(ctx: AwsContext, folder: Path) -> None:
    cf = folder / "cf.properties"
    set_value(cf, "aws-instance-type", "m7g.large")
    run(ctx, cf)
    assert PropertiesText.load(cf).values()["java-xmx"] == "5734m"
