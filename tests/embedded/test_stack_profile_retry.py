"""stack/operations.py: the stack step is retried once when it rolled back because EC2/Auto
Scaling did not accept the instance profile yet (reference §11: IAM is eventually consistent).

A create that ends ROLLBACK_COMPLETE on such a reason is deleted (ours, nothing stateful in it)
and created once more; an update that ends UPDATE_ROLLBACK_COMPLETE is asked once more on the
stack's new state. Any other reason is reported as before; a second failure is reported as it is.

Stubber pinned to exact parameters. The reasons are AWS's own texts, as users quote them:
- `ASG_REASON`: CloudFormation's CREATE_FAILED reason on an AWS::AutoScaling::AutoScalingGroup
  whose launch template names a profile by ARN (aws-samples/amazon-ec2-gitlab-runner#16:
  'Resource handler returned message: "You must use a valid fully-formed launch template. Value
  (arn:aws:iam::...:instance-profile/GitlabRunnerRole) for parameter iamInstanceProfile.arn is
  invalid. Invalid IAM Instance Profile ARN (Service: AutoScaling, Status Code: 400, Request ID:
  ...)" (RequestToken: ..., HandlerErrorCode: InvalidRequest)');
- `BY_NAME`: the same refusal for a profile named by name, seconds after CreateInstanceProfile
  (eksctl-io/eksctl#8039, hashicorp/terraform-provider-aws#4769: "You must use a valid fully-formed
  launch template. Value (<name>) for parameter iamInstanceProfile.name is invalid. Invalid IAM
  Instance Profile name");
- `LC_REASON`: Auto Scaling's launch-configuration form, "Invalid IamInstanceProfile: <name>"
  (Service: AmazonAutoScaling; Error Code: ValidationError), quoted in public runbooks and matched
  by terraform's own retry of CreateLaunchConfiguration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY

from datomic_aws import names, stack
from datomic_aws.changes import Action
from datomic_aws.errors import ProfileNotPropagated, StackError
from datomic_aws.stack.events import profile_not_propagated
from tests.embedded.test_stack import (
    ACCOUNT,
    CSID,
    LT_MODIFY,
    NAME,
    REGION,
    SID,
    SYSTEM,
    Harness,
    change_set_created,
    change_set_described,
    event,
    template,
    url,
)

PROFILE = names.transactor_role(SYSTEM)
ASG = "AWS::AutoScaling::AutoScalingGroup"
LT = "AWS::EC2::LaunchTemplate"
ASG_REASON = (
    'Resource handler returned message: "You must use a valid fully-formed launch template. '
    f"Value (arn:aws:iam::{ACCOUNT}:instance-profile/{PROFILE}) for parameter "
    "iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN (Service: AutoScaling, "
    'Status Code: 400, Request ID: f64c0ed7-f166-4d25-a39d-2c129a9570a6)" (RequestToken: '
    "0d3985ce-5a1f-f78e-ce85-fd92bb46d496, HandlerErrorCode: InvalidRequest)"
)
BY_NAME = (
    f"You must use a valid fully-formed launch template. Value ({PROFILE}) for parameter "
    "iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
)
LC_REASON = (
    f"Invalid IamInstanceProfile: {PROFILE} (Service: AmazonAutoScaling; Status Code: 400; "
    "Error Code: ValidationError; Request ID: 7312e684-b079-11e8-95a6-5baf58bb2ca8)"
)
# Another refusal with the same lead-in: an AMI that does not exist is no propagation delay.
AMI_REASON = (
    "You must use a valid fully-formed launch template. The image id '[ami-0abcdef1234567890]' "
    "does not exist (Service: AutoScaling, Status Code: 400, Request ID: "
    "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d)"
)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.done()


def _rolled_back(h: Harness, reason: str, rtype: str = ASG, start: int = 0) -> None:
    """A create executed, then rolled back: the group failed with `reason`."""
    h.describe("ROLLBACK_COMPLETE", by=SID)
    h.events(
        [
            event(start + 4, "ROLLBACK_COMPLETE"),
            event(
                start + 3,
                "ROLLBACK_IN_PROGRESS",
                reason="The following resource(s) failed "
                "to create: [TransactorGroup]. Rollback requested by user.",
            ),
            event(start + 2, "CREATE_FAILED", "TransactorGroup", rtype, reason),
            event(start + 1, "CREATE_IN_PROGRESS"),
            event(start, "REVIEW_IN_PROGRESS"),
        ]
    )


def _executed_create(h: Harness, body: str, n: int) -> None:
    change_set_created(
        h,
        body,
        "create",
        source={"TemplateURL": url(stack.template_key(NAME, body))},
        cs_type="CREATE",
    )
    change_set_described(h, "CREATE_COMPLETE")
    h.events([event(n, "REVIEW_IN_PROGRESS")])
    h.cfn.add_response(
        "execute_change_set",
        {},
        {"ChangeSetName": CSID, "StackName": SID, "ClientRequestToken": ANY},
    )


def _deleted(h: Harness, n: int) -> None:
    """run.delete of the rolled-back stack (never protected: protection follows a complete create)."""
    h.describe("ROLLBACK_COMPLETE")
    h.events([event(n, "ROLLBACK_COMPLETE")])
    h.cfn.add_response("delete_stack", {}, {"StackName": SID, "ClientRequestToken": ANY})
    h.describe("DELETE_COMPLETE", by=SID)
    h.events([event(n + 1, "DELETE_COMPLETE"), event(n, "ROLLBACK_COMPLETE")])


def _head(h: Harness, body: str) -> None:
    """The second upload finds the template there already (the bucket converged once per run)."""
    h.s3.add_response(
        "head_object",
        {},
        {
            "Bucket": names.templates_bucket(ACCOUNT, REGION),
            "Key": stack.template_key(NAME, body),
            "ExpectedBucketOwner": ACCOUNT,
        },
    )


@pytest.mark.parametrize(("reason", "rtype"), [(ASG_REASON, ASG), (BY_NAME, ASG), (LC_REASON, LT)])
def test_a_create_refused_for_the_profile_is_deleted_and_created_once_more(
    h: Harness, reason: str, rtype: str
) -> None:
    body = template()
    h.absent()
    h.bucket_ready(stack.template_key(NAME, body))
    _executed_create(h, body, 0)
    _rolled_back(h, reason, rtype)
    _deleted(h, 4)
    _head(h, body)
    _executed_create(h, body, 10)
    h.created()
    changes = stack.create_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert [(c.resource, c.action) for c in changes][:2] == [
        (f"stack/{NAME}", Action.CREATE),
        (f"stack/{NAME}/LaunchTemplate", Action.CREATE),
    ]
    ops = [op for op, _ in h.params if op.startswith("cloudformation:") and "Describe" not in op]
    assert ops == [
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DeleteStack",
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:UpdateTerminationProtection",
    ]
    # Said once, through the progress callback, with the failed event that caused it.
    retries = [line for line in h.lines if "once more" in line]
    assert retries == [
        f"stack {NAME} rolled back: the instance profile was not usable yet (IAM is eventually "
        "consistent); deleting the rolled-back stack and creating it once more"
    ]
    assert any(reason in line for line in h.lines)


def test_a_second_refusal_is_reported_as_it_is(h: Harness) -> None:
    body = template()
    h.absent()
    h.bucket_ready(stack.template_key(NAME, body))
    _executed_create(h, body, 0)
    _rolled_back(h, BY_NAME)
    _deleted(h, 4)
    _head(h, body)
    _executed_create(h, body, 10)
    _rolled_back(h, BY_NAME, start=10)
    with pytest.raises(StackError) as caught:
        stack.create_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    (line,) = caught.value.lines()
    assert f"stack {NAME} ended ROLLBACK_COMPLETE: TransactorGroup: {BY_NAME}" in line
    assert "--recreate-failed" in line
    assert h.mutating["cloudformation:CreateChangeSet"] == 2  # one retry, never two
    assert h.mutating["cloudformation:DeleteStack"] == 1


@pytest.mark.parametrize(
    ("reason", "rtype"),
    [
        (AMI_REASON, ASG),  # the same lead-in, another cause
        ("Invalid instance type", LT),
        (BY_NAME, "AWS::EC2::SecurityGroup"),  # not the launch template or the group
    ],
)
def test_any_other_failure_is_not_retried(h: Harness, reason: str, rtype: str) -> None:
    body = template()
    h.absent()
    h.bucket_ready(stack.template_key(NAME, body))
    _executed_create(h, body, 0)
    _rolled_back(h, reason, rtype)
    with pytest.raises(StackError) as caught:
        stack.create_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert not isinstance(caught.value, ProfileNotPropagated)
    assert reason in str(caught.value)
    assert "cloudformation:DeleteStack" not in h.mutating
    assert not any("once more" in line for line in h.lines)


def test_a_stateful_template_is_never_deleted_for_a_retry(h: Harness) -> None:
    """Only a stack whose template declares nothing stateful is deleted on its own."""
    doc: dict[str, Any] = json.loads(template())
    doc["Resources"]["Data"] = {"Type": "AWS::EC2::Volume", "Properties": {"Size": 8}}
    body = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    h.absent()
    h.bucket_ready(stack.template_key(NAME, body))
    _executed_create(h, body, 0)
    _rolled_back(h, BY_NAME)
    h.describe("ROLLBACK_COMPLETE")
    with pytest.raises(ProfileNotPropagated):
        stack.create_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert "cloudformation:DeleteStack" not in h.mutating


def test_a_rolled_back_stack_that_is_not_ours_is_never_deleted_for_a_retry(h: Harness) -> None:
    body = template()
    h.absent()
    h.bucket_ready(stack.template_key(NAME, body))
    _executed_create(h, body, 0)
    _rolled_back(h, BY_NAME)
    h.describe("ROLLBACK_COMPLETE", tags={})  # its tags gone meanwhile: not provably ours
    with pytest.raises(ProfileNotPropagated):
        stack.create_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert "cloudformation:DeleteStack" not in h.mutating


def _update_rolled_back(h: Harness, reason: str, start: int) -> None:
    h.describe("UPDATE_ROLLBACK_COMPLETE", by=SID)
    h.events(
        [
            event(start + 3, "UPDATE_ROLLBACK_COMPLETE"),
            event(start + 2, "UPDATE_FAILED", "TransactorGroup", ASG, reason),
            event(start + 1, "UPDATE_IN_PROGRESS"),
            event(start, "UPDATE_COMPLETE"),
        ]
    )


def _executed_update(h: Harness, body: str, n: int) -> None:
    change_set_created(
        h, body, "update", source={"TemplateURL": url(stack.template_key(NAME, body))}
    )
    change_set_described(h, "CREATE_COMPLETE", changes=[LT_MODIFY])
    h.events([event(n, "UPDATE_COMPLETE")])
    h.cfn.add_response(
        "execute_change_set",
        {},
        {"ChangeSetName": CSID, "StackName": SID, "ClientRequestToken": ANY},
    )


def test_an_update_refused_for_the_profile_is_asked_once_more_on_the_new_state(
    h: Harness,
) -> None:
    old, new = template(instance_type="t3.small"), template(instance_type="t3.large")
    h.describe("UPDATE_COMPLETE", params={"InstanceType": "t3.large"})
    h.get_template(old)
    h.resources()
    h.bucket_ready(stack.template_key(NAME, new), uploaded=False)
    _executed_update(h, new, 0)
    _update_rolled_back(h, ASG_REASON, 0)
    # The retry reads the stack again: its request is keyed on the new state.
    h.describe("UPDATE_ROLLBACK_COMPLETE", by=SID)
    _head(h, new)
    _executed_update(h, new, 10)
    h.describe("UPDATE_COMPLETE", by=SID)
    h.events(
        [
            event(12, "UPDATE_COMPLETE"),
            event(11, "UPDATE_IN_PROGRESS"),
            event(10, "UPDATE_COMPLETE"),
        ]
    )
    changes = stack.update_stack(h.ctx, REGION, NAME, new, system=SYSTEM, waiting=h.waiting())
    assert changes[0].action is Action.UPDATE
    tokens = [p["ClientToken"] for op, p in h.params if op == "cloudformation:CreateChangeSet"]
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert [line for line in h.lines if "once more" in line] == [
        f"stack {NAME} rolled back: the instance profile was not usable yet (IAM is eventually "
        "consistent); updating it once more"
    ]


def test_an_update_refused_twice_is_reported_as_it_is(h: Harness) -> None:
    old, new = template(instance_type="t3.small"), template(instance_type="t3.large")
    h.describe("UPDATE_COMPLETE", params={"InstanceType": "t3.large"})
    h.get_template(old)
    h.resources()
    h.bucket_ready(stack.template_key(NAME, new), uploaded=False)
    _executed_update(h, new, 0)
    _update_rolled_back(h, BY_NAME, 0)
    h.describe("UPDATE_ROLLBACK_COMPLETE", by=SID)
    _head(h, new)
    _executed_update(h, new, 10)
    _update_rolled_back(h, BY_NAME, 10)
    with pytest.raises(StackError) as caught:
        stack.update_stack(h.ctx, REGION, NAME, new, system=SYSTEM, waiting=h.waiting())
    assert "ended UPDATE_ROLLBACK_COMPLETE: TransactorGroup: You must use a valid" in str(
        caught.value
    )
    assert "the previous template is back in place" in str(caught.value)
    assert h.mutating["cloudformation:ExecuteChangeSet"] == 2


def test_the_match_is_narrow() -> None:
    failed = event(2, "CREATE_FAILED", "TransactorGroup", ASG, BY_NAME)
    assert profile_not_propagated([failed])
    # Not on a success, not on another resource type, not on the cascade's cancellation.
    assert not profile_not_propagated([{**failed, "ResourceStatus": "CREATE_COMPLETE"}])
    assert not profile_not_propagated([{**failed, "ResourceType": "AWS::IAM::InstanceProfile"}])
    assert not profile_not_propagated(
        [event(3, "CREATE_FAILED", "TransactorGroup", ASG, "Resource creation cancelled")]
    )
