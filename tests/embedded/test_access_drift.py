"""Issue 11 Deliver 7 (access drift) and the private-subnet half of Deliver 6, in-process in moto.

- A managed policy attached to one of our roles and an inline policy the tool did not write are
  reported on every run (warnings naming them), never detached or deleted, and the run stays a
  no-op (no mutating call).
- On the tool-owned security group every inbound rule the files do not declare is revoked, on any
  port (tcp/22 added by hand included); the second run makes no mutating call. A group named in
  the file (shared) keeps them.
- A private subnet (no public IP on launch, no internet gateway) converges like a default one and
  the template asks for no public address.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from datomic_aws.app.documents import Template
from datomic_aws.app.ensure_cf import ensure_cf
from datomic_aws.app.ensure_transactor import ensure_transactor
from datomic_aws.app.status import role_drift
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import load_transactor
from datomic_aws.properties import PropertiesText
from datomic_aws.resources import ec2 as ec2r
from datomic_aws.resources import iam_drift
from datomic_aws.template import build_template

if TYPE_CHECKING:
    from conftest import CallRecorder

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
SYSTEM = "my-datomic-system"  # aws-dynamodb-table of the ddb sample
TRANSACTOR_ROLE = f"datomic-{SYSTEM}-transactor"
PEER_ROLE = f"datomic-{SYSTEM}-peer"
# moto knows AWS's own managed policies only when told to load them: an account's copy of
# AdministratorAccess stands in for it.
ADMIN = "arn:aws:iam::123456789012:policy/admin-everything"
STAR = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, tmp_path / name)
    return tmp_path


def _values(path: Path) -> dict[str, str]:
    return PropertiesText.load(path).values()


# ------------------------------------------------------------------------------------ IAM roles


def _plant(iam: Any) -> None:
    """What an operator (or an attacker) adds by hand: admin rights on the transactor role."""
    iam.create_policy(PolicyName="admin-everything", PolicyDocument=json.dumps(STAR))
    iam.attach_role_policy(RoleName=TRANSACTOR_ROLE, PolicyArn=ADMIN)
    iam.put_role_policy(
        RoleName=TRANSACTOR_ROLE, PolicyName="break-glass", PolicyDocument=json.dumps(STAR)
    )
    iam.put_role_policy(
        RoleName=PEER_ROLE, PolicyName="peer-extra", PolicyDocument=json.dumps(STAR)
    )


def _drift_warnings(warnings: list[str]) -> list[str]:
    return [w for w in warnings if w.startswith("iam role ")]


def test_foreign_policies_are_reported_on_every_run_and_never_removed(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    transactor = folder / "transactor.properties"
    first = ensure_transactor(ctx, transactor, dry_run=False, adopt=False)
    assert _drift_warnings(first.warnings) == []
    recorder.operations.clear()
    ensure_transactor(ctx, transactor, dry_run=False, adopt=False)
    clean_reads = sorted(recorder.operations)
    assert recorder.operations.count("iam:ListAttachedRolePolicies") == 2  # one per role
    iam = boto3.client("iam", region_name="us-east-1")
    _plant(iam)

    for dry_run in (False, True, False):
        recorder.operations.clear()
        result = ensure_transactor(ctx, transactor, dry_run=dry_run, adopt=False)
        warnings = _drift_warnings(result.warnings)
        assert len(warnings) == 3, result.warnings
        admin, inline = warnings[0], warnings[1]
        assert admin.startswith(f"iam role {TRANSACTOR_ROLE}: managed policy {ADMIN} is attached")
        assert inline.startswith(f"iam role {TRANSACTOR_ROLE}: inline policy break-glass was not")
        assert warnings[2].startswith(f"iam role {PEER_ROLE}: inline policy peer-extra was not")
        # Reported only: nothing planned for them, no write, the run is a no-op.
        assert not result.pending
        assert all(c.action is Action.NOOP for c in result.changes)
        assert recorder.mutating == []
        # The same reads as on the clean roles: no document of a foreign policy is read.
        assert sorted(recorder.operations) == clean_reads

    attached = iam.list_attached_role_policies(RoleName=TRANSACTOR_ROLE)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [ADMIN]
    names = iam.list_role_policies(RoleName=TRANSACTOR_ROLE)["PolicyNames"]
    assert "break-glass" in names


def test_the_tool_still_removes_only_its_own_stale_policy(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    """The behaviour before issue 11 is kept: a policy of the tool's naming that the file no
    longer asks for is deleted; a foreign one is reported, not deleted."""
    transactor = folder / "transactor.properties"
    text = transactor.read_text(encoding="latin-1")
    transactor.write_text(text.replace("# aws-s3-log-bucket-id=", "aws-s3-log-bucket-id="))
    ensure_transactor(ctx, transactor, dry_run=False, adopt=False)
    iam = boto3.client("iam", region_name="us-east-1")
    log_policies = [
        n
        for n in iam.list_role_policies(RoleName=TRANSACTOR_ROLE)["PolicyNames"]
        if n.endswith("-transactor-logs")
    ]
    assert len(log_policies) == 1
    _plant(iam)
    transactor.write_text(
        transactor.read_text(encoding="latin-1").replace(
            "aws-s3-log-bucket-id=", "# aws-s3-log-bucket-id=", 1
        )
    )
    recorder.operations.clear()
    result = ensure_transactor(ctx, transactor, dry_run=False, adopt=False)
    # The configuration changed too (the SSM parameter); on IAM, only the stale policy goes.
    assert [op for op in recorder.mutating if op.startswith("iam:")] == ["iam:DeleteRolePolicy"]
    left = iam.list_role_policies(RoleName=TRANSACTOR_ROLE)["PolicyNames"]
    assert log_policies[0] not in left and "break-glass" in left
    assert not any(log_policies[0] in w for w in result.warnings)
    assert any("break-glass" in w for w in result.warnings)


def test_read_foreign_policies_for_status(ctx: AwsContext, folder: Path) -> None:
    ensure_transactor(ctx, folder / "transactor.properties", dry_run=False, adopt=False)
    iam = ctx.client("iam", "us-east-1")
    # The tool's own policies (runtime, table) are not reported.
    assert iam_drift.read_foreign_policies(iam, TRANSACTOR_ROLE, SYSTEM) == []
    assert iam_drift.read_foreign_policies(iam, PEER_ROLE, SYSTEM) == []
    assert iam_drift.read_foreign_policies(iam, "no-such-role", SYSTEM) == []
    _plant(boto3.client("iam", region_name="us-east-1"))
    warnings = role_drift(iam, SYSTEM, None)
    assert [w.split(":")[0] for w in warnings] == [f"iam role {TRANSACTOR_ROLE}"] * 2 + [
        f"iam role {PEER_ROLE}"
    ]
    assert ADMIN in warnings[0] and "break-glass" in warnings[1] and "peer-extra" in warnings[2]
    # The local template names the transactor's instance profile (its role's name).
    doc = {
        "Resources": {
            "LaunchTemplate": {
                "Properties": {"LaunchTemplateData": {"IamInstanceProfile": {"Name": PEER_ROLE}}}
            }
        }
    }
    template = Template("cf.json", "{}", SYSTEM, 1, doc=doc)
    only_peer = role_drift(iam, SYSTEM, template)
    assert only_peer == [warnings[2]]


def test_status_without_iam_read_rights_says_the_roles_were_not_checked() -> None:
    """Where moto cannot refuse (it has no IAM evaluation in-process): AWS's AccessDenied."""
    iam = boto3.client("iam", region_name="us-east-1")
    denied = (
        "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
        "iam:ListRolePolicies on resource: role {role} because no identity-based policy allows "
        "the iam:ListRolePolicies action"
    )
    with Stubber(iam) as stub:
        for role in (TRANSACTOR_ROLE, PEER_ROLE):
            stub.add_client_error(
                "list_role_policies",
                service_error_code="AccessDenied",
                service_message=denied.format(role=role),
                http_status_code=403,
                expected_params={"RoleName": role},
            )
        warnings = role_drift(iam, SYSTEM, None)
        stub.assert_no_pending_responses()
    assert warnings == [
        f"iam role {role}: its policies were not checked (AccessDenied: status needs "
        "iam:ListRolePolicies and iam:ListAttachedRolePolicies)"
        for role in (TRANSACTOR_ROLE, PEER_ROLE)
    ]


