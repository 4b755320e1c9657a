"""The stack package without moto: the status table, the decision table, and (with botocore's
Stubber pinned to exact parameters) the paths moto cannot produce: asynchronous failures, rollbacks, in-progress
stacks, empty change sets, paged events, heartbeats, timeouts and large templates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import botocore.loaders
import botocore.session
import pytest
from botocore.stub import ANY, Stubber

from datomic_aws import names, stack
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from datomic_aws.errors import (
    AwsCallError,
    Interrupted,
    NameTakenError,
    StackError,
    UsageError,
    WaitTimeout,
)
from datomic_aws.stack import Intent, Owner, StackState, Verdict
from tests.clock import FakeClock

REGION = "us-east-1"
NAME = "datomic-prod"
SYSTEM = "prod"
ACCOUNT = "111122223333"
SID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{NAME}/0000-1111"
CSID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/cs/2222"
BUCKET = names.templates_bucket(ACCOUNT, REGION)
T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
EMPTY_REASON = (
    "The submitted information didn't contain changes. Submit different information to create a"
    " change set."
)


def template(size: int = 0, instance_type: str = "t3.small") -> str:
    doc: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"InstanceType": {"Type": "String", "Default": instance_type}},
        "Resources": {
            "LaunchTemplate": {
                "Type": "AWS::EC2::LaunchTemplate",
                "Properties": {"LaunchTemplateData": {"InstanceType": {"Ref": "InstanceType"}}},
            }
        },
    }
    if size:
        doc["Description"] = ""
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        doc["Description"] = "x" * (size - len(text.encode()))
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


_LOADER = botocore.loaders.create_loader()


class Harness:
    """An AwsContext whose clients answer from Stubbers; records every call's parameters."""

    def __init__(self, region: str = REGION, **ctx_kwargs: Any) -> None:
        self.region = region
        self.params: list[tuple[str, dict[str, Any]]] = []
        self.ctx = AwsContext(hooks=[("before-parameter-build", self._record)], **ctx_kwargs)
        # One model loader for every test: parsing botocore's JSON models dominates client setup.
        self.ctx.session().register_component("data_loader", _LOADER)
        self.cfn = Stubber(self.ctx.client("cloudformation", region))
        self.s3 = Stubber(self.ctx.client("s3", region))
        self.sts = Stubber(self.ctx.client("sts", region))
        self.asg = Stubber(self.ctx.client("autoscaling", region))
        self.clock = FakeClock()
        self.lines: list[str] = []
        for s in (self.cfn, self.s3, self.sts, self.asg):
            s.activate()

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.params.append((f"{model.service_model.endpoint_prefix}:{model.name}", dict(params)))

    def waiting(self, **kwargs: Any) -> stack.Waiting:
        opts: dict[str, Any] = {
            "timeout": 600.0,
            "poll_interval": 5.0,
            "heartbeat_interval": 60.0,
            "on_event": self.lines.append,
            "clock": self.clock,
            "sleep": self.clock.sleep,
        }
        opts.update(kwargs)
        return stack.Waiting(**opts)

    def done(self) -> None:
        for s in (self.cfn, self.s3, self.sts, self.asg):
            s.assert_no_pending_responses()

    @property
    def mutating(self) -> dict[str, int]:
        return self.ctx.call_log.mutating()

    # -- canned CloudFormation answers

    def describe(
        self,
        status: str,
        *,
        by: str = NAME,
        tags: dict[str, str] | None = None,
        protected: bool = False,
        params: dict[str, str] | None = None,
        reason: str = "",
    ) -> None:
        body: dict[str, Any] = {
            "StackName": NAME,
            "StackId": SID,
            "CreationTime": T0,
            "StackStatus": status,
            "Tags": [
                {"Key": k, "Value": v}
                for k, v in (names.tags(SYSTEM) if tags is None else tags).items()
            ],
            "EnableTerminationProtection": protected,
            "Parameters": [
                {"ParameterKey": k, "ParameterValue": v}
                for k, v in (params if params is not None else {"InstanceType": "t3.small"}).items()
            ],
        }
        if reason:
            body["StackStatusReason"] = reason
        self.cfn.add_response("describe_stacks", {"Stacks": [body]}, {"StackName": by})

    def absent(self, by: str = NAME) -> None:
        self.cfn.add_client_error(
            "describe_stacks",
            "ValidationError",
            f"Stack with id {by} does not exist",
            expected_params={"StackName": by},
        )

    def events(self, events: list[dict[str, Any]], by: str = SID, **page: Any) -> None:
        self.cfn.add_response(
            "describe_stack_events", {"StackEvents": events, **page}, {"StackName": by, **{}}
        )

    def resources(self, resources: list[dict[str, Any]] | None = None) -> None:
        """DescribeStackResources: the ownership check of the stack's groups before a write."""
        self.cfn.add_response(
            "describe_stack_resources",
            {"StackResources": resources or []},
            {"StackName": SID},
        )

    def get_template(self, body: str) -> None:
        self.cfn.add_response(
            "get_template",
            {"TemplateBody": body},
            {"StackName": SID, "TemplateStage": "Original"},
        )

    def account(self) -> None:
        self.sts.add_response(
            "get_caller_identity",
            {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "UserId": "AIDAEXAMPLE"},
            {},
        )

    def bucket_absent(self) -> str:
        """The templates bucket does not exist (GetBucketTagging doubles as the existence
        check); its name."""
        bucket = names.templates_bucket(ACCOUNT, self.region)
        self.s3.add_client_error(
            "get_bucket_tagging",
            "NoSuchBucket",
            "The specified bucket does not exist",
            404,
            expected_params={"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT},
        )
        return bucket

    def protection(self, enabled: bool) -> None:
        """UpdateTerminationProtection on the stack (by id), turning it on or off."""
        self.cfn.add_response(
            "update_termination_protection",
            {"StackId": SID},
            {"StackName": SID, "EnableTerminationProtection": enabled},
        )

    def created(self) -> None:
        """The create's end: CREATE_COMPLETE with its events, then the protection turned on."""
        self.describe("CREATE_COMPLETE", by=SID)
        self.events(
            [
                event(12, "CREATE_COMPLETE"),
                event(11, "CREATE_IN_PROGRESS"),
                event(10, "REVIEW_IN_PROGRESS"),
            ]
        )
        self.protection(True)

    def bucket_ready(self, key: str, *, uploaded: bool = True) -> None:
        """The templates bucket exists and is hardened; the object is (or is not) there."""
        self.account()
        bucket = names.templates_bucket(ACCOUNT, self.region)
        # GetBucketTagging doubles as the existence check.
        self.s3.add_response(
            "get_bucket_tagging",
            {
                "TagSet": [
                    {"Key": "managed-by", "Value": "datomic-aws"},
                    {"Key": "datomic:purpose", "Value": "cloudformation-templates"},
                ]
            },
            {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT},
        )
        self.s3.add_response(
            "get_public_access_block",
            {
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                }
            },
            {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT},
        )
        self.s3.add_response(
            "get_bucket_encryption",
            {
                "ServerSideEncryptionConfiguration": {
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                }
            },
            {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT},
        )
        self.s3.add_response(
            "get_bucket_policy",
            {"Policy": json.dumps(tls_policy(bucket))},
            {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT},
        )
        head = {"Bucket": bucket, "Key": key, "ExpectedBucketOwner": ACCOUNT}
        if uploaded:
            self.s3.add_response("head_object", {}, head)
        else:
            self.s3.add_client_error("head_object", "404", "Not Found", 404, expected_params=head)
            self.s3.add_response(
                "put_object",
                {},
                {
                    "Bucket": bucket,
                    "Key": key,
                    "Body": ANY,
                    "ContentType": "application/json",
                    "ExpectedBucketOwner": ACCOUNT,
                },
            )


