"""The transactor group as the replacement reads it: its sizes, tags, launch template setting and
instances (with the role each publishes), the version a setting means, and which instances are
outdated. Also the one read a roll starts from (`read_state`) and pointing the group at a version
(`ensure_group_version`).

Owns the constants shared by the planner and the executor (the group tags a roll writes, the
lifecycle states). Reads only, except `ensure_group_version`; never prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from datomic_aws import names
from datomic_aws.aws_errors import translating
from datomic_aws.errors import ReplacementError
from datomic_aws.names import ROLE_ACTIVE, ROLE_STANDBY, TAG_ROLE

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_autoscaling.type_defs import AutoScalingGroupTypeDef
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef

Strategy = Literal["surge", "terminate"]
STRATEGIES: tuple[Strategy, ...] = ("surge", "terminate")

# Group tag holding the MaxSize from before a temporary raise, so that a rerun after a kill can
# lower it back (the group itself no longer says what it was). Not propagated to instances.
MAX_TAG = names.TAG_MAX_BEFORE_REPLACE
# The same for the MinSize lowered so that the active can be terminated with a decrement: AWS
# refuses a decrement that would take DesiredCapacity below MinSize (ValidationError "Currently,
# desiredSize equals minSize (N). Terminating instance without replacement will violate group's
# min size constraint...").
MIN_TAG = names.TAG_MIN_BEFORE_REPLACE
# Written before this tool suspends AZRebalance, removed after it resumed it: a rerun after a kill
# resumes it, and a process the operator suspended (no tag) is never resumed by us.
AZ_TAG = names.TAG_SUSPENDED_FOR_REPLACE
AZ_REBALANCE = "AZRebalance"

ROLES_UNKNOWN_WARNING = (
    "no instance of the group publishes its Datomic role (instance tag datomic:role): the roles "
    "were not published, so the instances were replaced newest first as if the oldest were the "
    "active, and the roll may cost more than one failover"
)

TERMINATE_WARNING = (
    "strategy 'terminate' stops each old instance before its replacement is InService: "
    "with a group of 1 the transactor is down for the whole boot of the new instance"
)

# Lifecycle states (AutoScalingInstanceDetails.LifecycleState). An instance on its way out no
# longer serves and no longer counts as a member of the group for our arithmetic.
LEAVING_PREFIXES = ("Terminating", "Terminated", "Detaching", "Detached")
_PENDING_PREFIX = "Pending"  # Pending, Pending:Wait (launch lifecycle hook), Pending:Proceed
# Retryable "come back later" answers of Auto Scaling mutations (another scaling activity, or a
# concurrent update of the group); botocore's standard retry mode does not retry these codes.
BUSY_CODES = ("ScalingActivityInProgress", "ResourceContention")


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    instance_type: str
    availability_zone: str
    lifecycle_state: str
    health_status: str
    launch_template_id: str | None
    launch_template_version: str | None  # as AWS reports it for this instance
    # From EC2 (with_roles): the role the instance publishes (names.TAG_ROLE; None = not
    # published yet, or not a known value) and its launch time (epoch seconds).
    role: str | None = None
    launch_time: float | None = None

    @property
    def leaving(self) -> bool:
        return self.lifecycle_state.startswith(LEAVING_PREFIXES)

    @property
    def pending(self) -> bool:
        """Launched but not yet serving: Pending, or Pending:Wait while the lifecycle hook waits."""
        return self.lifecycle_state.startswith(_PENDING_PREFIX)

    @property
    def in_service(self) -> bool:
        return self.lifecycle_state == "InService" and self.health_status == "Healthy"


@dataclass(frozen=True)
class GroupInfo:
    name: str
    min_size: int
    max_size: int
    desired_capacity: int
    launch_template_id: str | None
    launch_template_name: str | None
    launch_template_version: str | None  # what the group is set to: a number, $Latest or $Default
    instances: tuple[InstanceInfo, ...]
    tags: tuple[tuple[str, str], ...] = ()
    suspended_processes: tuple[str, ...] = ()

    @property
    def members(self) -> list[InstanceInfo]:
        """Instances that are in the group and not on their way out."""
        return [i for i in self.instances if not i.leaving]

    @property
    def in_service_count(self) -> int:
        return sum(1 for i in self.instances if i.in_service)

    def tag(self, key: str) -> str | None:
        return dict(self.tags).get(key)

    def find(self, instance_id: str) -> InstanceInfo | None:
        return next((i for i in self.instances if i.instance_id == instance_id), None)

    @property
    def roles_known(self) -> bool:
        """Whether any member publishes a role (else: an older boot script, or still booting)."""
        return any(i.role for i in self.members)

    def with_role(self, role: str) -> list[InstanceInfo]:
        return [i for i in self.members if i.role == role]


def _resource(group: str) -> str:
    return f"autoscaling group {group}"


# --- reading ------------------------------------------------------------------------------------


def read_group(asg: AutoScalingClient, name: str) -> GroupInfo | None:
    """The group's sizes, launch template setting and instances; None when it does not exist."""
    with translating(_resource(name)):
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return _group_info(name, groups[0]) if groups else None


