"""CloudFormation stack lifecycle: status table, template transport, change sets, waiting, events.

Owns the classification of every CloudFormation stack status and the one decision function that
create-cf-stack, update-stack and delete-cf-stack share, ownership included (a stack that is not
this system's is refused before any write; `--adopt` takes over an untagged one); the recognition and
migration of stacks made by Datomic's `bin/datomic create-cf-stack`; the tool-owned templates bucket
and the upload of templates into it; change sets (created with deterministic names and tokens so a
rerun after a crash converges); waiting on a stack while streaming its new events through a callback.

It must not print, prompt, build boto3 sessions (clients come from the `AwsContext` passed in), write
to any resource other than the named stack, its change sets and the templates bucket (it only reads
the stack's Auto Scaling groups: their ownership tags, and their instances during a migration), or
replace instances (replace.py does that after an update).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from datomic_aws import aws, names
from datomic_aws.changes import Action, Change, noop
from datomic_aws.errors import (
    DatomicAwsError,
    Interrupted,
    NotOursError,
    StackError,
    UsageError,
    WaitTimeout,
)
from datomic_aws.resources import s3 as s3_bucket

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_s3 import S3Client

    from datomic_aws.aws import AwsContext

# CloudFormation rejects a TemplateBody larger than this; bigger templates must go by TemplateURL.
MAX_TEMPLATE_BODY = 51_200

DEFAULT_TIMEOUT = 3600.0
DEFAULT_POLL_INTERVAL = 5.0
DEFAULT_HEARTBEAT_INTERVAL = 60.0

# Writes a --dry-run may make: a change set is how CloudFormation previews, and it is deleted again.
DRY_RUN_WRITES = frozenset({"cloudformation:CreateChangeSet", "cloudformation:DeleteChangeSet"})
# ...plus, for a template too large for TemplateBody, the templates bucket and the upload.
TEMPLATE_UPLOAD_WRITES = frozenset(
    {
        "s3:CreateBucket",
        "s3:PutPublicAccessBlock",
        "s3:PutBucketEncryption",
        "s3:PutBucketPolicy",
        "s3:PutBucketTagging",
        "s3:PutObject",
    }
)


def dry_run_writes(template: str) -> frozenset[str]:
    """The `AwsContext.allowed_writes` a dry run of create/update needs for this template."""
    if len(template.encode("utf-8")) > MAX_TEMPLATE_BODY:
        return DRY_RUN_WRITES | TEMPLATE_UPLOAD_WRITES
    return DRY_RUN_WRITES


# --------------------------------------------------------------------------------------------
# Status table and decisions


class StackState(str, Enum):
    ABSENT = "absent"
    DELETED = "deleted"
    READY = "ready"
    IN_PROGRESS = "in-progress"
    REVIEW = "review"
    ROLLBACK_COMPLETE = "rollback-complete"
    NEEDS_CONTINUE_ROLLBACK = "needs-continue-rollback"
    FAILED = "failed"


_S = StackState

# Every value of botocore's cloudformation StackStatus enum; tests/test_stack.py walks the model.
STATUS_STATES: Mapping[str, StackState] = MappingProxyType(
    {
        "CREATE_IN_PROGRESS": _S.IN_PROGRESS,
        "CREATE_FAILED": _S.FAILED,
        "CREATE_COMPLETE": _S.READY,
        "ROLLBACK_IN_PROGRESS": _S.IN_PROGRESS,
        "ROLLBACK_FAILED": _S.FAILED,
        # A create that failed and rolled back: the stack can only be deleted.
        "ROLLBACK_COMPLETE": _S.ROLLBACK_COMPLETE,
        "DELETE_IN_PROGRESS": _S.IN_PROGRESS,
        "DELETE_FAILED": _S.FAILED,
        "DELETE_COMPLETE": _S.DELETED,
        "UPDATE_IN_PROGRESS": _S.IN_PROGRESS,
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS": _S.IN_PROGRESS,
        "UPDATE_COMPLETE": _S.READY,
        "UPDATE_FAILED": _S.FAILED,
        "UPDATE_ROLLBACK_IN_PROGRESS": _S.IN_PROGRESS,
        # Stuck until someone runs continue-update-rollback (or deletes the stack).
        "UPDATE_ROLLBACK_FAILED": _S.NEEDS_CONTINUE_ROLLBACK,
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS": _S.IN_PROGRESS,
        # The previous template is back in place: updatable again.
        "UPDATE_ROLLBACK_COMPLETE": _S.READY,
        # Only a change set exists, never executed: nothing to wait for, nothing deployed.
        "REVIEW_IN_PROGRESS": _S.REVIEW,
        "IMPORT_IN_PROGRESS": _S.IN_PROGRESS,
        "IMPORT_COMPLETE": _S.READY,
        "IMPORT_ROLLBACK_IN_PROGRESS": _S.IN_PROGRESS,
        "IMPORT_ROLLBACK_FAILED": _S.FAILED,
        "IMPORT_ROLLBACK_COMPLETE": _S.READY,
    }
)

# Terminal statuses that mean the operation we waited for did not do what was asked.
FAILURE_STATUSES = frozenset(
    {"ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
    | {s for s in STATUS_STATES if s.endswith("_FAILED")}
)


def classify(status: str | None) -> StackState:
    """The state of a stack status; None (no such stack) is ABSENT."""
    if status is None:
        return StackState.ABSENT
    try:
        return STATUS_STATES[status]
    except KeyError:
        raise StackError(
            f"unknown CloudFormation stack status {status}",
            "",
            "upgrade datomic-aws; nothing was changed",
        ) from None


class Intent(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Verdict(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    RECREATE = "recreate"  # delete the failed stack, then create
    COMPARE = "compare"  # create on an existing stack: no-op if the template is the same
    NOOP = "noop"
    WAIT = "wait"
    REFUSE = "refuse"
    ADOPT = "adopt"  # update an untagged stack and take it over (--adopt)


class Owner(str, Enum):
    """Whose a stack is, from its tags (design §7: ours = managed-by and our datomic:system)."""

    OURS = "ours"
    UNTAGGED = "untagged"  # no other system's tag: `--adopt` may take it over
    FOREIGN = "foreign"  # tagged for another system: never written to, not even with --adopt


def owner_of(tags: Mapping[str, str], system: str) -> Owner:
    if system and names.is_ours(dict(tags), system):
        return Owner.OURS
    theirs = tags.get(names.TAG_SYSTEM)
    if theirs is not None and theirs != system:
        return Owner.FOREIGN
    return Owner.UNTAGGED


def tags_text(tags: Mapping[str, str]) -> str:
    shown = [f"{k}={v}" for k, v in sorted(tags.items()) if not k.startswith("aws:")]
    return ", ".join(shown) if shown else "no tags"


@dataclass(frozen=True)
class Decision:
    """What to do with a stack; for REFUSE, `what` and `hint` may name {stack}, {region}, and for
    an ownership refusal {tags} (what the stack carries) and {system} (the system of this run)."""

    verdict: Verdict
    what: str = ""
    hint: str = ""
    ownership: bool = False


_CONTINUE_ROLLBACK = Decision(
    Verdict.REFUSE,
    "the last update failed to roll back",
    "run `aws cloudformation continue-update-rollback --region {region} --stack-name {stack}`"
    " (skip the stuck resources if needed), wait for UPDATE_ROLLBACK_COMPLETE, then rerun",
)
_FAILED = Decision(
    Verdict.REFUSE,
    "the stack is in a failed state datomic-aws does not repair",
    "inspect its events (`datomic-aws status {region} {stack}` or the console), fix or delete it"
    " with `datomic-aws delete-cf-stack {region} {stack}`, then rerun",
)


_NOT_MANAGED = "stack {stack} is not managed by datomic-aws ({tags})"
_FOREIGN_WHAT = "stack {stack} belongs to another system ({tags})"
_UNTAGGED = Decision(
    Verdict.REFUSE,
    _NOT_MANAGED,
    "if it is yours to manage, rerun with --adopt: its change set is shown, then it is updated and"
    " tagged for system {system}; otherwise use another stack name",
    ownership=True,
)
_DATOMIC_ERA = Decision(
    Verdict.REFUSE,
    "stack {stack} was made by Datomic's bin/datomic create-cf-stack (a LaunchConfiguration"
    " group, {tags})",
    "rerun with --adopt to migrate it to a launch template: a new group starts beside the old one"
    " and is in service before the old group is removed",
    ownership=True,
)
_FOREIGN = Decision(
    Verdict.REFUSE,
    _FOREIGN_WHAT,
    "datomic-aws never writes to another system's stack, not even with --adopt; use another stack"
    " name (aws-stack-name in cf.properties)",
    ownership=True,
)
_DELETE_HINT = (
    "delete-cf-stack deletes only the stacks datomic-aws manages; if it is yours to remove, use"
    " `aws cloudformation delete-stack --region {region} --stack-name {stack}`"
)
_UNTAGGED_DELETE = Decision(Verdict.REFUSE, _NOT_MANAGED, _DELETE_HINT, ownership=True)
_FOREIGN_DELETE = Decision(Verdict.REFUSE, _FOREIGN_WHAT, _DELETE_HINT, ownership=True)


def decide(
    state: StackState,
    intent: Intent,
    *,
    recreate_failed: bool = False,
    ours: bool = False,
    owner: Owner | None = None,
    adopt: bool = False,
    legacy: bool = False,
) -> Decision:
    """The one decision table for create, update and delete, ownership included.

    `owner` (default: OURS when `ours`, else UNTAGGED) says whose the stack is; an existing stack
    that is not ours is refused for update and delete before anything else (never waited on,
    never written), except that `adopt` lets an update take over an untagged one. `legacy` marks a
    stack made by Datomic's bin/datomic, for the hint.
    """
    who = owner if owner is not None else (Owner.OURS if ours else Owner.UNTAGGED)
    absent = state in (StackState.ABSENT, StackState.DELETED)
    if not absent and intent is not Intent.CREATE and who is not Owner.OURS:
        if intent is Intent.DELETE:
            return _FOREIGN_DELETE if who is Owner.FOREIGN else _UNTAGGED_DELETE
        if who is Owner.FOREIGN:
            return _FOREIGN
        if not adopt:
            return _DATOMIC_ERA if legacy else _UNTAGGED
        if state is StackState.READY:
            return Decision(Verdict.ADOPT)
        # Adopting a stack that is not updatable yet: the state table below decides.
    if state is StackState.IN_PROGRESS:
        return Decision(Verdict.WAIT)
    if intent is Intent.DELETE:
        return Decision(Verdict.NOOP if absent else Verdict.DELETE)
    if intent is Intent.CREATE:
        if state is StackState.REVIEW and who is Owner.FOREIGN:
            # Another system's create, never executed: not ours to complete. (An untagged one
            # holds no resource, and may be our own create whose tags are not visible yet.)
            return _FOREIGN
        if absent or state is StackState.REVIEW:
            # A REVIEW_IN_PROGRESS stack only holds change sets; a CREATE change set still applies.
            return Decision(Verdict.CREATE)
        if state is StackState.READY:
            return Decision(Verdict.COMPARE)
        if state is StackState.ROLLBACK_COMPLETE:
            if recreate_failed and who is Owner.OURS:
                return Decision(Verdict.RECREATE)
            if recreate_failed:
                return Decision(
                    Verdict.REFUSE,
                    "the failed stack was not created by datomic-aws (no datomic:system tag)",
                    "delete it yourself if it is yours to remove, then rerun",
                )
            return Decision(
                Verdict.REFUSE,
                "a previous create failed and rolled back; such a stack can only be deleted",
                "rerun with --recreate-failed to delete it and create it again",
            )
        if state is StackState.NEEDS_CONTINUE_ROLLBACK:
            return _CONTINUE_ROLLBACK
        return _FAILED
    # Intent.UPDATE
    if absent or state is StackState.REVIEW:
        return Decision(
            Verdict.REFUSE,
            "the stack does not exist yet",
            "create it with `datomic-aws create-cf-stack {region} {stack} TEMPLATE_JSON`",
        )
    if state is StackState.READY:
        return Decision(Verdict.UPDATE)
    if state is StackState.ROLLBACK_COMPLETE:
        return Decision(
            Verdict.REFUSE,
            "a previous create failed and rolled back; such a stack cannot be updated",
            "rerun `datomic-aws create-cf-stack {region} {stack} TEMPLATE_JSON --recreate-failed`",
        )
    if state is StackState.NEEDS_CONTINUE_ROLLBACK:
        return _CONTINUE_ROLLBACK
    return _FAILED


# --------------------------------------------------------------------------------------------
# Reading a stack


@dataclass(frozen=True)
class StackInfo:
    name: str
    stack_id: str
    status: str
    state: StackState
    reason: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    termination_protection: bool = False
    outputs: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)


def _does_not_exist(exc: BaseException) -> bool:
    # The one documented exception to matching by code: CloudFormation reports a missing stack as
    # a generic ValidationError whose only distinguishing mark is this message text.
    if not aws.is_error(exc, "ValidationError"):
        return False
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
    return "does not exist" in message


def read_stack(cfn: CloudFormationClient, name: str) -> StackInfo | None:
    """The stack by name or id; None when there is none (a deleted stack read by id is DELETED)."""
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except Exception as exc:
        if _does_not_exist(exc):
            return None
        raise
    if not stacks:
        return None
    s = stacks[0]
    status = str(s["StackStatus"])
    return StackInfo(
        name=s["StackName"],
        stack_id=s.get("StackId", name),
        status=status,
        state=classify(status),
        reason=s.get("StackStatusReason", ""),
        tags={t["Key"]: t["Value"] for t in s.get("Tags", [])},
        termination_protection=bool(s.get("EnableTerminationProtection", False)),
        outputs={
            o["OutputKey"]: o.get("OutputValue", "")
            for o in s.get("Outputs", [])
            if "OutputKey" in o
        },
        parameters={
            p["ParameterKey"]: p.get("ParameterValue", "")
            for p in s.get("Parameters", [])
            if "ParameterKey" in p
        },
    )


def deployed_template(cfn: CloudFormationClient, stack: str) -> Any:
    """The template the stack was last deployed with, JSON-parsed (None if it is not JSON)."""
    # botocore already decodes a JSON TemplateBody of GetTemplate into a dict; YAML stays a str.
    body: Any = cfn.get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return body


def template_matches(cfn: CloudFormationClient, stack: str, template: str) -> bool:
    """Whether the deployed template equals the local JSON (semantically, not byte for byte)."""
    return bool(deployed_template(cfn, stack) == json.loads(template))


def _declared_system(doc: Any) -> str | None:
    """The system our template says it was built for (Metadata.DatomicAws.System)."""
    meta = doc.get("Metadata") if isinstance(doc, dict) else None
    ours = meta.get("DatomicAws") if isinstance(meta, dict) else None
    system = ours.get("System") if isinstance(ours, dict) else None
    return str(system) if system else None


# --------------------------------------------------------------------------------------------
# Stacks made by Datomic's bin/datomic create-cf-stack (reference §5)

_ASG = "AWS::AutoScaling::AutoScalingGroup"
_LAUNCH_CONFIGURATION = "AWS::AutoScaling::LaunchConfiguration"
# Datomic's parameters that collide with ours keep their deployed values under this prefix while
# both groups run, so the old launch configuration resolves to exactly what it was built from.
LEGACY_PREFIX = "Legacy"


@dataclass(frozen=True)
class Legacy:
    """A group on a launch configuration, as Datomic's template made it (LaunchGroup on
    LaunchConfig); `kept` is every deployed resource our template does not have."""

    group: str
    config: str
    kept: tuple[str, ...]


def datomic_era(deployed: Any, ours: Mapping[str, Any] | None = None) -> Legacy | None:
    """The LaunchConfiguration-based group of a deployed template, or None.

    Datomic's generated template (reference §5) is an AutoScalingGroup `LaunchGroup` whose
    LaunchConfigurationName is a Ref to the LaunchConfiguration `LaunchConfig`; any group on a
    launch configuration is recognised the same way.
    """
    resources = deployed.get("Resources") if isinstance(deployed, dict) else None
    if not isinstance(resources, dict):
        return None
    for logical, body in sorted(resources.items()):
        if not isinstance(body, dict) or body.get("Type") != _ASG:
            continue
        config = (body.get("Properties") or {}).get("LaunchConfigurationName")
        target = config.get("Ref") if isinstance(config, dict) else None
        if isinstance(target, str) and (resources.get(target) or {}).get("Type") == (
            _LAUNCH_CONFIGURATION
        ):
            mine = (ours or {}).get("Resources", {})
            kept = tuple(sorted(k for k in resources if k not in mine))
            return Legacy(logical, target, kept)
    return None


_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def _references(node: Any, found: set[str]) -> None:
    """Every name a node refers to by Ref or by ${Name} inside Fn::Sub."""
    if isinstance(node, dict):
        if isinstance(node.get("Ref"), str):
            found.add(node["Ref"])
        sub = node.get("Fn::Sub")
        text = sub[0] if isinstance(sub, list) and sub else sub
        if isinstance(text, str):
            found.update(_SUB_NAME.findall(text))
        for value in node.values():
            _references(value, found)
    elif isinstance(node, list):
        for value in node:
            _references(value, found)


def _renamed(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _renamed(v, renames) for k, v in node.items()}
        if isinstance(node.get("Ref"), str) and node["Ref"] in renames:
            out["Ref"] = renames[node["Ref"]]
        sub = out.get("Fn::Sub")
        if isinstance(sub, str):
            out["Fn::Sub"] = _SUB_NAME.sub(lambda m: "${" + renames.get(m[1], m[1]) + "}", sub)
        elif isinstance(sub, list) and sub and isinstance(sub[0], str):
            local = set(sub[1]) if len(sub) > 1 and isinstance(sub[1], dict) else set()
            out["Fn::Sub"] = [
                _SUB_NAME.sub(
                    lambda m: "${" + (m[1] if m[1] in local else renames.get(m[1], m[1])) + "}",
                    sub[0],
                ),
                *sub[1:],
            ]
        return out
    if isinstance(node, list):
        return [_renamed(v, renames) for v in node]
    return node


def _merge_section(into: dict[str, Any], extra: Mapping[str, Any], section: str) -> None:
    for key, value in extra.items():
        if key in into and into[key] != value:
            raise StackError(
                f"cannot migrate: the deployed template's {section} {key} differs from ours",
                "",
                "rename it in the deployed stack, or migrate by hand",
            )
        into[key] = value


def bridge_template(
    deployed: Mapping[str, Any],
    template: str,
    legacy: Legacy,
    deployed_parameters: Mapping[str, str],
    parameters: Mapping[str, str] | None,
) -> tuple[str, dict[str, str]]:
    """Our template plus the deployed legacy resources, unchanged in what they resolve to.

    The first step of a migration: the new group and launch template start beside the old group.
    A deployed parameter the legacy resources use and ours also declares with another value is
    renamed `Legacy<Name>` (keeping the deployed value); the others keep their names and values.
    CloudFormation compares what a resource resolves to, so the old group is left as it is.
    Returns the template text (deterministic) and the parameter values it needs.
    """
    ours = json.loads(template)
    bridge: dict[str, Any] = json.loads(template)
    resources = dict(deployed.get("Resources", {}))
    kept = {k: resources[k] for k in legacy.kept}
    conditions = dict(deployed.get("Conditions", {}))
    used: set[str] = set()
    _references([kept, conditions], used)
    deployed_params: Mapping[str, Any] = deployed.get("Parameters", {})
    desired = _desired_parameters(template, parameters)
    renames: dict[str, str] = {}
    values: dict[str, str] = {}
    kept_params: dict[str, Any] = {}
    for name in sorted(used & set(deployed_params)):
        definition = deployed_params[name]
        if definition.get("NoEcho"):
            raise StackError(
                f"cannot migrate: the deployed parameter {name} is NoEcho, its value is unknown",
                "",
                "migrate by hand",
            )
        value = deployed_parameters.get(name, str(definition.get("Default", "")))
        if name in ours.get("Parameters", {}):
            if desired.get(name) == value:
                continue  # same value: the shared parameter resolves as before
            renames[name] = f"{LEGACY_PREFIX}{name}"
        kept_params[renames.get(name, name)] = definition
        values[renames.get(name, name)] = value
    clash = (set(kept_params) - set(renames.values())) & set(ours.get("Parameters", {}))
    if clash or set(renames.values()) & set(ours.get("Parameters", {})):
        raise StackError(
            f"cannot migrate: parameter names clash ({', '.join(sorted(clash))})",
            "",
            "migrate by hand",
        )
    bridge.setdefault("Parameters", {}).update(kept_params)
    bridge["Resources"].update(_renamed(kept, renames))
    _merge_section(bridge.setdefault("Mappings", {}), deployed.get("Mappings", {}), "mapping")
    if conditions:
        _merge_section(
            bridge.setdefault("Conditions", {}), _renamed(conditions, renames), "condition"
        )
    if not bridge["Mappings"]:
        del bridge["Mappings"]
    return json.dumps(bridge, indent=2, sort_keys=True) + "\n", {**(parameters or {}), **values}


MIGRATION_NOTE = "Datomic bin/datomic stack: LaunchConfiguration -> LaunchTemplate"


def migration_note(legacy: Legacy, ours: Mapping[str, Any]) -> str:
    groups = [k for k, v in sorted(ours.get("Resources", {}).items()) if v.get("Type") == _ASG]
    new = groups[0] if groups else "(no group)"
    return f"{MIGRATION_NOTE}; the group {legacy.group} is replaced by {new}"


def plans_migration(changes: Collection[Change]) -> bool:
    """Whether update_stack's changes are (or plan) the migration of a Datomic-era stack."""
    return any(d.startswith(MIGRATION_NOTE) for c in changes for d in c.details)


