"""EC2 for the transactor: VPC and subnet look-ups, instance type facts, and its security group.

Owns reading the network the transactor runs in (default VPC and default subnets when the file says
nothing), the facts about an instance type (offered in the region, RAM, architectures), and the
convergence of the transactor's security group to the declared TCP 4334 ingress rules.

Two kinds of group. The tool's own, at the derived name (`aws-security-group` blank): created with
our tags, converged to exactly the declared rules (undeclared 4334 rules revoked); an untagged one at
that name is taken over only with --adopt. A group the operator *named* (`aws-security-group`,
Datomic's sample default `datomic`, reference §4): shared by every system that names it, owned by
none. It is never tagged for a system (so a second system is never refused), and rules are only ever
added to it, never revoked, on any port; a run of each system converges. Rules on other ports are
never touched in either kind. It must not decide names or read files: ensure.py passes the desired
state in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from datomic_aws import aws, names
from datomic_aws.changes import Action, Change
from datomic_aws.errors import ResourceMismatch
from datomic_aws.resources.owner import check_owner

TRANSACTOR_PORT = 4334
RULE_DESCRIPTION = "Datomic peers to transactor (datomic-aws)"


@dataclass(frozen=True)
class Vpc:
    vpc_id: str
    is_default: bool
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class Subnet:
    subnet_id: str
    vpc_id: str
    availability_zone: str
    default_for_az: bool


@dataclass(frozen=True)
class InstanceType:
    name: str
    memory_mib: int
    architectures: tuple[str, ...]
    # DescribeInstanceTypes' CurrentGeneration: false for the previous generations (c1, c3, m3...).
    current_generation: bool = True
    # Offered in the region (DescribeInstanceTypeOfferings): a type can be known but not offered.
    offered: bool = True


@dataclass(frozen=True, order=True)
class Source:
    """Where TCP 4334 traffic may come from: an IPv4/IPv6 CIDR or a security group.

    `value` is `SELF` for the transactor's own group (Datomic's samples let the group talk to
    itself), so the desired state can be stated before the group, and its id, exist.
    """

    kind: str  # "cidr" | "cidr6" | "group"
    value: str
    account: str | None = None

    def describe(self, group_id: str | None = None) -> str:
        if self.kind == "group":
            if self.value == SELF:
                return f"group {group_id} (itself)" if group_id else "the group itself"
            return f"group {self.account}:{self.value}" if self.account else f"group {self.value}"
        return self.value


SELF = "self"


@dataclass(frozen=True)
class SecurityGroupSpec:
    name: str
    vpc_id: str
    system: str
    sources: frozenset[Source]
    # True when the name comes from names.security_group(system), not from the file: such a group
    # must carry our tags, or be taken over with --adopt. False: the operator named the group, and
    # it is shared (see the module docstring).
    derived: bool
    group_id: str | None = None
    description: str = ""

    @property
    def resource(self) -> str:
        return f"ec2 security group {self.name} ({self.vpc_id})"

    @property
    def shared(self) -> bool:
        """Named in the file: several systems may name it, none owns it."""
        return not self.derived


@dataclass(frozen=True)
class SecurityGroupState:
    group_id: str
    name: str
    vpc_id: str
    owner_id: str
    tags: dict[str, str] = field(hash=False, compare=False)
    sources: frozenset[Source] = frozenset()


@dataclass(frozen=True)
class SecurityGroupOutcome:
    change: Change
    group_id: str | None


# ---------------------------------------------------------------------------------------------
# VPC, subnets, instance types: reads only.


def read_vpc(client: Any, vpc_id: str | None) -> Vpc | None:
    """The VPC with this id, or the region's default VPC when `vpc_id` is None."""
    try:
        if vpc_id:
            vpcs = client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
        else:
            vpcs = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])[
                "Vpcs"
            ]
    except Exception as exc:
        if aws.is_error(exc, "InvalidVpcID.NotFound", "InvalidVpcID.Malformed"):
            return None
        raise aws.translate(exc, f"ec2 vpc {vpc_id or '(default)'}") from exc
    if not vpcs:
        return None
    vpc = vpcs[0]
    cidrs = tuple(
        a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", []) if "CidrBlock" in a
    )
    return Vpc(vpc["VpcId"], bool(vpc.get("IsDefault")), cidrs or (vpc.get("CidrBlock", ""),))


