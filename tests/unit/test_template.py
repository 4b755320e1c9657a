"""create-cf-template: pure, deterministic, lint-clean, secret-free, and deployable (in moto).

The golden file tests/golden/cf.json is regenerated with `UPDATE_GOLDEN=1 pytest tests/unit/test_template.py`;
review its diff like any other change to what operators deploy.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from datomic_aws import names
from datomic_aws.app.template import create_cf_template
from datomic_aws.aws import AwsContext
from datomic_aws.config.cf import load_cf
from datomic_aws.config.era import RELEASE_SHA256
from datomic_aws.config.transactor import config_digest, effective_config, load_transactor
from datomic_aws.errors import InvalidInput
from datomic_aws.template import (
    LAUNCH_HOOK_HEARTBEAT_SECONDS,
    LAUNCH_HOOK_NAME,
    MAX_TEMPLATE_BYTES,
    build_template,
    dump_template,
    render_template,
)
from datomic_aws.user_data import (
    READY_TIMEOUT_SECONDS,
    boot_script_source,
    render_boot_script,
    user_data_sub,
)
from tests.unit.moto_network import stack_prerequisites

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "cf.json"
LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]

# What ensure-transactor writes for the pin: the digest's key (generated once) and the version.
DIGEST_SECRET = "5e" * 32
PIN_LINES = f"datomic-aws-digest-secret={DIGEST_SECRET}\ndatomic-aws-config-version=3\n"

TRANSACTOR = f"""protocol=ddb
host=localhost
port=4334
aws-dynamodb-table=orders
aws-dynamodb-region=us-east-1
memory-index-threshold=32m
memory-index-max=512m
object-cache-max=1g
{PIN_LINES}"""

CF = """datomic-system=orders
aws-region=us-east-1
aws-instance-type=m7i.large
aws-instance-monitoring=true
aws-autoscaling-group-size=1
java-xmx=5734m
java-opts=-XX:+UseG1GC -XX:MaxGCPauseMillis=50
datomic-version=1.0.7556
aws-vpc-id=vpc-0123456789abcdef0
aws-subnet-ids=subnet-0123456789abcdef0,subnet-0123456789abcdef1
aws-security-group-id=sg-0123456789abcdef0
aws-ingress-cidrs=172.31.0.0/16
aws-stack-name=datomic-orders
"""

SQL_TRANSACTOR = f"""protocol=sql
host=localhost
port=4334
aws-region=us-east-1
aws-cloudwatch-dimension-value=orders
sql-url=jdbc:postgresql://db7.internal.example:5432/datomic
sql-user=txuser
sql-password=Pw-9f8e7d6c5b4a-NeverShown
memory-index-threshold=48m
{PIN_LINES}"""


def files(
    tmp_path: Path, transactor: str = TRANSACTOR, cf: str = CF, **cf_updates: str
) -> tuple[Path, Path, Path]:
    for key, value in cf_updates.items():
        key = key.replace("_", "-")
        cf = re.sub(rf"^{key}=.*$", f"{key}={value}", cf, flags=re.M)
        if f"\n{key}=" not in "\n" + cf:
            cf += f"{key}={value}\n"
    (tmp_path / "transactor.properties").write_text(transactor)
    (tmp_path / "cf.properties").write_text(cf)
    return tmp_path / "transactor.properties", tmp_path / "cf.properties", tmp_path / "cf.json"


def template_of(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    t, c, _ = files(tmp_path, **kwargs)
    return build_template(load_transactor(t)[1], load_cf(c)[1])


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials, an endpoint nobody listens on, and any botocore call fails the test."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"AWS call made: {args[1] if len(args) > 1 else args}")

    import botocore.client

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refuse)


def test_no_aws_call_and_byte_identical_rerun(tmp_path: Path, no_aws: None) -> None:
    t, c, out = files(tmp_path)
    first = create_cf_template(t, c, out, dry_run=False)
    assert first.files[0].written and first.files[0].diff
    content = out.read_bytes()
    old = out.stat().st_mtime_ns - 10_000_000_000
    os.utime(out, ns=(old, old))

    again = create_cf_template(t, c, out, dry_run=False)
    assert not again.files[0].written and again.files[0].diff == ""
    assert not again.pending
    assert out.read_bytes() == content
    assert out.stat().st_mtime_ns == old


def test_dry_run_shows_the_diff_and_writes_nothing(tmp_path: Path, no_aws: None) -> None:
    t, c, out = files(tmp_path)
    result = create_cf_template(t, c, out, dry_run=True)
    assert not out.exists()
    assert result.pending and '+  "AWSTemplateFormatVersion"' in result.files[0].diff


def test_the_rendered_document_is_the_one_its_text_holds(tmp_path: Path, no_aws: None) -> None:
    """apply deploys the document it rendered without parsing the text back: the two must be
    the same JSON value (lists, string keys), or a no-op would compare unequal to GetTemplate."""
    t, c, out = files(tmp_path)
    rendered = render_template(load_transactor(t)[1], load_cf(c)[1], where=str(out))
    assert json.loads(rendered.text) == rendered.doc
    assert json.dumps(rendered.doc, indent=2, sort_keys=True, ensure_ascii=True) + "\n" == (
        rendered.text
    )
    assert rendered.size == len(rendered.text.encode("ascii"))
    assert not out.exists()  # render_template is pure: create_cf_template writes


def test_matches_golden_file(tmp_path: Path, no_aws: None) -> None:
    t, c, out = files(tmp_path)
    create_cf_template(t, c, out, dry_run=False)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        shutil.copy(out, GOLDEN)
    assert out.read_text() == GOLDEN.read_text(), "rerun with UPDATE_GOLDEN=1 and review the diff"


def test_dump_is_deterministic(tmp_path: Path) -> None:
    template = template_of(tmp_path)
    text = dump_template(template)
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == dump_template(json.loads(text))
    assert '\n  "AWSTemplateFormatVersion": "2010-09-09",\n' in text
    assert text.isascii()


def _pin(template: dict[str, Any]) -> str:
    lt = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    pin: str = lt["UserData"]["Fn::Base64"]["Fn::Sub"][1]["ConfigPin"]
    return pin


def test_configuration_pin_rolls_with_the_configuration(tmp_path: Path) -> None:
    base = template_of(tmp_path)
    same = template_of(tmp_path)
    assert dump_template(base) == dump_template(same)
    changed = template_of(
        tmp_path,
        transactor=TRANSACTOR.replace("memory-index-max=512m", "memory-index-max=768m").replace(
            "datomic-aws-config-version=3", "datomic-aws-config-version=4"
        ),
    )
    old_pin, new_pin = _pin(base), _pin(changed)
    assert old_pin.startswith("3:") and new_pin.startswith("4:")
    assert old_pin[2:] != new_pin[2:]
    old_lt = base["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    new_lt = changed["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    # A new launch template version: the user data's variable changes, the script does not.
    assert old_lt["UserData"] != new_lt["UserData"]
    old_sub, new_sub = (
        old_lt["UserData"]["Fn::Base64"]["Fn::Sub"],
        new_lt["UserData"]["Fn::Base64"]["Fn::Sub"],
    )
    assert old_sub[0] == new_sub[0] and "readonly CONFIG_PIN='${ConfigPin}'\n" in new_sub[0]
    assert {k: v for k, v in old_lt.items() if k != "UserData"} == {
        k: v for k, v in new_lt.items() if k != "UserData"
    }


def test_a_configuration_change_is_one_line_of_the_template(tmp_path: Path) -> None:
    import difflib

    first = dump_template(template_of(tmp_path)).splitlines()
    second = dump_template(
        template_of(
            tmp_path,
            transactor=TRANSACTOR.replace("memory-index-max=512m", "memory-index-max=768m")
            .replace("datomic-aws-config-version=3", "datomic-aws-config-version=4")
            .replace("host=localhost\n", "host=localhost\nsql-password=Changed-Secret-7\n"),
        )
    ).splitlines()
    changed = [
        line
        for line in difflib.unified_diff(first, second, lineterm="", n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert len(changed) == 2, changed  # one line removed, one added
    assert [line[0] + line[1:].strip()[:16] for line in changed] == [
        '-"ConfigPin": "3:',
        '+"ConfigPin": "4:',
    ]


def test_no_sha256_of_the_configuration_or_of_a_secret_is_published(tmp_path: Path) -> None:
    """Issue 11: nothing in the template (user data, outputs, tags included) lets anyone test a
    guess of a secret offline: no plain SHA-256 of the stored value, of a line or of a secret."""
    import hashlib

    cf = CF.replace("datomic-system=orders\n", "")
    t, c, _ = files(tmp_path, transactor=SQL_TRANSACTOR, cf=cf)
    transactor, spec = load_transactor(t)[1], load_cf(c)[1]
    text = dump_template(build_template(transactor, spec)) + render_boot_script(transactor, spec)
    stored = effective_config(transactor.values)
    candidates = [stored, stored.rstrip("\n"), *stored.splitlines(), *transactor.secrets]
    for candidate in candidates:
        for form in (candidate, candidate + "\n"):
            digest = hashlib.sha256(form.encode()).hexdigest()
            assert digest not in text and digest[:12] not in text, candidate
    hexes = set(re.findall(r"[0-9a-f]{64}", text))
    # The keyed digest, and the public SHA-256 of the release zip the instance verifies.
    assert hexes == {_pin(build_template(transactor, spec))[2:], RELEASE_SHA256["1.0.7556"]}


def test_lint_clean_in_three_regions(tmp_path: Path) -> None:
    from cfnlint.api import ManualArgs, lint

    variants = {
        "sample": template_of(tmp_path),
        "graviton-ha": template_of(
            tmp_path, aws_instance_type="m7g.large", aws_autoscaling_group_size="2"
        ),
        "pinned-ami": template_of(
            tmp_path, aws_ami="ami-0123456789abcdef0", aws_instance_monitoring="false"
        ),
    }
    for name, template in variants.items():
        matches = lint(dump_template(template), config=ManualArgs(regions=LINT_REGIONS))
        found = [f"{m.rule.id} {m.rule.severity} line {m.linenumber}: {m.message}" for m in matches]
        assert found == [], name


def test_size_and_forbidden_content(tmp_path: Path) -> None:
    text = dump_template(template_of(tmp_path))
    assert len(text.encode()) < MAX_TEMPLATE_BYTES
    assert "LaunchConfiguration" not in text
    assert "AWS::IAM::" not in text
    assert "Capabilit" not in text
    template = json.loads(text)
    types = {r["Type"] for r in template["Resources"].values()}
    assert types == {"AWS::EC2::LaunchTemplate", "AWS::AutoScaling::AutoScalingGroup"}


def test_no_transactor_value_or_secret_anywhere(tmp_path: Path) -> None:
    cf = CF.replace("datomic-system=orders\n", "")
    t, c, _ = files(tmp_path, transactor=SQL_TRANSACTOR, cf=cf)
    transactor, spec = load_transactor(t)[1], load_cf(c)[1]
    text = dump_template(build_template(transactor, spec))
    script = render_boot_script(transactor, spec)
    for value in (
        "Pw-9f8e7d6c5b4a-NeverShown",
        "db7.internal.example",
        "txuser",
        "48m",
        "postgresql",
    ):
        assert value not in text
        assert value not in script
    # The digest's key is a secret too: neither in the template nor in the user data.
    assert DIGEST_SECRET not in text and DIGEST_SECRET not in script
    assert set(transactor.secrets) == {"Pw-9f8e7d6c5b4a-NeverShown", DIGEST_SECRET}


def test_shape(tmp_path: Path) -> None:
    template = template_of(tmp_path, aws_autoscaling_group_size="2")
    params = template["Parameters"]
    assert set(params) >= {
        "InstanceType",
        "GroupSize",
        "Xmx",
        "JavaOpts",
        "DatomicVersion",
        "ImageId",
    }
    assert params["GroupSize"]["Default"] == "2"
    assert params["Xmx"]["Default"] == "5734m"
    assert params["ImageId"] == {
        "Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
        "Default": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        "Description": params["ImageId"]["Description"],
    }
    lt = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert lt["IamInstanceProfile"] == {"Name": names.transactor_role("orders")}
    assert lt["SecurityGroupIds"] == ["sg-0123456789abcdef0"]
    assert lt["MetadataOptions"]["HttpTokens"] == "required"
    assert lt["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert lt["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert lt["Monitoring"] == {"Enabled": True}
    # A powered-off transactor leaves the group instead of lingering stopped (reference §11).
    assert lt["InstanceInitiatedShutdownBehavior"] == "terminate"
    asg = template["Resources"]["AutoScalingGroup"]["Properties"]
    assert asg["AutoScalingGroupName"] == "datomic-orders-transactors"
    assert asg["VPCZoneIdentifier"] == ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    assert asg["MinSize"] == asg["DesiredCapacity"] == {"Ref": "GroupSize"}
    assert asg["LaunchTemplate"]["Version"] == {
        "Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]
    }
    # MaxSize = GroupSize + 1 for every allowed GroupSize.
    mapping = template["Mappings"]["GroupSizes"]
    assert asg["MaxSize"] == {"Fn::FindInMap": ["GroupSizes", {"Ref": "GroupSize"}, "MaxSize"]}
    assert sorted(mapping) == sorted(params["GroupSize"]["AllowedValues"])
    assert all(mapping[n]["MaxSize"] == int(n) + 1 for n in mapping)
    (hook,) = asg["LifecycleHookSpecificationList"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert hook["LifecycleHookName"] == LAUNCH_HOOK_NAME
    assert hook["DefaultResult"] == "ABANDON"
    # The script's own deadline, counted from its start, ends before Auto Scaling's.
    assert READY_TIMEOUT_SECONDS < hook["HeartbeatTimeout"] == LAUNCH_HOOK_HEARTBEAT_SECONDS
    # Issue 10: the group gets datomic:system and managed-by from the stack's tags (reference §11),
    # never also from its own Tags; its own Tags keep its Name.
    assert asg["Tags"] == [
        {"Key": "Name", "Value": "datomic-orders-transactor", "PropagateAtLaunch": True}
    ]
    assert set(template["Outputs"]) >= {
        "AutoScalingGroupName",
        "LaunchTemplateId",
        "LaunchTemplateVersion",
    }


def test_transactor_role_from_the_file_is_the_instance_profile(tmp_path: Path) -> None:
    template = template_of(tmp_path, transactor=TRANSACTOR + "aws-transactor-role=legacy-tx\n")
    lt = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert lt["IamInstanceProfile"] == {"Name": "legacy-tx"}


def test_graviton_selects_arm64(tmp_path: Path) -> None:
    template = template_of(tmp_path, aws_instance_type="m7g.large")
    assert template["Parameters"]["ImageId"]["Default"] == (
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    )
    assert template["Parameters"]["InstanceType"]["Default"] == "m7g.large"


def test_aws_ami_pins_the_image(tmp_path: Path) -> None:
    template = template_of(tmp_path, aws_ami="ami-0123456789abcdef0")
    assert template["Parameters"]["ImageId"]["Type"] == "AWS::EC2::Image::Id"
    assert template["Parameters"]["ImageId"]["Default"] == "ami-0123456789abcdef0"
    assert "ami-amazon-linux-latest" not in dump_template(template)


def test_cf_file_not_through_ensure_cf_is_refused(tmp_path: Path, no_aws: None) -> None:
    cf = CF.replace("java-xmx=5734m", "java-xmx=").replace(
        "aws-security-group-id=sg-0123456789abcdef0", "aws-security-group-id="
    )
    t, c, out = files(tmp_path, cf=cf)
    with pytest.raises(InvalidInput) as info:
        create_cf_template(t, c, out, dry_run=False)
    assert {(p.key, p.line) for p in info.value.problems} == {
        ("java-xmx", 6),
        ("aws-security-group-id", 11),
    }
    assert "ensure-cf" in info.value.problems[0].hint
    assert not out.exists()


def test_both_files_are_validated_together(tmp_path: Path, no_aws: None) -> None:
    t, c, out = files(
        tmp_path,
        transactor=TRANSACTOR.replace("port=4334", "port=99999"),
        cf=CF.replace("aws-autoscaling-group-size=1", "aws-autoscaling-group-size=0"),
    )
    with pytest.raises(InvalidInput) as info:
        create_cf_template(t, c, out, dry_run=False)
    assert {p.key for p in info.value.problems} == {"port", "aws-autoscaling-group-size"}


def test_system_mismatch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        template_of(tmp_path, datomic_system="billing")
    assert info.value.problems[0].key == "datomic-system"


def test_user_data_escapes_everything_but_the_parameters(tmp_path: Path) -> None:
    t, c, _ = files(tmp_path)
    body = user_data_sub(load_transactor(t)[1], load_cf(c)[1])
    references = set(re.findall(r"\$\{([^!][^}]*)\}", body))
    assert references == {"Xmx", "JavaOpts", "DatomicVersion", "ConfigPin"}
    assert "readonly CONFIG_PIN='${ConfigPin}'\n" in body
    assert "@@" not in body


def _shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        # .ci/run installs it: in CI its absence is a failure, never a silent skip.
        assert not os.environ.get("CI"), "shellcheck is not installed (CI is set)"
        return
    done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def _helper_of(script: str) -> str:
    """The instance helper the boot script writes (a quoted here-document), as its own file."""
    match = re.search(r"<<'HELPER'\n(.*?)\nHELPER\n", script, re.S)
    assert match, "no instance helper in the boot script"
    return match.group(1) + "\n"


def test_boot_script_source_is_valid_bash(tmp_path: Path) -> None:
    path = tmp_path / "source.sh"
    path.write_text(boot_script_source())
    subprocess.run(["bash", "-n", str(path)], check=True)
    _shellcheck(path)
    helper = tmp_path / "datomic-instance"
    helper.write_text(_helper_of(boot_script_source()))
    subprocess.run(["bash", "-n", str(helper)], check=True)
    _shellcheck(helper)


def test_every_packaged_shell_file_passes_shellcheck_on_its_own() -> None:
    """The optional steps (boot/ship-logs.sh) too: a checkout's shellcheck reads each file alone."""
    folder = Path(__file__).resolve().parents[2] / "datomic_aws" / "boot"
    scripts = sorted(folder.glob("*.sh"))
    assert len(scripts) >= 2, scripts
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
        _shellcheck(script)


