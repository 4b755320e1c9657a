"""Events and waiting: a stack's new events streamed through a callback until it settles.

Owns the event cursor (an operation reports only the events it caused, each once, oldest first),
the one-line form of an event, the root causes of a failure picked from its events, `Waiting` (how
long and how often to wait, and where progress lines go) and `wait_for_stack`, which polls until
the stack leaves every *_IN_PROGRESS status and turns a failure, a timeout or an interrupt into
the error that says what happened and what to run next (`ProfileNotPropagated` when the launch
template or the group was refused an instance profile not usable yet: `PROFILE_NOT_PROPAGATED`).

It must not write to AWS, print (lines go to `on_event`) or decide what to do with a stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from datomic_aws.aws_errors import stack_missing
from datomic_aws.errors import Interrupted, ProfileNotPropagated, StackError, WaitTimeout
from datomic_aws.stack.read import StackInfo, read_stack
from datomic_aws.stack.status import _CONTINUE_ROLLBACK, FAILURE_STATUSES, StackState

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

DEFAULT_TIMEOUT = 3600.0
DEFAULT_POLL_INTERVAL = 5.0
DEFAULT_HEARTBEAT_INTERVAL = 60.0

EventSink = Callable[[str], None]


def _discard(_: str) -> None:
    return None


@dataclass
class EventCursor:
    """Which events of one stack were already reported during one operation.

    `baseline` is the newest event that existed before the operation started: it and everything
    older is history and never reported.
    """

    baseline: str | None = None
    seen: set[str] = field(default_factory=set)
    events: list[Mapping[str, Any]] = field(default_factory=list)


def start_cursor(cfn: CloudFormationClient, stack: str) -> EventCursor:
    """A cursor that skips every event the stack already has."""
    try:
        page = cfn.describe_stack_events(StackName=stack)
    except ClientError as exc:
        if stack_missing(exc):
            return EventCursor()
        raise
    events = page.get("StackEvents", [])
    return EventCursor(baseline=events[0]["EventId"] if events else None)


def new_events(
    cfn: CloudFormationClient, stack: str, cursor: EventCursor
) -> list[Mapping[str, Any]]:
    """Events not yet reported, oldest first; records them in the cursor."""
    fresh: list[Mapping[str, Any]] = []
    token: str | None = None
    # DescribeStackEvents pages newest first, so stop at the first event already known.
    while True:
        try:
            page = (
                cfn.describe_stack_events(StackName=stack, NextToken=token)
                if token
                else cfn.describe_stack_events(StackName=stack)
            )
        except ClientError as exc:
            if stack_missing(exc):
                break
            raise
        done = False
        for event in page.get("StackEvents", []):
            event_id = event["EventId"]
            if event_id == cursor.baseline or event_id in cursor.seen:
                done = True
                break
            fresh.append(event)
        token = page.get("NextToken")
        if done or not token:
            break
    fresh.reverse()
    for known in fresh:
        cursor.seen.add(known["EventId"])
    cursor.events.extend(fresh)
    return fresh


def format_event(event: Mapping[str, Any]) -> str:
    stamp = event.get("Timestamp")
    when = (
        stamp.astimezone(timezone.utc).strftime("%H:%M:%SZ") if isinstance(stamp, datetime) else "-"
    )
    reason = event.get("ResourceStatusReason")
    line = (
        f"{when} {event.get('LogicalResourceId', '?')} {event.get('ResourceType', '?')}"
        f" {event.get('ResourceStatus', '?')}"
    )
    return f"{line}: {reason}" if reason else line


def _is_cancellation(reason: str) -> bool:
    return "cancelled" in reason.lower() or "canceled" in reason.lower()


def failure_reasons(events: Collection[Mapping[str, Any]], limit: int = 3) -> list[str]:
    """The first failed events' `LogicalId: reason`, root causes before the cascade they cause."""
    failed = [
        e
        for e in events
        if str(e.get("ResourceStatus", "")).endswith("_FAILED") and e.get("ResourceStatusReason")
    ]
    # Stack-level failures and "Resource creation cancelled" only echo the real cause.
    causes = [
        e
        for e in failed
        if e.get("ResourceType") != "AWS::CloudFormation::Stack"
        and not _is_cancellation(str(e["ResourceStatusReason"]))
    ] or failed
    return [
        f"{e.get('LogicalResourceId', '?')}: {e['ResourceStatusReason']}" for e in causes[:limit]
    ]