def tls_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def event(
    n: int,
    status: str,
    logical: str = NAME,
    rtype: str = "AWS::CloudFormation::Stack",
    reason: str = "",
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "StackId": SID,
        "EventId": f"ev-{n}",
        "StackName": NAME,
        "LogicalResourceId": logical,
        "ResourceType": rtype,
        "Timestamp": T0 + timedelta(seconds=n),
        "ResourceStatus": status,
    }
    if reason:
        e["ResourceStatusReason"] = reason
    return e


def url(key: str, region: str = REGION) -> str:
    return f"https://{names.templates_bucket(ACCOUNT, region)}.s3.{region}.amazonaws.com/{key}"


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness


# ------------------------------------------------------------------------------------------
# Status and decision tables


def test_every_botocore_stack_status_is_classified() -> None:
    model = botocore.session.get_session().get_service_model("cloudformation")
    statuses: list[str] = model.shape_for("StackStatus").enum  # type: ignore[attr-defined]
    assert len(statuses) >= 23
    unclassified = [s for s in statuses if s not in stack.STATUS_STATES]
    assert unclassified == []
    assert set(stack.STATUS_STATES) == set(statuses)
    for status in statuses:
        assert isinstance(stack.classify(status), StackState)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("CREATE_COMPLETE", StackState.READY),
        ("UPDATE_ROLLBACK_COMPLETE", StackState.READY),
        ("IMPORT_ROLLBACK_COMPLETE", StackState.READY),
        ("REVIEW_IN_PROGRESS", StackState.REVIEW),
        ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", StackState.IN_PROGRESS),
        ("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", StackState.IN_PROGRESS),
        ("ROLLBACK_COMPLETE", StackState.ROLLBACK_COMPLETE),
        ("UPDATE_ROLLBACK_FAILED", StackState.NEEDS_CONTINUE_ROLLBACK),
        ("DELETE_FAILED", StackState.FAILED),
        ("DELETE_COMPLETE", StackState.DELETED),
        (None, StackState.ABSENT),
    ],
)
def test_classify(status: str | None, state: StackState) -> None:
    assert stack.classify(status) is state


def test_unknown_status_is_refused() -> None:
    with pytest.raises(StackError, match="unknown CloudFormation stack status"):
        stack.classify("SOMETHING_NEW")


def test_failure_statuses() -> None:
    assert "UPDATE_ROLLBACK_COMPLETE" in stack.FAILURE_STATUSES
    assert "ROLLBACK_COMPLETE" in stack.FAILURE_STATUSES
    assert "DELETE_FAILED" in stack.FAILURE_STATUSES
    assert "UPDATE_COMPLETE" not in stack.FAILURE_STATUSES
    assert "DELETE_COMPLETE" not in stack.FAILURE_STATUSES


@pytest.mark.parametrize("intent", list(Intent))
@pytest.mark.parametrize("state", list(StackState))
def test_decide_is_total_and_waits_on_in_progress(state: StackState, intent: Intent) -> None:
    d = stack.decide(state, intent, recreate_failed=True, ours=True)
    assert isinstance(d.verdict, Verdict)
    if state is StackState.IN_PROGRESS:
        assert d.verdict is Verdict.WAIT
    if d.verdict is Verdict.REFUSE:
        assert d.what and d.hint


@pytest.mark.parametrize(
    ("state", "intent", "kwargs", "verdict"),
    [
        (StackState.ABSENT, Intent.CREATE, {}, Verdict.CREATE),
        (StackState.DELETED, Intent.CREATE, {}, Verdict.CREATE),
        (StackState.REVIEW, Intent.CREATE, {"ours": True}, Verdict.CREATE),
        (StackState.REVIEW, Intent.CREATE, {}, Verdict.CREATE),
        (StackState.REVIEW, Intent.CREATE, {"owner": Owner.FOREIGN}, Verdict.REFUSE),
        (StackState.READY, Intent.CREATE, {}, Verdict.COMPARE),
        (StackState.ROLLBACK_COMPLETE, Intent.CREATE, {}, Verdict.REFUSE),
        (StackState.ROLLBACK_COMPLETE, Intent.CREATE, {"recreate_failed": True}, Verdict.REFUSE),
        (StackState.ROLLBACK_COMPLETE, Intent.CREATE, {"ours": True}, Verdict.REFUSE),
        (
            StackState.ROLLBACK_COMPLETE,
            Intent.CREATE,
            {"recreate_failed": True, "ours": True},
            Verdict.RECREATE,
        ),
        (StackState.READY, Intent.UPDATE, {"ours": True}, Verdict.UPDATE),
        (StackState.ABSENT, Intent.UPDATE, {}, Verdict.REFUSE),
        (StackState.NEEDS_CONTINUE_ROLLBACK, Intent.UPDATE, {"ours": True}, Verdict.REFUSE),
        (StackState.FAILED, Intent.UPDATE, {"ours": True}, Verdict.REFUSE),
        (StackState.ABSENT, Intent.DELETE, {}, Verdict.NOOP),
        (StackState.DELETED, Intent.DELETE, {}, Verdict.NOOP),
        (StackState.ROLLBACK_COMPLETE, Intent.DELETE, {"ours": True}, Verdict.DELETE),
        (StackState.FAILED, Intent.DELETE, {"ours": True}, Verdict.DELETE),
        (StackState.REVIEW, Intent.DELETE, {"ours": True}, Verdict.DELETE),
        # Ownership (issue 9): a stack that is not ours is refused for update and delete, in any
        # state and before any wait; --adopt takes over an untagged one, never a foreign one.
        (StackState.READY, Intent.UPDATE, {}, Verdict.REFUSE),
        (StackState.IN_PROGRESS, Intent.UPDATE, {}, Verdict.REFUSE),
        (StackState.READY, Intent.UPDATE, {"adopt": True}, Verdict.ADOPT),
        (StackState.IN_PROGRESS, Intent.UPDATE, {"adopt": True}, Verdict.WAIT),
        (StackState.READY, Intent.UPDATE, {"owner": Owner.FOREIGN, "adopt": True}, Verdict.REFUSE),
        (StackState.READY, Intent.DELETE, {}, Verdict.REFUSE),
        (StackState.IN_PROGRESS, Intent.DELETE, {}, Verdict.REFUSE),
        (StackState.ROLLBACK_COMPLETE, Intent.DELETE, {}, Verdict.REFUSE),
        (StackState.READY, Intent.DELETE, {"owner": Owner.FOREIGN}, Verdict.REFUSE),
        (StackState.READY, Intent.DELETE, {"owner": Owner.OURS}, Verdict.DELETE),
    ],
)
def test_decide(
    state: StackState, intent: Intent, kwargs: dict[str, Any], verdict: Verdict
) -> None:
    assert stack.decide(state, intent, **kwargs).verdict is verdict