# --------------------------------------------------------------------------------------------
# Events and waiting

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
    except Exception as exc:
        if _does_not_exist(exc):
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
        except Exception as exc:
            if _does_not_exist(exc):
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
                raise WaitTimeout(
                    f"stack {label} is still {info.status} after {int(timeout)}s",
                    f"{region} {label}",
                    f"it keeps going in AWS; {_watch_hint(region, label)} and rerun the same"
                    " command once it settles, or raise --timeout",
                )
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
        reasons = failure_reasons(cursor.events) or ([info.reason] if info.reason else [])
        detail = "; ".join(reasons) if reasons else "no reason reported"
        raise StackError(
            f"stack {label} ended {info.status}: {detail}",
            f"{region} {label}",
            _failure_hint(info, region, label),
        )
    return info


def _failure_hint(info: StackInfo, region: str, name: str) -> str:
    if info.status == "ROLLBACK_COMPLETE":
        return "fix the cause above, then rerun create-cf-stack with --recreate-failed"
    if info.status == "UPDATE_ROLLBACK_COMPLETE":
        return "the previous template is back in place; fix the cause above and rerun update-stack"
    if info.state is StackState.NEEDS_CONTINUE_ROLLBACK:
        return _CONTINUE_ROLLBACK.hint.format(region=region, stack=name)
    return f"fix the cause above; {_watch_hint(region, name)}"


