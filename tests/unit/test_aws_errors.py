"""aws_errors.py: AWS errors are matched by code (never by message, but for the one documented
case), and what is left becomes the catalogue's AwsCallError with its action, request id and hint."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.parsers import ResponseParserError

from datomic_aws import aws_errors
from datomic_aws.errors import AwsCallError


def client_error(
    code: str, message: str = "refused", *, action: str = "", request_id: str = "req-1"
) -> ClientError:
    response: dict[str, object] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"RequestId": request_id},
    }
    if action:
        response[aws_errors.ACTION_KEY] = action
    return ClientError(response, "CreateRole")  # type: ignore[arg-type]


def test_error_code_reads_a_client_errors_code_and_nothing_else() -> None:
    assert aws_errors.error_code(client_error("NoSuchEntity")) == "NoSuchEntity"
    assert aws_errors.error_code(ValueError("NoSuchEntity")) is None
    assert aws_errors.error_code(EndpointConnectionError(endpoint_url="http://x")) is None


def test_has_code_matches_by_code_only() -> None:
    exc = client_error("EntityAlreadyExists", "NoSuchEntity: the message says otherwise")
    assert aws_errors.has_code(exc, "EntityAlreadyExists")
    assert aws_errors.has_code(exc, "LimitExceeded", "EntityAlreadyExists")
    assert not aws_errors.has_code(exc, "NoSuchEntity")
    assert aws_errors.has_code(client_error("404"), *aws_errors.S3_NOT_FOUND)


def test_a_missing_stack_is_the_one_match_by_message() -> None:
    assert aws_errors.stack_missing(
        client_error("ValidationError", "Stack with id x does not exist")
    )
    assert not aws_errors.stack_missing(client_error("ValidationError", "Template format error"))
    assert not aws_errors.stack_missing(client_error("AccessDenied", "x does not exist"))


def test_ignoring_swallows_only_the_codes_it_names() -> None:
    with aws_errors.ignoring("NoSuchEntity"):
        raise client_error("NoSuchEntity")
    with pytest.raises(ClientError), aws_errors.ignoring("NoSuchEntity"):
        raise client_error("AccessDenied")
    with pytest.raises(ValueError), aws_errors.ignoring("NoSuchEntity"):
        raise ValueError("NoSuchEntity")


def test_translate_names_the_iam_action_and_keeps_the_request_id() -> None:
    err = aws_errors.translate(
        client_error("AccessDenied", "not allowed", action="iam:CreateRole"), "iam role r"
    )
    assert isinstance(err, AwsCallError)
    assert (err.operation, err.code, err.request_id, err.where) == (
        "iam:CreateRole",
        "AccessDenied",
        "req-1",
        "iam role r",
    )
    assert err.lines() == [
        "Error: AWS iam:CreateRole failed with AccessDenied: not allowed (iam role r): "
        "grant iam:CreateRole to the credentials you run with, then rerun"
    ]


def test_translate_without_an_action_uses_the_operation_and_the_default_hint() -> None:
    err = aws_errors.translate(client_error("Odd", "{braces} stay as AWS wrote them"))
    assert err.operation == "CreateRole"
    assert err.what == "AWS CreateRole failed with Odd: {braces} stay as AWS wrote them"
    assert err.hint == "check the AWS error above and rerun; the run is safe to repeat"


def test_translating_turns_a_client_error_into_the_catalogue_and_lets_others_pass() -> None:
    original = client_error("ThrottlingException")
    with pytest.raises(AwsCallError) as caught, aws_errors.translating("ssm parameter /p"):
        raise original
    assert caught.value.__cause__ is original
    assert caught.value.hint == "AWS kept throttling after retries; rerun later"
    with pytest.raises(KeyError), aws_errors.translating("ssm parameter /p"):
        raise KeyError("not AWS")


def test_an_unreadable_answer_names_its_call() -> None:
    exc = ResponseParserError("<html>")
    exc.datomic_aws_action = "ec2:DescribeVpcs"  # type: ignore[attr-defined]
    err = aws_errors.unreadable_answer(exc)
    assert err is not None
    assert "the answer to ec2:DescribeVpcs is not an AWS response" in err.what
    assert aws_errors.unreadable_answer(client_error("AccessDenied")) is None
