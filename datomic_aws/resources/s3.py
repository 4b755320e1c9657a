"""Hardened S3 buckets: the transactor log bucket (and any other bucket the tool owns).

Owns create-if-missing with the correct LocationConstraint, ownership tags, public access block,
default encryption and the TLS-only bucket policy. It must never delete a bucket, an object, or a
policy statement the operator added: a foreign policy is reported, never overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from datomic_aws import names
from datomic_aws.aws import is_error, translating
from datomic_aws.changes import Action, Change
from datomic_aws.errors import NameTakenError
from datomic_aws.resources.owner import check_owner

_BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
_TLS_SID = "DenyInsecureTransport"


@dataclass(frozen=True)
class BucketSpec:
    name: str
    region: str
    system: str
    explicit: bool
    key: str  # the file key that names it, for error messages


@dataclass(frozen=True)
class BucketState:
    tags: dict[str, str]
    public_access_block: dict[str, bool] | None
    encrypted: bool
    policy: dict[str, Any] | None


def _resource(spec: BucketSpec) -> str:
    return f"s3 bucket {spec.name}"


def tls_only_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": _TLS_SID,
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def read_bucket(s3: Any, spec: BucketSpec) -> BucketState | None:
    # GetBucketTagging doubles as the existence check: NoSuchBucket when absent.
    try:
        tag_set = s3.get_bucket_tagging(Bucket=spec.name)["TagSet"]
    except Exception as exc:
        if is_error(exc, "NoSuchBucket"):
            return None
        if is_error(exc, "AccessDenied", "AllAccessDisabled", "PermanentRedirect", "301"):
            # Names are global: a bucket we may not read, or one in another region, is not ours.
            raise NameTakenError(_resource(spec), spec.key) from exc
        if not is_error(exc, "NoSuchTagSet", "NoSuchTagSetError"):
            raise
        tag_set = []
    tags = {t["Key"]: t["Value"] for t in tag_set}
    try:
        pab = dict(s3.get_public_access_block(Bucket=spec.name)["PublicAccessBlockConfiguration"])
    except Exception as exc:
        if not is_error(exc, "NoSuchPublicAccessBlockConfiguration"):
            raise
        pab = None
    try:
        rules = s3.get_bucket_encryption(Bucket=spec.name)["ServerSideEncryptionConfiguration"]
        encrypted = bool(rules.get("Rules"))
    except Exception as exc:
        if not is_error(exc, "ServerSideEncryptionConfigurationNotFoundError"):
            raise
        encrypted = False
    try:
        policy: dict[str, Any] | None = json.loads(s3.get_bucket_policy(Bucket=spec.name)["Policy"])
    except Exception as exc:
        if not is_error(exc, "NoSuchBucketPolicy"):
            raise
        policy = None
    return BucketState(tags, pab, encrypted, policy)


def _has_tls_statement(policy: dict[str, Any] | None, bucket: str) -> bool:
    if not policy:
        return False
    wanted = tls_only_policy(bucket)["Statement"][0]
    return any(
        stmt.get("Effect") == "Deny"
        and stmt.get("Condition") == wanted["Condition"]
        and sorted(_as_list(stmt.get("Resource"))) == sorted(wanted["Resource"])
        for stmt in policy.get("Statement", [])
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def diff_bucket(spec: BucketSpec, current: BucketState) -> list[str]:
    out = []
    missing_tags = {k: v for k, v in names.tags(spec.system).items() if current.tags.get(k) != v}
    if missing_tags:
        out.append("tags: add " + ", ".join(f"{k}={v}" for k, v in sorted(missing_tags.items())))
    if current.public_access_block != _BLOCK_ALL:
        out.append("public access: block all")
    if not current.encrypted:
        out.append("default encryption: SSE-S3 (AES256)")
    if not _has_tls_statement(current.policy, spec.name):
        out.append("bucket policy: deny non-TLS access")
    return out


def _create(s3: Any, spec: BucketSpec) -> None:
    config: dict[str, Any] = {"Tags": names.tag_list(spec.system)}
    # us-east-1 rejects an explicit LocationConstraint; every other region requires one.
    if spec.region != "us-east-1":
        config["LocationConstraint"] = spec.region
    try:
        s3.create_bucket(Bucket=spec.name, CreateBucketConfiguration=config)
    except Exception as exc:
        if is_error(exc, "BucketAlreadyExists"):
            raise NameTakenError(_resource(spec), spec.key) from exc
        if not is_error(exc, "BucketAlreadyOwnedByYou"):
            raise


def apply_bucket(s3: Any, spec: BucketSpec, current: BucketState | None) -> None:
    if current is None:
        _create(s3, spec)
    tags = dict(current.tags) if current else {}
    wanted_tags = {**tags, **names.tags(spec.system)}
    # AWS applies CreateBucket's Tags atomically; this also covers endpoints that ignore them.
    if wanted_tags != tags:
        s3.put_bucket_tagging(
            Bucket=spec.name,
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(wanted_tags.items())]},
        )
    if current is None or current.public_access_block != _BLOCK_ALL:
        s3.put_public_access_block(Bucket=spec.name, PublicAccessBlockConfiguration=_BLOCK_ALL)
    if current is None or not current.encrypted:
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
        )
    policy = current.policy if current else None
    if not _has_tls_statement(policy, spec.name):
        statements = [s for s in (policy or {}).get("Statement", []) if s.get("Sid") != _TLS_SID]
        merged = tls_only_policy(spec.name)
        merged["Statement"] = statements + merged["Statement"]
        s3.put_bucket_policy(Bucket=spec.name, Policy=json.dumps(merged, sort_keys=True))


def ensure_bucket(s3: Any, spec: BucketSpec, *, dry_run: bool, adopt: bool) -> Change:
    with translating(_resource(spec)):
        current = read_bucket(s3, spec)
        if current is not None:
            check_owner(
                current.tags, spec.system, _resource(spec), explicit=spec.explicit, adopt=adopt
            )
        if current is None:
            action = Action.CREATE
            details: tuple[str, ...] = (
                f"region {spec.region}",
                "public access blocked, SSE-S3, TLS-only policy",
            )
        else:
            details = tuple(diff_bucket(spec, current))
            action = Action.UPDATE if details else Action.NOOP
        if action is not Action.NOOP and not dry_run:
            apply_bucket(s3, spec, current)
    return Change(_resource(spec), action, details)
