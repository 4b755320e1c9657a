"""The template's download: the release SHA-256 it pins, and with datomic-download-url=s3://...
the stack's s3:GetObject grant on exactly that object (partition of the stack's region), lint
clean, created with CAPABILITY_IAM, recognised by the access-drift warning as the tool's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from datomic_aws import names, policies, stack
from datomic_aws.aws import AwsContext
from datomic_aws.config.cf import load_cf
from datomic_aws.config.era import RELEASE_SHA256
from datomic_aws.config.transactor import load_transactor
from datomic_aws.resources import iam as iamr
from datomic_aws.resources import iam_drift
from datomic_aws.stack.document import as_template
from datomic_aws.template import build_template, dump_template
from datomic_aws.user_data import render_boot_script, user_data_sub
from tests.unit.moto_network import stack_prerequisites
from tests.unit.test_template import LINT_REGIONS, files

SHA = "0123456789abcdef" * 4
S3_URL = "s3://acme-releases/datomic/datomic-pro-1.0.7556.zip"
ROLE = names.transactor_role("orders")


def specs(tmp_path: Path, **cf: str) -> tuple[Any, Any]:
    t, c, _ = files(tmp_path, **cf)
    return load_transactor(t)[1], load_cf(c)[1]


def s3_template(tmp_path: Path, region: str = "us-east-1") -> dict[str, Any]:
    transactor, cf = specs(
        tmp_path, aws_region=region, datomic_download_url=S3_URL, datomic_zip_sha256=SHA
    )
    return build_template(transactor, cf)


def test_the_default_release_is_pinned_with_its_sha256(tmp_path: Path) -> None:
    transactor, cf = specs(tmp_path)
    digest = RELEASE_SHA256["1.0.7556"]
    assert f"readonly ZIP_SHA256='{digest}'\n" in render_boot_script(transactor, cf)
    assert f"readonly ZIP_SHA256='{digest}'\n" in user_data_sub(transactor, cf)


def test_the_files_sha256_wins_and_https_needs_no_grant(tmp_path: Path) -> None:
    url = "https://downloads.example.test/datomic-pro-1.0.7556.zip"
    transactor, cf = specs(tmp_path, datomic_download_url=url, datomic_zip_sha256=SHA)
    script = render_boot_script(transactor, cf)
    assert f"readonly ZIP_SHA256='{SHA}'\n" in script
    assert f"readonly DOWNLOAD_URL='{url}'\n" in script
    text = dump_template(build_template(transactor, cf))
    assert "AWS::IAM::" not in text and policies.DOWNLOAD_GRANT not in text
    # No capability asked for: the change set request stays what it was.
    assert as_template(text).capabilities() == []


@pytest.mark.parametrize(
    ("region", "partition"),
    [("us-east-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")],
)
def test_s3_grants_get_object_on_exactly_that_object(
    tmp_path: Path, region: str, partition: str
) -> None:
    template = s3_template(tmp_path, region)
    grant = template["Resources"][policies.DOWNLOAD_GRANT]
    assert grant == {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "datomic-orders-transactor-download",
            "Roles": [ROLE],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject"],
                        "Resource": [
                            f"arn:{partition}:s3:::acme-releases/datomic/datomic-pro-1.0.7556.zip"
                        ],
                    }
                ],
            },
        },
    }
    # A new launch template version only once the grant it reads with exists.
    assert template["Resources"]["LaunchTemplate"]["DependsOn"] == [policies.DOWNLOAD_GRANT]
    assert as_template(dump_template(template)).capabilities() == ["CAPABILITY_IAM"]


def test_the_s3_template_is_lint_clean(tmp_path: Path) -> None:
    from cfnlint.api import ManualArgs, lint

    matches = lint(dump_template(s3_template(tmp_path)), config=ManualArgs(regions=LINT_REGIONS))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_the_stacks_grant_is_not_foreign_and_never_ensure_transactors(tmp_path: Path) -> None:
    name = policies.download_policy_name("orders")
    assert iam_drift.written_by_us(name, "orders")
    # Not managed: ensure-transactor, which does not read cf.properties, never deletes it.
    assert not policies.is_managed_policy_name(name, "orders")
    spec = iamr.RoleSpec(
        ROLE,
        "orders",
        False,
        {},
        "d",
        managed=lambda n: policies.is_managed_policy_name(n, "orders"),
    )
    state = iamr.RoleState(tags={}, trust={}, policies={name: {}, "admin-by-hand": {}})
    warnings = iamr.role_warnings(spec, state)
    assert len(warnings) == 1 and "admin-by-hand" in warnings[0] and name not in warnings[0]


@pytest.fixture
def moto_fixed(patched_moto: None) -> None:
    """Templates bucket and change sets as on AWS (sandbox.moto_fixes)."""


def test_the_stack_is_created_with_capability_iam_and_writes_the_grant(
    ctx: AwsContext, tmp_path: Path, moto_fixed: None
) -> None:
    region = "us-east-1"
    net = stack_prerequisites(ctx, region, subnets=2, system="orders")
    vpc_id, subnets, group_id = net.vpc_id, net.subnets, net.group_id
    iam = ctx.client("iam", region)
    transactor, cf = specs(
        tmp_path,
        aws_vpc_id=vpc_id,
        aws_subnet_ids=",".join(subnets),
        aws_security_group_id=group_id,
        datomic_download_url=S3_URL,
        datomic_zip_sha256=SHA,
    )
    body = dump_template(build_template(transactor, cf))
    sent: list[dict[str, Any]] = []
    capture = AwsContext(
        hooks=[
            (
                "provide-client-params.cloudformation.CreateChangeSet",
                lambda params, **_: sent.append(dict(params)),
            )
        ]
    )
    waiting = stack.Waiting(timeout=30, poll_interval=0.01, sleep=lambda _: None)
    stack.create_stack(capture, region, "datomic-orders", body, system="orders", waiting=waiting)
    assert [p.get("Capabilities") for p in sent] == [["CAPABILITY_IAM"]]
    document = iam.get_role_policy(
        RoleName=ROLE, PolicyName=policies.download_policy_name("orders")
    )["PolicyDocument"]
    assert document["Statement"][0]["Resource"] == [
        "arn:aws:s3:::acme-releases/datomic/datomic-pro-1.0.7556.zip"
    ]


def test_ensure_transactor_keeps_the_stacks_grant_and_reports_nothing(
    ctx: AwsContext, tmp_path: Path, recorder: Any
) -> None:
    """The grant the stack wrote on the transactor role survives ensure-transactor (which does not
    read cf.properties) and is not reported as access drift; the rerun stays a no-op."""
    import shutil

    from datomic_aws.app.ensure_transactor import ensure_transactor

    samples = Path(__file__).resolve().parents[2] / "config_samples"
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(samples / name, tmp_path / name)
    transactor = tmp_path / "transactor.properties"
    ensure_transactor(ctx, transactor, dry_run=False, adopt=False)
    system = "my-datomic-system"  # aws-dynamodb-table of the ddb sample
    role, name = names.transactor_role(system), policies.download_policy_name(system)
    _, document = policies.download_policy(system, "acme-releases", "d/datomic.zip", "us-east-1")
    iam = ctx.client("iam", "us-east-1")
    iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))
    recorder.operations.clear()
    result = ensure_transactor(ctx, transactor, dry_run=False, adopt=False)
    assert [w for w in result.warnings if w.startswith("iam role ")] == []
    assert recorder.mutating == []
    assert name in iam.list_role_policies(RoleName=role)["PolicyNames"]
