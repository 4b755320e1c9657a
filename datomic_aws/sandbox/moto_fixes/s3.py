"""S3 corrections: CreateBucket applies its tags; a TLS-only bucket policy lets HTTPS calls in.

Owns `patch_create_bucket_tags` and `patch_secure_transport_condition`; each restores one AWS
behaviour our flows rely on and must not relax anything AWS enforces on an HTTPS call.
"""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

from datomic_aws.sandbox.moto_fixes._registry import MARK, replace


def patch_create_bucket_tags() -> None:
    """AWS: CreateBucket accepts `CreateBucketConfiguration.Tags` and the bucket exists with those
    tags from its first moment (atomically; our ownership tags are never missing on a bucket a
    crash left behind). Only a bucket this request creates is tagged: re-creating your own bucket
    in us-east-1 (a 200) leaves its tags alone.

    moto 5.2 parses only `LocationConstraint` from the body and drops the tags. Correction: after
    moto creates the bucket, apply the body's tags as PutBucketTagging would.
    """
    from moto.s3 import models, responses

    response_cls: Any = responses.S3Response
    if getattr(response_cls._bucket_response_put, MARK, False):
        return
    original_put = response_cls._bucket_response_put

    def _bucket_response_put(
        self: Any, request: Any, bucket_name: str, querystring: dict[str, Any]
    ) -> Any:
        # CreateBucket is the PUT on the bucket without a sub-resource (?tagging, ?policy...).
        creating = not querystring
        existed = bucket_name in models.s3_backends.bucket_accounts
        result = original_put(self, request, bucket_name, querystring)
        if creating and not existed and bucket_name in models.s3_backends.bucket_accounts:
            tags = _tags_from_create_body(self.body)
            if tags:
                self.backend.put_bucket_tagging(bucket_name, tags)
        return result

    setattr(_bucket_response_put, MARK, True)
    replace(response_cls, "_bucket_response_put", original_put, _bucket_response_put)


def _tags_from_create_body(body: bytes | str | None) -> dict[str, str]:
    """`<CreateBucketConfiguration><Tags><Tag><Key/><Value/></Tag>...` -> {key: value}."""
    if not body:
        return {}
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:  # not XML: moto already answered the request
        return {}

    def local(tag: str) -> str:  # the S3 namespace is optional in request bodies
        return tag.rsplit("}", 1)[-1]

    tags: dict[str, str] = {}
    for element in root.iter():
        if local(element.tag) != "Tag":
            continue
        fields = {local(child.tag): child.text or "" for child in element}
        if "Key" in fields:
            tags[fields["Key"]] = fields.get("Value", "")
    return tags


_TLS_CONDITION = {"Bool": {"aws:SecureTransport": "false"}}


def patch_secure_transport_condition() -> None:
    """AWS: a bucket policy statement `Deny ... Condition Bool aws:SecureTransport=false` denies
    only plain-HTTP requests; every SDK call over HTTPS passes it.

    moto 5.2 cannot evaluate that condition and treats the Deny as unconditional, so a TLS-only
    bucket refuses every object call (403), which would make template uploads to the templates
    bucket fail. The sandbox endpoint is plain HTTP on 127.0.0.1 standing in for AWS's HTTPS, so
    correction: evaluate bucket policies without that one statement.
    """
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    bucket_cls: Any = FakeBucket
    if getattr(bucket_cls.get_permission, MARK, False):
        return
    original = bucket_cls.get_permission

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(self.policy)
        kept = [s for s in policy.get("Statement", []) if s.get("Condition") != _TLS_CONDITION]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**policy, "Statement": kept})).is_action_permitted(
            action, resource
        )

    setattr(get_permission, MARK, True)
    replace(bucket_cls, "get_permission", original, get_permission)