# ------------------------------------------------------------------------------ security group


def _by_hand(ec2: Any, group_id: str) -> None:
    """Rules an operator adds with the console: ssh and everything from the group itself."""
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
            {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]},
            {
                "IpProtocol": "icmp",
                "FromPort": 8,
                "ToPort": -1,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
            },
        ],
    )


def _ingress(ec2: Any, group_id: str) -> list[dict[str, Any]]:
    (group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return list(group["IpPermissions"])


def test_tcp_22_added_by_hand_to_the_owned_group_is_revoked(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    cf = folder / "cf.properties"
    ensure_cf(ctx, cf, dry_run=False, adopt=False)
    group_id = _values(cf)["aws-security-group-id"]
    ec2 = boto3.client("ec2", region_name="us-east-1")
    _by_hand(ec2, group_id)

    recorder.operations.clear()
    dry = ensure_cf(ctx, cf, dry_run=True, adopt=False)
    assert recorder.mutating == []
    recorder.operations.clear()
    result = ensure_cf(ctx, cf, dry_run=False, adopt=False)
    assert recorder.mutating == ["ec2:RevokeSecurityGroupIngress"]
    change = result.changes[-1]
    assert change.action is Action.UPDATE
    assert change.details[1:] == dry.changes[-1].details
    for line in (
        "revoke tcp/22 from 0.0.0.0/0 (not declared)",
        "revoke tcp/22 from ::/0 (not declared)",
        f"revoke all traffic from group {group_id} (itself) (not declared)",
        "revoke icmp type 8 from 10.0.0.0/8 (not declared)",
    ):
        assert line in change.details, change.details
    (only,) = _ingress(ec2, group_id)
    assert (only["IpProtocol"], only["FromPort"], only["ToPort"]) == ("tcp", 4334, 4334)
    assert [r["CidrIp"] for r in only["IpRanges"]] == ["172.31.0.0/16"]

    recorder.operations.clear()
    again = ensure_cf(ctx, cf, dry_run=False, adopt=False)
    assert recorder.mutating == []
    assert not again.pending


def test_a_group_named_in_the_file_keeps_every_rule(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    cf = folder / "cf.properties"
    text = cf.read_text(encoding="latin-1")
    cf.write_text(text.replace("\naws-security-group=\n", "\naws-security-group=datomic\n"))
    ensure_cf(ctx, cf, dry_run=False, adopt=False)
    group_id = _values(cf)["aws-security-group-id"]
    ec2 = boto3.client("ec2", region_name="us-east-1")
    _by_hand(ec2, group_id)
    before = _ingress(ec2, group_id)
    recorder.operations.clear()
    result = ensure_cf(ctx, cf, dry_run=False, adopt=False)
    assert recorder.mutating == []
    assert not result.pending
    assert len(_ingress(ec2, group_id)) == len(before) == 4


def test_prefix_list_and_port_ranges_are_read_as_rules() -> None:
    raw: Any = {
        "GroupId": "sg-1",
        "OwnerId": "123456789012",
        "IpPermissions": [
            {
                "IpProtocol": "tcp",
                "FromPort": 4334,
                "ToPort": 4334,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
                "PrefixListIds": [{"PrefixListId": "pl-0123456789abcdef0"}],
            },
            {
                "IpProtocol": "udp",
                "FromPort": 1000,
                "ToPort": 2000,
                "IpRanges": [{"CidrIp": "10.1.0.0/16"}],
            },
            {"IpProtocol": "50", "IpRanges": [{"CidrIp": "10.2.0.0/16"}]},
        ],
    }
    assert {(s.kind, s.value) for s in ec2r.sources_of(raw)} == {("cidr", "10.0.0.0/8")}
    rules = sorted(ec2r.other_rules_of(raw), key=ec2r.Rule.sort_key)
    assert [r.describe("sg-1") for r in rules] == [
        "protocol 50 from 10.2.0.0/16",
        "tcp/4334 from pl-0123456789abcdef0",
        "udp/1000-2000 from 10.1.0.0/16",
    ]


# ----------------------------------------------------------------------------- private subnets


def test_a_private_subnet_converges_and_gets_no_public_address(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc_id = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.40.1.0/24", AvailabilityZone="us-east-1a"
    )
    subnet_id = subnet["Subnet"]["SubnetId"]
    assert subnet["Subnet"]["MapPublicIpOnLaunch"] is False  # no internet gateway either
    cf = folder / "cf.properties"
    text = cf.read_text(encoding="latin-1")
    for key, value in (
        ("aws-vpc-id", vpc_id),
        ("aws-subnet-ids", subnet_id),
        ("aws-ingress-cidrs", "10.40.0.0/16"),
    ):
        assert f"\n{key}=" in text
        text = text.replace(f"\n{key}=172.31.0.0/16\n", f"\n{key}=\n").replace(
            f"\n{key}=\n", f"\n{key}={value}\n"
        )
    cf.write_text(text)
    transactor = folder / "transactor.properties"
    ensure_transactor(ctx, transactor, dry_run=False, adopt=False)
    ensure_cf(ctx, cf, dry_run=False, adopt=False)
    values = _values(cf)
    assert (values["aws-vpc-id"], values["aws-subnet-ids"]) == (vpc_id, subnet_id)

    doc = build_template(load_transactor(transactor)[1], load_cf(cf)[1])
    data = doc["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    # No network interface is declared: the instance gets a public address only when its subnet
    # maps one on launch (a private subnet never does).
    assert "NetworkInterfaces" not in data
    assert "AssociatePublicIpAddress" not in json.dumps(doc)
    assert doc["Resources"]["AutoScalingGroup"]["Properties"]["VPCZoneIdentifier"] == [subnet_id]
    assert data["SecurityGroupIds"] == [values["aws-security-group-id"]]


def test_a_prefix_list_on_the_transactor_port_is_revoked_too(
    ctx: AwsContext, folder: Path, recorder: CallRecorder
) -> None:
    cf = folder / "cf.properties"
    ensure_cf(ctx, cf, dry_run=False, adopt=False)
    group_id = _values(cf)["aws-security-group-id"]
    ec2 = boto3.client("ec2", region_name="us-east-1")
    prefix_list = ec2.create_managed_prefix_list(
        PrefixListName="peers", MaxEntries=5, AddressFamily="IPv4"
    )["PrefixList"]["PrefixListId"]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 4334,
                "ToPort": 4334,
                "PrefixListIds": [{"PrefixListId": prefix_list}],
            }
        ],
    )
    recorder.operations.clear()
    result = ensure_cf(ctx, cf, dry_run=False, adopt=False)
    assert f"revoke tcp/4334 from {prefix_list} (not declared)" in result.changes[-1].details
    assert recorder.mutating == ["ec2:RevokeSecurityGroupIngress"]
    (only,) = _ingress(ec2, group_id)
    assert not only.get("PrefixListIds")
    assert [r["CidrIp"] for r in only["IpRanges"]] == ["172.31.0.0/16"]
