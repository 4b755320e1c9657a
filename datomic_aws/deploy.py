"""The stack commands as library functions: create-cf-stack, update-stack with replacement,
delete-cf-stack, status, and apply (the whole sequence for one environment folder).

Owns how the pieces compose: the stack package converges the stack, then replace.py brings every instance
onto the launch template version the stack declares; apply chains the ensure steps, the template
and the stack. It must not talk to CloudFormation or Auto Scaling except through the stack package and
replace.py, and must not print: progress goes through the `on_event` callbacks of `Waiting`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
    # The cf file's aws-region the template was generated for (None: an older or foreign template).
    region: str | None = None


def template_from_text(text: str, path: str) -> Template:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidInput([Problem(path, None, None, f"not a JSON template: {exc}")]) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise InvalidInput(
            [Problem(path, None, None, "not a CloudFormation template (no Resources)")]
        )
    meta = _mapping(_mapping(doc.get("Metadata")).get("DatomicAws"))
    size = _mapping(_mapping(doc.get("Parameters")).get("GroupSize")).get("Default")
    return Template(
        path=path,
        text=text,
        system=str(meta["System"]) if meta.get("System") else None,
        group_size=int(size) if size is not None and str(size).isdigit() else None,
        region=str(meta["Region"]) if meta.get("Region") else None,
    )


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_template(path: str | Path) -> Template:
    """The template file: missing, not UTF-8 or not JSON is InvalidInput (exit 2), a file the
    environment refuses to read is FileAccessError (exit 1); one line either way."""
    from datomic_aws.checks import check_input

    check_input(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            [
                Problem(
                    str(path),
                    None,
                    None,
                    f"not a JSON template: byte {exc.start} is not UTF-8",
                    "give the cf.json that `datomic-aws create-cf-template` wrote",
                )
            ]
        ) from exc
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
    adopt: bool = False,
    replacement: Replacement = Replacement(),
    waiting: stack.Waiting | None = None,
) -> Result:
    """update-stack: the stack, then every instance onto the version the stack declares.

    A stack that is not this system's is refused before any write; `adopt` takes over an untagged
    one (and migrates a stack made by Datomic's bin/datomic). The instances are checked also when
    the stack itself had no change, so a rerun finishes a replacement that was interrupted.
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
            adopt=adopt,
            dry_run=dry_run,
            waiting=w,
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
    result: Result,
) -> list[Change]:
    """The group onto the declared version, then every instance, from one read of the group:
    one plan (replace.plan) that the real run executes and a dry run renders. What the roll
    measured goes into `result` (a Change detail, `extra["availability"]`, warnings)."""
    cfn = ctx.client("cloudformation", region)
    asg = ctx.client("autoscaling", region)
    ec2 = ctx.client("ec2", region)
    # A dry run whose stack update changes the launch template: the version does not exist yet.
    pending = dry_run and _launch_template_changes(result.changes)
    with translating(f"stack {name}"):
        info = stack.read_stack(cfn, name)
        if info is None:
            return []
        group_name, version = _group_of(cfn, info, region)
        state = (
            replace.pending_state(asg, ec2, group_name)
            if pending
            else replace.read_state(asg, ec2, group_name, version)
        )
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
    """status: the stack, its last event, template drift, the group and each instance with the
    role it publishes. `doc["in_sync"]` (the CLI's exit code) holds when the stack exists and is
    not in progress, the local template (when given) matches the deployed one, and every
    instance runs the declared launch template version; `doc["out_of_sync"]` says why not."""
    cfn = ctx.client("cloudformation", region)
    result = Result("status")
    doc: dict[str, Any] = {"region": region, "stack": name, "exists": False}
    with translating(f"stack {name}"):
        info = stack.read_stack(cfn, name)
        if info is None:
            doc.update(in_sync=False, out_of_sync=["the stack does not exist"])
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
                ec2 = ctx.client("ec2", region)
                group = replace.with_roles(ec2, group)
                if version == "$Latest" and group.launch_template_id:
                    version = replace.resolve_version(ec2, group.launch_template_id, version)
                doc["group"] = _group_doc(group, version)
    reasons = _out_of_sync(doc)
    doc.update(in_sync=not reasons, out_of_sync=reasons)
    result.extra["status"] = doc
    return result


