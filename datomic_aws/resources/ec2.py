"""EC2 as it is, for the transactor: VPC, subnets, instance types, images, its security group.

Owns reading the network the transactor runs in (default VPC and default subnets when the file says
nothing), the facts about an instance type (offered in the region, RAM, architectures), an image's
architecture, and a security group's inbound rules and tags (with the types that state them): its
TCP 4334 sources, and every other inbound rule (`Rule`), which the tool's own group must not have.
Reads only: it never writes, decides names or reads files (app/ensure_cf.py checks the file against
these facts; resources/security_group.py plans and converges the transactor's group).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from botocore.exceptions import ClientError

from datomic_aws.aws_errors import has_code, translate, translating

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_ec2.type_defs import (
        IpPermissionOutputTypeDef,
        SecurityGroupTypeDef,
        SubnetTypeDef,
    )


TRANSACTOR_PORT = 4334
RULE_DESCRIPTION = "Datomic peers to transactor (datomic-aws)"


@dataclass(frozen=True)
class Vpc:
    vpc_id: str
    is_default: bool


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
    # The zones of the region that offer it; None when not read (then no zone is left out).
    zones: frozenset[str] | None = None


def read_vpc(client: EC2Client, vpc_id: str | None) -> Vpc | None:
    """The VPC with this id, or the region's default VPC when `vpc_id` is None."""
    try:
        if vpc_id:
            vpcs = client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
        else:
            vpcs = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])[
                "Vpcs"
            ]
    except ClientError as exc:
        if has_code(exc, "InvalidVpcID.NotFound", "InvalidVpcID.Malformed"):
            return None
        raise translate(exc, f"ec2 vpc {vpc_id or '(default)'}") from exc
    if not vpcs:
        return None
    return Vpc(vpcs[0]["VpcId"], bool(vpcs[0].get("IsDefault")))


def _subnet(raw: SubnetTypeDef) -> Subnet:
    return Subnet(
        raw["SubnetId"], raw["VpcId"], raw["AvailabilityZone"], bool(raw.get("DefaultForAz"))
    )


def read_subnets(client: EC2Client, subnet_ids: Iterable[str]) -> dict[str, Subnet]:
    """The subnets that exist among `subnet_ids` (missing ones are simply absent)."""
    ids = list(subnet_ids)
    try:
        return {
            s["SubnetId"]: _subnet(s) for s in client.describe_subnets(SubnetIds=ids)["Subnets"]
        }
    except ClientError as exc:
        if not has_code(exc, "InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"):
            raise translate(exc, "ec2 subnets " + ",".join(ids)) from exc
    found: dict[str, Subnet] = {}
    for subnet_id in ids:
        # A batch fails as a whole on the first unknown id, and the operator wants to hear about
        # every bad one: ask again one id at a time.
        try:
            raw = client.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
        except ClientError as exc:
            if has_code(exc, "InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"):
                continue
            raise translate(exc, f"ec2 subnet {subnet_id}") from exc
        for item in raw:
            found[item["SubnetId"]] = _subnet(item)
    return found


def default_subnets(client: EC2Client, vpc_id: str) -> list[Subnet]:
    """The VPC's default subnets (one per availability zone), in zone order for a stable file."""
    with translating(f"ec2 subnets of {vpc_id}"):
        paginator = client.get_paginator("describe_subnets")
        pages = paginator.paginate(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )
        subnets = [_subnet(s) for page in pages for s in page["Subnets"]]
    return sorted(subnets, key=lambda s: (s.availability_zone, s.subnet_id))


def read_instance_type(client: EC2Client, instance_type: str) -> InstanceType | None:
    """RAM, architectures, generation and the zones of the client's region that offer the type
    (offered in the region = in one zone at least); None when EC2 does not know the type at all."""
    try:
        # The file's value is any string: EC2 answers for the types it knows (the stub's Literal).
        asked = cast("InstanceTypeType", instance_type)
        described = client.describe_instance_types(InstanceTypes=[asked])["InstanceTypes"]
        if not described:
            return None
        # Reference §11: LocationType=region says nothing about zones, and a type may be missing
        # in some zones of a region; one call by zone answers both questions.
        pages = client.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        )
        zones = frozenset(
            o.get("Location", "") for page in pages for o in page["InstanceTypeOfferings"]
        ) - {""}
    except ClientError as exc:
        if has_code(exc, "InvalidInstanceType"):
            return None
        raise translate(exc, f"ec2 instance type {instance_type}") from exc
    info = described[0]
    return InstanceType(
        instance_type,
        int(info["MemoryInfo"]["SizeInMiB"]),
        tuple(info.get("ProcessorInfo", {}).get("SupportedArchitectures", [])),
        current_generation=bool(info.get("CurrentGeneration", True)),
        offered=bool(zones),
        zones=zones,
    )


def read_image_architecture(client: EC2Client, image_id: str) -> str | None:
    """The architecture of an AMI the caller can launch; None when there is no such image."""
    try:
        images = client.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as exc:
        if has_code(
            exc, "InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"
        ):
            return None
        raise translate(exc, f"ec2 image {image_id}") from exc
    return str(images[0].get("Architecture", "")) if images else None


# ---------------------------------------------------------------------------------------------
# The transactor's security group as it is (resources/security_group.py converges it).


