"""errors.py: every class with a message template formats it from its fields, and the templated
classes say exactly what the raise sites said before (tests and operators' scripts read them)."""

from __future__ import annotations

import string

import pytest

from datomic_aws import errors
from datomic_aws.errors import DatomicAwsError, ExitCode


def _classes(base: type[DatomicAwsError]) -> list[type[DatomicAwsError]]:
    out = []
    for sub in base.__subclasses__():
        out.append(sub)
        out.extend(_classes(sub))
    return out


TEMPLATED = [c for c in _classes(DatomicAwsError) if c.template]


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_recurring_shapes_have_templates() -> None:
    names = {c.__name__ for c in TEMPLATED}
    assert {
        "AwsCallError",
        "OwnershipError",
        "NameTakenError",
        "ForeignSystemError",
        "TemplateRejected",
        "StackStateError",
        "MigrationRefused",
        "InstanceFailed",
        "UnsafeEdit",
        "CredentialsError",
        "DryRunViolation",
    } <= names


@pytest.mark.parametrize("cls", TEMPLATED, ids=lambda c: c.__name__)
def test_every_template_formats_with_its_fields(cls: type[DatomicAwsError]) -> None:
    fields = _fields(cls.template) | _fields(cls.hint_template)
    values = {name: f"<{name}>" for name in fields}
    what, hint = cls.compose(**values)
    for name in _fields(cls.template):
        assert f"<{name}>" in what
    for name in _fields(cls.hint_template):
        assert f"<{name}>" in hint
    assert "{" not in what + hint
    with pytest.raises(KeyError):
        if fields:
            cls.compose()
        else:
            raise KeyError("no fields to miss")


def test_the_templated_messages_keep_their_wording() -> None:
    assert errors.OwnershipError("iam role r").lines() == [
        "Error: exists but was not created by datomic-aws (no datomic:system tag) (iam role r): "
        "if it is yours to manage, rerun with --adopt; otherwise set an explicit name in the file"
    ]
    assert errors.NameTakenError("s3 bucket b", "aws-s3-log-bucket").lines() == [
        "Error: the name belongs to another AWS account (S3 bucket names are global) "
        "(s3 bucket b): choose another value for aws-s3-log-bucket"
    ]
    assert str(errors.ForeignSystemError("dynamodb table t", "datomic:system", "other")) == (
        "Error: is tagged for another Datomic system (datomic:system=other) (dynamodb table t): "
        "two systems cannot share it; set another name in the file"
    )
    assert str(errors.TemplateRejected("us-east-1 s", "bad", update=True)) == (
        "Error: CloudFormation could not prepare the update: bad (us-east-1 s): "
        "fix the template (create-cf-template) and rerun"
    )
    assert str(errors.TemplateRejected("us-east-1 s", "bad")).startswith(
        "Error: CloudFormation rejected the template: bad (us-east-1 s)"
    )
    assert str(errors.StackStateError("ROLLBACK_FAILED", "stuck", "r s", "continue it")) == (
        "Error: stack is ROLLBACK_FAILED: stuck (r s): continue it"
    )
    assert (
        str(errors.MigrationRefused("a clash")) == "Error: cannot migrate: a clash: migrate by hand"
    )
    assert (
        str(errors.MigrationRefused("x", "r s", "do y")) == "Error: cannot migrate: x (r s): do y"
    )
    assert str(errors.InstanceFailed("i-1 left", "group g")) == (
        "Error: i-1 left (group g): check its console output and the transactor log; "
        "rerun update-stack"
    )
    assert str(errors.UnsafeEdit("f.properties", ["a", "b"])).startswith(
        "Error: rewriting this file would change the meaning of other lines (keys a, b); "
        "nothing was written (f.properties)"
    )
    assert str(errors.CredentialsError("no profile")).startswith(
        "Error: no usable AWS credentials (no profile): set AWS_PROFILE"
    )
    assert str(errors.DryRunViolation("iam:CreateRole")) == (
        "Error: internal error: iam:CreateRole attempted during --dry-run; nothing was changed: "
        "please report this"
    )


def test_templated_subclasses_keep_their_parents_exit_codes_and_catch_clauses() -> None:
    assert issubclass(errors.ForeignSystemError, errors.ResourceMismatch)
    assert issubclass(errors.TemplateRejected, errors.StackError)
    assert issubclass(errors.StackStateError, errors.StackError)
    assert issubclass(errors.MigrationRefused, errors.StackError)
    assert issubclass(errors.InstanceFailed, errors.ReplacementError)
    assert all(c.exit_code in (ExitCode.FAILURE, ExitCode.USAGE) for c in TEMPLATED)
    assert errors.UnsafeEdit.exit_code is ExitCode.USAGE
