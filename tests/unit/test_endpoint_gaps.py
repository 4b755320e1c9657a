"""The two known gaps of a plain moto server or LocalStack (issue 10) end in one line naming
`datomic-aws sandbox serve`, recognised by error code and custom endpoint, never by message text:
the templates bucket's TLS-only policy over plain HTTP, and no UpdateTerminationProtection.

Stubber pinned to the exact parameters, with what moto 5.2.5's server really answers: a bare 403
with an empty body for an object request its bucket policy denies (moto/s3/responses.py
`_key_response`: `return 403, {}, ""`, which botocore reads as code "403", "Forbidden"), and an HTML
500 page for an action it has not implemented (moto/core/responses.py `call_action`:
NotImplementedError), which reaches us as code "500" once aws.py has emptied the page."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from datomic_aws import names
from datomic_aws.aws import AwsContext
from datomic_aws.aws_errors import SANDBOX_HINT
from datomic_aws.errors import AwsCallError, DatomicAwsError, ExitCode
from datomic_aws.stack.run import _Run
from datomic_aws.stack.transport import template_key, upload_template

REGION = "us-east-1"
ACCOUNT = "111122223333"
STACK = "datomic-prod"
SID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0000-1111"
BODY = '{"Resources": {}}\n'
BUCKET = names.templates_bucket(ACCOUNT, REGION)
KEY = template_key(STACK, BODY)
MOTO = "http://127.0.0.1:5000"


def _s3(endpoint: str | None) -> Stubber:
    client = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    return Stubber(client)


def _refused_upload(stub: Stubber, code: str, status: int) -> None:
    stub.add_client_error(
        "head_object",
        service_error_code="403",
        service_message="Forbidden",
        http_status_code=403,
        expected_params={"Bucket": BUCKET, "Key": KEY, "ExpectedBucketOwner": ACCOUNT},
    )
    stub.add_client_error(
        "put_object",
        service_error_code=code,
        service_message="Forbidden" if code == "403" else "Access Denied",
        http_status_code=status,
        expected_params={
            "Bucket": BUCKET,
            "Key": KEY,
            "Body": BODY.encode(),
            "ContentType": "application/json",
            "ExpectedBucketOwner": ACCOUNT,
        },
    )


@pytest.mark.parametrize(("code", "endpoint"), [("403", MOTO), ("AccessDenied", MOTO)])
def test_the_tls_only_bucket_over_plain_http_names_the_sandbox(code: str, endpoint: str) -> None:
    stub = _s3(endpoint)
    _refused_upload(stub, code, 403)
    with stub, pytest.raises(DatomicAwsError) as caught:
        upload_template(stub.client, ACCOUNT, REGION, STACK, BODY)
    stub.assert_no_pending_responses()
    error = caught.value
    assert not isinstance(error, AwsCallError)
    assert error.exit_code is ExitCode.FAILURE
    (line,) = error.lines()
    assert "TLS-only policy" in line and "plain HTTP" in line and MOTO in line
    assert "`datomic-aws sandbox serve`" in line and error.hint == SANDBOX_HINT


@pytest.mark.parametrize(
    "endpoint",
    [
        None,  # AWS itself
        "https://localhost.localstack.cloud:4566",  # TLS: the policy is not the cause
        "http://s3.us-east-1.amazonaws.com",  # AWS's own host: reported as AWS said
    ],
)
def test_an_upload_refused_elsewhere_is_reported_as_aws_said(endpoint: str | None) -> None:
    stub = _s3(endpoint)
    _refused_upload(stub, "AccessDenied", 403)
    with stub, pytest.raises(ClientError) as caught:
        upload_template(stub.client, ACCOUNT, REGION, STACK, BODY)
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


def _run(endpoint: str | None) -> tuple[_Run, Stubber]:
    ctx = AwsContext(endpoint_url=endpoint, max_attempts=1)
    run = _Run(ctx, REGION, STACK, None)
    return run, Stubber(run.cfn)


def _protection_refused(stub: Stubber, code: str, status: int) -> None:
    stub.add_client_error(
        "update_termination_protection",
        service_error_code=code,
        service_message="Internal Server Error",
        http_status_code=status,
        expected_params={"StackName": SID, "EnableTerminationProtection": True},
    )


def test_no_update_termination_protection_names_the_sandbox() -> None:
    run, stub = _run(MOTO)
    _protection_refused(stub, "500", 500)
    with stub, pytest.raises(DatomicAwsError) as caught:
        run.protect(SID)
    stub.assert_no_pending_responses()
    (line,) = caught.value.lines()
    assert "UpdateTerminationProtection" in line and MOTO in line
    assert "`datomic-aws sandbox serve`" in line


def test_localstack_answers_update_termination_protection_so_its_failure_is_no_gap() -> None:
    """LocalStack implements UpdateTerminationProtection (localstack/localstack,
    localstack-core/localstack/services/cloudformation/provider.py and v2/provider.py
    `update_termination_protection`, added by its PR #7430, January 2023). Its answer to an
    operation it does not implement (aws/skeleton.py `on_not_implemented_error`,
    aws/handlers/service.py: InternalFailure, HTTP 501) is therefore a real failure there, reported
    as it came, not mistaken for moto's gap."""
    run, stub = _run("http://localhost.localstack.cloud:4566")
    _protection_refused(stub, "InternalFailure", 501)
    with stub, pytest.raises(ClientError) as caught:
        run.protect(SID)
    assert caught.value.response["Error"]["Code"] == "InternalFailure"


def test_a_500_from_aws_itself_is_not_taken_for_the_gap() -> None:
    run, stub = _run(None)
    _protection_refused(stub, "500", 500)
    with stub, pytest.raises(ClientError):
        run.protect(SID)


def test_another_refusal_on_a_custom_endpoint_goes_on_as_it_is() -> None:
    run, stub = _run(MOTO)
    stub.add_client_error(
        "update_termination_protection",
        service_error_code="ValidationError",
        service_message=f"Stack [{SID}] does not exist",
        http_status_code=400,
        expected_params={"StackName": SID, "EnableTerminationProtection": True},
    )
    with stub, pytest.raises(ClientError) as caught:
        run.protect(SID)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
