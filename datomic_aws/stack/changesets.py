"""Change sets: how every create and update reaches CloudFormation.

Owns change sets with deterministic names (a rerun after a crash finds and reuses its change set)
and request tokens that change exactly when the request does (`request_token`), waiting until one is prepared with all its pages of
changes merged, the recognition of an empty one, the parameters a template is deployed with, the
translation of a change set (or, for a dry-run create, of the template) into `Change`s, and
`_update_once`: one UPDATE change set from creation to execution (or deletion, for a preview).

It must not decide whether a stack may be written (status.py and operations.py do, before any call
here), print (lines go through the run's `say`), or write to anything but the stack's change sets
and, through the run, its template upload.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from datomic_aws.aws_errors import has_code
from datomic_aws.changes import Action, Change, noop
from datomic_aws.errors import Interrupted, TemplateRejected, WaitTimeout
from datomic_aws.stack.document import StackTemplate
from datomic_aws.stack.events import start_cursor
from datomic_aws.stack.read import StackInfo
from datomic_aws.stack.transport import template_digest

if TYPE_CHECKING:
    from datomic_aws.stack.run import _Run


def _token(kind: str, *parts: str) -> str:
    """Deterministic idempotency token: a retried call after a crash is recognised by AWS."""
    digest = hashlib.sha256("\0".join((kind, *parts)).encode()).hexdigest()[:40]
    return f"datomic-aws-{kind}-{digest}"


def stack_state(info: StackInfo) -> str:
    """What identifies the stack's current state: its id, status and LastUpdatedTime (else
    CreationTime), which every operation CloudFormation executes on it moves on."""
    return f"{info.stack_id} {info.status} {info.version}"


def request_token(
    kind: str,
    stack: str,
    state: str,
    template: StackTemplate,
    tags: Mapping[str, str],
    parameters: Mapping[str, str],
) -> str:
    """The ClientToken of one CreateChangeSet request: the request's content on the stack's state.

    Reference §11 and CloudFormation's ClientToken / ClientRequestToken: a repeated token is
    treated as the same request (AWS answers with what the first one did), so the token must
    change for a genuinely new request. An update is keyed by `stack_state` as well as by its
    content: a retry on the same state is recognised, a revert (A, B, then A again) on a state
    that has moved is not mistaken for the first A. A preview and a create are one request per
    run (`state` is then a fresh nonce, see `_create_change_set`): a preview is consumed by its
    own deletion, and an absent stack has no state to key on.
    """
    return _token(
        kind,
        stack,
        state,
        template_digest(template.text),
        "\0".join(f"{k}={v}" for k, v in sorted(tags.items())),
        "\0".join(f"{k}={v}" for k, v in sorted(parameters.items())),
    )


def _change_set_name(kind: str, template: StackTemplate) -> str:
    return f"datomic-aws-{kind}-{template_digest(template.text)[:16]}"


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _parameter_list(parameters: Mapping[str, str] | None) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted((parameters or {}).items())]


def _template_changes(stack: str, template: StackTemplate) -> list[Change]:
    """What creating from this template adds, read from the template itself (no AWS)."""
    resources: Mapping[str, Any] = template.doc.get("Resources", {})
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


def _capabilities(template: StackTemplate) -> dict[str, Any]:
    # Passed only when needed: a template without IAM resources keeps its exact request.
    capabilities = template.capabilities()
    return {"Capabilities": capabilities} if capabilities else {}


def _create_change_set(
    run: _Run,
    *,
    kind: str,
    change_set_type: str,
    template: StackTemplate,
    source: Mapping[str, Any],
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
    base: str,
) -> tuple[str, str]:
    """Create (or find, after a crash) our change set; returns (change set id, stack id).

    `base` is the stack's state (`stack_state`) for an update; a preview or a create is a new
    request on every run (see `request_token`). A retry within the run (botocore resends the same
    parameters) keeps its token either way."""
    cs_name = _change_set_name(kind, template)
    run.say(f"creating change set {cs_name} for stack {run.name}")
    desired = template.desired_parameters(parameters)
    state = base if kind == "update" else uuid.uuid4().hex
    try:
        response = run.cfn.create_change_set(
            StackName=run.name,
            ChangeSetName=cs_name,
            ChangeSetType=change_set_type,  # type: ignore[arg-type]
            ClientToken=request_token(kind, run.name, state, template, tags, desired),
            Tags=_tag_list(tags),  # type: ignore[arg-type]
            # Every plain parameter is passed with its value, never left to "the template's default":
            # the deployed stack then states exactly what the files say, and an update whose only
            # change is a parameter's default (a new instance type) is seen as one.
            Parameters=_parameter_list(desired),  # type: ignore[arg-type]
            **source,
            **_capabilities(template),
        )
        return response["Id"], response["StackId"]
    except ClientError as exc:
        if not has_code(exc, "AlreadyExistsException"):
            raise
    # Same name means same template on the same stack: a previous run's change set, reusable.
    described = run.cfn.describe_change_set(ChangeSetName=cs_name, StackName=run.name)
    return described["ChangeSetId"], described["StackId"]


def _parameter_changes(
    info: StackInfo, template: StackTemplate, parameters: Mapping[str, str] | None
) -> tuple[str, ...]:
    """What an operator changed in the files shows up as parameters: say which, from and to."""
    desired = template.desired_parameters(parameters)
    return tuple(
        f"parameter {k}: {info.parameters.get(k, '(none)')} -> {v}"
        for k, v in sorted(desired.items())
        if info.parameters.get(k) != v
    )


def _up_to_date(
    deployed: Any,
    info: StackInfo,
    template: StackTemplate,
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
) -> bool:
    if any(info.tags.get(k) != v for k, v in tags.items()):
        return False
    desired = template.desired_parameters(parameters)
    if any(info.parameters.get(k) != v for k, v in desired.items()):
        return False
    return bool(deployed == template.doc)


def _update_once(
    run: _Run,
    info: StackInfo,
    template: StackTemplate,
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
    source = run.template_source(run.name, template.text, dry_run=dry_run)
    change_set_id, stack_id = _create_change_set(
        run,
        kind="preview" if dry_run else "update",
        change_set_type="UPDATE",
        template=template,
        source=source,
        tags=tags,
        parameters=parameters,
        base=stack_state(info),
    )
    described = _wait_change_set(run, stack_id, change_set_id)
    if described["Status"] != "CREATE_COMPLETE":
        reason = str(described.get("StatusReason", ""))
        # A failed or empty change set stays listed on the stack until deleted.
        run.cfn.delete_change_set(ChangeSetName=change_set_id, StackName=stack_id)
        if _is_empty_change_set(reason):
            return [noop(run.resource, "no changes")]
        raise TemplateRejected(
            f"{run.region} {run.name}", reason or "no reason reported", update=True
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
    _execute(run, stack_id, change_set_id, described)
    return [head, *changes]


def _execute(
    run: _Run,
    stack_id: str,
    change_set_id: str,
    described: Mapping[str, Any],
    *,
    pending: Collection[str] = (),
) -> None:
    """Execute a prepared change set and wait until the stack settles, streaming its new events."""
    cursor = start_cursor(run.cfn, stack_id)
    run.say(f"executing change set {described.get('ChangeSetName', change_set_id)}")
    run.cfn.execute_change_set(
        ChangeSetName=change_set_id,
        StackName=stack_id,
        ClientRequestToken=_token("exec", change_set_id),
    )
    run.wait(stack_id, cursor=cursor, pending=pending)
