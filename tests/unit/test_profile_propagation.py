"""resources/iam.py: an instance profile this run created or gave its role is waited for until
IAM shows it holding the role (reference §11: IAM is eventually consistent, and EC2/Auto Scaling
refuse the profile until then), with a bounded back-off; a run that wrote nothing waits for nothing.

Stubber pinned to exact parameters, with IAM's real answers during the window:
- GetInstanceProfile on a profile not visible yet: `NoSuchEntity`, HTTP 404, "Instance Profile
  <name> cannot be found." (the AWS CLI's own output, e.g. "An error occurred (NoSuchEntity) when
  calling the GetInstanceProfile operation: Instance Profile bigdata_ec2_profile cannot be found.",
  quoted in public READMEs; botocore's iam waiters-2.json `InstanceProfileExists` waiter retries
  GetInstanceProfile on exactly that 404);
- a profile read before AddRoleToInstanceProfile is visible: the profile with `Roles: []` (the
  state terraform users report for a profile whose role is missing, hashicorp/terraform#7198).
The clock and the sleep are injected: nothing really sleeps.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from datomic_aws import names
from datomic_aws.errors import ExitCode, WaitTimeout
from datomic_aws.policies import TRUST_POLICY
from datomic_aws.resources.iam import (
    ProfileState,
    ProfileWait,
    RoleAndProfile,
    RoleSpec,
    RoleState,
    execute_role,
    plan_role,
)
from tests.clock import FakeClock

SYSTEM = "prod"
ROLE = names.transactor_role(SYSTEM)
ACCOUNT = "123456789012"
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
SPEC = RoleSpec(ROLE, SYSTEM, False, {}, "test role")


def _stub() -> Stubber:
    return Stubber(boto3.client("iam", region_name="us-east-1"))


def _wait(clock: FakeClock, timeout: float = 60.0) -> ProfileWait:
    return ProfileWait(timeout=timeout, clock=clock, sleep=clock.sleep)


def _role(name: str = ROLE) -> dict[str, Any]:
    return {
        "Path": "/",
        "RoleName": name,
        "RoleId": "AROAEXAMPLEEXAMPLE01",
        "Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}",
        "CreateDate": T0,
        "AssumeRolePolicyDocument": "{}",
    }


def _profile(roles: list[str]) -> dict[str, Any]:
    return {
        "InstanceProfile": {
            "Path": "/",
            "InstanceProfileName": ROLE,
            "InstanceProfileId": "AIPAEXAMPLEEXAMPLE01",
            "Arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{ROLE}",
            "CreateDate": T0,
            "Roles": [_role(r) for r in roles],
            "Tags": names.tag_list(SYSTEM),
        }
    }


def _not_found(stub: Stubber) -> None:
    stub.add_client_error(
        "get_instance_profile",
        service_error_code="NoSuchEntity",
        service_message=f"Instance Profile {ROLE} cannot be found.",
        http_status_code=404,
        expected_params={"InstanceProfileName": ROLE},
    )


def _found(stub: Stubber, roles: list[str]) -> None:
    stub.add_response("get_instance_profile", _profile(roles), {"InstanceProfileName": ROLE})


def _creates(stub: Stubber) -> None:
    """CreateRole, CreateInstanceProfile, AddRoleToInstanceProfile: a first run's writes."""
    stub.add_response(
        "create_role",
        {"Role": _role()},
        {
            "RoleName": ROLE,
            "AssumeRolePolicyDocument": ANY,
            "Description": "test role",
            "Tags": names.tag_list(SYSTEM),
        },
    )
    stub.add_response(
        "create_instance_profile",
        _profile([]),
        {"InstanceProfileName": ROLE, "Tags": names.tag_list(SYSTEM)},
    )
    stub.add_response(
        "add_role_to_instance_profile", {}, {"InstanceProfileName": ROLE, "RoleName": ROLE}
    )