@pytest.mark.parametrize(
    ("tags", "owner"),
    [
        (names.tags(SYSTEM), Owner.OURS),
        ({}, Owner.UNTAGGED),
        ({"owner": "team-a"}, Owner.UNTAGGED),
        ({"managed-by": "datomic-aws"}, Owner.UNTAGGED),
        ({"datomic:system": SYSTEM}, Owner.UNTAGGED),
        (names.tags("other"), Owner.FOREIGN),
        ({"datomic:system": "other"}, Owner.FOREIGN),
    ],
)
def test_owner_of(tags: dict[str, str], owner: Owner) -> None:
    assert stack.owner_of(tags, SYSTEM) is owner


def test_dry_run_writes_depend_on_template_size() -> None:
    assert stack.dry_run_writes(template()) == stack.DRY_RUN_WRITES
    assert {
        "cloudformation:CreateChangeSet",
        "cloudformation:DeleteChangeSet",
    } == stack.DRY_RUN_WRITES
    big = stack.dry_run_writes(template(size=60_000))
    assert "s3:PutObject" in big and big >= stack.DRY_RUN_WRITES


def test_template_url_and_key() -> None:
    body = template()
    key = stack.template_key(NAME, body)
    assert key == f"{NAME}/{stack.template_digest(body)}.json"
    assert len(stack.template_digest(body)) == 64
    assert (
        stack.template_url("b", "eu-west-1", key) == f"https://b.s3.eu-west-1.amazonaws.com/{key}"
    )
    assert "127.0.0.1" not in stack.template_url("b", "us-east-1", key)


# ------------------------------------------------------------------------------------------
# read_stack


def test_read_stack_absent_is_none(h: Harness) -> None:
    h.absent()
    assert stack.read_stack(h.ctx.client("cloudformation", REGION), NAME) is None
    h.done()


def test_read_stack_other_validation_error_is_raised(h: Harness) -> None:
    h.cfn.add_client_error("describe_stacks", "ValidationError", "1 validation error detected")
    with pytest.raises(Exception, match="1 validation error"):
        stack.read_stack(h.ctx.client("cloudformation", REGION), NAME)


def test_read_stack_fields(h: Harness) -> None:
    h.describe("UPDATE_COMPLETE", protected=True, reason="fine")
    info = stack.read_stack(h.ctx.client("cloudformation", REGION), NAME)
    assert info is not None
    assert (info.status, info.state, info.stack_id) == ("UPDATE_COMPLETE", StackState.READY, SID)
    assert info.tags == names.tags(SYSTEM)
    assert info.termination_protection is True
    assert info.parameters == {"InstanceType": "t3.small"}
    assert info.reason == "fine"


# ------------------------------------------------------------------------------------------
# wait_for_stack


def wait(h: Harness, **kwargs: Any) -> stack.StackInfo | None:
    opts: dict[str, Any] = {
        "timeout": 600.0,
        "poll_interval": 5.0,
        "heartbeat_interval": 60.0,
        "on_event": h.lines.append,
        "clock": h.clock,
        "sleep": h.clock.sleep,
    }
    opts.update(kwargs)
    return stack.wait_for_stack(h.ctx.client("cloudformation", REGION), SID, **opts)


def test_events_across_two_pages_printed_once_in_order(h: Harness) -> None:
    old = event(0, "UPDATE_COMPLETE")
    h.events([old])  # baseline: history is never replayed
    h.describe("UPDATE_IN_PROGRESS", by=SID)
    # newest first, over two pages, down to the baseline
    h.events(
        [
            event(3, "UPDATE_IN_PROGRESS", "Group", "AWS::AutoScaling::AutoScalingGroup"),
            event(2, "UPDATE_COMPLETE", "LaunchTemplate", "AWS::EC2::LaunchTemplate"),
        ],
        NextToken="page2",
    )
    h.cfn.add_response(
        "describe_stack_events",
        {"StackEvents": [event(1, "UPDATE_IN_PROGRESS"), old]},
        {"StackName": SID, "NextToken": "page2"},
    )
    h.describe("UPDATE_COMPLETE", by=SID)
    h.events([event(4, "UPDATE_COMPLETE"), event(3, "UPDATE_IN_PROGRESS", "Group"), event(2, "X")])
    info = wait(h)
    assert info is not None and info.status == "UPDATE_COMPLETE"
    assert [line.split()[1:4] for line in h.lines] == [
        [NAME, "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS"],
        ["LaunchTemplate", "AWS::EC2::LaunchTemplate", "UPDATE_COMPLETE"],
        ["Group", "AWS::AutoScaling::AutoScalingGroup", "UPDATE_IN_PROGRESS"],
        [NAME, "AWS::CloudFormation::Stack", "UPDATE_COMPLETE"],
    ]
    assert h.lines[0].startswith("12:00:01Z ")
    h.done()


def test_heartbeat_when_idle(h: Harness) -> None:
    h.events([])
    for _ in range(6):
        h.describe("UPDATE_IN_PROGRESS", by=SID)
        h.events([])
    h.describe("UPDATE_COMPLETE", by=SID)
    h.events([])
    wait(h, poll_interval=5.0, heartbeat_interval=10.0)
    beats = [line for line in h.lines if "still UPDATE_IN_PROGRESS" in line]
    assert [b.rsplit(" ", 1)[1] for b in beats] == ["(10s)", "(20s)"]  # polls at 0..25 s
    assert h.clock.sleeps == [5.0] * 6
    h.done()


def test_timeout_says_what_runs_and_how_to_watch(h: Harness) -> None:
    h.events([])
    for _ in range(3):
        h.describe("UPDATE_IN_PROGRESS", by=SID)
        h.events([])
    with pytest.raises(WaitTimeout) as err:
        wait(h, timeout=10.0, poll_interval=5.0)
    text = str(err.value)
    assert "still UPDATE_IN_PROGRESS after 10s" in text
    assert f"datomic-aws status {REGION} {SID}" in text
    h.done()


