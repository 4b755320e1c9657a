"""One create, update or delete of a stack: its clients, deadline, progress sink and shared steps.

Owns `_Run`: reading the stack and deciding (status.decide) while waiting out an operation already
running on it, the refusal errors, the ownership check of the stack's Auto Scaling groups before
any write, the template source of a change set (a TemplateURL in the templates bucket, converged
first, once per run; an inline body only for a small dry-run preview), termination protection, and the deletion
of a stack.

It must not print (lines go to `Waiting.on_event`), build boto3 sessions (clients come from the
`AwsContext`), write to any resource other than the named stack and the templates bucket (it only
reads the stack's Auto Scaling groups), or replace instances (replace.py does that).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.aws_errors import TERMINATION_PROTECTION, endpoint_gap, has_code
from datomic_aws.changes import Action, Change
from datomic_aws.errors import DatomicAwsError, NotOursError, StackStateError
from datomic_aws.resources.s3 import ensure_templates_bucket
from datomic_aws.stack.changesets import _token
from datomic_aws.stack.events import EventCursor, Waiting, start_cursor, wait_for_stack
from datomic_aws.stack.read import (
    _ASG,
    StackInfo,
    _declared_system,
    datomic_era,
    deployed_template,
    read_stack,
)
from datomic_aws.stack.status import (
    Decision,
    Intent,
    Owner,
    StackState,
    Verdict,
    decide,
    owner_of,
    tags_text,
)
from datomic_aws.stack.transport import MAX_TEMPLATE_BODY, upload_template

if TYPE_CHECKING:
    from mypy_boto3_autoscaling.type_defs import AutoScalingGroupTypeDef
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.type_defs import StackResourceTypeDef
    from mypy_boto3_s3 import S3Client

    from datomic_aws.aws import AwsContext


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
        return StackStateError(
            status, decision.what.format(**fmt), where, decision.hint.format(**fmt)
        )

    def read_deployed(self, info: StackInfo) -> Any:
        try:
            return deployed_template(self.cfn, info.stack_id)
        except ClientError as exc:
            # A stack that only holds change sets (REVIEW_IN_PROGRESS) has no template yet.
            if has_code(exc, "ValidationError"):
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
        known: StackInfo | None = None,
    ) -> tuple[Decision, StackInfo | None]:
        """Read the stack and decide, waiting out any operation already running on it.

        Ownership is part of the decision: for update and delete, a stack that is not this
        system's is refused here, before any write (see decide). `known` is the stack as this
        run read it already: used instead of a first read (a wait reads it again).
        """
        while True:
            info, known = known or read_stack(self.cfn, self.name), None
            self.deployed, self.system, legacy = None, system, False
            if info is not None and intent is Intent.DELETE:
                self.system = self._system_for_delete(info)
            self.owner = owner_of(info.tags, self.system) if info else Owner.UNTAGGED
            if info is not None and intent is Intent.UPDATE and info.state is StackState.READY:
                self.deployed = (
                    info.deployed.doc if info.deployed is not None else self.read_deployed(info)
                )
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
        self,
        info: StackInfo | None,
        template: Any = None,
        groups: Collection[str] = (),
        *,
        stack_groups: Collection[str] | None = None,
    ) -> StackInfo | None:
        """Refuse, before any write, when one of the stack's Auto Scaling groups, the group the
        template names or one of `groups` carries a datomic:system tag for another system.

        The stack's groups are `stack_groups` when the caller knows them (read.named_groups),
        else from its resources. Returns `info` with what this read (its resources, its groups
        by name), so that the later steps of the run do not read them again; resources and
        groups `info` carries already are not read."""
        wanted: set[str] = set(groups)
        resources: tuple[StackResourceTypeDef, ...] = ()
        if stack_groups is not None:
            wanted.update(stack_groups)
        elif info is not None:
            resources = info.resources if info.resources is not None else self._resources(info)
            wanted.update(
                r["PhysicalResourceId"]
                for r in resources
                if r.get("ResourceType") == _ASG and r.get("PhysicalResourceId")
            )
        declared = template.get("Resources", {}) if isinstance(template, dict) else {}
        for body in declared.values():
            if isinstance(body, dict) and body.get("Type") == _ASG:
                group = (body.get("Properties") or {}).get("AutoScalingGroupName")
                if isinstance(group, str):
                    wanted.add(group)
        # Groups this run described already (the owner check's read) are not described again.
        have = dict(info.groups or {}) if info is not None else {}
        found: list[AutoScalingGroupTypeDef] = [have[name] for name in sorted(wanted & have.keys())]
        missing = wanted - have.keys()
        if missing:
            asg = self.ctx.client("autoscaling", self.region)
            described = asg.describe_auto_scaling_groups(AutoScalingGroupNames=sorted(missing))
            found.extend(described.get("AutoScalingGroups", []))
        for group in found:
            self._refuse_foreign_group(group)
        if info is None:
            return None
        by_name = {g["AutoScalingGroupName"]: g for g in found}
        listed = resources if stack_groups is None else info.resources
        return dataclasses.replace(info, resources=listed, groups=by_name)

    def _resources(self, info: StackInfo) -> tuple[StackResourceTypeDef, ...]:
        found = self.cfn.describe_stack_resources(StackName=info.stack_id)
        return tuple(found.get("StackResources", []))

    def _refuse_foreign_group(self, group: AutoScalingGroupTypeDef) -> None:
        tags = {t["Key"]: t.get("Value", "") for t in group.get("Tags", []) if "Key" in t}
        if owner_of(tags, self.system) is Owner.FOREIGN:
            raise NotOursError(
                f"Auto Scaling group {group['AutoScalingGroupName']} of stack {self.name}"
                f" belongs to another system (tags: {tags_text(tags)})",
                f"{self.region} {self.name}",
                "datomic-aws never writes to another system's group, not even with --adopt;"
                " use another system or stack name",
            )

    def template_source(self, stack: str, template: str, *, dry_run: bool) -> dict[str, Any]:
        """TemplateURL from the templates bucket; a body only for a small dry-run preview."""
        if dry_run and len(template.encode("utf-8")) <= MAX_TEMPLATE_BODY:
            return {"TemplateBody": template}
        account = self.templates_bucket(dry_run=dry_run)
        s3: S3Client = self.ctx.client("s3", self.region)
        return {"TemplateURL": upload_template(s3, account, self.region, stack, template)}

    def templates_bucket(self, *, dry_run: bool) -> str:
        """Converge (a dry run: plan) the templates bucket, once per run, its change reported
        before the stack's; the account it is in."""
        s3: S3Client = self.ctx.client("s3", self.region)
        account = self.ctx.account_id(self.region)
        # Once per run, not before every upload (a migration uploads twice; a run that takes the
        # stack lock starts over).
        converged = f"templates-bucket:{account}:{self.region}"
        if converged not in self.ctx.converged:
            bucket_change = ensure_templates_bucket(s3, account, self.region, dry_run=dry_run)
            self.ctx.converged.add(converged)
            if bucket_change.changed:
                self.say(f"{bucket_change.action.value} {bucket_change.resource}")
                self.side.append(bucket_change)
        return account

    def lift_protection(self, info: StackInfo) -> None:
        if info.termination_protection:
            self.say(f"lifting termination protection of stack {self.name}")
            self.cfn.update_termination_protection(
                StackName=info.stack_id, EnableTerminationProtection=False
            )

    def protect(self, stack_id: str) -> None:
        with endpoint_gap(TERMINATION_PROTECTION, self.cfn.meta.endpoint_url):
            self.cfn.update_termination_protection(
                StackName=stack_id, EnableTerminationProtection=True
            )

    def delete(self, info: StackInfo) -> None:
        self.lift_protection(info)
        cursor = start_cursor(self.cfn, info.stack_id)
        self.say(f"deleting stack {self.name}")
        self.cfn.delete_stack(
            StackName=info.stack_id, ClientRequestToken=_token("delete", info.stack_id)
        )
        self.wait(info.stack_id, cursor=cursor)


def _protected(run: _Run, info: StackInfo, *, dry_run: bool) -> list[Change]:
    """A create killed after its execution left the stack unprotected: finish that step."""
    if info.termination_protection:
        return []
    if not dry_run:
        run.protect(info.stack_id)
    return [Change(f"{run.resource} termination protection", Action.UPDATE, ("on",))]
