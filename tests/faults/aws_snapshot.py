"""Everything `apply` can create in AWS, as comparable plain data, and an id normaliser.

Used by the fault tests to say "the same end state as an uninterrupted run": resources are keyed by
the names the tool derives (never by AWS-generated ids), and counted where a duplicate could hide
(stacks of one name, instances, launch templates, template objects). AWS-generated ids (vpc-,
subnet-, sg-, i-, lt-) differ between two moto accounts, so texts are compared after `normalise_ids`
renames them by order of first appearance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

ClientFactory = Callable[[str], Any]

_ID = re.compile(r"\b(vpc|subnet|sg|i|lt|ami|igw|rtb|acl)-[0-9a-f]{8,17}\b")
_STACK_ID = re.compile(r"arn:aws:cloudformation:[^\"\s]+?:stack/[^/\"\s]+/[0-9a-f-]{36}")


def normalise_ids(text: str) -> str:
    seen: dict[str, str] = {}

    def rename(m: re.Match[str]) -> str:
        return seen.setdefault(m.group(0), f"{m.group(1)}-<{len(seen) + 1}>")

    return _ID.sub(rename, _STACK_ID.sub("<stack-id>", text))


def _or_none(call: Callable[..., Any], key: str, **params: Any) -> Any:
    """A read that may find nothing (no tags, no policy, no public access block): None."""
    from botocore.exceptions import ClientError

    try:
        return call(**params)[key]
    except ClientError:
        return None


def _policy(doc: Any) -> Any:
    if isinstance(doc, str):
        from urllib.parse import unquote

        return json.loads(unquote(doc))
    return doc


def snapshot(client: ClientFactory) -> dict[str, Any]:
    iam, s3, ssm, ddb, ec2, cfn, asg = (
        client(s) for s in ("iam", "s3", "ssm", "dynamodb", "ec2", "cloudformation", "autoscaling")
    )
    roles: dict[str, Any] = {}
    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        policy_names = iam.list_role_policies(RoleName=name)["PolicyNames"]
        roles[name] = {
            "trust": _policy(role["AssumeRolePolicyDocument"]),
            "tags": sorted(
                (t["Key"], t["Value"]) for t in iam.get_role(RoleName=name)["Role"].get("Tags", [])
            ),
            "policies": {
                p: _policy(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
                for p in policy_names
            },
        }
    profiles = sorted(
        (p["InstanceProfileName"], sorted(r["RoleName"] for r in p["Roles"]))
        for p in iam.list_instance_profiles()["InstanceProfiles"]
    )
    buckets: dict[str, Any] = {}
    for b in s3.list_buckets()["Buckets"]:
        name = b["Name"]
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name).get("Contents", [])]
        tags = _or_none(s3.get_bucket_tagging, "TagSet", Bucket=name) or []
        policy = _or_none(s3.get_bucket_policy, "Policy", Bucket=name)
        buckets[name] = {
            "tags": sorted((t["Key"], t["Value"]) for t in tags),
            "public_access_block": _or_none(
                s3.get_public_access_block, "PublicAccessBlockConfiguration", Bucket=name
            ),
            "encryption": _or_none(
                s3.get_bucket_encryption, "ServerSideEncryptionConfiguration", Bucket=name
            ),
            "policy": json.loads(policy) if policy else None,
            "objects": len(keys),
        }
    parameters = {
        p["Name"]: (
            p["Type"],
            ssm.get_parameter(Name=p["Name"], WithDecryption=True)["Parameter"]["Value"],
        )
        for p in ssm.describe_parameters()["Parameters"]
        if not p["Name"].startswith("/aws/")  # moto's public AMI parameters
    }
    tables = {}
    for t in ddb.list_tables()["TableNames"]:
        desc = ddb.describe_table(TableName=t)["Table"]
        pitr = ddb.describe_continuous_backups(TableName=t)["ContinuousBackupsDescription"]
        tables[t] = {
            "keys": desc["KeySchema"],
            "deletion_protection": desc.get("DeletionProtectionEnabled"),
            "pitr": pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"],
        }
    groups = {}
    for g in ec2.describe_security_groups()["SecurityGroups"]:
        if g["GroupName"] == "default":
            continue
        groups.setdefault(g["GroupName"], []).append(
            {
                "tags": sorted((t["Key"], t["Value"]) for t in g.get("Tags", [])),
                "ingress": sorted(
                    json.dumps(
                        {
                            "ports": [p.get("FromPort"), p.get("ToPort")],
                            "cidrs": sorted(r["CidrIp"] for r in p.get("IpRanges", [])),
                            "groups": len(p.get("UserIdGroupPairs", [])),
                        }
                    )
                    for p in g["IpPermissions"]
                ),
            }
        )
    stacks: dict[str, list[Any]] = {}
    for s in cfn.describe_stacks()["Stacks"]:
        stacks.setdefault(s["StackName"], []).append(
            {
                "status": s["StackStatus"],
                "termination_protection": s.get("EnableTerminationProtection"),
                "tags": sorted((t["Key"], t["Value"]) for t in s.get("Tags", [])),
            }
        )
    auto_scaling = {
        g["AutoScalingGroupName"]: {
            "sizes": (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]),
            "instances": sorted(i["LifecycleState"] for i in g["Instances"]),
        }
        for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]
    }
    running = [
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] in ("pending", "running")
    ]
    # CloudFormation names launch templates with a random suffix: their versions are compared.
    launch_templates = sorted(
        lt["LatestVersionNumber"] for lt in ec2.describe_launch_templates()["LaunchTemplates"]
    )
    return {
        "roles": roles,
        "instance_profiles": profiles,
        "buckets": buckets,
        "parameters": parameters,
        "tables": tables,
        "security_groups": groups,
        "stacks": stacks,
        "auto_scaling_groups": auto_scaling,
        "running_instances": len(running),
        "launch_templates": launch_templates,
    }