def test_interrupt_while_waiting_says_it_continues(h: Harness) -> None:
    h.events([])
    h.describe("UPDATE_IN_PROGRESS", by=SID)
    h.events([])

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as err:
        wait(h, sleep=interrupt)
    assert err.value.exit_code == 130
    assert "continues in AWS" in str(err.value)
    assert "datomic-aws status" in str(err.value)


def test_failure_quotes_first_failed_resource(h: Harness) -> None:
    h.events([])
    h.describe("UPDATE_ROLLBACK_COMPLETE", by=SID)
    h.events(
        [
            event(6, "UPDATE_ROLLBACK_COMPLETE"),
            event(
                5, "UPDATE_FAILED", "Other", "AWS::EC2::LaunchTemplate", "Resource update cancelled"
            ),
            event(
                4,
                "UPDATE_ROLLBACK_IN_PROGRESS",
                reason="The following resource(s) failed to update: [Group].",
            ),
            event(
                3,
                "UPDATE_FAILED",
                "Group",
                "AWS::AutoScaling::AutoScalingGroup",
                "Max size must be >= min",
            ),
            event(2, "UPDATE_IN_PROGRESS", "Group", "AWS::AutoScaling::AutoScalingGroup"),
        ]
    )
    with pytest.raises(StackError) as err:
        wait(h)
    text = str(err.value)
    assert "ended UPDATE_ROLLBACK_COMPLETE: Group: Max size must be >= min" in text
    assert "cancelled" not in text
    assert "previous template is back" in text


def test_waiting_out_does_not_raise_when_asked(h: Harness) -> None:
    h.events([])
    h.describe("UPDATE_ROLLBACK_COMPLETE", by=SID)
    h.events([])
    info = wait(h, raise_on_failure=False)
    assert info is not None and info.status == "UPDATE_ROLLBACK_COMPLETE"


# ------------------------------------------------------------------------------------------
# update_stack


def change_set_created(
    h: Harness, body: str, kind: str, *, source: dict[str, str], cs_type: str = "UPDATE"
) -> None:
    h.cfn.add_response(
        "create_change_set",
        {"Id": CSID, "StackId": SID},
        {
            "StackName": NAME,
            "ChangeSetName": f"datomic-aws-{kind}-{stack.template_digest(body)[:16]}",
            "ChangeSetType": cs_type,
            "ClientToken": ANY,
            "Tags": [{"Key": k, "Value": v} for k, v in sorted(names.tags(SYSTEM).items())],
            # Every plain parameter goes with its value (see stack.changesets._create_change_set).
            "Parameters": [
                {"ParameterKey": k, "ParameterValue": str(v["Default"])}
                for k, v in sorted(json.loads(body).get("Parameters", {}).items())
                if "Default" in v
            ],
            **source,
        },
    )


def change_set_described(h: Harness, status: str, reason: str = "", changes: Any = ()) -> None:
    body: dict[str, Any] = {
        "ChangeSetName": "cs",
        "ChangeSetId": CSID,
        "StackId": SID,
        "StackName": NAME,
        "Status": status,
        "ExecutionStatus": "AVAILABLE" if status == "CREATE_COMPLETE" else "UNAVAILABLE",
        "Changes": list(changes),
    }
    if reason:
        body["StatusReason"] = reason
    h.cfn.add_response("describe_change_set", body, {"ChangeSetName": CSID, "StackName": SID})


LT_MODIFY = {
    "Type": "Resource",
    "ResourceChange": {
        "Action": "Modify",
        "LogicalResourceId": "LaunchTemplate",
        "ResourceType": "AWS::EC2::LaunchTemplate",
        "Replacement": "False",
        "Scope": ["Properties"],
    },
}


def test_update_ending_rollback_quotes_first_failed_reason(h: Harness) -> None:
    old, new = template(instance_type="t3.small"), template(instance_type="t3.large")
    key = stack.template_key(NAME, new)
    h.describe("UPDATE_COMPLETE", params={"InstanceType": "t3.large"})
    h.get_template(old)
    h.resources()
    h.bucket_ready(key, uploaded=False)
    change_set_created(h, new, "update", source={"TemplateURL": url(key)})
    change_set_described(h, "CREATE_COMPLETE", changes=[LT_MODIFY])
    h.events([event(0, "UPDATE_COMPLETE")])
    h.cfn.add_response(
        "execute_change_set",
        {},
        {"ChangeSetName": CSID, "StackName": SID, "ClientRequestToken": ANY},
    )
    h.describe("UPDATE_ROLLBACK_COMPLETE", by=SID)
    h.events(
        [
            event(3, "UPDATE_ROLLBACK_COMPLETE"),
            event(
                2,
                "UPDATE_FAILED",
                "LaunchTemplate",
                "AWS::EC2::LaunchTemplate",
                "Invalid instance type",
            ),
            event(1, "UPDATE_IN_PROGRESS"),
            event(0, "UPDATE_COMPLETE"),
        ]
    )
    with pytest.raises(StackError, match="LaunchTemplate: Invalid instance type"):
        stack.update_stack(h.ctx, REGION, NAME, new, system=SYSTEM, waiting=h.waiting())
    h.done()
    assert h.mutating == {
        "cloudformation:CreateChangeSet": 1,
        "cloudformation:ExecuteChangeSet": 1,
        "s3:PutObject": 1,
    }


def test_update_same_template_is_noop_without_mutating_call(h: Harness) -> None:
    body = template()
    h.describe("UPDATE_COMPLETE", protected=True)
    h.get_template(json.dumps(json.loads(body)))  # same JSON, other formatting
    changes = stack.update_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert [c.action for c in changes] == [Action.NOOP]
    assert h.mutating == {}
    h.done()


def test_same_template_on_our_unprotected_stack_finishes_the_protection(h: Harness) -> None:
    # A create killed after ExecuteChangeSet: the stack is complete but was never protected.
    body = template()
    h.describe("CREATE_COMPLETE", protected=False)
    h.get_template(body)
    h.protection(True)
    changes = stack.update_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert [(c.resource, c.action) for c in changes] == [
        (f"stack/{NAME} termination protection", Action.UPDATE),
        (f"stack/{NAME}", Action.NOOP),
    ]
    assert h.mutating == {"cloudformation:UpdateTerminationProtection": 1}
    h.done()


def test_update_empty_change_set_is_deleted_and_noop(h: Harness) -> None:
    # A parameter value differs from the template default, so a change set is needed to know.
    body = template()
    key = stack.template_key(NAME, body)
    h.describe("UPDATE_COMPLETE", params={"InstanceType": "t3.nano"})
    h.get_template(body)
    h.resources()
    h.bucket_ready(key)
    change_set_created(h, body, "update", source={"TemplateURL": url(key)})
    change_set_described(h, "FAILED", EMPTY_REASON)
    h.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CSID, "StackName": SID})
    changes = stack.update_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert [c.action for c in changes] == [Action.NOOP]
    assert h.mutating == {
        "cloudformation:CreateChangeSet": 1,
        "cloudformation:DeleteChangeSet": 1,
    }
    h.done()