def _subnet(raw: dict[str, Any]) -> Subnet:
    return Subnet(
        raw["SubnetId"], raw["VpcId"], raw["AvailabilityZone"], bool(raw.get("DefaultForAz"))
    )


def read_subnets(client: Any, subnet_ids: Iterable[str]) -> dict[str, Subnet]:
    """The subnets that exist among `subnet_ids` (missing ones are simply absent)."""
    ids = list(subnet_ids)
    try:
        return {
            s["SubnetId"]: _subnet(s) for s in client.describe_subnets(SubnetIds=ids)["Subnets"]
        }
    except Exception as exc:
        if not aws.is_error(exc, "InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"):
            raise aws.translate(exc, "ec2 subnets " + ",".join(ids)) from exc
    found: dict[str, Subnet] = {}
    for subnet_id in ids:
        # A batch fails as a whole on the first unknown id, and the operator wants to hear about
        # every bad one: ask again one id at a time.
        try:
            raw = client.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
        except Exception as exc:
            if aws.is_error(exc, "InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"):
                continue
            raise aws.translate(exc, f"ec2 subnet {subnet_id}") from exc
        for item in raw:
            found[item["SubnetId"]] = _subnet(item)
    return found


def default_subnets(client: Any, vpc_id: str) -> list[Subnet]:
    """The VPC's default subnets (one per availability zone), in zone order for a stable file."""
    try:
        paginator = client.get_paginator("describe_subnets")
        pages = paginator.paginate(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )
        subnets = [_subnet(s) for page in pages for s in page["Subnets"]]
    except Exception as exc:
        raise aws.translate(exc, f"ec2 subnets of {vpc_id}") from exc
    return sorted(subnets, key=lambda s: (s.availability_zone, s.subnet_id))


def read_instance_type(client: Any, instance_type: str) -> InstanceType | None:
    """RAM, architectures, generation and whether the type is offered in the client's region; None
    when EC2 does not know the type at all."""
    try:
        described = client.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
        if not described:
            return None
        offered = client.describe_instance_type_offerings(
            LocationType="region",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        )["InstanceTypeOfferings"]
    except Exception as exc:
        if aws.is_error(exc, "InvalidInstanceType"):
            return None
        raise aws.translate(exc, f"ec2 instance type {instance_type}") from exc
    info = described[0]
    return InstanceType(
        instance_type,
        int(info["MemoryInfo"]["SizeInMiB"]),
        tuple(info.get("ProcessorInfo", {}).get("SupportedArchitectures", [])),
        current_generation=bool(info.get("CurrentGeneration", True)),
        offered=bool(offered),
    )


def read_image_architecture(client: Any, image_id: str) -> str | None:
    """The architecture of an AMI the caller can launch; None when there is no such image."""
    try:
        images = client.describe_images(ImageIds=[image_id])["Images"]
    except Exception as exc:
        if aws.is_error(
            exc, "InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"
        ):
            return None
        raise aws.translate(exc, f"ec2 image {image_id}") from exc
    return str(images[0].get("Architecture", "")) if images else None


def find_group(
    client: Any, *, vpc_id: str | None = None, name: str | None = None, group_id: str | None = None
) -> dict[str, Any] | None:
    """One security group by id, or by name within a VPC (names are unique per VPC)."""
    try:
        if group_id:
            groups = client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
        else:
            assert name is not None and vpc_id is not None
            groups = client.describe_security_groups(
                Filters=[
                    {"Name": "group-name", "Values": [name]},
                    {"Name": "vpc-id", "Values": [vpc_id]},
                ]
            )["SecurityGroups"]
    except Exception as exc:
        if aws.is_error(
            exc, "InvalidGroup.NotFound", "InvalidGroupId.NotFound", "InvalidGroupId.Malformed"
        ):
            return None
        raise aws.translate(exc, f"ec2 security group {group_id or name}") from exc
    return dict(groups[0]) if groups else None


# ---------------------------------------------------------------------------------------------
# The transactor's security group: read / diff / apply / ensure.


def _is_transactor_rule(perm: dict[str, Any]) -> bool:
    return (
        perm.get("IpProtocol") == "tcp"
        and perm.get("FromPort") == TRANSACTOR_PORT
        and perm.get("ToPort") == TRANSACTOR_PORT
    )


