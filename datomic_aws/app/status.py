"""status: the stack, its last event, template drift, the group (sizes, suspended processes) and
each instance with its role, the configuration the instances run against SSM and the local
transactor file (configuration drift), the age of the storage heartbeat for `ddb`, and the
policies on the system's roles that datomic-aws did not write (warnings).

Read-only, and each thing read once: DescribeStacks, DescribeStackEvents, GetTemplate (with
--template), DescribeAutoScalingGroups, DescribeInstances, one DescribeLaunchTemplateVersions (the
declared version and every version the instances run), one DescribeParameters (never a decrypting
read), one consistent GetItem of the heartbeat item (never a scan), the IAM policy lists. It must not write to AWS, or
print (cli.py renders the document); the judgements are app/drift.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from datomic_aws import names, replace, stack
from datomic_aws.app import drift
from datomic_aws.app.documents import Template
from datomic_aws.aws import AwsContext
from datomic_aws.aws_errors import error_code, has_code, translate, translating
from datomic_aws.changes import Result
from datomic_aws.config.transactor import TransactorSpec, config_digest, config_version
from datomic_aws.deploy import group_of
from datomic_aws.resources import iam_drift, ssm

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iam import IAMClient


def stack_status(
    ctx: AwsContext,
    region: str,
    name: str,
    *,
    template: Template | None = None,
    transactor: TransactorSpec | None = None,
    now: Callable[[], float] = time.time,
) -> Result:
    """status: the stack, its last event, template drift, the group and each instance with the
    role it publishes, configuration drift and the heartbeat. `doc["in_sync"]` (the CLI's exit
    code) holds when the stack exists and is not in progress, the local template (when given)
    matches the deployed one, every instance runs the declared launch template version, and the
    configuration the instances run is SSM's (and the local transactor file's, when given);
    `doc["out_of_sync"]` says why not."""
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
        boots: dict[str, drift.BootConstants] = {}
        running: dict[str, drift.Pin] = {}
        if info.state is not stack.StackState.IN_PROGRESS:
            boots, running = _read_group(ctx, cfn, info, region, doc)
    system = info.tags.get(names.TAG_SYSTEM)
    config_drift = _configuration(ctx, doc, boots, running, transactor)
    doc["heartbeat"] = read_heartbeat(ctx, boots, transactor, now)
    if system:
        result.warnings.extend(role_drift(ctx.client("iam", region), system, template))
    reasons = _out_of_sync(doc) + config_drift
    doc.update(in_sync=not reasons, out_of_sync=reasons)
    result.extra["status"] = doc
    return result


def _read_group(
    ctx: AwsContext,
    cfn: CloudFormationClient,
    info: stack.StackInfo,
    region: str,
    doc: dict[str, Any],
) -> tuple[dict[str, drift.BootConstants], dict[str, drift.Pin]]:
    """The group (into `doc`); the boot constants of the declared launch template version and of
    each version its instances run, and the pin each version its instances run carries (by
    version number); nothing without a group."""
    group_name, version = group_of(cfn, info, region)
    group = replace.read_group(ctx.client("autoscaling", region), group_name)
    if group is None:
        return {}, {}
    ec2 = ctx.client("ec2", region)
    group = replace.with_roles(ec2, group)
    if version == "$Latest" and group.launch_template_id:
        version = replace.resolve_version(ec2, group.launch_template_id, version)
    # Instances of another launch template (attached by hand, a Datomic-era group) pin nothing.
    ours = [i for i in group.members if i.launch_template_id == group.launch_template_id]
    run = drift.distinct_versions(i.launch_template_version for i in ours)
    boots = _boot_constants(ec2, group.launch_template_id, drift.distinct_versions([version, *run]))
    doc["group"] = _group_doc(group, version, boots)
    return boots, {v: boots[v].pin for v in run if v in boots}


def _boot_constants(
    ec2: EC2Client, template_id: str | None, versions: list[str]
) -> dict[str, drift.BootConstants]:
    """What the user data of each launch template version pins, in one call."""
    if not template_id or not versions:
        return {}
    with translating(f"launch template {template_id}"):
        found = ec2.describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=versions
        ).get("LaunchTemplateVersions", [])
    out = {}
    for v in found:
        constants = drift.boot_constants(v.get("LaunchTemplateData", {}).get("UserData", ""))
        if constants is not None:
            out[str(v.get("VersionNumber"))] = constants
    return out


def _configuration(
    ctx: AwsContext,
    doc: dict[str, Any],
    boots: dict[str, drift.BootConstants],
    running: dict[str, drift.Pin],
    transactor: TransactorSpec | None,
) -> list[str]:
    """The configuration the instances run, SSM's and the local file's (into `doc`); the drift."""
    first = next(iter(boots.values()), None)
    if first is not None and first.parameter and first.region:
        parameter, config_region = first.parameter, first.region
    elif transactor is not None:
        parameter, config_region = names.ssm_parameter(transactor.system), transactor.region
    else:
        return []  # nothing names the parameter: no group yet, and no transactor file given
    client = ctx.client("ssm", config_region)
    with translating(f"ssm parameter {parameter}"):
        found = ssm.describe_parameter(client, parameter)
    stored = None if found is None else drift.Pin(found[0], ssm.stored_digest(found[1]))
    local = None
    if transactor is not None:
        values = transactor.values
        local = drift.Pin(config_version(values), config_digest(values))
    reasons = drift.configuration_drift(
        running,
        stored,
        local,
        parameter=parameter,
        local_path=transactor.path if transactor else None,
    )
    doc["configuration"] = {
        "parameter": parameter,
        "region": config_region,
        "running": {v: pin.doc() for v, pin in running.items()},
        "ssm": stored.doc() if stored else None,
        "local": {"path": transactor.path, **local.doc()} if transactor and local else None,
        "in_sync": not reasons,
    }
    return reasons


def read_heartbeat(
    ctx: AwsContext,
    boots: dict[str, drift.BootConstants],
    transactor: TransactorSpec | None,
    now: Callable[[], float],
) -> dict[str, Any] | None:
    """For `ddb`: the heartbeat item of the storage table (one consistent GetItem) and its age.
    The table is the transactor file's; without one, the system's (for ddb the system name is the
    table's, config/transactor.py) in the configuration's region."""
    if transactor is not None:
        if transactor.protocol != "ddb" or not transactor.table:
            return None
        table, table_region = transactor.table, transactor.region
    else:
        first = next(iter(boots.values()), None)
        if first is None or not first.system or not first.region:
            return None
        table, table_region = first.system, first.region
    out: dict[str, Any] = {"table": table, "region": table_region, "item": names.HEARTBEAT_ITEM_ID}
    # Reference §10: the active transactor writes into storage with every heartbeat. The item is
    # the one the embedded AWS's emulated transactors keep (Datomic's own layout is private to
    # Datomic): on a real system it is absent, and that is said, not guessed at.
    try:
        item = (
            ctx.client("dynamodb", table_region)
            .get_item(
                TableName=table, Key={"id": {"S": names.HEARTBEAT_ITEM_ID}}, ConsistentRead=True
            )
            .get("Item")
        )
    except ClientError as exc:
        if not has_code(exc, "ResourceNotFoundException", "AccessDeniedException"):
            raise translate(exc, f"dynamodb table {table}") from exc
        return {**out, "owner": None, "age_seconds": None, "note": error_code(exc)}
    beat = drift.heartbeat_from_item(item)
    if beat is None:
        return {**out, "owner": None, "age_seconds": None, "note": "no heartbeat item"}
    return {**out, "owner": beat.owner, "age_seconds": beat.age(now()), "note": None}


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


def _group_doc(
    group: replace.GroupInfo, version: str | None, boots: dict[str, drift.BootConstants]
) -> dict[str, Any]:
    instances = []
    for i in group.instances:
        same = i.launch_template_id == group.launch_template_id
        boot = boots.get(i.launch_template_version or "") if same else None
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
                "config_version": boot.pin.version if boot else None,
            }
        )
    return {
        "name": group.name,
        "min": group.min_size,
        "max": group.max_size,
        "desired": group.desired_capacity,
        "launch_template_version": version,
        "in_service": group.in_service_count,
        "suspended_processes": sorted(group.suspended_processes),
        "instances": instances,
    }
