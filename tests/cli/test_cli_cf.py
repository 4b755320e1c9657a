"""ensure-cf and create-cf-template through the real process, against a moto server."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from datomic_aws.config.cf import LATEST_DATOMIC_VERSION

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
SYSTEM = "my-datomic-system"
GROUP = f"datomic-{SYSTEM}-transactor"
UNREACHABLE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
)


def _edit(path: Path, **edits: str) -> None:
    text = path.read_text(encoding="latin-1")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="latin-1")


def _folder(tmp_path: Path, **cf_edits: str) -> tuple[Path, Path]:
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, tmp_path / name)
    cf = tmp_path / "cf.properties"
    _edit(cf, **cf_edits)
    return tmp_path / "transactor.properties", cf


def _ensured(cli: Any, tmp_path: Path, **cf_edits: str) -> tuple[Path, Path]:
    transactor, cf = _folder(tmp_path, **cf_edits)
    run = cli("ensure-transactor", str(transactor))
    assert run.code == 0, run.stderr
    return transactor, cf


def _values(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _rules_4334(ec2: Any, group_id: str) -> set[str]:
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    sources: set[str] = set()
    for perm in group["IpPermissions"]:
        assert (perm["IpProtocol"], perm["FromPort"], perm["ToPort"]) == ("tcp", 4334, 4334), perm
        sources |= {r["CidrIp"] for r in perm.get("IpRanges", [])}
        sources |= {r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])}
        sources |= {p["GroupId"] for p in perm.get("UserIdGroupPairs", [])}
    return sources


def test_ensure_cf_writes_back_generated_keys_then_rerun_is_a_noop(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    _, cf = _ensured(cli, tmp_path)
    original = cf.read_text(encoding="latin-1").splitlines()

    first = cli("--output", "json", "ensure-cf", str(cf))
    assert first.code == 0, first.stderr
    doc = first.json
    assert doc["command"] == "ensure-cf"
    assert doc["changed"] is True
    ec2 = boto("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    vpc_id = vpc["VpcId"]
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    # Issue 10: only the default subnets in zones that offer the type (moto, like AWS, has no
    # m7i.large in us-east-1e), and the run says which it left out (reference §11).
    zones = {
        o["Location"]
        for o in ec2.describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": ["m7i.large"]}],
        )["InstanceTypeOfferings"]
    }
    in_order = sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))
    subnet_ids = [s["SubnetId"] for s in in_order if s["AvailabilityZone"] in zones]
    left_out = [s for s in in_order if s["AvailabilityZone"] not in zones]
    assert [s["AvailabilityZone"] for s in left_out] == ["us-east-1e"]
    assert doc["warnings"] == [
        f"default subnet {left_out[0]['SubnetId']} left out: m7i.large is not offered in us-east-1e"
    ]
    (group,) = ec2.describe_security_groups(
        Filters=[
            {"Name": "group-name", "Values": [GROUP]},
            {"Name": "vpc-id", "Values": [vpc_id]},
        ]
    )["SecurityGroups"]
    ram = ec2.describe_instance_types(InstanceTypes=["m7i.large"])["InstanceTypes"][0][
        "MemoryInfo"
    ]["SizeInMiB"]
    assert {c["resource"]: c["action"] for c in doc["changes"]} == {
        f"ec2 vpc {vpc_id}": "noop",
        f"ec2 security group {GROUP} ({vpc_id})": "create",
    }
    assert doc["aws_calls"]["by_operation"]["ec2:CreateSecurityGroup"] == 1
    assert doc["aws_calls"]["by_operation"]["ec2:AuthorizeSecurityGroupIngress"] == 1

    expected = {
        "datomic-system": SYSTEM,
        "java-xmx": f"{int(ram * 0.7)}m",
        "java-opts": "-XX:+UseG1GC -XX:MaxGCPauseMillis=50",
        "datomic-version": LATEST_DATOMIC_VERSION,
        "aws-vpc-id": vpc_id,
        "aws-subnet-ids": ",".join(subnet_ids),
        "aws-security-group-id": group["GroupId"],
        "aws-stack-name": f"datomic-{SYSTEM}",
    }
    assert expected["java-xmx"] == "5734m"  # 70% of the 8 GiB of an m7i.large
    rewritten = cf.read_text(encoding="latin-1").splitlines()
    assert len(rewritten) == len(original)
    changed = {
        old.split("=", 1)[0]: new
        for old, new in zip(original, rewritten, strict=True)
        if old != new
    }
    # Only the generated lines changed, each from `key=` to `key=value`.
    assert changed == {k: f"{k}={v}" for k, v in expected.items()}
    assert {old for old in original if old.split("=", 1)[0] in expected} == {
        f"{k}=" for k in expected
    }
    assert _rules_4334(ec2, group["GroupId"]) == {"172.31.0.0/16"}
    (file_doc,) = doc["files"]
    assert file_doc["written"] is True
    assert "+aws-security-group-id=" + group["GroupId"] in file_doc["diff"]

    before = cf.read_bytes()
    mtime = os.stat(cf).st_mtime_ns
    second = cli("--output", "json", "ensure-cf", str(cf))
    assert second.code == 0, second.stderr
    doc = second.json
    assert doc["changed"] is False
    assert {c["action"] for c in doc["changes"]} == {"noop"}
    assert doc["aws_calls"]["mutating"] == 0, doc["aws_calls"]
    assert doc["files"] == [{"path": str(cf), "changed": False, "written": False, "diff": ""}]
    assert cf.read_bytes() == before
    assert os.stat(cf).st_mtime_ns == mtime
    assert _rules_4334(ec2, group["GroupId"]) == {"172.31.0.0/16"}


def test_removing_a_cidr_revokes_exactly_that_rule(cli: Any, boto: Any, tmp_path: Path) -> None:
    cidrs = "aws-ingress-cidrs=172.31.0.0/16"
    _, cf = _ensured(
        cli,
        tmp_path,
        # 2001:db8::/32 is public (not fc00::/7): issue 11 asks for the opt-in.
        **{
            cidrs: "aws-ingress-cidrs=172.31.0.0/16,10.20.0.0/16,2001:db8::/32\n"
            "aws-ingress-allow-public=true"
        },
    )
    assert cli("ensure-cf", str(cf)).code == 0
    group_id = _values(cf)["aws-security-group-id"]
    ec2 = boto("ec2")
    assert _rules_4334(ec2, group_id) == {"172.31.0.0/16", "10.20.0.0/16", "2001:db8::/32"}

    _edit(cf, **{"172.31.0.0/16,10.20.0.0/16,": "172.31.0.0/16,"})
    run = cli("--output", "json", "ensure-cf", str(cf))
    assert run.code == 0, run.stderr
    doc = run.json
    mutating = {
        k: v
        for k, v in doc["aws_calls"]["by_operation"].items()
        if k in ("ec2:RevokeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupIngress")
    }
    assert mutating == {"ec2:RevokeSecurityGroupIngress": 1}
    assert doc["aws_calls"]["mutating"] == 1
    (group_change,) = [c for c in doc["changes"] if c["resource"].startswith("ec2 security group")]
    assert group_change["action"] == "update"
    assert any("10.20.0.0/16" in d for d in group_change["details"]), group_change
    assert _rules_4334(ec2, group_id) == {"172.31.0.0/16", "2001:db8::/32"}

    again = cli("--output", "json", "ensure-cf", str(cf))
    assert again.json["aws_calls"]["mutating"] == 0
    assert _rules_4334(ec2, group_id) == {"172.31.0.0/16", "2001:db8::/32"}


@pytest.mark.parametrize(
    ("edits", "key"),
    [
        (
            {"aws-autoscaling-group-size=1": "aws-autoscaling-group-size=0"},
            "aws-autoscaling-group-size",
        ),
        (
            {"aws-ingress-cidrs=172.31.0.0/16": "aws-ingress-cidrs=172.31.0.0/33"},
            "aws-ingress-cidrs",
        ),
        (
            {"aws-instance-monitoring=true": "aws-instance-monitoring=maybe"},
            "aws-instance-monitoring",
        ),
        ({"aws-region=us-east-1": "aws-region=mars-1"}, "aws-region"),
        ({"java-xmx=": "java-xmx=lots"}, "java-xmx"),
    ],
)
def test_invalid_cf_file_exits_2_before_any_aws_call(
    cli: Any, tmp_path: Path, edits: dict[str, str], key: str
) -> None:
    _, cf = _folder(tmp_path, **edits)
    before = cf.read_bytes()
    # An unreachable endpoint: any AWS call would fail with exit 1, not 2.
    run = cli("ensure-cf", str(cf), env=UNREACHABLE)
    assert run.code == 2, (run.stdout, run.stderr)
    assert run.stderr.startswith("Error: ")
    assert f"{cf}:" in run.stderr
    assert f" {key}" in run.stderr
    assert "Traceback" not in run.stderr
    assert cf.read_bytes() == before


@pytest.mark.parametrize(
    "url",
    [
        "https://user:CANARY9d1@dl.sitehost.test/datomic-pro.zip",
        "https://dl.sitehost.test/datomic-pro.zip?X-Amz-Signature=CANARY9d1",
        "s3://CANARY9d1@sitebucket/datomic-pro.zip",
    ],
)
def test_download_url_with_a_credential_exits_2_and_never_prints_it(
    cli: Any, tmp_path: Path, url: str
) -> None:
    _, cf = _folder(tmp_path, **{"# datomic-download-url=": f"datomic-download-url={url}"})
    for args in (("ensure-cf",), ("--output", "json", "ensure-cf"), ("--debug", "ensure-cf")):
        run = cli(*args, str(cf), env=UNREACHABLE)
        assert run.code == 2, (run.stdout, run.stderr)
        line = cf.read_text().splitlines().index(f"datomic-download-url={url}") + 1
        assert f"{cf}:{line} datomic-download-url" in run.stdout + run.stderr
        for secret in ("CANARY9d1", "sitehost", "sitebucket"):
            assert secret not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("edits", "key", "says"),
    [
        (
            {"aws-instance-type=m7i.large": "aws-instance-type=m7i.huge"},
            "aws-instance-type",
            "not an instance type offered in us-east-1",
        ),
        (
            {"java-xmx=": "java-xmx=8000m"},
            "java-xmx",
            "java-xmx 8000m does not fit in the 8192 MiB of m7i.large",
        ),
        (
            {"aws-subnet-ids=": "aws-subnet-ids=subnet-0123456789abcdef0"},
            "aws-subnet-ids",
            "subnet subnet-0123456789abcdef0 does not exist in us-east-1",
        ),
    ],
)
def test_invalid_against_aws_exits_2_with_no_write(
    cli: Any, boto: Any, tmp_path: Path, edits: dict[str, str], key: str, says: str
) -> None:
    _, cf = _ensured(cli, tmp_path, **edits)
    before = cf.read_bytes()
    run = cli("--output", "json", "ensure-cf", str(cf))
    assert run.code == 2, (run.stdout, run.stderr)
    doc = run.json
    assert doc["error"]["exit_code"] == 2
    text = "\n".join(doc["error"]["messages"])
    assert f" {key}" in text
    assert says in text
    assert cf.read_bytes() == before
    groups = boto("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [GROUP]}]
    )["SecurityGroups"]
    assert groups == []


def test_create_cf_template_needs_no_aws_and_is_byte_identical(cli: Any, tmp_path: Path) -> None:
    transactor, cf = _ensured(cli, tmp_path)
    assert cli("ensure-cf", str(cf)).code == 0
    out = tmp_path / "cf.json"
    offline = {"env": UNREACHABLE, "unset": CREDENTIALS}

    first = cli(
        "--output", "json", "create-cf-template", str(transactor), str(cf), str(out), **offline
    )
    assert first.code == 0, first.stderr
    doc = first.json
    assert doc["command"] == "create-cf-template"
    assert "aws_calls" not in doc  # no AWS context at all
    assert doc["files"][0]["path"] == str(out)
    assert doc["files"][0]["written"] is True
    template = json.loads(out.read_text(encoding="utf-8"))
    group_id = _values(cf)["aws-security-group-id"]
    assert template["Parameters"]["InstanceType"]["Default"] == "m7i.large"
    assert template["Parameters"]["Xmx"]["Default"] == "5734m"
    assert group_id in out.read_text(encoding="utf-8")
    assert "LaunchConfiguration" not in out.read_text(encoding="utf-8")

    before = out.read_bytes()
    mtime = os.stat(out).st_mtime_ns
    again = cli(
        "--output", "json", "create-cf-template", str(transactor), str(cf), str(out), **offline
    )
    assert again.code == 0, again.stderr
    assert again.json["changed"] is False
    assert again.json["files"] == [
        {"path": str(out), "changed": False, "written": False, "diff": ""}
    ]
    assert out.read_bytes() == before
    assert os.stat(out).st_mtime_ns == mtime
    text_run = cli("create-cf-template", str(transactor), str(cf), str(out), **offline)
    assert text_run.code == 0
    assert f"file {out}: unchanged" in text_run.stdout

    # A changed transactor property, stored by ensure-transactor (a new parameter version):
    # --dry-run shows the diff and writes nothing.
    _edit(transactor, **{"memory-index-max=512m": "memory-index-max=600m"})
    assert cli("ensure-transactor", str(transactor)).code == 0
    plan = cli(
        "--output",
        "json",
        "create-cf-template",
        "--dry-run",
        "--detailed-exitcode",
        str(transactor),
        str(cf),
        str(out),
        **offline,
    )
    assert plan.code == 3, plan.stderr
    (file_doc,) = plan.json["files"]
    assert file_doc["changed"] is True
    assert file_doc["written"] is False
    user_data = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    old_pin = user_data["UserData"]["Fn::Base64"]["Fn::Sub"][1]["ConfigPin"]
    removed = [
        line for line in file_doc["diff"].splitlines() if line.startswith("-") and line[:3] != "---"
    ]
    added = [
        line for line in file_doc["diff"].splitlines() if line.startswith("+") and line[:3] != "+++"
    ]
    # Only the configuration's pin changes, on one line (issue 11): the parameter version and
    # the keyed digest, the user data's Fn::Sub variable.
    assert len(removed) == len(added) == 1, file_doc["diff"]
    assert f'"ConfigPin": "{old_pin}"' in removed[0]
    (new_pin,) = re.findall(r'"ConfigPin": "([0-9]+:[0-9a-f]{64})"', added[0])
    assert old_pin.startswith("1:") and new_pin.startswith("2:"), (old_pin, new_pin)
    assert new_pin[2:] != old_pin[2:]
    assert out.read_bytes() == before
    assert os.stat(out).st_mtime_ns == mtime
    text_plan = cli(
        "create-cf-template", "--dry-run", str(transactor), str(cf), str(out), **offline
    )
    assert text_plan.code == 0
    assert f"file {out}: would be rewritten" in text_plan.stdout
    assert out.read_bytes() == before

    written = cli("create-cf-template", str(transactor), str(cf), str(out), **offline)
    assert written.code == 0, written.stderr
    assert out.read_bytes() != before
    assert json.loads(out.read_text(encoding="utf-8"))["Parameters"] == template["Parameters"]
