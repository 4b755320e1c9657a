"""resources/ec2.py (network look-ups, instance types, a group as it is) and
resources/security_group.py (the group's plan and convergence)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from datomic_aws import names
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from datomic_aws.errors import OwnershipError, ResourceMismatch
from datomic_aws.resources import ec2 as ec2r
from datomic_aws.resources import security_group as sgr
from datomic_aws.resources.ec2 import SELF, SecurityGroupSpec, Source

if TYPE_CHECKING:
    # Not imported from conftest at run time: with several conftest.py files in one run, the name
    # `conftest` may resolve to either file.
    from conftest import CallRecorder

REGION = "us-east-1"


@pytest.fixture
def ec2(ctx: AwsContext) -> Any:
    return ctx.client("ec2", REGION)


@pytest.fixture
def vpc_id(ec2: Any) -> str:
    vpc = ec2r.read_vpc(ec2, None)
    assert vpc is not None and vpc.is_default
    return vpc.vpc_id


def desired(
    vpc_id: str, *sources: Source, name: str = "", derived: bool = True
) -> SecurityGroupSpec:
    return SecurityGroupSpec(
        name=name or names.security_group("sys"),
        vpc_id=vpc_id,
        system="sys",
        sources=frozenset(sources),
        derived=derived,
    )


def rules(ec2: Any, group_id: str) -> set[tuple[str, str]]:
    raw = ec2r.find_group(ec2, group_id=group_id)
    assert raw is not None
    return {(s.kind, s.value) for s in ec2r.sources_of(raw)}


CIDR_A = Source("cidr", "10.0.0.0/8")
CIDR_B = Source("cidr", "192.168.0.0/16")
CIDR6 = Source("cidr6", "2001:db8::/32")


def test_default_vpc_and_subnets(ec2: Any, vpc_id: str) -> None:
    subnets = ec2r.default_subnets(ec2, vpc_id)
    assert subnets and all(s.vpc_id == vpc_id and s.default_for_az for s in subnets)
    assert [s.availability_zone for s in subnets] == sorted(s.availability_zone for s in subnets)
    found = ec2r.read_subnets(ec2, [subnets[0].subnet_id, "subnet-0000000000000000f"])
    assert list(found) == [subnets[0].subnet_id]
    assert ec2r.read_vpc(ec2, "vpc-0000000000000000f") is None


def test_instance_type_facts(ec2: Any) -> None:
    info = ec2r.read_instance_type(ec2, "m7g.large")
    assert info is not None and info.architectures == ("arm64",) and info.memory_mib > 0
    assert ec2r.read_instance_type(ec2, "zz9.large") is None


def test_diff_is_pure_and_says_what_changes(vpc_id: str) -> None:
    want = desired(vpc_id, CIDR_A, Source("group", SELF))
    assert sgr.diff_security_group(want, None) == [
        f"create in {vpc_id}, tagged datomic:system=sys",
        "allow tcp/4334 from 10.0.0.0/8",
        "allow tcp/4334 from the group itself",
    ]
    ours = ec2r.SecurityGroupState(
        "sg-1", want.name, vpc_id, "123456789012", names.tags("sys"), frozenset({CIDR_B})
    )
    assert sgr.diff_security_group(want, ours) == [
        "allow tcp/4334 from 10.0.0.0/8",
        "allow tcp/4334 from group sg-1 (itself)",
        "revoke tcp/4334 from 192.168.0.0/16 (not declared)",
    ]
    operators = desired(vpc_id, CIDR_A, name="theirs", derived=False)
    theirs = ec2r.SecurityGroupState("sg-2", "theirs", vpc_id, "1", {}, frozenset({CIDR_A, CIDR_B}))
    assert sgr.diff_security_group(operators, theirs) == []
    assert "192.168.0.0/16" in sgr.kept_rules(operators, theirs)[0]


def test_create_then_noop(ctx: AwsContext, ec2: Any, vpc_id: str, recorder: CallRecorder) -> None:
    want = desired(vpc_id, CIDR_A, CIDR6, Source("group", SELF))
    change = sgr.ensure_security_group(ec2, want, dry_run=False, adopt=False)
    assert change.action is Action.CREATE
    state = ec2r.read_security_group(ec2, want)
    assert state is not None
    assert names.is_ours(state.tags, "sys")
    assert state.sources == want.sources
    assert recorder.mutating == ["ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupIngress"]
    recorder.operations.clear()
    again = sgr.ensure_security_group(ec2, want, dry_run=False, adopt=False)
    assert again.action is Action.NOOP
    assert recorder.mutating == []


def test_dry_run_makes_no_write(ec2: Any, vpc_id: str, recorder: CallRecorder) -> None:
    change = sgr.ensure_security_group(ec2, desired(vpc_id, CIDR_A), dry_run=True, adopt=False)
    assert change.action is Action.CREATE
    assert recorder.mutating == []
    assert ec2r.read_security_group(ec2, desired(vpc_id)) is None


def test_owned_group_converges_to_exactly_the_declared_rules(
    ec2: Any, vpc_id: str, recorder: CallRecorder
) -> None:
    sgr.ensure_security_group(ec2, desired(vpc_id, CIDR_A, CIDR_B), dry_run=False, adopt=False)
    group_id = ec2r.read_security_group(ec2, desired(vpc_id))
    assert group_id is not None
    # Issue 11: a rule on another port is revoked too (it used to be left alone).
    ec2.authorize_security_group_ingress(
        GroupId=group_id.group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "10.9.0.0/16"}],
            }
        ],
    )
    recorder.operations.clear()
    change = sgr.ensure_security_group(ec2, desired(vpc_id, CIDR_A), dry_run=False, adopt=False)
    assert change.action is Action.UPDATE
    assert "revoke tcp/4334 from 192.168.0.0/16 (not declared)" in change.details
    assert "revoke tcp/22 from 10.9.0.0/16 (not declared)" in change.details
    # Both in one call.
    assert recorder.mutating == ["ec2:RevokeSecurityGroupIngress"]
    assert rules(ec2, group_id.group_id) == {("cidr", "10.0.0.0/8")}
    raw = ec2r.find_group(ec2, group_id=group_id.group_id)
    assert raw is not None
    assert not any(p.get("FromPort") == 22 for p in raw["IpPermissions"])


def test_operators_group_gains_rules_but_loses_none(
    ec2: Any, vpc_id: str, recorder: CallRecorder
) -> None:
    group_id = ec2.create_security_group(GroupName="theirs", Description="x", VpcId=vpc_id)[
        "GroupId"
    ]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 4334,
                "ToPort": 4334,
                "IpRanges": [{"CidrIp": "192.168.0.0/16"}],
            }
        ],
    )
    want = desired(vpc_id, CIDR_A, name="theirs", derived=False)
    recorder.operations.clear()
    change = sgr.ensure_security_group(ec2, want, dry_run=False, adopt=False)
    assert change.action is Action.UPDATE
    assert recorder.mutating == ["ec2:AuthorizeSecurityGroupIngress"]
    assert rules(ec2, group_id) == {("cidr", "10.0.0.0/8"), ("cidr", "192.168.0.0/16")}
    assert any("kept tcp/4334 from 192.168.0.0/16" in d for d in change.details)
    raw = ec2r.find_group(ec2, group_id=group_id)
    assert raw is not None and not raw.get("Tags")


def test_derived_name_without_our_tags_needs_adopt(
    ec2: Any, vpc_id: str, recorder: CallRecorder
) -> None:
    name = names.security_group("sys")
    group_id = ec2.create_security_group(GroupName=name, Description="x", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 4334,
                "ToPort": 4334,
                "IpRanges": [{"CidrIp": "192.168.0.0/16"}],
            }
        ],
    )
    recorder.operations.clear()
    with pytest.raises(OwnershipError) as info:
        sgr.ensure_security_group(ec2, desired(vpc_id, CIDR_A), dry_run=False, adopt=False)
    assert "--adopt" in str(info.value)
    assert recorder.mutating == []
    change = sgr.ensure_security_group(ec2, desired(vpc_id, CIDR_A), dry_run=False, adopt=True)
    assert change.details[1] == f"adopt {group_id}: tag datomic:system=sys"
    assert rules(ec2, group_id) == {("cidr", "10.0.0.0/8")}
    state = ec2r.read_security_group(ec2, desired(vpc_id))
    assert state is not None and names.is_ours(state.tags, "sys")
    # Adopted once, ours from then on: no --adopt needed.
    assert (
        sgr.ensure_security_group(ec2, desired(vpc_id, CIDR_A), dry_run=False, adopt=False).action
        is Action.NOOP
    )


def test_rule_added_meanwhile_is_not_an_error(ec2: Any, vpc_id: str) -> None:
    want = desired(vpc_id, CIDR_A, CIDR_B)
    sgr.ensure_security_group(ec2, desired(vpc_id), dry_run=False, adopt=False)
    stale = ec2r.read_security_group(ec2, want)
    assert stale is not None
    # Another run (or a crashed one) added one of the rules after we read the group.
    ec2.authorize_security_group_ingress(
        GroupId=stale.group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 4334,
                "ToPort": 4334,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
            }
        ],
    )
    outcome = sgr.converge_security_group(ec2, want, stale, dry_run=False, adopt=False)
    assert outcome.change.action is Action.UPDATE
    assert rules(ec2, stale.group_id) == {("cidr", "10.0.0.0/8"), ("cidr", "192.168.0.0/16")}


def test_group_reference_by_id(ec2: Any, vpc_id: str) -> None:
    peers = ec2.create_security_group(GroupName="peers", Description="x", VpcId=vpc_id)["GroupId"]
    want = desired(vpc_id, Source("group", peers))
    sgr.ensure_security_group(ec2, want, dry_run=False, adopt=False)
    state = ec2r.read_security_group(ec2, want)
    assert state is not None and state.sources == frozenset({Source("group", peers)})
    assert sgr.ensure_security_group(ec2, want, dry_run=False, adopt=False).action is Action.NOOP


def test_group_of_another_system_is_always_refused(
    ec2: Any, vpc_id: str, recorder: CallRecorder
) -> None:
    ec2.create_security_group(
        GroupName="shared",
        Description="x",
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": names.tag_list("other")}],
    )
    recorder.operations.clear()
    want = desired(vpc_id, CIDR_A, name="shared", derived=False)
    with pytest.raises(ResourceMismatch):
        sgr.ensure_security_group(ec2, want, dry_run=False, adopt=True)
    assert recorder.mutating == []


# ---------------------------------------------------------------------------------------------
# A group the operator named is shared: never tagged for a system, never revoked from.


def shared(vpc_id: str, system: str, *sources: Source, name: str = "datomic") -> SecurityGroupSpec:
    return SecurityGroupSpec(
        name=name, vpc_id=vpc_id, system=system, sources=frozenset(sources), derived=False
    )


def all_permissions(ec2: Any, group_id: str) -> list[dict[str, Any]]:
    raw = ec2r.find_group(ec2, group_id=group_id)
    assert raw is not None
    return list(raw["IpPermissions"])


def test_a_named_group_is_created_without_any_systems_tag(
    ec2: Any, vpc_id: str, recorder: CallRecorder
) -> None:
    change = sgr.ensure_security_group(
        ec2, shared(vpc_id, "orders", CIDR_A), dry_run=False, adopt=False
    )
    assert change.action is Action.CREATE
    assert any("shared (named in the file; no system's tag)" in d for d in change.details)
    state = ec2r.read_security_group(ec2, shared(vpc_id, "orders"))
    assert state is not None
    assert names.TAG_SYSTEM not in state.tags
    assert state.tags[names.TAG_MANAGED] == names.MANAGED_BY


def test_two_systems_naming_one_group_both_converge_and_nothing_is_revoked(
    ec2: Any, vpc_id: str, recorder: CallRecorder
) -> None:
    orders = shared(vpc_id, "orders", CIDR_A, Source("group", SELF))
    billing = shared(vpc_id, "billing", CIDR_B, CIDR6)
    sgr.ensure_security_group(ec2, orders, dry_run=False, adopt=False)
    second = sgr.ensure_security_group(ec2, billing, dry_run=False, adopt=False)
    assert second.action is Action.UPDATE
    state = ec2r.read_security_group(ec2, orders)
    assert state is not None
    everything = {("cidr", "10.0.0.0/8"), ("cidr", "192.168.0.0/16"), ("cidr6", "2001:db8::/32")}
    assert rules(ec2, state.group_id) == everything | {("group", SELF)}

    # Each system's rerun is a no-op: the other's rules are kept, never revoked.
    for spec in (orders, billing, orders):
        recorder.operations.clear()
        change = sgr.ensure_security_group(ec2, spec, dry_run=False, adopt=False)
        assert change.action is Action.NOOP, change
        assert recorder.mutating == []
        assert any("named in the file, shared" in d for d in change.details)

    # A system dropping a source from its file revokes nothing either, on any port.
    ec2.authorize_security_group_ingress(
        GroupId=state.group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "1.2.3.4/32"}],
            }
        ],
    )
    before = all_permissions(ec2, state.group_id)
    recorder.operations.clear()
    change = sgr.ensure_security_group(ec2, shared(vpc_id, "orders"), dry_run=False, adopt=True)
    assert change.action is Action.NOOP
    assert "ec2:RevokeSecurityGroupIngress" not in recorder.mutating
    assert recorder.mutating == []
    assert all_permissions(ec2, state.group_id) == before
    state = ec2r.read_security_group(ec2, orders)
    assert state is not None and names.TAG_SYSTEM not in state.tags


def test_a_named_group_an_earlier_version_tagged_for_this_system_is_released(
    ec2: Any, vpc_id: str, recorder: CallRecorder
) -> None:
    group_id = ec2.create_security_group(
        GroupName="datomic",
        Description="x",
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": names.tag_list("orders")}],
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 4334,
                "ToPort": 4334,
                "IpRanges": [{"CidrIp": "192.168.0.0/16"}],
            }
        ],
    )
    recorder.operations.clear()
    # Before the release, another system naming the group is refused, and told how to share it.
    with pytest.raises(ResourceMismatch) as refused:
        sgr.ensure_security_group(ec2, shared(vpc_id, "billing"), dry_run=False, adopt=True)
    text = str(refused.value)
    assert f"ec2 security group datomic ({group_id}, {vpc_id})" in text
    assert "datomic:system=orders" in text
    assert f"--resources {group_id}" in text
    assert recorder.mutating == []

    change = sgr.ensure_security_group(
        ec2, shared(vpc_id, "orders", CIDR_A), dry_run=False, adopt=False
    )
    assert any(d.startswith(f"share {group_id}: remove its tag") for d in change.details)
    assert sorted(recorder.mutating) == ["ec2:AuthorizeSecurityGroupIngress", "ec2:DeleteTags"]
    # Owned by no one now: its undeclared rule stays, and the other system converges.
    assert rules(ec2, group_id) == {("cidr", "10.0.0.0/8"), ("cidr", "192.168.0.0/16")}
    recorder.operations.clear()
    billing = sgr.ensure_security_group(
        ec2, shared(vpc_id, "billing", CIDR6), dry_run=False, adopt=False
    )
    assert billing.action is Action.UPDATE
    assert recorder.mutating == ["ec2:AuthorizeSecurityGroupIngress"]
    recorder.operations.clear()
    again = sgr.ensure_security_group(
        ec2, shared(vpc_id, "orders", CIDR_A), dry_run=False, adopt=False
    )
    assert again.action is Action.NOOP
    assert recorder.mutating == []


def test_the_derived_group_keeps_full_convergence_when_pinned_by_id(
    ec2: Any, vpc_id: str, recorder: CallRecorder
) -> None:
    sgr.ensure_security_group(ec2, desired(vpc_id, CIDR_A, CIDR_B), dry_run=False, adopt=False)
    state = ec2r.read_security_group(ec2, desired(vpc_id))
    assert state is not None
    pinned = SecurityGroupSpec(
        name=names.security_group("sys"),
        vpc_id=vpc_id,
        system="sys",
        sources=frozenset({CIDR_A}),
        derived=True,
        group_id=state.group_id,
    )
    recorder.operations.clear()
    change = sgr.ensure_security_group(ec2, pinned, dry_run=False, adopt=False)
    assert change.action is Action.UPDATE
    assert recorder.mutating == ["ec2:RevokeSecurityGroupIngress"]
    assert rules(ec2, state.group_id) == {("cidr", "10.0.0.0/8")}


def test_naming_another_systems_own_group_is_refused_naming_it(
    ec2: Any, vpc_id: str, recorder: CallRecorder
) -> None:
    theirs = sgr.ensure_security_group(ec2, desired(vpc_id, CIDR_A), dry_run=False, adopt=False)
    assert theirs.action is Action.CREATE
    state = ec2r.read_security_group(ec2, desired(vpc_id))
    assert state is not None
    recorder.operations.clear()
    want = shared(vpc_id, "orders", CIDR_B, name=names.security_group("sys"))
    with pytest.raises(ResourceMismatch) as refused:
        sgr.ensure_security_group(ec2, want, dry_run=False, adopt=True)
    text = str(refused.value)
    assert f"ec2 security group {state.name} ({state.group_id}, {vpc_id})" in text
    assert "the group datomic-aws made for sys" in text
    assert recorder.mutating == []
    assert rules(ec2, state.group_id) == {("cidr", "10.0.0.0/8")}
