"""What the CLI's one error funnel makes of an exception no module translated: botocore's own
exceptions and a file the environment refused, as catalogue errors (errors.py).

It must not print (cli.py reports) or import botocore unless it is loaded already.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from datomic_aws.errors import DatomicAwsError

if TYPE_CHECKING:
    from datomic_aws.aws import AwsContext, CallLog


def as_catalogue_error(exc: Exception) -> DatomicAwsError | None:
    """botocore's own exceptions, for the cases a module let through."""
    if "botocore" not in sys.modules:
        return None
    import botocore.exceptions

    from datomic_aws.aws_errors import translate, unreadable_answer
    from datomic_aws.errors import CredentialsError

    if isinstance(exc, botocore.exceptions.ClientError):
        return translate(exc)
    if isinstance(
        exc, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)
    ):
        return CredentialsError(str(exc))
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return DatomicAwsError(
            f"cannot reach the AWS endpoint: {exc}",
            "",
            "check the network, --endpoint-url, AWS_ENDPOINT_URL",
        )
    unreadable = unreadable_answer(exc)
    if unreadable is not None:
        return unreadable
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return DatomicAwsError(f"AWS SDK error: {exc}", "", "rerun with --debug for details")
    return None


def as_file_error(exc: Exception) -> DatomicAwsError | None:
    """A file or folder the environment refused after the up-front checks (a folder made
    read-only during the run, a full disk): one line, exit 1."""
    from datomic_aws.errors import FileAccessError

    if isinstance(exc, OSError) and exc.filename is not None:
        return FileAccessError(
            f"cannot use the file: {exc.strerror or type(exc).__name__}",
            str(exc.filename),
            "check the permissions, the free space and that the file system is writable",
        )
    return None


def request_id(exc: BaseException) -> str:
    return str(getattr(exc, "request_id", "") or "")


def error_document(
    exc: DatomicAwsError, command: str, contexts: Sequence[AwsContext]
) -> dict[str, Any]:
    """--output json's one document for a failure: the messages, the exit code, the request id,
    and what the failed run did call (a refusal shows "mutating": 0 for scripts to check)."""
    error: dict[str, Any] = {"messages": exc.lines(), "exit_code": int(exc.exit_code)}
    if request_id(exc):
        error["request_id"] = request_id(exc)
    doc: dict[str, Any] = {"command": command, "error": error}
    if contexts:
        doc["aws_calls"] = calls_of(contexts).as_dict()
    return doc


def calls_of(contexts: Sequence[AwsContext]) -> CallLog:
    """The AWS calls of every context of a run, together."""
    from datomic_aws.aws import CallLog

    log = CallLog()
    for aws in contexts:
        log.calls.update(aws.call_log.calls)
    return log
