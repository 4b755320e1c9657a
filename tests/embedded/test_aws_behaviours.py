"""Real AWS behaviours moto hides (reference §11), shown with botocore's Stubber pinned to the
parameters AWS must receive and answering with AWS's real error codes and messages, or with moto
where it can produce them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from datomic_aws import names
from datomic_aws.app.ensure_cf import ensure_cf
from datomic_aws.aws import AwsContext, is_mutating
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import load_transactor
from datomic_aws.errors import AwsCallError, ExitCode, InvalidInput, NameTakenError, WaitTimeout
from datomic_aws.properties import PropertiesText
from datomic_aws.resources import dynamodb, s3
from datomic_aws.resources import ec2 as ec2r
from datomic_aws.stack import transport
from datomic_aws.stack.operations import _merged_tags
from datomic_aws.template import build_template

if TYPE_CHECKING:
    # Not imported from conftest at run time (see tests/embedded/test_ensure_cf.py).
    from conftest import CallRecorder

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"

REGION = "us-east-1"
ACCOUNT = "111122223333"


def _client(service: str) -> Any:
    # Typed loosely: the stubs' literal types get in a test's way.
    return boto3.client(service, region_name=REGION)


# --- 1. DynamoDB point-in-time recovery right after CreateTable --------------------------------

TABLE = "datomic-prod"
PITR_REFUSED = (
    "ContinuousBackupsUnavailableException",
    f"Backups are being enabled for the table: {TABLE}. Please retry later",
)


def _table_spec() -> dynamodb.TableSpec:
    return dynamodb.TableSpec(TABLE, "prod", "PAY_PER_REQUEST", None, None, 5, 5)


def _stub_create(stub: Stubber) -> None:
    stub.add_response(
        "create_table",
        {"TableDescription": {"TableName": TABLE, "TableStatus": "CREATING"}},
        {
            "TableName": TABLE,
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
            "DeletionProtectionEnabled": True,
            "Tags": [
                {"Key": "datomic:system", "Value": "prod"},
                {"Key": "managed-by", "Value": "datomic-aws"},
            ],
        },
    )
    stub.add_response(
        "describe_table",
        {"Table": {"TableName": TABLE, "TableStatus": "ACTIVE"}},
        {"TableName": TABLE},
    )


PITR_PARAMS = {
    "TableName": TABLE,
    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
}


def _refuse_pitr(stub: Stubber) -> None:
    code, message = PITR_REFUSED
    stub.add_client_error(
        "update_continuous_backups", code, message, 400, expected_params=PITR_PARAMS
    )


def test_pitr_refused_twice_after_create_table_is_retried_with_back_off() -> None:
    ddb = _client("dynamodb")
    sleeps: list[float] = []
    plan = dynamodb.plan_table(_table_spec(), None)
    with Stubber(ddb) as stub:
        _stub_create(stub)
        _refuse_pitr(stub)
        _refuse_pitr(stub)
        stub.add_response(
            "update_continuous_backups",
            {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED"}},
            PITR_PARAMS,
        )
        dynamodb.execute_table(ddb, plan, sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert sleeps == [2.0, 4.0]


def test_pitr_refused_past_the_bound_ends_in_a_clear_error() -> None:
    ddb = _client("dynamodb")
    sleeps: list[float] = []
    plan = dynamodb.plan_table(_table_spec(), None)
    with Stubber(ddb) as stub:
        _stub_create(stub)
        for _ in range(dynamodb.PITR_ATTEMPTS):
            _refuse_pitr(stub)
        with pytest.raises(WaitTimeout) as info:
            dynamodb.execute_table(ddb, plan, sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert len(sleeps) == dynamodb.PITR_ATTEMPTS - 1
    assert max(sleeps) == dynamodb.PITR_MAX_DELAY
    line = str(info.value)
    assert "ContinuousBackupsUnavailableException" in line
    assert f"dynamodb table {TABLE}" in line
    assert "rerun" in line


def test_other_pitr_errors_are_not_retried() -> None:
    ddb = _client("dynamodb")
    sleeps: list[float] = []
    plan = dynamodb.plan_table(_table_spec(), None)
    with Stubber(ddb) as stub:
        _stub_create(stub)
        stub.add_client_error(
            "update_continuous_backups",
            "AccessDeniedException",
            "User: arn:aws:iam::111122223333:user/op is not authorized to perform: "
            "dynamodb:UpdateContinuousBackups",
            400,
            expected_params=PITR_PARAMS,
        )
        with pytest.raises(AwsCallError):
            dynamodb.execute_table(ddb, plan, sleep=sleeps.append)
    assert sleeps == []


# --- 2. S3 with least privilege ------------------------------------------------------------------

LOG_BUCKET = "datomic-prod-logs-111122223333-us-east-1"
BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _log_bucket_spec() -> s3.BucketSpec:
    return s3.BucketSpec(LOG_BUCKET, REGION, "prod", False, "aws-s3-log-bucket-id", owner=ACCOUNT)


def test_head_object_403_without_list_bucket_leads_to_an_upload() -> None:
    client = _client("s3")
    bucket = names.templates_bucket(ACCOUNT, REGION)
    body = '{"Resources": {}}\n'
    key = transport.template_key("datomic-prod", body)
    with Stubber(client) as stub:
        # Reference §11: without s3:ListBucket a missing key answers 403 (HEAD has no body, so
        # botocore reports the status code as the error code).
        stub.add_client_error(
            "head_object",
            "403",
            "Forbidden",
            403,
            expected_params={"Bucket": bucket, "Key": key, "ExpectedBucketOwner": ACCOUNT},
        )
        stub.add_response(
            "put_object",
            {},
            {
                "Bucket": bucket,
                "Key": key,
                "Body": body.encode(),
                "ContentType": "application/json",
                "ExpectedBucketOwner": ACCOUNT,
            },
        )
        url = transport.upload_template(client, ACCOUNT, REGION, "datomic-prod", body)
        stub.assert_no_pending_responses()
    assert url == f"https://{bucket}.s3.{REGION}.amazonaws.com/{key}"


def test_head_object_403_then_put_refused_is_a_failure_not_a_success() -> None:
    # A 403 that meant "not yours" (ExpectedBucketOwner) or "no s3:PutObject" refuses the put too.
    client = _client("s3")
    bucket = names.templates_bucket(ACCOUNT, REGION)
    body = "{}\n"
    key = transport.template_key("datomic-prod", body)
    with Stubber(client) as stub:
        params = {"Bucket": bucket, "Key": key, "ExpectedBucketOwner": ACCOUNT}
        stub.add_client_error("head_object", "403", "Forbidden", 403, expected_params=params)
        stub.add_client_error(
            "put_object",
            "AccessDenied",
            "Access Denied",
            403,
            expected_params={**params, "Body": body.encode(), "ContentType": "application/json"},
        )
        with pytest.raises(ClientError):
            transport.upload_template(client, ACCOUNT, REGION, "datomic-prod", body)


def test_access_denied_on_bucket_tagging_has_its_own_message() -> None:
    client = _client("s3")
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_bucket_tagging",
            "AccessDenied",
            "Access Denied",
            403,
            expected_params={"Bucket": LOG_BUCKET, "ExpectedBucketOwner": ACCOUNT},
        )
        with pytest.raises(AwsCallError) as info:
            s3.ensure_bucket(client, _log_bucket_spec(), dry_run=False, adopt=False)
    err = info.value
    assert not isinstance(err, NameTakenError)
    assert "another AWS account" not in err.what
    assert err.code == "AccessDenied"
    assert err.where == f"s3 bucket {LOG_BUCKET}"
    assert "grant s3:GetBucketTagging" in err.hint
    assert "aws-s3-log-bucket-id" in err.hint


def test_every_call_on_a_converged_bucket_of_ours_passes_the_expected_owner() -> None:
    client = _client("s3")
    own = {"Bucket": LOG_BUCKET, "ExpectedBucketOwner": ACCOUNT}
    tags = [{"Key": k, "Value": v} for k, v in names.tags("prod").items()]
    with Stubber(client) as stub:
        stub.add_response("get_bucket_tagging", {"TagSet": tags}, own)
        stub.add_response(
            "get_public_access_block", {"PublicAccessBlockConfiguration": BLOCK_ALL}, own
        )
        stub.add_response(
            "get_bucket_encryption",
            {
                "ServerSideEncryptionConfiguration": {
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                }
            },
            own,
        )
        stub.add_response(
            "get_bucket_policy", {"Policy": json.dumps(s3.tls_only_policy(LOG_BUCKET, REGION))}, own
        )
        change = s3.ensure_bucket(client, _log_bucket_spec(), dry_run=False, adopt=False)
        stub.assert_no_pending_responses()
    assert not change.changed


def test_writes_on_a_bucket_of_ours_pass_the_expected_owner() -> None:
    client = _client("s3")
    own = {"Bucket": LOG_BUCKET, "ExpectedBucketOwner": ACCOUNT}
    with Stubber(client) as stub:
        stub.add_response("get_bucket_tagging", {"TagSet": []}, own)
        stub.add_response(
            "get_public_access_block", {"PublicAccessBlockConfiguration": BLOCK_ALL}, own
        )
        stub.add_client_error(
            "get_bucket_encryption",
            "ServerSideEncryptionConfigurationNotFoundError",
            "The server side encryption configuration was not found",
            404,
            expected_params=own,
        )
        stub.add_response(
            "get_bucket_policy", {"Policy": json.dumps(s3.tls_only_policy(LOG_BUCKET, REGION))}, own
        )
        tag_set = [{"Key": k, "Value": v} for k, v in sorted(names.tags("prod").items())]
        stub.add_response("put_bucket_tagging", {}, {**own, "Tagging": {"TagSet": tag_set}})
        stub.add_response(
            "put_bucket_encryption",
            {},
            {
                **own,
                "ServerSideEncryptionConfiguration": {
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                            "BucketKeyEnabled": True,
                        }
                    ]
                },
            },
        )
        change = s3.ensure_bucket(client, _log_bucket_spec(), dry_run=False, adopt=True)
        stub.assert_no_pending_responses()
    assert change.changed


# --- 3. Subnets filtered by the zones that offer the instance type -----------------------------


def test_instance_type_zones_are_read_by_availability_zone_in_one_call() -> None:
    client = _client("ec2")
    with Stubber(client) as stub:
        stub.add_response(
            "describe_instance_types",
            {
                "InstanceTypes": [
                    {
                        "InstanceType": "m7i.large",
                        "MemoryInfo": {"SizeInMiB": 8192},
                        "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
                        "CurrentGeneration": True,
                    }
                ]
            },
            {"InstanceTypes": ["m7i.large"]},
        )
        # Reference §11: LocationType=region says nothing about zones (use1-az3 lacks types).
        stub.add_response(
            "describe_instance_type_offerings",
            {
                "InstanceTypeOfferings": [
                    {
                        "InstanceType": "m7i.large",
                        "LocationType": "availability-zone",
                        "Location": z,
                    }
                    for z in ("us-east-1a", "us-east-1b")
                ]
            },
            {
                "LocationType": "availability-zone",
                "Filters": [{"Name": "instance-type", "Values": ["m7i.large"]}],
            },
        )
        info = ec2r.read_instance_type(client, "m7i.large")
        stub.assert_no_pending_responses()
    assert info is not None and info.offered
    assert info.zones == frozenset({"us-east-1a", "us-east-1b"})


def _cf_folder(tmp_path: Path, **values: str) -> Path:
    props = PropertiesText.load(SAMPLES / "cf.properties")
    cf = tmp_path / "cf.properties"
    cf.write_bytes(
        props.with_values(values).text.encode("latin-1") if values else props.text.encode("latin-1")
    )
    (tmp_path / "transactor.properties").write_text(
        "protocol=ddb\nhost=localhost\nport=4334\naws-dynamodb-table=orders\n"
        "aws-dynamodb-region=us-east-1\n"
    )
    return cf


def _zones(ctx: AwsContext, instance_type: str) -> tuple[list[ec2r.Subnet], frozenset[str]]:
    ec2 = ctx.client("ec2", REGION)
    vpc = ec2r.read_vpc(ec2, None)
    info = ec2r.read_instance_type(ec2, instance_type)
    assert vpc is not None and info is not None and info.zones is not None
    return ec2r.default_subnets(ec2, vpc.vpc_id), info.zones


def test_default_subnet_in_a_zone_without_the_type_is_left_out_and_said(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    # moto, like AWS, has no m7i.large (the sample's type) in us-east-1e.
    cf = _cf_folder(tmp_path)
    result = ensure_cf(ctx, cf, dry_run=False, adopt=False)
    # One read answers "offered in the region" and "in which zones": no call added.
    assert recorder.operations.count("ec2:DescribeInstanceTypeOfferings") == 1
    assert recorder.operations.count("ec2:DescribeSubnets") == 1
    defaults, zones = _zones(ctx, "m7i.large")
    missing = [s for s in defaults if s.availability_zone not in zones]
    assert [s.availability_zone for s in missing] == ["us-east-1e"]
    written = PropertiesText.load(cf).values()["aws-subnet-ids"].split(",")
    assert written == [s.subnet_id for s in defaults if s.availability_zone in zones]
    assert missing[0].subnet_id not in written
    assert result.warnings == [
        f"default subnet {missing[0].subnet_id} left out: m7i.large is not offered in us-east-1e"
    ]


def test_a_named_subnet_in_a_zone_without_the_type_exits_2_naming_it(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    defaults, zones = _zones(ctx, "m7i.large")
    bad = next(s for s in defaults if s.availability_zone not in zones)
    good = next(s for s in defaults if s.availability_zone in zones)
    cf = _cf_folder(tmp_path, **{"aws-subnet-ids": f"{good.subnet_id},{bad.subnet_id}"})
    before = cf.read_bytes()
    recorder.operations.clear()
    with pytest.raises(InvalidInput) as info:
        ensure_cf(ctx, cf, dry_run=False, adopt=False)
    assert info.value.exit_code == ExitCode.USAGE
    (problem,) = info.value.problems
    assert problem.key == "aws-subnet-ids"
    assert bad.subnet_id in problem.message and "us-east-1e" in problem.message
    assert good.subnet_id not in problem.message
    assert [op for op in recorder.operations if is_mutating(op.split(":", 1)[1])] == []
    assert cf.read_bytes() == before


# --- 4. The stack's tags and the group's own Tags never share a key ----------------------------

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "cf.json"


def _group_tag_keys(template: dict[str, Any]) -> set[str]:
    (group,) = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::AutoScaling::AutoScalingGroup"
    ]
    return {t["Key"] for t in group["Properties"].get("Tags", [])}


def _stack_tag_keys(system: str) -> set[str]:
    # What create_stack / update_stack put on the stack (CreateChangeSet Tags).
    return set(_merged_tags(system, None))


def test_golden_template_group_tags_share_no_key_with_the_stack_tags() -> None:
    template = json.loads(GOLDEN.read_text(encoding="utf-8"))
    system = "orders"  # the golden template's system (tests/unit/test_template.py)
    # Reference §11: CloudFormation applies stack tags to the group; a key in both made group
    # updates fail with "multiple tags with the same key".
    assert _group_tag_keys(template) == {"Name"}
    assert not _group_tag_keys(template) & _stack_tag_keys(system)


def test_generated_template_group_tags_share_no_key_with_the_stack_tags(tmp_path: Path) -> None:
    transactor = tmp_path / "transactor.properties"
    transactor.write_text(
        "protocol=ddb\nhost=localhost\nport=4334\naws-dynamodb-table=billing\n"
        "aws-dynamodb-region=eu-west-1\n"
        # What ensure-transactor appends (the digest key, the parameter version it wrote).
        f"datomic-aws-digest-secret={'7' * 64}\ndatomic-aws-config-version=1\n"
    )
    cf = tmp_path / "cf.properties"
    cf.write_text(
        "datomic-system=billing\naws-region=eu-west-1\naws-instance-type=m7g.large\n"
        "aws-autoscaling-group-size=2\njava-xmx=5734m\njava-opts=-XX:+UseG1GC\n"
        "datomic-version=1.0.7556\naws-vpc-id=vpc-0123456789abcdef0\n"
        "aws-subnet-ids=subnet-0123456789abcdef0\naws-security-group-id=sg-0123456789abcdef0\n"
        "aws-stack-name=datomic-billing\n"
    )
    template = build_template(load_transactor(transactor)[1], load_cf(cf)[1])
    keys = _group_tag_keys(template)
    assert keys and not keys & _stack_tag_keys("billing")
    # The instances still carry the ownership tags: the launch template tags them itself.
    data = next(
        r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::LaunchTemplate"
    )["Properties"]["LaunchTemplateData"]
    (instance,) = [s for s in data["TagSpecifications"] if s["ResourceType"] == "instance"]
    assert names.tags("billing").items() <= {t["Key"]: t["Value"] for t in instance["Tags"]}.items()
