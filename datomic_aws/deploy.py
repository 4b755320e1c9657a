"""The stack commands on a template document: create-cf-stack, update-stack with replacement,
delete-cf-stack (app/ reads the files and calls these; status and apply live there too).

Owns how the pieces compose: the stack package converges the stack, then replace.py brings every
instance onto the launch template version the stack declares. It must not talk to CloudFormation
or Auto Scaling except through the stack package and replace.py, must not read or write files,
and must not print: progress goes through the `on_event` callbacks of `Waiting`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datomic_aws import replace, stack
from datomic_aws.app.documents import Template, read_template, template_from_text
from datomic_aws.aws import AwsContext
from datomic_aws.aws_errors import translating
from datomic_aws.changes import Action, Change, Result
from datomic_aws.errors import StackError
from datomic_aws.stack.document import StackTemplate, as_template
from datomic_aws.stack_lock import holding_stack_lock

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.client import CloudFormationClient

__all__ = [
    "KEPT_ON_DELETE",
    "Replacement",
    "Template",
    "create_cf_stack",
    "delete_cf_stack",
    "read_stack",
    "read_template",
    "template_from_text",
    "update_cf_stack",
]

# What delete-cf-stack leaves alone, by design: none of it lives in the stack.
KEPT_ON_DELETE = (
    "the DynamoDB table, the roles and instance profiles, the log and templates buckets and the "
    "SSM configuration parameter are not part of the stack and were left in place"
)


def _system(template: Template, name: str) -> str:
    return template.system or name


def _document(template: Template) -> StackTemplate:
    """The template as the stack package takes it: parsed once, when it was read."""
    return (
        StackTemplate(template.text, template.doc) if template.doc else as_template(template.text)
    )


@holding_stack_lock
def create_cf_stack(
    ctx: AwsContext,
    region: str,
    name: str,
    template: Template,
    *,
    dry_run: bool = False,
    recreate_failed: bool = False,
    waiting: stack.Waiting | None = None,
    known: stack.StackInfo | None = None,
) -> Result:
    """create-cf-stack; `known` is the stack as the caller read it (apply), not read again."""
    changes = stack.create_stack(
        ctx,
        region,
        name,
        _document(template),
        system=_system(template, name),
        recreate_failed=recreate_failed,
        dry_run=dry_run,
        waiting=waiting,
        known=known,
    )
    return Result("create-cf-stack", dry_run=dry_run, changes=changes)


@dataclass(frozen=True)
class Replacement:
    strategy: replace.Strategy = "surge"
    enabled: bool = True


@holding_stack_lock
def update_cf_stack(
    ctx: AwsContext,
    region: str,
    name: str,
    template: Template,
    *,
    dry_run: bool = False,
    adopt: bool = False,
    replacement: Replacement = Replacement(),
    waiting: stack.Waiting | None = None,
    known: stack.StackInfo | None = None,
) -> Result:
    """update-stack: the stack, then every instance onto the version the stack declares.

    A stack that is not this system's is refused before any write; `adopt` takes over an untagged
    one (and migrates a stack made by Datomic's bin/datomic). The instances are checked also when
    the stack itself had no change, so a rerun finishes a replacement that was interrupted.
    """
    w = waiting or stack.Waiting()
    result = Result("update-stack", dry_run=dry_run)
    read = known if known is not None else read_stack(ctx, region, name)
    result.changes.extend(
        stack.update_stack(
            ctx,
            region,
            name,
            _document(template),
            system=_system(template, name),
            adopt=adopt,
            dry_run=dry_run,
            waiting=w,
            known=read,
        )
    )
    if replacement.strategy == "terminate" and replacement.enabled:
        result.warnings.append(replace.TERMINATE_WARNING)
    if dry_run and stack.plans_migration(result.changes):
        # The planned group does not exist yet: its instances start with the migration itself.
        return result
    result.changes.extend(
        _converge_instances(
            ctx,
            region,
            name,
            template,
            dry_run=dry_run,
            replacement=replacement,
            w=w,
            result=result,
            known=known if known is not None else _still(read, result, dry_run=dry_run),
        )
    )
    return result


def read_stack(ctx: AwsContext, region: str, name: str) -> stack.StackInfo | None:
    with translating(f"stack {name}"):
        return stack.read_stack(ctx.client("cloudformation", region), name)


def _still(
    read: stack.StackInfo | None, result: Result, *, dry_run: bool
) -> stack.StackInfo | None:
    """The stack as update-stack read it first, when that is still the stack for the instances:
    it was settled (no wait read it again) and this run wrote nothing to it (a dry run writes
    nothing). Else None: read again."""
    if read is None or read.state is not stack.StackState.READY:
        return None
    return read if dry_run or not any(c.changed for c in result.changes) else None


def group_of(cfn: CloudFormationClient, info: stack.StackInfo, region: str) -> tuple[str, str]:
    """The stack's group and the launch template version it declares.

    From the outputs of our template; for a stack whose outputs are missing, from its resources,
    the version being the template's `LatestVersionNumber` as our template declares.
    """
    group = info.outputs.get("AutoScalingGroupName")
    version = info.outputs.get("LaunchTemplateVersion")
    if group and version:
        return group, version
    listed = (
        info.resources
        if info.resources is not None
        else cfn.describe_stack_resources(StackName=info.stack_id)["StackResources"]
    )
    resources = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in listed}
    group = resources.get("AutoScalingGroup")
    if not group or not resources.get("LaunchTemplate"):
        raise StackError(
            "the stack has no AutoScalingGroup and LaunchTemplate resources",
            f"{region} {info.name}",
            "deploy a template made by `datomic-aws create-cf-template`",
        )
    return group, "$Latest"


def _converge_instances(
    ctx: AwsContext,
    region: str,
    name: str,
    template: Template,
    *,
    dry_run: bool,
    replacement: Replacement,
    w: stack.Waiting,
    result: Result,
    known: stack.StackInfo | None = None,
) -> list[Change]:
    """The group onto the declared version, then every instance, from one read of the group:
    one plan (replace.plan) that the real run executes and a dry run renders. What the roll
    measured goes into `result` (a Change detail, `extra["availability"]`, warnings).

    `known` is the stack as this run read it (with its resources and groups, when apply's
    ownership check read them). It is still the stack here: the stack step made no write, since
    a first write takes the stack lock and starts the command over without it."""
    asg = ctx.client("autoscaling", region)
    ec2 = ctx.client("ec2", region)
    # A dry run whose stack update changes the launch template: the version does not exist yet.
    pending = dry_run and _launch_template_changes(result.changes)
    read = _roll_state(ctx, region, name, known, pending=pending)
    if read is None:
        return []
    info, group_name, state = read
    if state is None:
        raise StackError(
            f"the stack's group {group_name} does not exist", f"{region} {name}", "check the stack"
        )
    size = info.parameters.get("GroupSize")
    target = (
        int(size)
        if size and size.isdigit()
        else (template.group_size or state.group.desired_capacity)
    )
    options = replace.Options(replacement.strategy, target, roll=replacement.enabled)
    plan = replace.plan(state, options)
    if pending:
        return [replace.render_pending(plan)]
    report = replace.Availability()
    if dry_run:
        out = replace.dry_run_changes(plan, report, w.poll_interval)
    else:
        timing = replace.Timing(w.timeout, w.poll_interval, w.on_event, w.sleep, w.clock)
        out = replace.execute(asg, ec2, state, plan, timing, report)
    result.warnings.extend(x for x in report.warnings if x not in result.warnings)
    if report.replaced:
        out.append(Change(f"autoscaling group {group_name}", Action.UPDATE, report.details()))
        result.extra["availability"] = report.as_dict()
    return out


def _roll_state(
    ctx: AwsContext, region: str, name: str, known: stack.StackInfo | None, *, pending: bool
) -> tuple[stack.StackInfo, str, replace.RollState | None] | None:
    """The stack, its group's name and the group's state (None: no such group), read once:
    what `known` carries (resources, the group) is not read again. None: no stack."""
    cfn = ctx.client("cloudformation", region)
    asg = ctx.client("autoscaling", region)
    ec2 = ctx.client("ec2", region)
    with translating(f"stack {name}"):
        info = known or stack.read_stack(cfn, name)
        if info is None:
            return None
        group_name, version = group_of(cfn, info, region)
        described = (info.groups or {}).get(group_name)
        state = (
            replace.pending_state(asg, ec2, group_name)
            if pending
            else replace.read_state(asg, ec2, group_name, version, described)
        )
    return info, group_name, state


def _launch_template_changes(changes: list[Change]) -> bool:
    return any(c.resource.endswith("/LaunchTemplate") and c.changed for c in changes)


@holding_stack_lock
def delete_cf_stack(
    ctx: AwsContext,
    region: str,
    name: str,
    *,
    dry_run: bool = False,
    waiting: stack.Waiting | None = None,
) -> Result:
    changes = stack.delete_stack(ctx, region, name, dry_run=dry_run, waiting=waiting)
    result = Result("delete-cf-stack", dry_run=dry_run, changes=changes)
    result.extra["kept"] = KEPT_ON_DELETE
    return result


def __getattr__(name: str) -> Any:
    """apply_dir moved to app/apply.py; importers of this module keep working (imported
    lazily: app/apply.py builds on this module)."""
    if name == "apply_dir":
        from datomic_aws.app import apply

        return getattr(apply, name)
    raise AttributeError(name)
