"""Reading a stack: its status, tags, outputs and parameters, and the template it was deployed with.

Owns `read_stack` (None for a stack that does not exist, recognised by CloudFormation's one
documented message text), the deployed template and its comparison with a local one, the system
our template declares in its Metadata, and the recognition of a stack made by Datomic's
`bin/datomic create-cf-stack` (an Auto Scaling group on a launch configuration, reference §5).

It must not write to AWS, wait, print or decide what to do with the stack (status.py decides).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from datomic_aws.aws_errors import stack_missing
from datomic_aws.stack.status import StackState, classify

if TYPE_CHECKING:
    from mypy_boto3_autoscaling.type_defs import AutoScalingGroupTypeDef
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.type_defs import StackResourceTypeDef


@dataclass(frozen=True)
class StackInfo:
    name: str
    stack_id: str
    status: str
    state: StackState
    reason: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    termination_protection: bool = False
    outputs: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)
    # What this run read of the stack besides DescribeStacks (apply's ownership check), so that
    # the later steps of the same run do not read it again: its resources (DescribeStackResources)
    # and its Auto Scaling groups by name (DescribeAutoScalingGroups). None: not read.
    resources: tuple[StackResourceTypeDef, ...] | None = field(default=None, compare=False)
    groups: Mapping[str, AutoScalingGroupTypeDef] | None = field(default=None, compare=False)
    # LastUpdatedTime, else CreationTime: moves with every operation executed on the stack.
    version: str = field(default="", compare=False)
    # The template the stack was last deployed with (GetTemplate), when this run read it.
    deployed: Deployed | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Deployed:
    """A deployed template as read (`doc` None: the stack has none, as in REVIEW_IN_PROGRESS)."""

    doc: Any


def named_groups(deployed: Any) -> frozenset[str] | None:
    """The names of the Auto Scaling groups a deployed template declares, when it names every one
    of them (ours does); None when one has no literal name (Datomic's LaunchGroup): its physical
    name is then only in the stack's resources. A settled stack has exactly the template's
    resources, so for a template that names its groups, the names are the stack's groups."""
    if not isinstance(deployed, Mapping):
        return None
    found: set[str] = set()
    for body in (deployed.get("Resources") or {}).values():
        if isinstance(body, Mapping) and body.get("Type") == _ASG:
            name = (body.get("Properties") or {}).get("AutoScalingGroupName")
            if not isinstance(name, str):
                return None
            found.add(name)
    return frozenset(found)


def read_stack(cfn: CloudFormationClient, name: str) -> StackInfo | None:
    """The stack by name or id; None when there is none (a deleted stack read by id is DELETED)."""
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if stack_missing(exc):
            return None
        raise
    if not stacks:
        return None
    s = stacks[0]
    status = str(s["StackStatus"])
    return StackInfo(
        name=s["StackName"],
        stack_id=s.get("StackId", name),
        status=status,
        state=classify(status),
        reason=s.get("StackStatusReason", ""),
        tags={t["Key"]: t["Value"] for t in s.get("Tags", [])},
        termination_protection=bool(s.get("EnableTerminationProtection", False)),
        outputs={
            o["OutputKey"]: o.get("OutputValue", "")
            for o in s.get("Outputs", [])
            if "OutputKey" in o
        },
        parameters={
            p["ParameterKey"]: p.get("ParameterValue", "")
            for p in s.get("Parameters", [])
            if "ParameterKey" in p
        },
        version=str(s.get("LastUpdatedTime") or s.get("CreationTime") or ""),
    )


def deployed_template(cfn: CloudFormationClient, stack: str) -> Any:
    """The template the stack was last deployed with, JSON-parsed (None if it is not JSON)."""
    # botocore already decodes a JSON TemplateBody of GetTemplate into a dict; YAML stays a str.
    body: Any = cfn.get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return body


def template_matches(
    cfn: CloudFormationClient, stack: str, template: str | Mapping[str, Any]
) -> bool:
    """Whether the deployed template equals the local JSON (semantically, not byte for byte);
    `template` is its text or the document already parsed."""
    local = json.loads(template) if isinstance(template, str) else template
    return bool(deployed_template(cfn, stack) == local)


def _declared_system(doc: Any) -> str | None:
    """The system our template says it was built for (Metadata.DatomicAws.System)."""
    meta = doc.get("Metadata") if isinstance(doc, dict) else None
    ours = meta.get("DatomicAws") if isinstance(meta, dict) else None
    system = ours.get("System") if isinstance(ours, dict) else None
    return str(system) if system else None


# --------------------------------------------------------------------------------------------
# Stacks made by Datomic's bin/datomic create-cf-stack (reference §5)

_ASG = "AWS::AutoScaling::AutoScalingGroup"
_LAUNCH_CONFIGURATION = "AWS::AutoScaling::LaunchConfiguration"


@dataclass(frozen=True)
class Legacy:
    """A group on a launch configuration, as Datomic's template made it (LaunchGroup on
    LaunchConfig); `kept` is every deployed resource our template does not have."""

    group: str
    config: str
    kept: tuple[str, ...]


def datomic_era(deployed: Any, ours: Mapping[str, Any] | None = None) -> Legacy | None:
    """The LaunchConfiguration-based group of a deployed template, or None.

    Datomic's generated template (reference §5) is an AutoScalingGroup `LaunchGroup` whose
    LaunchConfigurationName is a Ref to the LaunchConfiguration `LaunchConfig`; any group on a
    launch configuration is recognised the same way.
    """
    resources = deployed.get("Resources") if isinstance(deployed, dict) else None
    if not isinstance(resources, dict):
        return None
    for logical, body in sorted(resources.items()):
        if not isinstance(body, dict) or body.get("Type") != _ASG:
            continue
        config = (body.get("Properties") or {}).get("LaunchConfigurationName")
        target = config.get("Ref") if isinstance(config, dict) else None
        if isinstance(target, str) and (resources.get(target) or {}).get("Type") == (
            _LAUNCH_CONFIGURATION
        ):
            mine = (ours or {}).get("Resources", {})
            kept = tuple(sorted(k for k in resources if k not in mine))
            return Legacy(logical, target, kept)
    return None
