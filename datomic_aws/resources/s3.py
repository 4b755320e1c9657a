"""Hardened S3 buckets: the transactor log bucket and the shared templates bucket.

Owns create-if-missing with the correct LocationConstraint, ownership tags, public access block,
default encryption and the TLS-only bucket policy. It must never delete a bucket, an object, or a
policy statement the operator added: a foreign policy is reported, never overwritten.

A per-system bucket (the log bucket) is tagged for its system and owned by the rule of
resources/owner. A shared bucket (the templates bucket, one per account and region for every
system) carries only our managed-by tag, plus whatever `extra_tags` the caller names; its spec is
`ensure_templates_bucket`'s (stack/transport.py uploads the templates into it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict, cast

from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.aws_errors import has_code, translate, translating
from datomic_aws.changes import Change
from datomic_aws.errors import NameTakenError, OwnershipError
from datomic_aws.resources.owner import check_owner
from datomic_aws.resources.plan import Operation, Planned, action_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import (
        CreateBucketConfigurationTypeDef,
        PublicAccessBlockConfigurationTypeDef,
    )

_BLOCK_ALL: PublicAccessBlockConfigurationTypeDef = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
# Default encryption we accept as it is; anything else is converged to SSE-S3.
_ACCEPTED_SSE = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
_TLS_SID = "DenyInsecureTransport"
_TLS_CONDITION = {"Bool": {"aws:SecureTransport": "false"}}


@dataclass(frozen=True)
class BucketSpec:
    name: str
    region: str
    system: str
    explicit: bool
    key: str  # the file key that names it, for error messages
    # Serves every system of the account and region: tagged managed-by only, never datomic:system,
    # and owned when it carries our managed-by tag.
    shared: bool = False
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    # Replaces NameTakenError's hint when the name is not the operator's to change.
    taken_hint: str | None = None
    # The account that must own it (ours): every call on the bucket passes it as
    # ExpectedBucketOwner, so none ever reads or writes a bucket of another account.
    owner: str | None = None


class _Owner(TypedDict, total=False):
    ExpectedBucketOwner: str


def _owner(spec: BucketSpec) -> _Owner:
    # Reference §11: ExpectedBucketOwner makes a call fail when the bucket belongs to another
    # account (CreateBucket does not take it: a new bucket is the caller's).
    return {"ExpectedBucketOwner": spec.owner} if spec.owner else {}


@dataclass(frozen=True)
class BucketState:
    tags: dict[str, str]
    public_access_block: PublicAccessBlockConfigurationTypeDef | None
    encrypted: bool
    policy: dict[str, Any] | None


def _resource(spec: BucketSpec) -> str:
    return f"s3 bucket {spec.name}"


def _name_taken(spec: BucketSpec) -> NameTakenError:
    err = NameTakenError(_resource(spec), spec.key)
    if spec.taken_hint is not None:
        err.hint = spec.taken_hint
    return err


def wanted_tags(spec: BucketSpec) -> dict[str, str]:
    base = {names.TAG_MANAGED: names.MANAGED_BY} if spec.shared else names.tags(spec.system)
    return {**spec.extra_tags, **base}


def tls_only_policy(bucket: str, region: str) -> dict[str, Any]:
    arn = names.arn("s3", region, "", bucket, scope=":")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": _TLS_SID,
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": _TLS_CONDITION,
            }
        ],
    }


def _tags_denied(spec: BucketSpec, exc: ClientError) -> Exception:
    # AccessDenied is what S3 answers both for a bucket of another account and for a bucket of
    # ours when the credentials lack s3:GetBucketTagging: the message says so, and which to check.
    err = translate(exc, _resource(spec))
    otherwise = spec.taken_hint or (
        "if it belongs to another AWS account (S3 bucket names are global),"
        f" choose another value for {spec.key}"
    )
    err.hint = (
        "if the bucket is yours, grant s3:GetBucketTagging on it to the credentials you run"
        f" with; {otherwise}"
    )
    return err


def _read_tags(s3: S3Client, spec: BucketSpec) -> dict[str, str] | None:
    # GetBucketTagging doubles as the existence check: NoSuchBucket when absent.
    try:
        tag_set = s3.get_bucket_tagging(Bucket=spec.name, **_owner(spec))["TagSet"]
    except ClientError as exc:
        if has_code(exc, "NoSuchBucket"):
            return None
        if has_code(exc, "AccessDenied"):
            raise _tags_denied(spec, exc) from exc
        if has_code(exc, "AllAccessDisabled", "PermanentRedirect", "301"):
            # Names are global: a disabled bucket, or one in another region, is not ours.
            raise _name_taken(spec) from exc
        if not has_code(exc, "NoSuchTagSet", "NoSuchTagSetError"):
            raise
        tag_set = []
    return {t["Key"]: t["Value"] for t in tag_set}


def read_bucket(s3: S3Client, spec: BucketSpec) -> BucketState | None:
    tags = _read_tags(s3, spec)
    if tags is None:
        return None
    try:
        pab: PublicAccessBlockConfigurationTypeDef | None = s3.get_public_access_block(
            Bucket=spec.name, **_owner(spec)
        )["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if not has_code(exc, "NoSuchPublicAccessBlockConfiguration"):
            raise
        pab = None
    try:
        config = s3.get_bucket_encryption(Bucket=spec.name, **_owner(spec))[
            "ServerSideEncryptionConfiguration"
        ]
        algorithms = {
            rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
            for rule in config.get("Rules", [])
        }
        encrypted = bool(algorithms & _ACCEPTED_SSE)
    except ClientError as exc:
        if not has_code(exc, "ServerSideEncryptionConfigurationNotFoundError"):
            raise
        encrypted = False
    try:
        policy: dict[str, Any] | None = json.loads(
            s3.get_bucket_policy(Bucket=spec.name, **_owner(spec))["Policy"]
        )
    except ClientError as exc:
        if not has_code(exc, "NoSuchBucketPolicy"):
            raise
        policy = None
    return BucketState(tags, pab, encrypted, policy)


def _as_list(value: Any) -> list[Any]:
    # A policy may hold a single-element list as a bare string.
    return value if isinstance(value, list) else [value]


def _statements(policy: dict[str, Any] | None) -> list[dict[str, Any]]:
    # A single statement may stand bare, without its list.
    if not policy:
        return []
    return [s for s in _as_list(policy.get("Statement", [])) if isinstance(s, dict)]


def _refuses_non_tls(stmt: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return (
        stmt.get("Effect") == "Deny"
        and stmt.get("Principal") in ("*", {"AWS": "*"})
        and bool(set(_as_list(stmt.get("Action"))) & {"s3:*", "*"})
        and set(_as_list(stmt.get("Resource"))) == set(wanted["Resource"])
        and stmt.get("Condition") == wanted["Condition"]
    )


def _has_tls_statement(policy: dict[str, Any] | None, spec: BucketSpec) -> bool:
    wanted = tls_only_policy(spec.name, spec.region)["Statement"][0]
    return any(_refuses_non_tls(stmt, wanted) for stmt in _statements(policy))


@dataclass(frozen=True)
class CreateBucket:
    """Create it in its region with our tags, then block public access, turn on default
    encryption and put the TLS-only policy."""

    spec: BucketSpec

    def describe(self) -> str:
        return f"region {self.spec.region}\npublic access blocked, SSE-S3, TLS-only policy"


@dataclass(frozen=True)
class TagBucket:
    """Add our tags, keeping the bucket's others."""

    tags: tuple[tuple[str, str], ...]  # the whole tag set to put, sorted
    added: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return "tags: add " + ", ".join(f"{k}={v}" for k, v in self.added)


