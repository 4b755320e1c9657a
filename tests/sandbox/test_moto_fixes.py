"""The moto corrections the emulated transactors need (datomic_aws/sandbox/moto_fixes/), in
process (`mock_aws`): launch lifecycle hooks honoured (reference §11), hooks created from
`LifecycleHookSpecificationList`, an instance that powers itself off leaves its group and is
replaced. Each is shown needed: moto as it is behaves otherwise."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from datomic_aws.sandbox import moto_fixes

REGION = "us-east-1"
GROUP = "g"
HOOK = "transactor-listening"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


@pytest.fixture(autouse=True)
def lean_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Speed only: no 22,000 public AMIs registered in each fresh EC2 backend."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.fixture
def no_software() -> Iterator[list[moto_fixes.Launched]]:
    """Instances run nothing: a held instance stays in Pending:Wait until a test completes it."""
    launched: list[moto_fixes.Launched] = []
    moto_fixes.set_instance_software(launched.append)
    yield launched
    moto_fixes.set_instance_software(None)


def _template(shutdown: str | None = None) -> str:
    data: dict[str, Any] = {"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    if shutdown:
        data["InstanceInitiatedShutdownBehavior"] = shutdown
    return str(
        client("ec2").create_launch_template(LaunchTemplateName="t", LaunchTemplateData=data)[
            "LaunchTemplate"
        ]["LaunchTemplateId"]
    )


def _group(size: int = 1, timeout: int = 900, default: str = "ABANDON", **extra: Any) -> None:
    client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateId": _template(extra.pop("shutdown", None))},
        MinSize=0,
        MaxSize=size + 1,
        DesiredCapacity=size,
        AvailabilityZones=[f"{REGION}a"],
        LifecycleHookSpecificationList=[
            {
                "LifecycleHookName": HOOK,
                "LifecycleTransition": LAUNCHING,
                "HeartbeatTimeout": timeout,
                "DefaultResult": default,
            }
        ],
        **extra,
    )


def _states() -> dict[str, str]:
    (group,) = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ]
    return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}


def _complete(instance: str, result: str) -> None:
    client("autoscaling").complete_lifecycle_action(
        AutoScalingGroupName=GROUP,
        LifecycleHookName=HOOK,
        InstanceId=instance,
        LifecycleActionResult=result,
    )


def _ec2_state(instance: str) -> str:
    found = client("ec2").describe_instances(InstanceIds=[instance])["Reservations"]
    return str(found[0]["Instances"][0]["State"]["Name"])


@pytest.mark.usefixtures("unpatched_moto", "mocked_aws")
def test_without_the_correction_a_launch_hook_holds_nothing() -> None:
    _group()
    assert list(_states().values()) == ["InService"]
    with pytest.raises(Exception):  # noqa: B017 (moto: not implemented, no AWS error shape)
        _complete(next(iter(_states())), "CONTINUE")


@pytest.mark.usefixtures("patched_moto", "mocked_aws")
def test_a_launch_hook_holds_the_instance_until_continue(
    no_software: list[moto_fixes.Launched],
) -> None:
    _group()
    ((instance, state),) = _states().items()
    assert state == "Pending:Wait"
    # The software on the instance was handed its user data and the hook that holds it.
    assert [(x.instance_id, x.group, x.held_by_hook) for x in no_software] == [
        (instance, GROUP, HOOK)
    ]
    # Pending:Wait counts toward capacity: nothing else is launched meanwhile.
    client("autoscaling").set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=1)
    assert list(_states()) == [instance]
    client("autoscaling").record_lifecycle_action_heartbeat(
        AutoScalingGroupName=GROUP, LifecycleHookName=HOOK, InstanceId=instance
    )
    _complete(instance, "CONTINUE")
    assert _states() == {instance: "InService"}
    with pytest.raises(ClientError) as caught:  # no pending action any more
        _complete(instance, "CONTINUE")
    assert caught.value.response["Error"]["Code"] == "ValidationError"


@pytest.mark.usefixtures("patched_moto", "mocked_aws", "no_software")
def test_abandon_terminates_the_instance_and_the_group_launches_a_replacement() -> None:
    _group()
    (first,) = _states()
    _complete(first, "ABANDON")
    assert _ec2_state(first) == "terminated"
    ((second, state),) = _states().items()
    assert second != first
    assert state == "Pending:Wait"


@pytest.mark.usefixtures("patched_moto", "mocked_aws", "no_software")
def test_the_heartbeat_timeout_applies_the_default_result_and_a_heartbeat_extends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The lifecycle clock is stepped by hand: a loaded machine cannot stretch the test's seconds.
    clock = [1000.0]
    monkeypatch.setattr(moto_fixes.lifecycle, "now", lambda: clock[0])
    _group(timeout=10, default="CONTINUE")
    (instance,) = _states()
    clock[0] += 6
    moto_fixes.tick()
    client("autoscaling").record_lifecycle_action_heartbeat(
        AutoScalingGroupName=GROUP, LifecycleHookName=HOOK, InstanceId=instance
    )
    clock[0] += 6
    moto_fixes.tick()
    assert _states() == {instance: "Pending:Wait"}  # 12 s after launch, 6 s after the beat
    clock[0] += 5
    moto_fixes.tick()
    assert _states() == {instance: "InService"}  # the default result, CONTINUE, applied


@pytest.mark.usefixtures("patched_moto", "mocked_aws")
def test_with_no_software_a_held_instance_completes_at_once() -> None:
    _group(size=2)
    assert list(_states().values()) == ["InService", "InService"]


_STACK = {
    "Resources": {
        "LaunchTemplate": {
            "Type": "AWS::EC2::LaunchTemplate",
            "Properties": {
                "LaunchTemplateData": {"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
            },
        },
        "Group": {
            "Type": "AWS::AutoScaling::AutoScalingGroup",
            "Properties": {
                "AutoScalingGroupName": GROUP,
                "AvailabilityZones": [f"{REGION}a"],
                "LaunchTemplate": {
                    "LaunchTemplateId": {"Ref": "LaunchTemplate"},
                    "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]},
                },
                "MinSize": "1",
                "MaxSize": "2",
                "DesiredCapacity": "1",
                "LifecycleHookSpecificationList": [
                    {
                        "LifecycleHookName": HOOK,
                        "LifecycleTransition": LAUNCHING,
                        "HeartbeatTimeout": 900,
                        "DefaultResult": "ABANDON",
                    }
                ],
            },
        },
    }
}


def _stack_hooks() -> list[str]:
    client("cloudformation").create_stack(StackName="s", TemplateBody=json.dumps(_STACK))
    hooks = client("autoscaling").describe_lifecycle_hooks(AutoScalingGroupName=GROUP)
    return [h["LifecycleHookName"] for h in hooks["LifecycleHooks"]]


@pytest.mark.usefixtures("unpatched_moto", "mocked_aws")
def test_without_the_correction_cloudformation_creates_no_lifecycle_hook() -> None:
    assert _stack_hooks() == []


@pytest.mark.usefixtures("patched_moto", "mocked_aws")
def test_cloudformation_creates_the_hooks_before_the_first_instances_and_deletes_them(
    no_software: list[moto_fixes.Launched],
) -> None:
    assert _stack_hooks() == [HOOK]
    assert list(_states().values()) == ["Pending:Wait"]
    client("cloudformation").delete_stack(StackName="s")
    hooks = client("autoscaling").describe_lifecycle_hooks(AutoScalingGroupName=GROUP)
    assert hooks["LifecycleHooks"] == []


def _power_off_first(shutdown: str | None) -> tuple[str, str, dict[str, str]]:
    _group(shutdown=shutdown)
    (first,) = _states()
    _complete(first, "CONTINUE")
    moto_fixes.power_off("123456789012", REGION, first)
    return first, _ec2_state(first), _states()


@pytest.mark.usefixtures("unpatched_moto", "mocked_aws")
def test_without_the_correction_a_stopped_instance_stays_in_its_group() -> None:
    client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateId": _template()},
        MinSize=1,
        MaxSize=2,
        DesiredCapacity=1,
        AvailabilityZones=[f"{REGION}a"],
    )
    (first,) = _states()
    client("ec2").stop_instances(InstanceIds=[first])
    time.sleep(0.2)
    assert list(_states()) == [first]


@pytest.mark.usefixtures("patched_moto", "mocked_aws", "no_software")
@pytest.mark.parametrize(("shutdown", "state"), [("terminate", "terminated"), (None, "terminated")])
def test_an_instance_that_powers_itself_off_leaves_the_group_and_is_replaced(
    shutdown: str | None, state: str
) -> None:
    # With `terminate` it terminates at once; with the default `stop` it stops, and the group's
    # EC2 health check terminates and replaces it.
    first, ec2_state, members = _power_off_first(shutdown)
    assert ec2_state == state
    assert first not in members
    assert list(members.values()) == ["Pending:Wait"]


@pytest.mark.usefixtures("patched_moto", "mocked_aws", "no_software")
def test_instances_take_the_templates_shutdown_behaviour() -> None:
    _group(shutdown="terminate")
    (first,) = _states()
    attribute = client("ec2").describe_instance_attribute(
        InstanceId=first, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert attribute["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"


@pytest.mark.usefixtures("unpatched_moto", "mocked_aws")
def test_without_the_correction_terminating_an_instance_gone_from_its_group_is_no_aws_error() -> (
    None
):
    _group()
    (instance,) = _states()
    client("autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=instance, ShouldDecrementDesiredCapacity=True
    )
    # moto's bare next() fails: not the ValidationError AWS answers.
    with pytest.raises(StopIteration):
        client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=instance, ShouldDecrementDesiredCapacity=True
        )


@pytest.mark.usefixtures("patched_moto", "mocked_aws", "no_software")
def test_terminating_an_instance_gone_from_its_group_is_awss_validation_error() -> None:
    _group()
    (first,) = _states()
    _complete(first, "ABANDON")  # it leaves the group; the group launches another
    with pytest.raises(ClientError) as caught:
        client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=first, ShouldDecrementDesiredCapacity=True
        )
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert error["Message"] == (
        f"Instance Id not found - No managed instance found for instance ID: {first}"
    )
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


_WITH_OUTPUT = {
    "Resources": {
        "P": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Name": "out", "Type": "String", "Value": "v"},
        }
    },
    "Outputs": {"Name": {"Value": {"Ref": "P"}}, "Fixed": {"Value": "x"}},
}


def _outputs_after_change_set() -> dict[str, str] | None:
    cf = boto3.client("cloudformation", region_name="us-east-1")
    cf.create_change_set(
        StackName="s",
        ChangeSetName="c",
        ChangeSetType="CREATE",
        TemplateBody=json.dumps(_WITH_OUTPUT),
    )
    cf.execute_change_set(ChangeSetName="c", StackName="s")
    found = cf.describe_stacks(StackName="s")["Stacks"][0].get("Outputs")
    return None if found is None else {o["OutputKey"]: o["OutputValue"] for o in found}


@pytest.mark.usefixtures("unpatched_moto", "mocked_aws")
def test_without_the_correction_a_stack_made_by_a_change_set_has_no_outputs() -> None:
    assert _outputs_after_change_set() is None


@pytest.mark.usefixtures("patched_moto", "mocked_aws")
def test_a_stack_made_by_a_change_set_has_its_templates_outputs() -> None:
    found = _outputs_after_change_set()
    assert found == {"Name": "out", "Fixed": "x"}
