"""AWS errors, in one place: reading a botocore error's code, matching it, and translating it into
the catalogue (errors.py).

Modules catch `botocore.exceptions.ClientError` (never a bare Exception) and match it through
`has_code` or `ignoring`, by error code only: never by message text, except where AWS gives no
distinct code and the reference says so (`stack_missing`, the one such case). `translate` and
`translating` turn what is left into `AwsCallError`, naming the action as IAM spells it when the
call went through an AwsContext (`ACTION_KEY`). It must not print, and decides nothing about
resources. botocore is imported on first use of `translating`/`unreadable_answer` only, so that
importing this module costs nothing on `--help`; the modules that catch `ClientError` import it
themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from datomic_aws.errors import AwsCallError, DatomicAwsError

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

# Key added to a failed call's parsed response (ClientError.response): the IAM action of the call,
# `service:Operation`, which botocore's error does not carry (it knows only the operation name).
ACTION_KEY = "DatomicAwsAction"

# S3 answers a HEAD (which has no body) with the bare HTTP status as its code.
S3_NOT_FOUND = ("404", "NotFound")


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError; None for any other exception."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def has_code(exc: ClientError, *codes: str) -> bool:
    """Whether AWS refused the call with one of `codes`."""
    return error_code(exc) in codes


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def stack_missing(exc: ClientError) -> bool:
    """A stack that does not exist. The one documented exception to matching by code:
    CloudFormation reports a missing stack as a generic ValidationError whose only
    distinguishing mark is this message text."""
    return has_code(exc, "ValidationError") and "does not exist" in error_message(exc)


@contextmanager
def ignoring(*codes: str) -> Iterator[None]:
    """Let an AWS refusal with one of `codes` pass silently (a create that finds it done, a
    remove that finds it gone); any other error goes on."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        if not has_code(exc, *codes):
            raise


def translate(exc: ClientError, resource: str = "") -> AwsCallError:
    """Turn a botocore ClientError into the catalogue's error, keeping the request id and naming
    the action as IAM spells it (`iam:CreateRole`) when the call went through an AwsContext."""
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    err = response.get("Error", {})
    meta = response.get("ResponseMetadata", {})
    return AwsCallError(
        operation=str(response.get(ACTION_KEY) or getattr(exc, "operation_name", "call")),
        code=str(err.get("Code", "Unknown")),
        message=str(err.get("Message", exc)),
        resource=resource,
        request_id=str(meta.get("RequestId", "")),
    )


@contextmanager
def translating(resource: str) -> Iterator[None]:
    """Report any AWS error raised inside as the catalogue's error, naming `resource`."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        raise translate(exc, resource) from exc


def is_unreadable_answer(exc: BaseException) -> bool:
    import botocore.parsers

    return isinstance(exc, botocore.parsers.ResponseParserError)


def unreadable_answer(exc: BaseException) -> DatomicAwsError | None:
    """An answer botocore could not parse (an HTML page from a proxy or a captive portal, say),
    as one line naming the call; None for any other exception. The answer itself, which can be a
    whole page, is left to --debug's traceback."""
    if "botocore" not in sys.modules or not is_unreadable_answer(exc):
        return None
    action = str(getattr(exc, "datomic_aws_action", "") or "an AWS call")
    return DatomicAwsError(
        f"the answer to {action} is not an AWS response (an HTML error page from a proxy?)",
        "",
        "check the network, HTTPS_PROXY/NO_PROXY and --endpoint-url, then rerun; "
        "--debug shows the answer",
    )