# --------------------------------------------------------------------------------------------
# Templates bucket and upload

# The templates bucket serves every system of the account and region, so it is tagged managed-by
# only (plus its purpose), never datomic:system.
_TEMPLATES_TAGS = MappingProxyType({"datomic:purpose": "cloudformation-templates"})
_TEMPLATES_TAKEN_HINT = (
    "another AWS account owns this bucket name, so templates cannot be uploaded"
    " in this region; contact AWS support or use another account"
)


def _missing(exc: BaseException, *codes: str) -> bool:
    return aws.is_error(exc, "404", "NotFound", *codes)


def ensure_templates_bucket(s3: S3Client, account: str, region: str) -> Change:
    """Create or converge the tool-owned templates bucket; reads first, writes only what differs."""
    spec = s3_bucket.BucketSpec(
        names.templates_bucket(account, region),
        region,
        system="",
        explicit=False,
        key="the region",
        shared=True,
        extra_tags=_TEMPLATES_TAGS,
        taken_hint=_TEMPLATES_TAKEN_HINT,
    )
    # The name is the tool's own (it embeds the caller's account and region) and the stack
    # commands have no --adopt: a bucket of that name in this account is ours to converge,
    # re-tagging it if its tags were stripped.
    return s3_bucket.ensure_bucket(s3, spec, dry_run=False, adopt=True)


