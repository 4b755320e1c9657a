"""Exception catalogue: every error the tool reports, its message shape and its exit code.

Owns the exit codes, the one-line `Error: <what> (<where>): <what to do>` format, and the message
templates: a class whose message has one shape says it in `template` (the what) and
`hint_template` (the what to do), both formatted from the raise site's values in `compose`, the one
place a message is formatted; its raise sites pass values only. It must not print, log or import
boto3: the CLI funnel renders these, other modules only raise them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Protocol

from datomic_aws.secrets import mask_credentials


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    CHANGES_PENDING = 3
    INTERRUPTED = 130


class DatomicAwsError(Exception):
    """Base of every error the tool reports to the operator."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILURE
    # The message of a class with one shape: `str.format` fields filled in by `compose`.
    template: ClassVar[str] = ""
    hint_template: ClassVar[str] = ""

    @classmethod
    def compose(cls, **fields: object) -> tuple[str, str]:
        """The what and the hint of this class's templates, formatted with the raise site's
        values (every field a template names must be given)."""
        return cls.template.format(**fields), cls.hint_template.format(**fields)

    def __init__(self, what: str, where: str = "", hint: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.hint = hint

    def _fill(self, where: str, **fields: object) -> None:
        """Initialise from the class's templates: a subclass's __init__ passes its values."""
        what, hint = self.compose(**fields)
        DatomicAwsError.__init__(self, what, where, hint)

    def lines(self) -> list[str]:
        where = f" ({self.where})" if self.where else ""
        hint = f": {self.hint}" if self.hint else ""
        return [mask_credentials(f"Error: {self.what}{where}{hint}")]

    def __str__(self) -> str:
        return "\n".join(self.lines())


class _KeyedFile(Protocol):
    """A properties file, or a spec loaded from one: where it is and the line of each key."""

    @property
    def path(self) -> str: ...

    def line_of(self, key: str) -> int | None: ...


@dataclass(frozen=True)
class Problem:
    """One invalid value in an input file."""

    file: str
    line: int | None
    key: str | None
    message: str
    hint: str = ""

    @classmethod
    def at(cls, source: _KeyedFile, key: str, message: str, hint: str = "") -> Problem:
        """A problem of `source` at the line of `key`."""
        return cls(source.path, source.line_of(key), key, message, hint)

    @property
    def where(self) -> str:
        loc = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{loc} {self.key}" if self.key else loc


class InvalidInput(DatomicAwsError):
    """Input files that fail validation; every problem is listed at once."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the input")
        self.problems = problems

    def lines(self) -> list[str]:
        out = []
        for p in self.problems:
            hint = f": {p.hint}" if p.hint else ""
            out.append(mask_credentials(f"Error: {p.message} ({p.where}){hint}"))
        return out


class UsageError(DatomicAwsError):
    exit_code = ExitCode.USAGE


class AwsCallError(DatomicAwsError):
    """An AWS API call failed after botocore's retries (AWS refused it): its hint is by error code."""

    template = "AWS {operation} failed with {code}: {message}"
    hint_template = "check the AWS error above and rerun; the run is safe to repeat"

    def __init__(
        self,
        operation: str,
        code: str,
        message: str,
        resource: str = "",
        request_id: str = "",
    ) -> None:
        what, hint = self.compose(operation=operation, code=code, message=message)
        hint = _AWS_HINTS.get(code, hint).format(action=operation)
        super().__init__(what, resource, hint)
        self.operation = operation
        self.code = code
        self.request_id = request_id


_AWS_HINTS = {
    "AccessDenied": "grant {action} to the credentials you run with, then rerun",
    "AccessDeniedException": "grant {action} to the credentials you run with, then rerun",
    "UnauthorizedOperation": "grant {action} to the credentials you run with, then rerun",
    "ExpiredToken": "refresh your credentials (aws sso login, or new session keys), then rerun",
    "ExpiredTokenException": "refresh your credentials (aws sso login, or new session keys), then rerun",
    "InvalidClientTokenId": "the access key is not valid: check --profile / AWS_PROFILE",
    "UnrecognizedClientException": "the access key is not valid: check --profile / AWS_PROFILE",
    "Throttling": "AWS kept throttling after retries; rerun later",
    "ThrottlingException": "AWS kept throttling after retries; rerun later",
}


class CredentialsError(DatomicAwsError):
    template = "no usable AWS credentials ({detail})"
    hint_template = "set AWS_PROFILE or --profile, or run inside an environment with a role"

    def __init__(self, detail: str) -> None:
        self._fill("", detail=detail)


class OwnershipError(DatomicAwsError):
    """A derived name is taken by a resource that does not carry our tags."""

    template = "exists but was not created by datomic-aws (no datomic:system tag)"
    hint_template = (
        "if it is yours to manage, rerun with --adopt; otherwise set an explicit name in the file"
    )

    def __init__(self, resource: str) -> None:
        self._fill(resource)


class NotOursError(OwnershipError):
    """A stack or Auto Scaling group that datomic-aws does not manage for this system (untagged,
    or tagged for another system): refused before any write; the message names the tags it carries.
    """

    def __init__(self, what: str, where: str, hint: str) -> None:
        DatomicAwsError.__init__(self, what, where, hint)


class UnsafeEdit(DatomicAwsError):
    """Rewriting a properties file would change what another line means; nothing is written."""

    exit_code = ExitCode.USAGE

    template = (
        "rewriting this file would change the meaning of other lines (keys {keys}); "
        "nothing was written"
    )
    hint_template = (
        "set the generated keys by hand, or simplify the file's continuation lines, then rerun"
    )

    def __init__(self, path: str, keys: list[str]) -> None:
        self._fill(path, keys=", ".join(keys))
        self.keys = keys


class NameTakenError(DatomicAwsError):
    template = "the name belongs to another AWS account (S3 bucket names are global)"
    hint_template = "choose another value for {key}"

    def __init__(self, resource: str, key: str) -> None:
        self._fill(resource, key=key)


class ResourceMismatch(DatomicAwsError):
    """An existing resource cannot serve and must not be modified destructively."""


class ForeignSystemError(ResourceMismatch):
    """A resource the files name is tagged for another Datomic system: never shared."""

    template = "is tagged for another Datomic system ({tag}={other})"
    hint_template = "two systems cannot share it; set another name in the file"

    def __init__(self, resource: str, tag: str, other: str) -> None:
        self._fill(resource, tag=tag, other=other)


class StackError(DatomicAwsError):
    """A stack operation failed, rolled back, or is in a state we refuse to act on."""


class StackStateError(StackError):
    """A stack in a state the decision table (stack/status.py) refuses to act on; the table
    words what is wrong and what to do."""

    template = "stack is {status}: {what}"
    hint_template = "{hint}"

    def __init__(self, status: str, what: str, where: str, hint: str) -> None:
        self._fill(where, status=status, what=what, hint=hint)


class TemplateRejected(StackError):
    """CloudFormation refused the template (a change set that FAILED): nothing was changed."""

    template = "CloudFormation {refusal}: {reason}"
    hint_template = "fix the template (create-cf-template) and rerun"

    def __init__(self, where: str, reason: str, *, update: bool = False) -> None:
        refusal = "could not prepare the update" if update else "rejected the template"
        self._fill(where, refusal=refusal, reason=reason)


class ProfileNotPropagated(StackError):
    """A stack operation rolled back because EC2 or Auto Scaling did not accept the instance
    profile yet (IAM is eventually consistent, reference §11); its message is the StackError's.
    `status` is where the stack ended: the stack step retries once from there (stack/operations.py)."""

    def __init__(self, what: str, where: str = "", hint: str = "", *, status: str = "") -> None:
        super().__init__(what, where, hint)
        self.status = status


class MigrationRefused(StackError):
    """A Datomic-era stack this tool cannot migrate safely: nothing was changed."""

    template = "cannot migrate: {reason}"
    hint_template = "migrate by hand"

    def __init__(self, reason: str, where: str = "", hint: str = "") -> None:
        self._fill(where, reason=reason)
        self.hint = hint or self.hint


class WaitTimeout(DatomicAwsError):
    pass


class ReplacementError(DatomicAwsError):
    pass


class InstanceFailed(ReplacementError):
    """An instance the replacement waited on left or failed before it served."""

    template = "{what}"
    hint_template = "check its console output and the transactor log; rerun update-stack"

    def __init__(self, what: str, where: str) -> None:
        self._fill(where, what=what)


class Aborted(DatomicAwsError):
    """The operator declined a confirmation."""


class LockedError(DatomicAwsError):
    pass


class FileAccessError(DatomicAwsError):
    """The environment refuses a file or folder the operator named correctly (permissions, a
    read-only file system): exit 1, unlike a missing or malformed input (InvalidInput, exit 2)."""


class DryRunViolation(DatomicAwsError):
    """A mutating AWS call was attempted while writes were switched off: a bug, never silent."""

    template = "internal error: {operation} attempted during --dry-run; nothing was changed"
    hint_template = "please report this"

    def __init__(self, operation: str) -> None:
        self._fill("", operation=operation)


class Interrupted(DatomicAwsError):
    """Ctrl-C: says what may still be running in AWS so the operator can rerun or watch it."""

    exit_code = ExitCode.INTERRUPTED
