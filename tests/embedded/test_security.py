"""Security review, as tests (in-process moto): what the tool writes into AWS and into the template.

- No IAM statement the tool writes grants a wildcard action; the one `Resource: "*"` is
  cloudwatch:PutMetricData (AWS has no resource-level permission for it), kept to the Datomic
  namespace. Every other resource is scoped to the system: its table, bucket, parameter or group,
  in the caller's account, or its instances by their `datomic:system` tag (the role tag).
- The log bucket and the templates bucket refuse public access (all four block flags, no public
  ACL grant) and non-TLS access (a Deny on aws:SecureTransport=false over the bucket and its
  objects), and are encrypted.
- Planted secrets (sql-password, memcached-password, license-key) reach the encrypted SSM
  parameter, and nowhere else: not the template, not the deployed launch template's user data, not
  the stack. (Command output is scanned in tests/cli/test_cli_security.py.)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest

from datomic_aws import stack
from datomic_aws.app.ensure_transactor import ensure_transactor
from datomic_aws.aws import AwsContext
from datomic_aws.deploy import apply_dir
from tests.conftest import SAMPLES

ACCOUNT = "123456789012"
DDB_SYSTEM = "my-datomic-system"
SQL_SYSTEM = "my-sql-system"
LICENSE = "PLANTED-LICENSE-KEY-5c1e9b"
MEMCACHED_PW = "PLANTED-MEMCACHED-PW-77aa3d"
SQL_PW = "PLANTED-SQL-PW-0f42e8"
SECRETS = (LICENSE, MEMCACHED_PW, SQL_PW)


def plant(text: str, lines: str) -> str:
    """Secret lines right above the role lines the tool rewrites, so that they sit in the context
    of every diff of the file."""
    assert text.count("aws-transactor-role=\n") == 1
    return text.replace("aws-transactor-role=\n", lines + "aws-transactor-role=\n")


def transactor_with_secrets(folder: Path) -> Path:
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    for old in ("# aws-s3-log-bucket-id=\n", "# aws-cloudwatch-region=us-east-1\n"):
        assert text.count(old) == 1, old
        text = text.replace(old, old[2:])
    text = plant(
        text,
        f"license-key={LICENSE}\nmemcached=cache.internal:11211\n"
        f"memcached-password={MEMCACHED_PW}\n",
    )
    path = folder / "transactor.properties"
    path.write_bytes(text.encode("latin-1"))
    return path


def sql_transactor_with_secrets(folder: Path) -> Path:
    text = (SAMPLES / "sql-transactor.properties").read_text(encoding="latin-1")
    assert text.count("sql-password=change-me\n") == 1
    text = text.replace("sql-password=change-me\n", "")
    text = plant(text, f"sql-password={SQL_PW}\naws-s3-log-bucket-id=\n")
    text += "aws-cloudwatch-region=us-east-1\n"
    path = folder / "sql-transactor.properties"
    path.write_bytes(text.encode("latin-1"))
    return path


def found_secrets(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


# ------------------------------------------------------------------------------- IAM policies


def allow_statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    statements = doc["Statement"]
    statements = [statements] if isinstance(statements, dict) else statements
    return [s for s in statements if s["Effect"] == "Allow"]


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def wildcard_actions(statement: dict[str, Any]) -> list[str]:
    if "NotAction" in statement:
        return ["NotAction"]  # an Allow of everything but a list is a wildcard
    return [a for a in as_list(statement["Action"]) if "*" in a]


def tagged_for(statement: dict[str, Any], system: str) -> bool:
    """Held to the system's own resources by their system tag (EC2 instance ids are unknown)."""
    condition = statement.get("Condition", {}).get("StringEquals", {})
    return bool(condition.get("aws:ResourceTag/datomic:system") == system)


def unscoped_resources(statement: dict[str, Any], system: str) -> list[str]:
    """Resources that name none of the system's own resources, or not in the caller's account."""
    if "NotResource" in statement:
        return ["NotResource"]
    bad = []
    for arn in as_list(statement["Resource"]):
        if arn == "*":
            if as_list(statement["Action"]) != ["cloudwatch:PutMetricData"]:
                bad.append(arn)
            continue
        parts = [*arn.split(":"), "", "", "", ""]
        service, account = parts[2], parts[4]
        in_account = service == "s3" or account == ACCOUNT  # S3 ARNs carry no account
        named = any(scope in arn for scope in scopes(system))
        if service == "ec2" and arn.endswith(":instance/*"):
            named = tagged_for(statement, system)
        if not in_account or not named:
            bad.append(arn)
    return bad


def written_policies() -> dict[str, dict[str, Any]]:
    iam = boto3.client("iam", region_name="us-east-1")
    out = {}
    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        out[f"{name} trust"] = role["AssumeRolePolicyDocument"]
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            out[f"{name}/{policy}"] = doc
    return out