@dataclass(frozen=True, order=True)
class Source:
    """Where TCP 4334 traffic may come from: an IPv4/IPv6 CIDR or a security group.

    `value` is `SELF` for the transactor's own group (Datomic's samples let the group talk to
    itself), so the desired state can be stated before the group, and its id, exist.
    """

    kind: str  # "cidr" | "cidr6" | "group" | "prefix-list" (read only, never declared)
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
class Rule:
    """An inbound rule that is not TCP 4334 from a CIDR or a group: any protocol and ports (None
    when AWS states none, as for all traffic), one source each (a `prefix-list` one included)."""

    protocol: str
    ports: tuple[int, int] | None
    source: Source

    def sort_key(self) -> tuple[str, int, int, Source]:
        low, high = self.ports or (-2, -2)
        return (self.protocol, low, high, self.source)

    def traffic(self) -> str:
        """`tcp/22`, `udp/1000-2000`, `icmp type 8`, `all traffic`, `protocol 50`."""
        name = {"-1": "all", "6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}.get(
            self.protocol, self.protocol
        )
        if name == "all":
            return "all traffic"
        low, high = self.ports or (-1, -1)
        if name in ("tcp", "udp"):
            return f"{name}/{low}" if low == high else f"{name}/{low}-{high}"
        if name in ("icmp", "icmpv6"):
            return name if low == -1 else f"{name} type {low}"
        return f"protocol {name}"

    def describe(self, group_id: str | None = None) -> str:
        return f"{self.traffic()} from {self.source.describe(group_id)}"


@dataclass(frozen=True)
class SecurityGroupState:
    group_id: str
    name: str
    vpc_id: str
    owner_id: str
    tags: dict[str, str] = field(hash=False, compare=False)
    sources: frozenset[Source] = frozenset()
    # Every other inbound rule (other ports and protocols, prefix lists on 4334).
    other_rules: frozenset[Rule] = frozenset()


def find_group(
    client: EC2Client,
    *,
    vpc_id: str | None = None,
    name: str | None = None,
    group_id: str | None = None,
) -> SecurityGroupTypeDef | None:
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
    except ClientError as exc:
        if has_code(
            exc, "InvalidGroup.NotFound", "InvalidGroupId.NotFound", "InvalidGroupId.Malformed"
        ):
            return None
        raise translate(exc, f"ec2 security group {group_id or name}") from exc
    return groups[0] if groups else None


def _is_transactor_rule(perm: IpPermissionOutputTypeDef) -> bool:
    return (
        perm.get("IpProtocol") == "tcp"
        and perm.get("FromPort") == TRANSACTOR_PORT
        and perm.get("ToPort") == TRANSACTOR_PORT
    )


def _sources_in(perm: IpPermissionOutputTypeDef, raw: SecurityGroupTypeDef) -> set[Source]:
    """The CIDR and group sources of one permission; the group's own id becomes SELF, its own
    account is dropped."""
    own_id, owner = raw.get("GroupId"), raw.get("OwnerId")
    found: set[Source] = set()
    for r in perm.get("IpRanges", []):
        found.add(Source("cidr", r["CidrIp"]))
    for r6 in perm.get("Ipv6Ranges", []):
        found.add(Source("cidr6", r6["CidrIpv6"]))
    for pair in perm.get("UserIdGroupPairs", []):
        gid = pair.get("GroupId", "")
        account = pair.get("UserId")
        if account == owner:
            account = None
        found.add(Source("group", SELF if gid == own_id else gid, account))
    return found


def sources_of(raw: SecurityGroupTypeDef) -> frozenset[Source]:
    """The TCP 4334 sources of a described group (CIDRs and groups)."""
    found: set[Source] = set()
    for perm in raw.get("IpPermissions", []):
        if _is_transactor_rule(perm):
            found |= _sources_in(perm, raw)
    return frozenset(found)


def other_rules_of(raw: SecurityGroupTypeDef) -> frozenset[Rule]:
    """Every inbound rule of a described group that `sources_of` does not state."""
    found: set[Rule] = set()
    for perm in raw.get("IpPermissions", []):
        protocol = str(perm.get("IpProtocol", "-1"))
        low, high = perm.get("FromPort"), perm.get("ToPort")
        ports = (low, high) if low is not None and high is not None else None
        prefix_lists = {
            Source("prefix-list", p["PrefixListId"])
            for p in perm.get("PrefixListIds", [])
            if "PrefixListId" in p
        }
        sources = (
            prefix_lists if _is_transactor_rule(perm) else prefix_lists | _sources_in(perm, raw)
        )
        found.update(Rule(protocol, ports, source) for source in sources)
    return frozenset(found)


def state_of(raw: SecurityGroupTypeDef) -> SecurityGroupState:
    return SecurityGroupState(
        group_id=raw["GroupId"],
        name=raw["GroupName"],
        vpc_id=raw.get("VpcId", ""),
        owner_id=raw.get("OwnerId", ""),
        tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
        sources=sources_of(raw),
        other_rules=other_rules_of(raw),
    )


def read_security_group(client: EC2Client, desired: SecurityGroupSpec) -> SecurityGroupState | None:
    """By the id from the file when it still exists, else by name in the VPC. No side effects."""
    raw = None
    if desired.group_id:
        raw = find_group(client, group_id=desired.group_id)
    if raw is None:
        raw = find_group(client, vpc_id=desired.vpc_id, name=desired.name)
    return state_of(raw) if raw else None
