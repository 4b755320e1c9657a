"""Instance replacement for update-stack: bring every instance of the transactor group onto the
launch template version the stack declares, with one Datomic HA failover and no transactor gap
beyond it.

Owns: reading the group and the role each instance publishes (`read_group`, `with_roles`),
pointing the group at the declared launch template version (`ensure_group_version`), and the two
replacement strategies (`replace_outdated`): `surge` (launch the replacement first, then terminate
the old instance with a decrement) and `terminate` (Datomic's old way: terminate, wait for the
replacement; downtime for a group of one).

Role-aware surge (each instance publishes `datomic:role`, reference §10): outdated standbys first,
each by surge; the active last, once a current-version standby is InService and is the only
standby left, so exactly one standby takes over (two waiting standbys race and one dies). A group
of 1 surges its standby first; a larger group terminates the active with a decrement (MinSize
lowered for the while) and grows back after the takeover. When no instance publishes a role, the
old order (newest first, all by surge) is kept and a warning says so. AZRebalance is suspended for
the roll (reference §11: explicit terminations unbalance the zones and the group would launch and
terminate on its own).

It must not print (progress goes through the `on_progress` callback), must not build boto3 clients
(they are injected), must not touch the stack, the launch template or any data resource, and never
uses instance refresh (moto lacks it, and it knows nothing about which transactor is active).

Crash convergence: every step is decided from what AWS reports now, never from what this process
remembers, so a rerun after a kill at any point finishes the job. What a rerun could not know from
the group itself is kept in group tags written before the change they undo and removed after:
the MaxSize before a raise (`MAX_TAG`), the MinSize before a lowering (`MIN_TAG`), and that this
tool suspended AZRebalance (`AZ_TAG`; a process the operator suspended is never resumed). The
group size the stack declares (`target_size`) is the truth, not whatever DesiredCapacity a killed
run left behind.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from datomic_aws.aws import translating
from datomic_aws.changes import Action, Change
from datomic_aws.errors import AwsCallError, Interrupted, ReplacementError, WaitTimeout
from datomic_aws.names import ROLE_ACTIVE, ROLE_STANDBY, TAG_ROLE

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
# The same for the MinSize lowered so that the active can be terminated with a decrement: AWS
# refuses a decrement that would take DesiredCapacity below MinSize (ValidationError "Currently,
# desiredSize equals minSize (N). Terminating instance without replacement will violate group's
# min size constraint...").
MIN_TAG = "datomic-aws:min-size-before-replace"
# Written before this tool suspends AZRebalance, removed after it resumed it: a rerun after a kill
# resumes it, and a process the operator suspended (no tag) is never resumed by us.
AZ_TAG = "datomic-aws:suspended-for-replace"
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
    params: dict[str, Any] = {"Filters": [{"Name": "instance-id", "Values": ids}]}
    with translating(resource or f"ec2 instances {', '.join(ids)}"):
        while True:
            page = ec2.describe_instances(**params)
            for r in page.get("Reservations", []):
                for i in r.get("Instances", []):
                    tags = {t.get("Key"): t.get("Value") for t in i.get("Tags", [])}
                    role = tags.get(TAG_ROLE)
                    launched = i.get("LaunchTime")
                    out[i["InstanceId"]] = (
                        role if role in (ROLE_ACTIVE, ROLE_STANDBY) else None,
                        launched.timestamp() if launched is not None else None,
                    )
            token = page.get("NextToken")
            if not token:
                return out
            params["NextToken"] = token


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


# --- availability ---------------------------------------------------------------------------


@dataclass
class Availability:
    """What a roll measured, from the polls it made anyway: the lowest InService count, the
    intervals with no current instance reporting `active` (from the termination of the old
    active to the first poll that sees its successor report active), and the failovers seen.

    Measured from the instances' role tags, so at the poll interval's resolution.
    """

    group_size: int = 0
    poll_interval: float = 0.0
    roles_known: bool = False
    replaced: int = 0
    min_in_service: int | None = None
    failovers: int = 0
    no_active_intervals: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _gap_start: float | None = None
    _last_active: str | None = None

    def observe(self, group: GroupInfo, now: float, version: str | None, lt_id: str | None) -> None:
        count = group.in_service_count
        self.min_in_service = (
            count if self.min_in_service is None else min(self.min_in_service, count)
        )
        active = group.with_role(ROLE_ACTIVE)
        self.roles_known = self.roles_known or group.roles_known
        if active:
            if self._last_active is not None and active[0].instance_id != self._last_active:
                self.failovers += 1
            self._last_active = active[0].instance_id
        current_active = [i for i in active if version and lt_id and is_current(i, lt_id, version)]
        if self._gap_start is not None and current_active:
            self.no_active_intervals.append(max(0.0, now - self._gap_start))
            self._gap_start = None

    def active_terminated(self, now: float) -> None:
        self._gap_start = now

    def as_dict(self) -> dict[str, Any]:
        return {
            "group_size": self.group_size,
            "replaced": self.replaced,
            "min_in_service": self.min_in_service,
            "roles_known": self.roles_known,
            "failovers": self.failovers if self.roles_known else None,
            "no_active_seconds": round(sum(self.no_active_intervals), 3)
            if self.roles_known
            else None,
            "no_active_intervals": [round(x, 3) for x in self.no_active_intervals],
            "poll_interval": self.poll_interval,
            "measured_from": "the instances' datomic:role tags, at the poll interval's resolution",
        }

    def details(self) -> tuple[str, ...]:
        floor = "?" if self.min_in_service is None else str(self.min_in_service)
        lines = [
            f"availability during the roll: lowest InService count seen {floor} "
            f"(group of {self.group_size})"
        ]
        if not self.roles_known:
            lines.append(
                "interval with no active transactor: not measured (the instances publish no role)"
            )
        else:
            gaps = " + ".join(f"{x:.1f}s" for x in self.no_active_intervals) or "none seen"
            lines.append(
                f"interval with no instance reporting active: {gaps}, over {self.failovers} "
                f"failover(s) (measured from the datomic:role tags at the {self.poll_interval:g}s "
                "poll interval's resolution)"
            )
        return tuple(lines)


# --- replacement ----------------------------------------------------------------------------


class _Replacer:
    """One replace_outdated run. State lives in AWS; the fields below are for messages and the
    availability report only."""

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
        report: Availability,
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
        self.report = report
        self.resource = _resource(group_name)
        self.doing = "reading the group"
        self.version: str | None = None  # the resolved version number, once known
        self.lt_id: str | None = None
        self.roles_seen = False  # once a member published a role, the run stays role-aware
        self.changes: list[Change] = []
        # Replacements seen launching that have not served yet: one that vanishes from the group
        # between two polls failed (an ABANDONed launch leaves the group at once, and Auto
        # Scaling launches the next one while the group is below its desired capacity).
        self.unserved: set[str] = set()

    # -- plumbing

    def read(self) -> GroupInfo:
        """The group and its instances' roles: what every decision is made from (one poll)."""
        group = read_group(self.asg, self.name)
        if group is None:
            raise ReplacementError(
                "the Auto Scaling group does not exist",
                self.resource,
                "check the stack's status and resources, then rerun update-stack",
            )
        group = with_roles(self.ec2, group)
        self.unserved -= {i.instance_id for i in group.instances if i.in_service}
        if group.roles_known:
            self.roles_seen = True
        self.report.observe(
            group, self.clock(), self.version, self.lt_id or group.launch_template_id
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
                f"{i.instance_id} {i.lifecycle_state}/{i.health_status}"
                + (f"/{i.role}" if i.role else "")
                for i in group.instances
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

    @staticmethod
    def newest_first(instances: Sequence[InstanceInfo]) -> list[InstanceInfo]:
        return sorted(instances, key=lambda i: (i.launch_time or 0.0, i.instance_id), reverse=True)

    def current(self, instance: InstanceInfo) -> bool:
        return (
            self.version is not None
            and self.lt_id is not None
            and is_current(instance, self.lt_id, self.version)
        )

    def terminate(self, instance_id: str, *, decrement: bool) -> None:
        self.unserved.discard(instance_id)  # leaving because we said so
        try:
            self.mutate(
                self.asg.terminate_instance_in_auto_scaling_group,
                InstanceId=instance_id,
                ShouldDecrementDesiredCapacity=decrement,
            )
        except AwsCallError as exc:
            # Already gone (a previous run, or Auto Scaling itself) is the goal, not an error.
            # ValidationError alone is too broad a code (AWS's MinSize refusal is one too), so
            # confirm against the group.
            if exc.code == "ValidationError":
                found = read_group(self.asg, self.name)
                hit = found.find(instance_id) if found else None
                if hit is None or hit.leaving:
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
        turns unhealthy before serving (its launch hook ABANDONed: the transactor died or its
        deadline passed) fails the replacement, and one that serves another version means the
        group launches the wrong one (replacing again would loop).

        A replacement seen before that is no longer in the group and never served failed too:
        an abandoned launch may leave the group between two polls (reference §11), and the
        group then launches another one, which would fail the same way until the timeout."""
        present = {i.instance_id for i in g.instances}
        vanished = sorted(self.unserved - present - before)
        if vanished:
            raise ReplacementError(
                f"replacement instance {vanished[0]} left the group before it was InService "
                "(its launch was abandoned: the transactor exited or was not ready in time)",
                self.resource,
                "check its console output and the transactor log; rerun update-stack",
            )
        for i in g.instances:
            if i.instance_id in before:
                continue
            if not i.in_service:
                self.unserved.add(i.instance_id)
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

    # -- group tags and sizes

    def _tag(self, key: str, value: str) -> None:
        self.mutate(
            self.asg.create_or_update_tags,
            Tags=[
                {
                    "ResourceId": self.name,
                    "ResourceType": "auto-scaling-group",
                    "Key": key,
                    "Value": value,
                    "PropagateAtLaunch": False,
                }
            ],
        )

    def _untag(self, *keys: str) -> None:
        self.mutate(
            self.asg.delete_tags,
            Tags=[
                {"ResourceId": self.name, "ResourceType": "auto-scaling-group", "Key": k}
                for k in keys
            ],
        )

    def set_desired(self, group: GroupInfo, desired: int) -> None:
        if group.max_size < desired:
            if group.tag(MAX_TAG) is None:
                # Written before the raise so a kill in between still lets a rerun lower it.
                self._tag(MAX_TAG, str(group.max_size))
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

    def terminate_decrement(self, group: GroupInfo, victim: InstanceInfo) -> None:
        """Terminate with a decrement, lowering MinSize first where AWS would refuse it."""
        lowest = group.desired_capacity - 1
        if lowest < group.min_size and lowest >= 1:
            if group.tag(MIN_TAG) is None:
                # Written before the lowering so that a rerun after a kill raises it back.
                self._tag(MIN_TAG, str(group.min_size))
            self.progress(f"{self.name}: lowering MinSize {group.min_size} -> {lowest} for now")
            self.mutate(
                self.asg.update_auto_scaling_group, AutoScalingGroupName=self.name, MinSize=lowest
            )
        self.terminate(victim.instance_id, decrement=True)

    def restore_sizes(self, group: GroupInfo, reason: str) -> GroupInfo:
        """Desired back to target; a MaxSize we raised and a MinSize we lowered back to what
        they were. No waiting."""
        details: list[str] = []
        params: dict[str, Any] = {}
        if group.desired_capacity != self.target:
            params["DesiredCapacity"] = self.target
            details.append(f"desired capacity {group.desired_capacity} -> {self.target} ({reason})")
        saved_max, saved_min = group.tag(MAX_TAG), group.tag(MIN_TAG)
        if saved_max is not None and saved_max.isdigit():
            original = max(int(saved_max), self.target)
            if group.max_size != original:
                params["MaxSize"] = original
                details.append(
                    f"max size {group.max_size} -> {original} (raised for the replacement)"
                )
        if saved_min is not None and saved_min.isdigit():
            original = min(int(saved_min), self.target)
            if group.min_size != original:
                params["MinSize"] = original
                details.append(
                    f"min size {group.min_size} -> {original} (lowered so the active could be "
                    "terminated with a decrement)"
                )
        if params:
            self.mutate(
                self.asg.update_auto_scaling_group, AutoScalingGroupName=self.name, **params
            )
        saved = [k for k in (MAX_TAG, MIN_TAG) if group.tag(k) is not None]
        if saved:
            self._untag(*saved)
        if details:
            self.changes.append(Change(self.resource, Action.UPDATE, tuple(details)))
        return group

    def suspend_az_rebalance(self, group: GroupInfo) -> None:
        if AZ_REBALANCE in group.suspended_processes:
            return  # ours from a killed run (tagged), or the operator's: left as it is
        if group.tag(AZ_TAG) is None:
            self._tag(AZ_TAG, AZ_REBALANCE)
        self.progress(f"{self.name}: suspending {AZ_REBALANCE} for the replacement")
        self.mutate(
            self.asg.suspend_processes,
            AutoScalingGroupName=self.name,
            ScalingProcesses=[AZ_REBALANCE],
        )

    def resume_az_rebalance(self, group: GroupInfo) -> None:
        if group.tag(AZ_TAG) is None:
            return  # not suspended by us: the operator's choice stands
        if AZ_REBALANCE in group.suspended_processes:
            self.progress(f"{self.name}: resuming {AZ_REBALANCE}")
            self.mutate(
                self.asg.resume_processes,
                AutoScalingGroupName=self.name,
                ScalingProcesses=[AZ_REBALANCE],
            )
            if not self.report.replaced:  # a rerun finishing what a killed run left
                self.changes.append(
                    Change(self.resource, Action.UPDATE, (f"{AZ_REBALANCE} resumed",))
                )
        self._untag(AZ_TAG)

    def point_back(self, group: GroupInfo) -> str | None:
        """After a new instance failed: the group back on the version its outdated instances
        run, when they agree on one. Returns that version."""
        lt_id = group.launch_template_id
        if lt_id is None or self.version is None:
            return None
        versions = {
            i.launch_template_version
            for i in group.members
            if i.launch_template_id == lt_id and not is_current(i, lt_id, self.version)
        }
        if len(versions) != 1:
            return None
        (previous,) = versions
        if previous is None or not previous.isdigit():
            return None
        if group.launch_template_version != previous:
            self.progress(f"{self.name}: back on launch template version {previous}")
            self.mutate(
                self.asg.update_auto_scaling_group,
                AutoScalingGroupName=self.name,
                LaunchTemplate={"LaunchTemplateId": lt_id, "Version": previous},
            )
        return previous

    def drop_surplus(self, group: GroupInfo, reason: str, *, wait: bool) -> GroupInfo:
        """Terminate members beyond target with a decrement: only instances of the version this
        roll brings (what a surge launched) or not yet serving, never one reporting active, never
        an InService one that would leave fewer than target serving. Old instances are left
        alone: after a failure this undoes the surge and leaves the instances that were serving.

        Which go first: those not yet serving, then the newest.
        """
        members = group.members
        surplus = len(members) - self.target
        if surplus <= 0:
            return group
        eligible = [
            i for i in members if i.role != ROLE_ACTIVE and (self.current(i) or not i.in_service)
        ]
        # sorted() is stable: within each class the newest-first order stays.
        order = sorted(self.newest_first(eligible), key=lambda i: i.in_service)
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

    # -- the roll

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
        self.version, self.lt_id = version, lt_id
        if outdated_instances(group, version):
            self.doing = f"suspending {AZ_REBALANCE}"
            self.suspend_az_rebalance(group)
        # Bound the loop: each pass retires at least one outdated instance; anything beyond
        # that means the group keeps launching outdated instances, which the waits report.
        for _ in range(len(group.instances) + self.target + 2):
            outdated = outdated_instances(group, version)
            if not outdated:
                break
            if strategy == "terminate":
                victim = self.order(group, outdated)[0]
                group = self.terminate_one(group, victim, version, lt_id)
                self.record(
                    victim,
                    version,
                    "replaced (terminate): terminated first, then its replacement came up",
                    f"warning: {TERMINATE_WARNING}",
                )
            elif self.roles_seen or group.roles_known:
                group = self.role_aware_step(group, outdated, version, lt_id)
            else:
                if ROLES_UNKNOWN_WARNING not in self.report.warnings:
                    self.report.warnings.append(ROLES_UNKNOWN_WARNING)
                    self.progress(f"{self.name}: warning: {ROLES_UNKNOWN_WARNING}")
                victim = self.newest_first(outdated)[0]
                group = self.surge_one(group, victim, version, lt_id)
                self.record(
                    victim,
                    version,
                    "replaced (surge): its replacement was InService before it was terminated",
                )
        else:  # pragma: no cover - the waits raise first
            raise ReplacementError("instances keep coming up outdated", self.resource, "")
        # Finish what a killed run left: in-flight instances, surplus, sizes, a takeover.
        if len(group.members) > self.target:
            self.doing = "waiting for in-flight instances before removing the surplus"
            group = self.wait(
                "in-flight instances to be InService",
                lambda g: not any(i.pending for i in g.members),
            )
            group = self.drop_surplus(group, "left by an interrupted run", wait=True)
        group = self.read()
        in_takeover = group.with_role(ROLE_STANDBY) or group.tag(MIN_TAG) is not None
        if group.members and in_takeover and not group.with_role(ROLE_ACTIVE):
            # Nobody active, and a standby (or the MinSize a killed run lowered to terminate the
            # active): a takeover is under way. Growing back now would add a second standby to
            # the race, so the takeover comes first.
            self.doing = "waiting for a standby to take over"
            group = self.wait_takeover(None, None)
        self.doing = "restoring the group's sizes"
        group = self.grow_back(group, "left by an interrupted run")
        self.doing = f"resuming {AZ_REBALANCE}"
        self.resume_az_rebalance(group)

    def order(self, group: GroupInfo, outdated: Sequence[InstanceInfo]) -> list[InstanceInfo]:
        """Standbys (and instances with no role yet) newest first, the active last."""
        others = [i for i in outdated if i.role != ROLE_ACTIVE]
        active = [i for i in outdated if i.role == ROLE_ACTIVE]
        return self.newest_first(others) + active

    def record(self, victim: InstanceInfo, version: str, *details: str) -> None:
        self.report.replaced += 1
        head = (
            f"{victim.instance_type} on launch template version "
            f"{victim.launch_template_version} -> version {version}"
        )
        role = [f"role: {victim.role}"] if victim.role else []
        self.changes.append(
            Change(
                _instance_resource(victim.instance_id, self.name),
                Action.UPDATE,
                (head, *role, *details),
            )
        )

    def successor(self, group: GroupInfo, active_id: str) -> InstanceInfo | None:
        """A current-version standby ready to take over: InService (its launch hook passed, the
        transactor answers /health) and not reporting active. The longest-ready one first."""
        ready = [
            i
            for i in group.members
            if i.instance_id != active_id
            and i.in_service
            and self.current(i)
            and i.role != ROLE_ACTIVE
        ]
        ready.sort(key=lambda i: (i.role != ROLE_STANDBY, i.launch_time or 0.0, i.instance_id))
        return ready[0] if ready else None

    def role_aware_step(
        self, group: GroupInfo, outdated: list[InstanceInfo], version: str, lt_id: str
    ) -> GroupInfo:
        active = group.with_role(ROLE_ACTIVE)
        if not active:
            # Roles are published but nobody is active: a takeover is under way (a killed run
            # terminated the active). Never pick a victim blind: wait for the new active.
            self.doing = "waiting for a standby to take over"
            return self.wait_takeover(None, None)
        old_active = [i for i in outdated if i.role == ROLE_ACTIVE]
        standbys = [i for i in outdated if i.role != ROLE_ACTIVE]
        if standbys and (
            not old_active or self.successor(group, old_active[0].instance_id) is None
        ):
            # Standbys first, each by surge: the new one is InService (a ready standby) before
            # the old standby goes.
            victim = self.newest_first(standbys)[0]
            group = self.surge_one(group, victim, version, lt_id)
            self.record(
                victim,
                version,
                "replaced (surge, a standby): its replacement was InService before it was "
                "terminated",
            )
            return group
        return self.replace_active(group, old_active[0], version, lt_id)

    def replace_active(
        self, group: GroupInfo, active: InstanceInfo, version: str, lt_id: str
    ) -> GroupInfo:
        """The active goes last: exactly one current standby waits when it is terminated."""
        aid = active.instance_id
        successor = self.successor(group, aid)
        if successor is None:
            before = self.settled(group, version, lt_id)
            in_flight = [i for i in group.members if i.pending and self.current(i)]
            if not in_flight:
                desired = len(group.members) + 1
                self.doing = f"launching a standby to take over from {aid}"
                self.progress(
                    f"{self.name}: launching a replacement for {aid} "
                    f"(desired {group.desired_capacity} -> {desired}); it starts as a standby"
                )
                self.set_desired(group, desired)

            def ready(g: GroupInfo) -> bool:
                self.check_replacements(g, before, version, lt_id)
                return self.successor(g, aid) is not None

            group = self.wait(
                f"a current standby to be InService before {aid} goes",
                ready,
                self._new_instances(before),
            )
            successor = self.successor(group, aid)
            assert successor is not None
        sid = successor.instance_id
        # Any other standby would race the successor for the heartbeat, and the loser exits
        # (reference §10): they go before the active does. The group grows back after.
        for extra in self.newest_first(
            [i for i in group.members if i.instance_id not in (aid, sid)]
        ):
            self.doing = f"terminating {extra.instance_id} so that only {sid} stands by"
            self.progress(
                f"{self.name}: terminating {extra.instance_id} with a decrement: only {sid} "
                f"may stand by when the active {aid} goes"
            )
            self.terminate_decrement(group, extra)
            group = self.wait_gone(extra.instance_id)
            if self.current(extra):
                self.changes.append(
                    Change(
                        _instance_resource(extra.instance_id, self.name),
                        Action.DELETE,
                        ("surplus standby: two standbys would race when the active goes",),
                    )
                )
            else:
                self.record(
                    extra,
                    version,
                    "replaced: terminated before the active went (never two standbys waiting); "
                    "the group grew back to its size after the takeover",
                )
        self.doing = f"terminating the active {aid} (its standby {sid} takes over)"
        self.progress(
            f"{self.name}: terminating {aid} with a decrement (the active; {sid} takes over)"
        )
        self.report.active_terminated(self.clock())
        self.terminate_decrement(group, active)
        group = self.wait_takeover(aid, sid)
        self.record(
            active,
            version,
            f"replaced (the active, last): terminated once {sid}, a current standby, was "
            "InService; it took over",
        )
        return self.grow_back(group, "back to the group size after the takeover")

    def wait_takeover(self, old: str | None, successor: str | None) -> GroupInfo:
        """Until the old active is gone and a current instance reports active; with neither
        named (a takeover found under way), until any instance reports active."""

        def done(g: GroupInfo) -> bool:
            if successor is not None:
                s = g.find(successor)
                if s is None or s.leaving:
                    raise ReplacementError(
                        f"the standby {successor} left the group before it took over",
                        self.resource,
                        "check its console output and the transactor log; rerun update-stack",
                    )
            if old is not None:
                found = g.find(old)
                if found is not None and not found.leaving:
                    return False
            if successor is None and old is None:
                return bool(g.with_role(ROLE_ACTIVE))
            return any(self.current(i) for i in g.with_role(ROLE_ACTIVE))

        what = f"{successor} to take over" if successor else "an instance to report active"
        return self.wait(what, done)

    def grow_back(self, group: GroupInfo, reason: str) -> GroupInfo:
        """Sizes back to what they were; when that launches instances, wait until they serve."""
        growing = len(group.members) < self.target
        before = self.settled(group, self.version or "", self.lt_id or "")
        group = self.restore_sizes(group, reason)
        if not growing:
            return group

        def full(g: GroupInfo) -> bool:
            if self.version and self.lt_id:
                self.check_replacements(g, before, self.version, self.lt_id)
            return sum(1 for i in g.members if i.in_service) >= self.target

        self.doing = "waiting for the new standby to be InService"
        return self.wait(
            "the group to be back to its size, InService", full, self._new_instances(before)
        )

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
        self.terminate_decrement(group, victim)
        return self.wait_gone(vid)

    def terminate_one(
        self, group: GroupInfo, victim: InstanceInfo, version: str, lt_id: str
    ) -> GroupInfo:
        vid = victim.instance_id
        before = self.settled(group, version, lt_id)
        self.doing = f"terminating {vid} and waiting for its replacement"
        self.progress(f"{self.name}: terminating {vid}; Auto Scaling launches its replacement")
        if victim.role == ROLE_ACTIVE:
            self.report.active_terminated(self.clock())
        self.terminate(vid, decrement=False)

        def done(g: GroupInfo) -> bool:
            self.check_replacements(g, before, version, lt_id)
            found = g.find(vid)
            return (found is None or found.leaving) and g.in_service_count >= self.target

        group = self.wait(
            f"a replacement for {vid} to be InService", done, self._new_instances(before)
        )
        if victim.role == ROLE_ACTIVE:  # the gap lasts until an instance reports active again
            group = self.wait_takeover(vid, None)
        return group


def _plan(group: GroupInfo, version: str, strategy: Strategy, target: int) -> list[Change]:
    """The same order the run takes: standbys (newest first), the active last, roles shown."""
    outdated = outdated_instances(group, version)
    others = _Replacer.newest_first([i for i in outdated if i.role != ROLE_ACTIVE])
    active = [i for i in outdated if i.role == ROLE_ACTIVE]
    roles = group.roles_known
    changes = []
    for n, i in enumerate([*others, *active]):
        details = [
            f"{i.instance_type} on launch template version {i.launch_template_version} "
            f"-> version {version}",
            f"role: {i.role or 'not published'}",
        ]
        if strategy == "terminate":
            details.append("would terminate it, then wait for the replacement")
            details.append(f"warning: {TERMINATE_WARNING}")
        elif not roles:
            details.append("would launch a replacement first, then terminate it")
        elif i.role == ROLE_ACTIVE:
            details.append(
                "would go last, once a current-version standby is InService and is the only "
                "standby: terminated with a decrement, the standby takes over (one failover)"
                + ("; the group then grows back to its size" if target > 1 else "")
            )
        elif n == 0 or not active:
            details.append("would launch a replacement standby first, then terminate it")
        else:
            details.append(
                "would be terminated before the active goes (never two standbys waiting); the "
                "group grows back to its size after the takeover"
            )
        if n == 0:
            details.append(f"{AZ_REBALANCE} would be suspended for the roll and resumed after")
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
    report: Availability | None = None,
) -> list[Change]:
    """Replace, one at a time, every instance not on the group's launch template version.

    `target_size` is the stack's GroupSize: the size the group must end at, whatever a killed run
    left. `timeout` bounds each wait (one launch, one termination, one takeover), not the whole
    roll, so a larger group does not need a larger timeout. Returns one Change per replaced
    instance (plus one for the group when sizes a previous run left behind were corrected); []
    and no mutating call when nothing is outdated and the sizes are right. `report`, when given,
    receives what the roll measured (Availability) and its warnings.

    On a failure or Ctrl-C: when a new instance failed (abandoned, or never ready) the group is
    pointed back at the launch template version its outdated instances run; the sizes are
    restored (instances this roll launched that do not serve are terminated with a decrement;
    desired, a raised MaxSize and a lowered MinSize back) and AZRebalance resumed, before the
    error propagates. A kill runs nothing: the next run converges.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    if target_size < 1:
        raise ValueError("target_size must be >= 1")
    report = report if report is not None else Availability()
    report.group_size, report.poll_interval = target_size, poll_interval
    if dry_run:
        found = read_group(asg, group_name)
        if found is None or found.launch_template_id is None:
            return []
        group = with_roles(ec2, found)
        version = resolve_version(
            ec2, group.launch_template_id or "", group.launch_template_version
        )
        changes = _plan(group, version, strategy, target_size)
        if strategy == "surge" and changes and not group.roles_known:
            report.warnings.append(ROLES_UNKNOWN_WARNING)
        if (
            group.desired_capacity != target_size
            or group.tag(MAX_TAG) is not None
            or group.tag(MIN_TAG) is not None
        ):
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
        report=report,
    )
    # Not `finally`: a kill runs no cleanup either, and the tests stand for one with a
    # BaseException that must leave AWS exactly as a kill would. Ctrl-C and errors do restore.
    try:
        job.run(strategy)
    except KeyboardInterrupt:
        doing = job.doing
        _restore_after_failure(job, new_instance_failed=False)
        raise Interrupted(
            f"interrupted while {doing}",
            job.resource,
            "the group's sizes were restored; rerun update-stack to finish the replacement",
        ) from None
    except (ReplacementError, WaitTimeout) as exc:
        previous = _restore_after_failure(job, new_instance_failed=True)
        if previous is not None:
            exc.hint = f"the group is back on launch template version {previous}; {exc.hint}"
        raise
    except (Exception, SystemExit):
        _restore_after_failure(job, new_instance_failed=False)
        raise
    return job.changes


