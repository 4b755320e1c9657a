"""Issue 11 Deliver 7 through the real process, against a moto server: an attached admin policy
and an extra inline policy on the transactor role are reported by apply (every run) and by
status, as warnings naming them; nothing is detached or deleted; tcp/22 opened by hand on the
tool-owned group is revoked by the next apply, and the run after is a no-op.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
REGION = "us-east-1"
SYSTEM = "my-datomic-system"
STACK = f"datomic-{SYSTEM}"
ROLE = f"datomic-{SYSTEM}-transactor"
STAR = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
FAST = ("--poll-interval", "0.1")


def _ok(run: Any) -> Any:
    assert run.code == 0, (run.stdout, run.stderr)
    return run


def _value(path: Path, key: str) -> str:
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise AssertionError(key)


def test_apply_and_status_report_drift_and_apply_revokes_ssh(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "env"
    folder.mkdir()
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, folder / name)
    _ok(cli("apply", str(folder), *FAST))

    iam, ec2 = boto("iam"), boto("ec2")
    admin = iam.create_policy(PolicyName="admin-everything", PolicyDocument=json.dumps(STAR))
    admin_arn = admin["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=ROLE, PolicyArn=admin_arn)
    iam.put_role_policy(RoleName=ROLE, PolicyName="break-glass", PolicyDocument=json.dumps(STAR))
    group_id = _value(folder / "cf.properties", "aws-security-group-id")
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )

    doc = _ok(cli("--output", "json", "apply", str(folder), *FAST)).json
    warnings = [w for w in doc["warnings"] if w.startswith(f"iam role {ROLE}:")]
    assert len(warnings) == 2, doc["warnings"]
    assert admin_arn in warnings[0] and "break-glass" in warnings[1]
    revokes = {k: v for k, v in doc["aws_calls"]["by_operation"].items() if "Revoke" in k}
    assert revokes == {"ec2:RevokeSecurityGroupIngress": 1}
    (group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert [p["FromPort"] for p in group["IpPermissions"]] == [4334]

    again = _ok(cli("apply", str(folder), *FAST))
    assert "No changes" in again.stdout, again.stdout
    assert f"Warning: iam role {ROLE}: managed policy {admin_arn} is attached" in again.stderr
    assert f"Warning: iam role {ROLE}: inline policy break-glass was not written" in again.stderr
    again_doc = _ok(cli("--output", "json", "apply", str(folder), *FAST)).json
    assert again_doc["aws_calls"]["mutating"] == 0

    status = cli("status", REGION, STACK, "--template", str(folder / "cf.json"))
    assert status.code == 0, (status.stdout, status.stderr)
    assert admin_arn in status.stderr and "break-glass" in status.stderr
    status_doc = cli("--output", "json", "status", REGION, STACK).json
    assert [w for w in status_doc["warnings"] if w.startswith(f"iam role {ROLE}:")] == warnings
    assert status_doc["aws_calls"]["mutating"] == 0

    # Reported, never removed.
    attached = iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [admin_arn]
    assert "break-glass" in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]