def template_digest(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def template_key(stack: str, template: str) -> str:
    return f"{stack}/{template_digest(template)}.json"


def template_url(bucket: str, region: str, key: str) -> str:
    # The virtual-hosted regional form: what CloudFormation documents, and what moto resolves even
    # as a server (a 127.0.0.1 endpoint URL would not be).
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{bucket}.s3.{region}.{suffix}/{key}"


def upload_template(s3: S3Client, account: str, region: str, stack: str, template: str) -> str:
    """Put the template under `<stack>/<sha256>.json` unless it is there already; its URL."""
    bucket = names.templates_bucket(account, region)
    key = template_key(stack, template)
    try:
        s3.head_object(Bucket=bucket, Key=key, ExpectedBucketOwner=account)
    except Exception as exc:
        if not _missing(exc, "NoSuchKey"):
            raise
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=template.encode("utf-8"),
            ContentType="application/json",
            ExpectedBucketOwner=account,
        )
    return template_url(bucket, region, key)


# --------------------------------------------------------------------------------------------
# Create, update, delete


@dataclass(frozen=True)
class Waiting:
    """How long and how often to wait, and where progress lines go."""

    timeout: float = DEFAULT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    on_event: EventSink = _discard
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class _Run:
    """One create/update/delete: its clients, its deadline and its progress sink."""

    def __init__(self, ctx: AwsContext, region: str, name: str, waiting: Waiting | None) -> None:
        self.ctx = ctx
        self.region = region
        self.name = name
        self.w = waiting or Waiting()
        self.cfn: CloudFormationClient = ctx.client("cloudformation", region)
        self.deadline = self.w.clock() + self.w.timeout
        self.resource = f"stack/{name}"
        # Changes made on the way (the templates bucket), reported before the stack's own.
        self.side: list[Change] = []
        # Set by settle(): the template the stack was last deployed with (when it was read), the
        # system this run acts for, and whose the stack is.
        self.deployed: Any = None
        self.system = ""
        self.owner = Owner.UNTAGGED

    def say(self, line: str) -> None:
        self.w.on_event(line)

    def remaining(self) -> float:
        return self.deadline - self.w.clock()

    def wait(
        self,
        stack: str,
        *,
        cursor: EventCursor | None = None,
        raise_on_failure: bool = True,
        pending: Collection[str] = (),
    ) -> StackInfo | None:
        return wait_for_stack(
            self.cfn,
            stack,
            timeout=max(0.0, self.remaining()),
            poll_interval=self.w.poll_interval,
            heartbeat_interval=self.w.heartbeat_interval,
            on_event=self.w.on_event,
            clock=self.w.clock,
            sleep=self.w.sleep,
            cursor=cursor,
            raise_on_failure=raise_on_failure,
            pending=pending,
            display_name=self.name,
        )

    def refuse(self, decision: Decision, info: StackInfo | None) -> DatomicAwsError:
        status = info.status if info else "absent"
        fmt = {
            "stack": self.name,
            "region": self.region,
            "tags": f"tags: {tags_text(info.tags)}" if info else "",
            "system": self.system or "?",
        }
        where = f"{self.region} {self.name}"
        if decision.ownership:
            return NotOursError(decision.what.format(**fmt), where, decision.hint.format(**fmt))
        return StackError(
            f"stack is {status}: {decision.what.format(**fmt)}", where, decision.hint.format(**fmt)
        )

    def read_deployed(self, info: StackInfo) -> Any:
        try:
            return deployed_template(self.cfn, info.stack_id)
        except Exception as exc:
            # A stack that only holds change sets (REVIEW_IN_PROGRESS) has no template yet.
            if aws.is_error(exc, "ValidationError"):
                return None
            raise

    def _system_for_delete(self, info: StackInfo) -> str:
        """The system a stack to delete is ours for: the one its datomic:system tag names, when
        its deployed template (Metadata.DatomicAws.System) or else its name agrees."""
        theirs = info.tags.get(names.TAG_SYSTEM)
        if not theirs or info.tags.get(names.TAG_MANAGED) != names.MANAGED_BY:
            return ""
        if info.state is StackState.IN_PROGRESS:
            return theirs  # decided again once it settles
        self.deployed = self.read_deployed(info)
        declared = _declared_system(self.deployed)
        if declared is not None:
            return declared
        return theirs if names.stack(theirs) == self.name else ""

    def settle(
        self,
        intent: Intent,
        *,
        recreate_failed: bool = False,
        system: str = "",
        adopt: bool = False,
    ) -> tuple[Decision, StackInfo | None]:
        """Read the stack and decide, waiting out any operation already running on it.

        Ownership is part of the decision: for update and delete, a stack that is not this
        system's is refused here, before any write (see decide).
        """
        while True:
            info = read_stack(self.cfn, self.name)
            self.deployed, self.system, legacy = None, system, False
            if info is not None and intent is Intent.DELETE:
                self.system = self._system_for_delete(info)
            self.owner = owner_of(info.tags, self.system) if info else Owner.UNTAGGED
            if info is not None and intent is Intent.UPDATE and info.state is StackState.READY:
                self.deployed = self.read_deployed(info)
                legacy = datomic_era(self.deployed) is not None
            decision = decide(
                info.state if info else StackState.ABSENT,
                intent,
                recreate_failed=recreate_failed,
                owner=self.owner,
                adopt=adopt,
                legacy=legacy,
            )
            if decision.verdict is Verdict.REFUSE:
                raise self.refuse(decision, info)
            if decision.verdict is not Verdict.WAIT or info is None:
                return decision, info
            self.say(f"stack {self.name} is {info.status}; waiting for it to settle")
            self.wait(info.stack_id, raise_on_failure=False)

    def check_groups(
        self, info: StackInfo | None, template: Any = None, groups: Collection[str] = ()
    ) -> None:
        """Refuse, before any write, when one of the stack's Auto Scaling groups, the group the
        template names or one of `groups` carries a datomic:system tag for another system."""
        wanted: set[str] = set(groups)
        if info is not None:
            resources = self.cfn.describe_stack_resources(StackName=info.stack_id)
            wanted.update(
                r["PhysicalResourceId"]
                for r in resources.get("StackResources", [])
                if r.get("ResourceType") == _ASG and r.get("PhysicalResourceId")
            )
        declared = template.get("Resources", {}) if isinstance(template, dict) else {}
        for body in declared.values():
            if isinstance(body, dict) and body.get("Type") == _ASG:
                group = (body.get("Properties") or {}).get("AutoScalingGroupName")
                if isinstance(group, str):
                    wanted.add(group)
        if not wanted:
            return
        asg = self.ctx.client("autoscaling", self.region)
        found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=sorted(wanted))
        for group in found.get("AutoScalingGroups", []):
            tags = {t["Key"]: t.get("Value", "") for t in group.get("Tags", []) if "Key" in t}
            if owner_of(tags, self.system) is Owner.FOREIGN:
                raise NotOursError(
                    f"Auto Scaling group {group['AutoScalingGroupName']} of stack {self.name}"
                    f" belongs to another system (tags: {tags_text(tags)})",
                    f"{self.region} {self.name}",
                    "datomic-aws never writes to another system's group, not even with --adopt;"
                    " use another system or stack name",
                )

    def await_group(self, info: StackInfo, template: Mapping[str, Any]) -> str:
        """Wait until the template's group has its instances InService (lifecycle hook passed)."""
        logical = [k for k, v in sorted(template["Resources"].items()) if v.get("Type") == _ASG]
        if not logical:
            raise StackError(
                "cannot migrate: the template has no Auto Scaling group",
                f"{self.region} {self.name}",
                "deploy a template made by `datomic-aws create-cf-template`",
            )
        resources = self.cfn.describe_stack_resources(
            StackName=info.stack_id, LogicalResourceId=logical[0]
        )["StackResources"]
        group = resources[0]["PhysicalResourceId"]
        asg = self.ctx.client("autoscaling", self.region)
        last = -1
        try:
            while True:
                (found,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
                    "AutoScalingGroups"
                ]
                # The launch lifecycle hook holds an instance in Pending:Wait until its
                # transactor is ready (reference §11): InService means ready.
                ready = sum(
                    1
                    for i in found.get("Instances", [])
                    if i.get("LifecycleState") == "InService" and i.get("HealthStatus") == "Healthy"
                )
                wanted = max(1, int(found.get("DesiredCapacity", 1)))
                if ready != last:
                    self.say(f"group {group}: {ready} of {wanted} instance(s) in service")
                    last = ready
                if ready >= wanted:
                    return str(group)
                if self.remaining() <= 0:
                    raise WaitTimeout(
                        f"group {group} has {ready} of {wanted} instance(s) in service",
                        f"{self.region} {self.name}",
                        "the old group keeps running; check the new instances"
                        f" (`datomic-aws status {self.region} {self.name}`) and rerun the same"
                        " command to finish the migration",
                    )
                self.w.sleep(max(0.0, min(self.w.poll_interval, self.remaining())))
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted while waiting for the new group {group} of stack {self.name}",
                f"{self.region} {self.name}",
                "the old group keeps running; rerun the same command to finish the migration",
            ) from None

    def template_source(self, stack: str, template: str, *, dry_run: bool) -> dict[str, Any]:
        """TemplateURL from the templates bucket; a body only for a small dry-run preview."""
        if dry_run and len(template.encode("utf-8")) <= MAX_TEMPLATE_BODY:
            return {"TemplateBody": template}
        s3: S3Client = self.ctx.client("s3", self.region)
        account = self.ctx.account_id(self.region)
        bucket_change = ensure_templates_bucket(s3, account, self.region)
        if bucket_change.changed:
            self.say(f"{bucket_change.action.value} {bucket_change.resource}")
            self.side.append(bucket_change)
        return {"TemplateURL": upload_template(s3, account, self.region, stack, template)}

    def lift_protection(self, info: StackInfo) -> None:
        if info.termination_protection:
            self.say(f"lifting termination protection of stack {self.name}")
            self.cfn.update_termination_protection(
                StackName=info.stack_id, EnableTerminationProtection=False
            )

    def protect(self, stack_id: str) -> None:
        self.cfn.update_termination_protection(StackName=stack_id, EnableTerminationProtection=True)

    def delete(self, info: StackInfo) -> None:
        self.lift_protection(info)
        cursor = start_cursor(self.cfn, info.stack_id)
        self.say(f"deleting stack {self.name}")
        self.cfn.delete_stack(
            StackName=info.stack_id, ClientRequestToken=_token("delete", info.stack_id)
        )
        self.wait(info.stack_id, cursor=cursor)


