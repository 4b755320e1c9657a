"""The template's optional resources: the transactor role's grant on an s3:// datomic-download-url
(policies.download_grant), and the observability resources of the cf file's opt-in keys
(config/observe.py).

Owns, for the latter: the CloudWatch Logs group and the transactor role's grant to write to it; the SNS topic (or
the operator's) with its e-mail subscription; the alarms on Datomic's own metrics; the Auto Scaling
group's notifications; the Session Manager grant; and the boot script's log-shipping step
(datomic_aws/boot/ship-logs.sh, inserted into the boot script only when logs are on). With every
key off it adds nothing at all, so the template stays byte-identical to one without these keys.
Pure like template.py: no AWS call, no clock; no transactor configuration value goes in (the alarm
dimension is the system name, which the template already holds).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from datomic_aws import names, policies
from datomic_aws.config.cf import CfSpec
from datomic_aws.config.download import s3_location
from datomic_aws.config.transactor import TransactorSpec
from datomic_aws.errors import Problem

LOG_GROUP = "LogGroup"
LOGS_GRANT = "LogsGrant"
SESSION_GRANT = "SessionManagerGrant"
ALARM_TOPIC = "AlarmTopic"
ALARM_SUBSCRIPTION = "AlarmEmailSubscription"
HEARTBEAT_ALARM = "HeartbeatAlarm"
DATOMIC_ALARM = "DatomicAlarm"

# Datomic's metrics (namespace, dimension, period, HeartbeatMsec) are names.py's, shared with
# status; `Alarm` counts problems that need an operator (docs.datomic.com/on-prem/monitoring.html).
METRICS_NAMESPACE = names.METRICS_NAMESPACE
METRICS_DIMENSION = names.METRICS_DIMENSION
METRICS_PERIOD_SECONDS = names.METRICS_PERIOD_SECONDS

AUTOSCALING_NOTIFICATIONS = [
    "autoscaling:EC2_INSTANCE_LAUNCH",
    "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
    "autoscaling:EC2_INSTANCE_TERMINATE",
    "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
]

# The boot script's step 4 header: the log-shipping step goes right before it, once the
# configuration (its log-dir) is in place; the agent reads the boot log from its start.
_SHIP_LOGS_BEFORE = "\n# 4. The instance helper"


def _tags(system: str) -> list[names.Tag]:
    return names.tag_list(system)


def observe_problems(transactor: TransactorSpec, cf: CfSpec) -> list[Problem]:
    """Alarms watch the metrics the transactor publishes: it must publish them (to the stack's
    region) under the system's name, the one dimension the template may name. Reported at the cf
    key that asks for alarms; the fix is in the transactor file."""
    if not cf.observe.alarms:
        return []
    asking = "aws-alarm-email" if cf.observe.alarm_email else "aws-alarm-topic-arn"
    wanted = {
        "aws-cloudwatch-region": (transactor.cloudwatch_region or "", cf.region),
        "aws-cloudwatch-dimension-value": (
            transactor.values.get("aws-cloudwatch-dimension-value", "").strip(),
            transactor.system,
        ),
    }
    return [
        Problem(
            cf.path,
            cf.line_of(asking),
            asking,
            f"the alarms watch Datomic's metrics ({METRICS_DIMENSION}={transactor.system} in "
            f"{cf.region}), but {transactor.path} has {key}={found or '(not set)'}",
            f"set {key}={value} in {transactor.path}",
        )
        for key, (found, value) in wanted.items()
        if found != value
    ]


def _grant(role: str, name: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    """An inline policy the stack puts on the transactor role: written, changed and removed with
    the template, never by ensure-transactor (resources/iam.py recognises its name as ours)."""
    return {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": name,
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            "Roles": [role],
        },
    }


def _logs(system: str, role: str, retention: int) -> dict[str, Any]:
    group = {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": names.log_group(system),
            "RetentionInDays": retention,
            "Tags": _tags(system),
        },
    }
    # The group's Arn attribute is `arn:<partition>:logs:<region>:<account>:log-group:<name>:*`:
    # the group and its streams, nothing else (partition and account from CloudFormation).
    statement = {
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
        "Resource": {"Fn::GetAtt": [LOG_GROUP, "Arn"]},
    }
    grant = _grant(role, names.logs_shipping_policy(system), [statement])
    return {LOG_GROUP: group, LOGS_GRANT: grant}


def _session_manager(system: str, role: str) -> dict[str, Any]:
    """The SSM agent (preinstalled on Amazon Linux 2023) registers the instance and opens Session
    Manager's channels. ssmmessages has no resource types, hence `*`; the registration is scoped
    to this account's instances in the stack's region. This is AmazonSSMManagedInstanceCore's
    Session Manager part only, without its Run Command, inventory and S3 rights."""
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": ["ssm:UpdateInstanceInformation"],
            "Resource": {
                "Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"
            },
        },
        {
            "Effect": "Allow",
            "Action": [
                "ssmmessages:CreateControlChannel",
                "ssmmessages:CreateDataChannel",
                "ssmmessages:OpenControlChannel",
                "ssmmessages:OpenDataChannel",
            ],
            "Resource": "*",
        },
    ]
    return {SESSION_GRANT: _grant(role, names.session_manager_policy(system), statements)}


def topic_arn(cf: CfSpec) -> Any:
    """The topic of the alarms and notifications: the operator's, or the stack's own."""
    return cf.observe.alarm_topic_arn or {"Ref": ALARM_TOPIC}


def _topic(system: str, cf: CfSpec) -> dict[str, Any]:
    if not cf.observe.alarm_email:
        return {}
    topic = {
        "Type": "AWS::SNS::Topic",
        "Properties": {
            "DisplayName": f"Datomic {system}"[:100],
            "Tags": _tags(system),
        },
    }
    subscription = {
        "Type": "AWS::SNS::Subscription",
        "Properties": {
            "Protocol": "email",
            "Endpoint": cf.observe.alarm_email,
            "TopicArn": {"Ref": ALARM_TOPIC},
        },
    }
    return {ALARM_TOPIC: topic, ALARM_SUBSCRIPTION: subscription}


def _alarm(system: str, cf: CfSpec, what: str, properties: dict[str, Any]) -> dict[str, Any]:
    topic = topic_arn(cf)
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": names.alarm(system, what),
            "Namespace": METRICS_NAMESPACE,
            "Dimensions": [{"Name": METRICS_DIMENSION, "Value": system}],
            "Period": METRICS_PERIOD_SECONDS,
            "AlarmActions": [topic],
            "OKActions": [topic],
            "Tags": _tags(system),
            **properties,
        },
    }


def _alarms(system: str, cf: CfSpec) -> dict[str, Any]:
    minutes = cf.observe.heartbeat_minutes
    heartbeat = _alarm(
        system,
        cf,
        "no-heartbeat",
        {
            "AlarmDescription": f"No Datomic transactor heartbeat (HeartbeatMsec) for {minutes} "
            f"minutes: no active transactor for system {system}",
            "MetricName": names.HEARTBEAT_METRIC,
            "Statistic": "SampleCount",
            "EvaluationPeriods": minutes,
            "DatapointsToAlarm": minutes,
            "Threshold": 1,
            "ComparisonOperator": "LessThanThreshold",
            # No datum at all is the failure this alarm is for.
            "TreatMissingData": "breaching",
        },
    )
    alarm = _alarm(
        system,
        cf,
        "alarm",
        {
            "AlarmDescription": f"The Datomic transactor of system {system} reported an Alarm",
            "MetricName": "Alarm",
            "Statistic": "Sum",
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
        },
    )
    return {HEARTBEAT_ALARM: heartbeat, DATOMIC_ALARM: alarm}


def _download_grant(transactor: TransactorSpec, cf: CfSpec, role: str) -> dict[str, Any]:
    """With an s3:// datomic-download-url, the stack grants the transactor role that object."""
    location = s3_location(cf.download_url)
    if location is None:
        return {}
    grant = policies.download_grant(
        transactor.system, role, location.bucket, location.key, cf.region
    )
    return {policies.DOWNLOAD_GRANT: grant}