@pytest.fixture
def provisioned(ctx: AwsContext, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """ensure-transactor for a ddb and a sql system, every option on; the policies IAM holds."""
    ensure_transactor(ctx, transactor_with_secrets(tmp_path))
    ensure_transactor(ctx, sql_transactor_with_secrets(tmp_path))
    return written_policies()


def scopes(system: str) -> list[str]:
    return [
        f"table/{system}",
        f"datomic-{system}-logs-{ACCOUNT}-us-east-1",
        f"parameter/datomic/{system}/transactor.properties",
        f"autoScalingGroupName/datomic-{system}-transactors",
    ]


def test_no_policy_grants_a_wildcard_action(provisioned: dict[str, dict[str, Any]]) -> None:
    # 4 trust policies; inline: ddb transactor 4 (table, logs, metrics, runtime), ddb peer 1,
    # sql transactor 3 (logs, metrics, runtime), sql peer none.
    assert len(provisioned) == 4 + 8, sorted(provisioned)
    offenders = {
        name: wildcard_actions(s)
        for name, doc in provisioned.items()
        for s in allow_statements(doc)
        if "trust" not in name and wildcard_actions(s)
    }
    assert offenders == {}


def test_every_resource_is_scoped_to_the_system(provisioned: dict[str, dict[str, Any]]) -> None:
    offenders = {}
    for name, doc in provisioned.items():
        if "trust" in name:
            continue
        system = SQL_SYSTEM if SQL_SYSTEM in name else DDB_SYSTEM
        for s in allow_statements(doc):
            bad = unscoped_resources(s, system)
            if bad:
                offenders[name] = bad
    assert offenders == {}
    # The one unscoped resource, metrics, is held to Datomic's namespace.
    metrics = [
        s
        for doc in provisioned.values()
        for s in allow_statements(doc)
        if s.get("Resource") == "*" or s.get("Resource") == ["*"]
    ]
    assert len(metrics) == 2
    assert all(
        s["Condition"]["StringEquals"] == {"cloudwatch:namespace": "Datomic"} for s in metrics
    )


def test_roles_trust_only_ec2(provisioned: dict[str, dict[str, Any]]) -> None:
    for name, doc in provisioned.items():
        if "trust" in name:
            assert allow_statements(doc) == [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ec2.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ], name


def test_the_checks_catch_a_wildcard_and_an_unscoped_resource() -> None:
    """The two checks above, fed what Datomic's own tool wrote (dynamodb:* on the table) and a
    policy on every table: both are caught."""
    legacy = {"Effect": "Allow", "Action": ["dynamodb:*"], "Resource": ["arn:aws:dynamodb:*"]}
    assert wildcard_actions(legacy) == ["dynamodb:*"]
    assert unscoped_resources(legacy, DDB_SYSTEM) == ["arn:aws:dynamodb:*"]
    other_account = {
        "Effect": "Allow",
        "Action": ["ssm:GetParameter"],
        "Resource": [
            f"arn:aws:ssm:us-east-1:*:parameter/datomic/{DDB_SYSTEM}/transactor.properties"
        ],
    }
    assert unscoped_resources(other_account, DDB_SYSTEM) == other_account["Resource"]
    star = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}
    assert unscoped_resources(star, DDB_SYSTEM) == ["*"]
    # Every instance of the account, or those of another system: both caught.
    instances = f"arn:aws:ec2:*:{ACCOUNT}:instance/*"
    any_instance = {"Effect": "Allow", "Action": ["ec2:CreateTags"], "Resource": [instances]}
    assert unscoped_resources(any_instance, DDB_SYSTEM) == [instances]
    other_system = {
        **any_instance,
        "Condition": {"StringEquals": {"aws:ResourceTag/datomic:system": SQL_SYSTEM}},
    }
    assert unscoped_resources(other_system, DDB_SYSTEM) == [instances]
    assert unscoped_resources(other_system, SQL_SYSTEM) == []


# ------------------------------------------------------------------------------------ buckets


def refuses_non_tls(policy: dict[str, Any], bucket: str) -> bool:
    """A Deny for everyone, on every S3 action, over the bucket and its objects, when the request
    is not over TLS."""
    arns = {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    for s in policy["Statement"]:
        principal = s.get("Principal")
        if (
            s.get("Effect") == "Deny"
            and principal in ("*", {"AWS": "*"})
            and set(as_list(s.get("Action", []))) & {"s3:*", "*"}
            and arns <= set(as_list(s.get("Resource", [])))
            and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ):
            return True
    return False


def bucket_findings(s3: Any, bucket: str) -> list[str]:
    findings = []
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    for flag in (
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ):
        if pab.get(flag) is not True:
            findings.append(f"{flag} off")
    for grant in s3.get_bucket_acl(Bucket=bucket)["Grants"]:
        uri = grant["Grantee"].get("URI", "")
        if uri.endswith(("/AllUsers", "/AuthenticatedUsers")):
            findings.append(f"public ACL grant {uri}")
    if not refuses_non_tls(json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]), bucket):
        findings.append("non-TLS access not refused")
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    if not rules:
        findings.append("not encrypted")
    return findings


