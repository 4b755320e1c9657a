"""The replacement planner: from one read of the group (`RollState`) and the options, the frozen
plan of a roll: a tuple of typed steps, each able to describe itself. The executor (roll.py) runs
exactly these steps; a dry run renders them (`render`). Pure: no AWS call, no clock, no printing.

The order (reference §10): outdated standbys first, each by surge; the active last, once a
current-version standby is InService and is the only standby left (the other outdated standbys
are terminated just before it goes), so exactly one standby takes over. Without published roles,
newest first, all by surge, with a warning. With `terminate`, each instance is terminated first
(standbys newest first, the active last). AZRebalance is suspended around the roll (reference
§11). What a killed run left (sizes, tags, a surplus, a takeover under way) is finished by
`Settle` and `ResumeAzRebalance`, planned from the tags it left on the group.

A takeover under way at planning time (roles published, nobody active) is planned as a wait and
nothing after it: which standby becomes active is not known before it happens, so the executor
plans the rest from the group the wait returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from datomic_aws.changes import Action, Change
from datomic_aws.names import ROLE_ACTIVE, ROLE_STANDBY
from datomic_aws.replace.group import (
    AZ_REBALANCE,
    AZ_TAG,
    MAX_TAG,
    MIN_TAG,
    ROLES_UNKNOWN_WARNING,
    TERMINATE_WARNING,
    GroupInfo,
    InstanceInfo,
    RollState,
    Strategy,
    current,
    newest_first,
    successor,
)

# How one instance is replaced: surge (launch first; `surge-standby` when roles are published)
# or terminate first.
How = Literal["surge", "surge-standby", "terminate"]

_HOW = {
    "surge": "launch a replacement first, then terminate it",
    "surge-standby": "launch a replacement standby first, then terminate it",
    "terminate": "terminate it, then wait for the replacement",
}
_EXTRA = (
    "be terminated before the active goes (never two standbys waiting); the group grows back "
    "to its size after the takeover"
)
_ACTIVE = (
    "go last, once a current-version standby is InService and is the only standby: terminated "
    "with a decrement, the standby takes over (one failover)"
)


@dataclass(frozen=True)
class Options:
    strategy: Strategy = "surge"
    target_size: int = 1  # the stack's GroupSize: the size the group ends at
    roll: bool = True  # False: only point the group at the declared version


def _head(i: InstanceInfo, version: str | None) -> str:
    return (
        f"{i.instance_type} on launch template version {i.launch_template_version} "
        f"-> version {version or '(the one the stack update creates)'}"
    )


@dataclass(frozen=True)
class PointGroup:
    """The group onto the version the stack declares (drift: CloudFormation moves it itself)."""

    lt_id: str
    setting: str | None
    wanted: str
    declared: str

    def describe(self) -> str:
        same = f" = {self.wanted}" if self.declared != self.wanted else ""
        return (
            f"launch template {self.lt_id} version {self.setting or '$Default'} -> "
            f"{self.wanted} (drift: the stack declares {self.declared}{same})"
        )


@dataclass(frozen=True)
class SuspendAzRebalance:
    def describe(self) -> str:
        return f"suspend {AZ_REBALANCE} for the roll"


@dataclass(frozen=True)
class Replace:
    """One instance replaced by surge or terminate-first."""

    instance: InstanceInfo
    version: str | None
    how: How

    def describe(self) -> str:
        i = self.instance
        return f"replace {i.instance_id} ({i.role or 'role not published'}): {_HOW[self.how]}"


@dataclass(frozen=True)
class ReplaceActive:
    """The outdated active, last; `standbys` (outdated) go just before it, so that one current
    standby waits when it is terminated."""

    instance: InstanceInfo
    standbys: tuple[InstanceInfo, ...]
    version: str | None
    grow_back: bool

    def describe(self) -> str:
        first = "".join(f"terminate the standby {s.instance_id}, " for s in self.standbys)
        grow = ", then grow the group back to its size" if self.grow_back else ""
        return (
            f"replace the active {self.instance.instance_id}: {first}terminate it once one "
            f"current standby is InService; the standby takes over{grow}"
        )


@dataclass(frozen=True)
class WaitTakeover:
    def describe(self) -> str:
        return "wait for a standby to take over (no instance reports active), then plan the rest"


@dataclass(frozen=True)
class Settle:
    """Back to the group size: a surplus removed, a takeover under way waited for, desired and a
    raised MaxSize / lowered MinSize restored, missing instances waited for."""

    target: int
    desired: int
    leftover_sizes: bool  # a killed run left the sizes or their tags: shown in a dry run

    def describe(self) -> str:
        return f"bring the group back to its size {self.target}"


@dataclass(frozen=True)
class ResumeAzRebalance:
    def describe(self) -> str:
        return f"resume {AZ_REBALANCE}"


Step = (
    PointGroup
    | SuspendAzRebalance
    | Replace
    | ReplaceActive
    | WaitTakeover
    | Settle
    | ResumeAzRebalance
)


@dataclass(frozen=True)
class Plan:
    group: str
    lt_id: str | None
    version: str | None  # the version number the roll brings (None: not created yet)
    declared: str | None  # the stack's setting, when the plan also checks the group's
    options: Options
    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()

    def describe(self) -> tuple[str, ...]:
        return tuple(s.describe() for s in self.steps)

    @property
    def instances(self) -> tuple[InstanceInfo, ...]:
        """The instances replaced, in the order the roll takes them."""
        out: list[InstanceInfo] = []
        for s in self.steps:
            if isinstance(s, Replace):
                out.append(s.instance)
            elif isinstance(s, ReplaceActive):
                out.extend([*s.standbys, s.instance])
        return tuple(out)


def plan(state: RollState, options: Options) -> Plan:
    g, version = state.group, state.version
    steps: list[Step] = []
    lt_id, setting, declared = g.launch_template_id, g.launch_template_version, state.declared
    if declared is not None and lt_id is not None and version is not None and setting != version:
        steps.append(PointGroup(lt_id, setting, version, declared))
    roll = _roll(g, version, options) if options.roll and g.launch_template_id else []
    ours = bool(roll) and AZ_REBALANCE not in g.suspended_processes
    if ours:
        steps.append(SuspendAzRebalance())
    steps.extend(roll)
    if options.roll and not (roll and isinstance(roll[-1], WaitTakeover)):
        leftover = _leftover_sizes(g, options.target_size)
        if roll or leftover or _unsettled(g, options.target_size):
            steps.append(Settle(options.target_size, g.desired_capacity, leftover))
        if ours or g.tag(AZ_TAG) is not None:
            steps.append(ResumeAzRebalance())
    warnings = (ROLES_UNKNOWN_WARNING,) if any(_blind(s) for s in roll) else ()
    return Plan(
        g.name, g.launch_template_id, version, state.declared, options, tuple(steps), warnings
    )


def _blind(step: Step) -> bool:
    return isinstance(step, Replace) and step.how == "surge"


def _roll(g: GroupInfo, version: str | None, options: Options) -> list[Step]:
    outdated = [i for i in g.members if not current(i, g.launch_template_id, version)]
    if not outdated:
        return []
    old_active = [i for i in outdated if i.role == ROLE_ACTIVE]
    standbys = newest_first([i for i in outdated if i.role != ROLE_ACTIVE])
    if options.strategy == "terminate":
        return [Replace(i, version, "terminate") for i in [*standbys, *old_active]]
    if not g.roles_known:
        return [Replace(i, version, "surge") for i in newest_first(outdated)]
    if not g.with_role(ROLE_ACTIVE):
        return [WaitTakeover()]  # never pick a victim blind during a takeover
    steps: list[Step] = []
    if not old_active:
        return [Replace(i, version, "surge-standby") for i in standbys]
    active = old_active[0]
    if standbys and successor(g, active.instance_id, g.launch_template_id, version) is None:
        steps.append(Replace(standbys[0], version, "surge-standby"))
        standbys = standbys[1:]
    grow = options.target_size > 1
    return [*steps, ReplaceActive(active, tuple(standbys), version, grow)]


def _leftover_sizes(g: GroupInfo, target: int) -> bool:
    return g.desired_capacity != target or any(g.tag(k) is not None for k in (MAX_TAG, MIN_TAG))


def _unsettled(g: GroupInfo, target: int) -> bool:
    """A surplus or a missing member, or a takeover under way (a standby, or the MinSize a
    killed run lowered to terminate the active, and nobody active)."""
    in_takeover = g.with_role(ROLE_STANDBY) or g.tag(MIN_TAG) is not None
    takeover = bool(g.members) and bool(in_takeover) and not g.with_role(ROLE_ACTIVE)
    return len(g.members) != target or takeover


# --- rendering a dry run --------------------------------------------------------------------


def _resource(group: str) -> str:
    return f"autoscaling group {group}"


def instance_resource(instance_id: str, group: str) -> str:
    return f"ec2 instance {instance_id} ({group})"


def version_change(p: Plan) -> list[Change]:
    """The group's launch template setting, when the plan checks it: a drift to correct
    (the PointGroup step) or nothing to do."""
    if p.declared is None or p.version is None:
        return []
    point = [s for s in p.steps if isinstance(s, PointGroup)]
    if point:
        return [Change(_resource(p.group), Action.UPDATE, (point[0].describe(),))]
    return [Change(_resource(p.group), Action.NOOP, (f"launch template version {p.version}",))]


def render(p: Plan) -> list[Change]:
    """The dry run's changes: the same steps the executor runs, one Change per instance."""
    out = version_change(p)
    suspend = any(isinstance(s, SuspendAzRebalance) for s in p.steps)
    n = 0
    for s in p.steps:
        if isinstance(s, Replace):
            out.append(_instance_change(p, s.instance, _HOW[s.how], n == 0 and suspend))
            n += 1
        elif isinstance(s, ReplaceActive):
            for extra in s.standbys:
                out.append(_instance_change(p, extra, _EXTRA, n == 0 and suspend))
                n += 1
            grow = "; the group then grows back to its size" if s.grow_back else ""
            out.append(_instance_change(p, s.instance, _ACTIVE + grow, n == 0 and suspend))
            n += 1
        elif isinstance(s, WaitTakeover):
            out.append(Change(_resource(p.group), Action.UPDATE, (f"would {s.describe()}",)))
        elif isinstance(s, Settle) and s.leftover_sizes:
            detail = f"would restore desired capacity {s.desired} -> {s.target}"
            out.append(Change(_resource(p.group), Action.UPDATE, (detail,)))
        elif isinstance(s, ResumeAzRebalance) and not p.instances:
            out.append(Change(_resource(p.group), Action.UPDATE, (f"would {s.describe()}",)))
    return out


def _instance_change(p: Plan, i: InstanceInfo, how: str, first: bool) -> Change:
    details = [_head(i, p.version), f"role: {i.role or 'not published'}", f"would {how}"]
    if p.options.strategy == "terminate":
        details.append(f"warning: {TERMINATE_WARNING}")
    if first:
        details.append(f"{AZ_REBALANCE} would be suspended for the roll and resumed after")
    return Change(instance_resource(i.instance_id, p.group), Action.UPDATE, tuple(details))


def render_pending(p: Plan) -> Change:
    """A dry run whose stack update changes the launch template: the instances it would
    replace, in the plan's order."""
    members = [i.instance_id + (f" ({i.role})" if i.role else "") for i in p.instances]
    return Change(
        _resource(p.group),
        Action.UPDATE,
        (
            f"the launch template changes: {len(members)} instance(s) would be replaced "
            f"({p.options.strategy}): {', '.join(members)}",
        ),
    )