def role_grants(transactor: TransactorSpec, cf: CfSpec, role: str) -> dict[str, Any]:
    """The optional resources: the S3 download's grant and those the observability keys ask
    for ({} when nothing does)."""
    system, spec = transactor.system, cf.observe
    out: dict[str, Any] = _download_grant(transactor, cf, role)
    if spec.log_retention_days is not None:
        out |= _logs(system, role, spec.log_retention_days)
    if spec.session_manager:
        out |= _session_manager(system, role)
    if spec.alarms:
        out |= _topic(system, cf) | _alarms(system, cf)
    return out


def depends_on(cf: CfSpec) -> dict[str, Any]:
    """The launch template's DependsOn on the role's grants ({} without any): a launch template
    version (a new instance) comes only once they are in place."""
    grants = [
        *([policies.DOWNLOAD_GRANT] if s3_location(cf.download_url) else []),
        *([LOGS_GRANT] if cf.observe.logs else []),
        *([SESSION_GRANT] if cf.observe.session_manager else []),
    ]
    return {"DependsOn": grants} if grants else {}


def notification_configurations(cf: CfSpec) -> dict[str, Any]:
    """The Auto Scaling group's notifications (launch, terminate and their errors) to the alarm
    topic, as the group's property; {} without a topic."""
    if not cf.observe.alarms:
        return {}
    return {
        "NotificationConfigurations": [
            {"TopicARN": topic_arn(cf), "NotificationTypes": list(AUTOSCALING_NOTIFICATIONS)}
        ]
    }


def boot_constants(transactor: TransactorSpec, cf: CfSpec) -> dict[str, str]:
    """The placeholders of the log-shipping step ({} when it is not in the script)."""
    return {"LOG_GROUP": names.log_group(transactor.system)} if cf.observe.logs else {}


def with_log_shipping(source: str, cf: CfSpec) -> str:
    """The boot script's source with the log-shipping step when logs are on, else unchanged."""
    if not cf.observe.logs:
        return source
    step = resources.files("datomic_aws.boot").joinpath("ship-logs.sh").read_text("utf-8")
    head, found, tail = source.partition(_SHIP_LOGS_BEFORE)
    if not found:
        raise AssertionError("the boot script has no step 4 to ship the logs before")
    return f"{head}\n{step.rstrip()}\n{found}{tail}"