# Reference §11: IAM is eventually consistent, and EC2/Auto Scaling refuse an instance profile
# created or given its role seconds before. CloudFormation reports that only in an event's free
# text, with no error code: the one place a stack event's reason is matched by its words, and only
# on a failed event of the launch template or the group. Auto Scaling with a launch template says
# "You must use a valid fully-formed launch template. Value (<profile>) for parameter
# iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name" (".arn" / "ARN" when the
# profile is named by ARN); with a launch configuration, "Invalid IamInstanceProfile: <profile>".
# The lead-in alone ("a valid fully-formed launch template") also prefixes other refusals (an AMI
# that does not exist), so it is not one of them.
PROFILE_NOT_PROPAGATED = (
    "Invalid IAM Instance Profile name",
    "Invalid IAM Instance Profile ARN",
    "Invalid IamInstanceProfile",
)
_PROFILE_USERS = ("AWS::EC2::LaunchTemplate", "AWS::AutoScaling::AutoScalingGroup")


def profile_not_propagated(events: Collection[Mapping[str, Any]]) -> bool:
    """Whether a failed event of the launch template or the group gives a reason of
    PROFILE_NOT_PROPAGATED (the profile was not usable yet)."""
    return any(
        str(e.get("ResourceStatus", "")).endswith("_FAILED")
        and e.get("ResourceType") in _PROFILE_USERS
        and any(text in str(e.get("ResourceStatusReason", "")) for text in PROFILE_NOT_PROPAGATED)
        for e in events
    )


def _watch_hint(region: str, name: str) -> str:
    return f"watch it with `datomic-aws status {region} {name}`"


def wait_for_stack(
    cfn: CloudFormationClient,
    name: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
    on_event: EventSink = _discard,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    cursor: EventCursor | None = None,
    raise_on_failure: bool = True,
    pending: Collection[str] = (),
    display_name: str | None = None,
) -> StackInfo | None:
    """Wait until the stack (name or id) leaves every *_IN_PROGRESS status, streaming new events.

    Each new event goes to `on_event` once, oldest first; a heartbeat line goes there when nothing
    happened for `heartbeat_interval` seconds. Statuses in `pending` count as not settled yet (the
    REVIEW_IN_PROGRESS a CREATE change set shows until its execution is visible). On a failure
    status raises StackError quoting the first failed events, unless `raise_on_failure` is False.
    Returns the final stack, or None when it is gone.
    """
    region = cfn.meta.region_name
    label = display_name or name
    start = clock()
    last_activity = start
    info: StackInfo | None = None
    try:
        if cursor is None:
            cursor = start_cursor(cfn, name)
        while True:
            info = read_stack(cfn, name)
            for event in new_events(cfn, info.stack_id if info else name, cursor):
                on_event(format_event(event))
                last_activity = clock()
            if info is None or (
                info.state is not StackState.IN_PROGRESS and info.status not in pending
            ):
                break
            now = clock()
            if now - start >= timeout:
                raise _still_running(info, timeout, region, label)
            if now - last_activity >= heartbeat_interval:
                on_event(f"... stack {label} still {info.status} ({int(now - start)}s)")
                last_activity = now
            sleep(max(0.0, min(poll_interval, timeout - (now - start))))
    except KeyboardInterrupt:
        status = info.status if info else "in progress"
        raise Interrupted(
            f"interrupted while waiting for stack {label} ({status})",
            f"{region} {label}",
            f"the operation continues in AWS; {_watch_hint(region, label)} and rerun the same"
            " command to resume",
        ) from None
    if raise_on_failure and info is not None and info.status in FAILURE_STATUSES:
        raise _ended(info, cursor, region, label)
    return info


def _still_running(info: StackInfo, timeout: float, region: str, label: str) -> WaitTimeout:
    return WaitTimeout(
        f"stack {label} is still {info.status} after {int(timeout)}s",
        f"{region} {label}",
        f"it keeps going in AWS; {_watch_hint(region, label)} and rerun the same"
        " command once it settles, or raise --timeout",
    )


def _ended(info: StackInfo, cursor: EventCursor, region: str, label: str) -> StackError:
    """The failure a stack ended in, quoting its first failed events."""
    reasons = failure_reasons(cursor.events) or ([info.reason] if info.reason else [])
    detail = "; ".join(reasons) if reasons else "no reason reported"
    what, where, hint = (
        f"stack {label} ended {info.status}: {detail}",
        f"{region} {label}",
        _failure_hint(info, region, label),
    )
    if profile_not_propagated(cursor.events):
        return ProfileNotPropagated(what, where, hint, status=info.status)
    return StackError(what, where, hint)


def _failure_hint(info: StackInfo, region: str, name: str) -> str:
    if info.status == "ROLLBACK_COMPLETE":
        return "fix the cause above, then rerun create-cf-stack with --recreate-failed"
    if info.status == "UPDATE_ROLLBACK_COMPLETE":
        return "the previous template is back in place; fix the cause above and rerun update-stack"
    if info.state is StackState.NEEDS_CONTINUE_ROLLBACK:
        return _CONTINUE_ROLLBACK.hint.format(region=region, stack=name)
    return f"fix the cause above; {_watch_hint(region, name)}"


@dataclass(frozen=True)
class Waiting:
    """How long and how often to wait, and where progress lines go."""

    timeout: float = DEFAULT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    on_event: EventSink = _discard
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
