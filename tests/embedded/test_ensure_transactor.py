"""ensure-transactor end to end, in-process against moto (issue 2's "Done when" list).

Each test runs `ensure_transactor` on a copy of a sample file and asserts on the AWS state moto
holds afterwards, on the AWS calls the run made (recorded by a botocore before-call hook) and on
the bytes of the file. Setup resources are created through plain boto3 clients, which the recorder
does not see, so the recorder holds exactly the product's calls.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber
from conftest import SAMPLES, CallRecorder, SimulatedCrash, new_ctx

from datomic_aws import errors, render
from datomic_aws.app.ensure_transactor import ensure_transactor
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action, Result
from datomic_aws.config.transactor import effective_config, load_transactor
from datomic_aws.properties import PropertiesText
from datomic_aws.resources.s3 import BucketSpec, ensure_bucket

ACCOUNT = "123456789012"  # moto's default account
SYSTEM = "my-datomic-system"  # aws-dynamodb-table of the ddb sample
SQL_SYSTEM = "my-sql-system"  # aws-cloudwatch-dimension-value of the sql sample
PASSWORD = "S3cr3t-pw-xyz"

TRANSACTOR_ROLE = f"datomic-{SYSTEM}-transactor"
PEER_ROLE = f"datomic-{SYSTEM}-peer"
PARAMETER = f"/datomic/{SYSTEM}/transactor.properties"
TAGS = {"datomic:system": SYSTEM, "managed-by": "datomic-aws"}
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def log_bucket(region: str = "us-east-1", system: str = SYSTEM) -> str:
    return f"datomic-{system}-logs-{ACCOUNT}-{region}"


def runtime_policy(system: str, region: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["ssm:GetParameter"],
                "Resource": [
                    f"arn:aws:ssm:{region}:{ACCOUNT}:parameter"
                    f"/datomic/{system}/transactor.properties"
                ],
            },
            {
                "Effect": "Allow",
                "Action": [
                    "autoscaling:CompleteLifecycleAction",
                    "autoscaling:RecordLifecycleActionHeartbeat",
                    "autoscaling:SetInstanceHealth",
                ],
                "Resource": [
                    f"arn:aws:autoscaling:*:{ACCOUNT}:autoScalingGroup:*:"
                    f"autoScalingGroupName/datomic-{system}-transactors"
                ],
            },
            {
                "Effect": "Allow",
                "Action": ["ec2:CreateTags"],
                "Resource": [f"arn:aws:ec2:*:{ACCOUNT}:instance/*"],
                "Condition": {
                    "StringEquals": {"aws:ResourceTag/datomic:system": system},
                    "ForAllValues:StringEquals": {"aws:TagKeys": ["datomic:role"]},
                },
            },
        ],
    }


# --------------------------------------------------------------------------- helpers


def ddb_sample(
    tmp_path: Path,
    *,
    log_bucket_line: bool = True,
    metrics: bool = True,
    region: str = "us-east-1",
    replace: dict[str, str] | None = None,
    name: str = "transactor.properties",
) -> Path:
    """The ddb sample with the log bucket and metrics keys uncommented, as an operator would."""
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    edits = dict(replace or {})
    if log_bucket_line:
        edits["# aws-s3-log-bucket-id=\n"] = "aws-s3-log-bucket-id=\n"
    if metrics:
        edits["# aws-cloudwatch-region=us-east-1\n"] = "aws-cloudwatch-region=us-east-1\n"
    if region != "us-east-1":
        edits["aws-dynamodb-region=us-east-1\n"] = f"aws-dynamodb-region={region}\n"
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    return path


def sql_sample(tmp_path: Path) -> Path:
    text = (SAMPLES / "sql-transactor.properties").read_text(encoding="latin-1")
    assert text.count("sql-password=change-me\n") == 1
    # The password line is moved next to the role lines the run fills in, so it sits inside the
    # context of the file's unified diff: the rendered diff must mask it.
    text = text.replace("sql-password=change-me\n", "")
    text = text.replace(
        "aws-transactor-role=\n", f"sql-password={PASSWORD}\naws-transactor-role=\n"
    )
    path = tmp_path / "sql-transactor.properties"
    path.write_bytes(text.encode("latin-1"))
    return path


def diff_lines(result: Result) -> list[str]:
    """The -/+ lines of the file's unified diff, headers excluded (the digest's random key as
    KEY)."""
    return [
        without_key(line)
        for line in result.files[0].diff.splitlines()
        if line[:1] in "-+" and not line.startswith(("---", "+++"))
    ]


# What ensure-transactor appends on a first run (issue 11, issue 10): the digest's key, generated
# once at random, the SSM parameter version the configuration was stored as, and beside it the
# keyed digest of that configuration (create-cf-template refuses a configuration edited since).
PIN_ADDED = [
    "+datomic-aws-digest-secret=KEY",
    "+datomic-aws-config-version=1",
    "+datomic-aws-config-digest=DIGEST",
]


def without_key(text: str) -> str:
    """`text` with the digest's random key as KEY and the digest under it as DIGEST: two runs on
    two copies generate two keys."""
    text = re.sub(r"(datomic-aws-digest-secret=)[0-9a-f]{64}", r"\1KEY", text)
    return re.sub(r"(datomic-aws-config-digest=)[0-9a-f]{64}", r"\1DIGEST", text)


def role_policies(iam: Any, role: str) -> dict[str, dict[str, Any]]:
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    return {n: iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"] for n in names}


def all_actions(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for stmt in doc["Statement"]:
        action = stmt.get("Action", [])
        out.extend([action] if isinstance(action, str) else action)
    return out


def profiles(iam: Any) -> dict[str, list[str]]:
    return {
        p["InstanceProfileName"]: [r["RoleName"] for r in p["Roles"]]
        for p in iam.list_instance_profiles()["InstanceProfiles"]
    }


def aws_state(region: str = "us-east-1", clients: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything an ensure-transactor run can create, as comparable plain data."""
    if clients is None:
        clients = {s: boto3.client(s, region_name=region) for s in ("iam", "s3", "ssm", "dynamodb")}
    iam, s3, ssm, ddb = (clients[s] for s in ("iam", "s3", "ssm", "dynamodb"))
    roles = sorted(r["RoleName"] for r in iam.list_roles()["Roles"])
    params = {
        p["Name"]: ssm.get_parameter(Name=p["Name"], WithDecryption=True)["Parameter"]["Value"]
        for p in ssm.describe_parameters()["Parameters"]
    }
    return {
        "roles": roles,
        "policies": {r: role_policies(iam, r) for r in roles},
        "profiles": profiles(iam),
        "buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"]),
        "bucket_tags": {
            b["Name"]: s3.get_bucket_tagging(Bucket=b["Name"])["TagSet"]
            for b in s3.list_buckets()["Buckets"]
        },
        "parameters": params,
        "tables": ddb.list_tables()["TableNames"],
    }


