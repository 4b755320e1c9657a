"""Instance replacement (datomic_aws.replace) and the moto corrections it relies on (sandbox.moto_fixes).

moto in-process for the flows (it is synchronous: instances are InService at once, so every
InService count is observed after each call); botocore Stubber for what moto cannot show:
Pending:Wait, a replacement that dies before serving, a timeout. Time is fake throughout.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from conftest import CallRecorder, SimulatedCrash

from datomic_aws import names, replace
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from datomic_aws.errors import (
    AwsCallError,
    ExitCode,
    Interrupted,
    ReplacementError,
    WaitTimeout,
)
from datomic_aws.sandbox import moto_fixes as sandbox_moto

REGION = "us-east-1"
GROUP = "datomic-test-transactors"
AMI_PARAM = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
OLD_TYPE, NEW_TYPE = "t3.micro", "t3.small"
# Every roll suspends AZRebalance (tag first, so a rerun resumes it) and resumes it after.
AZ_SUSPEND = ["autoscaling:CreateOrUpdateTags", "autoscaling:SuspendProcesses"]
AZ_RESUME = ["autoscaling:ResumeProcesses", "autoscaling:DeleteTags"]


def client(service: str, region: str = REGION, endpoint_url: str | None = None) -> Any:
    """A plain client (not recorded, typed loosely: the stubs' literals get in a test's way)."""
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)  # type: ignore[call-overload]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.ticks: list[Any] = []  # called on every sleep: what happens while we wait

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for tick in self.ticks:
            tick()

    def clock(self) -> float:
        return self.now


class InServicePoller:
    """After every Auto Scaling call, counts the group's InService instances with a client of
    its own. moto changes state only inside calls, so this sees every moment there is."""

    def __init__(self) -> None:
        self.counts: list[int] = []
        self._client: Any = None

    def __call__(self, **_: Any) -> None:
        if self._client is None:
            self._client = client("autoscaling")
        groups = self._client.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
        for g in groups["AutoScalingGroups"]:
            self.counts.append(
                sum(
                    1
                    for i in g["Instances"]
                    if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"
                )
            )


@pytest.fixture
def poller() -> InServicePoller:
    return InServicePoller()


@pytest.fixture
def aws(mocked_aws: None, recorder: CallRecorder, poller: InServicePoller) -> AwsContext:
    return AwsContext(hooks=[("before-call.*.*", recorder), ("after-call.autoscaling.*", poller)])


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


# --- building a group with plain boto3 clients (not recorded) ----------------------------------


def build_group(size: int, max_size: int) -> str:
    ssm = client("ssm")
    ec2 = client("ec2")
    asg = client("autoscaling")
    ami = ssm.get_parameter(Name=AMI_PARAM)["Parameter"]["Value"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["DefaultForAz"]]
    lt = ec2.create_launch_template(
        LaunchTemplateName="datomic-test",
        LaunchTemplateData={"ImageId": ami, "InstanceType": OLD_TYPE},
    )["LaunchTemplate"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        MinSize=size,
        MaxSize=max_size,
        DesiredCapacity=size,
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "1"},
        VPCZoneIdentifier=",".join(subnets[:2]),
    )
    return str(lt["LaunchTemplateId"])


def new_version(lt_id: str, *, move_group: bool = True) -> str:
    ec2 = client("ec2")
    number = str(
        ec2.create_launch_template_version(
            LaunchTemplateId=lt_id, SourceVersion="1", LaunchTemplateData={"InstanceType": NEW_TYPE}
        )["LaunchTemplateVersion"]["VersionNumber"]
    )
    if move_group:
        client("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName=GROUP,
            LaunchTemplate={"LaunchTemplateId": lt_id, "Version": number},
        )
    return number


def snapshot() -> dict[str, Any]:
    g = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ][0]
    return {
        "sizes": (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]),
        "types": sorted(i["InstanceType"] for i in g["Instances"]),
        "versions": sorted(i["LaunchTemplate"]["Version"] for i in g["Instances"]),
        "tags": {t["Key"] for t in g.get("Tags", [])},
    }


def run(aws: AwsContext, fake_time: FakeTime, target: int, **kwargs: Any) -> list[Any]:
    progress: list[str] = kwargs.pop("progress", [])
    return replace.replace_outdated(
        aws.client("autoscaling", REGION),
        aws.client("ec2", REGION),
        GROUP,
        target_size=target,
        timeout=600,
        poll_interval=5,
        on_progress=progress.append,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        **kwargs,
    )


# --- reading and the group's version ----------------------------------------------------------


@pytest.mark.usefixtures("patched_moto")
def test_read_group_reports_sizes_template_and_each_instance(aws: AwsContext) -> None:
    lt_id = build_group(2, 3)
    group = replace.read_group(aws.client("autoscaling", REGION), GROUP)
    assert group is not None
    assert (group.min_size, group.max_size, group.desired_capacity) == (2, 3, 2)
    assert (group.launch_template_id, group.launch_template_name) == (lt_id, "datomic-test")
    assert group.launch_template_version == "1"
    assert len(group.instances) == 2
    for i in group.instances:
        assert (i.instance_type, i.lifecycle_state, i.health_status) == (
            OLD_TYPE,
            "InService",
            "Healthy",
        )
        assert (i.launch_template_id, i.launch_template_version) == (lt_id, "1")
        assert i.availability_zone.startswith(REGION)
    assert replace.read_group(aws.client("autoscaling", REGION), "nope") is None


@pytest.mark.usefixtures("patched_moto")
def test_ensure_group_version_moves_a_drifted_group_then_is_a_noop(
    aws: AwsContext, recorder: CallRecorder
) -> None:
    lt_id = build_group(1, 2)
    new_version(lt_id, move_group=False)  # what moto does on a stack update
    asg, ec2 = aws.client("autoscaling", REGION), aws.client("ec2", REGION)

    group = replace.read_group(asg, GROUP)
    assert group is not None
    planned = replace.ensure_group_version(asg, ec2, group, "$Latest", dry_run=True)
    assert planned.action is Action.UPDATE and recorder.mutating == []

    change = replace.ensure_group_version(asg, ec2, group, "$Latest", dry_run=False)
    assert change.action is Action.UPDATE
    assert "drift" in change.details[0] and "1 -> 2" in change.details[0]
    assert recorder.mutating == ["autoscaling:UpdateAutoScalingGroup"]
    moved = replace.read_group(asg, GROUP)
    assert moved is not None and moved.launch_template_version == "2"  # pinned to the number

    recorder.operations.clear()
    again = replace.ensure_group_version(asg, ec2, moved, "2", dry_run=False)
    assert again.action is Action.NOOP and recorder.mutating == []

    with pytest.raises(ReplacementError, match="does not exist"):
        replace.ensure_group_version(asg, ec2, moved, "7", dry_run=False)


# --- surge ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("patched_moto")
def test_surge_group_of_one_launches_before_it_terminates(
    aws: AwsContext, recorder: CallRecorder, poller: InServicePoller, fake_time: FakeTime
) -> None:
    new_version(build_group(1, 2))
    progress: list[str] = []

    changes = run(aws, fake_time, 1, progress=progress)

    assert recorder.mutating == [
        *AZ_SUSPEND,
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        *AZ_RESUME,
    ]
    assert min(poller.counts) >= 1
    assert snapshot() == {"sizes": (1, 2, 1), "types": [NEW_TYPE], "versions": ["2"], "tags": set()}
    assert [c.action for c in changes] == [Action.UPDATE]
    assert changes[0].resource.startswith("ec2 instance i-")
    assert any("launching a replacement" in line for line in progress)


@pytest.mark.usefixtures("patched_moto")
def test_surge_group_of_two_replaces_one_at_a_time_never_below_two(
    aws: AwsContext, recorder: CallRecorder, poller: InServicePoller, fake_time: FakeTime
) -> None:
    new_version(build_group(2, 3))

    changes = run(aws, fake_time, 2)

    assert recorder.mutating == [
        *AZ_SUSPEND,
        *["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"] * 2,
        *AZ_RESUME,
    ]
    assert min(poller.counts) >= 2
    assert snapshot()["sizes"] == (2, 3, 2)
    assert snapshot()["types"] == [NEW_TYPE, NEW_TYPE]
    assert len(changes) == 2 and len({c.resource for c in changes}) == 2


@pytest.mark.usefixtures("patched_moto")
def test_surge_raises_max_size_for_the_replacement_and_lowers_it_after(
    aws: AwsContext, recorder: CallRecorder, poller: InServicePoller, fake_time: FakeTime
) -> None:
    new_version(build_group(1, 1))

    changes = run(aws, fake_time, 1)

    assert recorder.mutating == [
        *AZ_SUSPEND,
        "autoscaling:CreateOrUpdateTags",  # the original MaxSize, for a rerun after a kill
        "autoscaling:UpdateAutoScalingGroup",  # MaxSize and DesiredCapacity 2
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:UpdateAutoScalingGroup",  # MaxSize back to 1
        "autoscaling:DeleteTags",
        *AZ_RESUME,
    ]
    assert min(poller.counts) >= 1
    assert snapshot() == {"sizes": (1, 1, 1), "types": [NEW_TYPE], "versions": ["2"], "tags": set()}
    assert any("max size 2 -> 1" in d for c in changes for d in c.details)


@pytest.mark.usefixtures("patched_moto")
def test_a_rerun_and_an_up_to_date_group_make_no_mutating_call(
    aws: AwsContext, recorder: CallRecorder, fake_time: FakeTime
) -> None:
    new_version(build_group(2, 3))
    run(aws, fake_time, 2)
    recorder.operations.clear()

    assert run(aws, fake_time, 2) == []
    assert run(aws, fake_time, 2, strategy="terminate") == []
    assert recorder.mutating == []
    assert recorder.operations  # it did look


@pytest.mark.usefixtures("patched_moto")
def test_dry_run_lists_each_outdated_instance_and_changes_nothing(
    aws: AwsContext, recorder: CallRecorder, fake_time: FakeTime
) -> None:
    new_version(build_group(2, 3))
    before = snapshot()

    plan = run(aws, fake_time, 2, dry_run=True)

    assert [c.action for c in plan] == [Action.UPDATE, Action.UPDATE]
    assert all("version 1 -> version 2" in c.details[0] for c in plan)
    assert recorder.mutating == [] and snapshot() == before


# --- terminate strategy --------------------------------------------------------------------


@pytest.mark.usefixtures("patched_moto")
def test_terminate_strategy_terminates_without_decrement_and_warns(
    aws: AwsContext, recorder: CallRecorder, fake_time: FakeTime
) -> None:
    new_version(build_group(2, 3))

    changes = run(aws, fake_time, 2, strategy="terminate")

    assert recorder.mutating == [
        *AZ_SUSPEND,
        *["autoscaling:TerminateInstanceInAutoScalingGroup"] * 2,
        *AZ_RESUME,
    ]
    assert snapshot() == {
        "sizes": (2, 3, 2),
        "types": [NEW_TYPE, NEW_TYPE],
        "versions": ["2", "2"],
        "tags": set(),
    }
    assert all(replace.TERMINATE_WARNING in " ".join(c.details) for c in changes)


# --- the update-stack sequence on a CloudFormation stack --------------------------------------


def _stack_template(instance_type: str, subnet: str, ami: str) -> str:
    return json.dumps(
        {
            "Resources": {
                "LaunchTemplate": {
                    "Type": "AWS::EC2::LaunchTemplate",
                    "Properties": {
                        "LaunchTemplateData": {"ImageId": ami, "InstanceType": instance_type}
                    },
                },
                "Group": {
                    "Type": "AWS::AutoScaling::AutoScalingGroup",
                    "Properties": {
                        "AutoScalingGroupName": GROUP,
                        "MinSize": "2",
                        "MaxSize": "3",
                        "DesiredCapacity": "2",
                        "VPCZoneIdentifier": [subnet],
                        "LaunchTemplate": {
                            "LaunchTemplateId": {"Ref": "LaunchTemplate"},
                            "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]},
                        },
                    },
                },
            }
        }
    )


@pytest.mark.usefixtures("patched_moto")
def test_after_a_stack_update_the_group_is_moved_and_every_instance_replaced(
    aws: AwsContext, poller: InServicePoller, fake_time: FakeTime
) -> None:
    ami = client("ssm").get_parameter(Name=AMI_PARAM)["Parameter"]["Value"]
    subnet = client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    cfn = client("cloudformation")
    cfn.create_stack(StackName="datomic-test", TemplateBody=_stack_template(OLD_TYPE, subnet, ami))
    cfn.update_stack(StackName="datomic-test", TemplateBody=_stack_template(NEW_TYPE, subnet, ami))
    asg, ec2 = aws.client("autoscaling", REGION), aws.client("ec2", REGION)
    group = replace.read_group(asg, GROUP)
    assert group is not None and group.launch_template_version == "1"  # moto did not move it

    moved = replace.ensure_group_version(asg, ec2, group, "$Latest", dry_run=False)
    changes = run(aws, fake_time, 2)

    assert moved.action is Action.UPDATE and len(changes) == 2
    assert snapshot()["types"] == [NEW_TYPE, NEW_TYPE] and snapshot()["sizes"] == (2, 3, 2)
    assert min(poller.counts) >= 2


# --- kills, failures, Ctrl-C ---------------------------------------------------------------


# Group of 2 at MaxSize 2, so the run raises MaxSize too: tag, suspend AZRebalance, tag, raise,
# terminate, surge, terminate, lower, untag, resume, untag = 11 mutating calls; a kill before
# each one.
@pytest.mark.usefixtures("patched_moto")
@pytest.mark.parametrize("kill_at", range(1, 12))
def test_a_kill_at_any_write_then_a_rerun_converges(
    aws: AwsContext,
    recorder: CallRecorder,
    poller: InServicePoller,
    fake_time: FakeTime,
    kill_at: int,
) -> None:
    new_version(build_group(2, 2))
    recorder.fail_at = kill_at
    with pytest.raises(SimulatedCrash):
        run(aws, fake_time, 2)

    recorder.fail_at = None
    run(aws, fake_time, 2)

    assert snapshot() == {
        "sizes": (2, 2, 2),
        "types": [NEW_TYPE, NEW_TYPE],
        "versions": ["2", "2"],
        "tags": set(),
    }
    assert suspended() == []  # AZRebalance resumed
    assert min(poller.counts) >= 2
    recorder.operations.clear()
    assert run(aws, fake_time, 2) == [] and recorder.mutating == []


@pytest.mark.usefixtures("patched_moto")
def test_a_rerun_after_a_kill_trusts_target_size_not_desired_capacity(
    aws: AwsContext, recorder: CallRecorder, poller: InServicePoller, fake_time: FakeTime
) -> None:
    new_version(build_group(1, 2))
    # A killed run left desired 2: one old and one new instance, both InService.
    client("autoscaling").set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)

    run(aws, fake_time, 1)

    # No second surge: the new instance already serves, so the old one goes straight away.
    assert recorder.mutating == [
        *AZ_SUSPEND,
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        *AZ_RESUME,
    ]
    assert snapshot()["sizes"] == (1, 2, 1) and snapshot()["types"] == [NEW_TYPE]
    assert min(poller.counts) >= 1


@pytest.mark.usefixtures("patched_moto")
def test_a_rerun_drops_surplus_current_instances_a_kill_left(
    aws: AwsContext, recorder: CallRecorder, poller: InServicePoller, fake_time: FakeTime
) -> None:
    new_version(build_group(1, 3))
    asg = client("autoscaling")
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=3)
    old = [
        i["InstanceId"]
        for i in asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
            "AutoScalingGroups"
        ][0]["Instances"]
        if i["InstanceType"] == OLD_TYPE
    ]
    asg.terminate_instance_in_auto_scaling_group(
        InstanceId=old[0], ShouldDecrementDesiredCapacity=False
    )  # desired 3, three current instances

    changes = run(aws, fake_time, 1)

    assert snapshot()["sizes"] == (1, 3, 1) and snapshot()["types"] == [NEW_TYPE]
    assert min(poller.counts) >= 1
    assert sum(1 for c in changes if c.action is Action.DELETE) == 2


@pytest.mark.usefixtures("patched_moto")
def test_a_failure_in_the_middle_restores_the_sizes(
    mocked_aws: None, recorder: CallRecorder, poller: InServicePoller, fake_time: FakeTime
) -> None:
    failures = {"left": 1}

    def deny_terminate_once(**_: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "denied"}},
                "TerminateInstanceInAutoScalingGroup",
            )

    aws = AwsContext(
        hooks=[
            ("before-call.*.*", recorder),
            ("after-call.autoscaling.*", poller),
            ("before-call.autoscaling.TerminateInstanceInAutoScalingGroup", deny_terminate_once),
        ]
    )
    new_version(build_group(1, 1))

    with pytest.raises(AwsCallError) as err:
        run(aws, fake_time, 1)

    assert err.value.code == "AccessDenied"
    # The surge is undone: the replacement goes, the old instance keeps serving, sizes restored.
    assert snapshot() == {"sizes": (1, 1, 1), "types": [OLD_TYPE], "versions": ["1"], "tags": set()}
    assert min(poller.counts) >= 1
    run(aws, fake_time, 1)  # and a rerun finishes
    assert snapshot()["types"] == [NEW_TYPE] and snapshot()["sizes"] == (1, 1, 1)


@pytest.mark.usefixtures("patched_moto")
def test_ctrl_c_restores_sizes_and_says_a_rerun_finishes(
    mocked_aws: None, recorder: CallRecorder, fake_time: FakeTime
) -> None:
    def interrupt(**_: Any) -> None:
        raise KeyboardInterrupt

    aws = AwsContext(
        hooks=[
            ("before-call.*.*", recorder),
            ("after-call.autoscaling.SetDesiredCapacity", interrupt),
        ]
    )
    new_version(build_group(1, 2))

    with pytest.raises(Interrupted) as err:
        run(aws, fake_time, 1)

    assert err.value.exit_code is ExitCode.INTERRUPTED
    assert "launching a replacement for i-" in err.value.what
    assert "rerun update-stack" in err.value.hint
    assert snapshot() == {"sizes": (1, 2, 1), "types": [OLD_TYPE], "versions": ["1"], "tags": set()}


# --- Stubber: what moto cannot show (asynchronous lifecycle, timeouts) -------------------------

LT = "lt-0123456789abcdef0"
NOW = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def inst(iid: str, state: str = "InService", version: str = "2", health: str = "Healthy") -> Any:
    return {
        "InstanceId": iid,
        "InstanceType": NEW_TYPE if version == "2" else OLD_TYPE,
        "AvailabilityZone": "us-east-1a",
        "LifecycleState": state,
        "HealthStatus": health,
        "LaunchTemplate": {"LaunchTemplateId": LT, "LaunchTemplateName": "tpl", "Version": version},
        "ProtectedFromScaleIn": False,
    }


def group_page(
    desired: int, *instances: Any, max_size: int = 2, min_size: int = 1, tags: Any = ()
) -> Any:
    page: Any = {
        "AutoScalingGroups": [
            {
                "AutoScalingGroupName": GROUP,
                "LaunchTemplate": {
                    "LaunchTemplateId": LT,
                    "LaunchTemplateName": "tpl",
                    "Version": "2",
                },
                "MinSize": min_size,
                "MaxSize": max_size,
                "DesiredCapacity": desired,
                "DefaultCooldown": 300,
                "AvailabilityZones": ["us-east-1a"],
                "HealthCheckType": "EC2",
                "CreatedTime": NOW,
                "Instances": list(instances),
            }
        ]
    }
    if tags:
        page["AutoScalingGroups"][0]["Tags"] = [
            {"ResourceId": GROUP, "ResourceType": "auto-scaling-group", "Key": k, "Value": v}
            for k, v in tags
        ]
    return page


def template_page() -> Any:
    return {
        "LaunchTemplates": [
            {"LaunchTemplateId": LT, "DefaultVersionNumber": 1, "LatestVersionNumber": 2}
        ]
    }


class Stubbed:
    """Auto Scaling and EC2 stubbed, pinned to the parameters AWS must receive.

    Every read of the group (`describe`) is followed by one DescribeInstances for the roles and
    launch times of its instances (`roles` maps an instance to the role it publishes). Between
    `suspend()` and `resume()` the group's pages carry the AZRebalance suspension and our tag,
    as AWS would report them.
    """

    def __init__(self, target: int = 1) -> None:
        self.asg = client("autoscaling")
        self.ec2 = client("ec2")
        self.asg_stub = Stubber(self.asg)
        self.ec2_stub = Stubber(self.ec2)
        self.target = target
        self.suspended = False
        self.extra_tags: list[tuple[str, str]] = []
        self._templates = True

    def describe(self, page: Any, roles: dict[str, str] | None = None) -> None:
        g = page["AutoScalingGroups"][0]
        if self.suspended:
            g["SuspendedProcesses"] = [{"ProcessName": "AZRebalance", "SuspensionReason": "u"}]
        tags = [(replace.AZ_TAG, "AZRebalance")] if self.suspended else []
        tags += self.extra_tags
        if tags:
            g["Tags"] = [
                *g.get("Tags", []),
                *(
                    {
                        "ResourceId": GROUP,
                        "ResourceType": "auto-scaling-group",
                        "Key": k,
                        "Value": v,
                    }
                    for k, v in tags
                ),
            ]
        self.asg_stub.add_response("describe_auto_scaling_groups", page)
        ids = [i["InstanceId"] for i in g["Instances"]]
        if ids:
            found = [
                {
                    "InstanceId": iid,
                    "LaunchTime": NOW + datetime.timedelta(seconds=n),
                    "Tags": [{"Key": "datomic:role", "Value": (roles or {})[iid]}]
                    if iid in (roles or {})
                    else [],
                }
                for n, iid in enumerate(ids)
            ]
            self.ec2_stub.add_response(
                "describe_instances",
                {"Reservations": [{"Instances": found}]},
                {"Filters": [{"Name": "instance-id", "Values": sorted(set(ids))}]},
            )
        if self._templates:  # the version is resolved after the first read
            self._templates = False
            self.ec2_stub.add_response("describe_launch_templates", template_page())

    def write(self, method: str, params: dict[str, Any]) -> None:
        response: dict[str, Any] = {}
        if method == "terminate_instance_in_auto_scaling_group":
            response = {
                "Activity": {
                    "ActivityId": "a",
                    "AutoScalingGroupName": GROUP,
                    "Cause": "c",
                    "StartTime": NOW,
                    "StatusCode": "InProgress",
                }
            }
        self.asg_stub.add_response(method, response, params)

    def tag(self, key: str, value: str) -> None:
        self.write(
            "create_or_update_tags",
            {
                "Tags": [
                    {
                        "ResourceId": GROUP,
                        "ResourceType": "auto-scaling-group",
                        "Key": key,
                        "Value": value,
                        "PropagateAtLaunch": False,
                    }
                ]
            },
        )

    def untag(self, *keys: str) -> None:
        self.write(
            "delete_tags",
            {
                "Tags": [
                    {"ResourceId": GROUP, "ResourceType": "auto-scaling-group", "Key": k}
                    for k in keys
                ]
            },
        )

    def suspend(self) -> None:
        self.tag(replace.AZ_TAG, "AZRebalance")
        self.write(
            "suspend_processes",
            {"AutoScalingGroupName": GROUP, "ScalingProcesses": ["AZRebalance"]},
        )
        self.suspended = True

    def resume(self) -> None:
        self.write(
            "resume_processes",
            {"AutoScalingGroupName": GROUP, "ScalingProcesses": ["AZRebalance"]},
        )
        self.untag(replace.AZ_TAG)
        self.suspended = False

    def point_back(self, version: str = "1") -> None:
        self.write(
            "update_auto_scaling_group",
            {
                "AutoScalingGroupName": GROUP,
                "LaunchTemplate": {"LaunchTemplateId": LT, "Version": version},
            },
        )

    def terminate(self, iid: str, decrement: bool = True) -> None:
        self.write(
            "terminate_instance_in_auto_scaling_group",
            {"InstanceId": iid, "ShouldDecrementDesiredCapacity": decrement},
        )

    def run(
        self,
        fake_time: FakeTime,
        progress: list[str],
        timeout: float = 600,
        report: replace.Availability | None = None,
    ) -> Any:
        with self.asg_stub, self.ec2_stub:
            try:
                return replace.replace_outdated(
                    self.asg,
                    self.ec2,
                    GROUP,
                    target_size=self.target,
                    timeout=timeout,
                    poll_interval=10,
                    on_progress=progress.append,
                    sleep=fake_time.sleep,
                    clock=fake_time.clock,
                    report=report,
                )
            finally:
                self.asg_stub.assert_no_pending_responses()
                self.ec2_stub.assert_no_pending_responses()


def test_pending_wait_is_not_in_service_the_old_instance_waits(fake_time: FakeTime) -> None:
    s = Stubbed()
    s.describe(group_page(1, inst("i-old", version="1")))
    s.suspend()
    s.write("set_desired_capacity", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 2})
    s.describe(group_page(2, inst("i-old", version="1")))  # not launched yet
    s.describe(group_page(2, inst("i-old", version="1"), inst("i-new", "Pending")))
    s.describe(group_page(2, inst("i-old", version="1"), inst("i-new", "Pending:Wait")))
    s.describe(group_page(2, inst("i-old", version="1"), inst("i-new")))
    s.terminate("i-old")
    s.describe(group_page(1, inst("i-old", "Terminating", version="1"), inst("i-new")))
    s.describe(group_page(1, inst("i-new")))
    s.describe(group_page(1, inst("i-new")))  # the sizes are right
    s.resume()
    progress: list[str] = []

    changes = s.run(fake_time, progress)

    assert [c.resource for c in changes] == [f"ec2 instance i-old ({GROUP})"]
    assert fake_time.sleeps == [10, 10, 10, 10]
    assert any("i-new Pending:Wait" in line for line in progress)


def test_a_replacement_that_dies_before_serving_fails_and_sizes_are_restored(
    fake_time: FakeTime,
) -> None:
    s = Stubbed()
    s.describe(group_page(1, inst("i-old", version="1")))
    s.suspend()
    s.write("set_desired_capacity", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 2})
    s.describe(group_page(2, inst("i-old", version="1"), inst("i-new", "Pending")))
    s.describe(group_page(2, inst("i-old", version="1"), inst("i-new", "Terminating")))
    # restore: the group back on the old version; the dead replacement is not a member any
    # more, so only desired goes back; AZRebalance resumed.
    s.describe(group_page(2, inst("i-old", version="1"), inst("i-new", "Terminating")))
    s.point_back("1")
    s.write("update_auto_scaling_group", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 1})
    s.resume()

    with pytest.raises(ReplacementError, match="i-new went Terminating") as err:
        s.run(fake_time, [])
    assert "back on launch template version 1" in err.value.hint


def test_unhealthy_replacement_fails(fake_time: FakeTime) -> None:
    s = Stubbed()
    s.describe(group_page(2, inst("i-old", version="1"), inst("i-new", "Pending")))
    s.suspend()
    s.describe(
        group_page(2, inst("i-old", version="1"), inst("i-new", "Pending", health="Unhealthy"))
    )
    s.describe(group_page(1, inst("i-old", version="1")))  # restore: nothing left to do but
    s.point_back("1")  # the version
    s.resume()

    with pytest.raises(ReplacementError, match="i-new went Pending/Unhealthy"):
        s.run(fake_time, [])


def test_timeout_names_the_instance_and_restores_sizes(fake_time: FakeTime) -> None:
    s = Stubbed()
    stuck = group_page(2, inst("i-old", version="1"), inst("i-new", "Pending:Wait"))
    s.describe(group_page(1, inst("i-old", version="1")))
    s.suspend()
    s.write("set_desired_capacity", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 2})
    for _ in range(4):  # t = 0, 10, 20, 30
        s.describe(copy.deepcopy(stuck))
    # restore: the stuck replacement is terminated (it is not serving), the old one stays.
    s.describe(copy.deepcopy(stuck))
    s.point_back("1")
    s.terminate("i-new")
    s.describe(group_page(1, inst("i-old", version="1"), inst("i-new", "Terminating")))
    s.resume()

    with pytest.raises(WaitTimeout) as err:
        s.run(fake_time, [], timeout=30)

    assert "i-new is Pending:Wait" in err.value.what
    assert "timed out after 30s" in err.value.what
    assert fake_time.now == 30


def test_scaling_activity_in_progress_is_retried(fake_time: FakeTime) -> None:
    s = Stubbed()
    s.describe(group_page(2, inst("i-old", version="1"), inst("i-new")))
    s.suspend()
    s.asg_stub.add_client_error(
        "terminate_instance_in_auto_scaling_group", "ScalingActivityInProgress", "busy"
    )
    s.terminate("i-old")
    s.describe(group_page(1, inst("i-new")))
    s.describe(group_page(1, inst("i-new")))
    s.resume()

    changes = s.run(fake_time, [])

    assert len(changes) == 1 and fake_time.sleeps == [10]


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="strategy"):
        replace.replace_outdated(
            client("autoscaling"),
            client("ec2"),
            GROUP,
            target_size=1,
            strategy="rolling",  # type: ignore[arg-type]
        )


# --- sandbox.moto_fixes: each correction is needed, and makes moto answer like AWS -----------------


def _replacement_versions() -> list[str]:
    new_version(build_group(1, 2))
    asg = client("autoscaling")
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    versions: list[str] = snapshot()["versions"]
    return versions


@pytest.mark.usefixtures("unpatched_moto", "mocked_aws")
def test_without_the_correction_moto_reports_the_wrong_instance_version() -> None:
    # The instance launched from version 2 (it is a t3.small) claims version 1.
    assert _replacement_versions() == ["1", "1"]


@pytest.mark.usefixtures("patched_moto", "mocked_aws")
def test_with_the_correction_each_instance_reports_the_version_it_was_launched_from() -> None:
    assert _replacement_versions() == ["1", "2"]


@pytest.mark.usefixtures("unpatched_moto")
def test_without_the_correction_a_replacement_cannot_tell_new_from_old(
    aws: AwsContext, fake_time: FakeTime
) -> None:
    new_version(build_group(1, 2))
    with pytest.raises(ReplacementError, match="runs launch template version 1, not 2"):
        run(aws, fake_time, 1)
    assert snapshot()["sizes"] == (1, 2, 1)  # and the failure path restored the group


def _create_tagged_bucket(s3: Any, name: str, region: str = REGION) -> Any:
    config: dict[str, Any] = {"Tags": [{"Key": "datomic:system", "Value": "t"}]}
    if region != "us-east-1":
        config["LocationConstraint"] = region
    s3.create_bucket(Bucket=name, CreateBucketConfiguration=config)
    try:
        return s3.get_bucket_tagging(Bucket=name)["TagSet"]
    except ClientError as exc:
        return exc.response["Error"]["Code"]


@pytest.mark.usefixtures("unpatched_moto", "mocked_aws")
def test_without_the_correction_create_bucket_drops_its_tags() -> None:
    s3 = client("s3")
    assert _create_tagged_bucket(s3, "datomic-tags-a") == "NoSuchTagSet"


@pytest.mark.usefixtures("patched_moto", "mocked_aws")
def test_with_the_correction_create_bucket_applies_its_tags_at_creation() -> None:
    tagged = [{"Key": "datomic:system", "Value": "t"}]
    s3 = client("s3")
    assert _create_tagged_bucket(s3, "datomic-tags-a") == tagged
    eu = client("s3", "eu-west-1")
    assert _create_tagged_bucket(eu, "datomic-tags-b", "eu-west-1") == tagged
    # Re-creating your own bucket in us-east-1 is a 200 and creates nothing: tags untouched.
    s3.put_bucket_tagging(Bucket="datomic-tags-a", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    s3.create_bucket(
        Bucket="datomic-tags-a", CreateBucketConfiguration={"Tags": [{"Key": "x", "Value": "y"}]}
    )
    assert s3.get_bucket_tagging(Bucket="datomic-tags-a")["TagSet"] == [{"Key": "k", "Value": "v"}]
    s3.create_bucket(Bucket="datomic-untagged")  # no body at all
    with pytest.raises(ClientError):
        s3.get_bucket_tagging(Bucket="datomic-untagged")


def test_patch_moto_is_idempotent_and_reversible(patched_moto: None) -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup
    from moto.s3.responses import S3Response

    launch, put = (
        FakeAutoScalingGroup.replace_autoscaling_group_instances,
        S3Response._bucket_response_put,
    )
    sandbox_moto.patch_moto()
    assert FakeAutoScalingGroup.replace_autoscaling_group_instances is launch
    assert S3Response._bucket_response_put is put
    assert sandbox_moto.is_patched()


@pytest.mark.usefixtures("patched_moto")
def test_the_corrections_apply_inside_a_threaded_moto_server_in_this_process() -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = client("s3", endpoint_url=endpoint)
        assert _create_tagged_bucket(s3, "datomic-server-tags") == [
            {"Key": "datomic:system", "Value": "t"}
        ]
        ec2 = client("ec2", endpoint_url=endpoint)
        asg = client("autoscaling", endpoint_url=endpoint)
        ssm = client("ssm", endpoint_url=endpoint)
        ami = ssm.get_parameter(Name=AMI_PARAM)["Parameter"]["Value"]
        lt = ec2.create_launch_template(
            LaunchTemplateName="srv", LaunchTemplateData={"ImageId": ami, "InstanceType": OLD_TYPE}
        )["LaunchTemplate"]["LaunchTemplateId"]
        ec2.create_launch_template_version(
            LaunchTemplateId=lt, SourceVersion="1", LaunchTemplateData={"InstanceType": NEW_TYPE}
        )
        subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        asg.create_auto_scaling_group(
            AutoScalingGroupName="srv",
            MinSize=1,
            MaxSize=1,
            VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Latest"},
        )
        instances = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["srv"])[
            "AutoScalingGroups"
        ][0]["Instances"]
        assert [i["LaunchTemplate"]["Version"] for i in instances] == ["2"]
    finally:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        server.stop()


# --- roles: standbys first, the active last, one standby when it goes -------------------------

MIN_REFUSAL = (
    "Currently, desiredSize equals minSize ({n}). Terminating instance without replacement will "
    "violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false "
    "or lower min size."
)


def _members(asg: Any) -> list[dict[str, Any]]:
    (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]
    return [
        i for i in g["Instances"] if not i["LifecycleState"].startswith(replace.LEAVING_PREFIXES)
    ]


def _roles(ec2: Any, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    out = {}
    for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
        for i in r["Instances"]:
            for t in i.get("Tags", []):
                if t["Key"] == names.TAG_ROLE:
                    out[i["InstanceId"]] = t["Value"]
    return out


class Transactors:
    """Plays each instance's role loop on in-process moto (which runs no user data), and holds
    Auto Scaling to AWS's MinSize rule, which moto does not enforce.

    `step` (on every fake sleep: time passes while the tool waits): an InService instance with
    no role publishes `standby`; with no active alive, a standby takes over, and two standbys
    at that moment are a race (Datomic: the loser exits, reference §10), recorded in `races`.
    The hook on TerminateInstanceInAutoScalingGroup records, for each termination, the victim's
    role and the other instances alive, and refuses a decrement below MinSize as AWS does.
    """

    def __init__(self) -> None:
        self.asg = client("autoscaling")
        self.ec2 = client("ec2")
        self.races = 0
        self.terminations: list[tuple[str, str | None, list[str]]] = []  # (id, role, others)

    def set_role(self, instance_id: str, role: str) -> None:
        self.ec2.create_tags(Resources=[instance_id], Tags=[{"Key": names.TAG_ROLE, "Value": role}])

    def step(self) -> None:
        members = [
            i["InstanceId"] for i in _members(self.asg) if i["LifecycleState"] == "InService"
        ]
        roles = _roles(self.ec2, members)
        for iid in members:
            if iid not in roles:
                self.set_role(iid, names.ROLE_STANDBY)
                roles[iid] = names.ROLE_STANDBY
        if not any(r == names.ROLE_ACTIVE for r in roles.values()):
            standbys = sorted(i for i in members if roles[i] == names.ROLE_STANDBY)
            if len(standbys) > 1:
                self.races += 1
            if standbys:
                self.set_role(standbys[0], names.ROLE_ACTIVE)

    def before_terminate(self, params: Any, **_: Any) -> None:
        iid = params["InstanceId"]
        members = _members(self.asg)
        role = _roles(self.ec2, [iid]).get(iid)
        others = [i["InstanceId"] for i in members if i["InstanceId"] != iid]
        (g,) = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
            "AutoScalingGroups"
        ]
        if params.get("ShouldDecrementDesiredCapacity") and g["DesiredCapacity"] <= g["MinSize"]:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationError",
                        "Message": MIN_REFUSAL.format(n=g["MinSize"]),
                    }
                },
                "TerminateInstanceInAutoScalingGroup",
            )
        self.terminations.append((iid, role, others))

    @property
    def active_terminations(self) -> list[list[str]]:
        return [others for _, role, others in self.terminations if role == names.ROLE_ACTIVE]


@pytest.fixture
def transactors(fake_time: FakeTime) -> Transactors:
    t = Transactors()
    fake_time.ticks.append(t.step)
    return t


@pytest.fixture
def roles_aws(
    mocked_aws: None, recorder: CallRecorder, poller: InServicePoller, transactors: Transactors
) -> AwsContext:
    return AwsContext(
        hooks=[
            ("before-call.*.*", recorder),
            ("after-call.autoscaling.*", poller),
            (
                "before-parameter-build.autoscaling.TerminateInstanceInAutoScalingGroup",
                transactors.before_terminate,
            ),
        ]
    )


def _group_with_roles(transactors: Transactors, size: int, active_index: int) -> dict[str, str]:
    """A group of `size` on version 1, then version 2 declared; the instance at `active_index`
    (in id order) is the active, the others standbys. Returns id -> role."""
    new_version(build_group(size, size + 1))
    ids = sorted(i["InstanceId"] for i in _members(transactors.asg))
    roles = {}
    for n, iid in enumerate(ids):
        roles[iid] = names.ROLE_ACTIVE if n == active_index else names.ROLE_STANDBY
        transactors.set_role(iid, roles[iid])
    return roles


def suspended() -> list[str]:
    (g,) = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ]
    return [p["ProcessName"] for p in g.get("SuspendedProcesses", [])]


def _assert_one_standby_at_each_active_termination(transactors: Transactors) -> None:
    assert transactors.active_terminations, transactors.terminations
    for others in transactors.active_terminations:
        assert len(others) == 1, transactors.terminations  # exactly one standby waits
    assert transactors.races == 0


@pytest.mark.usefixtures("patched_moto")
def test_roles_group_of_one_surges_a_standby_then_the_active_goes_and_it_takes_over(
    roles_aws: AwsContext,
    recorder: CallRecorder,
    poller: InServicePoller,
    fake_time: FakeTime,
    transactors: Transactors,
) -> None:
    roles = _group_with_roles(transactors, 1, 0)
    (active,) = roles
    report = replace.Availability()

    changes = run(roles_aws, fake_time, 1, report=report)

    assert recorder.mutating == [
        *AZ_SUSPEND,
        "autoscaling:SetDesiredCapacity",  # the standby first
        "autoscaling:TerminateInstanceInAutoScalingGroup",  # then the active, with a decrement
        *AZ_RESUME,
    ]
    assert [(iid, role) for iid, role, _ in transactors.terminations] == [
        (active, names.ROLE_ACTIVE)
    ]
    _assert_one_standby_at_each_active_termination(transactors)
    assert min(poller.counts) >= 1
    assert snapshot() == {"sizes": (1, 2, 1), "types": [NEW_TYPE], "versions": ["2"], "tags": set()}
    assert suspended() == []
    (new,) = [i["InstanceId"] for i in _members(transactors.asg)]
    assert _roles(transactors.ec2, [new]) == {new: names.ROLE_ACTIVE}  # it took over
    assert [c.resource for c in changes] == [f"ec2 instance {active} ({GROUP})"]
    assert "role: active" in changes[0].details
    # One failover, seen one poll after the active was terminated.
    assert (report.failovers, report.no_active_intervals, report.min_in_service) == (1, [5.0], 1)
    assert report.warnings == []
    doc = report.as_dict()
    assert (doc["no_active_seconds"], doc["failovers"], doc["roles_known"]) == (5.0, 1, True)
    assert "poll interval" in " ".join(report.details())


@pytest.mark.usefixtures("patched_moto")
def test_roles_group_of_two_standby_first_then_the_active_without_a_second_standby(
    roles_aws: AwsContext,
    recorder: CallRecorder,
    poller: InServicePoller,
    fake_time: FakeTime,
    transactors: Transactors,
) -> None:
    # The active is the instance with the higher id: replacement order never guesses it.
    roles = _group_with_roles(transactors, 2, 1)
    standby, active = sorted(roles)
    report = replace.Availability()

    changes = run(roles_aws, fake_time, 2, report=report)

    assert recorder.mutating == [
        *AZ_SUSPEND,
        "autoscaling:SetDesiredCapacity",  # 3: a new standby next to the old standby
        "autoscaling:TerminateInstanceInAutoScalingGroup",  # the old standby
        "autoscaling:CreateOrUpdateTags",  # the MinSize, before lowering it
        "autoscaling:UpdateAutoScalingGroup",  # MinSize 1: AWS refuses a decrement below it
        "autoscaling:TerminateInstanceInAutoScalingGroup",  # the active: no surge for it
        "autoscaling:UpdateAutoScalingGroup",  # desired and MinSize back to 2
        "autoscaling:DeleteTags",
        *AZ_RESUME,
    ]
    assert [(iid, role) for iid, role, _ in transactors.terminations] == [
        (standby, names.ROLE_STANDBY),
        (active, names.ROLE_ACTIVE),
    ]
    _assert_one_standby_at_each_active_termination(transactors)
    assert min(poller.counts) == 1  # the floor: N-1 while the active's replacement boots
    assert snapshot() == {
        "sizes": (2, 3, 2),
        "types": [NEW_TYPE, NEW_TYPE],
        "versions": ["2", "2"],
        "tags": set(),
    }
    assert suspended() == []
    assert {c.resource for c in changes if c.resource.startswith("ec2 instance")} == {
        f"ec2 instance {standby} ({GROUP})",
        f"ec2 instance {active} ({GROUP})",
    }
    assert (report.failovers, report.min_in_service, len(report.no_active_intervals)) == (1, 1, 1)


@pytest.mark.usefixtures("patched_moto")
def test_roles_group_of_three_never_leaves_two_standbys_when_the_active_goes(
    roles_aws: AwsContext,
    recorder: CallRecorder,
    fake_time: FakeTime,
    transactors: Transactors,
) -> None:
    roles = _group_with_roles(transactors, 3, 0)
    active = next(i for i, r in roles.items() if r == names.ROLE_ACTIVE)
    report = replace.Availability()

    run(roles_aws, fake_time, 3, report=report)

    order = [(iid, role) for iid, role, _ in transactors.terminations]
    assert [role for _, role in order] == [
        names.ROLE_STANDBY,  # replaced by surge
        names.ROLE_STANDBY,  # terminated so that a single standby waits
        names.ROLE_ACTIVE,  # last
    ]
    assert order[-1][0] == active
    _assert_one_standby_at_each_active_termination(transactors)
    assert snapshot()["sizes"] == (3, 4, 3) and snapshot()["types"] == [NEW_TYPE] * 3
    assert snapshot()["tags"] == set() and suspended() == []
    assert (report.failovers, report.min_in_service) == (1, 1)


@pytest.mark.usefixtures("patched_moto")
def test_roles_unknown_keeps_newest_first_and_warns(
    aws: AwsContext, recorder: CallRecorder, fake_time: FakeTime
) -> None:
    new_version(build_group(2, 3))
    report = replace.Availability()
    progress: list[str] = []

    changes = run(aws, fake_time, 2, report=report, progress=progress)

    assert report.warnings == [replace.ROLES_UNKNOWN_WARNING]
    assert "roles were not published" in replace.ROLES_UNKNOWN_WARNING
    assert any(replace.ROLES_UNKNOWN_WARNING in line for line in progress)
    assert len(changes) == 2 and snapshot()["types"] == [NEW_TYPE, NEW_TYPE]
    assert report.as_dict()["no_active_seconds"] is None  # not measured without roles
    assert "not measured" in " ".join(report.details())


@pytest.mark.usefixtures("patched_moto")
def test_roles_dry_run_plan_shows_standbys_first_and_the_active_last(
    roles_aws: AwsContext, recorder: CallRecorder, fake_time: FakeTime, transactors: Transactors
) -> None:
    roles = _group_with_roles(transactors, 3, 1)
    before = snapshot()

    plan = run(roles_aws, fake_time, 3, dry_run=True)

    planned = [c.resource.split()[2] for c in plan]
    assert [roles[i] for i in planned] == [
        names.ROLE_STANDBY,
        names.ROLE_STANDBY,
        names.ROLE_ACTIVE,
    ]
    assert "role: active" in plan[-1].details
    assert any("go last" in d for d in plan[-1].details)
    assert any("never two standbys" in d for d in plan[1].details)
    assert any("AZRebalance would be suspended" in d for d in plan[0].details)
    assert recorder.mutating == [] and snapshot() == before


# Group of 2, roles published: tag, suspend, surge, terminate the standby, tag MinSize, lower
# it, terminate the active, sizes back, untag, resume, untag = 11 writes; a kill before each.
@pytest.mark.usefixtures("patched_moto")
@pytest.mark.parametrize("kill_at", range(1, 12))
def test_roles_a_kill_at_any_write_then_a_rerun_converges(
    roles_aws: AwsContext,
    recorder: CallRecorder,
    fake_time: FakeTime,
    transactors: Transactors,
    kill_at: int,
) -> None:
    _group_with_roles(transactors, 2, 0)
    recorder.fail_at = kill_at
    with pytest.raises(SimulatedCrash):
        run(roles_aws, fake_time, 2)

    recorder.fail_at = None
    run(roles_aws, fake_time, 2)

    assert snapshot() == {
        "sizes": (2, 3, 2),
        "types": [NEW_TYPE, NEW_TYPE],
        "versions": ["2", "2"],
        "tags": set(),
    }
    assert suspended() == []  # AZRebalance resumed
    for others in transactors.active_terminations:
        assert len(others) == 1
    assert transactors.races == 0
    transactors.step()
    live = [i["InstanceId"] for i in _members(transactors.asg)]
    assert sorted(_roles(transactors.ec2, live).values()) == [names.ROLE_ACTIVE, names.ROLE_STANDBY]
    recorder.operations.clear()
    assert run(roles_aws, fake_time, 2) == [] and recorder.mutating == []


@pytest.mark.usefixtures("patched_moto")
def test_roles_a_rerun_during_a_takeover_waits_for_it_before_the_group_grows_back(
    roles_aws: AwsContext,
    recorder: CallRecorder,
    fake_time: FakeTime,
    transactors: Transactors,
) -> None:
    # What a kill right after the active's termination leaves: its standby (current) alone, not
    # active yet; desired and MinSize lowered to 1 (MinSize 2 kept in the tag); AZRebalance ours.
    new_version(build_group(1, 3))
    asg = client("autoscaling")
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    old, new = sorted(
        _members(asg), key=lambda i: i["LaunchTemplate"]["Version"]
    )  # version 1, version 2
    transactors.set_role(old["InstanceId"], names.ROLE_ACTIVE)
    transactors.set_role(new["InstanceId"], names.ROLE_STANDBY)
    for key, value in ((replace.MIN_TAG, "2"), (replace.AZ_TAG, "AZRebalance")):
        asg.create_or_update_tags(
            Tags=[
                {
                    "ResourceId": GROUP,
                    "ResourceType": "auto-scaling-group",
                    "Key": key,
                    "Value": value,
                    "PropagateAtLaunch": False,
                }
            ]
        )
    asg.suspend_processes(AutoScalingGroupName=GROUP, ScalingProcesses=["AZRebalance"])
    asg.terminate_instance_in_auto_scaling_group(
        InstanceId=old["InstanceId"], ShouldDecrementDesiredCapacity=True
    )
    report = replace.Availability()

    run(roles_aws, fake_time, 2, report=report)

    assert transactors.races == 0  # the takeover came before the group grew back
    assert snapshot() == {
        "sizes": (2, 3, 2),
        "types": [NEW_TYPE, NEW_TYPE],
        "versions": ["2", "2"],
        "tags": set(),
    }
    assert suspended() == []
    assert _roles(transactors.ec2, [new["InstanceId"]]) == {new["InstanceId"]: names.ROLE_ACTIVE}


@pytest.mark.usefixtures("patched_moto")
def test_roles_terminate_strategy_takes_the_active_last_and_measures_its_gap(
    roles_aws: AwsContext, fake_time: FakeTime, transactors: Transactors
) -> None:
    roles = _group_with_roles(transactors, 2, 0)
    report = replace.Availability()

    run(roles_aws, fake_time, 2, strategy="terminate", report=report)

    assert [role for _, role, _ in transactors.terminations] == [
        names.ROLE_STANDBY,
        names.ROLE_ACTIVE,
    ]
    assert transactors.terminations[-1][0] == next(
        i for i, r in roles.items() if r == names.ROLE_ACTIVE
    )
    # Measured until a current instance reports active, at the poll interval's resolution.
    assert report.no_active_intervals == [5.0] and report.failovers == 1
    assert snapshot()["types"] == [NEW_TYPE, NEW_TYPE] and suspended() == []


@pytest.mark.usefixtures("patched_moto")
def test_an_operator_suspended_az_rebalance_is_left_suspended(
    aws: AwsContext, recorder: CallRecorder, fake_time: FakeTime
) -> None:
    new_version(build_group(1, 2))
    client("autoscaling").suspend_processes(
        AutoScalingGroupName=GROUP, ScalingProcesses=["AZRebalance"]
    )

    run(aws, fake_time, 1)

    assert recorder.mutating == [
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    assert suspended() == ["AZRebalance"] and snapshot()["tags"] == set()


# --- roles through Stubber: the MinSize refusal, a takeover that takes a while, an abandon ----


def _active_phase(s: Stubbed) -> None:
    """Group of 2 (MinSize 2, MaxSize 3): the old active and a current standby."""
    s.describe(
        group_page(2, inst("i-old", version="1"), inst("i-sb"), min_size=2, max_size=3),
        {"i-old": "active", "i-sb": "standby"},
    )
    s.suspend()
    s.tag(replace.MIN_TAG, "2")
    s.write("update_auto_scaling_group", {"AutoScalingGroupName": GROUP, "MinSize": 1})
    s.extra_tags = [(replace.MIN_TAG, "2")]


def test_the_active_of_a_group_of_two_goes_with_min_size_lowered_then_the_group_grows_back(
    fake_time: FakeTime,
) -> None:
    s = Stubbed(target=2)
    _active_phase(s)
    s.terminate("i-old")
    s.describe(
        group_page(1, inst("i-old", "Terminating", version="1"), inst("i-sb"), max_size=3),
        {"i-old": "active", "i-sb": "standby"},
    )
    s.describe(group_page(1, inst("i-sb"), max_size=3), {"i-sb": "active"})  # took over
    s.write(
        "update_auto_scaling_group",
        {"AutoScalingGroupName": GROUP, "DesiredCapacity": 2, "MinSize": 2},
    )
    s.untag(replace.MIN_TAG)
    s.extra_tags = []
    s.describe(
        group_page(2, inst("i-sb"), inst("i-3", "Pending:Wait"), min_size=2, max_size=3),
        {"i-sb": "active"},
    )
    s.describe(
        group_page(2, inst("i-sb"), inst("i-3"), min_size=2, max_size=3),
        {"i-sb": "active", "i-3": "standby"},
    )
    s.describe(
        group_page(2, inst("i-sb"), inst("i-3"), min_size=2, max_size=3),
        {"i-sb": "active", "i-3": "standby"},
    )
    s.resume()
    report = replace.Availability()

    changes = s.run(fake_time, [], report=report)

    assert [c.resource for c in changes if c.resource.startswith("ec2")] == [
        f"ec2 instance i-old ({GROUP})"
    ]
    assert report.no_active_intervals == [10.0] and report.failovers == 1
    assert report.min_in_service == 1


def test_a_decrement_aws_refuses_below_min_size_fails_and_restores(fake_time: FakeTime) -> None:
    s = Stubbed(target=2)
    _active_phase(s)
    # Someone raised MinSize back meanwhile: AWS refuses the decrement (ValidationError).
    s.asg_stub.add_client_error(
        "terminate_instance_in_auto_scaling_group",
        "ValidationError",
        MIN_REFUSAL.format(n=2),
        expected_params={"InstanceId": "i-old", "ShouldDecrementDesiredCapacity": True},
    )
    refused = group_page(2, inst("i-old", version="1"), inst("i-sb"), min_size=2, max_size=3)
    s.asg_stub.add_response("describe_auto_scaling_groups", refused)  # is it gone? no
    s.describe(
        group_page(2, inst("i-old", version="1"), inst("i-sb"), min_size=1, max_size=3),
        {"i-old": "active", "i-sb": "standby"},
    )
    s.write("update_auto_scaling_group", {"AutoScalingGroupName": GROUP, "MinSize": 2})
    s.untag(replace.MIN_TAG)
    s.extra_tags = []
    s.resume()

    with pytest.raises(AwsCallError) as err:
        s.run(fake_time, [])
    assert err.value.code == "ValidationError"


def test_an_abandoned_new_standby_points_the_group_back_and_leaves_the_old_ones(
    fake_time: FakeTime,
) -> None:
    s = Stubbed(target=2)
    old = (inst("i-a", version="1"), inst("i-b", version="1"))
    roles = {"i-a": "active", "i-b": "standby"}
    s.describe(group_page(2, *old, min_size=2, max_size=3), roles)
    s.suspend()
    s.write("set_desired_capacity", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 3})
    s.describe(group_page(3, *old, inst("i-new", "Pending:Wait"), min_size=2, max_size=3), roles)
    # The launch hook was ABANDONed: the instance leaves before it is InService.
    gone = group_page(3, *old, inst("i-new", "Terminating:Wait"), min_size=2, max_size=3)
    s.describe(copy.deepcopy(gone), roles)
    s.describe(copy.deepcopy(gone), roles)
    s.point_back("1")
    s.write("update_auto_scaling_group", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 2})
    s.resume()
    # No TerminateInstanceInAutoScalingGroup is stubbed: the old instances are left alone.

    with pytest.raises(ReplacementError, match="i-new went Terminating:Wait") as err:
        s.run(fake_time, [])
    assert "back on launch template version 1" in err.value.hint


def test_a_surplus_instance_that_left_first_is_replaced_and_the_replacement_removed_too(
    fake_time: FakeTime,
) -> None:
    """AWS: an abandoned launch leaves its group and, desired not being decremented, Auto Scaling
    launches another at once (reference §11). The cleanup removes that one too, explicitly, so
    that no later lowering of the desired capacity lets Auto Scaling choose (the active?)."""
    s = Stubbed(target=2)
    old = (inst("i-a", version="1"), inst("i-b", version="1"))
    roles = {"i-a": "active", "i-b": "standby"}
    s.describe(group_page(2, *old, min_size=2, max_size=3), roles)
    s.suspend()
    s.write("set_desired_capacity", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 3})
    s.describe(group_page(3, *old, inst("i-new", "Pending:Wait"), min_size=2, max_size=3), roles)
    again = group_page(3, *old, inst("i-next", "Pending:Wait"), min_size=2, max_size=3)
    s.describe(copy.deepcopy(again), roles)
    s.describe(copy.deepcopy(again), roles)
    s.point_back("1")
    s.asg_stub.add_client_error(
        "terminate_instance_in_auto_scaling_group",
        service_error_code="ValidationError",
        service_message="Instance Id not found - No managed instance found for instance ID: i-next",
        http_status_code=400,
        expected_params={"InstanceId": "i-next", "ShouldDecrementDesiredCapacity": True},
    )
    third = group_page(3, *old, inst("i-third", "Pending:Wait"), min_size=2, max_size=3)
    s.asg_stub.add_response("describe_auto_scaling_groups", copy.deepcopy(third))  # gone: fine
    s.describe(copy.deepcopy(third), roles)
    s.write(
        "terminate_instance_in_auto_scaling_group",
        {"InstanceId": "i-third", "ShouldDecrementDesiredCapacity": True},
    )
    s.describe(group_page(2, *old, inst("i-third", "Terminating"), min_size=2, max_size=3), roles)
    s.resume()

    with pytest.raises(ReplacementError, match="i-new left the group before it was InService"):
        s.run(fake_time, [])


def test_a_failed_cleanup_step_does_not_stop_the_sizes_from_being_restored(
    fake_time: FakeTime,
) -> None:
    s = Stubbed(target=2)
    old = (inst("i-a", version="1"), inst("i-b", version="1"))
    roles = {"i-a": "active", "i-b": "standby"}
    s.describe(group_page(2, *old, min_size=2, max_size=3), roles)
    s.suspend()
    s.write("set_desired_capacity", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 3})
    s.describe(group_page(3, *old, inst("i-new", "Pending:Wait"), min_size=2, max_size=3), roles)
    again = group_page(3, *old, inst("i-next", "Pending:Wait"), min_size=2, max_size=3)
    s.describe(copy.deepcopy(again), roles)
    s.describe(copy.deepcopy(again), roles)
    s.point_back("1")
    # Removing the surplus fails; the sizes and AZRebalance are restored all the same, from a
    # fresh read of the group.
    s.asg_stub.add_client_error(
        "terminate_instance_in_auto_scaling_group",
        service_error_code="AccessDenied",
        service_message="User is not authorized to perform: "
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        http_status_code=403,
        expected_params={"InstanceId": "i-next", "ShouldDecrementDesiredCapacity": True},
    )
    s.describe(copy.deepcopy(again), roles)
    s.write("update_auto_scaling_group", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 2})
    s.resume()

    progress: list[str] = []
    with pytest.raises(ReplacementError, match="i-new left the group before it was InService"):
        s.run(fake_time, progress)
    assert any("could not remove the instances it launched" in line for line in progress)


def test_a_replacement_that_vanished_between_two_polls_fails_at_once(
    fake_time: FakeTime,
) -> None:
    s = Stubbed(target=2)
    old = (inst("i-a", version="1"), inst("i-b", version="1"))
    roles = {"i-a": "active", "i-b": "standby"}
    s.describe(group_page(2, *old, min_size=2, max_size=3), roles)
    s.suspend()
    s.write("set_desired_capacity", {"AutoScalingGroupName": GROUP, "DesiredCapacity": 3})
    s.describe(group_page(3, *old, inst("i-new", "Pending:Wait"), min_size=2, max_size=3), roles)
    # Its launch was ABANDONed and it left between two polls; the group launched the next one,
    # which would be abandoned the same way: no waiting until the timeout.
    again = group_page(3, *old, inst("i-next", "Pending:Wait"), min_size=2, max_size=3)
    s.describe(copy.deepcopy(again), roles)
    s.describe(copy.deepcopy(again), roles)
    s.point_back("1")
    # The next one, launched from the failed version and not serving, goes; the old ones stay.
    s.write(
        "terminate_instance_in_auto_scaling_group",
        {"InstanceId": "i-next", "ShouldDecrementDesiredCapacity": True},
    )
    s.describe(group_page(2, *old, inst("i-next", "Terminating"), min_size=2, max_size=3), roles)
    s.resume()

    with pytest.raises(ReplacementError, match="i-new left the group before it was InService"):
        s.run(fake_time, [])


# --- one plan: the dry run renders the steps the real run takes; one read on a no-op ------------

READS = ("DescribeAutoScalingGroups", "DescribeLaunchTemplates", "DescribeInstances")


def _reads(recorder: CallRecorder) -> dict[str, int]:
    return {op: sum(1 for o in recorder.operations if o.endswith(f":{op}")) for op in READS}


def _dry_then_real(aws: AwsContext, fake_time: FakeTime, target: int) -> tuple[Any, Any]:
    """The steps a dry run renders, then the steps the real run took, on the same group."""
    planned, ran = replace.Availability(), replace.Availability()
    run(aws, fake_time, target, dry_run=True, report=planned)
    run(aws, fake_time, target, report=ran)
    return planned.steps, ran.steps


@pytest.mark.usefixtures("patched_moto")
def test_dry_run_and_real_run_take_the_same_steps_for_one_outdated_instance(
    aws: AwsContext, fake_time: FakeTime
) -> None:
    new_version(build_group(1, 2))
    (old,) = [i["InstanceId"] for i in _members(client("autoscaling"))]

    planned, ran = _dry_then_real(aws, fake_time, 1)

    assert (
        planned
        == ran
        == [
            "suspend AZRebalance for the roll",
            f"replace {old} (role not published): launch a replacement first, then terminate it",
            "bring the group back to its size 1",
            "resume AZRebalance",
        ]
    )
    assert snapshot()["versions"] == ["2"]


@pytest.mark.usefixtures("patched_moto")
def test_dry_run_and_real_run_take_the_same_steps_for_an_ha_pair(
    roles_aws: AwsContext, fake_time: FakeTime, transactors: Transactors
) -> None:
    roles = _group_with_roles(transactors, 2, 1)
    standby, active = sorted(roles)

    planned, ran = _dry_then_real(roles_aws, fake_time, 2)

    assert (
        planned
        == ran
        == [
            "suspend AZRebalance for the roll",
            f"replace {standby} (standby): launch a replacement standby first, then terminate it",
            f"replace the active {active}: terminate it once one current standby is InService; "
            "the standby takes over, then grow the group back to its size",
            "bring the group back to its size 2",
            "resume AZRebalance",
        ]
    )
    _assert_one_standby_at_each_active_termination(transactors)
    assert snapshot()["versions"] == ["2", "2"]


@pytest.mark.usefixtures("patched_moto")
def test_dry_run_and_real_run_take_no_step_and_read_once_when_nothing_is_outdated(
    aws: AwsContext, recorder: CallRecorder, fake_time: FakeTime
) -> None:
    new_version(build_group(2, 3))
    run(aws, fake_time, 2)
    recorder.operations.clear()

    planned, ran = _dry_then_real(aws, fake_time, 2)

    assert planned == ran == []
    # Each of the dry run and the real run: one read of the group and one of its roles, no
    # write; the group and every instance are on version 2, so the template is not read.
    assert _reads(recorder) == {
        "DescribeAutoScalingGroups": 2,
        "DescribeInstances": 2,
        "DescribeLaunchTemplates": 0,
    }
    assert recorder.mutating == []


@pytest.mark.usefixtures("patched_moto")
def test_a_no_op_reads_the_group_and_its_roles_once_and_writes_nothing(
    aws: AwsContext, recorder: CallRecorder, fake_time: FakeTime
) -> None:
    new_version(build_group(1, 2))
    run(aws, fake_time, 1)
    recorder.operations.clear()

    assert run(aws, fake_time, 1) == []
    assert recorder.operations == [
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:DescribeInstances",
    ]


@pytest.mark.usefixtures("patched_moto")
def test_a_group_set_to_latest_has_its_template_read_to_know_what_latest_means(
    aws: AwsContext, recorder: CallRecorder, fake_time: FakeTime
) -> None:
    lt_id = build_group(1, 2)
    new_version(lt_id)
    run(aws, fake_time, 1)
    aws.client("autoscaling", REGION).update_auto_scaling_group(
        AutoScalingGroupName=GROUP, LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "$Latest"}
    )
    recorder.operations.clear()

    assert run(aws, fake_time, 1) == []
    assert recorder.operations == [
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:DescribeInstances",
        "ec2:DescribeLaunchTemplates",
    ]