def _token(kind: str, *parts: str) -> str:
    """Deterministic idempotency token: a retried call after a crash is recognised by AWS."""
    digest = hashlib.sha256("\0".join((kind, *parts)).encode()).hexdigest()[:40]
    return f"datomic-aws-{kind}-{digest}"


def _change_set_name(kind: str, template: str) -> str:
    return f"datomic-aws-{kind}-{template_digest(template)[:16]}"


def _check_template(template: str) -> None:
    """Refuse a template that is not a JSON object with Resources, before any AWS call."""
    try:
        doc = json.loads(template)
    except ValueError as exc:
        raise UsageError(
            f"the template is not valid JSON ({exc})", "", "regenerate it with create-cf-template"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise UsageError(
            "the template has no Resources object", "", "regenerate it with create-cf-template"
        )


def _merged_tags(system: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    return {**(extra or {}), **names.tags(system)}


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _parameter_list(parameters: Mapping[str, str] | None) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted((parameters or {}).items())]


def _template_changes(stack: str, template: str) -> list[Change]:
    """What creating from this template adds, read from the template itself (no AWS)."""
    resources = json.loads(template).get("Resources", {})
    return [
        Change(f"stack/{stack}/{logical}", Action.CREATE, (str(body.get("Type", "?")),))
        for logical, body in sorted(resources.items())
    ]


_ACTIONS = {"Add": Action.CREATE, "Remove": Action.DELETE}


def _change_set_changes(stack: str, changes: Collection[Mapping[str, Any]]) -> list[Change]:
    out: list[Change] = []
    for change in changes:
        rc = change.get("ResourceChange")
        if not rc:
            continue
        details = [str(rc.get("ResourceType", "?"))]
        if rc.get("Action") == "Modify":
            scope = ", ".join(rc.get("Scope", []))
            if scope:
                details.append(f"changes: {scope}")
            replacement = rc.get("Replacement")
            if replacement:
                details.append(f"replacement: {replacement}")
        out.append(
            Change(
                f"stack/{stack}/{rc.get('LogicalResourceId', '?')}",
                _ACTIONS.get(str(rc.get("Action")), Action.UPDATE),
                tuple(details),
            )
        )
    return out


def _is_empty_change_set(reason: str) -> bool:
    # CloudFormation has no status code for an empty change set, only these reason texts.
    return "didn't contain changes" in reason or "No updates are to be performed" in reason


def _wait_change_set(run: _Run, stack_id: str, change_set_id: str) -> dict[str, Any]:
    """Poll until the change set is created or failed; all its pages of Changes merged."""
    try:
        while True:
            described: dict[str, Any] = dict(
                run.cfn.describe_change_set(ChangeSetName=change_set_id, StackName=stack_id)
            )
            if described["Status"] in ("CREATE_COMPLETE", "FAILED", "DELETE_COMPLETE"):
                break
            if run.remaining() <= 0:
                raise WaitTimeout(
                    f"change set {described.get('ChangeSetName', change_set_id)} is still"
                    f" {described['Status']}",
                    f"{run.region} {run.name}",
                    "rerun the same command; the change set is reused",
                )
            run.w.sleep(max(0.0, min(run.w.poll_interval, run.remaining())))
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while CloudFormation prepared a change set for stack {run.name}",
            f"{run.region} {run.name}",
            "nothing was executed; rerun the same command",
        ) from None
    changes = list(described.get("Changes", []))
    token = described.get("NextToken")
    while token:
        page = run.cfn.describe_change_set(
            ChangeSetName=change_set_id, StackName=stack_id, NextToken=token
        )
        changes.extend(page.get("Changes", []))
        token = page.get("NextToken")
    described["Changes"] = changes
    return described


