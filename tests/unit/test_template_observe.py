"""Issue 13 Deliver 2: the opt-in observability keys of cf.properties (config/observe.py) and the
resources they add to the template (template_observe.py): present and lint-clean with the keys,
absent (the template byte-identical to the golden file) without them; least privilege; every
taggable resource tagged; each key validated with its file, line and key.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from datomic_aws import names
from datomic_aws.app.template import create_cf_template
from datomic_aws.aws import AwsContext
from datomic_aws.config.cf import load_cf
from datomic_aws.config.observe import DEFAULT_HEARTBEAT_MINUTES
from datomic_aws.config.transactor import load_transactor
from datomic_aws.errors import InvalidInput
from datomic_aws.template import build_template, dump_template
from datomic_aws.user_data import render_boot_script
from tests.unit.moto_network import stack_prerequisites
from tests.unit.test_config_cf import BASE, problems_of, spec_of
from tests.unit.test_template import CF, GOLDEN, LINT_REGIONS, TRANSACTOR, _shellcheck, files

# The transactor publishes Datomic's metrics in the stack's region, under the system's name.
METRICS = "aws-cloudwatch-region=us-east-1\naws-cloudwatch-dimension-value=orders\n"
ALL_ON = (
    "aws-log-group-retention-days=30\naws-alarm-email=ops@example.com\n"
    "aws-alarm-heartbeat-minutes=10\naws-session-manager=true\n"
)
TOPIC = "arn:aws:sns:us-east-1:123456789012:ops-pager"
TAGGED = {
    "AWS::Logs::LogGroup",
    "AWS::SNS::Topic",
    "AWS::CloudWatch::Alarm",
}


def template(tmp_path: Path, extra: str, transactor: str = TRANSACTOR + METRICS) -> dict[str, Any]:
    t, c, _ = files(tmp_path, transactor=transactor, cf=CF + extra)
    return build_template(load_transactor(t)[1], load_cf(c)[1])


def test_all_keys_on_add_the_resources(tmp_path: Path) -> None:
    doc = template(tmp_path, ALL_ON)
    resources = doc["Resources"]
    assert {k: r["Type"] for k, r in resources.items()} == {
        "LaunchTemplate": "AWS::EC2::LaunchTemplate",
        "AutoScalingGroup": "AWS::AutoScaling::AutoScalingGroup",
        "LogGroup": "AWS::Logs::LogGroup",
        "LogsGrant": "AWS::IAM::Policy",
        "SessionManagerGrant": "AWS::IAM::Policy",
        "AlarmTopic": "AWS::SNS::Topic",
        "AlarmEmailSubscription": "AWS::SNS::Subscription",
        "HeartbeatAlarm": "AWS::CloudWatch::Alarm",
        "DatomicAlarm": "AWS::CloudWatch::Alarm",
    }
    group = resources["LogGroup"]["Properties"]
    assert group["LogGroupName"] == "/datomic-aws/orders" == names.log_group("orders")
    assert group["RetentionInDays"] == 30
    subscription = resources["AlarmEmailSubscription"]["Properties"]
    assert subscription == {
        "Protocol": "email",
        "Endpoint": "ops@example.com",
        "TopicArn": {"Ref": "AlarmTopic"},
    }
    # A new instance starts only once the role can ship its logs and take sessions.
    assert resources["LaunchTemplate"]["DependsOn"] == ["LogsGrant", "SessionManagerGrant"]
    # No SSH key: shell access is Session Manager's.
    assert "KeyName" not in json.dumps(doc)


def test_every_taggable_resource_is_tagged(tmp_path: Path) -> None:
    resources = template(tmp_path, ALL_ON)["Resources"]
    for logical_id, resource in resources.items():
        if resource["Type"] in TAGGED:
            tags = {t["Key"]: t["Value"] for t in resource["Properties"]["Tags"]}
            assert tags.items() >= names.tags("orders").items(), logical_id


def test_grants_are_least_privilege(tmp_path: Path) -> None:
    resources = template(tmp_path, ALL_ON)["Resources"]
    logs = resources["LogsGrant"]["Properties"]
    assert logs["PolicyName"] == names.logs_shipping_policy("orders")
    assert logs["Roles"] == [names.transactor_role("orders")]
    [statement] = logs["PolicyDocument"]["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
        # The group and its streams only; partition and account are CloudFormation's.
        "Resource": {"Fn::GetAtt": ["LogGroup", "Arn"]},
    }
    session = resources["SessionManagerGrant"]["Properties"]
    assert session["PolicyName"] == names.session_manager_policy("orders")
    register, channels = session["PolicyDocument"]["Statement"]
    assert register["Action"] == ["ssm:UpdateInstanceInformation"]
    assert register["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"
    }
    assert all(a.startswith("ssmmessages:") for a in channels["Action"])
    # No managed policy: AmazonSSMManagedInstanceCore would be reported as access drift.
    assert "ManagedPolicyArns" not in json.dumps(resources)


def test_alarms_watch_datomics_metrics(tmp_path: Path) -> None:
    resources = template(tmp_path, ALL_ON)["Resources"]
    heartbeat = resources["HeartbeatAlarm"]["Properties"]
    assert heartbeat["Namespace"] == "Datomic"
    assert heartbeat["Dimensions"] == [{"Name": "Transactor", "Value": "orders"}]
    assert heartbeat["MetricName"] == "HeartbeatMsec"
    assert heartbeat["TreatMissingData"] == "breaching"
    assert heartbeat["EvaluationPeriods"] == heartbeat["DatapointsToAlarm"] == 10
    assert heartbeat["Period"] == 60
    assert heartbeat["AlarmActions"] == heartbeat["OKActions"] == [{"Ref": "AlarmTopic"}]
    alarm = resources["DatomicAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Statistic"], alarm["Threshold"]) == ("Alarm", "Sum", 0)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    notifications = resources["AutoScalingGroup"]["Properties"]["NotificationConfigurations"]
    assert notifications == [
        {
            "TopicARN": {"Ref": "AlarmTopic"},
            "NotificationTypes": [
                "autoscaling:EC2_INSTANCE_LAUNCH",
                "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
                "autoscaling:EC2_INSTANCE_TERMINATE",
                "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
            ],
        }
    ]


def test_an_existing_topic_gets_no_topic_of_the_stack(tmp_path: Path) -> None:
    resources = template(tmp_path, f"aws-alarm-topic-arn={TOPIC}\n")["Resources"]
    assert "AlarmTopic" not in resources and "AlarmEmailSubscription" not in resources
    heartbeat = resources["HeartbeatAlarm"]["Properties"]
    assert heartbeat["AlarmActions"] == [TOPIC]
    assert heartbeat["EvaluationPeriods"] == DEFAULT_HEARTBEAT_MINUTES
    group = resources["AutoScalingGroup"]["Properties"]
    assert group["NotificationConfigurations"][0]["TopicARN"] == TOPIC
    # No grant, so the launch template waits for nothing.
    assert "DependsOn" not in resources["LaunchTemplate"]


@pytest.mark.parametrize(
    "extra",
    [ALL_ON, f"aws-alarm-topic-arn={TOPIC}\n", "aws-log-group-retention-days=3653\n"],
)
def test_lint_clean_in_three_regions(tmp_path: Path, extra: str) -> None:
    from cfnlint.api import ManualArgs, lint

    text = dump_template(template(tmp_path, extra))
    matches = lint(text, config=ManualArgs(regions=LINT_REGIONS))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_unset_blank_or_false_keys_leave_the_golden_template(tmp_path: Path) -> None:
    """The golden file is the template of today's keys (test_template.py); the observability
    keys blank, or Session Manager false, change not one byte of it."""
    off = (
        "aws-log-group-retention-days=\naws-alarm-email=\naws-alarm-topic-arn=\n"
        "aws-session-manager=false\n"
    )
    assert dump_template(template(tmp_path, off, TRANSACTOR)) == GOLDEN.read_text()


def test_alarms_need_the_transactor_to_publish_its_metrics(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        template(tmp_path, "aws-alarm-email=ops@example.com\n", TRANSACTOR)
    problems = info.value.problems
    assert {(Path(p.file).name, p.line, p.key) for p in problems} == {
        ("cf.properties", CF.count("\n") + 1, "aws-alarm-email")
    }
    assert len(problems) == 2
    hints = " ".join(p.hint for p in problems)
    assert "set aws-cloudwatch-region=us-east-1" in hints
    assert "set aws-cloudwatch-dimension-value=orders" in hints


# ------------------------------------------------------------------------------- validation


def test_keys_off_by_default() -> None:
    spec = spec_of(BASE).observe
    assert not spec.any
    assert spec.heartbeat_minutes == DEFAULT_HEARTBEAT_MINUTES


def test_keys_typed() -> None:
    spec = spec_of(BASE + ALL_ON).observe
    assert (spec.log_retention_days, spec.alarm_email, spec.heartbeat_minutes) == (
        30,
        "ops@example.com",
        10,
    )
    assert spec.session_manager and spec.logs and spec.alarms


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("aws-log-group-retention-days=31", "aws-log-group-retention-days"),
        ("aws-log-group-retention-days=forever", "aws-log-group-retention-days"),
        ("aws-alarm-email=ops-at-example.com", "aws-alarm-email"),
        ("aws-alarm-topic-arn=ops-pager", "aws-alarm-topic-arn"),
        ("aws-alarm-heartbeat-minutes=0", "aws-alarm-heartbeat-minutes"),
        ("aws-alarm-heartbeat-minutes=1441", "aws-alarm-heartbeat-minutes"),
        ("aws-session-manager=yes please", "aws-session-manager"),
    ],
)
def test_a_bad_value_names_file_line_and_key(line: str, key: str) -> None:
    [problem] = problems_of(BASE + line + "\n").problems
    assert (problem.file, problem.line, problem.key) == ("cf.properties", 3, key)


@pytest.mark.parametrize(
    ("extra", "key", "says"),
    [
        (
            f"aws-alarm-email=ops@example.com\naws-alarm-topic-arn={TOPIC}\n",
            "aws-alarm-topic-arn",
            "both set",
        ),
        (
            "aws-alarm-topic-arn=arn:aws:sns:eu-west-1:123456789012:ops\n",
            "aws-alarm-topic-arn",
            "another region",
        ),
        ("aws-alarm-heartbeat-minutes=3\n", "aws-alarm-heartbeat-minutes", "no alarm is"),
    ],
)
def test_keys_that_disagree_are_refused(extra: str, key: str, says: str) -> None:
    [problem] = problems_of(BASE + extra).problems
    assert problem.key == key and problem.line is not None
    assert says in problem.message


# ------------------------------------------------------------------- what deploying them needs


def test_a_template_with_the_grants_is_deployed_with_capability_iam(tmp_path: Path) -> None:
    """CloudFormation refuses a change set with IAM resources without CAPABILITY_IAM
    (InsufficientCapabilitiesException); moto does not check (reference §7), so the request is
    what is asserted. Without the grants the request stays as it was."""
    from datomic_aws.stack.document import as_template

    assert as_template(dump_template(template(tmp_path, ALL_ON))).capabilities() == [
        "CAPABILITY_IAM"
    ]
    assert as_template(GOLDEN.read_text()).capabilities() == []


def test_the_readme_policy_lets_cloudformation_create_them() -> None:
    from tests.unit.test_readme_permissions import readme_policy

    policy = readme_policy()
    needed = {
        "logs:CreateLogGroup",
        "logs:PutRetentionPolicy",
        "logs:TagResource",
        "logs:DeleteLogGroup",
        "sns:CreateTopic",
        "sns:Subscribe",
        "sns:TagResource",
        "sns:DeleteTopic",
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:TagResource",
        "cloudwatch:DeleteAlarms",
        "autoscaling:PutNotificationConfiguration",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
    }
    assert needed <= set(policy)


def test_the_stack_with_every_key_is_created_in_moto(ctx: AwsContext, tmp_path: Path) -> None:
    """The resources deploy (moto's CloudFormation), and the user data it launches is the script
    with the log-shipping step, valid bash (and shellcheck-clean where shellcheck is)."""
    region = "us-east-1"
    net = stack_prerequisites(ctx, region, subnets=1, system="orders")
    vpc_id, subnets, group_id = net.vpc_id, net.subnets, net.group_id
    ec2, iam, role = ctx.client("ec2", region), ctx.client("iam", region), net.role
    cf = CF.replace("aws-vpc-id=vpc-0123456789abcdef0", f"aws-vpc-id={vpc_id}")
    cf = cf.replace("subnet-0123456789abcdef0,subnet-0123456789abcdef1", subnets[0])
    cf = cf.replace("sg-0123456789abcdef0", group_id)
    t, c, out = files(tmp_path, transactor=TRANSACTOR + METRICS, cf=cf + ALL_ON)
    create_cf_template(t, c, out, dry_run=False)

    cfn = ctx.client("cloudformation", region)
    cfn.create_stack(
        StackName="datomic-orders", TemplateBody=out.read_text(), Capabilities=["CAPABILITY_IAM"]
    )
    stack = cfn.describe_stacks(StackName="datomic-orders")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    logs = ctx.client("logs", region)
    [group] = logs.describe_log_groups(logGroupNamePrefix="/datomic-aws/orders")["logGroups"]
    assert group.get("retentionInDays") == 30
    assert set(iam.list_role_policies(RoleName=role)["PolicyNames"]) >= {
        names.logs_shipping_policy("orders"),
        names.session_manager_policy("orders"),
    }
    # moto 5.2.5's CloudFormation creates no AWS::CloudWatch::Alarm nor AWS::SNS::Subscription
    # (it warns and skips them; a gap the reference's §7 list lacks): their shape is cfn-lint's
    # to check (above).
    topics = ctx.client("sns", region).list_topics()["Topics"]
    assert len(topics) == 1

    [lt] = ec2.describe_launch_templates()["LaunchTemplates"]
    data = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])
    script = base64.b64decode(
        data["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"]
    ).decode()
    assert script == render_boot_script(load_transactor(t)[1], load_cf(c)[1])
    assert "amazon-cloudwatch-agent-ctl" in script
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    _shellcheck(path)
