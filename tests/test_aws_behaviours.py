"""Real AWS behaviours moto hides (reference §11), shown with botocore's Stubber pinned to the
parameters AWS must receive and answering with AWS's real error codes and messages, or with moto
where it can produce them."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from datomic_aws.errors import WaitTimeout
from datomic_aws.resources import dynamodb

REGION = "us-east-1"
ACCOUNT = "111122223333"


def _client(service: str) -> Any:
    # Typed loosely: the stubs' literal types get in a test's way.
    return boto3.client(service, region_name=REGION)


# --- 1. DynamoDB point-in-time recovery right after CreateTable --------------------------------

TABLE = "datomic-prod"
PITR_REFUSED = (
    "ContinuousBackupsUnavailableException",
    f"Backups are being enabled for the table: {TABLE}. Please retry later",
)


def _table_spec() -> dynamodb.TableSpec:
    return dynamodb.TableSpec(TABLE, "prod", "PAY_PER_REQUEST", None, None, 5, 5)


def _stub_create(stub: Stubber) -> None:
    stub.add_response(
        "create_table",
        {"TableDescription": {"TableName": TABLE, "TableStatus": "CREATING"}},
        {
            "TableName": TABLE,
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
            "DeletionProtectionEnabled": True,
            "Tags": [
                {"Key": "datomic:system", "Value": "prod"},
                {"Key": "managed-by", "Value": "datomic-aws"},
            ],
        },
    )
    stub.add_response(
        "describe_table",
        {"Table": {"TableName": TABLE, "TableStatus": "ACTIVE"}},
        {"TableName": TABLE},
    )


PITR_PARAMS = {
    "TableName": TABLE,
    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
}


def _refuse_pitr(stub: Stubber) -> None:
    code, message = PITR_REFUSED
    stub.add_client_error(
        "update_continuous_backups", code, message, 400, expected_params=PITR_PARAMS
    )


def test_pitr_refused_twice_after_create_table_is_retried_with_back_off() -> None:
    ddb = _client("dynamodb")
    sleeps: list[float] = []
    plan = dynamodb.plan_table(_table_spec(), None)
    with Stubber(ddb) as stub:
        _stub_create(stub)
        _refuse_pitr(stub)
        _refuse_pitr(stub)
        stub.add_response(
            "update_continuous_backups",
            {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED"}},
            PITR_PARAMS,
        )
        dynamodb.execute_table(ddb, plan, sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert sleeps == [2.0, 4.0]


def test_pitr_refused_past_the_bound_ends_in_a_clear_error() -> None:
    ddb = _client("dynamodb")
    sleeps: list[float] = []
    plan = dynamodb.plan_table(_table_spec(), None)
    with Stubber(ddb) as stub:
        _stub_create(stub)
        for _ in range(dynamodb.PITR_ATTEMPTS):
            _refuse_pitr(stub)
        with pytest.raises(WaitTimeout) as info:
            dynamodb.execute_table(ddb, plan, sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert len(sleeps) == dynamodb.PITR_ATTEMPTS - 1
    assert max(sleeps) == dynamodb.PITR_MAX_DELAY
    line = str(info.value)
    assert "ContinuousBackupsUnavailableException" in line
    assert f"dynamodb table {TABLE}" in line
    assert "rerun" in line


def test_other_pitr_errors_are_not_retried() -> None:
    from datomic_aws.errors import AwsCallError

    ddb = _client("dynamodb")
    sleeps: list[float] = []
    plan = dynamodb.plan_table(_table_spec(), None)
    with Stubber(ddb) as stub:
        _stub_create(stub)
        stub.add_client_error(
            "update_continuous_backups",
            "AccessDeniedException",
            "User: arn:aws:iam::111122223333:user/op is not authorized to perform: "
            "dynamodb:UpdateContinuousBackups",
            400,
            expected_params=PITR_PARAMS,
        )
        with pytest.raises(AwsCallError):
            dynamodb.execute_table(ddb, plan, sleep=sleeps.append)
    assert sleeps == []
