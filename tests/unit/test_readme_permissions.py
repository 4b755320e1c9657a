"""The README's "Running on AWS" policy lists every AWS operation the code calls (issue 10), so the
list cannot fall behind the code: the operations are read from the code itself (every botocore
operation name it refers to on a client, its paginators and waiters) and from the benchmark's
per-operation tables, then mapped to their IAM actions and looked up in the README's JSON policy."""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path

import botocore.exceptions
import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "datomic_aws"
# The sandbox talks only to the embedded AWS, never with the operator's credentials.
NOT_THE_OPERATORS = ("sandbox",)
# IAM actions whose name is not the API operation's (S3's service authorization reference).
IAM_ACTION = {
    "s3:HeadObject": "s3:GetObject",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "s3:PutBucketEncryption": "s3:PutEncryptionConfiguration",
}
# An operation name more than one of our services has: which of them the code calls it on.
AMBIGUOUS = {
    "delete_tags": ("autoscaling", "ec2"),  # the security group's, the group's tags
    "tag_resource": ("kms",),  # an adopted configuration key (DynamoDB tables are made tagged)
}
# Our own functions named like a CloudFormation operation (deploy.py calls stack.create_stack and
# stack.update_stack, which go through change sets); CreateStack and UpdateStack are never called.
OURS = ("create_stack", "update_stack")


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def _modules() -> list[ast.Module]:
    return [
        ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
        if not set(path.relative_to(PACKAGE).parts) & set(NOT_THE_OPERATORS)
    ]


@cache
def _services() -> set[str]:
    """Every service the code makes a client for: `.client("ec2", ...)`."""
    found = set()
    for module in _modules():
        for node in ast.walk(module):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "client"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


@cache
def _operations() -> dict[str, dict[str, str]]:
    """snake_case name -> {service endpoint prefix: OperationName}, for our services."""
    session = _session()
    by_name: dict[str, dict[str, str]] = {}
    for service in sorted(_services()):
        model = session.get_service_model(service)
        for operation in model.operation_names:
            by_name.setdefault(xform_name(operation), {})[model.endpoint_prefix] = operation
    return by_name


def _waiter_operation(name: str) -> list[str]:
    """`get_waiter("table_exists")`: the operation the waiter polls, on each service that has it."""
    found = []
    for service in sorted(_services()):
        try:
            model = _session().get_waiter_model(service)
        except botocore.exceptions.UnknownServiceError:
            continue
        except botocore.exceptions.DataNotFoundError:  # a service without waiters
            continue
        for waiter in model.waiter_names:
            if xform_name(waiter) == name:
                found.append(f"{service}:{model.get_waiter(waiter).operation}")
    return found


@cache
def actions_the_code_calls() -> set[str]:
    """The IAM action of every AWS operation the code (outside the sandbox) refers to."""
    operations = _operations()
    ours = _defined_functions()
    found: set[str] = set()
    for module in _modules():
        for node in ast.walk(module):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get_paginator", "get_waiter")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                name = str(node.args[0].value)
                if node.func.attr == "get_waiter":
                    found.update(_waiter_operation(name))
                else:
                    found.update(_qualified(name, operations[name]))
            elif isinstance(node, ast.Attribute) and node.attr in operations:
                if node.attr in OURS:
                    assert node.attr in ours, f"{node.attr} is no longer one of our functions"
                    continue
                found.update(_qualified(node.attr, operations[node.attr]))
    return {IAM_ACTION.get(action, action) for action in found}


def _qualified(name: str, services: dict[str, str]) -> list[str]:
    if len(services) > 1:
        assert name in AMBIGUOUS, f"{name} is an operation of {sorted(services)}: say which"
        return [f"{s}:{services[s]}" for s in AMBIGUOUS[name]]
    ((service, operation),) = services.items()
    return [f"{service}:{operation}"]


def _defined_functions() -> set[str]:
    return {
        node.name
        for module in _modules()
        for node in ast.walk(module)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def actions_the_benchmark_saw() -> set[str]:
    text = (ROOT / "tests" / "bench" / "README.md").read_text(encoding="utf-8")
    seen = set(re.findall(r"`([a-z0-9]+:[A-Z][A-Za-z0-9]+)`", text))
    return {IAM_ACTION.get(action, action) for action in seen}


def readme_policy() -> dict[str, list[str]]:
    """The README's "Running on AWS" JSON policy: each action with the resources it is given."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Running on AWS\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```json\n", 1)[1].split("\n```", 1)[0]
    granted: dict[str, list[str]] = {}
    for statement in json.loads(block)["Statement"]:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"]
        for action in statement["Action"]:
            granted.setdefault(action, []).extend(
                resources if isinstance(resources, list) else [resources]
            )
    return granted


def test_the_code_refers_to_the_operations_it_calls() -> None:
    """The reading itself: a few operations each module is known to call are found."""
    called = actions_the_code_calls()
    for action in (
        "cloudformation:CreateChangeSet",
        "autoscaling:TerminateInstanceInAutoScalingGroup",  # passed to a retry helper, not called
        "ec2:DescribeInstanceTypeOfferings",  # a paginator
        "dynamodb:DescribeTable",  # the table_exists waiter
        "s3:GetObject",  # HeadObject
        "ec2:DeleteTags",
        "autoscaling:DeleteTags",
    ):
        assert action in called, action
    assert "cloudformation:CreateStack" not in called
    assert len(called) > 50


def test_every_operation_the_code_calls_is_in_the_readme_policy() -> None:
    missing = sorted(actions_the_code_calls() - readme_policy().keys())
    assert not missing, f"add to README.md's Running on AWS policy: {missing}"


def test_every_operation_the_benchmark_saw_is_in_the_readme_policy() -> None:
    missing = sorted(actions_the_benchmark_saw() - readme_policy().keys())
    assert not missing, f"add to README.md's Running on AWS policy: {missing}"


def test_the_policy_names_pass_role_list_bucket_and_the_ebs_key() -> None:
    policy = readme_policy()
    assert any(r.endswith(":role/datomic-*-transactor") for r in policy["iam:PassRole"])
    assert policy["s3:ListBucket"] == ["arn:aws:s3:::datomic-aws-templates-<account>-<region>"]
    for action in ("kms:CreateGrant", "kms:Decrypt", "kms:GenerateDataKeyWithoutPlaintext"):
        assert any(":key/" in r for r in policy[action]), action
    # Created with their tags: AWS authorises the tagging separately (reference §11 for S3).
    for action in ("dynamodb:TagResource", "iam:TagRole", "s3:TagResource"):
        assert action in policy, action
