"""The stack commands as library functions: create-cf-stack, update-stack with replacement,
delete-cf-stack, status, and apply (the whole sequence for one environment folder).

Owns how the pieces compose: stack.py converges the stack, then replace.py brings every instance
onto the launch template version the stack declares; apply chains the ensure steps, the template
and the stack. It must not talk to CloudFormation or Auto Scaling except through stack.py and
replace.py, and must not print: progress goes through the `on_event` callbacks of `Waiting`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datomic_aws import replace, stack
from datomic_aws.aws import AwsContext, translating
from datomic_aws.changes import Action, Change, Result
from datomic_aws.errors import InvalidInput, Problem, StackError
from datomic_aws.stack_lock import holding_stack_lock

# What delete-cf-stack leaves alone, by design: none of it lives in the stack.
KEPT_ON_DELETE = (
    "the DynamoDB table, the roles and instance profiles, the log and templates buckets and the "
    "SSM configuration parameter are not part of the stack and were left in place"
)


@dataclass(frozen=True)
class Template:
    path: str
    text: str
    system: str | None
    group_size: int | None


def template_from_text(text: str, path: str) -> Template:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidInput([Problem(path, None, None, f"not a JSON template: {exc}")]) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise InvalidInput(
            [Problem(path, None, None, "not a CloudFormation template (no Resources)")]
        )
    meta = doc.get("Metadata", {}).get("DatomicAws", {})
    size = doc.get("Parameters", {}).get("GroupSize", {}).get("Default")
    return Template(
        path=path,
        text=text,
        system=str(meta["System"]) if meta.get("System") else None,
        group_size=int(size) if size is not None and str(size).isdigit() else None,
    )


def read_template(path: str | Path) -> Template:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            [Problem(str(path), None, None, f"cannot read the template: {exc.strerror}")]
        ) from exc
    return template_from_text(text, str(path))


def _system(template: Template, name: str) -> str:
    return template.system or name


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
) -> Result:
    changes = stack.create_stack(
        ctx,
        region,
        name,
        template.text,
        system=_system(template, name),
        recreate_failed=recreate_failed,
        dry_run=dry_run,
        waiting=waiting,
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
    replacement: Replacement = Replacement(),
    waiting: stack.Waiting | None = None,
) -> Result:
    """update-stack: the stack, then every instance onto the version the stack declares.

    The instances are checked also when the stack itself had no change, so a rerun finishes a
    replacement that was interrupted.
    """
    w = waiting or stack.Waiting()
    result = Result("update-stack", dry_run=dry_run)
    result.changes.extend(
        stack.update_stack(
            ctx,
            region,
            name,
            template.text,
            system=_system(template, name),
            dry_run=dry_run,
            waiting=w,
        )
    )
    if replacement.strategy == "terminate" and replacement.enabled:
        result.warnings.append(replace.TERMINATE_WARNING)
    result.changes.extend(
        _converge_instances(
            ctx,
            region,
            name,
            template,
            dry_run=dry_run,
            replacement=replacement,
            w=w,
            planned=result.changes,
        )
    )
    return result


def _group_of(cfn: Any, info: stack.StackInfo, region: str) -> tuple[str, str]:
    """The stack's group and the launch template version it declares.

    From the outputs of our template; for a stack whose outputs are missing, from its resources,
    the version being the template's `LatestVersionNumber` as our template declares.
    """
    group = info.outputs.get("AutoScalingGroupName")
    version = info.outputs.get("LaunchTemplateVersion")
    if group and version:
        return group, version
    resources = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cfn.describe_stack_resources(StackName=info.stack_id)["StackResources"]
    }
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
    planned: list[Change],
) -> list[Change]:
    cfn = ctx.client("cloudformation", region)
    asg = ctx.client("autoscaling", region)
    ec2 = ctx.client("ec2", region)
    with translating(f"stack {name}"):
        info = stack.read_stack(cfn, name)
        if info is None:
            return []
        group_name, version = _group_of(cfn, info, region)
        group = replace.read_group(asg, group_name)
    if group is None:
        raise StackError(
            f"the stack's group {group_name} does not exist", f"{region} {name}", "check the stack"
        )
    out = []
    if dry_run and _launch_template_changes(planned):
        members = [i.instance_id for i in group.members]
        out.append(
            Change(
                f"autoscaling group {group_name}",
                Action.UPDATE,
                (
                    f"the launch template changes: {len(members)} instance(s) would be replaced "
                    f"({replacement.strategy}): {', '.join(members)}",
                ),
            )
        )
        return out
    out.append(replace.ensure_group_version(asg, ec2, group, version, dry_run=dry_run))
    if not replacement.enabled:
        return out
    size = info.parameters.get("GroupSize")
    target = (
        int(size) if size and size.isdigit() else (template.group_size or group.desired_capacity)
    )
    out.extend(
        replace.replace_outdated(
            asg,
            ec2,
            group_name,
            target_size=target,
            strategy=replacement.strategy,
            timeout=w.timeout,
            poll_interval=w.poll_interval,
            on_progress=w.on_event,
            dry_run=dry_run,
            sleep=w.sleep,
            clock=w.clock,
        )
    )
    return out


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


def stack_status(
    ctx: AwsContext, region: str, name: str, *, template: Template | None = None
) -> Result:
    """status: the stack, its last event, template drift, the group and each instance."""
    cfn = ctx.client("cloudformation", region)
    result = Result("status")
    doc: dict[str, Any] = {"region": region, "stack": name, "exists": False}
    with translating(f"stack {name}"):
        info = stack.read_stack(cfn, name)
        if info is None:
            result.extra["status"] = doc
            return result
        doc.update(
            exists=True,
            stack_status=info.status,
            state=info.state.value,
            reason=info.reason,
            termination_protection=info.termination_protection,
            outputs=dict(info.outputs),
        )
        events = cfn.describe_stack_events(StackName=info.stack_id).get("StackEvents", [])
        if events:
            doc["last_event"] = stack.format_event(events[0])
        if template is not None:
            doc["template"] = {
                "path": template.path,
                "matches_deployed": stack.template_matches(cfn, info.stack_id, template.text),
            }
        if info.state is not stack.StackState.IN_PROGRESS:
            group_name, version = _group_of(cfn, info, region)
            group = replace.read_group(ctx.client("autoscaling", region), group_name)
            if group is not None:
                if version == "$Latest" and group.launch_template_id:
                    version = replace.resolve_version(
                        ctx.client("ec2", region), group.launch_template_id, version
                    )
                doc["group"] = _group_doc(group, version)
    result.extra["status"] = doc
    return result


def _group_doc(group: replace.GroupInfo, version: str | None) -> dict[str, Any]:
    instances = []
    for i in group.instances:
        current = (
            replace.is_current(i, group.launch_template_id or "", version) if version else None
        )
        instances.append(
            {
                "id": i.instance_id,
                "type": i.instance_type,
                "zone": i.availability_zone,
                "lifecycle_state": i.lifecycle_state,
                "health": i.health_status,
                "launch_template_version": i.launch_template_version,
                "current": current,
            }
        )
    return {
        "name": group.name,
        "min": group.min_size,
        "max": group.max_size,
        "desired": group.desired_capacity,
        "launch_template_version": version,
        "in_service": group.in_service_count,
        "instances": instances,
    }


def apply_dir(
    ctx: AwsContext,
    directory: str | Path,
    *,
    dry_run: bool = False,
    adopt: bool = False,
    recreate_failed: bool = False,
    replacement: Replacement = Replacement(),
    waiting: stack.Waiting | None = None,
) -> Result:
    """apply DIR: ensure-transactor, ensure-cf, create-cf-template, then create or update."""
    from datomic_aws.config.cf import load_cf
    from datomic_aws.ensure import ensure_cf, ensure_transactor
    from datomic_aws.template import create_cf_template

    folder = Path(directory)
    transactor, cf, template_path = (
        folder / "transactor.properties",
        folder / "cf.properties",
        folder / "cf.json",
    )
    missing = [p for p in (transactor, cf) if not p.is_file()]
    if missing:
        raise InvalidInput(
            [
                Problem(str(p), None, None, "missing", f"copy config_samples/{p.name} here")
                for p in missing
            ]
        )
    _validate_both(transactor, cf)
    result = Result("apply", dry_run=dry_run)
    # The two ensure steps touch disjoint resources and files: they run side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        first_job = pool.submit(ensure_transactor, ctx, transactor, dry_run=dry_run, adopt=adopt)
        second_job = pool.submit(ensure_cf, ctx, cf, dry_run=dry_run, adopt=adopt)
        first, second = first_job.result(), second_job.result()
    result.merge(first)
    result.merge(second)
    scratch = Path(tempfile.mkdtemp(prefix="datomic-aws-plan-")) if dry_run else None
    try:
        if scratch is not None:
            # The plan sees the files as this run would have rewritten them.
            transactor = _would_be(first, transactor, scratch)
            cf = _would_be(second, cf, scratch)
        try:
            made = create_cf_template(transactor, cf, template_path, dry_run=dry_run)
        except InvalidInput:
            if not dry_run:
                raise
            result.warnings.append(
                "the template and the stack are planned once ensure-cf has created the security "
                "group: run apply without --dry-run"
            )
            return result
        result.merge(made)
        text = made.files[0].content or ""
        _, cf_spec = load_cf(cf)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    template = template_from_text(text, str(template_path))
    name = cf_spec.stack_name or f"datomic-{template.system}"
    region = cf_spec.region
    result.extra.update(stack=name, region=region)
    with translating(f"stack {name}"):
        info = stack.read_stack(ctx.client("cloudformation", region), name)
    # REVIEW_IN_PROGRESS: a create that died between its change set and its execution.
    creating = (
        info is None
        or info.state is stack.StackState.REVIEW
        or (info.state is stack.StackState.ROLLBACK_COMPLETE and recreate_failed)
    )
    if creating:
        step = create_cf_stack(
            ctx,
            region,
            name,
            template,
            dry_run=dry_run,
            recreate_failed=recreate_failed,
            waiting=waiting,
        )
    else:
        step = update_cf_stack(
            ctx, region, name, template, dry_run=dry_run, replacement=replacement, waiting=waiting
        )
    result.merge(step)
    return result


def _validate_both(transactor: Path, cf: Path) -> None:
    """Both files are checked before any AWS call, and every problem of both is reported."""
    from datomic_aws.config.cf import load_cf
    from datomic_aws.config.transactor import load_transactor

    problems: list[Problem] = []
    for load, path in ((load_transactor, transactor), (load_cf, cf)):
        try:
            load(path)
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)


def _would_be(step: Result, original: Path, scratch: Path) -> Path:
    path = scratch / original.name
    content = next((f.content for f in step.files if f.content is not None), None)
    if content is None:
        shutil.copyfile(original, path)
    else:
        with open(path, "w", encoding="latin-1", newline="") as fh:
            fh.write(content)
    return path
