"""The executor's plumbing: one roll's reads (each poll of the group), retried group mutations,
bounded waits, terminations, the group tags and sizes a roll changes and restores, AZRebalance,
and pointing the group back after a failure. roll.py runs the plan's steps with it.

State lives in AWS: every decision made here is made from the last poll of the group, so a rerun
after a kill converges. Must not print (progress goes through `on_progress`) nor build clients.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datomic_aws.aws_errors import translating
from datomic_aws.changes import Action, Change
from datomic_aws.errors import AwsCallError, InstanceFailed, ReplacementError, WaitTimeout
from datomic_aws.names import ROLE_ACTIVE
from datomic_aws.replace.availability import Availability
from datomic_aws.replace.group import (
    AZ_REBALANCE,
    AZ_TAG,
    BUSY_CODES,
    MAX_TAG,
    MIN_TAG,
    GroupInfo,
    InstanceInfo,
    current,
    is_current,
    newest_first,
    read_group,
    with_roles,
)
from datomic_aws.replace.plan import Plan, instance_resource

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client


@dataclass(frozen=True)
class Timing:
    """How long each wait may take, how often the group is polled, where progress goes."""

    timeout: float = 1800.0
    poll_interval: float = 10.0
    on_progress: Callable[[str], None] = lambda _msg: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


class Executor:
    """The plumbing of one roll. State lives in AWS; the fields below are for messages and the
    availability report only."""

    def __init__(
        self,
        asg: AutoScalingClient,
        ec2: EC2Client,
        plan: Plan,
        timing: Timing,
        report: Availability,
    ) -> None:
        self.asg = asg
        self.ec2 = ec2
        self.plan = plan
        self.name = plan.group
        self.target = plan.options.target_size
        self.timeout = timing.timeout
        self.poll_interval = timing.poll_interval
        self.progress = timing.on_progress
        self.sleep = timing.sleep
        self.clock = timing.clock
        self.report = report
        self.resource = f"autoscaling group {plan.group}"
        self.doing = "reading the group"
        self.version = plan.version  # the resolved version number the roll brings
        self.lt_id = plan.lt_id
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
        return self.observe(with_roles(self.ec2, group))

    def observe(self, group: GroupInfo) -> GroupInfo:
        """What a poll tells the bookkeeping: replacements that served, the availability."""
        self.unserved -= {i.instance_id for i in group.instances if i.in_service}
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
                if exc.code not in BUSY_CODES or self.clock() >= deadline:
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

    def current(self, instance: InstanceInfo) -> bool:
        return current(instance, self.lt_id, self.version)

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
            raise InstanceFailed(
                f"replacement instance {vanished[0]} left the group before it was InService "
                "(its launch was abandoned: the transactor exited or was not ready in time)",
                self.resource,
            )
        for i in g.instances:
            if i.instance_id in before:
                continue
            if not i.in_service:
                self.unserved.add(i.instance_id)
            if i.leaving or (i.health_status and i.health_status != "Healthy"):
                raise InstanceFailed(
                    f"replacement instance {i.instance_id} went {i.lifecycle_state}/"
                    f"{i.health_status} before it was InService",
                    self.resource,
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
        order = sorted(newest_first(eligible), key=lambda i: i.in_service)
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
                    instance_resource(victim.instance_id, self.name),
                    Action.DELETE,
                    (f"surplus instance ({victim.lifecycle_state}) {reason}",),
                )
            )
            if wait:
                group = self.wait_gone(victim.instance_id)
        return self.read()

    # -- the roll