def _create_change_set(
    run: _Run,
    *,
    kind: str,
    change_set_type: str,
    template: str,
    source: Mapping[str, Any],
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
    base: str,
) -> tuple[str, str]:
    """Create (or find, after a crash) our change set; returns (change set id, stack id)."""
    cs_name = _change_set_name(kind, template)
    run.say(f"creating change set {cs_name} for stack {run.name}")
    try:
        response = run.cfn.create_change_set(
            StackName=run.name,
            ChangeSetName=cs_name,
            ChangeSetType=change_set_type,  # type: ignore[arg-type]
            ClientToken=_token(kind, run.name, base, template_digest(template)),
            Tags=_tag_list(tags),  # type: ignore[arg-type]
            # Every plain parameter is passed with its value, never left to "the template's default":
            # the deployed stack then states exactly what the files say, and an update whose only
            # change is a parameter's default (a new instance type) is seen as one.
            Parameters=_parameter_list(_desired_parameters(template, parameters)),  # type: ignore[arg-type]
            **source,
        )
        return response["Id"], response["StackId"]
    except Exception as exc:
        if not aws.is_error(exc, "AlreadyExistsException"):
            raise
    # Same name means same template on the same stack: a previous run's change set, reusable.
    described = run.cfn.describe_change_set(ChangeSetName=cs_name, StackName=run.name)
    return described["ChangeSetId"], described["StackId"]


def _desired_parameters(template: str, parameters: Mapping[str, str] | None) -> dict[str, str]:
    declared = json.loads(template).get("Parameters", {})
    # An SSM-typed default is reported as the path by AWS but as the resolved value by moto; the
    # path itself is part of the template, which is compared as a whole.
    out = {
        k: str(v["Default"])
        for k, v in declared.items()
        if "Default" in v and not str(v.get("Type", "")).startswith("AWS::SSM::Parameter::Value<")
    }
    out.update(parameters or {})
    return out


