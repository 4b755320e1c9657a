"""ensure-cf's network checks: the VPC and the subnets the transactors run in.

Owns deciding, from EC2's answers, which VPC and subnets the file means (the region's default VPC
and its default subnets when the file names none, written back), and the problems of the file's
own (a VPC or subnet that does not exist, a subnet outside the VPC or in a zone that does not offer
the instance type). Reads only, through resources/ec2.py; records what it finds in the `CfPlan`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datomic_aws.app.cf_plan import CfPlan
from datomic_aws.changes import noop
from datomic_aws.config.cf import CfSpec
from datomic_aws.errors import Problem
from datomic_aws.resources import ec2 as ec2r

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


def _check_named_subnets(
    found: dict[str, ec2r.Subnet],
    spec: CfSpec,
    vpc: ec2r.Vpc,
    zones: frozenset[str] | None,
    plan: CfPlan,
) -> None:
    key = "aws-subnet-ids"
    for subnet_id in spec.subnet_ids:
        subnet = found.get(subnet_id)
        if subnet is None:
            plan.problems.append(
                Problem.at(spec, key, f"{key}: subnet {subnet_id} does not exist in {spec.region}")
            )
        elif subnet.vpc_id != vpc.vpc_id:
            which = "aws-vpc-id" if spec.vpc_id else "the default VPC"
            plan.problems.append(
                Problem.at(
                    spec,
                    key,
                    f"{key}: subnet {subnet_id} is in {subnet.vpc_id}, not in {which} {vpc.vpc_id}",
                    f"list subnets of {vpc.vpc_id}, or set aws-vpc-id={subnet.vpc_id}",
                )
            )
        elif zones is not None and subnet.availability_zone not in zones:
            plan.problems.append(
                Problem.at(
                    spec,
                    key,
                    f"{key}: subnet {subnet_id} is in {subnet.availability_zone}, which does not"
                    f" offer {spec.instance_type}",
                    f"list subnets in zones that offer it ({', '.join(sorted(zones))}),"
                    " or choose another aws-instance-type",
                )
            )


def _default_subnets(
    client: EC2Client, spec: CfSpec, vpc: ec2r.Vpc, zones: frozenset[str] | None, plan: CfPlan
) -> list[str]:
    subnets = ec2r.default_subnets(client, vpc.vpc_id)
    # Reference §11: a type may be missing in some zones of a region; a group spread over such a
    # zone's subnet fails there, so that subnet is left out (and the run says so).
    kept = [s for s in subnets if zones is None or s.availability_zone in zones]
    for subnet in subnets:
        if subnet not in kept:
            plan.warnings.append(
                f"default subnet {subnet.subnet_id} left out: {spec.instance_type} is not offered"
                f" in {subnet.availability_zone}"
            )
    if kept:
        plan.updates["aws-subnet-ids"] = ",".join(s.subnet_id for s in kept)
        return [s.subnet_id for s in kept]
    what = f"{vpc.vpc_id} has no default subnets"
    hint = "list the subnets for the transactors in aws-subnet-ids (one per zone you want)"
    in_zones = f" in a zone offering {spec.instance_type}" if subnets else ""
    plan.problems.append(Problem.at(spec, "aws-subnet-ids", what + in_zones, hint))
    return []


def _check_subnets(
    client: EC2Client,
    spec: CfSpec,
    vpc: ec2r.Vpc,
    found: dict[str, ec2r.Subnet] | None,
    zones: frozenset[str] | None,
    plan: CfPlan,
) -> list[str]:
    """The file's subnets (`found`: those EC2 knows), each in the VPC and in a zone offering the
    instance type; else the VPC's default subnets in such zones (written back). `zones` None: the
    type's zones are unknown."""
    if found is not None:
        _check_named_subnets(found, spec, vpc, zones, plan)
        return list(spec.subnet_ids)
    return _default_subnets(client, spec, vpc, zones, plan)


def _vpc_of_subnets(spec: CfSpec, found: dict[str, ec2r.Subnet]) -> ec2r.Vpc | None:
    """The file's VPC when every subnet it lists exists in it: no DescribeVpcs then.

    Reference: DeleteVpc refuses a VPC that still has subnets (DependencyViolation, "has
    dependencies and cannot be deleted"), so a subnet found in a VPC proves the VPC exists. A
    default subnet exists only in the default VPC; without one, whether the VPC is the default
    one is not known (only the plan's wording depends on it)."""
    subnets = [found.get(s) for s in spec.subnet_ids]
    if not spec.vpc_id or not subnets or any(s is None or s.vpc_id != spec.vpc_id for s in subnets):
        return None
    return ec2r.Vpc(spec.vpc_id, any(s.default_for_az for s in subnets if s is not None))


def check_network(
    client: EC2Client, spec: CfSpec, info: ec2r.InstanceType | None, plan: CfPlan
) -> ec2r.Vpc | None:
    found = ec2r.read_subnets(client, spec.subnet_ids) if spec.subnet_ids else None
    vpc = _vpc_of_subnets(spec, found) if found is not None else None
    if vpc is None:
        vpc = ec2r.read_vpc(client, spec.vpc_id)
    if vpc is None:
        if spec.vpc_id:
            plan.problems.append(
                Problem.at(
                    spec,
                    "aws-vpc-id",
                    f"aws-vpc-id {spec.vpc_id} does not exist in {spec.region}",
                    "leave it blank to use the region's default VPC",
                )
            )
        else:
            plan.problems.append(
                Problem.at(
                    spec,
                    "aws-vpc-id",
                    f"{spec.region} has no default VPC",
                    "set aws-vpc-id (and aws-subnet-ids) to the VPC the transactor runs in",
                )
            )
        return None
    if not spec.vpc_id:
        plan.updates["aws-vpc-id"] = vpc.vpc_id
    subnets = _check_subnets(client, spec, vpc, found, info.zones if info else None, plan)
    plan.network = noop(
        f"ec2 vpc {vpc.vpc_id}",
        f"{'default VPC, ' if vpc.is_default else ''}subnets " + ", ".join(subnets),
    )
    return vpc