def test_update_failed_change_set_is_deleted_and_raises(h: Harness) -> None:
    body = template()
    key = stack.template_key(NAME, body)
    h.describe("UPDATE_COMPLETE", params={"InstanceType": "t3.nano"})
    h.get_template(body)
    h.resources()
    h.bucket_ready(key)
    change_set_created(h, body, "update", source={"TemplateURL": url(key)})
    change_set_described(h, "FAILED", "Template format error: bad")
    h.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CSID, "StackName": SID})
    with pytest.raises(StackError, match="Template format error: bad"):
        stack.update_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    h.done()


def test_update_waits_out_in_progress_then_decides_again(h: Harness) -> None:
    body = template()
    h.describe("UPDATE_IN_PROGRESS")
    h.events([event(0, "UPDATE_IN_PROGRESS")])  # baseline of the wait
    h.describe("UPDATE_IN_PROGRESS", by=SID)
    h.events([event(0, "UPDATE_IN_PROGRESS")])
    h.describe("UPDATE_COMPLETE", by=SID)
    h.events([event(1, "UPDATE_COMPLETE"), event(0, "UPDATE_IN_PROGRESS")])
    h.describe("UPDATE_COMPLETE", protected=True)
    h.get_template(body)
    changes = stack.update_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert [c.action for c in changes] == [Action.NOOP]
    assert h.lines[0] == f"stack {NAME} is UPDATE_IN_PROGRESS; waiting for it to settle"
    assert any("UPDATE_COMPLETE" in line for line in h.lines[1:])
    assert h.mutating == {}
    h.done()


def test_update_refuses_update_rollback_failed(h: Harness) -> None:
    h.describe("UPDATE_ROLLBACK_FAILED")
    with pytest.raises(StackError) as err:
        stack.update_stack(h.ctx, REGION, NAME, template(), system=SYSTEM, waiting=h.waiting())
    assert (
        f"aws cloudformation continue-update-rollback --region {REGION} --stack-name {NAME}"
        in str(err.value)
    )
    assert h.mutating == {}


def test_update_refuses_absent_stack(h: Harness) -> None:
    h.absent()
    with pytest.raises(StackError, match="create-cf-stack"):
        stack.update_stack(h.ctx, REGION, NAME, template(), system=SYSTEM, waiting=h.waiting())


def test_update_large_template_goes_by_url(h: Harness) -> None:
    big = template(size=60_000)
    assert len(big.encode()) > stack.MAX_TEMPLATE_BODY
    key = stack.template_key(NAME, big)
    h.describe("UPDATE_COMPLETE")
    h.get_template(template())
    h.resources()
    h.bucket_ready(key, uploaded=False)
    change_set_created(h, big, "update", source={"TemplateURL": url(key)})
    change_set_described(h, "CREATE_COMPLETE", changes=[LT_MODIFY])
    h.events([event(0, "UPDATE_COMPLETE")])
    h.cfn.add_response(
        "execute_change_set",
        {},
        {"ChangeSetName": CSID, "StackName": SID, "ClientRequestToken": ANY},
    )
    h.describe("UPDATE_COMPLETE", by=SID)
    h.events([event(1, "UPDATE_COMPLETE"), event(0, "UPDATE_COMPLETE")])
    changes = stack.update_stack(h.ctx, REGION, NAME, big, system=SYSTEM, waiting=h.waiting())
    assert [(c.resource, c.action) for c in changes] == [
        (f"stack/{NAME}", Action.UPDATE),
        (f"stack/{NAME}/LaunchTemplate", Action.UPDATE),
    ]
    assert changes[1].details == (
        "AWS::EC2::LaunchTemplate",
        "changes: Properties",
        "replacement: False",
    )
    assert all("TemplateBody" not in params for _, params in h.params)
    put = [p for op, p in h.params if op == "s3:PutObject"]
    assert len(put) == 1 and put[0]["Body"].getvalue() == big.encode()
    h.done()


def test_dry_run_preview_creates_describes_deletes_never_executes() -> None:
    h = Harness(read_only=True, allowed_writes=stack.DRY_RUN_WRITES)
    old, new = template(), template(instance_type="t3.large")
    h.describe("UPDATE_COMPLETE", params={"InstanceType": "t3.large"})
    h.get_template(old)
    h.resources()
    change_set_created(h, new, "preview", source={"TemplateBody": new})
    change_set_described(h, "CREATE_COMPLETE", changes=[LT_MODIFY])
    h.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CSID, "StackName": SID})
    changes = stack.update_stack(
        h.ctx, REGION, NAME, new, system=SYSTEM, dry_run=True, waiting=h.waiting()
    )
    assert [c.action for c in changes] == [Action.UPDATE, Action.UPDATE]
    assert h.mutating == {
        "cloudformation:CreateChangeSet": 1,
        "cloudformation:DeleteChangeSet": 1,
    }
    assert not any(op.startswith("s3:") for op, _ in h.params)
    h.done()


def test_dry_run_large_template_uploads_but_never_sends_body() -> None:
    big = template(size=52_000)
    h = Harness(read_only=True, allowed_writes=stack.dry_run_writes(big))
    key = stack.template_key(NAME, big)
    h.describe("UPDATE_COMPLETE")
    h.get_template(template())
    h.resources()
    h.bucket_ready(key, uploaded=False)
    change_set_created(h, big, "preview", source={"TemplateURL": url(key)})
    change_set_described(h, "CREATE_COMPLETE", changes=[LT_MODIFY])
    h.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CSID, "StackName": SID})
    stack.update_stack(h.ctx, REGION, NAME, big, system=SYSTEM, dry_run=True, waiting=h.waiting())
    assert all("TemplateBody" not in params for _, params in h.params)
    h.done()


def test_change_set_names_and_tokens_are_deterministic() -> None:
    tokens = []
    for _ in range(2):
        h = Harness()
        body = template()
        key = stack.template_key(NAME, body)
        h.describe("UPDATE_COMPLETE", params={"InstanceType": "t3.nano"})
        h.get_template(body)
        h.resources()
        h.bucket_ready(key)
        change_set_created(h, body, "update", source={"TemplateURL": url(key)})
        change_set_described(h, "FAILED", EMPTY_REASON)
        h.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CSID, "StackName": SID})
        stack.update_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
        (params,) = [p for op, p in h.params if op == "cloudformation:CreateChangeSet"]
        tokens.append((params["ChangeSetName"], params["ClientToken"]))
    assert tokens[0] == tokens[1]
    assert tokens[0][1].startswith("datomic-aws-update-")


# ------------------------------------------------------------------------------------------
# create_stack


def test_create_existing_same_template_is_noop(h: Harness) -> None:
    body = template()
    h.describe("CREATE_COMPLETE", protected=True)
    h.get_template(body)
    changes = stack.create_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert [c.action for c in changes] == [Action.NOOP]
    assert h.mutating == {}
    h.done()


