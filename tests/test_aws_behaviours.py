"""Real AWS behaviours moto hides (reference §11), shown with botocore's Stubber pinned to the
parameters AWS must receive and answering with AWS's real error codes and messages, or with moto
where it can produce them."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from datomic_aws import names
from datomic_aws.errors import AwsCallError, NameTakenError, WaitTimeout
from datomic_aws.resources import dynamodb, s3
from datomic_aws.stack import transport

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


# --- 2. S3 with least privilege ------------------------------------------------------------------

LOG_BUCKET = "datomic-prod-logs-111122223333-us-east-1"
BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _log_bucket_spec() -> s3.BucketSpec:
    return s3.BucketSpec(LOG_BUCKET, REGION, "prod", False, "aws-s3-log-bucket-id", owner=ACCOUNT)


def test_head_object_403_without_list_bucket_leads_to_an_upload() -> None:
    client = _client("s3")
    bucket = names.templates_bucket(ACCOUNT, REGION)
    body = '{"Resources": {}}\n'
    key = transport.template_key("datomic-prod", body)
    with Stubber(client) as stub:
        # Reference §11: without s3:ListBucket a missing key answers 403 (HEAD has no body, so
        # botocore reports the status code as the error code).
        stub.add_client_error(
            "head_object",
            "403",
            "Forbidden",
            403,
            expected_params={"Bucket": bucket, "Key": key, "ExpectedBucketOwner": ACCOUNT},
        )
        stub.add_response(
            "put_object",
            {},
            {
                "Bucket": bucket,
                "Key": key,
                "Body": body.encode(),
                "ContentType": "application/json",
                "ExpectedBucketOwner": ACCOUNT,
            },
        )
        url = transport.upload_template(client, ACCOUNT, REGION, "datomic-prod", body)
        stub.assert_no_pending_responses()
    assert url == f"https://{bucket}.s3.{REGION}.amazonaws.com/{key}"


def test_head_object_403_then_put_refused_is_a_failure_not_a_success() -> None:
    # A 403 that meant "not yours" (ExpectedBucketOwner) or "no s3:PutObject" refuses the put too.
    client = _client("s3")
    bucket = names.templates_bucket(ACCOUNT, REGION)
    body = "{}\n"
    key = transport.template_key("datomic-prod", body)
    with Stubber(client) as stub:
        params = {"Bucket": bucket, "Key": key, "ExpectedBucketOwner": ACCOUNT}
        stub.add_client_error("head_object", "403", "Forbidden", 403, expected_params=params)
        stub.add_client_error(
            "put_object",
            "AccessDenied",
            "Access Denied",
            403,
            expected_params={**params, "Body": body.encode(), "ContentType": "application/json"},
        )
        with pytest.raises(ClientError):
            transport.upload_template(client, ACCOUNT, REGION, "datomic-prod", body)


def test_access_denied_on_bucket_tagging_has_its_own_message() -> None:
    client = _client("s3")
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_bucket_tagging",
            "AccessDenied",
            "Access Denied",
            403,
            expected_params={"Bucket": LOG_BUCKET, "ExpectedBucketOwner": ACCOUNT},
        )
        with pytest.raises(AwsCallError) as info:
            s3.ensure_bucket(client, _log_bucket_spec(), dry_run=False, adopt=False)
    err = info.value
    assert not isinstance(err, NameTakenError)
    assert "another AWS account" not in err.what
    assert err.code == "AccessDenied"
    assert err.where == f"s3 bucket {LOG_BUCKET}"
    assert "grant s3:GetBucketTagging" in err.hint
    assert "aws-s3-log-bucket-id" in err.hint


def test_every_call_on_a_converged_bucket_of_ours_passes_the_expected_owner() -> None:
    client = _client("s3")
    own = {"Bucket": LOG_BUCKET, "ExpectedBucketOwner": ACCOUNT}
    tags = [{"Key": k, "Value": v} for k, v in names.tags("prod").items()]
    with Stubber(client) as stub:
        stub.add_response("get_bucket_tagging", {"TagSet": tags}, own)
        stub.add_response(
            "get_public_access_block", {"PublicAccessBlockConfiguration": BLOCK_ALL}, own
        )
        stub.add_response(
            "get_bucket_encryption",
            {
                "ServerSideEncryptionConfiguration": {
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                }
            },
            own,
        )
        stub.add_response(
            "get_bucket_policy", {"Policy": json.dumps(s3.tls_only_policy(LOG_BUCKET, REGION))}, own
        )
        change = s3.ensure_bucket(client, _log_bucket_spec(), dry_run=False, adopt=False)
        stub.assert_no_pending_responses()
    assert not change.changed


def test_writes_on_a_bucket_of_ours_pass_the_expected_owner() -> None:
    client = _client("s3")
    own = {"Bucket": LOG_BUCKET, "ExpectedBucketOwner": ACCOUNT}
    with Stubber(client) as stub:
        stub.add_response("get_bucket_tagging", {"TagSet": []}, own)
        stub.add_response(
            "get_public_access_block", {"PublicAccessBlockConfiguration": BLOCK_ALL}, own
        )
        stub.add_client_error(
            "get_bucket_encryption",
            "ServerSideEncryptionConfigurationNotFoundError",
            "The server side encryption configuration was not found",
            404,
            expected_params=own,
        )
        stub.add_response(
            "get_bucket_policy", {"Policy": json.dumps(s3.tls_only_policy(LOG_BUCKET, REGION))}, own
        )
        tag_set = [{"Key": k, "Value": v} for k, v in sorted(names.tags("prod").items())]
        stub.add_response("put_bucket_tagging", {}, {**own, "Tagging": {"TagSet": tag_set}})
        stub.add_response(
            "put_bucket_encryption",
            {},
            {
                **own,
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
        change = s3.ensure_bucket(client, _log_bucket_spec(), dry_run=False, adopt=True)
        stub.assert_no_pending_responses()
    assert change.changed
