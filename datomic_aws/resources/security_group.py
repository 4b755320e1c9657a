"""The transactor's security group: TCP 4334 ingress from the declared sources.

Two kinds of group. The tool's own, at the derived name (`aws-security-group` blank): created with
our tags, converged to exactly the declared rules: every inbound rule the files do not declare is
revoked, whatever its port or protocol (issue 11: tcp/22 opened by hand widens access unseen); an
untagged one at that name is taken over only with --adopt. A group the operator *named*
(`aws-security-group`, Datomic's sample default `datomic`, reference §4): shared by every system
that names it, owned by none. It is never tagged for a system (so a second system is never
refused), and rules are only ever added to it, never revoked, on any port; a run of each system
converges. Outbound rules are never touched. Read once (`read_security_group`), plan typed operations
(`plan_security_group`, ownership refusals included), run only those (`execute_security_group`).
It must not decide names or read files: app/ensure_cf.py passes the desired state in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.aws_errors import has_code, translate, translating
from datomic_aws.changes import Change
from datomic_aws.errors import ResourceMismatch
from datomic_aws.resources.ec2 import (
    RULE_DESCRIPTION,
    SELF,
    TRANSACTOR_PORT,
    Rule,
    SecurityGroupSpec,
    SecurityGroupState,
    Source,
    read_security_group,
)
from datomic_aws.resources.owner import check_owner
from datomic_aws.resources.plan import Operation, Planned, action_for, lines

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import (
        IpPermissionTypeDef,
        IpRangeTypeDef,
        Ipv6RangeTypeDef,
        UserIdGroupPairTypeDef,
    )


@dataclass(frozen=True)
class SecurityGroupOutcome:
    change: Change
    group_id: str | None


def is_owned(desired: SecurityGroupSpec, current: SecurityGroupState) -> bool:
    """The tool's own group: at the derived name (or pinned by id) and tagged for this system. A
    group named in the file is never owned, whatever tags an earlier version gave it."""
    return not desired.shared and names.is_ours(current.tags, desired.system)


def _explicit(desired: SecurityGroupSpec, current: SecurityGroupState) -> bool:
    """The operator named this group: by name in the file, or by the id the file pins."""
    return not desired.derived or current.group_id == desired.group_id


def needs_adoption(desired: SecurityGroupSpec, current: SecurityGroupState | None) -> bool:
    """A derived name found without our tags: not ours to take over without --adopt."""
    return (
        current is not None and not _explicit(desired, current) and not is_owned(desired, current)
    )


def _subject(current: SecurityGroupState) -> str:
    """An existing group as error sentences name it: its name and its id."""
    return f"ec2 security group {current.name} ({current.group_id}, {current.vpc_id})"


def check_security_group_owner(
    desired: SecurityGroupSpec, current: SecurityGroupState | None, *, adopt: bool
) -> None:
    """Design §3 (resources/owner.py), before any write: another system's group is always
    refused; a derived name without our tags needs --adopt."""
    if current is None:
        return
    other = current.tags.get(names.TAG_SYSTEM)
    if desired.shared and other is not None and other != desired.system:
        # datomic-aws no longer tags a group named in a file; this tag is another system's claim
        # (its own group, or one an earlier datomic-aws tagged when it created it).
        if current.name.lower() == names.security_group(other).lower():
            hint = f"it is the group datomic-aws made for {other}; name another group"
        else:
            hint = (
                f"name another group in aws-security-group; or, if {current.name} is meant to be "
                f"shared by several systems, remove its {names.TAG_SYSTEM} tag (aws ec2 "
                f"delete-tags --resources {current.group_id} --tags Key={names.TAG_SYSTEM}) or "
                f"run ensure-cf for {other} (it releases a group its file names), then rerun"
            )
        raise ResourceMismatch(
            f"is tagged {names.TAG_SYSTEM}={other}: another Datomic system owns it",
            _subject(current),
            hint,
        )
    check_owner(
        current.tags,
        desired.system,
        _subject(current),
        explicit=_explicit(desired, current),
        adopt=adopt,
    )


def releases(desired: SecurityGroupSpec, current: SecurityGroupState | None) -> bool:
    """A named group carrying this system's tag (an earlier datomic-aws tagged the group it
    created): the tag is removed, so that the other systems naming the group may share it."""
    return (
        current is not None
        and desired.shared
        and current.tags.get(names.TAG_SYSTEM) == desired.system
    )


def _may_revoke(desired: SecurityGroupSpec, current: SecurityGroupState) -> bool:
    return is_owned(desired, current) or needs_adoption(desired, current)


@dataclass(frozen=True)
class CreateGroup:
    desired: SecurityGroupSpec

    def describe(self) -> str:
        d = self.desired
        if d.shared:
            return f"create in {d.vpc_id}, shared (named in the file; no system's tag)"
        return f"create in {d.vpc_id}, tagged datomic:system={d.system}"


@dataclass(frozen=True)
class AdoptGroup:
    group_id: str
    system: str

    def describe(self) -> str:
        return f"adopt {self.group_id}: tag datomic:system={self.system}"


@dataclass(frozen=True)
class ReleaseGroup:
    group_id: str
    system: str

    def describe(self) -> str:
        return (
            f"share {self.group_id}: remove its tag datomic:system={self.system} (a group "
            "named in the file belongs to no single system)"
        )


@dataclass(frozen=True)
class Allow:
    source: Source
    group_id: str | None  # None while the group is to be created

    def describe(self) -> str:
        return f"allow tcp/{TRANSACTOR_PORT} from {self.source.describe(self.group_id)}"


@dataclass(frozen=True)
class Revoke:
    source: Source
    group_id: str

    def describe(self) -> str:
        return (
            f"revoke tcp/{TRANSACTOR_PORT} from {self.source.describe(self.group_id)} "
            "(not declared)"
        )


@dataclass(frozen=True)
class RevokeRule:
    """An inbound rule on another port, protocol or source kind: the tool's own group admits
    only the declared TCP 4334 sources."""

    rule: Rule
    group_id: str

    def describe(self) -> str:
        return f"revoke {self.rule.describe(self.group_id)} (not declared)"


def _operations(
    desired: SecurityGroupSpec, current: SecurityGroupState | None
) -> tuple[Operation, ...]:
    if current is None:
        return (CreateGroup(desired), *(Allow(s, None) for s in sorted(desired.sources)))
    gid = current.group_id
    ops: list[Operation] = []
    if needs_adoption(desired, current):
        ops.append(AdoptGroup(gid, desired.system))
    if releases(desired, current):
        ops.append(ReleaseGroup(gid, desired.system))
    ops += [Allow(s, gid) for s in sorted(desired.sources - current.sources)]
    if _may_revoke(desired, current):
        ops += [Revoke(s, gid) for s in sorted(current.sources - desired.sources)]
        ops += [RevokeRule(r, gid) for r in sorted(current.other_rules, key=Rule.sort_key)]
    return tuple(ops)


def diff_security_group(
    desired: SecurityGroupSpec, current: SecurityGroupState | None
) -> list[str]:
    """What applying would do, one line each; empty when the group already matches. Pure."""
    return list(lines(_operations(desired, current)))


@dataclass(frozen=True)
class SecurityGroupPlan(Planned):
    desired: SecurityGroupSpec | None = None
    # The group's id when it exists.
    group_id: str | None = None

    def result(self, group_id: str | None) -> Change:
        """The plan's change after a real run: the group's id first."""
        return self.change(f"id {group_id}")


def plan_security_group(
    desired: SecurityGroupSpec, current: SecurityGroupState | None, *, adopt: bool
) -> SecurityGroupPlan:
    """Pure; the ownership refusal comes here, before any write."""
    check_security_group_owner(desired, current, adopt=adopt)
    ops = _operations(desired, current)
    existing = current.group_id if current else None
    return SecurityGroupPlan(
        desired.resource,
        action_for(current is not None, ops),
        ops,
        tuple(kept_rules(desired, current)),
        desired=desired,
        group_id=existing,
    )


def kept_rules(desired: SecurityGroupSpec, current: SecurityGroupState | None) -> list[str]:
    """Undeclared rules we leave alone because the group is the operator's, for the report."""
    if current is None or _may_revoke(desired, current):
        return []
    why = (
        "the group is named in the file, shared: its rules are never revoked"
        if desired.shared
        else "the group was not created by datomic-aws"
    )
    return [
        f"kept tcp/{TRANSACTOR_PORT} from {s.describe(current.group_id)}: not declared, but {why}"
        for s in sorted(current.sources - desired.sources)
    ]