def _out_of_sync(doc: dict[str, Any]) -> list[str]:
    reasons = []
    if doc.get("state") == stack.StackState.IN_PROGRESS.value:
        reasons.append(f"the stack is {doc.get('stack_status')}")
    template = doc.get("template")
    if template is not None and not template["matches_deployed"]:
        reasons.append(f"the template {template['path']} differs from the deployed one")
    group = doc.get("group")
    if group is None:
        if doc.get("state") != stack.StackState.IN_PROGRESS.value:
            reasons.append("the stack's group was not found")
    else:
        outdated = [
            i["id"]
            for i in group["instances"]
            if i["current"] is not True
            and not i["lifecycle_state"].startswith(replace.LEAVING_PREFIXES)
        ]
        if outdated:
            reasons.append(f"outdated instance(s): {', '.join(outdated)}")
    return reasons


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
                "role": i.role,
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
    """apply DIR: ensure-transactor, ensure-cf, create-cf-template, then create or update.

    Validate first (design §7): the paths, both files and what they must agree on, then every
    read-only AWS check of both ensure steps (table key schema, names owned by someone else, type
    offered and current, heap, image, subnets, group owner), all before the first write. Only
    then do the ensure steps write.
    """
    from datomic_aws.checks import APPLY_FILES, APPLY_TEMPLATE
    from datomic_aws.config.cf import load_cf
    from datomic_aws.ensure import converge_cf, converge_transactor, plan_transactor, prepare_cf
    from datomic_aws.template import create_cf_template

    warnings = validate_folder(directory, dry_run=dry_run)
    folder = Path(directory)
    transactor, cf, template_path = (
        folder / APPLY_FILES[0],
        folder / APPLY_FILES[1],
        folder / APPLY_TEMPLATE,
    )
    # The stack (and its group) must be this system's before anything is written.
    _check_stack_owner(ctx, transactor, cf, adopt=adopt, recreate_failed=recreate_failed)
    result = Result("apply", dry_run=dry_run)
    # The two ensure steps read disjoint resources: their checks run side by side, and every
    # problem of both is reported together.
    with ThreadPoolExecutor(max_workers=2) as pool:
        planned_job = pool.submit(
            plan_transactor, ctx, transactor, adopt=adopt, extra_warnings=tuple(warnings)
        )
        cf_job = pool.submit(prepare_cf, ctx, cf, adopt=adopt)
        planned, cf_run = _both(planned_job, cf_job)
    # Nothing was written so far. The writes touch disjoint resources and files: side by side too.
    with ThreadPoolExecutor(max_workers=2) as pool:
        first_job = pool.submit(converge_transactor, ctx, planned, dry_run=dry_run)
        second_job = pool.submit(converge_cf, ctx, cf_run, dry_run=dry_run)
        first, second = _both(first_job, second_job)
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
    name = _stack_name(cf_spec.stack_name, str(template.system))
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
            ctx,
            region,
            name,
            template,
            dry_run=dry_run,
            adopt=adopt,
            replacement=replacement,
            waiting=waiting,
        )
    result.merge(step)
    return result


def _stack_name(explicit: str | None, system: str) -> str:
    return explicit or f"datomic-{system}"


def _check_stack_owner(
    ctx: AwsContext, transactor: Path, cf: Path, *, adopt: bool, recreate_failed: bool
) -> None:
    """Before apply's first write: the stack (and its group) must be this system's, or untagged
    with `adopt` (design §7), and in a state the stack step will accept."""
    from datomic_aws.config.cf import load_cf
    from datomic_aws.config.transactor import load_transactor

    _, transactor_spec = load_transactor(transactor)
    _, cf_spec = load_cf(cf)
    name = _stack_name(cf_spec.stack_name, transactor_spec.system)
    with translating(f"stack {name}"):
        stack.check_ownership(
            ctx,
            cf_spec.region,
            name,
            system=transactor_spec.system,
            adopt=adopt,
            recreate_failed=recreate_failed,
        )


A = TypeVar("A")
B = TypeVar("B")


def _both(first: Future[A], second: Future[B]) -> tuple[A, B]:
    """Both results, after both finished; when both failed on input, every problem of both."""
    errors = [f.exception() for f in (first, second)]
    problems = [p for e in errors if isinstance(e, InvalidInput) for p in e.problems]
    if problems and all(e is None or isinstance(e, InvalidInput) for e in errors):
        raise InvalidInput(problems)
    for error in errors:
        if error is not None:
            raise error
    return first.result(), second.result()


def validate_folder(directory: str | Path, *, dry_run: bool = False) -> list[str]:
    """apply's checks that need no AWS: the folder and its files, both files' values and what
    they must agree on. Also run by the CLI before it takes the folder lock, so that invalid input
    leaves nothing behind. Returns the transactor file's warnings (see `_validate_both`)."""
    from datomic_aws.checks import APPLY_FILES, check_apply_folder

    check_apply_folder(directory, writable=not dry_run)
    folder = Path(directory)
    return _validate_both(folder / APPLY_FILES[0], folder / APPLY_FILES[1])


def _validate_both(transactor: Path, cf: Path) -> list[str]:
    """Both files and what they must agree on, before any AWS call; every problem of both is
    reported. Returns the transactor file's warnings, worded for the cf file's Datomic version."""
    from datomic_aws.config.cf import load_cf
    from datomic_aws.config.transactor import load_transactor
    from datomic_aws.template import cross_file_checks

    problems: list[Problem] = []
    specs: list[Any] = []
    for load, path in ((load_transactor, transactor), (load_cf, cf)):
        try:
            specs.append(load(path)[1])
        except InvalidInput as exc:
            problems.extend(exc.problems)
    warnings: list[str] = []
    if len(specs) == 2:
        cross, warnings = cross_file_checks(specs[0], specs[1])
        problems.extend(cross)
    if problems:
        raise InvalidInput(problems)
    return warnings


def _would_be(step: Result, original: Path, scratch: Path) -> Path:
    path = scratch / original.name
    content = next((f.content for f in step.files if f.content is not None), None)
    if content is None:
        shutil.copyfile(original, path)
    else:
        with open(path, "w", encoding="latin-1", newline="") as fh:
            fh.write(content)
    return path
