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

Also owns the known gaps of an AWS emulator (`EndpointGap`, `endpoint_gap`): what a plain moto
server or LocalStack answers where AWS would not, recognised by error code and by a custom
endpoint (never on AWS's own), and reported as one line naming `datomic-aws sandbox serve`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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


# --- the known gaps of a plain AWS emulator ------------------------------------------------------

SANDBOX_HINT = (
    "run `datomic-aws sandbox serve` (the embedded AWS, with this gap corrected) and point "
    "AWS_ENDPOINT_URL at it, or use AWS itself"
)
_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


@dataclass(frozen=True)
class EndpointGap:
    """A refusal a plain moto server or LocalStack gives where AWS does not: the error codes it
    answers with, and whether only a plain-HTTP endpoint shows it."""

    what: str
    codes: tuple[str, ...]
    plain_http_only: bool = False

    def applies(self, exc: ClientError, endpoint_url: str | None) -> bool:
        if not endpoint_url or not has_code(exc, *self.codes):
            return False
        url = urlsplit(endpoint_url)
        if (url.hostname or "").endswith(_AWS_HOSTS):
            return False  # AWS itself: its refusal is reported as it is
        return url.scheme == "http" or not self.plain_http_only


# The templates bucket denies every request without TLS (resources/s3.py, a Deny on
# aws:SecureTransport=false). AWS applies it to plain-HTTP requests only; moto 5.2.5 cannot evaluate
# the condition and denies every object request with a bare 403 (its code "403"), so over a plain
# HTTP endpoint the template upload is refused. AccessDenied: what AWS answers a plain-HTTP request.
TLS_ONLY_BUCKET = EndpointGap(
    "the endpoint refused the template upload: the templates bucket's TLS-only policy "
    "(aws:SecureTransport) is applied to a plain HTTP endpoint, which a plain moto server or "
    "LocalStack cannot tell apart from HTTPS",
    ("403", "AccessDenied"),
    plain_http_only=True,
)
# moto 5.2.5 has no UpdateTerminationProtection: its server answers an HTML 500 page, which reaches
# us as the bare code "500" after botocore's retries (aws.py empties a 5xx page so that it is
# retried). LocalStack implements the call (services/cloudformation/provider.py and
# v2/provider.py `update_termination_protection`, since its PR #7430 of January 2023), so its
# generic not-implemented answer (InternalFailure, 501) is not this gap: reported as it came.
TERMINATION_PROTECTION = EndpointGap(
    "the endpoint does not implement CloudFormation UpdateTerminationProtection (a plain moto "
    "server); the stack was created without termination protection",
    ("500",),
)


@contextmanager
def endpoint_gap(gap: EndpointGap, endpoint_url: str | None) -> Iterator[None]:
    """Report `gap` as one line naming the sandbox when a call inside meets it on a custom
    endpoint (`client.meta.endpoint_url`); every other error goes on as it is."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        if gap.applies(exc, endpoint_url):
            raise DatomicAwsError(gap.what, str(endpoint_url), SANDBOX_HINT) from exc
        raise