@pytest.mark.usefixtures("patched_moto")
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_buckets_refuse_public_and_non_tls_access(
    ctx: AwsContext, tmp_path: Path, region: str
) -> None:
    path = transactor_with_secrets(tmp_path)
    if region != "us-east-1":
        text = path.read_text(encoding="latin-1")
        path.write_text(
            text.replace("aws-dynamodb-region=us-east-1", f"aws-dynamodb-region={region}"),
            encoding="latin-1",
        )
    ensure_transactor(ctx, path)
    s3 = boto3.client("s3", region_name=region)
    stack.ensure_templates_bucket(ctx.client("s3", region), ACCOUNT, region)
    buckets = {
        f"datomic-{DDB_SYSTEM}-logs-{ACCOUNT}-{region}",
        f"datomic-aws-templates-{ACCOUNT}-{region}",
    }
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == buckets
    assert {b: bucket_findings(s3, b) for b in sorted(buckets)} == {b: [] for b in sorted(buckets)}


def test_the_bucket_check_catches_a_weakened_bucket(mocked_aws: None) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="weak")
    s3.put_public_access_block(
        Bucket="weak",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
    )
    allow_http = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "arn:aws:s3:::weak/*",  # the objects only: the bucket itself is open
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket="weak", Policy=json.dumps(allow_http))
    s3.put_bucket_encryption(
        Bucket="weak",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    assert bucket_findings(s3, "weak") == ["BlockPublicPolicy off", "non-TLS access not refused"]


# ------------------------------------------------------------- template, user data, the stack

_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]{16,}$")


def decoded_strings(value: Any) -> list[str]:
    """Every string in a JSON value, and the base64 decoding of those that are base64."""
    out: list[str] = []
    if isinstance(value, dict):
        for v in value.values():
            out.extend(decoded_strings(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(decoded_strings(v))
    elif isinstance(value, str):
        out.append(value)
        if _BASE64.match(value):
            with contextlib.suppress(binascii.Error, ValueError):
                out.append(base64.b64decode(value, validate=False).decode("utf-8", "replace"))
    return out


@pytest.mark.usefixtures("patched_moto")
def test_secrets_reach_the_encrypted_parameter_and_nothing_else(
    ctx: AwsContext, tmp_path: Path
) -> None:
    from datomic_aws.stack import Waiting

    folder = tmp_path / "env"
    folder.mkdir()
    transactor_with_secrets(folder)
    shutil.copyfile(SAMPLES / "cf.properties", folder / "cf.properties")
    apply_dir(ctx, folder, waiting=Waiting(poll_interval=0.01, sleep=lambda _s: None))

    # The secrets did reach the tool: they are in the stored configuration, encrypted.
    ssm = boto3.client("ssm", region_name="us-east-1")
    parameter = ssm.get_parameter(
        Name=f"/datomic/{DDB_SYSTEM}/transactor.properties", WithDecryption=True
    )["Parameter"]
    assert parameter["Type"] == "SecureString"
    assert found_secrets(parameter["Value"]) == [LICENSE, MEMCACHED_PW]

    # Not in the template, raw or decoded, nor in any file but the operator's own.
    template_text = (folder / "cf.json").read_text(encoding="utf-8")
    template = json.loads(template_text)
    assert found_secrets(template_text) == []
    assert found_secrets("\n".join(decoded_strings(template))) == []
    assert not [r for r in template["Resources"].values() if r["Type"].startswith("AWS::IAM::")]

    # Not in what AWS holds outside the parameter: the deployed template, the stack's parameters
    # and outputs, the launch template's user data (decoded), the instances' user data.
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    name = f"datomic-{DDB_SYSTEM}"
    deployed = cfn.get_template(StackName=name)["TemplateBody"]
    stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    versions = [
        v
        for lt in ec2.describe_launch_templates()["LaunchTemplates"]
        for v in ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])[
            "LaunchTemplateVersions"
        ]
    ]
    user_data = [v["LaunchTemplateData"].get("UserData", "") for v in versions]
    assert user_data and all(user_data), "the launch template carries the boot script"
    boot = [base64.b64decode(u).decode("utf-8") for u in user_data]
    assert all("#!" in b for b in boot), boot[0][:200]
    instances = [
        i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    ]
    instance_data = [
        ec2.describe_instance_attribute(InstanceId=i, Attribute="userData")["UserData"].get(
            "Value", ""
        )
        for i in instances
    ]
    held = json.dumps([deployed, stacks, versions, boot, instance_data], default=str)
    assert found_secrets("\n".join([held, *decoded_strings(json.loads(held))])) == []
