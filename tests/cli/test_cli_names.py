"""Two systems side by side through the real process on a moto server: names that cannot collide
(`prod.a` and `prod_a`) and a security group several systems name (`aws-security-group=datomic`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from datomic_aws import names

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
REGION = "us-east-1"
FAST = ("--poll-interval", "0.1")


def _edit(path: Path, **edits: str) -> None:
    text = path.read_text(encoding="latin-1")
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text, encoding="latin-1")


def _value(path: Path, key: str) -> str:
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{key} not in {path}")


def _folder(root: Path, system: str, **cf_edits: str) -> Path:
    folder = root / system
    folder.mkdir()
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, folder / name)
    _edit(
        folder / "transactor.properties",
        **{
            "aws-dynamodb-table=my-datomic-system": f"aws-dynamodb-table={system}",
            "# aws-s3-log-bucket-id=": "aws-s3-log-bucket-id=",
        },
    )
    if cf_edits:
        _edit(folder / "cf.properties", **cf_edits)
    return folder


def _ok(run: Any) -> Any:
    assert run.code == 0, (run.stdout, run.stderr)
    return run


def _instances(boto: Any, group: str) -> list[str]:
    (found,) = boto("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
        "AutoScalingGroups"
    ]
    return sorted(i["InstanceId"] for i in found["Instances"])


def test_prod_dot_a_and_prod_underscore_a_keep_their_own_stacks_and_transactors(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    dotted, underscored = _folder(tmp_path, "prod.a"), _folder(tmp_path, "prod_a")
    first = _ok(cli("--output", "json", "apply", str(dotted), *FAST)).json
    stack_a, group_a = names.stack("prod.a"), names.autoscaling_group("prod.a")
    assert first["stack"] == stack_a
    before = _instances(boto, group_a)
    assert len(before) == 1
    cfn = boto("cloudformation")
    tags_a = cfn.describe_stacks(StackName=stack_a)["Stacks"][0]["Tags"]

    second = _ok(cli("--output", "json", "apply", str(underscored), *FAST)).json
    stack_b, group_b = names.stack("prod_a"), names.autoscaling_group("prod_a")
    assert second["stack"] == stack_b
    assert stack_a != stack_b
    assert {stack_a, stack_b} <= {
        s["StackName"]
        for s in cfn.describe_stacks()["Stacks"]
        if s["StackStatus"].endswith("COMPLETE")
    }
    # The second apply created its own everything; it touched nothing of the first.
    assert not any(c["resource"].endswith(stack_a) for c in second["changes"]), second["changes"]
    assert _instances(boto, group_a) == before
    assert len(_instances(boto, group_b)) == 1
    assert cfn.describe_stacks(StackName=stack_a)["Stacks"][0]["Tags"] == tags_a
    ec2 = boto("ec2")
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances(InstanceIds=before)["Reservations"]
        for i in r["Instances"]
    }
    assert set(states.values()) == {"running"}
    # Each folder names its own resources, written back.
    for folder, system in ((dotted, "prod.a"), (underscored, "prod_a")):
        cf, transactor = folder / "cf.properties", folder / "transactor.properties"
        assert _value(cf, "aws-stack-name") == names.stack(system)
        assert _value(transactor, "aws-transactor-role") == names.transactor_role(system)
        assert _value(transactor, "aws-s3-log-bucket-id") == names.log_bucket(
            system, "123456789012", REGION
        )

    # Both converge: a rerun of each is a no-op with no write.
    for folder in (dotted, underscored):
        again = _ok(cli("--output", "json", "apply", str(folder), *FAST)).json
        assert again["changed"] is False, again["changes"]
        assert again["aws_calls"]["mutating"] == 0, again["aws_calls"]
    assert _instances(boto, group_a) == before


def _rules(ec2: Any, group_id: str) -> set[tuple[int, str]]:
    (group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    out: set[tuple[int, str]] = set()
    for perm in group["IpPermissions"]:
        port = perm.get("FromPort", -1)
        out |= {(port, r["CidrIp"]) for r in perm.get("IpRanges", [])}
        out |= {(port, p["GroupId"]) for p in perm.get("UserIdGroupPairs", [])}
    return out


def test_two_systems_naming_the_datomic_group_both_converge_and_no_rule_is_revoked(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    named = {"aws-security-group=\n": "aws-security-group=datomic\n"}
    orders = _folder(
        tmp_path,
        "orders",
        **named,
        **{"aws-ingress-cidrs=172.31.0.0/16": "aws-ingress-cidrs=10.1.0.0/16"},
    )
    billing = _folder(
        tmp_path,
        "billing",
        **named,
        **{
            "aws-ingress-cidrs=172.31.0.0/16": "aws-ingress-cidrs=10.2.0.0/16",
            "aws-ingress-groups=": "aws-ingress-groups=datomic",
        },
    )
    for folder in (orders, billing):
        _ok(cli("ensure-transactor", str(folder / "transactor.properties")))
        _ok(cli("--output", "json", "ensure-cf", str(folder / "cf.properties")))
    group_id = _value(orders / "cf.properties", "aws-security-group-id")
    assert _value(billing / "cf.properties", "aws-security-group-id") == group_id
    ec2 = boto("ec2")
    (group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert group["GroupName"] == "datomic"
    assert names.TAG_SYSTEM not in {t["Key"] for t in group.get("Tags", [])}
    # An operator's rule on another port, for good measure.
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "1.2.3.4/32"}],
            }
        ],
    )
    everything = {
        (4334, "10.1.0.0/16"),
        (4334, "10.2.0.0/16"),
        (4334, group_id),
        (22, "1.2.3.4/32"),
    }
    assert _rules(ec2, group_id) == everything

    # Each system's rerun converges with no write, whichever runs first.
    for folder in (orders, billing, orders):
        doc = _ok(cli("--output", "json", "ensure-cf", str(folder / "cf.properties"))).json
        assert doc["changed"] is False, doc["changes"]
        assert doc["aws_calls"]["mutating"] == 0, doc["aws_calls"]
    # A system dropping its sources from the file revokes nothing from the shared group.
    _edit(orders / "cf.properties", **{"aws-ingress-cidrs=10.1.0.0/16": "aws-ingress-cidrs="})
    doc = _ok(cli("--output", "json", "ensure-cf", str(orders / "cf.properties"))).json
    assert "ec2:RevokeSecurityGroupIngress" not in doc["aws_calls"]["by_operation"]
    assert doc["aws_calls"]["mutating"] == 0, doc["aws_calls"]
    (change,) = [c for c in doc["changes"] if c["resource"].startswith("ec2 security group")]
    assert any("kept tcp/4334 from 10.1.0.0/16" in d for d in change["details"]), change
    assert _rules(ec2, group_id) == everything