def test_create_existing_other_template_points_to_update_stack(h: Harness) -> None:
    h.describe("CREATE_COMPLETE")
    h.get_template(template(instance_type="m5.large"))
    with pytest.raises(StackError) as err:
        stack.create_stack(h.ctx, REGION, NAME, template(), system=SYSTEM, waiting=h.waiting())
    assert f"datomic-aws update-stack {REGION} {NAME}" in str(err.value)
    assert h.mutating == {}


def test_rollback_complete_is_refused_without_recreate_failed(h: Harness) -> None:
    h.describe("ROLLBACK_COMPLETE")
    with pytest.raises(StackError) as err:
        stack.create_stack(h.ctx, REGION, NAME, template(), system=SYSTEM, waiting=h.waiting())
    assert "--recreate-failed" in str(err.value)
    assert "ROLLBACK_COMPLETE" in str(err.value)
    assert h.mutating == {}


def test_rollback_complete_not_ours_is_never_recreated(h: Harness) -> None:
    h.describe("ROLLBACK_COMPLETE", tags={"owner": "someone-else"})
    with pytest.raises(StackError, match="not created by datomic-aws"):
        stack.create_stack(
            h.ctx,
            REGION,
            NAME,
            template(),
            system=SYSTEM,
            recreate_failed=True,
            waiting=h.waiting(),
        )
    assert h.mutating == {}


def test_rollback_complete_ours_is_deleted_then_created(h: Harness) -> None:
    body = template()
    key = stack.template_key(NAME, body)
    h.describe("ROLLBACK_COMPLETE", protected=True)
    # delete: lift protection, delete by id, wait until gone
    h.protection(False)
    h.events([event(0, "ROLLBACK_COMPLETE")])
    h.cfn.add_response("delete_stack", {}, {"StackName": SID, "ClientRequestToken": ANY})
    h.describe("DELETE_COMPLETE", by=SID)
    h.events([event(1, "DELETE_COMPLETE"), event(0, "ROLLBACK_COMPLETE")])
    # create
    h.bucket_ready(key)
    change_set_created(h, body, "create", source={"TemplateURL": url(key)}, cs_type="CREATE")
    change_set_described(
        h,
        "CREATE_COMPLETE",
        changes=[
            {
                "Type": "Resource",
                "ResourceChange": {
                    "Action": "Add",
                    "LogicalResourceId": "LaunchTemplate",
                    "ResourceType": "AWS::EC2::LaunchTemplate",
                },
            }
        ],
    )
    h.events([event(10, "REVIEW_IN_PROGRESS")])
    h.cfn.add_response(
        "execute_change_set",
        {},
        {"ChangeSetName": CSID, "StackName": SID, "ClientRequestToken": ANY},
    )
    # The execution is not visible yet: REVIEW_IN_PROGRESS must not end the wait.
    h.describe("REVIEW_IN_PROGRESS", by=SID)
    h.events([event(10, "REVIEW_IN_PROGRESS")])
    h.created()
    changes = stack.create_stack(
        h.ctx,
        REGION,
        NAME,
        body,
        system=SYSTEM,
        recreate_failed=True,
        waiting=h.waiting(),
    )
    assert [(c.resource, c.action) for c in changes] == [
        (f"stack/{NAME}", Action.DELETE),
        (f"stack/{NAME}", Action.CREATE),
        (f"stack/{NAME}/LaunchTemplate", Action.CREATE),
    ]
    assert changes[1].details == ("termination protection on",)
    ops = [op for op, _ in h.params if op.startswith("cloudformation:") and "Describe" not in op]
    assert ops == [
        "cloudformation:UpdateTerminationProtection",
        "cloudformation:DeleteStack",
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:UpdateTerminationProtection",
    ]
    h.done()


def test_create_failing_asynchronously_hints_recreate(h: Harness) -> None:
    body = template()
    key = stack.template_key(NAME, body)
    h.absent()
    h.bucket_ready(key)
    change_set_created(h, body, "create", source={"TemplateURL": url(key)}, cs_type="CREATE")
    change_set_described(h, "CREATE_COMPLETE")
    h.events([event(0, "REVIEW_IN_PROGRESS")])
    h.cfn.add_response(
        "execute_change_set",
        {},
        {"ChangeSetName": CSID, "StackName": SID, "ClientRequestToken": ANY},
    )
    h.describe("ROLLBACK_COMPLETE", by=SID)
    h.events(
        [
            event(4, "ROLLBACK_COMPLETE"),
            event(
                3,
                "CREATE_FAILED",
                "Group",
                "AWS::AutoScaling::AutoScalingGroup",
                "Resource creation cancelled",
            ),
            event(
                2, "CREATE_FAILED", "LaunchTemplate", "AWS::EC2::LaunchTemplate", "AMI not found"
            ),
            event(1, "CREATE_IN_PROGRESS"),
            event(0, "REVIEW_IN_PROGRESS"),
        ]
    )
    with pytest.raises(StackError) as err:
        stack.create_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert "LaunchTemplate: AMI not found" in str(err.value)
    assert "--recreate-failed" in str(err.value)
    h.done()


def test_create_dry_run_makes_no_call_beyond_reads(h: Harness) -> None:
    h.absent()
    # The templates bucket is read and planned as the real run would converge it (here: absent,
    # so it would be created), never written.
    h.account()
    bucket = h.bucket_absent()
    changes = stack.create_stack(
        h.ctx, REGION, NAME, template(), system=SYSTEM, dry_run=True, waiting=h.waiting()
    )
    assert [(c.resource, c.action) for c in changes] == [
        (f"s3 bucket {bucket}", Action.CREATE),
        (f"stack/{NAME}", Action.CREATE),
        (f"stack/{NAME}/LaunchTemplate", Action.CREATE),
    ]
    assert changes[1].details == ("termination protection on",)
    assert h.mutating == {}
    h.done()


# ------------------------------------------------------------------------------------------
# delete_stack


def test_delete_absent_is_noop(h: Harness) -> None:
    h.absent()
    changes = stack.delete_stack(h.ctx, REGION, NAME, waiting=h.waiting())
    assert [c.action for c in changes] == [Action.NOOP]
    assert h.mutating == {}


def test_delete_failed_quotes_reason(h: Harness) -> None:
    h.describe("UPDATE_COMPLETE")
    h.get_template(template())  # no Metadata: the name says whose it is (datomic-prod: prod)
    h.resources()
    h.events([event(0, "UPDATE_COMPLETE")])
    h.cfn.add_response("delete_stack", {}, {"StackName": SID, "ClientRequestToken": ANY})
    h.describe("DELETE_FAILED", by=SID)
    h.events(
        [
            event(2, "DELETE_FAILED", reason="The following resource(s) failed to delete: [SG]."),
            event(1, "DELETE_FAILED", "SG", "AWS::EC2::SecurityGroup", "has a dependent object"),
            event(0, "UPDATE_COMPLETE"),
        ]
    )
    with pytest.raises(StackError, match="SG: has a dependent object"):
        stack.delete_stack(h.ctx, REGION, NAME, waiting=h.waiting())
    h.done()


