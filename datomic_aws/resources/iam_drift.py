"""What is on a role of ours that the tool did not write (issue 11, access drift): read, named and
reported as warnings, never removed (the operator's to keep). Owns which inline policy names are
the tool's, whichever command or stack wrote them; must not write anything to IAM."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from datomic_aws import names, policies
from datomic_aws.aws_errors import has_code

if TYPE_CHECKING:
    from mypy_boto3_iam.client import IAMClient


def read_attached(iam: IAMClient, role: str) -> tuple[str, ...]:
    """The ARNs of the managed policies attached to the role, sorted (one call per 100)."""
    arns: list[str] = []
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role):
        arns.extend(p["PolicyArn"] for p in page.get("AttachedPolicies", []) if "PolicyArn" in p)
    return tuple(sorted(arns))


def foreign_policies(
    role: str, inline: Iterable[str], attached: Iterable[str], ours: Callable[[str], bool]
) -> list[str]:
    """One warning per policy on the role that datomic-aws did not write: every attached managed
    policy, and each inline policy `ours` does not claim. They may widen what the role can do;
    the tool reports them and leaves them (they are the operator's to keep or remove)."""
    out = [
        f"iam role {role}: managed policy {arn} is attached, not by datomic-aws; it is left "
        f"attached (if it is not meant to be: aws iam detach-role-policy --role-name {role} "
        f"--policy-arn {arn})"
        for arn in attached
    ]
    out += [
        f"iam role {role}: inline policy {name} was not written by datomic-aws; it is left as "
        f"it is (if it is not meant to be: aws iam delete-role-policy --role-name {role} "
        f"--policy-name {name})"
        for name in sorted(inline)
        if not ours(name)
    ]
    return out


def written_by_us(name: str, system: str) -> bool:
    """An inline policy name the tool writes on a role of `system`, whatever the file says now:
    the managed ones and the table's (a ddb table has the system's name, names.py)."""
    return (
        policies.is_managed_policy_name(name, system)
        or written_by_the_stack(name, system)
        or name == policies.transactor_table_policy(system, "", "us-east-1")[0]
        or name == policies.peer_table_policy(system, "", "us-east-1")[0]
    )


def read_foreign_policies(iam: IAMClient, role: str, system: str) -> list[str]:
    """status: the warnings of `foreign_policies` for a role read by name (none when the role
    does not exist). Two list calls; no policy document is read."""
    inline: list[str] = []
    try:
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
            inline.extend(page["PolicyNames"])
    except ClientError as exc:
        if has_code(exc, "NoSuchEntity"):
            return []
        raise
    attached = read_attached(iam, role)
    return foreign_policies(role, inline, attached, lambda name: written_by_us(name, system))


def written_by_the_stack(name: str, system: str) -> bool:
    """An inline policy the generated template puts on the transactor role (template_observe.py:
    the S3 download's grant, the log shipping and Session Manager grants)."""
    return name in (policies.download_policy_name(system), *names.stack_policies(system))