def _permission(
    source: Source,
    group_id: str,
    *,
    described: bool = True,
    protocol: str = "tcp",
    ports: tuple[int, int] | None = (TRANSACTOR_PORT, TRANSACTOR_PORT),
) -> IpPermissionTypeDef:
    """One rule, TCP 4334 unless told; without descriptions (`described=False`) for a
    revocation, which matches on the protocol, the ports and the source alone."""
    note = RULE_DESCRIPTION if described else None
    perm: IpPermissionTypeDef = {"IpProtocol": protocol}
    if ports is not None:
        perm["FromPort"], perm["ToPort"] = ports
    if source.kind == "prefix-list":
        perm["PrefixListIds"] = [{"PrefixListId": source.value}]
    elif source.kind == "cidr":
        v4: IpRangeTypeDef = {"CidrIp": source.value}
        if note:
            v4["Description"] = note
        perm["IpRanges"] = [v4]
    elif source.kind == "cidr6":
        v6: Ipv6RangeTypeDef = {"CidrIpv6": source.value}
        if note:
            v6["Description"] = note
        perm["Ipv6Ranges"] = [v6]
    else:
        pair: UserIdGroupPairTypeDef = {
            "GroupId": group_id if source.value == SELF else source.value
        }
        if note:
            pair["Description"] = note
        if source.account:
            pair["UserId"] = source.account
        perm["UserIdGroupPairs"] = [pair]
    return perm