def _parameter_changes(
    info: StackInfo, template: str, parameters: Mapping[str, str] | None
) -> tuple[str, ...]:
    """What an operator changed in the files shows up as parameters: say which, from and to."""
    desired = _desired_parameters(template, parameters)
    return tuple(
        f"parameter {k}: {info.parameters.get(k, '(none)')} -> {v}"
        for k, v in sorted(desired.items())
        if info.parameters.get(k) != v
    )


def _protected(run: _Run, info: StackInfo, *, dry_run: bool) -> list[Change]:
    """A create killed after its execution left the stack unprotected: finish that step."""
    if info.termination_protection:
        return []
    if not dry_run:
        run.protect(info.stack_id)
    return [Change(f"{run.resource} termination protection", Action.UPDATE, ("on",))]


def _up_to_date(
    deployed: Any,
    info: StackInfo,
    template: str,
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
) -> bool:
    if any(info.tags.get(k) != v for k, v in tags.items()):
        return False
    desired = _desired_parameters(template, parameters)
    if any(info.parameters.get(k) != v for k, v in desired.items()):
        return False
    return bool(deployed == json.loads(template))


def create_stack(
    ctx: AwsContext,
    region: str,
    name: str,
    template: str,
    *,
    system: str,
    tags: Mapping[str, str] | None = None,
    parameters: Mapping[str, str] | None = None,
    recreate_failed: bool = False,
    dry_run: bool = False,
    waiting: Waiting | None = None,
) -> list[Change]:
    """Create the stack from a JSON template through a CREATE change set, then protect it.

    An existing stack with the same template is a no-op (no mutating call); with another template
    it is an error pointing to update-stack. A ROLLBACK_COMPLETE stack is deleted and created again
    only with `recreate_failed` and our tags. With `dry_run` nothing is written: the changes are
    read from the template.
    """
    _check_template(template)
    run = _Run(ctx, region, name, waiting)
    decision, info = run.settle(Intent.CREATE, recreate_failed=recreate_failed, system=system)
    if decision.verdict is Verdict.COMPARE and info is not None:
        if template_matches(run.cfn, info.stack_id, template):
            # Protection is finished only on a stack that is ours: another's is never written to.
            protect = _protected(run, info, dry_run=dry_run) if run.owner is Owner.OURS else []
            return [*protect, noop(run.resource, info.status)]
        raise StackError(
            "the stack exists with a different template",
            f"{region} {name}",
            f"use `datomic-aws update-stack {region} {name} TEMPLATE_JSON` to change it",
        )
    out: list[Change] = []
    if decision.verdict is Verdict.RECREATE and info is not None:
        out.append(
            Change(run.resource, Action.DELETE, (f"{info.status}: failed create, recreated",))
        )
        if not dry_run:
            run.delete(info)
    all_tags = _merged_tags(system, tags)
    run.check_groups(None, json.loads(template))
    if dry_run:
        return [*out, Change(run.resource, Action.CREATE), *_template_changes(name, template)]
    source = run.template_source(name, template, dry_run=False)
    change_set_id, stack_id = _create_change_set(
        run,
        kind="create",
        change_set_type="CREATE",
        template=template,
        source=source,
        tags=all_tags,
        parameters=parameters,
        base="",
    )
    described = _wait_change_set(run, stack_id, change_set_id)
    if described["Status"] != "CREATE_COMPLETE":
        reason = str(described.get("StatusReason", "no reason reported"))
        run.cfn.delete_change_set(ChangeSetName=change_set_id, StackName=stack_id)
        raise StackError(
            f"CloudFormation rejected the template: {reason}",
            f"{region} {name}",
            "fix the template (create-cf-template) and rerun",
        )
    changes = _change_set_changes(name, described["Changes"]) or _template_changes(name, template)
    cursor = start_cursor(run.cfn, stack_id)
    run.say(f"executing change set {described.get('ChangeSetName', change_set_id)}")
    run.cfn.execute_change_set(
        ChangeSetName=change_set_id,
        StackName=stack_id,
        ClientRequestToken=_token("exec", change_set_id),
    )
    # Right after ExecuteChangeSet the stack may still read REVIEW_IN_PROGRESS.
    run.wait(stack_id, cursor=cursor, pending=("REVIEW_IN_PROGRESS",))
    # Enabled once the stack is complete: the one state where every API surely accepts it.
    run.protect(stack_id)
    created = Change(run.resource, Action.CREATE, ("termination protection on",))
    return [*run.side, *out, created, *changes]


def check_ownership(
    ctx: AwsContext,
    region: str,
    name: str,
    *,
    system: str,
    adopt: bool = False,
    recreate_failed: bool = False,
) -> StackInfo | None:
    """Refuse now what create_stack or update_stack would refuse later for ownership or state.

    For a command (apply) that writes other things before it reaches the stack: the same
    decision (decide), read-only and without waiting; also the group our template would name
    (`names.autoscaling_group`). Returns the stack as read.
    """
    run = _Run(ctx, region, name, None)
    run.system = system
    group = names.autoscaling_group(system)
    info = read_stack(run.cfn, name)
    state = info.state if info else StackState.ABSENT
    creating = state in (StackState.ABSENT, StackState.DELETED, StackState.REVIEW) or (
        state is StackState.ROLLBACK_COMPLETE and recreate_failed
    )
    run.owner = owner_of(info.tags, system) if info else Owner.UNTAGGED
    legacy = False
    if (
        info is not None
        and not creating
        and state is StackState.READY
        and run.owner is not Owner.OURS
    ):
        legacy = datomic_era(run.read_deployed(info)) is not None
    decision = decide(
        state,
        Intent.CREATE if creating else Intent.UPDATE,
        recreate_failed=recreate_failed,
        owner=run.owner,
        adopt=adopt,
        legacy=legacy,
    )
    if decision.verdict is Verdict.REFUSE:
        raise run.refuse(decision, info)
    run.check_groups(None if creating else info, groups=(group,))
    return info


