"""The replacement planner (datomic_aws.replace.plan): pure, so built from GroupInfo values here,
no AWS. The executor running these same steps is tested in test_replace.py."""

from __future__ import annotations

import dataclasses

import pytest

from datomic_aws import names, replace
from datomic_aws.changes import Action
from datomic_aws.replace import GroupInfo, InstanceInfo, Options, RollState

LT = "lt-0123456789abcdef0"


def inst(iid: str, version: str = "1", role: str | None = None, t: float = 0.0) -> InstanceInfo:
    return InstanceInfo(iid, "t3.micro", "us-east-1a", "InService", "Healthy", LT, version, role, t)


def group(*instances: InstanceInfo, desired: int | None = None, **kw: object) -> GroupInfo:
    n = len(instances)
    base = GroupInfo("g", n, n + 1, n if desired is None else desired, LT, "lt", "2", instances)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def steps(g: GroupInfo, target: int, version: str | None = "2", **kw: object) -> list[str]:
    return [
        type(s).__name__
        for s in replace.plan(RollState(g, version), Options(**kw, target_size=target)).steps
    ]  # type: ignore[arg-type]


def test_nothing_outdated_plans_nothing() -> None:
    assert steps(group(inst("i-a", "2"), inst("i-b", "2")), 2) == []


def test_an_ha_pair_surges_the_standby_then_the_active_goes_last() -> None:
    g = group(inst("i-a", role=names.ROLE_ACTIVE), inst("i-s", role=names.ROLE_STANDBY))
    p = replace.plan(RollState(g, "2"), Options(target_size=2))
    assert [type(s).__name__ for s in p.steps] == [
        "SuspendAzRebalance",
        "Replace",
        "ReplaceActive",
        "Settle",
        "ResumeAzRebalance",
    ]
    assert [i.instance_id for i in p.instances] == ["i-s", "i-a"]
    assert p.warnings == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.steps[1].how = "terminate"  # type: ignore[misc,union-attr]


def test_a_group_of_three_surges_one_standby_the_other_goes_just_before_the_active() -> None:
    g = group(
        inst("i-a", role=names.ROLE_ACTIVE),
        inst("i-s1", role=names.ROLE_STANDBY, t=1),
        inst("i-s2", role=names.ROLE_STANDBY, t=2),
    )
    p = replace.plan(RollState(g, "2"), Options(target_size=3))
    active = p.steps[2]
    assert isinstance(active, replace.ReplaceActive)
    assert [s.instance_id for s in active.standbys] == ["i-s1"]
    changes = replace.render(p)
    assert [c.resource.split()[2] for c in changes] == ["i-s2", "i-s1", "i-a"]
    assert any("AZRebalance would be suspended" in d for d in changes[0].details)
    assert any("never two standbys" in d for d in changes[1].details)
    assert any("go last" in d for d in changes[2].details)


def test_a_current_standby_already_serving_means_no_surge_before_the_active() -> None:
    g = group(inst("i-a", role=names.ROLE_ACTIVE), inst("i-new", "2", role=names.ROLE_STANDBY))
    assert steps(g, 2) == ["SuspendAzRebalance", "ReplaceActive", "Settle", "ResumeAzRebalance"]


def test_no_published_role_surges_newest_first_with_a_warning() -> None:
    g = group(inst("i-old", t=1), inst("i-new", t=2))
    p = replace.plan(RollState(g, "2"), Options(target_size=2))
    assert [i.instance_id for i in p.instances] == ["i-new", "i-old"]
    assert p.warnings == (replace.ROLES_UNKNOWN_WARNING,)


def test_terminate_takes_the_standbys_then_the_active() -> None:
    g = group(inst("i-a", role=names.ROLE_ACTIVE), inst("i-s", role=names.ROLE_STANDBY))
    p = replace.plan(RollState(g, "2"), Options("terminate", 2))
    assert [(type(s).__name__, getattr(s, "how", None)) for s in p.steps[1:3]] == [
        ("Replace", "terminate"),
        ("Replace", "terminate"),
    ]
    assert [i.instance_id for i in p.instances] == ["i-s", "i-a"]
    assert all(f"warning: {replace.TERMINATE_WARNING}" in c.details for c in replace.render(p))


def test_a_takeover_under_way_is_waited_for_and_nothing_planned_after_it() -> None:
    g = group(inst("i-s", role=names.ROLE_STANDBY), inst("i-t", role=names.ROLE_STANDBY))
    assert steps(g, 2) == ["SuspendAzRebalance", "WaitTakeover"]


def test_what_a_killed_run_left_is_settled_and_shown_in_a_dry_run() -> None:
    g = group(
        inst("i-a", "2"),
        desired=2,
        tags=((replace.AZ_TAG, "AZRebalance"), (replace.MAX_TAG, "1")),
        suspended_processes=("AZRebalance",),
    )
    p = replace.plan(RollState(g, "2"), Options(target_size=1))
    assert [type(s).__name__ for s in p.steps] == ["Settle", "ResumeAzRebalance"]
    assert [c.details for c in replace.render(p)] == [
        ("would restore desired capacity 2 -> 1",),
        ("would resume AZRebalance",),
    ]


def test_an_operator_suspended_az_rebalance_is_neither_suspended_nor_resumed() -> None:
    g = group(inst("i-a"), suspended_processes=("AZRebalance",))
    assert steps(g, 1) == ["Replace", "Settle"]


def test_a_drifted_group_is_pointed_first_and_without_roll_nothing_else() -> None:
    g = dataclasses.replace(group(inst("i-a", "2")), launch_template_version="1")
    p = replace.plan(RollState(g, "2", "$Latest"), Options(target_size=1, roll=False))
    assert p.describe() == (
        f"launch template {LT} version 1 -> 2 (drift: the stack declares $Latest = 2)",
    )
    (change,) = replace.render(p)
    assert (change.action, change.details) == (Action.UPDATE, p.describe())
    same = replace.plan(RollState(group(inst("i-a", "2")), "2", "2"), Options(target_size=1))
    assert [(c.action, c.details) for c in replace.render(same)] == [
        (Action.NOOP, ("launch template version 2",))
    ]


def test_a_version_the_stack_update_creates_makes_every_member_outdated() -> None:
    g = group(inst("i-a", "2", role=names.ROLE_ACTIVE), inst("i-s", "2", role=names.ROLE_STANDBY))
    p = replace.plan(RollState(g, None), Options(target_size=2))
    assert replace.render_pending(p).details == (
        "the launch template changes: 2 instance(s) would be replaced (surge): "
        "i-s (standby), i-a (active)",
    )