# --------------------------------------------------------------------------- 1. fresh account


def test_fresh_account_creates_everything_and_fills_only_generated_lines(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    path = ddb_sample(tmp_path)
    before = path.read_bytes()

    result = ensure_transactor(ctx, path)

    assert [(c.resource, c.action) for c in result.changes] == [
        (f"dynamodb table {SYSTEM}", Action.CREATE),
        (f"s3 bucket {log_bucket()}", Action.CREATE),
        (f"iam role {TRANSACTOR_ROLE}", Action.CREATE),
        (f"iam role {PEER_ROLE}", Action.CREATE),
        (f"ssm parameter {PARAMETER}", Action.CREATE),
    ]

    # The table.
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = ddb.describe_table(TableName=SYSTEM)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert not table.get("GlobalSecondaryIndexes") and not table.get("LocalSecondaryIndexes")
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 100
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 50
    assert table["DeletionProtectionEnabled"] is True
    backups = ddb.describe_continuous_backups(TableName=SYSTEM)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    tags = ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == TAGS

    # The roles, their policies and instance profiles.
    iam = boto3.client("iam", region_name="us-east-1")
    assert sorted(r["RoleName"] for r in iam.list_roles()["Roles"]) == sorted(
        [TRANSACTOR_ROLE, PEER_ROLE]
    )
    for role in (TRANSACTOR_ROLE, PEER_ROLE):
        got = iam.get_role(RoleName=role)["Role"]
        assert got["AssumeRolePolicyDocument"] == TRUST
        assert {t["Key"]: t["Value"] for t in got["Tags"]} == TAGS
    transactor = role_policies(iam, TRANSACTOR_ROLE)
    peer = role_policies(iam, PEER_ROLE)
    assert sorted(transactor) == sorted(
        [
            f"{SYSTEM}-transactor",
            f"{log_bucket()}-transactor-logs",
            "transactor-metrics",
            f"datomic-{SYSTEM}-transactor-runtime",
        ]
    )
    assert sorted(peer) == [f"{SYSTEM}-peer"]
    table_arn = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{SYSTEM}"
    for doc in [*transactor.values(), *peer.values()]:
        for action in all_actions(doc):
            assert "*" not in action, action
    assert transactor[f"datomic-{SYSTEM}-transactor-runtime"] == runtime_policy(SYSTEM, "us-east-1")
    assert transactor[f"{SYSTEM}-transactor"]["Statement"][0]["Resource"] == [table_arn]
    assert "dynamodb:PutItem" in all_actions(transactor[f"{SYSTEM}-transactor"])
    assert sorted(all_actions(peer[f"{SYSTEM}-peer"])) == [
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    ]
    assert peer[f"{SYSTEM}-peer"]["Statement"][0]["Resource"] == [table_arn]
    assert all_actions(transactor[f"{log_bucket()}-transactor-logs"]) == ["s3:PutObject"]
    assert all_actions(transactor["transactor-metrics"]) == ["cloudwatch:PutMetricData"]
    assert profiles(iam) == {TRANSACTOR_ROLE: [TRANSACTOR_ROLE], PEER_ROLE: [PEER_ROLE]}

    # The log bucket.
    assert_hardened_bucket(log_bucket(), "us-east-1")

    # The parameter holds the effective configuration of the file as rewritten.
    ssm = boto3.client("ssm", region_name="us-east-1")
    param = ssm.get_parameter(Name=PARAMETER, WithDecryption=True)["Parameter"]
    assert param["Type"] == "SecureString"
    assert param["Value"] == effective_config(PropertiesText.load(path).values())
    assert "host=" not in param["Value"]
    assert f"aws-transactor-role={TRANSACTOR_ROLE}\n" in param["Value"]
    ptags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=PARAMETER)["TagList"]
    assert {t["Key"]: t["Value"] for t in ptags} == TAGS

    # The file: only the three generated lines changed, in place.
    assert diff_lines(result) == [
        "-aws-transactor-role=",
        "-aws-peer-role=",
        f"+aws-transactor-role={TRANSACTOR_ROLE}",
        f"+aws-peer-role={PEER_ROLE}",
        "-aws-s3-log-bucket-id=",
        f"+aws-s3-log-bucket-id={log_bucket()}",
        *PIN_ADDED,
    ]
    expected = (
        before.decode("latin-1")
        .replace("aws-transactor-role=\n", f"aws-transactor-role={TRANSACTOR_ROLE}\n")
        .replace("aws-peer-role=\n", f"aws-peer-role={PEER_ROLE}\n")
        .replace("aws-s3-log-bucket-id=\n", f"aws-s3-log-bucket-id={log_bucket()}\n")
    ) + "".join(line[1:] + "\n" for line in PIN_ADDED)
    assert without_key(path.read_bytes().decode("latin-1")) == expected
    # The key is in the file and in the stored value (the instance checks the digest with it).
    key = PropertiesText.load(path).values()["datomic-aws-digest-secret"]
    assert f"datomic-aws-digest-secret={key}\n" in param["Value"]
    assert result.files[0].written is True
    load_transactor(path)  # still valid