def sources_of(raw: dict[str, Any]) -> frozenset[Source]:
    """The TCP 4334 sources of a described group; its own id becomes SELF, own account dropped."""
    own_id, owner = raw.get("GroupId"), raw.get("OwnerId")
    found: set[Source] = set()
    for perm in raw.get("IpPermissions", []):
        if not _is_transactor_rule(perm):
            continue
        for r in perm.get("IpRanges", []):
            found.add(Source("cidr", r["CidrIp"]))
        for r in perm.get("Ipv6Ranges", []):
            found.add(Source("cidr6", r["CidrIpv6"]))
        for pair in perm.get("UserIdGroupPairs", []):
            gid = pair.get("GroupId", "")
            account = pair.get("UserId")
            if account == owner:
                account = None
            found.add(Source("group", SELF if gid == own_id else gid, account))
    return frozenset(found)


def state_of(raw: dict[str, Any]) -> SecurityGroupState:
    return SecurityGroupState(
        group_id=raw["GroupId"],
        name=raw["GroupName"],
        vpc_id=raw.get("VpcId", ""),
        owner_id=raw.get("OwnerId", ""),
        tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
        sources=sources_of(raw),
    )


def read_security_group(client: Any, desired: SecurityGroupSpec) -> SecurityGroupState | None:
    """By the id from the file when it still exists, else by name in the VPC. No side effects."""
    raw = None
    if desired.group_id:
        raw = find_group(client, group_id=desired.group_id)
    if raw is None:
        raw = find_group(client, vpc_id=desired.vpc_id, name=desired.name)
    return state_of(raw) if raw else None


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


def diff_security_group(
    desired: SecurityGroupSpec, current: SecurityGroupState | None
) -> list[str]:
    """What applying would do, one line each; empty when the group already matches. Pure."""
    port = f"tcp/{TRANSACTOR_PORT}"
    if current is None:
        if desired.shared:
            lines = [f"create in {desired.vpc_id}, shared (named in the file; no system's tag)"]
        else:
            lines = [f"create in {desired.vpc_id}, tagged datomic:system={desired.system}"]
        lines += [f"allow {port} from {s.describe()}" for s in sorted(desired.sources)]
        return lines
    lines = []
    if needs_adoption(desired, current):
        lines.append(f"adopt {current.group_id}: tag datomic:system={desired.system}")
    if releases(desired, current):
        lines.append(
            f"share {current.group_id}: remove its tag datomic:system={desired.system} (a group "
            "named in the file belongs to no single system)"
        )
    gid = current.group_id
    lines += [
        f"allow {port} from {s.describe(gid)}" for s in sorted(desired.sources - current.sources)
    ]
    if _may_revoke(desired, current):
        lines += [
            f"revoke {port} from {s.describe(gid)} (not declared)"
            for s in sorted(current.sources - desired.sources)
        ]
    return lines


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


def _permission(source: Source, group_id: str) -> dict[str, Any]:
    perm: dict[str, Any] = {
        "IpProtocol": "tcp",
        "FromPort": TRANSACTOR_PORT,
        "ToPort": TRANSACTOR_PORT,
    }
    if source.kind == "cidr":
        perm["IpRanges"] = [{"CidrIp": source.value, "Description": RULE_DESCRIPTION}]
    elif source.kind == "cidr6":
        perm["Ipv6Ranges"] = [{"CidrIpv6": source.value, "Description": RULE_DESCRIPTION}]
    else:
        pair: dict[str, str] = {
            "GroupId": group_id if source.value == SELF else source.value,
            "Description": RULE_DESCRIPTION,
        }
        if source.account:
            pair["UserId"] = source.account
        perm["UserIdGroupPairs"] = [pair]
    return perm


def _bare(perm: dict[str, Any]) -> dict[str, Any]:
    """A permission without descriptions: revocation matches on the source alone."""
    out = dict(perm)
    for key in ("IpRanges", "Ipv6Ranges", "UserIdGroupPairs"):
        if key in out:
            out[key] = [{k: v for k, v in r.items() if k != "Description"} for r in out[key]]
    return out