# ------------------------------------------------------------------------------------------
# templates bucket


TEMPLATES_TAGS = [
    {"Key": "datomic:purpose", "Value": "cloudformation-templates"},
    {"Key": "managed-by", "Value": "datomic-aws"},
]
TAKEN_HINT = (
    "another AWS account owns this bucket name, so templates cannot be uploaded in this region;"
    " contact AWS support or use another account"
)
BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def test_templates_bucket_location_constraint_and_name_taken() -> None:
    for region, config in (
        ("us-east-1", {"Tags": TEMPLATES_TAGS}),
        ("eu-west-1", {"Tags": TEMPLATES_TAGS, "LocationConstraint": "eu-west-1"}),
    ):
        h = Harness(region=region)
        bucket = h.bucket_absent()
        h.s3.add_client_error(
            "create_bucket",
            "BucketAlreadyExists",
            "taken",
            409,
            expected_params={"Bucket": bucket, "CreateBucketConfiguration": config},
        )
        with pytest.raises(NameTakenError) as err:
            stack.ensure_templates_bucket(h.ctx.client("s3", region), ACCOUNT, region)
        assert bucket in str(err.value)
        assert err.value.hint == TAKEN_HINT
        h.done()


def test_templates_bucket_we_may_not_read_says_so() -> None:
    # Issue 10: AccessDenied is also what a bucket of ours answers without s3:GetBucketTagging, so
    # it is no longer reported as "taken by another account": its own message names both causes.
    h = Harness(region="eu-west-1")
    bucket = names.templates_bucket(ACCOUNT, "eu-west-1")
    h.s3.add_client_error(
        "get_bucket_tagging",
        "AccessDenied",
        "Access Denied",
        403,
        expected_params={"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT},
    )
    with pytest.raises(AwsCallError) as err:
        stack.ensure_templates_bucket(h.ctx.client("s3", "eu-west-1"), ACCOUNT, "eu-west-1")
    assert not isinstance(err.value, NameTakenError)
    assert bucket in str(err.value)
    assert "AccessDenied" in str(err.value)
    assert "grant s3:GetBucketTagging" in err.value.hint
    assert err.value.hint.endswith(TAKEN_HINT)
    h.done()


def test_templates_bucket_already_owned_is_fine() -> None:
    # Created by a concurrent run between our read and our CreateBucket: converge it all the same.
    h = Harness(region="eu-west-1")
    bucket = h.bucket_absent()
    h.s3.add_client_error(
        "create_bucket",
        "BucketAlreadyOwnedByYou",
        "yours",
        409,
        expected_params={
            "Bucket": bucket,
            "CreateBucketConfiguration": {
                "Tags": TEMPLATES_TAGS,
                "LocationConstraint": "eu-west-1",
            },
        },
    )
    h.s3.add_response(
        "put_bucket_tagging",
        {},
        {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT, "Tagging": {"TagSet": TEMPLATES_TAGS}},
    )
    h.s3.add_response(
        "put_public_access_block",
        {},
        {
            "Bucket": bucket,
            "ExpectedBucketOwner": ACCOUNT,
            "PublicAccessBlockConfiguration": BLOCK_ALL,
        },
    )
    h.s3.add_response(
        "put_bucket_encryption",
        {},
        {
            "Bucket": bucket,
            "ExpectedBucketOwner": ACCOUNT,
            "ServerSideEncryptionConfiguration": {
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        },
    )
    h.s3.add_response(
        "put_bucket_policy",
        {},
        {
            "Bucket": bucket,
            "ExpectedBucketOwner": ACCOUNT,
            "Policy": json.dumps(tls_policy(bucket), sort_keys=True),
        },
    )
    change = stack.ensure_templates_bucket(h.ctx.client("s3", "eu-west-1"), ACCOUNT, "eu-west-1")
    assert change.action is Action.CREATE
    assert change.resource == f"s3 bucket {bucket}"
    h.done()


def hardened_reads(
    h: Harness, bucket: str, *, algorithm: str, policy: dict[str, Any], tags: list[Any]
) -> None:
    h.s3.add_response(
        "get_bucket_tagging", {"TagSet": tags}, {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT}
    )
    h.s3.add_response(
        "get_public_access_block",
        {"PublicAccessBlockConfiguration": BLOCK_ALL},
        {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT},
    )
    h.s3.add_response(
        "get_bucket_encryption",
        {
            "ServerSideEncryptionConfiguration": {
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm}}]
            }
        },
        {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT},
    )
    h.s3.add_response(
        "get_bucket_policy",
        {"Policy": json.dumps(policy)},
        {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT},
    )


@pytest.mark.parametrize("algorithm", ["AES256", "aws:kms", "aws:kms:dsse"])
def test_templates_bucket_accepts_kms_and_a_reshaped_tls_statement(algorithm: str) -> None:
    h = Harness(region="eu-west-1")
    bucket = names.templates_bucket(ACCOUNT, "eu-west-1")
    policy = tls_policy(bucket)
    # S3 may hand back a single-element list as a bare string, and lists in another order.
    statement = policy["Statement"][0]
    statement["Action"] = ["s3:*"]
    statement["Resource"] = list(reversed(statement["Resource"]))
    policy["Statement"] = statement  # and a lone statement without its list
    hardened_reads(h, bucket, algorithm=algorithm, policy=policy, tags=TEMPLATES_TAGS)
    change = stack.ensure_templates_bucket(h.ctx.client("s3", "eu-west-1"), ACCOUNT, "eu-west-1")
    assert change.action is Action.NOOP
    assert h.mutating == {}
    h.done()