def assert_hardened_bucket(bucket: str, region: str, system: str = SYSTEM) -> None:
    s3 = boto3.client("s3", region_name=region)
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert pab == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert [(s["Effect"], s["Condition"]) for s in policy["Statement"]] == [
        ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    ]
    assert sorted(policy["Statement"][0]["Resource"]) == [
        f"arn:aws:s3:::{bucket}",
        f"arn:aws:s3:::{bucket}/*",
    ]
    tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {**TAGS, "datomic:system": system}
    location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    assert location == (None if region == "us-east-1" else region)


def test_fresh_account_in_eu_west_1_creates_the_bucket_there(
    ctx: AwsContext, tmp_path: Path
) -> None:
    path = ddb_sample(tmp_path, region="eu-west-1")

    result = ensure_transactor(ctx, path)

    bucket = log_bucket("eu-west-1")
    assert f"s3 bucket {bucket}" in [c.resource for c in result.changes]
    assert_hardened_bucket(bucket, "eu-west-1")
    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    assert ddb.list_tables()["TableNames"] == [SYSTEM]
    assert boto3.client("dynamodb", region_name="us-east-1").list_tables()["TableNames"] == []
    iam = boto3.client("iam", region_name="eu-west-1")
    runtime = role_policies(iam, TRANSACTOR_ROLE)[f"datomic-{SYSTEM}-transactor-runtime"]
    assert runtime == runtime_policy(SYSTEM, "eu-west-1")
    ssm = boto3.client("ssm", region_name="eu-west-1")
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Type"] == "SecureString"
    assert f"+aws-s3-log-bucket-id={bucket}" in diff_lines(result)