def _authorize(client: Any, group_id: str, sources: list[Source], resource: str) -> None:
    if not sources:
        return
    perms = [_permission(s, group_id) for s in sources]
    try:
        client.authorize_security_group_ingress(GroupId=group_id, IpPermissions=perms)
        return
    except Exception as exc:
        if not aws.is_error(exc, "InvalidPermission.Duplicate"):
            raise aws.translate(exc, resource) from exc
    # Someone (or a crashed earlier run) added one of them meanwhile; the call is all-or-nothing,
    # so add them one at a time and treat each duplicate as done.
    for perm in perms:
        try:
            client.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[perm])
        except Exception as exc:
            if not aws.is_error(exc, "InvalidPermission.Duplicate"):
                raise aws.translate(exc, resource) from exc


def _revoke(client: Any, group_id: str, sources: list[Source], resource: str) -> None:
    if not sources:
        return
    perms = [_bare(_permission(s, group_id)) for s in sources]
    try:
        client.revoke_security_group_ingress(GroupId=group_id, IpPermissions=perms)
    except Exception as exc:
        if not aws.is_error(exc, "InvalidPermission.NotFound"):
            raise aws.translate(exc, resource) from exc


def apply_security_group(
    client: Any, desired: SecurityGroupSpec, current: SecurityGroupState | None
) -> str:
    """Create or converge the group; returns its id. Only makes the calls the diff asks for."""
    resource = desired.resource
    if current is None:
        # A shared group records who made it, never a system: a system's tag would make every
        # other system that names it refuse it.
        ownership = (
            [{"Key": names.TAG_MANAGED, "Value": names.MANAGED_BY}]
            if desired.shared
            else names.tag_list(desired.system)
        )
        try:
            group_id = str(
                client.create_security_group(
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
            )
        except Exception as exc:
            # The create went through but its answer was lost, and botocore's retry met our own
            # group: converge the group that exists.
            if aws.is_error(exc, "InvalidGroup.Duplicate"):
                # Or another system naming the same shared group created it meanwhile.
                found = read_security_group(client, desired)
                if found is not None:
                    check_security_group_owner(desired, found, adopt=False)
                    return apply_security_group(client, desired, found)
            raise aws.translate(exc, resource) from exc
        _authorize(client, group_id, sorted(desired.sources), resource)
        return group_id
    group_id = current.group_id
    revoke = _may_revoke(desired, current)
    if needs_adoption(desired, current):
        try:
            client.create_tags(Resources=[group_id], Tags=names.tag_list(desired.system))
        except Exception as exc:
            raise aws.translate(exc, resource) from exc
    if releases(desired, current):
        try:
            client.delete_tags(Resources=[group_id], Tags=[{"Key": names.TAG_SYSTEM}])
        except Exception as exc:
            raise aws.translate(exc, resource) from exc
    _authorize(client, group_id, sorted(desired.sources - current.sources), resource)
    if revoke:
        _revoke(client, group_id, sorted(current.sources - desired.sources), resource)
    return group_id


def converge_security_group(
    client: Any,
    desired: SecurityGroupSpec,
    current: SecurityGroupState | None,
    *,
    dry_run: bool,
    adopt: bool,
) -> SecurityGroupOutcome:
    """ensure_security_group with an already-read state, also returning the group id (None only
    when a dry run would create the group)."""
    resource = desired.resource
    check_security_group_owner(desired, current, adopt=adopt)
    details = diff_security_group(desired, current)
    notes = kept_rules(desired, current)
    existing_id = current.group_id if current else None
    if not details:
        return SecurityGroupOutcome(
            Change(resource, Action.NOOP, (f"id {existing_id}", *notes)), existing_id
        )
    action = Action.CREATE if current is None else Action.UPDATE
    if dry_run:
        return SecurityGroupOutcome(Change(resource, action, (*details, *notes)), existing_id)
    group_id = apply_security_group(client, desired, current)
    return SecurityGroupOutcome(
        Change(resource, action, (f"id {group_id}", *details, *notes)), group_id
    )


def ensure_security_group(
    client: Any, desired: SecurityGroupSpec, *, dry_run: bool, adopt: bool
) -> Change:
    current = read_security_group(client, desired)
    return converge_security_group(client, desired, current, dry_run=dry_run, adopt=adopt).change
