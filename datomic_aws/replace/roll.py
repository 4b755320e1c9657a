"""The executor: runs a plan's steps (plan.py) on the group, one at a time, with the polls each
step needs (waiting for a replacement to be InService, for a takeover); it decides nothing the
plan did not: which instance goes, in which order, and how, come from the plan.

Crash convergence: each step acts on what AWS reports now (the last poll), and what a rerun could
not know from the group itself is kept in group tags (base.py), so a rerun after a kill at any
point plans the rest and finishes the job. Must not print nor build clients.
"""

from __future__ import annotations

from datomic_aws.changes import Action, Change
from datomic_aws.errors import InstanceFailed, ReplacementError
from datomic_aws.names import ROLE_ACTIVE, ROLE_STANDBY
from datomic_aws.replace.base import Executor
from datomic_aws.replace.group import (
    AZ_REBALANCE,
    MIN_TAG,
    TERMINATE_WARNING,
    GroupInfo,
    InstanceInfo,
    RollState,
    newest_first,
    successor,
)
from datomic_aws.replace.plan import (
    PointGroup,
    Replace,
    ReplaceActive,
    ResumeAzRebalance,
    Settle,
    Step,
    SuspendAzRebalance,
    WaitTakeover,
    instance_resource,
    plan,
)

# A plan ending in a takeover under way is planned again after it; a second takeover found right
# after the first would mean the roles keep changing on their own.
_REPLANS = 3

_RECORDS = {
    "surge": ("replaced (surge): its replacement was InService before it was terminated",),
    "surge-standby": (
        "replaced (surge, a standby): its replacement was InService before it was terminated",
    ),
    "terminate": (
        "replaced (terminate): terminated first, then its replacement came up",
        f"warning: {TERMINATE_WARNING}",
    ),
}


class Roll(Executor):
    """One roll: the plan's steps, in order."""

    def run(self, group: GroupInfo, steps: tuple[Step, ...]) -> None:
        for warning in self.plan.warnings:
            if warning not in self.report.warnings:
                self.report.warnings.append(warning)
                self.progress(f"{self.name}: warning: {warning}")
        for _ in range(_REPLANS):
            for step in steps:
                self.report.steps.append(step.describe())
                self.progress(f"{self.name}: step: {step.describe()}")
                group = self.step(group, step)
            if not steps or not isinstance(steps[-1], WaitTakeover):
                return
            # The takeover decided which standby is the active: the rest is planned from it.
            steps = plan(RollState(group, self.version), self.plan.options).steps
            rest = "; ".join(s.describe() for s in steps) or "nothing"
            self.progress(f"{self.name}: planned after the takeover: {rest}")
        raise ReplacementError("the roles keep changing during the roll", self.resource, "")

    def step(self, group: GroupInfo, step: Step) -> GroupInfo:
        if isinstance(step, PointGroup):
            self.point_group(step)
        elif isinstance(step, SuspendAzRebalance):
            self.doing = f"suspending {AZ_REBALANCE}"
            self.suspend_az_rebalance(group)
        elif isinstance(step, Replace):
            group = self.replace_one(group, step)
        elif isinstance(step, ReplaceActive):
            group = self.replace_active(group, step)
        elif isinstance(step, WaitTakeover):
            self.doing = "waiting for a standby to take over"
            group = self.wait_takeover(None, None)
        elif isinstance(step, Settle):
            group = self.settle(group)
        elif isinstance(step, ResumeAzRebalance):
            self.doing = f"resuming {AZ_REBALANCE}"
            self.resume_az_rebalance(group)
        return group

    def point_group(self, step: PointGroup) -> None:
        self.doing = f"pointing the group at launch template version {step.wanted}"
        self.mutate(
            self.asg.update_auto_scaling_group,
            AutoScalingGroupName=self.name,
            LaunchTemplate={"LaunchTemplateId": step.lt_id, "Version": step.wanted},
        )

    def targets(self) -> tuple[str, str]:
        if self.version is None or self.lt_id is None:  # only a dry run plans without them
            raise ReplacementError("no launch template version to roll onto", self.resource, "")
        return self.version, self.lt_id

    def replace_one(self, group: GroupInfo, step: Replace) -> GroupInfo:
        victim = group.find(step.instance.instance_id)
        if victim is None or victim.leaving:
            return group  # gone meanwhile (Auto Scaling replaced it): nothing left to do
        version, lt_id = self.targets()
        if step.how == "terminate":
            group = self.terminate_one(group, victim, version, lt_id)
        else:
            group = self.surge_one(group, victim, version, lt_id)
        self.record(victim, version, *_RECORDS[step.how])
        return group

    def record(self, victim: InstanceInfo, version: str, *details: str) -> None:
        self.report.replaced += 1
        head = (
            f"{victim.instance_type} on launch template version "
            f"{victim.launch_template_version} -> version {version}"
        )
        role = [f"role: {victim.role}"] if victim.role else []
        self.changes.append(
            Change(
                instance_resource(victim.instance_id, self.name),
                Action.UPDATE,
                (head, *role, *details),
            )
        )

    def settle(self, group: GroupInfo) -> GroupInfo:
        """Finish what a killed run left: in-flight instances, surplus, a takeover, sizes."""
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
        return self.grow_back(group, "left by an interrupted run")

    # -- the active, last

    def replace_active(self, group: GroupInfo, step: ReplaceActive) -> GroupInfo:
        """The active goes last: exactly one current standby waits when it is terminated."""
        active = group.find(step.instance.instance_id)
        if active is None or active.leaving:
            return group
        version, lt_id = self.targets()
        aid = active.instance_id
        group, sid = self.launch_successor(group, aid, version, lt_id)
        group = self.drop_other_standbys(group, aid, sid, version)
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

    def launch_successor(
        self, group: GroupInfo, aid: str, version: str, lt_id: str
    ) -> tuple[GroupInfo, str]:
        """A current standby InService to take over from `aid`: one found, one in flight, or
        one launched now (the group grows by one)."""
        found = successor(group, aid, lt_id, version)
        if found is not None:
            return group, found.instance_id
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
            return successor(g, aid, lt_id, version) is not None

        group = self.wait(
            f"a current standby to be InService before {aid} goes",
            ready,
            self._new_instances(before),
        )
        found = successor(group, aid, lt_id, version)
        assert found is not None
        return group, found.instance_id

    def drop_other_standbys(self, group: GroupInfo, aid: str, sid: str, version: str) -> GroupInfo:
        """Any other standby would race the successor for the heartbeat, and the loser exits
        (reference §10): they go before the active does. The group grows back after."""
        for extra in newest_first([i for i in group.members if i.instance_id not in (aid, sid)]):
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
                        instance_resource(extra.instance_id, self.name),
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
        return group

    def wait_takeover(self, old: str | None, successor: str | None) -> GroupInfo:
        """Until the old active is gone and a current instance reports active; with neither
        named (a takeover found under way), until any instance reports active."""

        def done(g: GroupInfo) -> bool:
            if successor is not None:
                s = g.find(successor)
                if s is None or s.leaving:
                    raise InstanceFailed(
                        f"the standby {successor} left the group before it took over",
                        self.resource,
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
