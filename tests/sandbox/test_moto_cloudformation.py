"""The CloudFormation correction the benchmark's side-by-side `aws cloudformation deploy` needs
(datomic_aws/sandbox/moto_fixes/cloudformation.py): UsePreviousValue keeps the value as given (an
SSM parameter's path), and a change set that changes nothing is FAILED "didn't contain changes".
Shown needed: moto as it is calls such a change set a change."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

REGION = "us-east-1"
STACK = "s"
PATH = "/sandbox/ami"
TEMPLATE = json.dumps(
    {
        "Parameters": {
            "ImageId": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": PATH},
            "Size": {"Type": "String", "Default": "1"},
        },
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    }
)
EVERY_PREVIOUS = [
    {"ParameterKey": "ImageId", "UsePreviousValue": True},
    {"ParameterKey": "Size", "UsePreviousValue": True},
]


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


def _stack_and_change_set(parameters: list[dict[str, Any]], body: str = TEMPLATE) -> dict[str, Any]:
    """A stack created with its defaults, then an UPDATE change set of the same template, as
    `aws cloudformation deploy` makes it (every parameter not overridden: UsePreviousValue)."""
    client("ssm").put_parameter(Name=PATH, Value="ami-12c6146b", Type="String")
    cfn = client("cloudformation")
    # Created as datomic-aws creates a stack: a CREATE change set, executed.
    cfn.create_change_set(
        StackName=STACK, ChangeSetName="create", ChangeSetType="CREATE", TemplateBody=TEMPLATE
    )
    cfn.execute_change_set(StackName=STACK, ChangeSetName="create")
    cfn.create_change_set(
        StackName=STACK,
        ChangeSetName="c",
        ChangeSetType="UPDATE",
        TemplateBody=body,
        Parameters=parameters,
    )
    return dict(cfn.describe_change_set(StackName=STACK, ChangeSetName="c"))


# The same template, as `aws cloudformation get-template` gives it back (another text).
REFORMATTED = json.dumps(json.loads(TEMPLATE), indent=2)


@pytest.mark.usefixtures("unpatched_moto", "mocked_aws")
def test_without_the_correction_keeping_every_value_is_a_change() -> None:
    assert _stack_and_change_set(EVERY_PREVIOUS, REFORMATTED)["Status"] == "CREATE_COMPLETE"


@pytest.mark.usefixtures("unpatched_moto", "mocked_aws")
def test_without_the_correction_the_same_text_is_refused_as_update_stack_would() -> None:
    with pytest.raises(ClientError, match="No updates are to be performed"):
        _stack_and_change_set(EVERY_PREVIOUS)


@pytest.mark.parametrize("body", [TEMPLATE, REFORMATTED], ids=["same text", "reformatted"])
@pytest.mark.usefixtures("patched_moto", "mocked_aws")
def test_keeping_every_value_is_an_empty_change_set_as_on_aws(body: str) -> None:
    described = _stack_and_change_set(EVERY_PREVIOUS, body)
    assert described["Status"] == "FAILED"
    assert described["ExecutionStatus"] == "UNAVAILABLE"
    assert "didn't contain changes" in described["StatusReason"]


@pytest.mark.usefixtures("patched_moto", "mocked_aws")
def test_a_real_change_keeps_the_ssm_path_and_executes() -> None:
    described = _stack_and_change_set(
        [EVERY_PREVIOUS[0], {"ParameterKey": "Size", "ParameterValue": "2"}]
    )
    assert described["Status"] == "CREATE_COMPLETE"
    cfn = client("cloudformation")
    cfn.execute_change_set(StackName=STACK, ChangeSetName="c")  # moto alone: a 500 here
    (stack,) = cfn.describe_stacks(StackName=STACK)["Stacks"]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert values == {"ImageId": "ami-12c6146b", "Size": "2"}  # the path resolved again


@pytest.mark.usefixtures("patched_moto", "mocked_aws")
def test_a_change_set_that_passes_every_value_is_left_to_moto() -> None:
    # Our own change sets never keep a previous value: moto answers them as it always did (here it
    # compares the SSM path with the resolved AMI id and calls it a change).
    passed = [
        {"ParameterKey": "ImageId", "ParameterValue": PATH},
        {"ParameterKey": "Size", "ParameterValue": "1"},
    ]
    assert _stack_and_change_set(passed)["Status"] == "CREATE_COMPLETE"
