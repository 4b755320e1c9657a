"""What a stack of the generated template needs in moto before it is created: the default VPC's
subnets, a security group, and the transactor role with its instance profile (ensure-cf's and
ensure-transactor's work, done directly)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from datomic_aws import names, policies
from datomic_aws.aws import AwsContext
from datomic_aws.resources import ec2 as ec2r


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnets: list[str]
    group_id: str
    role: str


def stack_prerequisites(ctx: AwsContext, region: str, *, subnets: int, system: str) -> Network:
    ec2 = ctx.client("ec2", region)
    vpc = ec2r.read_vpc(ec2, None)
    assert vpc is not None
    chosen = [s.subnet_id for s in ec2r.default_subnets(ec2, vpc.vpc_id)][:subnets]
    group_id = ec2.create_security_group(
        GroupName=f"datomic-{system}-transactor", Description="x", VpcId=vpc.vpc_id
    )["GroupId"]
    iam = ctx.client("iam", region)
    role = names.transactor_role(system)
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(policies.TRUST_POLICY))
    iam.create_instance_profile(InstanceProfileName=role)
    iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    return Network(vpc.vpc_id, chosen, group_id, role)