def test_the_shipped_script_leaves_only_its_comments_out(tmp_path: Path) -> None:
    t, c, _ = files(tmp_path)
    script = render_boot_script(load_transactor(t)[1], load_cf(c)[1])
    source = boot_script_source()
    # The why-comments stay in the packaged file; instances get every other line, shebangs too.
    assert [ln for ln in script.splitlines() if ln.lstrip().startswith("#")] == [
        "#!/bin/bash",
        "#!/bin/bash",
    ]
    kept = [ln for ln in source.splitlines() if not ln.lstrip().startswith("#") or ln[:2] == "#!"]
    assert len(script.splitlines()) == len(kept)
    assert len(source.splitlines()) - len(kept) > 40


def test_boot_script_does_what_the_design_says(tmp_path: Path) -> None:
    t, c, _ = files(tmp_path, datomic_zip_sha256="ab" * 32)
    script = render_boot_script(load_transactor(t)[1], load_cf(c)[1])
    # EC2 refuses user data over 16 KB (raw, before base64); keep room for long names and URLs.
    assert len(script.encode()) < 15 * 1024
    assert "java-21-amazon-corretto" in script
    assert "datomic-pro-downloads.s3.amazonaws.com/$DATOMIC_VERSION" in script
    assert f"readonly ZIP_SHA256='{'ab' * 32}'" in script and "sha256sum --check" in script
    assert "readonly SSM_PARAMETER='/datomic/orders/transactor.properties'" in script
    assert "--with-decryption" in script and "umask 077" in script
    assert "X-aws-ec2-metadata-token" in script and "local-ipv4" in script
    # The heap as arguments, JAVA_OPTS from the environment only (reference §10).
    assert "bin/transactor -Xms$XMX -Xmx$XMX /etc/datomic/transactor.properties" in script
    assert "$JAVA_OPTS /etc/datomic" not in script
    assert "complete-lifecycle-action" in script and "CONTINUE" in script and "ABANDON" in script
    assert "ExecStopPost=+/opt/datomic/bin/datomic-instance leave-group" in script
    assert "systemctl enable --now" in script
    # Ready = /health answers (both roles); neither the port nor the journal decides.
    assert "journalctl" not in script and "standby|standing by" not in script
    assert "readonly DEFAULT_PING_PORT=9999" in script
    assert "readonly HOOK_NAME='transactor-listening'" in script
    assert "readonly READY_TIMEOUT_SECONDS='780'" in script
    assert "set -x" not in script
    assert "readonly XMX='5734m'" in script
    digest = config_digest(load_transactor(t)[1].values)
    assert f"readonly CONFIG_PIN='3:{digest}'\n" in script
    assert '--name "$SSM_PARAMETER:$CONFIG_VERSION"' in script


