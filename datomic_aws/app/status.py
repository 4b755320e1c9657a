"""status: the stack, its last event, template drift, the group and each instance with its role.

Read-only. It must not write to AWS, or print (cli.py renders the document).
"""

from __future__ import annotations

from typing import Any

from datomic_aws import replace, stack
from datomic_aws.app.documents import Template
from datomic_aws.aws import AwsContext
from datomic_aws.aws_errors import translating
from datomic_aws.changes import Result
from datomic_aws.deploy import group_of


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
                "matches_deployed": stack.template_matches(
                    cfn, info.stack_id, template.doc or template.text
                ),
            }
        if info.state is not stack.StackState.IN_PROGRESS:
            group_name, version = group_of(cfn, info, region)
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