def _authorize(client: EC2Client, group_id: str, sources: list[Source], resource: str) -> None:
    if not sources:
        return
    perms = [_permission(s, group_id) for s in sources]
    try:
        client.authorize_security_group_ingress(GroupId=group_id, IpPermissions=perms)
        return
    except ClientError as exc:
        if not has_code(exc, "InvalidPermission.Duplicate"):
            raise translate(exc, resource) from exc
    # Someone (or a crashed earlier run) added one of them meanwhile; the call is all-or-nothing,
    # so add them one at a time and treat each duplicate as done.
    for perm in perms:
        try:
            client.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[perm])
        except ClientError as exc:
            if not has_code(exc, "InvalidPermission.Duplicate"):
                raise translate(exc, resource) from exc


def _revoke(
    client: EC2Client, group_id: str, sources: list[Source], rules: list[Rule], resource: str
) -> None:
    perms = [_permission(s, group_id, described=False) for s in sources]
    perms += [
        _permission(r.source, group_id, described=False, protocol=r.protocol, ports=r.ports)
        for r in rules
    ]
    if not perms:
        return
    try:
        client.revoke_security_group_ingress(GroupId=group_id, IpPermissions=perms)
    except ClientError as exc:
        if not has_code(exc, "InvalidPermission.NotFound"):
            raise translate(exc, resource) from exc


def _create(client: EC2Client, desired: SecurityGroupSpec) -> str:
    # A shared group records who made it, never a system: a system's tag would make every other
    # system that names it refuse it.
    ownership = (
        [{"Key": names.TAG_MANAGED, "Value": names.MANAGED_BY}]
        if desired.shared
        else names.tag_list(desired.system)
    )
    try:
        return client.create_security_group(
            GroupName=desired.name,
            Description=desired.description or f"Datomic transactor {desired.system}",
            VpcId=desired.vpc_id,
            TagSpecifications=[
                {
                    "ResourceType": "security-group",
                    "Tags": [*ownership, {"Key": "Name", "Value": desired.name}],
                }
            ],
        )["GroupId"]
    except ClientError as exc:
        # The create went through but its answer was lost, and botocore's retry met our own
        # group; or another system naming the same shared group created it meanwhile: converge
        # the group that exists, decided again from a fresh read.
        if has_code(exc, "InvalidGroup.Duplicate"):
            found = read_security_group(client, desired)
            if found is not None:
                return execute_security_group(
                    client, plan_security_group(desired, found, adopt=False)
                )
        raise translate(exc, desired.resource) from exc


def _tag(client: EC2Client, op: AdoptGroup | ReleaseGroup, resource: str) -> None:
    with translating(resource):
        if isinstance(op, AdoptGroup):
            client.create_tags(
                Resources=[op.group_id],
                Tags=[{"Key": t["Key"], "Value": t["Value"]} for t in names.tag_list(op.system)],
            )
        else:
            client.delete_tags(Resources=[op.group_id], Tags=[{"Key": names.TAG_SYSTEM}])


def execute_security_group(client: EC2Client, plan: SecurityGroupPlan) -> str:
    """Only the planned operations; returns the group's id. Rules go in one call each way."""
    assert plan.desired is not None
    resource = plan.resource
    group_id = plan.group_id
    allow: list[Source] = []
    revoke: list[Source] = []
    revoke_rules: list[Rule] = []
    for op in plan.operations:
        if isinstance(op, CreateGroup):
            group_id = _create(client, op.desired)
        elif isinstance(op, AdoptGroup | ReleaseGroup):
            _tag(client, op, resource)
        elif isinstance(op, Allow):
            allow.append(op.source)
        elif isinstance(op, Revoke):
            revoke.append(op.source)
        elif isinstance(op, RevokeRule):
            revoke_rules.append(op.rule)
    assert group_id is not None
    _authorize(client, group_id, allow, resource)
    _revoke(client, group_id, revoke, revoke_rules, resource)
    return group_id


def converge_security_group(
    client: EC2Client,
    desired: SecurityGroupSpec,
    current: SecurityGroupState | None,
    *,
    dry_run: bool,
    adopt: bool,
) -> SecurityGroupOutcome:
    """Plan from an already-read state and (unless `dry_run`) execute; also returns the group id
    (None only when a dry run would create the group)."""
    plan = plan_security_group(desired, current, adopt=adopt)
    return run_security_group(client, plan, dry_run=dry_run)


def run_security_group(
    client: EC2Client, plan: SecurityGroupPlan, *, dry_run: bool
) -> SecurityGroupOutcome:
    if not plan.operations:
        return SecurityGroupOutcome(plan.result(plan.group_id), plan.group_id)
    if dry_run:
        return SecurityGroupOutcome(plan.change(), plan.group_id)
    group_id = execute_security_group(client, plan)
    return SecurityGroupOutcome(plan.result(group_id), group_id)


def ensure_security_group(
    client: EC2Client, desired: SecurityGroupSpec, *, dry_run: bool, adopt: bool
) -> Change:
    current = read_security_group(client, desired)
    return converge_security_group(client, desired, current, dry_run=dry_run, adopt=adopt).change
