"""The stack's observability grants on the transactor role (template_observe.py: log shipping,
Session Manager) are the tool's: ensure-transactor neither reports them as access drift nor
removes them, status does not list them, and the run stays a no-op (in-process moto)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from datomic_aws import names
from datomic_aws.app.ensure_transactor import ensure_transactor
from datomic_aws.aws import AwsContext
from datomic_aws.resources import iam_drift

if TYPE_CHECKING:
    from conftest import CallRecorder

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
SYSTEM = "my-datomic-system"  # aws-dynamodb-table of the ddb sample
ROLE = names.transactor_role(SYSTEM)
GRANT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}],
}


def test_the_stack_grants_are_neither_drift_nor_removed(
    ctx: AwsContext, tmp_path: Path, recorder: CallRecorder
) -> None:
    shutil.copyfile(SAMPLES / "transactor.properties", tmp_path / "transactor.properties")
    transactor = tmp_path / "transactor.properties"
    ensure_transactor(ctx, transactor, dry_run=False, adopt=False)
    iam = boto3.client("iam", region_name="us-east-1")
    stack_grants = [names.logs_shipping_policy(SYSTEM), names.session_manager_policy(SYSTEM)]
    for name in stack_grants:  # what CloudFormation's AWS::IAM::Policy writes
        iam.put_role_policy(RoleName=ROLE, PolicyName=name, PolicyDocument=json.dumps(GRANT))

    recorder.operations.clear()
    result = ensure_transactor(ctx, transactor, dry_run=False, adopt=False)
    assert [w for w in result.warnings if w.startswith("iam role ")] == []
    assert not result.pending
    assert recorder.mutating == []
    assert set(stack_grants) <= set(iam.list_role_policies(RoleName=ROLE)["PolicyNames"])
    assert iam_drift.read_foreign_policies(iam, ROLE, SYSTEM) == []


def test_the_grant_names_are_not_the_log_buckets() -> None:
    """ensure-transactor removes a `...-transactor-logs` policy the file no longer asks for (the
    log bucket's): the stack's log grant must never look like one."""
    from datomic_aws import policies

    for name in (names.logs_shipping_policy(SYSTEM), names.session_manager_policy(SYSTEM)):
        assert not policies.is_managed_policy_name(name, SYSTEM)
        assert iam_drift.written_by_us(name, SYSTEM)