def _first_run_plan() -> Any:
    return plan_role(SPEC, RoleAndProfile(None, None), adopt=False)


def test_a_new_profile_is_waited_for_until_iam_shows_it_with_its_role() -> None:
    stub = _stub()
    _creates(stub)
    _not_found(stub)  # NoSuchEntity: the new profile not visible yet
    _not_found(stub)
    _found(stub, [])  # visible, the role not yet
    _found(stub, [ROLE])
    clock = FakeClock()
    with stub:
        execute_role(stub.client, _first_run_plan(), _wait(clock))
    stub.assert_no_pending_responses()
    # A doubling back-off between the four reads.
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_a_role_added_to_an_existing_profile_is_waited_for() -> None:
    stub = _stub()
    stub.add_response(
        "add_role_to_instance_profile", {}, {"InstanceProfileName": ROLE, "RoleName": ROLE}
    )
    _found(stub, [])
    _found(stub, [ROLE])
    clock = FakeClock()
    state = RoleAndProfile(None, ProfileState(names.tags(SYSTEM), ()))
    plan = plan_role(SPEC, state, adopt=False)
    # The role itself is new too; only the profile's part is stubbed here.
    profile_only = type(plan)(plan.resource, plan.action, plan.operations[1:])
    with stub:
        execute_role(stub.client, profile_only, _wait(clock))
    stub.assert_no_pending_responses()
    assert clock.sleeps == [1.0]


def test_the_wait_gives_up_after_its_bound_with_a_clear_error() -> None:
    stub = _stub()
    _creates(stub)
    clock = FakeClock()
    # 1 + 2 + 4 + 8 + 8 + 7 (the rest of the bound) = 30 seconds: seven reads.
    for _ in range(7):
        _not_found(stub)
    with stub, pytest.raises(WaitTimeout) as caught:
        execute_role(stub.client, _first_run_plan(), _wait(clock, timeout=30.0))
    stub.assert_no_pending_responses()
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0, 7.0]
    assert clock.now == 30.0
    error = caught.value
    assert error.exit_code is ExitCode.FAILURE
    (line,) = error.lines()
    assert f"iam instance profile {ROLE}" in line
    assert "not found 30s after" in line and "eventually consistent" in line
    assert "rerun the same command" in line


def test_the_wait_that_sees_the_profile_without_its_role_says_so() -> None:
    stub = _stub()
    stub.add_response(
        "add_role_to_instance_profile", {}, {"InstanceProfileName": ROLE, "RoleName": ROLE}
    )
    for _ in range(3):
        _found(stub, [])
    clock = FakeClock()
    state = RoleAndProfile(None, ProfileState(names.tags(SYSTEM), ()))
    plan = plan_role(SPEC, state, adopt=False)
    profile_only = type(plan)(plan.resource, plan.action, plan.operations[1:])
    with stub, pytest.raises(WaitTimeout, match="found without the role 3s after"):
        execute_role(stub.client, profile_only, _wait(clock, timeout=3.0))
    stub.assert_no_pending_responses()


def test_a_run_that_wrote_no_profile_waits_for_nothing() -> None:
    """A role policy changed, the profile as it was: no GetInstanceProfile, no sleep (a no-op
    run keeps its call counts)."""
    stub = _stub()
    stub.add_response(
        "put_role_policy",
        {},
        {"RoleName": ROLE, "PolicyName": "p", "PolicyDocument": ANY},
    )
    spec = RoleSpec(ROLE, SYSTEM, False, {"p": {"Version": "2012-10-17"}}, "test role")
    current = RoleState(names.tags(SYSTEM), dict(TRUST_POLICY), {})
    plan = plan_role(
        spec, RoleAndProfile(current, ProfileState(names.tags(SYSTEM), (ROLE,))), adopt=False
    )
    clock = FakeClock()
    with stub:
        execute_role(stub.client, plan, _wait(clock))
    stub.assert_no_pending_responses()
    assert clock.sleeps == []
