"""Template transport: how a template reaches CloudFormation, and what a dry run may write for it.

Owns the templates' content addressing (`<stack>/<sha256>.json` in the tool-owned templates bucket,
whose ensure is `resources/s3.ensure_templates_bucket`), the upload that skips a template already
there, its URL, the size limit of an inline TemplateBody, and the writes a dry run of create or
update needs (`dry_run_writes`). An upload a plain emulator refuses for the bucket's TLS-only
policy is reported as that gap (aws_errors.TLS_ONLY_BUCKET).

It must not create or converge the bucket itself, touch any other object than the template's own
key, or call CloudFormation.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.aws_errors import S3_NOT_FOUND, TLS_ONLY_BUCKET, endpoint_gap, has_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_TEMPLATE_BODY = names.TEMPLATE_BODY_LIMIT


# Writes a --dry-run may make: a change set is how CloudFormation previews, and it is deleted again.
DRY_RUN_WRITES = frozenset({"cloudformation:CreateChangeSet", "cloudformation:DeleteChangeSet"})
# ...plus, for a template too large for TemplateBody, the templates bucket and the upload.
TEMPLATE_UPLOAD_WRITES = frozenset(
    {
        "s3:CreateBucket",
        "s3:PutPublicAccessBlock",
        "s3:PutBucketEncryption",
        "s3:PutBucketPolicy",
        "s3:PutBucketTagging",
        "s3:PutObject",
    }
)


def dry_run_writes(template: str) -> frozenset[str]:
    """The `AwsContext.allowed_writes` a dry run of create/update needs for this template."""
    if len(template.encode("utf-8")) > MAX_TEMPLATE_BODY:
        return DRY_RUN_WRITES | TEMPLATE_UPLOAD_WRITES
    return DRY_RUN_WRITES


def _missing(exc: ClientError, *codes: str) -> bool:
    return has_code(exc, *S3_NOT_FOUND, *codes)


def template_digest(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def template_key(stack: str, template: str) -> str:
    return f"{stack}/{template_digest(template)}.json"


def template_url(bucket: str, region: str, key: str) -> str:
    # The virtual-hosted regional form: what CloudFormation documents, and what moto resolves even
    # as a server (a 127.0.0.1 endpoint URL would not be).
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{bucket}.s3.{region}.{suffix}/{key}"


def upload_template(s3: S3Client, account: str, region: str, stack: str, template: str) -> str:
    """Put the template under `<stack>/<sha256>.json` unless it is there already; its URL."""
    bucket = names.templates_bucket(account, region)
    key = template_key(stack, template)
    try:
        s3.head_object(Bucket=bucket, Key=key, ExpectedBucketOwner=account)
    except ClientError as exc:
        # Reference §11: without s3:ListBucket, HeadObject on a missing key answers 403, not 404.
        # Upload then: a 403 that meant "not yours" (ExpectedBucketOwner) refuses the put too.
        if not _missing(exc, "NoSuchKey", "403", "Forbidden", "AccessDenied"):
            raise
        with endpoint_gap(TLS_ONLY_BUCKET, s3.meta.endpoint_url):
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=template.encode("utf-8"),
                ContentType="application/json",
                ExpectedBucketOwner=account,
            )
    return template_url(bucket, region, key)
