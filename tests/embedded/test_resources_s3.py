"""resources/s3 for a shared bucket (one per account and region, serving every system): tagged
managed-by only, owned by that tag alone; a per-system bucket keeps its datomic:system tag."""

from __future__ import annotations

from typing import Any

import pytest

from datomic_aws import names
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from datomic_aws.errors import OwnershipError
from datomic_aws.resources.s3 import BucketSpec, ensure_bucket, tls_only_policy, wanted_tags
from tests.conftest import CallRecorder

REGION = "eu-west-1"


def shared(extra_tags: dict[str, str] | None = None) -> BucketSpec:
    return BucketSpec(
        "shared-bucket", REGION, "", False, "the region", shared=True, extra_tags=extra_tags or {}
    )


def tags_of(s3: Any, bucket: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}


def test_tag_sets() -> None:
    assert wanted_tags(shared()) == {names.TAG_MANAGED: names.MANAGED_BY}
    assert wanted_tags(shared(extra_tags={"datomic:purpose": "x"})) == {
        "datomic:purpose": "x",
        names.TAG_MANAGED: names.MANAGED_BY,
    }
    per_system = BucketSpec("b", REGION, "prod", False, "aws-s3-log-bucket-id")
    assert wanted_tags(per_system) == names.tags("prod")


@pytest.mark.parametrize(
    ("region", "prefix"),
    [
        ("us-east-1", "arn:aws:"),
        ("cn-north-1", "arn:aws-cn:"),
        ("us-gov-east-1", "arn:aws-us-gov:"),
    ],
)
def test_tls_policy_is_partition_aware(region: str, prefix: str) -> None:
    (statement,) = tls_only_policy("b", region)["Statement"]
    assert statement["Resource"] == [f"{prefix}s3:::b", f"{prefix}s3:::b/*"]


def test_a_new_shared_bucket_carries_no_system_tag(ctx: AwsContext, recorder: CallRecorder) -> None:
    s3 = ctx.client("s3", REGION)
    change = ensure_bucket(s3, shared(), dry_run=False, adopt=False)
    assert change.action is Action.CREATE
    assert tags_of(s3, "shared-bucket") == {names.TAG_MANAGED: names.MANAGED_BY}
    recorder.operations.clear()
    assert ensure_bucket(s3, shared(), dry_run=False, adopt=False).action is Action.NOOP
    assert recorder.mutating == []


def test_a_derived_shared_name_without_our_tag_is_refused_unless_adopted(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    s3 = ctx.client("s3", REGION)
    s3.create_bucket(
        Bucket="shared-bucket", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    s3.put_bucket_tagging(
        Bucket="shared-bucket", Tagging={"TagSet": [{"Key": "team", "Value": "data"}]}
    )
    recorder.operations.clear()
    with pytest.raises(OwnershipError) as err:
        ensure_bucket(s3, shared(), dry_run=False, adopt=False)
    assert "no managed-by=datomic-aws tag" in str(err.value)
    assert recorder.mutating == []

    change = ensure_bucket(s3, shared(), dry_run=False, adopt=True)
    assert change.action is Action.UPDATE
    assert tags_of(s3, "shared-bucket") == {"team": "data", names.TAG_MANAGED: names.MANAGED_BY}


def test_our_managed_by_tag_alone_makes_a_shared_bucket_ours(ctx: AwsContext) -> None:
    s3 = ctx.client("s3", REGION)
    s3.create_bucket(
        Bucket="shared-bucket", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    s3.put_bucket_tagging(
        Bucket="shared-bucket",
        Tagging={"TagSet": [{"Key": names.TAG_MANAGED, "Value": names.MANAGED_BY}]},
    )
    change = ensure_bucket(s3, shared(), dry_run=True, adopt=False)
    assert change.action is Action.UPDATE
    assert "tags" not in " ".join(change.details)


def test_an_explicit_shared_name_is_converged(ctx: AwsContext) -> None:
    s3 = ctx.client("s3", REGION)
    s3.create_bucket(
        Bucket="shared-bucket", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    spec = BucketSpec("shared-bucket", REGION, "", True, "key", shared=True)
    assert ensure_bucket(s3, spec, dry_run=False, adopt=False).action is Action.UPDATE
    assert tags_of(s3, "shared-bucket") == {names.TAG_MANAGED: names.MANAGED_BY}