def _group_info(name: str, raw: AutoScalingGroupTypeDef) -> GroupInfo:
    mixed = raw.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {})
    lt = raw.get("LaunchTemplate") or mixed.get("LaunchTemplateSpecification") or {}
    instances = tuple(
        InstanceInfo(
            instance_id=i["InstanceId"],
            instance_type=i.get("InstanceType", ""),
            availability_zone=i.get("AvailabilityZone", ""),
            lifecycle_state=i.get("LifecycleState", ""),
            health_status=i.get("HealthStatus", ""),
            launch_template_id=i.get("LaunchTemplate", {}).get("LaunchTemplateId"),
            launch_template_version=_str_or_none(i.get("LaunchTemplate", {}).get("Version")),
        )
        for i in raw.get("Instances", [])
    )
    return GroupInfo(
        name=name,
        min_size=int(raw["MinSize"]),
        max_size=int(raw["MaxSize"]),
        desired_capacity=int(raw["DesiredCapacity"]),
        launch_template_id=lt.get("LaunchTemplateId"),
        launch_template_name=lt.get("LaunchTemplateName"),
        launch_template_version=_str_or_none(lt.get("Version")),
        instances=instances,
        tags=tuple(sorted((t.get("Key", ""), t.get("Value", "")) for t in raw.get("Tags", []))),
        suspended_processes=tuple(
            sorted(
                p["ProcessName"] for p in raw.get("SuspendedProcesses", []) if "ProcessName" in p
            )
        ),
    )


def instance_details(
    ec2: EC2Client, instance_ids: Iterable[str], resource: str = ""
) -> dict[str, tuple[str | None, float | None]]:
    """Each instance's published role and launch time, in one DescribeInstances.

    By filter, not by InstanceIds: a just-launched instance may not be visible to EC2 yet, and
    InstanceIds would fail the whole call with InvalidInstanceID.NotFound.
    """
    ids = sorted(set(instance_ids))
    if not ids:
        return {}
    out: dict[str, tuple[str | None, float | None]] = {}
    filters: list[FilterTypeDef] = [{"Name": "instance-id", "Values": ids}]
    token = ""
    with translating(resource or f"ec2 instances {', '.join(ids)}"):
        while True:
            page = (
                ec2.describe_instances(Filters=filters, NextToken=token)
                if token
                else ec2.describe_instances(Filters=filters)
            )
            for r in page.get("Reservations", []):
                for i in r.get("Instances", []):
                    tags = {t.get("Key"): t.get("Value") for t in i.get("Tags", [])}
                    role = tags.get(TAG_ROLE)
                    launched = i.get("LaunchTime")
                    out[i["InstanceId"]] = (
                        role if role in (ROLE_ACTIVE, ROLE_STANDBY) else None,
                        launched.timestamp() if launched is not None else None,
                    )
            token = page.get("NextToken", "")
            if not token:
                return out


