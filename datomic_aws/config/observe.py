"""The observability keys of `cf.properties` (logs, alarms, Session Manager) as a typed spec.

Owns what these opt-in keys mean and the checks across them that the schema (cf.schema.json:
types, CloudWatch Logs' retention values, e-mail and topic ARN forms) cannot express. Every key is
off when absent: an ObserveSpec of defaults adds nothing to the template. Pure: no AWS, no I/O;
the stack resources they create are template_observe.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datomic_aws.errors import Problem
from datomic_aws.properties import PropertiesText

RETENTION_KEY = "aws-log-group-retention-days"
EMAIL_KEY = "aws-alarm-email"
TOPIC_KEY = "aws-alarm-topic-arn"
HEARTBEAT_KEY = "aws-alarm-heartbeat-minutes"
SESSION_KEY = "aws-session-manager"

# Minutes without a HeartbeatMsec datum before the heartbeat alarm fires: the transactor reports
# its metrics every minute, so five missed reports are an outage, not a late batch.
DEFAULT_HEARTBEAT_MINUTES = 5


@dataclass(frozen=True)
class ObserveSpec:
    """Off when None/False. `alarm_email` and `alarm_topic_arn` exclude each other."""

    log_retention_days: int | None = None
    alarm_email: str | None = None
    alarm_topic_arn: str | None = None
    heartbeat_minutes: int = DEFAULT_HEARTBEAT_MINUTES
    session_manager: bool = False

    @property
    def logs(self) -> bool:
        return self.log_retention_days is not None

    @property
    def alarms(self) -> bool:
        return bool(self.alarm_email or self.alarm_topic_arn)

    @property
    def any(self) -> bool:
        return self.logs or self.alarms or self.session_manager


def _text(values: Mapping[str, str], key: str) -> str | None:
    return values.get(key, "").strip() or None


def observe_problems(
    props: PropertiesText, typed: Mapping[str, Any], failed: set[str | None]
) -> list[Problem]:
    """What the keys say together: one topic, the topic in the stack's region, the heartbeat
    minutes only with a topic to tell. (Each key's own form is the schema's: a key in `failed`
    already has its problem.)"""
    values = props.values()
    problems: list[Problem] = []
    email, topic = _text(values, EMAIL_KEY), _text(values, TOPIC_KEY)
    if email and topic:
        problems.append(
            Problem(
                props.path,
                props.line_of(TOPIC_KEY),
                TOPIC_KEY,
                f"{TOPIC_KEY} and {EMAIL_KEY} are both set",
                f"keep {TOPIC_KEY} to use your topic, or {EMAIL_KEY} to have the stack create one",
            )
        )
    region = typed.get("aws-region")
    # Alarm actions and Auto Scaling notifications only reach a topic of their own region.
    if (
        topic
        and TOPIC_KEY not in failed
        and isinstance(region, str)
        and topic.split(":")[3:4] != [region]
    ):
        problems.append(
            Problem(
                props.path,
                props.line_of(TOPIC_KEY),
                TOPIC_KEY,
                f"{TOPIC_KEY} is a topic of another region than aws-region {region}",
                f"use a topic in {region}, or {EMAIL_KEY} to have the stack create one",
            )
        )
    if _text(values, HEARTBEAT_KEY) and HEARTBEAT_KEY not in failed and not (email or topic):
        problems.append(
            Problem(
                props.path,
                props.line_of(HEARTBEAT_KEY),
                HEARTBEAT_KEY,
                f"{HEARTBEAT_KEY} is set but no alarm is ({EMAIL_KEY} and {TOPIC_KEY} are blank)",
                f"set {EMAIL_KEY} or {TOPIC_KEY}, or remove {HEARTBEAT_KEY}",
            )
        )
    return problems


def observe_spec(props: PropertiesText, typed: Mapping[str, Any]) -> ObserveSpec:
    """The spec of keys already validated (schema and observe_problems)."""
    values = props.values()
    retention = typed.get(RETENTION_KEY)
    minutes = typed.get(HEARTBEAT_KEY)
    return ObserveSpec(
        log_retention_days=int(retention) if retention is not None else None,
        alarm_email=_text(values, EMAIL_KEY),
        alarm_topic_arn=_text(values, TOPIC_KEY),
        heartbeat_minutes=int(minutes) if minutes is not None else DEFAULT_HEARTBEAT_MINUTES,
        session_manager=typed.get(SESSION_KEY) is True,
    )
