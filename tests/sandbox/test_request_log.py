"""The embedded AWS's record of the requests it served (datomic_aws/sandbox/request_log.py): each
request identified by service, region, operation and parameters, in the three protocols our
clients speak; two same requests are equal, two different ones are not. Through a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from datomic_aws.sandbox.embedded import EmbeddedAws, SandboxControl

REGION = "us-east-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with EmbeddedAws() as aws:
        yield aws.endpoint


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)  # type: ignore[call-overload]


def test_each_request_is_identified_and_a_repeat_is_the_same(endpoint: str) -> None:
    control = SandboxControl(endpoint)
    client(endpoint, "s3").create_bucket(Bucket="datomic-log-test")
    control.clear_requests()
    iam, ddb, s3 = (client(endpoint, s) for s in ("iam", "dynamodb", "s3"))
    for _ in range(2):
        iam.list_roles()  # query protocol
        s3.list_objects_v2(Bucket="datomic-log-test")  # REST
    iam.list_roles(MaxItems=5)
    ddb.list_tables()  # JSON protocol
    iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    seen = control.requests()
    operations = [(s["service"], s["operation"], s["read"]) for s in seen]
    assert operations == [
        ("iam", "ListRoles", True),
        ("s3", "GET ?encoding-type&list-type", True),
        ("iam", "ListRoles", True),
        ("s3", "GET ?encoding-type&list-type", True),
        ("iam", "ListRoles", True),
        ("dynamodb", "ListTables", True),
        ("iam", "CreateRole", False),
    ]
    assert seen[0] == seen[2] and seen[1] == seen[3]  # the same request twice
    assert seen[4] != seen[0]  # other parameters: another request
    assert all(s["region"] == REGION for s in seen)
    assert "AKIA" not in str(seen) and "Signature" not in str(seen)
    control.clear_requests()
    assert control.requests() == []