# --------------------------------------------------------------------------- 2. second run


def test_second_run_changes_nothing_and_does_not_touch_the_file(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    path = ddb_sample(tmp_path)
    first = ensure_transactor(ctx, path)
    assert first.pending and recorder.mutating
    content = path.read_bytes()
    # Make a rewrite detectable even on a file system with coarse timestamps.
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    stat = os.stat(path)

    second_recorder = CallRecorder()
    second = ensure_transactor(new_ctx(second_recorder), path)

    assert [c.action for c in second.changes] == [Action.NOOP] * 5
    assert second.pending is False
    assert second_recorder.operations  # it did read
    assert second_recorder.mutating == []
    assert path.read_bytes() == content
    after = os.stat(path)
    assert (after.st_mtime_ns, after.st_ino) == (stat.st_mtime_ns, stat.st_ino)
    assert second.files[0].diff == "" and second.files[0].written is False
    assert render.summary(second) == "No changes. 5 unchanged."


# --------------------------------------------------------------------------- 3. crash convergence


def test_a_crash_at_any_write_then_a_rerun_converges_to_the_same_state(
    tmp_path: Path, patched_moto: None
) -> None:
    from moto import mock_aws

    # A crash kills the process, but an AwsContext holds no resource state (only clients and the
    # account id, the same in every moto account), so one context serves every run here and its
    # clients are built once: ~20 fresh sessions would cost most of this test's time in botocore
    # model loading. Each run gets its own recorder through this indirection.
    current = [CallRecorder()]

    def record(**kwargs: Any) -> None:
        current[0](**kwargs)

    ctx = AwsContext(hooks=[("before-call.*.*", record)])
    readers = {
        s: boto3.client(s, region_name="us-east-1") for s in ("iam", "s3", "ssm", "dynamodb")
    }

    def run(path: Path, fail_at: int | None = None) -> tuple[Result, CallRecorder]:
        current[0] = CallRecorder()
        current[0].fail_at = fail_at
        return ensure_transactor(ctx, path), current[0]

    with mock_aws():
        clean_dir = tmp_path / "clean"
        clean_dir.mkdir()
        clean = ddb_sample(clean_dir)
        _, clean_recorder = run(clean)
        writes = clean_recorder.mutating
        wanted = aws_state(clients=readers)
    wanted["parameters"] = {n: without_key(v) for n, v in wanted["parameters"].items()}
    wanted_text = without_key(clean.read_text("latin-1"))
    assert len(writes) == 19, writes
    assert wanted["roles"] == sorted([TRANSACTOR_ROLE, PEER_ROLE])
    assert wanted["profiles"] == {TRANSACTOR_ROLE: [TRANSACTOR_ROLE], PEER_ROLE: [PEER_ROLE]}
    assert wanted["buckets"] == [log_bucket()]
    assert wanted["tables"] == [SYSTEM]
    assert list(wanted["parameters"]) == [PARAMETER]

    for k in range(1, len(writes) + 1):
        with mock_aws():
            folder = tmp_path / f"crash-{k}"
            folder.mkdir()
            path = ddb_sample(folder)
            with pytest.raises(SimulatedCrash) as crash:
                run(path, fail_at=k)
            assert str(crash.value) == writes[k - 1]
            load_transactor(path)  # the file is valid after the crash

            run(path)
            load_transactor(path)
            # The same state but for the digest's key: each run that writes the file first
            # generates its own (random, issue 11).
            got = aws_state(clients=readers)
            got["parameters"] = {n: without_key(v) for n, v in got["parameters"].items()}
            assert got == wanted, f"crash at write {k}: {writes[k - 1]}"
            assert without_key(path.read_text("latin-1")) == wanted_text, f"crash at write {k}"

            # And the state is stable: a third run is a no-op.
            third, third_recorder = run(path)
            assert third.pending is False, f"crash at write {k}: {writes[k - 1]}"
            assert third_recorder.mutating == [], f"crash at write {k}: {writes[k - 1]}"


# --------------------------------------------------------------------------- 4. Datomic-era file


def test_a_file_written_by_datomics_tool_converges_without_new_roles(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    path = ddb_sample(
        tmp_path,
        replace={
            "aws-transactor-role=\n": "aws-transactor-role=datomic-aws-transactor\n",
            "aws-peer-role=\n": "aws-peer-role=datomic-aws-peer\n",
            "# aws-s3-log-bucket-id=\n": "aws-s3-log-bucket-id=datomic-logs-fixed-name\n",
        },
        log_bucket_line=False,
    )
    before = path.read_bytes()
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName=SYSTEM,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": 10, "WriteCapacityUnits": 10},
    )
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_role(RoleName="datomic-aws-transactor", AssumeRolePolicyDocument=json.dumps(TRUST))

    result = ensure_transactor(ctx, path)

    assert [(c.resource, c.action) for c in result.changes] == [
        (f"dynamodb table {SYSTEM}", Action.UPDATE),
        ("s3 bucket datomic-logs-fixed-name", Action.CREATE),
        ("iam role datomic-aws-transactor", Action.UPDATE),
        ("iam role datomic-aws-peer", Action.CREATE),
        (f"ssm parameter {PARAMETER}", Action.CREATE),
    ]
    assert result.changes[0].details == ("point-in-time recovery: on", "deletion protection: on")
    assert sorted(r["RoleName"] for r in iam.list_roles()["Roles"]) == [
        "datomic-aws-peer",
        "datomic-aws-transactor",
    ]
    assert profiles(iam) == {
        "datomic-aws-transactor": ["datomic-aws-transactor"],
        "datomic-aws-peer": ["datomic-aws-peer"],
    }
    assert sorted(role_policies(iam, "datomic-aws-transactor")) == sorted(
        [
            f"{SYSTEM}-transactor",
            "datomic-logs-fixed-name-transactor-logs",
            "transactor-metrics",
            f"datomic-{SYSTEM}-transactor-runtime",
        ]
    )
    table = ddb.describe_table(TableName=SYSTEM)["Table"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 10
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 10
    assert table["DeletionProtectionEnabled"] is True
    backups = ddb.describe_continuous_backups(TableName=SYSTEM)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert "dynamodb:UpdateTable" in recorder.mutating
    assert_hardened_bucket("datomic-logs-fixed-name", "us-east-1")
    # Only the digest's key and the parameter version are added (issue 11, issue 10).
    assert diff_lines(result) == PIN_ADDED and result.files[0].written is True
    assert path.read_bytes().startswith(before)

    again = CallRecorder()
    assert ensure_transactor(new_ctx(again), path).pending is False
    assert again.mutating == []


# --------------------------------------------------------------------------- 5. ownership


def test_a_derived_role_without_our_tags_is_refused_then_adopted(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    path = ddb_sample(tmp_path)
    before = path.read_bytes()
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_role(RoleName=TRANSACTOR_ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))

    with pytest.raises(errors.OwnershipError) as refused:
        ensure_transactor(ctx, path)

    assert f"iam role {TRANSACTOR_ROLE}" in str(refused.value)
    assert "--adopt" in str(refused.value)
    assert recorder.mutating == []
    assert path.read_bytes() == before
    assert boto3.client("dynamodb", region_name="us-east-1").list_tables()["TableNames"] == []

    adopted = ensure_transactor(new_ctx(CallRecorder()), path, adopt=True)

    assert (f"iam role {TRANSACTOR_ROLE}", Action.UPDATE) in [
        (c.resource, c.action) for c in adopted.changes
    ]
    assert sorted(r["RoleName"] for r in iam.list_roles()["Roles"]) == sorted(
        [TRANSACTOR_ROLE, PEER_ROLE]
    )
    assert profiles(iam)[TRANSACTOR_ROLE] == [TRANSACTOR_ROLE]
    assert f"datomic-{SYSTEM}-transactor-runtime" in role_policies(iam, TRANSACTOR_ROLE)
    # The name is now written in the file: the operator's, no --adopt needed any more.
    assert f"aws-transactor-role={TRANSACTOR_ROLE}\n".encode() in path.read_bytes()
    again = CallRecorder()
    assert ensure_transactor(new_ctx(again), path).pending is False
    assert again.mutating == []


def test_a_derived_log_bucket_without_our_tags_is_refused(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    path = ddb_sample(tmp_path)
    before = path.read_bytes()
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=log_bucket())

    with pytest.raises(errors.OwnershipError) as refused:
        ensure_transactor(ctx, path)

    assert f"s3 bucket {log_bucket()}" in str(refused.value)
    assert "--adopt" in str(refused.value)
    assert recorder.mutating == []
    assert path.read_bytes() == before


def test_an_adopted_parameter_is_tagged_so_later_changes_need_no_adopt(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    path = ddb_sample(tmp_path)
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name=PARAMETER, Value="protocol=dev\n", Type="SecureString")

    with pytest.raises(errors.OwnershipError) as refused:
        ensure_transactor(ctx, path)
    assert f"ssm parameter {PARAMETER}" in str(refused.value)
    assert recorder.mutating == []

    ensure_transactor(new_ctx(CallRecorder()), path, adopt=True)
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=PARAMETER)["TagList"]
    assert {t["Key"]: t["Value"] for t in tags} == TAGS

    # A later configuration change is an ordinary update of a parameter we now own.
    text = path.read_text(encoding="latin-1").replace(
        "memory-index-max=512m", "memory-index-max=1g"
    )
    path.write_text(text, encoding="latin-1")
    later = ensure_transactor(new_ctx(CallRecorder()), path)
    assert [c.action for c in later.changes][-1] is Action.UPDATE
    value = ssm.get_parameter(Name=PARAMETER, WithDecryption=True)["Parameter"]["Value"]
    assert value == effective_config(PropertiesText.load(path).values())


def test_bucket_already_exists_in_another_account_is_a_clear_error() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    spec = BucketSpec("taken-name", "us-east-1", SYSTEM, True, "aws-s3-log-bucket-id")
    with Stubber(s3) as stub:
        stub.add_client_error(
            "get_bucket_tagging",
            "NoSuchBucket",
            http_status_code=404,
            expected_params={"Bucket": "taken-name"},
        )
        stub.add_client_error("create_bucket", "BucketAlreadyExists", http_status_code=409)
        with pytest.raises(errors.NameTakenError) as taken:
            ensure_bucket(s3, spec, dry_run=False, adopt=False)
        stub.assert_no_pending_responses()
    message = str(taken.value)
    assert message == (
        "Error: the name belongs to another AWS account (S3 bucket names are global) "
        "(s3 bucket taken-name): choose another value for aws-s3-log-bucket-id"
    )


def test_a_bucket_we_may_not_read_says_so_not_name_taken() -> None:
    # Issue 10: AccessDenied is also a bucket of ours without s3:GetBucketTagging (reference §11),
    # so it gets its own message naming both causes instead of "taken by another account".
    s3 = boto3.client("s3", region_name="us-east-1")
    spec = BucketSpec("taken-name", "us-east-1", SYSTEM, True, "aws-s3-log-bucket-id")
    with Stubber(s3) as stub:
        stub.add_client_error(
            "get_bucket_tagging", "AccessDenied", "Access Denied", http_status_code=403
        )
        with pytest.raises(errors.AwsCallError) as err:
            ensure_bucket(s3, spec, dry_run=False, adopt=False)
        stub.assert_no_pending_responses()
    assert not isinstance(err.value, errors.NameTakenError)
    assert "s3:GetBucketTagging" in err.value.hint
    assert "aws-s3-log-bucket-id" in err.value.hint


def test_a_table_with_the_wrong_key_schema_is_refused_and_left_alone(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    path = ddb_sample(tmp_path)
    before = path.read_bytes()
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName=SYSTEM,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )
    original = ddb.describe_table(TableName=SYSTEM)["Table"]

    with pytest.raises(errors.ResourceMismatch) as refused:
        ensure_transactor(ctx, path)

    assert f"dynamodb table {SYSTEM}" in str(refused.value)
    assert recorder.mutating == []
    assert ddb.describe_table(TableName=SYSTEM)["Table"] == original
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- 6. sql, dry run


def test_sql_protocol_has_no_table_and_keeps_the_password_in_ssm_only(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    path = sql_sample(tmp_path)

    result = ensure_transactor(ctx, path)

    role_t, role_p = f"datomic-{SQL_SYSTEM}-transactor", f"datomic-{SQL_SYSTEM}-peer"
    param = f"/datomic/{SQL_SYSTEM}/transactor.properties"
    assert boto3.client("dynamodb", region_name="us-east-1").list_tables()["TableNames"] == []
    assert not any(op.startswith("dynamodb:") for op in recorder.operations)
    iam = boto3.client("iam", region_name="us-east-1")
    assert sorted(r["RoleName"] for r in iam.list_roles()["Roles"]) == sorted([role_t, role_p])
    transactor = role_policies(iam, role_t)
    assert transactor == {
        f"datomic-{SQL_SYSTEM}-transactor-runtime": runtime_policy(SQL_SYSTEM, "us-east-1")
    }
    assert role_policies(iam, role_p) == {}
    assert profiles(iam) == {role_t: [role_t], role_p: [role_p]}

    value = boto3.client("ssm", region_name="us-east-1").get_parameter(
        Name=param, WithDecryption=True
    )["Parameter"]["Value"]
    assert f"sql-password={PASSWORD}\n" in value
    # The diff's context holds the password line; every rendering masks it.
    assert any(PASSWORD in line for line in result.files[0].diff.splitlines())
    text = render.to_text(result)
    as_json = render.to_json(result, ctx.call_log.as_dict())
    assert PASSWORD not in text and PASSWORD not in as_json
    assert "sql-password=********" in text
    assert PASSWORD not in render.warnings_text(result)
    for change in result.changes:
        assert PASSWORD not in change.resource
        assert all(PASSWORD not in d for d in change.details)
    for doc in transactor.values():
        assert PASSWORD not in json.dumps(doc)
    assert diff_lines(result) == [
        "-aws-transactor-role=",
        "-aws-peer-role=",
        f"+aws-transactor-role={role_t}",
        f"+aws-peer-role={role_p}",
        *PIN_ADDED,
    ]
    # The digest's key is a secret: every rendering masks it too.
    key = PropertiesText.load(path).values()["datomic-aws-digest-secret"]
    assert key not in text and key not in as_json


def test_sql_protocol_with_logs_and_metrics_gets_those_policies_only(
    ctx: AwsContext, tmp_path: Path
) -> None:
    path = sql_sample(tmp_path)
    text = path.read_text(encoding="latin-1")
    text = text.replace("# aws-s3-log-bucket-id=\n", "aws-s3-log-bucket-id=\n")
    text = text.replace("# aws-cloudwatch-region=us-east-1\n", "aws-cloudwatch-region=us-east-1\n")
    path.write_text(text, encoding="latin-1")

    ensure_transactor(ctx, path)

    iam = boto3.client("iam", region_name="us-east-1")
    bucket = log_bucket(system=SQL_SYSTEM)
    assert sorted(role_policies(iam, f"datomic-{SQL_SYSTEM}-transactor")) == sorted(
        [
            f"datomic-{SQL_SYSTEM}-transactor-runtime",
            f"{bucket}-transactor-logs",
            "transactor-metrics",
        ]
    )
    assert role_policies(iam, f"datomic-{SQL_SYSTEM}-peer") == {}
    assert_hardened_bucket(bucket, "us-east-1", SQL_SYSTEM)


def test_dry_run_on_a_fresh_account_plans_creates_and_writes_nothing(
    mocked_aws: None, tmp_path: Path
) -> None:
    path = ddb_sample(tmp_path)
    before = path.read_bytes()
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    stat = os.stat(path)
    recorder = CallRecorder()

    result = ensure_transactor(new_ctx(recorder, read_only=True), path, dry_run=True)

    assert result.dry_run is True
    assert [c.action for c in result.changes] == [Action.CREATE] * 5
    assert result.pending is True
    assert recorder.operations and recorder.mutating == []
    assert path.read_bytes() == before
    after = os.stat(path)
    assert (after.st_mtime_ns, after.st_ino) == (stat.st_mtime_ns, stat.st_ino)
    assert result.files[0].written is False
    assert diff_lines(result) == [
        "-aws-transactor-role=",
        "-aws-peer-role=",
        f"+aws-transactor-role={TRANSACTOR_ROLE}",
        f"+aws-peer-role={PEER_ROLE}",
        "-aws-s3-log-bucket-id=",
        f"+aws-s3-log-bucket-id={log_bucket()}",
        *PIN_ADDED,
    ]
    assert aws_state() == {
        "roles": [],
        "policies": {},
        "profiles": {},
        "buckets": [],
        "bucket_tags": {},
        "parameters": {},
        "tables": [],
    }
    assert "would be rewritten" in render.to_text(result)


# --------------------------------------------------------------------------- 7. ddb-local


DDB_LOCAL = "http://localhost:8000"


def test_ddb_local_creates_only_the_table(mocked_aws: None, tmp_path: Path) -> None:
    # moto in-process answers only AWS host names; this hook plays DynamoDB Local by handing a
    # request sent to the override endpoint to moto's DynamoDB, and records where it was sent.
    from moto.core.models import botocore_stubber

    sent_to: list[str] = []

    def dynamodb_local(request: Any, **_: Any) -> Any:
        sent_to.append(request.url)
        if request.url.startswith(DDB_LOCAL):
            request.url = "https://dynamodb.us-east-1.amazonaws.com" + request.url[len(DDB_LOCAL) :]
            return botocore_stubber("before-send", request)
        return None

    def local_ctx(recorder: CallRecorder) -> AwsContext:
        return AwsContext(
            hooks=[("before-call.*.*", recorder), ("before-send.dynamodb", dynamodb_local)]
        )

    recorder = CallRecorder()
    ctx = local_ctx(recorder)
    path = ddb_sample(
        tmp_path,
        log_bucket_line=False,
        metrics=False,
        replace={
            "protocol=ddb\n": "protocol=ddb-local\n",
            "aws-dynamodb-region=us-east-1\n": (
                "aws-dynamodb-region=us-east-1\n"
                "aws-dynamodb-override-endpoint=http://localhost:8000\n"
            ),
        },
    )
    before = path.read_bytes()

    result = ensure_transactor(ctx, path)

    assert [(c.resource, c.action) for c in result.changes] == [
        (f"dynamodb table {SYSTEM}", Action.CREATE)
    ]
    assert recorder.operations
    assert all(op.startswith("dynamodb:") for op in recorder.operations), recorder.operations
    assert recorder.mutating == ["dynamodb:CreateTable"]
    assert sent_to and all(url.startswith(f"{DDB_LOCAL}/") for url in sent_to), sent_to
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = ddb.describe_table(TableName=SYSTEM)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    iam = boto3.client("iam", region_name="us-east-1")
    assert iam.list_roles()["Roles"] == []
    assert path.read_bytes() == before

    again = CallRecorder()
    assert ensure_transactor(local_ctx(again), path).pending is False
    assert again.mutating == []


# --------------------------------------------------------------------------- 8. dry-run guard


def test_read_only_context_refuses_a_mutating_call(mocked_aws: None) -> None:
    recorder = CallRecorder()
    guarded = new_ctx(recorder, read_only=True)
    s3 = guarded.client("s3", "us-east-1")

    with pytest.raises(botocore.exceptions.ClientError, match="NoSuchBucket"):
        s3.get_bucket_tagging(Bucket="must-not-exist")  # a read goes through
    with pytest.raises(errors.DryRunViolation) as violation:
        s3.create_bucket(Bucket="must-not-exist")

    assert "s3:CreateBucket" in str(violation.value)
    assert boto3.client("s3", region_name="us-east-1").list_buckets()["Buckets"] == []
    assert guarded.call_log.calls["s3:CreateBucket"] == 1


# --------------------------------------------------------------------------- 9. policy removal


def test_removing_cloudwatch_region_deletes_only_the_metrics_policy(
    ctx: AwsContext, tmp_path: Path
) -> None:
    path = ddb_sample(tmp_path)
    ensure_transactor(ctx, path)
    iam = boto3.client("iam", region_name="us-east-1")
    foreign = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
    }
    iam.put_role_policy(
        RoleName=TRANSACTOR_ROLE, PolicyName="operator-extra", PolicyDocument=json.dumps(foreign)
    )
    iam.put_role_policy(
        RoleName=PEER_ROLE, PolicyName="operator-extra", PolicyDocument=json.dumps(foreign)
    )
    before = role_policies(iam, TRANSACTOR_ROLE)
    text = path.read_text(encoding="latin-1")
    assert text.count("aws-cloudwatch-region=us-east-1\n") == 1
    path.write_text(text.replace("aws-cloudwatch-region=us-east-1\n", ""), encoding="latin-1")

    planner = CallRecorder()
    plan = ensure_transactor(new_ctx(planner, read_only=True), path, dry_run=True)
    assert planner.mutating == []
    assert role_policies(iam, TRANSACTOR_ROLE) == before

    recorder = CallRecorder()
    result = ensure_transactor(new_ctx(recorder), path)

    assert [c.as_dict() for c in plan.changes] == [c.as_dict() for c in result.changes]
    changes = {c.resource: (c.action, c.details) for c in result.changes}
    assert changes[f"iam role {TRANSACTOR_ROLE}"] == (
        Action.UPDATE,
        ("inline policy transactor-metrics: remove (no longer in the file)",),
    )
    assert changes[f"iam role {PEER_ROLE}"] == (Action.NOOP, ())
    assert recorder.mutating == ["iam:DeleteRolePolicy", "ssm:PutParameter"]
    after = role_policies(iam, TRANSACTOR_ROLE)
    del before["transactor-metrics"]
    assert after == before
    assert "operator-extra" in role_policies(iam, PEER_ROLE)

    again = CallRecorder()
    assert ensure_transactor(new_ctx(again), path).pending is False
    assert again.mutating == []