def update_stack(
    ctx: AwsContext,
    region: str,
    name: str,
    template: str,
    *,
    system: str,
    tags: Mapping[str, str] | None = None,
    parameters: Mapping[str, str] | None = None,
    adopt: bool = False,
    dry_run: bool = False,
    waiting: Waiting | None = None,
) -> list[Change]:
    """Update the stack through an UPDATE change set; the resource changes it made (or would).

    Only a stack of this system is updated (design §7): an untagged one is refused unless `adopt`,
    and then its change set is shown (through the progress callback) before it is executed and the
    stack tagged and protected; a stack tagged for another system, or whose group is, is refused
    before any write. A stack made by Datomic's bin/datomic is migrated (see `_migrate`). Same
    template, parameters and tags as deployed: no-op, no mutating call. An empty change set is
    deleted and reported as a no-op. With `dry_run` the change set is created, described and
    deleted, never executed (see DRY_RUN_WRITES).
    """
    _check_template(template)
    run = _Run(ctx, region, name, waiting)
    decision, info = run.settle(Intent.UPDATE, system=system, adopt=adopt)
    assert info is not None  # decide() refuses an update of an absent stack
    adopting = decision.verdict is Verdict.ADOPT
    all_tags = {**info.tags, **_merged_tags(system, tags)}
    notes = (
        (f"adopted: the stack had {tags_text(info.tags)}; now tagged for system {system}",)
        if adopting
        else ()
    )
    local = json.loads(template)
    legacy = datomic_era(run.deployed, local)
    if legacy is not None:
        return _migrate(run, info, legacy, template, all_tags, parameters, notes, dry_run=dry_run)
    if _up_to_date(run.deployed, info, template, all_tags, parameters):
        return [
            *(_protected(run, info, dry_run=dry_run) if run.owner is Owner.OURS else []),
            noop(run.resource, info.status),
        ]
    run.check_groups(info, local)
    changes = _update_once(
        run, info, template, all_tags, parameters, notes=notes, show=adopting, dry_run=dry_run
    )
    if adopting and changes[0].changed and not dry_run:
        changes.extend(_protected(run, info, dry_run=False))
    return [*run.side, *changes]


def _update_once(
    run: _Run,
    info: StackInfo,
    template: str,
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
    *,
    notes: tuple[str, ...] = (),
    show: bool = False,
    dry_run: bool,
) -> list[Change]:
    """One change set: create, describe (shown when `show`), execute and wait, unless `dry_run`.

    The first change is the stack's own (`notes` and the parameters that change), a no-op when
    CloudFormation finds nothing to change.
    """
    source = run.template_source(run.name, template, dry_run=dry_run)
    change_set_id, stack_id = _create_change_set(
        run,
        kind="preview" if dry_run else "update",
        change_set_type="UPDATE",
        template=template,
        source=source,
        tags=tags,
        parameters=parameters,
        base=info.stack_id,
    )
    described = _wait_change_set(run, stack_id, change_set_id)
    if described["Status"] != "CREATE_COMPLETE":
        reason = str(described.get("StatusReason", ""))
        # A failed or empty change set stays listed on the stack until deleted.
        run.cfn.delete_change_set(ChangeSetName=change_set_id, StackName=stack_id)
        if _is_empty_change_set(reason):
            return [noop(run.resource, "no changes")]
        raise StackError(
            f"CloudFormation could not prepare the update: {reason or 'no reason reported'}",
            f"{run.region} {run.name}",
            "fix the template (create-cf-template) and rerun",
        )
    changes = _change_set_changes(run.name, described["Changes"])
    head = Change(
        run.resource, Action.UPDATE, (*notes, *_parameter_changes(info, template, parameters))
    )
    if show:
        run.say(f"change set of stack {run.name} ({run.owner.value}):")
        for change in changes:
            run.say(f"  {change.action.value} {change.resource} {' '.join(change.details)}")
    if dry_run:
        run.cfn.delete_change_set(ChangeSetName=change_set_id, StackName=stack_id)
        return [head, *changes]
    cursor = start_cursor(run.cfn, stack_id)
    run.say(f"executing change set {described.get('ChangeSetName', change_set_id)}")
    run.cfn.execute_change_set(
        ChangeSetName=change_set_id,
        StackName=stack_id,
        ClientRequestToken=_token("exec", change_set_id),
    )
    run.wait(stack_id, cursor=cursor)
    return [head, *changes]


def _migrate(
    run: _Run,
    info: StackInfo,
    legacy: Legacy,
    template: str,
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
    notes: tuple[str, ...],
    *,
    dry_run: bool,
) -> list[Change]:
    """From Datomic's LaunchConfiguration group to our launch template and group, without a gap.

    1. One update to our template plus the deployed legacy resources (`bridge_template`): the new
       group starts beside the old one, which keeps running as it is.
    2. Wait until the new group's instances are InService (launch lifecycle hook passed: their
       transactors are ready; with Datomic HA the new one is a standby that takes over).
    3. One update to our template alone: CloudFormation deletes the old group and its launch
       configuration.
    Every step is found done on a rerun, so a crash between the updates converges; once the
    legacy resources are gone the stack is an ordinary one of ours.
    """
    local = json.loads(template)
    clash = {legacy.group, legacy.config} & set(local["Resources"])
    if clash:
        raise StackError(
            f"cannot migrate: the template reuses the logical ids {', '.join(sorted(clash))}",
            f"{run.region} {run.name}",
            "migrate by hand",
        )
    deployed = run.deployed
    bridge, bridge_parameters = bridge_template(
        deployed, template, legacy, info.parameters, parameters
    )
    note = migration_note(legacy, local)
    run.say(f"stack {run.name}: {note}")
    head = Change(
        run.resource,
        Action.UPDATE,
        (note, *notes, *_parameter_changes(info, template, parameters)),
    )
    run.check_groups(info, local)
    out: list[Change] = [head]
    if not _up_to_date(deployed, info, bridge, tags, bridge_parameters):
        first = _update_once(run, info, bridge, tags, bridge_parameters, show=True, dry_run=dry_run)
        out.extend(first[1:])
    removed = [
        Change(
            f"stack/{run.name}/{logical}",
            Action.DELETE,
            (
                str(deployed["Resources"][logical].get("Type", "?")),
                "removed once the new group is in service",
            ),
        )
        for logical in legacy.kept
    ]
    if dry_run:
        return [*run.side, *out, *removed]
    bridged = read_stack(run.cfn, run.name)
    assert bridged is not None
    group = run.await_group(bridged, local)
    run.say(f"group {group} is in service; removing {', '.join(legacy.kept)}")
    second = _update_once(run, bridged, template, tags, parameters, dry_run=False)
    out.extend(second[1:] or removed)
    final = read_stack(run.cfn, run.name)
    if final is not None:
        out.extend(_protected(run, final, dry_run=False))
    return [*run.side, *out]


def delete_stack(
    ctx: AwsContext,
    region: str,
    name: str,
    *,
    dry_run: bool = False,
    waiting: Waiting | None = None,
) -> list[Change]:
    """Lift termination protection, delete the stack, wait until it is gone. Absent: no-op.

    Only a stack datomic-aws manages is deleted: it carries managed-by and a datomic:system tag
    that its deployed template (or else its name) confirms, and no group of it is tagged for
    another system; any other stack is refused before any write. Only the stack's own resources
    go; the table, roles, buckets and SSM parameter live outside it.
    """
    run = _Run(ctx, region, name, waiting)
    decision, info = run.settle(Intent.DELETE)
    if decision.verdict is Verdict.NOOP or info is None:
        return [noop(run.resource, "absent")]
    run.check_groups(info)
    details = (info.status,)
    if not dry_run:
        run.delete(info)
    return [Change(run.resource, Action.DELETE, details)]