@pytest.mark.parametrize(
    ("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")]
)
def test_templates_bucket_policy_uses_the_regions_partition(region: str, partition: str) -> None:
    h = Harness(region=region)
    bucket = names.templates_bucket(ACCOUNT, region)
    arn = f"arn:{partition}:s3:::{bucket}"
    foreign = {"Sid": "Theirs", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
    # A statement over the aws partition's ARNs protects nothing there: ours is added, theirs kept.
    hardened_reads(
        h,
        bucket,
        algorithm="AES256",
        policy={"Version": "2012-10-17", "Statement": [foreign, *tls_policy(bucket)["Statement"]]},
        tags=TEMPLATES_TAGS,
    )
    wanted = tls_policy(bucket)
    wanted["Statement"][0]["Resource"] = [arn, f"{arn}/*"]
    wanted["Statement"] = [foreign, *wanted["Statement"]]
    h.s3.add_response(
        "put_bucket_policy",
        {},
        {
            "Bucket": bucket,
            "ExpectedBucketOwner": ACCOUNT,
            "Policy": json.dumps(wanted, sort_keys=True),
        },
    )
    change = stack.ensure_templates_bucket(h.ctx.client("s3", region), ACCOUNT, region)
    assert change.action is Action.UPDATE
    assert change.details == ("bucket policy: deny non-TLS access",)
    h.done()


@pytest.mark.parametrize("body", ["{not json", "[]", '{"Resources": []}'])
def test_invalid_template_refused_before_any_call(h: Harness, body: str) -> None:
    with pytest.raises(UsageError):
        stack.create_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    with pytest.raises(UsageError):
        stack.update_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    assert h.params == []


# ------------------------------------------------------------------------------------------
# Datomic-era migration: what moto cannot show (a lifecycle hook holding the new instance)


def test_the_old_group_stays_while_the_new_transactor_is_not_ready() -> None:
    """The launch lifecycle hook holds the new group's instance in Pending:Wait (reference §11):
    the wait times out, and the second update, which would delete LaunchGroup, never happens."""
    from tests.datomic_era import datomic_template

    h = Harness()
    group = names.autoscaling_group(SYSTEM)
    ours = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"InstanceType": {"Type": "String", "Default": "m7i.large"}},
        "Resources": {
            "LaunchTemplate": {
                "Type": "AWS::EC2::LaunchTemplate",
                "Properties": {"LaunchTemplateData": {"InstanceType": {"Ref": "InstanceType"}}},
            },
            "AutoScalingGroup": {
                "Type": "AWS::AutoScaling::AutoScalingGroup",
                "Properties": {"AutoScalingGroupName": group, "MinSize": "1", "MaxSize": "2"},
            },
        },
    }
    body = json.dumps(ours, indent=2, sort_keys=True) + "\n"
    datomic = datomic_template()
    legacy_group = f"{NAME}-LaunchGroup-ABC"
    deployed_params = {k: str(v["Default"]) for k, v in datomic["Parameters"].items()}
    h.describe("UPDATE_COMPLETE", tags={}, params=deployed_params)
    h.get_template(json.dumps(datomic))
    h.resources(
        [
            {
                "LogicalResourceId": "LaunchGroup",
                "PhysicalResourceId": legacy_group,
                "ResourceType": "AWS::AutoScaling::AutoScalingGroup",
                "Timestamp": T0,
                "ResourceStatus": "CREATE_COMPLETE",
            }
        ]
    )
    h.asg.add_response(
        "describe_auto_scaling_groups",
        {"AutoScalingGroups": [asg_group(legacy_group, "InService")]},
        {"AutoScalingGroupNames": sorted([legacy_group, group])},
    )
    bridge, _ = stack.bridge_template(
        datomic,
        body,
        stack.Legacy("LaunchGroup", "LaunchConfig", ("LaunchConfig", "LaunchGroup")),
        deployed_params,
        None,
    )
    bridged = json.loads(bridge)
    # Ours and Datomic's side by side; Datomic's InstanceType (another value) kept as Legacy...
    assert set(bridged["Resources"]) == {
        "LaunchTemplate",
        "AutoScalingGroup",
        "LaunchConfig",
        "LaunchGroup",
    }
    assert bridged["Resources"]["LaunchGroup"] == datomic["Resources"]["LaunchGroup"]
    assert "LegacyInstanceType" in bridged["Parameters"]
    assert bridged["Mappings"] == datomic["Mappings"]
    key = stack.template_key(NAME, bridge)
    h.bucket_ready(key)
    h.cfn.add_response(
        "create_change_set",
        {"Id": CSID, "StackId": SID},
        {
            "StackName": NAME,
            "ChangeSetName": f"datomic-aws-update-{stack.template_digest(bridge)[:16]}",
            "ChangeSetType": "UPDATE",
            "ClientToken": ANY,
            "Tags": [{"Key": k, "Value": v} for k, v in sorted(names.tags(SYSTEM).items())],
            "Parameters": ANY,
            "TemplateURL": url(key),
        },
    )
    change_set_described(
        h,
        "CREATE_COMPLETE",
        changes=[
            {
                "Type": "Resource",
                "ResourceChange": {
                    "Action": "Add",
                    "LogicalResourceId": logical,
                    "ResourceType": rtype,
                },
            }
            for logical, rtype in (
                ("LaunchTemplate", "AWS::EC2::LaunchTemplate"),
                ("AutoScalingGroup", "AWS::AutoScaling::AutoScalingGroup"),
            )
        ],
    )
    h.events([event(0, "UPDATE_COMPLETE")])
    h.cfn.add_response(
        "execute_change_set",
        {},
        {"ChangeSetName": CSID, "StackName": SID, "ClientRequestToken": ANY},
    )
    h.describe("UPDATE_COMPLETE", by=SID)
    h.events([event(1, "UPDATE_COMPLETE"), event(0, "UPDATE_COMPLETE")])
    h.describe("UPDATE_COMPLETE")
    h.cfn.add_response(
        "describe_stack_resources",
        {
            "StackResources": [
                {
                    "LogicalResourceId": "AutoScalingGroup",
                    "PhysicalResourceId": group,
                    "ResourceType": "AWS::AutoScaling::AutoScalingGroup",
                    "Timestamp": T0,
                    "ResourceStatus": "CREATE_COMPLETE",
                }
            ]
        },
        {"StackName": SID, "LogicalResourceId": "AutoScalingGroup"},
    )
    for _ in range(4):  # t = 0, 5, 10, 12: then the deadline
        h.asg.add_response(
            "describe_auto_scaling_groups",
            {"AutoScalingGroups": [asg_group(group, "Pending:Wait")]},
            {"AutoScalingGroupNames": [group]},
        )
    with pytest.raises(WaitTimeout) as err:
        stack.update_stack(
            h.ctx,
            REGION,
            NAME,
            body,
            system=SYSTEM,
            adopt=True,
            waiting=h.waiting(timeout=12.0),
        )
    assert f"group {group} has 0 of 1 instance(s) in service" in str(err.value)
    assert "the old group keeps running" in str(err.value)
    assert h.mutating == {
        "cloudformation:CreateChangeSet": 1,
        "cloudformation:ExecuteChangeSet": 1,
    }
    assert f"group {group}: 0 of 1 instance(s) in service" in h.lines
    h.done()


def asg_group(name: str, state: str) -> dict[str, Any]:
    return {
        "AutoScalingGroupName": name,
        "MinSize": 1,
        "MaxSize": 2,
        "DesiredCapacity": 1,
        "DefaultCooldown": 300,
        "AvailabilityZones": ["us-east-1a"],
        "HealthCheckType": "EC2",
        "CreatedTime": T0,
        "Tags": [],
        "Instances": [
            {
                "InstanceId": "i-0123456789abcdef0",
                "AvailabilityZone": "us-east-1a",
                "LifecycleState": state,
                "HealthStatus": "Healthy",
                "ProtectedFromScaleIn": False,
            }
        ],
    }
