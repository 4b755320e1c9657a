"""The migration of a stack made by Datomic's `bin/datomic create-cf-stack` to our template.

Owns the bridge template (our template plus the deployed launch-configuration group and what it
uses, its parameters renamed `Legacy<Name>` where ours differ), the migration note that marks such
an update, and `_migrate`: the two updates around the wait for the new group's instances to be in
service, each found done on a rerun (reference §5 for Datomic's template, §11 for the hook).

It must not decide whether the stack may be migrated (update_stack refuses without `--adopt`),
print (lines go through the run's `say`), or remove the old group before the new one is in service.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from datomic_aws.changes import Action, Change
from datomic_aws.errors import Interrupted, MigrationRefused, WaitTimeout
from datomic_aws.stack.changesets import _parameter_changes, _up_to_date, _update_once
from datomic_aws.stack.document import StackTemplate, as_template
from datomic_aws.stack.read import _ASG, Legacy, StackInfo, read_stack
from datomic_aws.stack.run import _protected

if TYPE_CHECKING:
    from datomic_aws.stack.run import _Run

# Datomic's parameters that collide with ours keep their deployed values under this prefix while
# both groups run, so the old launch configuration resolves to exactly what it was built from.
LEGACY_PREFIX = "Legacy"


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
            raise MigrationRefused(
                f"the deployed template's {section} {key} differs from ours",
                hint="rename it in the deployed stack, or migrate by hand",
            )
        into[key] = value


def bridge_template(
    deployed: Mapping[str, Any],
    template: str | StackTemplate,
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
    bridge, values = _bridge(
        deployed, as_template(template), legacy, deployed_parameters, parameters
    )
    return bridge.text, values


def _bridge(
    deployed: Mapping[str, Any],
    template: StackTemplate,
    legacy: Legacy,
    deployed_parameters: Mapping[str, str],
    parameters: Mapping[str, str] | None,
) -> tuple[StackTemplate, dict[str, str]]:
    ours = template.doc
    bridge: dict[str, Any] = copy.deepcopy(dict(template.doc))
    resources = dict(deployed.get("Resources", {}))
    kept = {k: resources[k] for k in legacy.kept}
    conditions = dict(deployed.get("Conditions", {}))
    used: set[str] = set()
    _references([kept, conditions], used)
    kept_params, renames, values = _kept_parameters(
        deployed.get("Parameters", {}), used, ours, template, deployed_parameters, parameters
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
    text = json.dumps(bridge, indent=2, sort_keys=True) + "\n"
    return StackTemplate(text, bridge), {**(parameters or {}), **values}


def _kept_parameters(
    deployed_params: Mapping[str, Any],
    used: set[str],
    ours: Mapping[str, Any],
    template: StackTemplate,
    deployed_parameters: Mapping[str, str],
    parameters: Mapping[str, str] | None,
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The deployed parameters the legacy resources use: definitions, renames and values."""
    desired = template.desired_parameters(parameters)
    renames: dict[str, str] = {}
    values: dict[str, str] = {}
    kept_params: dict[str, Any] = {}
    for name in sorted(used & set(deployed_params)):
        definition = deployed_params[name]
        if definition.get("NoEcho"):
            raise MigrationRefused(f"the deployed parameter {name} is NoEcho, its value is unknown")
        value = deployed_parameters.get(name, str(definition.get("Default", "")))
        if name in ours.get("Parameters", {}):
            if desired.get(name) == value:
                continue  # same value: the shared parameter resolves as before
            renames[name] = f"{LEGACY_PREFIX}{name}"
        kept_params[renames.get(name, name)] = definition
        values[renames.get(name, name)] = value
    clash = (set(kept_params) - set(renames.values())) & set(ours.get("Parameters", {}))
    if clash or set(renames.values()) & set(ours.get("Parameters", {})):
        raise MigrationRefused(f"parameter names clash ({', '.join(sorted(clash))})")
    return kept_params, renames, values


MIGRATION_NOTE = "Datomic bin/datomic stack: LaunchConfiguration -> LaunchTemplate"


def migration_note(legacy: Legacy, ours: Mapping[str, Any]) -> str:
    groups = [k for k, v in sorted(ours.get("Resources", {}).items()) if v.get("Type") == _ASG]
    new = groups[0] if groups else "(no group)"
    return f"{MIGRATION_NOTE}; the group {legacy.group} is replaced by {new}"


def plans_migration(changes: Collection[Change]) -> bool:
    """Whether update_stack's changes are (or plan) the migration of a Datomic-era stack."""
    return any(d.startswith(MIGRATION_NOTE) for c in changes for d in c.details)


def _migrate(
    run: _Run,
    info: StackInfo,
    legacy: Legacy,
    template: StackTemplate,
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
       configuration (`_finish_migration`).
    Every step is found done on a rerun, so a crash between the updates converges; once the
    legacy resources are gone the stack is an ordinary one of ours.
    """
    local = template.doc
    clash = {legacy.group, legacy.config} & set(local["Resources"])
    if clash:
        raise MigrationRefused(
            f"the template reuses the logical ids {', '.join(sorted(clash))}",
            f"{run.region} {run.name}",
        )
    deployed = run.deployed
    bridge, bridge_parameters = _bridge(deployed, template, legacy, info.parameters, parameters)
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
    out.extend(_finish_migration(run, legacy, template, tags, parameters, removed))
    return [*run.side, *out]


def _finish_migration(
    run: _Run,
    legacy: Legacy,
    template: StackTemplate,
    tags: Mapping[str, str],
    parameters: Mapping[str, str] | None,
    removed: list[Change],
) -> list[Change]:
    """Steps 2 and 3: the new group in service, then our template alone; protection on."""
    bridged = read_stack(run.cfn, run.name)
    assert bridged is not None
    group = _await_group(run, bridged, template.doc)
    run.say(f"group {group} is in service; removing {', '.join(legacy.kept)}")
    second = _update_once(run, bridged, template, tags, parameters, dry_run=False)
    out = second[1:] or removed
    final = read_stack(run.cfn, run.name)
    if final is not None:
        out.extend(_protected(run, final, dry_run=False))
    return out


def _await_group(run: _Run, info: StackInfo, template: Mapping[str, Any]) -> str:
    """Wait until the template's group has its instances InService (lifecycle hook passed)."""
    logical = [k for k, v in sorted(template["Resources"].items()) if v.get("Type") == _ASG]
    if not logical:
        raise MigrationRefused(
            "the template has no Auto Scaling group",
            f"{run.region} {run.name}",
            "deploy a template made by `datomic-aws create-cf-template`",
        )
    resources = run.cfn.describe_stack_resources(
        StackName=info.stack_id, LogicalResourceId=logical[0]
    )["StackResources"]
    group = resources[0]["PhysicalResourceId"]
    asg = run.ctx.client("autoscaling", run.region)
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
                run.say(f"group {group}: {ready} of {wanted} instance(s) in service")
                last = ready
            if ready >= wanted:
                return str(group)
            if run.remaining() <= 0:
                raise WaitTimeout(
                    f"group {group} has {ready} of {wanted} instance(s) in service",
                    f"{run.region} {run.name}",
                    "the old group keeps running; check the new instances"
                    f" (`datomic-aws status {run.region} {run.name}`) and rerun the same"
                    " command to finish the migration",
                )
            run.w.sleep(max(0.0, min(run.w.poll_interval, run.remaining())))
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while waiting for the new group {group} of stack {run.name}",
            f"{run.region} {run.name}",
            "the old group keeps running; rerun the same command to finish the migration",
        ) from None
