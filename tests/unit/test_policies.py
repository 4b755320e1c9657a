"""The IAM documents: Datomic's policy names, least privilege, exact resources. Pure, no AWS."""

from __future__ import annotations

from typing import Any

import pytest

from datomic_aws import names, policies

ACCOUNT = "123456789012"


def actions(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for stmt in doc["Statement"]:
        action = stmt["Action"]
        out.extend([action] if isinstance(action, str) else action)
    return out


def every_document() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("trust", policies.TRUST_POLICY),
        policies.transactor_table_policy("tbl", ACCOUNT, "eu-west-1"),
        policies.peer_table_policy("tbl", ACCOUNT, "eu-west-1"),
        policies.log_bucket_policy("my-logs", "eu-west-1"),
        policies.metrics_policy(),
        policies.runtime_policy("sys", ACCOUNT, "eu-west-1"),
    ]


@pytest.mark.parametrize(
    "name,doc", every_document(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_no_document_grants_a_wildcard_action(name: str, doc: dict[str, Any]) -> None:
    assert doc["Version"] == "2012-10-17"
    for action in actions(doc):
        assert "*" not in action, (name, action)


def test_policy_names_are_datomics() -> None:
    assert policies.transactor_table_policy("tbl", ACCOUNT, "us-east-1")[0] == "tbl-transactor"
    assert policies.peer_table_policy("tbl", ACCOUNT, "us-east-1")[0] == "tbl-peer"
    assert policies.log_bucket_policy("my-logs", "eu-west-1")[0] == "my-logs-transactor-logs"
    assert policies.metrics_policy()[0] == "transactor-metrics"
    assert (
        policies.runtime_policy("sys", ACCOUNT, "us-east-1")[0] == "datomic-sys-transactor-runtime"
    )


def test_trust_policy_lets_only_ec2_assume_the_role() -> None:
    assert policies.TRUST_POLICY == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def test_table_policies_are_scoped_to_the_table() -> None:
    arn = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/tbl"
    _, transactor = policies.transactor_table_policy("tbl", ACCOUNT, "eu-west-1")
    _, peer = policies.peer_table_policy("tbl", ACCOUNT, "eu-west-1")
    assert [s["Resource"] for s in transactor["Statement"]] == [[arn]]
    assert [s["Resource"] for s in peer["Statement"]] == [[arn]]
    assert sorted(actions(peer)) == [
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    ]
    # The transactor writes, conditionally updates and garbage-collects; it never manages tables.
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"} <= set(
        actions(transactor)
    )
    assert not {a for a in actions(transactor) if a.endswith(("Table", "Tables"))} - {
        "dynamodb:DescribeTable"
    }


def test_runtime_policy_names_exactly_the_parameter_and_the_group() -> None:
    _, doc = policies.runtime_policy("sys", ACCOUNT, "eu-west-1")
    assert doc["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": [
                f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/datomic/sys/transactor.properties"
            ],
        },
        {
            "Effect": "Allow",
            "Action": [
                "autoscaling:CompleteLifecycleAction",
                "autoscaling:RecordLifecycleActionHeartbeat",
                "autoscaling:SetInstanceHealth",
            ],
            "Resource": [
                f"arn:aws:autoscaling:*:{ACCOUNT}:autoScalingGroup:*:"
                "autoScalingGroupName/datomic-sys-transactors"
            ],
        },
        {
            "Effect": "Allow",
            "Action": ["ec2:CreateTags"],
            "Resource": [f"arn:aws:ec2:*:{ACCOUNT}:instance/*"],
            "Condition": {
                "StringEquals": {"aws:ResourceTag/datomic:system": "sys"},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["datomic:role"]},
            },
        },
    ]


@pytest.mark.parametrize(
    "region,partition",
    [("us-east-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")],
)
def test_the_role_tag_statement_is_in_the_regions_partition(region: str, partition: str) -> None:
    _, doc = policies.runtime_policy("sys", ACCOUNT, region)
    (tagging,) = [s for s in doc["Statement"] if s["Action"] == ["ec2:CreateTags"]]
    assert tagging["Resource"] == [f"arn:{partition}:ec2:*:{ACCOUNT}:instance/*"]


def test_the_transactor_may_set_only_the_role_tag_only_on_its_own_instances() -> None:
    _, doc = policies.runtime_policy("sys", ACCOUNT, "eu-west-1")
    writes = [s for s in doc["Statement"] if any(a.startswith("ec2:") for a in s["Action"])]
    assert [s["Action"] for s in writes] == [["ec2:CreateTags"]]
    condition = writes[0]["Condition"]
    # Nothing else: no DeleteTags, and no tag key but the role's.
    assert condition["ForAllValues:StringEquals"] == {"aws:TagKeys": [names.TAG_ROLE]}
    assert condition["StringEquals"] == {f"aws:ResourceTag/{names.TAG_SYSTEM}": "sys"}


def test_log_and_metrics_policies() -> None:
    _, logs = policies.log_bucket_policy("my-logs", "eu-west-1")
    assert logs["Statement"] == [
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::my-logs/*"]}
    ]
    _, metrics = policies.metrics_policy()
    assert actions(metrics) == ["cloudwatch:PutMetricData"]
    assert metrics["Statement"][0]["Condition"]["Bool"] == {"aws:SecureTransport": "true"}


@pytest.mark.parametrize(
    "name,managed",
    [
        ("transactor-metrics", True),
        ("my-logs-transactor-logs", True),
        ("datomic-sys-transactor-runtime", True),
        ("datomic-other-transactor-runtime", False),
        ("tbl-transactor", False),
        ("tbl-peer", False),
        ("operator-extra", False),
    ],
)
def test_only_the_tools_optional_policies_may_be_removed(name: str, managed: bool) -> None:
    assert policies.is_managed_policy_name(name, system="sys") is managed


@pytest.mark.parametrize(
    "region,partition",
    [("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")],
)
def test_every_arn_of_every_document_is_in_the_regions_partition(
    region: str, partition: str
) -> None:
    """Reference §11: an ARN of another partition is refused or never matches, so a transactor in
    cn-north-1 or us-gov-west-1 with `arn:aws:` ARNs would get no access at all."""
    documents = [
        policies.transactor_table_policy("tbl", ACCOUNT, region)[1],
        policies.peer_table_policy("tbl", ACCOUNT, region)[1],
        policies.log_bucket_policy("my-logs", region)[1],
        policies.runtime_policy("sys", ACCOUNT, region)[1],
    ]
    resources = [
        r
        for doc in documents
        for stmt in doc["Statement"]
        for r in ([stmt["Resource"]] if isinstance(stmt["Resource"], str) else stmt["Resource"])
        if r != "*"
    ]
    assert len(resources) == 6
    for resource in resources:
        assert resource.startswith(f"arn:{partition}:"), resource
    assert f"arn:{partition}:s3:::my-logs/*" in resources
    assert (
        f"arn:{partition}:autoscaling:*:{ACCOUNT}:autoScalingGroup:*:"
        f"autoScalingGroupName/{names.autoscaling_group('sys')}"
    ) in resources
