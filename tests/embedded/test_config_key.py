"""The KMS key of the configuration parameter (issue 11 Deliver 5; datomic_aws/resources/kms.py).

`aws-ssm-kms-key=managed`: a key of the tool's own, whose key policy lets the account administer
it and only the transactor role decrypt, through SSM, the system's parameter; an operator's key:
used, its policy untouched, the decrypt granted in the role's inline policy; blank: SSM's
AWS-managed key and no KMS call. In moto (reference §7), with Stubber where moto cannot answer as
AWS does (a just-created role refused in a key policy, reference §11).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from conftest import environment

from datomic_aws import names, policies
from datomic_aws.app.ensure_transactor import ensure_transactor
from datomic_aws.aws import AwsContext
from datomic_aws.errors import (
    AwsCallError,
    ForeignSystemError,
    OwnershipError,
    ResourceMismatch,
)
from datomic_aws.resources import kms

REGION = "us-east-1"
ACCOUNT = "123456789012"
SYSTEM = "my-datomic-system"
ROLE = "datomic-my-datomic-system-transactor"
PARAMETER = names.ssm_parameter(SYSTEM)
PARAMETER_ARN = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{PARAMETER}"
ALIAS = f"alias/datomic-aws/{SYSTEM}"


def _files(tmp_path: Path, key: str | None) -> Path:
    folder = environment(tmp_path / "env")
    path = folder / "transactor.properties"
    if key is not None:
        with path.open("a", encoding="latin-1") as f:
            f.write(f"aws-ssm-kms-key={key}\n")
    return path


def _set_key(path: Path, key: str) -> None:
    text = path.read_text(encoding="latin-1")
    lines = [line for line in text.splitlines(keepends=True) if "aws-ssm-kms-key" not in line]
    path.write_text("".join(lines) + f"aws-ssm-kms-key={key}\n", encoding="latin-1")


def _described() -> dict[str, Any]:
    ssm = boto3.client("ssm", region_name=REGION)
    (meta,) = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [PARAMETER]}]
    )["Parameters"]
    return dict(meta)


def _runtime_policy() -> dict[str, Any]:
    iam = boto3.client("iam", region_name=REGION)
    doc = iam.get_role_policy(RoleName=ROLE, PolicyName=names.runtime_policy(SYSTEM))
    return dict(doc["PolicyDocument"])


# ------------------------------------------------------------------------------- the key policy


def test_the_key_policy_lets_only_the_transactor_role_decrypt_through_ssm() -> None:
    doc = kms.key_policy(ACCOUNT, REGION, ROLE, PARAMETER_ARN)
    admin, write, read = doc["Statement"]
    via = {
        "kms:ViaService": "ssm.us-east-1.amazonaws.com",
        "kms:EncryptionContext:PARAMETER_ARN": PARAMETER_ARN,
    }
    # The account administers the key (it can never become unmanageable) but does not use it.
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert "kms:Put*" in admin["Action"] and "Condition" not in admin
    using = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncrypt", "kms:*")
    assert not any(a.startswith(using) for a in admin["Action"])
    # The account may write the parameter (the operator's PutParameter), through SSM only.
    assert write["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert write["Action"] == ["kms:Encrypt", "kms:GenerateDataKey"]
    assert write["Condition"] == {"StringEquals": via}
    # Only the transactor role reads: through SSM, this parameter.
    assert read["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"}
    assert read["Action"] == ["kms:Decrypt"]
    assert read["Condition"] == {"StringEquals": via}
    decrypting = [s for s in doc["Statement"] if "kms:Decrypt" in s["Action"]]
    assert decrypting == [read]


def test_the_key_policy_is_partition_aware() -> None:
    region = "cn-north-1"
    arn = policies.parameter_arn(SYSTEM, ACCOUNT, region)
    doc = kms.key_policy(ACCOUNT, region, ROLE, arn)
    assert arn.startswith("arn:aws-cn:ssm:cn-north-1:")
    assert doc["Statement"][0]["Principal"] == {"AWS": f"arn:aws-cn:iam::{ACCOUNT}:root"}
    assert doc["Statement"][2]["Principal"] == {"AWS": f"arn:aws-cn:iam::{ACCOUNT}:role/{ROLE}"}
    condition = doc["Statement"][2]["Condition"]["StringEquals"]
    assert condition["kms:ViaService"] == "ssm.cn-north-1.amazonaws.com.cn"


def test_the_alias_is_the_systems_within_kms_rules() -> None:
    assert names.kms_alias("orders") == "alias/datomic-aws/orders"
    # `.` is not allowed in an alias: cleaned, with a hash against a collision.
    dotted = names.kms_alias("prod.a")
    assert dotted.startswith("alias/datomic-aws/prod-a-") and dotted != names.kms_alias("prod_a")
    assert len(names.kms_alias("x" * 300)) <= 256


# ---------------------------------------------------------------------- a key of the tool's own


def test_a_managed_key_is_created_then_left_alone(mocked_aws: None, tmp_path: Path) -> None:
    path = _files(tmp_path, "managed")
    first = AwsContext()
    result = ensure_transactor(first, path)
    by_resource = {c.resource: c for c in result.changes}
    assert by_resource[f"kms key {ALIAS}"].action.value == "create"
    client = boto3.client("kms", region_name=REGION)
    meta = client.describe_key(KeyId=ALIAS)["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"], meta["KeyState"]) == (
        "SYMMETRIC_DEFAULT",
        "ENCRYPT_DECRYPT",
        "Enabled",
    )
    tags = client.list_resource_tags(KeyId=meta["KeyId"])["Tags"]
    assert {t["TagKey"]: t["TagValue"] for t in tags} == names.tags(SYSTEM)
    policy = json.loads(client.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")["Policy"])
    assert policy == kms.key_policy(ACCOUNT, REGION, ROLE, PARAMETER_ARN)
    # The parameter is encrypted with it; the role needs no grant of its own (the key policy
    # names it).
    assert _described()["KeyId"] == ALIAS
    assert not any("kms:Decrypt" in s["Action"] for s in _runtime_policy()["Statement"])
    # The key is made before the parameter that uses it, after the role its policy names.
    order = [c.resource.split()[0:2] for c in result.changes]
    assert order.index(["kms", "key"]) < order.index(["ssm", "parameter"])
    assert order.index(["kms", "key"]) > order.index(["iam", "role"])

    before = path.read_bytes()
    noop = AwsContext()
    again = ensure_transactor(noop, path)
    assert not again.pending
    assert noop.call_log.mutating() == {}
    assert path.read_bytes() == before
    # Decided without decrypting: no GetParameter, no KMS Decrypt.
    assert "ssm:GetParameter" not in noop.call_log.calls
    assert not any(op.startswith("kms:") and "crypt" in op for op in noop.call_log.calls)
    assert noop.call_log.calls["kms:DescribeKey"] == 1
    assert noop.call_log.calls["kms:GetKeyPolicy"] == 1
    # Tags are read only before a write.
    assert "kms:ListResourceTags" not in noop.call_log.calls

    dry = AwsContext(read_only=True)
    planned = ensure_transactor(dry, path, dry_run=True)
    assert [c.as_dict() for c in planned.changes] == [c.as_dict() for c in again.changes]
    assert dry.call_log.calls == noop.call_log.calls


def test_choosing_a_key_re_puts_the_same_value_under_it(mocked_aws: None, tmp_path: Path) -> None:
    path = _files(tmp_path, None)
    ensure_transactor(AwsContext(), path)
    assert _described()["KeyId"] == "alias/aws/ssm"
    version = _described()["Version"]

    _set_key(path, "managed")
    dry = AwsContext(read_only=True)
    planned = ensure_transactor(dry, path, dry_run=True)
    change = {c.resource: c for c in planned.changes}[f"ssm parameter {PARAMETER}"]
    assert change.action.value == "update"
    assert any(f"key alias/aws/ssm -> {ALIAS}" in line for line in change.details)
    run = ensure_transactor(AwsContext(), path)
    assert [c.as_dict() for c in run.changes] == [c.as_dict() for c in planned.changes]
    assert _described()["KeyId"] == ALIAS
    assert _described()["Version"] == version + 1
    assert f"datomic-aws-config-version={version + 1}\n" in path.read_text(encoding="latin-1")

    # Back to SSM's default key: named in the call, not left to PutParameter's default.
    _set_key(path, "")
    back = AwsContext()
    ensure_transactor(back, path)
    assert _described()["KeyId"] == "alias/aws/ssm"
    assert "kms:DescribeKey" not in back.call_log.calls
    noop = AwsContext()
    assert not ensure_transactor(noop, path).pending
    assert noop.call_log.mutating() == {}


def test_without_a_key_no_kms_call_is_made(mocked_aws: None, tmp_path: Path) -> None:
    path = _files(tmp_path, None)
    first = AwsContext()
    ensure_transactor(first, path)
    assert not any(op.startswith("kms:") for op in first.call_log.calls)
    assert _described()["KeyId"] == "alias/aws/ssm"


def _foreign_key(tags: dict[str, str]) -> str:
    client = boto3.client("kms", region_name=REGION)
    key = client.create_key(
        Policy=json.dumps({"Version": "2012-10-17", "Statement": []}),
        Tags=[{"TagKey": k, "TagValue": v} for k, v in tags.items()],
    )["KeyMetadata"]["KeyId"]
    client.create_alias(AliasName=ALIAS, TargetKeyId=key)
    return key


def test_a_key_behind_our_alias_without_our_tags_needs_adopt(
    mocked_aws: None, tmp_path: Path
) -> None:
    path = _files(tmp_path, "managed")
    key = _foreign_key({})
    ctx = AwsContext()
    with pytest.raises(OwnershipError):
        ensure_transactor(ctx, path)
    assert ctx.call_log.mutating() == {}
    ensure_transactor(AwsContext(), path, adopt=True)
    client = boto3.client("kms", region_name=REGION)
    tags = client.list_resource_tags(KeyId=key)["Tags"]
    assert {t["TagKey"]: t["TagValue"] for t in tags} == names.tags(SYSTEM)
    policy = json.loads(client.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    assert policy == kms.key_policy(ACCOUNT, REGION, ROLE, PARAMETER_ARN)


def test_a_key_of_another_system_is_never_taken(mocked_aws: None, tmp_path: Path) -> None:
    path = _files(tmp_path, "managed")
    _foreign_key(names.tags("another-system"))
    ctx = AwsContext()
    with pytest.raises(ForeignSystemError):
        ensure_transactor(ctx, path, adopt=True)
    assert ctx.call_log.mutating() == {}


def test_a_disabled_key_is_refused_before_any_write(mocked_aws: None, tmp_path: Path) -> None:
    path = _files(tmp_path, "managed")
    key = _foreign_key(names.tags(SYSTEM))
    boto3.client("kms", region_name=REGION).disable_key(KeyId=key)
    ctx = AwsContext()
    with pytest.raises(ResourceMismatch, match="Disabled"):
        ensure_transactor(ctx, path)
    assert ctx.call_log.mutating() == {}


# ------------------------------------------------------------------------- the operator's key


def test_an_operators_key_is_used_its_policy_untouched(mocked_aws: None, tmp_path: Path) -> None:
    client = boto3.client("kms", region_name=REGION)
    theirs = json.dumps({"Version": "2012-10-17", "Statement": [], "Id": "theirs"})
    meta = client.create_key(Policy=theirs)["KeyMetadata"]
    client.create_alias(AliasName="alias/their-key", TargetKeyId=meta["KeyId"])
    path = _files(tmp_path, "alias/their-key")
    first = AwsContext()
    result = ensure_transactor(first, path)
    change = {c.resource: c for c in result.changes}["kms key alias/their-key"]
    assert change.action.value == "noop"
    assert not any(
        op in first.call_log.calls
        for op in ("kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:CreateKey", "kms:TagResource")
    )
    assert client.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")["Policy"] == theirs
    assert _described()["KeyId"] == meta["Arn"]
    grant = [s for s in _runtime_policy()["Statement"] if "kms:Decrypt" in s["Action"]]
    assert grant == [
        {
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": [meta["Arn"]],
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": "ssm.us-east-1.amazonaws.com",
                    "kms:EncryptionContext:PARAMETER_ARN": PARAMETER_ARN,
                }
            },
        }
    ]
    before = path.read_bytes()
    noop = AwsContext()
    assert not ensure_transactor(noop, path).pending
    assert noop.call_log.mutating() == {}
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("alias/no-such-key", "no such key"),
        (f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab", "eu-west-1"),
    ],
)
def test_an_unusable_operators_key_is_refused_before_any_write(
    mocked_aws: None, tmp_path: Path, key: str, message: str
) -> None:
    if "eu-west-1" in key:
        # Exists, but in another region than the parameter.
        other = boto3.client("kms", region_name="eu-west-1").create_key()["KeyMetadata"]
        key = other["Arn"]
    path = _files(tmp_path, key)
    ctx = AwsContext()
    with pytest.raises(ResourceMismatch, match=message):
        ensure_transactor(ctx, path)
    assert ctx.call_log.mutating() == {}


# ------------------------------------------------------------ what moto cannot show (Stubber)


def _spec() -> kms.ManagedKeySpec:
    return kms.managed_key_spec(SYSTEM, ACCOUNT, REGION, ROLE, PARAMETER_ARN)


def test_a_role_not_yet_visible_to_kms_is_waited_for() -> None:
    # Reference §11: IAM is eventually consistent; KMS refuses a key policy naming a role it
    # does not see yet with MalformedPolicyDocumentException.
    client = boto3.client("kms", region_name=REGION)
    spec = _spec()
    plan = kms.plan_managed_key(spec, None, adopt=False)
    slept: list[float] = []
    expected = {
        "Policy": spec.policy,
        "Description": f"Datomic transactor configuration of system {SYSTEM} (datomic-aws)",
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "Tags": [
            {"TagKey": "datomic:system", "TagValue": SYSTEM},
            {"TagKey": "managed-by", "TagValue": "datomic-aws"},
        ],
    }
    refused = "Policy contains a statement with one or more invalid principals."
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error(
                "create_key",
                service_error_code="MalformedPolicyDocumentException",
                service_message=refused,
                expected_params=expected,
            )
        stub.add_response(
            "create_key",
            {"KeyMetadata": {"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}},
            expected,
        )
        stub.add_response(
            "create_alias",
            {},
            {"AliasName": ALIAS, "TargetKeyId": "1234abcd-12ab-34cd-56ef-1234567890ab"},
        )
        kms.execute_key(client, plan, sleep=slept.append)
        stub.assert_no_pending_responses()
    assert slept == [2.0, 4.0]


def test_the_wait_for_the_role_is_bounded() -> None:
    client = boto3.client("kms", region_name=REGION)
    spec = _spec()
    current = kms.KeyState(
        "k",
        f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k",
        "Enabled",
        "SYMMETRIC_DEFAULT",
        "ENCRYPT_DECRYPT",
        "CUSTOMER",
        {"old": 1},
        names.tags(SYSTEM),
    )
    plan = kms.plan_managed_key(spec, current, adopt=False)
    slept: list[float] = []
    with Stubber(client) as stub:
        for _ in range(6):
            stub.add_client_error(
                "put_key_policy",
                service_error_code="MalformedPolicyDocumentException",
                service_message="Policy contains a statement with one or more invalid principals.",
                expected_params={"KeyId": "k", "PolicyName": "default", "Policy": spec.policy},
            )
        with pytest.raises(AwsCallError, match="MalformedPolicyDocumentException"):
            kms.execute_key(client, plan, sleep=slept.append)
        stub.assert_no_pending_responses()
    assert len(slept) == 5 and sum(slept) < 120


def test_the_plan_never_deletes_nor_disables_a_key() -> None:
    spec = _spec()
    current = kms.KeyState(
        "k",
        f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k",
        "Enabled",
        "SYMMETRIC_DEFAULT",
        "ENCRYPT_DECRYPT",
        "CUSTOMER",
        {"old": 1},
        {},
    )
    plan = kms.plan_managed_key(spec, current, adopt=True)
    kinds = {type(op).__name__ for op in plan.operations}
    assert kinds == {"PutKeyPolicy", "TagKey"}
    source = Path(kms.__file__).read_text(encoding="utf-8")
    for call in ("schedule_key_deletion", "disable_key", "delete_alias", "update_alias"):
        assert f".{call}(" not in source, call
