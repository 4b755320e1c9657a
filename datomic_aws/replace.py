"""Instance replacement for update-stack: bring every instance of the transactor group onto the
launch template version the stack declares, without a transactor gap.

Owns: reading the group (`read_group`), pointing the group at the declared launch template version
(`ensure_group_version`), and the two replacement strategies (`replace_outdated`): `surge` (launch
the replacement first, then terminate the old instance with a decrement; the number of InService
instances never drops below the group size) and `terminate` (Datomic's old way: terminate, wait for
the replacement; downtime for a group of one).

It must not print (progress goes through the `on_progress` callback), must not build boto3 clients
(they are injected), must not touch the stack, the launch template or any data resource, and never
uses instance refresh (moto lacks it and it cannot guarantee "new before old" for a group of one).

Crash convergence: every step is decided from what AWS reports now, never from what this process
remembers, so a rerun after a kill at any point finishes the job. The only thing a rerun could not
know from the group itself, the MaxSize it had before we raised it, is kept in a group tag
(`MAX_TAG`) written before the raise and removed after the restore. The group size the stack
declares (`target_size`) is the truth, not whatever DesiredCapacity a killed run left behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from datomic_aws.aws import translating
from datomic_aws.changes import Action, Change
from datomic_aws.errors import AwsCallError, Interrupted, ReplacementError, WaitTimeout

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client
else:  # the stubs are a dev dependency only
    AutoScalingClient = Any
    EC2Client = Any

Strategy = Literal["surge", "terminate"]
STRATEGIES: tuple[Strategy, ...] = ("surge", "terminate")

# Group tag holding the MaxSize from before a temporary raise, so that a rerun after a kill can
# lower it back (the group itself no longer says what it was). Not propagated to instances.
MAX_TAG = "datomic-aws:max-size-before-replace"

TERMINATE_WARNING = (
    "strategy 'terminate' stops each old instance before its replacement is InService: "
    "with a group of 1 the transactor is down for the whole boot of the new instance"
)

# Lifecycle states (AutoScalingInstanceDetails.LifecycleState). An instance on its way out no
# longer serves and no longer counts as a member of the group for our arithmetic.
_LEAVING_PREFIXES = ("Terminating", "Terminated", "Detaching", "Detached")
_PENDING_PREFIX = "Pending"  # Pending, Pending:Wait (launch lifecycle hook), Pending:Proceed
# Retryable "come back later" answers of Auto Scaling mutations (another scaling activity, or a
# concurrent update of the group); botocore's standard retry mode does not retry these codes.
_BUSY_CODES = ("ScalingActivityInProgress", "ResourceContention")


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    instance_type: str
    availability_zone: str
    lifecycle_state: str
    health_status: str
    launch_template_id: str | None
    launch_template_version: str | None  # as AWS reports it for this instance

    @property
    def leaving(self) -> bool:
        return self.lifecycle_state.startswith(_LEAVING_PREFIXES)

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


def _resource(group: str) -> str:
    return f"autoscaling group {group}"


def _instance_resource(instance_id: str, group: str) -> str:
    return f"ec2 instance {instance_id} ({group})"


# --- reading ------------------------------------------------------------------------------------


def read_group(asg: AutoScalingClient, name: str) -> GroupInfo | None:
    """The group's sizes, launch template setting and instances; None when it does not exist."""
    with translating(_resource(name)):
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not groups:
        return None
    raw: Any = groups[0]
    lt = (
        raw.get("LaunchTemplate")
        or (
            (raw.get("MixedInstancesPolicy") or {})
            .get("LaunchTemplate", {})
            .get("LaunchTemplateSpecification")
        )
        or {}
    )
    instances = tuple(
        InstanceInfo(
            instance_id=i["InstanceId"],
            instance_type=i.get("InstanceType", ""),
            availability_zone=i.get("AvailabilityZone", ""),
            lifecycle_state=i.get("LifecycleState", ""),
            health_status=i.get("HealthStatus", ""),
            launch_template_id=(i.get("LaunchTemplate") or {}).get("LaunchTemplateId"),
            launch_template_version=_str_or_none((i.get("LaunchTemplate") or {}).get("Version")),
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
        tags=tuple(sorted((t["Key"], t.get("Value", "")) for t in raw.get("Tags", []))),
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


# --- the group's launch template version ------------------------------------------------------


def ensure_group_version(
    asg: AutoScalingClient,
    ec2: EC2Client,
    group: GroupInfo,
    declared_version: str,
    *,
    dry_run: bool,
) -> Change:
    """Point the group at the launch template version the stack declares.

    CloudFormation moves the group itself on a stack update; finding it elsewhere means drift
    (someone changed it, or moto, which never moves it). The group is pinned to the resolved
    version *number*, never to `$Latest`: instances then report a number we can compare, and a
    later template version cannot start rolling the group behind the stack's back.
    """
    resource = _resource(group.name)
    if group.launch_template_id is None:
        raise ReplacementError(
            "the group has no launch template (a launch configuration?)",
            resource,
            "recreate it from a template made by create-cf-template",
        )
    wanted = resolve_version(ec2, group.launch_template_id, declared_version)
    if group.launch_template_version == wanted:
        return Change(resource, Action.NOOP, (f"launch template version {wanted}",))
    detail = (
        f"launch template {group.launch_template_id} version "
        f"{group.launch_template_version or '$Default'} -> {wanted} "
        f"(drift: the stack declares {declared_version}"
        + (f" = {wanted}" if declared_version != wanted else "")
        + ")"
    )
    if not dry_run:
        with translating(resource):
            asg.update_auto_scaling_group(
                AutoScalingGroupName=group.name,
                LaunchTemplate={"LaunchTemplateId": group.launch_template_id, "Version": wanted},
            )
    return Change(resource, Action.UPDATE, (detail,))


# --- replacement ----------------------------------------------------------------------------


class _Replacer:
    """One replace_outdated run. State lives in AWS; the fields below are only for messages."""

    def __init__(
        self,
        asg: AutoScalingClient,
        ec2: EC2Client,
        group_name: str,
        *,
        target_size: int,
        timeout: float,
        poll_interval: float,
        on_progress: Callable[[str], None],
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self.asg = asg
        self.ec2 = ec2
        self.name = group_name
        self.target = target_size
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.progress = on_progress
        self.sleep = sleep
        self.clock = clock
        self.resource = _resource(group_name)
        self.doing = "reading the group"
        self.version: str | None = None  # the resolved version number, once known
        self.changes: list[Change] = []

    # -- plumbing

    def read(self) -> GroupInfo:
        group = read_group(self.asg, self.name)
        if group is None:
            raise ReplacementError(
                "the Auto Scaling group does not exist",
                self.resource,
                "check the stack's status and resources, then rerun update-stack",
            )
        return group

    def mutate(self, call: Callable[..., Any], **params: Any) -> None:
        """A group mutation, retried while Auto Scaling says another activity is in progress."""
        deadline = self.clock() + self.timeout
        while True:
            try:
                with translating(self.resource):
                    call(**params)
                return
            except AwsCallError as exc:
                if exc.code not in _BUSY_CODES or self.clock() >= deadline:
                    raise
                self.progress(f"{self.name}: {exc.code}; retrying")
                self.sleep(self.poll_interval)

    def wait(
        self,
        what: str,
        done: Callable[[GroupInfo], bool],
        detail: Callable[[GroupInfo], str] | None = None,
    ) -> GroupInfo:
        """Poll the group until `done` (which may raise ReplacementError); bounded by timeout.

        `detail` names, on timeout, what exactly was still missing (the instance waited for).
        """
        deadline = self.clock() + self.timeout
        last = ""
        while True:
            group = self.read()
            if done(group):
                return group
            state = ", ".join(
                f"{i.instance_id} {i.lifecycle_state}/{i.health_status}" for i in group.instances
            )
            if state != last:
                self.progress(f"{self.name}: waiting for {what} [{state or 'no instances'}]")
                last = state
            remaining = deadline - self.clock()
            if remaining <= 0:
                extra = f" ({detail(group)})" if detail else ""
                raise WaitTimeout(
                    f"timed out after {self.timeout:g}s waiting for {what}{extra}",
                    self.resource,
                    "the group's sizes were restored; check the instance (lifecycle hook, "
                    "console output), then rerun update-stack to finish the replacement",
                )
            self.sleep(min(self.poll_interval, remaining))

    def launch_times(self, instances: Sequence[InstanceInfo]) -> dict[str, float]:
        if len(instances) < 2:
            return {}
        try:
            with translating(self.resource):
                pages = self.ec2.describe_instances(InstanceIds=[i.instance_id for i in instances])[
                    "Reservations"
                ]
        except AwsCallError as exc:
            # A just-launched instance may not be visible to EC2 yet; order by id instead.
            if exc.code == "InvalidInstanceID.NotFound":
                return {}
            raise
        return {
            i["InstanceId"]: i["LaunchTime"].timestamp()
            for r in pages
            for i in r.get("Instances", [])
            if "LaunchTime" in i
        }

    def newest_first(self, instances: Sequence[InstanceInfo]) -> list[InstanceInfo]:
        # Which old instance goes first: the most recently launched. In a Datomic HA pair the
        # longest-running transactor is most likely the active one; replacing the standbys first
        # means the active is replaced last, so the whole roll costs one failover, not two.
        times = self.launch_times(instances)
        return sorted(
            instances, key=lambda i: (times.get(i.instance_id, 0.0), i.instance_id), reverse=True
        )

    def terminate(self, instance_id: str, *, decrement: bool) -> None:
        try:
            self.mutate(
                self.asg.terminate_instance_in_auto_scaling_group,
                InstanceId=instance_id,
                ShouldDecrementDesiredCapacity=decrement,
            )
        except AwsCallError as exc:
            # Already gone (a previous run, or Auto Scaling itself) is the goal, not an error.
            # ValidationError alone is too broad a code, so confirm against the group.
            if exc.code == "ValidationError":
                found = self.read().find(instance_id)
                if found is None or found.leaving:
                    return
            raise

    def wait_gone(self, instance_id: str) -> GroupInfo:
        def gone(g: GroupInfo) -> bool:
            found = g.find(instance_id)
            return found is None or found.lifecycle_state == "Terminated"

        return self.wait(f"{instance_id} to terminate", gone)

    @staticmethod
    def settled(group: GroupInfo, version: str, lt_id: str) -> set[str]:
        """Instances that are not replacements in flight: serving, or outdated. Every other one
        (new, or current but not yet serving, e.g. launched by a run that was killed) is
        watched by check_replacements."""
        return {
            i.instance_id
            for i in group.instances
            if i.in_service or not is_current(i, lt_id, version)
        }

    def check_replacements(self, g: GroupInfo, before: set[str], version: str, lt_id: str) -> None:
        """Instances outside `before` (see settled) are the replacements: one that leaves or
        turns unhealthy before serving fails the replacement, and one that serves another
        version means the group launches the wrong one (replacing again would loop)."""
        for i in g.instances:
            if i.instance_id in before:
                continue
            if i.leaving or (i.health_status and i.health_status != "Healthy"):
                raise ReplacementError(
                    f"replacement instance {i.instance_id} went {i.lifecycle_state}/"
                    f"{i.health_status} before it was InService",
                    self.resource,
                    "check its console output and the transactor log; rerun update-stack",
                )
            if i.in_service and not is_current(i, lt_id, version):
                raise ReplacementError(
                    f"replacement instance {i.instance_id} runs launch template version "
                    f"{i.launch_template_version}, not {version}",
                    self.resource,
                    "the group launches another version than it is set to; rerun update-stack",
                )

    @staticmethod
    def _new_instances(before: set[str]) -> Callable[[GroupInfo], str]:
        def describe(g: GroupInfo) -> str:
            new = [i for i in g.members if i.instance_id not in before]
            if not new:
                return "no replacement instance has appeared"
            return ", ".join(f"{i.instance_id} is {i.lifecycle_state}" for i in new)

        return describe

    def wait_serving(
        self, victim: InstanceInfo, before: set[str], version: str, lt_id: str
    ) -> GroupInfo:
        """Wait until, without `victim`, at least target instances are InService."""
        vid = victim.instance_id

        def done(g: GroupInfo) -> bool:
            self.check_replacements(g, before, version, lt_id)
            serving = [i for i in g.instances if i.in_service and i.instance_id != vid]
            return len(serving) >= self.target

        return self.wait(
            f"a replacement for {vid} to be InService", done, self._new_instances(before)
        )

    # -- sizes

    def set_desired(self, group: GroupInfo, desired: int) -> None:
        if group.max_size < desired:
            if group.tag(MAX_TAG) is None:
                # Written before the raise so a kill in between still lets a rerun lower it.
                self.mutate(
                    self.asg.create_or_update_tags,
                    Tags=[
                        {
                            "ResourceId": self.name,
                            "ResourceType": "auto-scaling-group",
                            "Key": MAX_TAG,
                            "Value": str(group.max_size),
                            "PropagateAtLaunch": False,
                        }
                    ],
                )
            self.progress(f"{self.name}: raising MaxSize {group.max_size} -> {desired} for now")
            self.mutate(
                self.asg.update_auto_scaling_group,
                AutoScalingGroupName=self.name,
                MaxSize=desired,
                DesiredCapacity=desired,
            )
        else:
            self.mutate(
                self.asg.set_desired_capacity,
                AutoScalingGroupName=self.name,
                DesiredCapacity=desired,
            )

    def restore_sizes(self, group: GroupInfo, reason: str) -> GroupInfo:
        """Desired back to target; a MaxSize we raised back to what it was. No waiting."""
        details: list[str] = []
        params: dict[str, Any] = {}
        if group.desired_capacity != self.target:
            params["DesiredCapacity"] = self.target
            details.append(f"desired capacity {group.desired_capacity} -> {self.target} ({reason})")
        saved = group.tag(MAX_TAG)
        if saved is not None and saved.isdigit():
            original = max(int(saved), self.target)
            if group.max_size != original:
                params["MaxSize"] = original
                details.append(
                    f"max size {group.max_size} -> {original} (raised for the replacement)"
                )
        if params:
            self.mutate(
                self.asg.update_auto_scaling_group, AutoScalingGroupName=self.name, **params
            )
        if saved is not None:
            self.mutate(
                self.asg.delete_tags,
                Tags=[
                    {
                        "ResourceId": self.name,
                        "ResourceType": "auto-scaling-group",
                        "Key": MAX_TAG,
                    }
                ],
            )
        if details:
            self.changes.append(Change(self.resource, Action.UPDATE, tuple(details)))
        return group

    def drop_surplus(self, group: GroupInfo, reason: str, *, wait: bool) -> GroupInfo:
        """Terminate members beyond target with a decrement, never an InService one that would
        leave fewer than target serving.

        Which go: those not yet serving, then those on the current version (the ones a surge
        launched: after a failure this undoes the surge and leaves the instances that were
        serving before, the active transactor among them), then the newest.
        """
        members = group.members
        surplus = len(members) - self.target
        if surplus <= 0:
            return group
        version, lt_id = self.version, group.launch_template_id

        def launched_by_us(i: InstanceInfo) -> bool:
            return version is not None and lt_id is not None and is_current(i, lt_id, version)

        # sorted() is stable: within each class the newest-first order stays.
        order = sorted(
            self.newest_first(members), key=lambda i: (i.in_service, not launched_by_us(i))
        )
        serving = group.in_service_count
        for victim in order:
            if surplus == 0:
                break
            if victim.in_service:
                if serving - 1 < self.target:
                    continue
                serving -= 1
            surplus -= 1
            self.doing = f"terminating surplus instance {victim.instance_id}"
            self.progress(f"{self.name}: terminating surplus instance {victim.instance_id}")
            self.terminate(victim.instance_id, decrement=True)
            self.changes.append(
                Change(
                    _instance_resource(victim.instance_id, self.name),
                    Action.DELETE,
                    (f"surplus instance ({victim.lifecycle_state}) {reason}",),
                )
            )
            if wait:
                group = self.wait_gone(victim.instance_id)
        return self.read()

    # -- strategies

    def run(self, strategy: Strategy) -> None:
        group = self.read()
        lt_id = group.launch_template_id
        if lt_id is None:
            raise ReplacementError(
                "the group has no launch template (a launch configuration?)",
                self.resource,
                "recreate it from a template made by create-cf-template",
            )
        version = resolve_version(self.ec2, lt_id, group.launch_template_version)
        self.version = version
        # Bound the loop: each pass retires one outdated instance; anything beyond that means
        # the group keeps launching outdated instances, which wait_serving reports.
        for _ in range(len(group.instances) + self.target + 2):
            outdated = outdated_instances(group, version)
            if not outdated:
                break
            victim = self.newest_first(outdated)[0]
            old = (
                f"{victim.instance_type} on launch template version "
                f"{victim.launch_template_version} -> version {version}"
            )
            if strategy == "surge":
                group = self.surge_one(group, victim, version, lt_id)
                detail = "replaced (surge): its replacement was InService before it was terminated"
            else:
                group = self.terminate_one(group, victim, version, lt_id)
                detail = "replaced (terminate): terminated first, then its replacement came up"
            details = [old, detail]
            if strategy == "terminate":
                details.append(f"warning: {TERMINATE_WARNING}")
            self.changes.append(
                Change(
                    _instance_resource(victim.instance_id, self.name), Action.UPDATE, tuple(details)
                )
            )
        else:  # pragma: no cover - wait_serving raises first
            raise ReplacementError("instances keep coming up outdated", self.resource, "")
        # Finish what a killed run left: in-flight instances, surplus, raised sizes.
        if len(group.members) > self.target:
            self.doing = "waiting for in-flight instances before removing the surplus"
            group = self.wait(
                "in-flight instances to be InService",
                lambda g: not any(i.pending for i in g.members),
            )
            group = self.drop_surplus(group, "left by an interrupted run", wait=True)
        self.doing = "restoring the group's sizes"
        self.restore_sizes(group, "left by an interrupted run")

    def surge_one(
        self, group: GroupInfo, victim: InstanceInfo, version: str, lt_id: str
    ) -> GroupInfo:
        vid = victim.instance_id
        serving = [i for i in group.instances if i.in_service and i.instance_id != vid]
        if len(serving) < self.target:
            before = self.settled(group, version, lt_id)
            self.doing = f"launching a replacement for {vid}"
            if group.desired_capacity < self.target + 1:
                self.progress(
                    f"{self.name}: launching a replacement for {vid} "
                    f"(desired {group.desired_capacity} -> {self.target + 1})"
                )
                self.set_desired(group, self.target + 1)
            group = self.wait_serving(victim, before, version, lt_id)
        self.doing = f"terminating {vid} (its replacement is InService)"
        self.progress(f"{self.name}: terminating {vid} with a decrement")
        self.terminate(vid, decrement=True)
        return self.wait_gone(vid)

    def terminate_one(
        self, group: GroupInfo, victim: InstanceInfo, version: str, lt_id: str
    ) -> GroupInfo:
        vid = victim.instance_id
        before = self.settled(group, version, lt_id)
        self.doing = f"terminating {vid} and waiting for its replacement"
        self.progress(f"{self.name}: terminating {vid}; Auto Scaling launches its replacement")
        self.terminate(vid, decrement=False)

        def done(g: GroupInfo) -> bool:
            self.check_replacements(g, before, version, lt_id)
            found = g.find(vid)
            return (found is None or found.leaving) and g.in_service_count >= self.target

        return self.wait(
            f"a replacement for {vid} to be InService", done, self._new_instances(before)
        )


def _plan(group: GroupInfo, version: str, strategy: Strategy) -> list[Change]:
    changes = []
    for i in outdated_instances(group, version):
        details = [
            f"{i.instance_type} on launch template version {i.launch_template_version} "
            f"-> version {version}",
            "would launch a replacement first, then terminate it"
            if strategy == "surge"
            else "would terminate it, then wait for the replacement",
        ]
        if strategy == "terminate":
            details.append(f"warning: {TERMINATE_WARNING}")
        changes.append(
            Change(_instance_resource(i.instance_id, group.name), Action.UPDATE, tuple(details))
        )
    return changes


def replace_outdated(
    asg: AutoScalingClient,
    ec2: EC2Client,
    group_name: str,
    *,
    target_size: int,
    strategy: Strategy = "surge",
    timeout: float = 1800.0,
    poll_interval: float = 10.0,
    on_progress: Callable[[str], None] = lambda _msg: None,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[Change]:
    """Replace, one at a time, every instance not on the group's launch template version.

    `target_size` is the stack's GroupSize: the size the group must end at, whatever a killed run
    left. `timeout` bounds each wait (one launch or one termination), not the whole roll, so a
    larger group does not need a larger timeout. Returns one Change per replaced instance (plus
    one for the group when sizes a previous run left behind were corrected); [] and no mutating
    call when nothing is outdated and the sizes are right.

    On a failure or Ctrl-C the group's sizes are restored (surplus instances that are not yet
    serving, then the newest, are terminated with a decrement; desired back to target; a raised
    MaxSize lowered) before the error propagates. A kill runs nothing: the next run converges.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    if target_size < 1:
        raise ValueError("target_size must be >= 1")
    if dry_run:
        group = read_group(asg, group_name)
        if group is None or group.launch_template_id is None:
            return []
        version = resolve_version(ec2, group.launch_template_id, group.launch_template_version)
        changes = _plan(group, version, strategy)
        if group.desired_capacity != target_size or group.tag(MAX_TAG) is not None:
            changes.append(
                Change(
                    _resource(group_name),
                    Action.UPDATE,
                    (f"would restore desired capacity {group.desired_capacity} -> {target_size}",),
                )
            )
        return changes

    job = _Replacer(
        asg,
        ec2,
        group_name,
        target_size=target_size,
        timeout=timeout,
        poll_interval=poll_interval,
        on_progress=on_progress,
        sleep=sleep,
        clock=clock,
    )
    # Not `finally`: a kill runs no cleanup either, and the tests stand for one with a
    # BaseException that must leave AWS exactly as a kill would. Ctrl-C and errors do restore.
    try:
        job.run(strategy)
    except KeyboardInterrupt:
        doing = job.doing
        _restore_after_failure(job)
        raise Interrupted(
            f"interrupted while {doing}",
            job.resource,
            "the group's sizes were restored; rerun update-stack to finish the replacement",
        ) from None
    except (Exception, SystemExit):
        _restore_after_failure(job)
        raise
    return job.changes


def _restore_after_failure(job: _Replacer) -> None:
    try:
        group = job.read()
        group = job.drop_surplus(group, "launched before the failure", wait=False)
        job.restore_sizes(group, "restored after the failure")
    except Exception as exc:  # never mask the original error with the cleanup's
        job.progress(f"{job.name}: could not restore the group's sizes: {exc}")
