"""A transactor group on the embedded AWS, built with plain boto3: the table, the configuration in
SSM, a launch template whose user data has the boot script's constant lines, and a group with the
launch lifecycle hook (as our template declares it)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import boto3

from datomic_aws import names

REGION = "us-east-1"
SYSTEM = "sbx"
GROUP = names.autoscaling_group(SYSTEM)
HOOK = "transactor-listening"
TABLE = "sbx-table"


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)  # type: ignore[call-overload]


def user_data(pin: str = "") -> str:
    lines = [
        "#!/bin/bash",
        *([f"readonly CONFIG_PIN='{pin}'"] if pin else []),
        f"readonly SYSTEM='{SYSTEM}'",
        f"readonly CONFIG_REGION='{REGION}'",
        f"readonly SSM_PARAMETER='{names.ssm_parameter(SYSTEM)}'",
        f"readonly GROUP_NAME='{GROUP}'",
        f"readonly HOOK_NAME='{HOOK}'",
        "echo booting",
    ]
    return base64.b64encode("\n".join(lines).encode()).decode()


def sandbox_config(heartbeat_msec: int, protocol: str = "ddb") -> str:
    """The configuration build_group stores (version 1 of the parameter)."""
    return (
        f"protocol={protocol}\nhost=0.0.0.0\nport=4334\naws-dynamodb-table={TABLE}\n"
        f"aws-dynamodb-region={REGION}\nheartbeat-interval-msec={heartbeat_msec}\n"
    )


def build_group(
    endpoint: str, size: int, heartbeat_msec: int, protocol: str = "ddb", pin: str = ""
) -> None:
    ddb = client(endpoint, "dynamodb")
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    config = sandbox_config(heartbeat_msec, protocol)
    client(endpoint, "ssm").put_parameter(
        Name=names.ssm_parameter(SYSTEM), Value=config, Type="SecureString"
    )
    ec2 = client(endpoint, "ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName="sbx-template",
        LaunchTemplateData={
            "ImageId": "ami-12c6146b",
            "InstanceType": "t3.micro",
            "UserData": user_data(pin),
            "InstanceInitiatedShutdownBehavior": "terminate",
        },
    )["LaunchTemplate"]
    client(endpoint, "autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
        MinSize=0,
        MaxSize=size + 1,
        DesiredCapacity=size,
        AvailabilityZones=[f"{REGION}a"],
        LifecycleHookSpecificationList=[
            {
                "LifecycleHookName": HOOK,
                "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                "HeartbeatTimeout": 900,
                "DefaultResult": "ABANDON",
            }
        ],
    )


def instances(endpoint: str) -> list[dict[str, Any]]:
    (group,) = client(endpoint, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[GROUP]
    )["AutoScalingGroups"]
    found: list[dict[str, Any]] = group["Instances"]
    return found


def wait_for(
    check: Callable[[], Any], what: str = "", timeout: float = 20, step: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or check.__doc__ or check}")
        time.sleep(step)


def roles(control: Any) -> dict[str, str | None]:
    """instance -> role, for the live emulated transactors."""
    return {t["instance_id"]: t["role"] for t in control.transactors() if t["alive"]}


def role_tags(endpoint: str) -> dict[str, str]:
    tags = client(endpoint, "ec2").describe_tags(
        Filters=[{"Name": "key", "Values": [names.TAG_ROLE]}]
    )["Tags"]
    return {t["ResourceId"]: t["Value"] for t in tags}


def ec2_state(endpoint: str, instance_id: str) -> str:
    reservations = client(endpoint, "ec2").describe_instances(InstanceIds=[instance_id])
    return str(reservations["Reservations"][0]["Instances"][0]["State"]["Name"])
