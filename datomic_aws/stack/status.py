"""The status table and the one decision for create, update and delete, ownership included.

Owns the classification of all 23 CloudFormation stack statuses into a few states, whose a stack
is from its tags (ours, untagged, another system's), and `decide`: what create-cf-stack,
update-stack and delete-cf-stack do with a stack in a given state and ownership (create, update,
delete, recreate, compare, wait, adopt or refuse, with the refusal's message and hint).

Pure: it must not call AWS, wait, print or raise anything but the StackError of an unknown status;
the callers read the stack (read.py) and act on the decision (operations.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from datomic_aws import names
from datomic_aws.errors import StackError


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

# Every value of botocore's cloudformation StackStatus enum; tests/embedded/test_stack.py walks the model.
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
        return _decide_create(state, who, absent=absent, recreate_failed=recreate_failed)
    return _decide_update(state, absent=absent)


def _decide_create(
    state: StackState, who: Owner, *, absent: bool, recreate_failed: bool
) -> Decision:
    """create-cf-stack on a stack that is settled (not in progress)."""
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


def _decide_update(state: StackState, *, absent: bool) -> Decision:
    """update-stack on a stack that is settled and may be written (ours, or adopted)."""
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