def test_stack_from_the_template_launches_the_transactor(ctx: AwsContext, tmp_path: Path) -> None:
    region = "us-east-1"
    net = stack_prerequisites(ctx, region, subnets=2, system="orders")
    vpc_id, subnets, group_id = net.vpc_id, net.subnets, net.group_id
    ec2 = ctx.client("ec2", region)
    t, c, out = files(
        tmp_path,
        aws_vpc_id=vpc_id,
        aws_subnet_ids=",".join(subnets),
        aws_security_group_id=group_id,
        aws_instance_type="c7i.large",
        aws_autoscaling_group_size="2",
    )
    create_cf_template(t, c, out, dry_run=False)

    cfn = ctx.client("cloudformation", region)
    cfn.create_stack(StackName="datomic-orders", TemplateBody=out.read_text())
    stack = cfn.describe_stacks(StackName="datomic-orders")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["AutoScalingGroupName"] == "datomic-orders-transactors"

    group = ctx.client("autoscaling", region).describe_auto_scaling_groups(
        AutoScalingGroupNames=["datomic-orders-transactors"]
    )["AutoScalingGroups"][0]
    assert (group["MinSize"], group["DesiredCapacity"], group["MaxSize"]) == (2, 2, 3)
    ids = [i["InstanceId"] for i in group["Instances"]]
    assert len(ids) == 2
    instances = [
        i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]
    ]
    for instance in instances:
        assert instance["InstanceType"] == "c7i.large"
        assert instance["SubnetId"] in subnets
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group_id]

    data = ec2.describe_launch_template_versions(LaunchTemplateId=outputs["LaunchTemplateId"])
    user_data = base64.b64decode(
        data["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"]
    )
    script = user_data.decode()
    assert script == render_boot_script(load_transactor(t)[1], load_cf(c)[1])
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    _shellcheck(path)
