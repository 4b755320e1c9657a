"""The stack operations the commands call: create, update (with adoption and migration), delete,
and the ownership check a command makes before it writes anything else.

Each reads the stack, decides (status.decide, ownership included: a stack that is not this
system's is refused before any write; `--adopt` takes over an untagged one) and acts through
change sets, waiting and streaming events through `Waiting.on_event`. A dry run creates at most a
preview change set and deletes it again (transport.DRY_RUN_WRITES). A create or update that
rolled back because the instance profile was not usable yet (reference §11) is run once more
(`_create_retrying`, `_update_retrying`), said through `Waiting.on_event`.

It must not print, prompt, build boto3 sessions (clients come from the `AwsContext` passed in),
write to any resource other than the named stack, its change sets and the templates bucket, or
replace instances (replace.py does that after an update).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypedDict

from datomic_aws import names
from datomic_aws.changes import Action, Change, noop
from datomic_aws.errors import ProfileNotPropagated, StackError, TemplateRejected
from datomic_aws.stack.changesets import (
    _change_set_changes,
    _create_change_set,
    _execute,
    _template_changes,
    _up_to_date,
    _update_once,
    _wait_change_set,
)
from datomic_aws.stack.document import StackTemplate, as_template
from datomic_aws.stack.events import Waiting
from datomic_aws.stack.migrate import _migrate
from datomic_aws.stack.read import (
    Deployed,
    StackInfo,
    datomic_era,
    named_groups,
    read_stack,
    template_matches,
)
from datomic_aws.stack.run import _protected, _Run
from datomic_aws.stack.status import Intent, Owner, StackState, Verdict, decide, owner_of, tags_text

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from datomic_aws.aws import AwsContext


class StackOptions(TypedDict, total=False):
    """What create_stack and update_stack both take, besides the template and the system."""

    tags: Mapping[str, str] | None
    parameters: Mapping[str, str] | None
    dry_run: bool
    waiting: Waiting | None
    # The stack as this run already read it (apply's ownership check): not read again, unless
    # the run starts over (the stack lock taken) or waits for the stack to settle.
    known: StackInfo | None


PROTECTED = "termination protection on"


def _merged_tags(system: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    return {**(extra or {}), **names.tags(system)}


def create_stack(
    ctx: AwsContext,
    region: str,
    name: str,
    template: str | StackTemplate,
    *,
    system: str,
    recreate_failed: bool = False,
    **options: Unpack[StackOptions],
) -> list[Change]:
    """Create the stack from a JSON template through a CREATE change set, then protect it.

    An existing stack with the same template is a no-op (no mutating call); with another template
    it is an error pointing to update-stack. A ROLLBACK_COMPLETE stack is deleted and created again
    only with `recreate_failed` and our tags. With `dry_run` nothing is written: the changes are
    read from the template.
    """
    doc = as_template(template)
    dry_run = options.get("dry_run", False)
    run = _Run(ctx, region, name, options.get("waiting"))
    decision, info = run.settle(
        Intent.CREATE, recreate_failed=recreate_failed, system=system, known=options.get("known")
    )
    if decision.verdict is Verdict.COMPARE and info is not None:
        if template_matches(run.cfn, info.stack_id, doc.doc):
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
    run.check_groups(None, doc.doc)
    if dry_run:
        run.templates_bucket(dry_run=True)
        created = Change(run.resource, Action.CREATE, (PROTECTED,))
        return [*out, *run.side, created, *_template_changes(name, doc)]
    tags = _merged_tags(system, options.get("tags"))
    return [*out, *_create_retrying(run, doc, tags, options.get("parameters"))]


# What a stack of ours may hold for a failed create to be deleted and created again on its own:
# nothing stateful (the table, roles, buckets and configuration live outside the stack).
_STATELESS = frozenset(
    (
        "AWS::EC2::LaunchTemplate",
        "AWS::AutoScaling::AutoScalingGroup",
        "AWS::AutoScaling::LifecycleHook",
    )
)
_PROPAGATION = "the instance profile was not usable yet (IAM is eventually consistent)"


def _create_retrying(
    run: _Run,
    template: StackTemplate,
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
) -> list[Change]:
    """`_create`, once more when it rolled back because the profile was not usable yet
    (reference §11): the ROLLBACK_COMPLETE stack is deleted first, and only when it is ours and
    its template declares nothing stateful. A second failure is reported as it is."""
    try:
        return _create(run, template, tags, parameters)
    except ProfileNotPropagated as exc:
        info = read_stack(run.cfn, run.name) if exc.status == "ROLLBACK_COMPLETE" else None
        resources = template.doc.get("Resources", {}).values()
        declared = {str(r.get("Type")) if isinstance(r, dict) else "" for r in resources}
        if (
            info is None
            or info.status != "ROLLBACK_COMPLETE"
            or owner_of(info.tags, run.system) is not Owner.OURS
            or not declared <= _STATELESS
        ):
            raise
        run.say(
            f"stack {run.name} rolled back: {_PROPAGATION}; deleting the rolled-back stack and "
            "creating it once more"
        )
        run.delete(info)
        return _create(run, template, tags, parameters)


def _create(
    run: _Run,
    template: StackTemplate,
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
) -> list[Change]:
    """One CREATE change set: created, described, executed and waited for; then protection on."""
    source = run.template_source(run.name, template.text, dry_run=False)
    change_set_id, stack_id = _create_change_set(
        run,
        kind="create",
        change_set_type="CREATE",
        template=template,
        source=source,
        tags=tags,
        parameters=parameters,
        base="",
    )
    described = _wait_change_set(run, stack_id, change_set_id)
    if described["Status"] != "CREATE_COMPLETE":
        reason = str(described.get("StatusReason", "no reason reported"))
        run.cfn.delete_change_set(ChangeSetName=change_set_id, StackName=stack_id)
        raise TemplateRejected(f"{run.region} {run.name}", reason)
    changes = _change_set_changes(run.name, described["Changes"]) or _template_changes(
        run.name, template
    )
    # Right after ExecuteChangeSet the stack may still read REVIEW_IN_PROGRESS.
    _execute(run, stack_id, change_set_id, described, pending=("REVIEW_IN_PROGRESS",))
    # Enabled once the stack is complete: the one state where every API surely accepts it.
    run.protect(stack_id)
    created = Change(run.resource, Action.CREATE, (PROTECTED,))
    return [*run.side, created, *changes]


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
    (`names.autoscaling_group`). Returns the stack as read, with its resources and groups as the
    group check read them.
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
    if info is not None and not creating and state is StackState.READY:
        # Read here, beside the ensure steps, and carried to the stack step (which compares it
        # with ours): it also names the stack's groups, so its resources need no listing.
        read = Deployed(run.read_deployed(info))
        info = dataclasses.replace(info, deployed=read)
        if run.owner is not Owner.OURS:
            legacy = datomic_era(read.doc) is not None
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
    deployed = info.deployed if info is not None else None
    checked = run.check_groups(
        None if creating else info,
        groups=(group,),
        stack_groups=named_groups(deployed.doc) if deployed is not None else None,
    )
    # With what the check read of the stack (resources, groups): the later steps reuse it.
    return info if creating else checked


def update_stack(
    ctx: AwsContext,
    region: str,
    name: str,
    template: str | StackTemplate,
    *,
    system: str,
    adopt: bool = False,
    **options: Unpack[StackOptions],
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
    doc = as_template(template)
    dry_run = options.get("dry_run", False)
    parameters = options.get("parameters")
    run = _Run(ctx, region, name, options.get("waiting"))
    decision, info = run.settle(
        Intent.UPDATE, system=system, adopt=adopt, known=options.get("known")
    )
    assert info is not None  # decide() refuses an update of an absent stack
    adopting = decision.verdict is Verdict.ADOPT
    all_tags = {**info.tags, **_merged_tags(system, options.get("tags"))}
    notes = (
        (f"adopted: the stack had {tags_text(info.tags)}; now tagged for system {system}",)
        if adopting
        else ()
    )
    legacy = datomic_era(run.deployed, doc.doc)
    if legacy is not None:
        return _migrate(run, info, legacy, doc, all_tags, parameters, notes, dry_run=dry_run)
    if _up_to_date(run.deployed, info, doc, all_tags, parameters):
        return [
            *(_protected(run, info, dry_run=dry_run) if run.owner is Owner.OURS else []),
            noop(run.resource, info.status),
        ]
    run.check_groups(info, doc.doc)
    changes = _update_retrying(
        run, info, doc, all_tags, parameters, notes=notes, show=adopting, dry_run=dry_run
    )
    if adopting and changes[0].changed and not dry_run:
        changes.extend(_protected(run, info, dry_run=False))
    return [*run.side, *changes]


def _update_retrying(
    run: _Run,
    info: StackInfo,
    template: StackTemplate,
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
    *,
    notes: tuple[str, ...],
    show: bool,
    dry_run: bool,
) -> list[Change]:
    """`_update_once`, once more when it rolled back because the profile was not usable yet
    (reference §11): the previous template is back in place (UPDATE_ROLLBACK_COMPLETE), so the
    same update is asked again, its request keyed on the stack's new state (a re-read). A second
    failure is reported as it is."""
    try:
        return _update_once(
            run, info, template, tags, parameters, notes=notes, show=show, dry_run=dry_run
        )
    except ProfileNotPropagated as exc:
        if exc.status != "UPDATE_ROLLBACK_COMPLETE":
            raise
        again = read_stack(run.cfn, info.stack_id)
        if again is None or again.status != "UPDATE_ROLLBACK_COMPLETE":
            raise
        run.say(f"stack {run.name} rolled back: {_PROPAGATION}; updating it once more")
        return _update_once(
            run, again, template, tags, parameters, notes=notes, show=show, dry_run=dry_run
        )


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