@dataclass(frozen=True)
class BlockPublicAccess:
    def describe(self) -> str:
        return "public access: block all"


@dataclass(frozen=True)
class EncryptBucket:
    def describe(self) -> str:
        return "default encryption: SSE-S3 (AES256)"


@dataclass(frozen=True)
class DenyNonTls:
    """The TLS-only statement added to the bucket policy, every other statement kept."""

    policy: str  # the whole policy document to put

    def describe(self) -> str:
        return "bucket policy: deny non-TLS access"


def _tls_policy(spec: BucketSpec, current: dict[str, Any] | None) -> str:
    statements = [s for s in _statements(current) if s.get("Sid") != _TLS_SID]
    merged = tls_only_policy(spec.name, spec.region)
    merged["Statement"] = statements + merged["Statement"]
    return json.dumps(merged, sort_keys=True)


def _update_operations(spec: BucketSpec, current: BucketState) -> tuple[Operation, ...]:
    ops: list[Operation] = []
    wanted = wanted_tags(spec)
    missing = {k: v for k, v in wanted.items() if current.tags.get(k) != v}
    if missing:
        merged = {**current.tags, **wanted}
        ops.append(TagBucket(tuple(sorted(merged.items())), tuple(sorted(missing.items()))))
    if current.public_access_block != _BLOCK_ALL:
        ops.append(BlockPublicAccess())
    if not current.encrypted:
        ops.append(EncryptBucket())
    if not _has_tls_statement(current.policy, spec):
        ops.append(DenyNonTls(_tls_policy(spec, current.policy)))
    return tuple(ops)


