"""The replacement's entry points: `replace_outdated` (read the group once, plan, then run the
plan or render it for a dry run), `execute` (run a plan, restoring the group on a failure or
Ctrl-C) and `ensure_group_version` (only the group's launch template setting).

Must not print (progress goes through `Timing.on_progress`) nor build clients (injected).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from datomic_aws.changes import Action, Change
from datomic_aws.errors import Interrupted, ReplacementError, WaitTimeout
from datomic_aws.replace.availability import Availability
from datomic_aws.replace.base import Timing
from datomic_aws.replace.group import (
    AZ_REBALANCE,
    STRATEGIES,
    GroupInfo,
    RollState,
    Strategy,
    read_state,
    resolve_version,
)
from datomic_aws.replace.plan import Options, Plan, PointGroup, Step, plan, render, version_change
from datomic_aws.replace.roll import Roll

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client

_SURPLUS_ROUNDS = 5


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
    receives what the roll measured (Availability), its warnings and its steps. A dry run
    renders the same plan (`report.steps` then lists the steps the run would take).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    if target_size < 1:
        raise ValueError("target_size must be >= 1")
    report = report if report is not None else Availability()
    state = read_state(asg, ec2, group_name)
    if state is None or state.group.launch_template_id is None:
        if dry_run:
            return []
        raise _unusable(group_name, state)
    the_plan = plan(state, Options(strategy, target_size))
    if dry_run:
        return dry_run_changes(the_plan, report, poll_interval)
    timing = Timing(timeout, poll_interval, on_progress, sleep, clock)
    return execute(asg, ec2, state, the_plan, timing, report)


def _unusable(group_name: str, state: RollState | None) -> ReplacementError:
    resource = f"autoscaling group {group_name}"
    if state is None:
        return ReplacementError(
            "the Auto Scaling group does not exist",
            resource,
            "check the stack's status and resources, then rerun update-stack",
        )
    return ReplacementError(
        "the group has no launch template (a launch configuration?)",
        resource,
        "recreate it from a template made by create-cf-template",
    )


def dry_run_changes(p: Plan, report: Availability, poll_interval: float) -> list[Change]:
    """The plan rendered; `report` gets its steps and warnings as a real run would."""
    report.group_size, report.poll_interval = p.options.target_size, poll_interval
    report.steps.extend(p.describe())
    report.warnings.extend(w for w in p.warnings if w not in report.warnings)
    return render(p)


def execute(
    asg: AutoScalingClient,
    ec2: EC2Client,
    state: RollState,
    p: Plan,
    timing: Timing,
    report: Availability,
) -> list[Change]:
    """Run the plan made from `state`. Pointing the group at the declared version comes first,
    outside the roll (nothing to restore if it fails). On a failure or Ctrl-C during the roll:
    when a new instance failed (abandoned, or never ready) the group is pointed back at the
    launch template version its outdated instances run; the sizes are restored (instances this
    roll launched that do not serve are terminated with a decrement; desired, a raised MaxSize
    and a lowered MinSize back) and AZRebalance resumed, before the error propagates. A kill
    runs nothing: the next run converges."""
    report.group_size, report.poll_interval = p.options.target_size, timing.poll_interval
    job = Roll(asg, ec2, p, timing, report)
    group = job.observe(state.group)
    out = [c for c in version_change(p) if c.action is Action.NOOP]
    point = tuple(s for s in p.steps if isinstance(s, PointGroup))
    if point:
        job.run(group, point)
        out.extend(c for c in version_change(p) if c.action is Action.UPDATE)
    roll = tuple(s for s in p.steps if not isinstance(s, PointGroup))
    if roll:
        _guarded(job, group, roll)
    return out + job.changes


def _guarded(job: Roll, group: GroupInfo, steps: tuple[Step, ...]) -> None:
    # Not `finally`: a kill runs no cleanup either, and the tests stand for one with a
    # BaseException that must leave AWS exactly as a kill would. Ctrl-C and errors do restore.
    try:
        job.run(group, steps)
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


def _restore_after_failure(job: Roll, *, new_instance_failed: bool) -> str | None:
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


def _read_or(job: Roll, group: GroupInfo) -> GroupInfo:
    try:
        return job.read()
    except Exception:
        return group


def ensure_group_version(
    asg: AutoScalingClient,
    ec2: EC2Client,
    group: GroupInfo,
    declared_version: str,
    *,
    dry_run: bool,
) -> Change:
    """Point the group at the launch template version the stack declares (the plan's
    PointGroup step alone; a NOOP change when it is there).

    CloudFormation moves the group itself on a stack update; finding it elsewhere means drift
    (someone changed it, or moto, which never moves it). The group is pinned to the resolved
    version *number*, never to `$Latest`: instances then report a number we can compare, and a
    later template version cannot start rolling the group behind the stack's back.
    """
    if group.launch_template_id is None:
        raise _unusable(group.name, RollState(group, None))
    wanted = resolve_version(ec2, group.launch_template_id, declared_version)
    p = plan(RollState(group, wanted, declared_version), Options(roll=False))
    if not dry_run and p.steps:
        execute(asg, ec2, RollState(group, wanted), p, Timing(), Availability())
    (change,) = version_change(p)
    return change
