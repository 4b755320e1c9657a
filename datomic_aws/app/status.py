"""status: the stack, its last event, template drift, the group and each instance with its role,
and the policies on the system's roles that datomic-aws did not write (warnings).

Read-only. It must not write to AWS, or print (cli.py renders the document).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from datomic_aws import names, replace, stack
from datomic_aws.app.documents import Template
from datomic_aws.aws import AwsContext
from datomic_aws.aws_errors import error_code, has_code, translate, translating
from datomic_aws.changes import Result
from datomic_aws.deploy import group_of
from datomic_aws.resources import iam_drift

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


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
    system = info.tags.get(names.TAG_SYSTEM)
    if system:
        result.warnings.extend(role_drift(ctx.client("iam", region), system, template))
    reasons = _out_of_sync(doc)
    doc.update(in_sync=not reasons, out_of_sync=reasons)
    result.extra["status"] = doc
    return result


def role_drift(client: IAMClient, system: str, template: Template | None) -> list[str]:
    """Issue 11: the policies on the system's roles that the tool did not write. The roles are
    the transactor role the local template's instance profile names (the profile has its role's
    name), else the derived one, and the derived peer role; a missing role has none."""
    roles = dict.fromkeys((_template_role(template) or names.transactor_role(system),))
    roles[names.peer_role(system)] = None
    out: list[str] = []
    for role in roles:
        try:
            out += iam_drift.read_foreign_policies(client, role, system)
        except ClientError as exc:
            if not has_code(exc, "AccessDenied", "AccessDeniedException"):
                raise translate(exc, f"iam role {role}") from exc
            # A read-only status run by someone without IAM read rights still reports the rest.
            out.append(
                f"iam role {role}: its policies were not checked ({error_code(exc)}: status "
                "needs iam:ListRolePolicies and iam:ListAttachedRolePolicies)"
            )
    return out


def _template_role(template: Template | None) -> str | None:
    """The instance profile the local template's launch template names, if any."""
    if template is None:
        return None
    resources = template.doc.get("Resources", {}) if isinstance(template.doc, dict) else {}
    data = resources.get("LaunchTemplate", {}).get("Properties", {}).get("LaunchTemplateData", {})
    name = data.get("IamInstanceProfile", {}).get("Name")
    return name if isinstance(name, str) and name else None


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