def _create(s3: S3Client, spec: BucketSpec) -> None:
    tags = wanted_tags(spec)
    config: CreateBucketConfigurationTypeDef = {
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]
    }
    # us-east-1 rejects an explicit LocationConstraint; every other region requires one.
    if spec.region != "us-east-1":
        # The region is the file's string; S3 answers for the regions it knows (a stub Literal).
        config["LocationConstraint"] = cast("BucketLocationConstraintType", spec.region)
    try:
        s3.create_bucket(Bucket=spec.name, CreateBucketConfiguration=config)
    except ClientError as exc:
        if has_code(exc, "BucketAlreadyExists"):
            raise _name_taken(spec) from exc
        if not has_code(exc, "BucketAlreadyOwnedByYou"):
            raise
    # AWS applies CreateBucket's Tags atomically; this also covers endpoints that ignore them.
    _run(s3, spec, TagBucket(tuple(sorted(tags.items())), ()))
    for op in (BlockPublicAccess(), EncryptBucket(), DenyNonTls(_tls_policy(spec, None))):
        _run(s3, spec, op)


def _run(s3: S3Client, spec: BucketSpec, op: Operation) -> None:
    if isinstance(op, CreateBucket):
        _create(s3, spec)
    elif isinstance(op, TagBucket):
        s3.put_bucket_tagging(
            Bucket=spec.name,
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in op.tags]},
            **_owner(spec),
        )
    elif isinstance(op, BlockPublicAccess):
        s3.put_public_access_block(
            Bucket=spec.name, PublicAccessBlockConfiguration=_BLOCK_ALL, **_owner(spec)
        )
    elif isinstance(op, EncryptBucket):
        s3.put_bucket_encryption(
            Bucket=spec.name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                        "BucketKeyEnabled": True,
                    }
                ]
            },
            **_owner(spec),
        )
    elif isinstance(op, DenyNonTls):
        s3.put_bucket_policy(Bucket=spec.name, Policy=op.policy, **_owner(spec))


def _check_owner(spec: BucketSpec, tags: dict[str, str], *, adopt: bool) -> None:
    if not spec.shared:
        check_owner(tags, spec.system, _resource(spec), explicit=spec.explicit, adopt=adopt)
    elif not spec.explicit and not adopt and tags.get(names.TAG_MANAGED) != names.MANAGED_BY:
        # Shared by every system, so no datomic:system tag: our managed-by tag alone marks it.
        err = OwnershipError(_resource(spec))
        err.what = (
            f"exists but was not created by datomic-aws"
            f" (no {names.TAG_MANAGED}={names.MANAGED_BY} tag)"
        )
        raise err


@dataclass(frozen=True)
class BucketPlan(Planned):
    spec: BucketSpec | None = None


def plan_bucket(spec: BucketSpec, current: BucketState | None, *, adopt: bool) -> BucketPlan:
    """Pure; the ownership refusal comes here, before any write."""
    resource = _resource(spec)
    if current is None:
        ops: tuple[Operation, ...] = (CreateBucket(spec),)
        return BucketPlan(resource, action_for(False, ops), ops, spec=spec)
    _check_owner(spec, current.tags, adopt=adopt)
    ops = _update_operations(spec, current)
    return BucketPlan(resource, action_for(True, ops), ops, spec=spec)


def read_and_plan_bucket(s3: S3Client, spec: BucketSpec, *, adopt: bool) -> BucketPlan:
    with translating(_resource(spec)):
        return plan_bucket(spec, read_bucket(s3, spec), adopt=adopt)


def execute_bucket(s3: S3Client, plan: BucketPlan) -> None:
    """Only the planned operations, in order."""
    assert plan.spec is not None
    with translating(plan.resource):
        for op in plan.operations:
            _run(s3, plan.spec, op)


def ensure_bucket(s3: S3Client, spec: BucketSpec, *, dry_run: bool, adopt: bool) -> Change:
    """Read, plan and (unless `dry_run`) execute, for a caller with one bucket to converge."""
    plan = read_and_plan_bucket(s3, spec, adopt=adopt)
    if not dry_run:
        execute_bucket(s3, plan)
    return plan.change()


# The templates bucket serves every system of the account and region, so it is tagged managed-by
# only (plus its purpose), never datomic:system.
_TEMPLATES_TAGS = MappingProxyType({"datomic:purpose": "cloudformation-templates"})
_TEMPLATES_TAKEN_HINT = (
    "another AWS account owns this bucket name, so templates cannot be uploaded"
    " in this region; contact AWS support or use another account"
)


def ensure_templates_bucket(
    s3: S3Client, account: str, region: str, *, dry_run: bool = False
) -> Change:
    """Create or converge the tool-owned templates bucket; reads first, writes only what differs
    (a dry run: nothing, the change it would make)."""
    spec = BucketSpec(
        names.templates_bucket(account, region),
        region,
        system="",
        explicit=False,
        key="the region",
        shared=True,
        extra_tags=_TEMPLATES_TAGS,
        taken_hint=_TEMPLATES_TAKEN_HINT,
        owner=account,
    )
    # The name is the tool's own (it embeds the caller's account and region) and the stack
    # commands have no --adopt: a bucket of that name in this account is ours to converge,
    # re-tagging it if its tags were stripped.
    return ensure_bucket(s3, spec, dry_run=dry_run, adopt=True)