def with_roles(ec2: EC2Client, group: GroupInfo) -> GroupInfo:
    """The group with each instance's role and launch time filled in from EC2."""
    found = instance_details(ec2, [i.instance_id for i in group.instances], _resource(group.name))
    return dataclasses.replace(
        group,
        instances=tuple(
            dataclasses.replace(
                i,
                role=found.get(i.instance_id, (None, None))[0],
                launch_time=found.get(i.instance_id, (None, None))[1],
            )
            for i in group.instances
        ),
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def resolve_version(ec2: EC2Client, launch_template_id: str, version: str | None) -> str:
    """The version number ('3') that a version setting ('$Latest', '$Default', '3') means now.

    A missing setting means `$Default`, as in Auto Scaling.
    """
    with translating(f"launch template {launch_template_id}"):
        found = ec2.describe_launch_templates(LaunchTemplateIds=[launch_template_id])
    templates = found.get("LaunchTemplates", [])
    if not templates:
        raise ReplacementError(
            "launch template not found",
            f"launch template {launch_template_id}",
            "rerun update-stack so the stack recreates it",
        )
    t = templates[0]
    spec = version or "$Default"
    if spec == "$Latest":
        return str(t["LatestVersionNumber"])
    if spec == "$Default":
        return str(t["DefaultVersionNumber"])
    if not spec.isdigit() or not 1 <= int(spec) <= int(t["LatestVersionNumber"]):
        raise ReplacementError(
            f"launch template version {spec!r} does not exist",
            f"launch template {launch_template_id}",
            "check the template's LaunchTemplate version",
        )
    return str(int(spec))


def is_current(instance: InstanceInfo, launch_template_id: str, version_number: str) -> bool:
    """Whether the instance reports the group's launch template at the resolved version number.

    An instance without a launch template (launch configuration, attached by hand) or reporting a
    symbolic version we cannot pin to a number is not current: replacing it is always safe.
    """
    return (
        instance.launch_template_id == launch_template_id
        and instance.launch_template_version == version_number
    )


def outdated_instances(group: GroupInfo, version_number: str) -> list[InstanceInfo]:
    if group.launch_template_id is None:
        return []
    return [i for i in group.members if not is_current(i, group.launch_template_id, version_number)]


def newest_first(instances: Sequence[InstanceInfo]) -> list[InstanceInfo]:
    return sorted(instances, key=lambda i: (i.launch_time or 0.0, i.instance_id), reverse=True)


def current(instance: InstanceInfo, lt_id: str | None, version: str | None) -> bool:
    """is_current, where an unknown template or version (not created yet) is never current."""
    return lt_id is not None and version is not None and is_current(instance, lt_id, version)


def successor(
    group: GroupInfo, active_id: str, lt_id: str | None, version: str | None
) -> InstanceInfo | None:
    """A current-version standby ready to take over: InService (its launch hook passed, the
    transactor answers /health) and not reporting active. The longest-ready one first."""
    ready = [
        i
        for i in group.members
        if i.instance_id != active_id
        and i.in_service
        and current(i, lt_id, version)
        and i.role != ROLE_ACTIVE
    ]
    ready.sort(key=lambda i: (i.role != ROLE_STANDBY, i.launch_time or 0.0, i.instance_id))
    return ready[0] if ready else None


# --- the one read a roll starts from -----------------------------------------------------------


@dataclass(frozen=True)
class RollState:
    """What the planner decides from: the group with its instances' roles, and the version
    number the roll brings them to (None: a version the pending stack update creates).
    `declared` is the stack's setting when the group must be pointed at it (else None)."""

    group: GroupInfo
    version: str | None
    declared: str | None = None


def read_state(
    asg: AutoScalingClient,
    ec2: EC2Client,
    group_name: str,
    declared: str | None = None,
    described: AutoScalingGroupTypeDef | None = None,
) -> RollState | None:
    """One DescribeAutoScalingGroups, one DescribeInstances and, unless the group and every
    instance are on the version number `declared` names, one DescribeLaunchTemplates.

    `declared` is the version the stack declares ('3', '$Latest'); without it, the version the
    group is set to is the one the roll brings. None when the group does not exist. `described`
    is the group as this run's DescribeAutoScalingGroups returned it already: not read again.
    """
    group = _group_info(group_name, described) if described else read_group(asg, group_name)
    if group is None:
        return None
    group = with_roles(ec2, group)
    if group.launch_template_id is None:
        if declared is not None:
            raise ReplacementError(
                "the group has no launch template (a launch configuration?)",
                _resource(group.name),
                "recreate it from a template made by create-cf-template",
            )
        return RollState(group, None)
    setting = declared if declared is not None else group.launch_template_version
    if _settled_on(group, setting):
        # A number the group is set to and every instance runs: it exists (the group was
        # accepted with it, its instances launched from it), and it is what `setting` means.
        return RollState(group, setting, declared)
    return RollState(group, resolve_version(ec2, group.launch_template_id, setting), declared)


def _settled_on(group: GroupInfo, setting: str | None) -> bool:
    lt = group.launch_template_id
    return (
        lt is not None
        and setting is not None
        and setting.isdigit()
        and group.launch_template_version == setting
        and all(is_current(i, lt, setting) for i in group.instances)
    )


def pending_state(asg: AutoScalingClient, ec2: EC2Client, group_name: str) -> RollState | None:
    """For a dry run whose stack update changes the launch template: the version it would
    create does not exist yet, so every member is outdated (no DescribeLaunchTemplates)."""
    group = read_group(asg, group_name)
    return None if group is None else RollState(with_roles(ec2, group), None)