def _restore_after_failure(job: _Replacer, *, new_instance_failed: bool) -> str | None:
    """Undo what this run launched and did not finish: the version, the sizes, AZRebalance."""
    # Each step is attempted even when the one before failed: an instance can leave the group
    # between a read and its termination (an abandoned launch), and a surplus left behind must
    # not also leave the sizes raised. A failed step's view of the group is read again.
    previous: str | None = None
    try:
        group = job.read()
    except Exception as exc:  # never mask the original error with the cleanup's
        job.progress(f"{job.name}: could not read the group to restore it: {exc}")
        return None
    if new_instance_failed:
        try:
            previous = job.point_back(group)
        except Exception as exc:
            job.progress(f"{job.name}: could not point the group back: {exc}")
    # An abandoned launch that leaves before its termination is replaced by Auto Scaling at once
    # (desired was not decremented): remove what the roll launched until no surplus is left, so
    # that lowering the desired capacity afterwards does not let Auto Scaling choose which goes.
    for _ in range(_SURPLUS_ROUNDS):
        try:
            group = job.drop_surplus(group, "launched before the failure", wait=False)
        except Exception as exc:
            job.progress(f"{job.name}: could not remove the instances it launched: {exc}")
            group = _read_or(job, group)
            break
        if len(group.members) <= job.target:
            break
    try:
        job.restore_sizes(group, "restored after the failure")
    except Exception as exc:
        job.progress(f"{job.name}: could not restore the group's sizes: {exc}")
    try:
        job.resume_az_rebalance(group)
    except Exception as exc:
        job.progress(f"{job.name}: could not resume {AZ_REBALANCE}: {exc}")
    return previous


_SURPLUS_ROUNDS = 5


def _read_or(job: _Replacer, group: GroupInfo) -> GroupInfo:
    try:
        return job.read()
    except Exception:
        return group
