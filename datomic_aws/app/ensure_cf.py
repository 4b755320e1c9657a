"""ensure-cf: check the cf file against EC2, plan the security group, converge it, write back.

Owns the order of the steps of ensure-cf and which keys it writes back. Validation happens before
any AWS call; every read and refusal (a type not offered or of a previous generation, a heap larger
than RAM, an image of the wrong architecture, subnets outside the VPC, a group owned by someone
else) comes in `prepare_cf`, which reads each thing once and plans the group's operations;
`converge_cf` runs exactly those and rewrites the file last. A dry run renders the same plan. It
must not build clients itself (the AwsContext does) nor print (render.py does).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from datomic_aws import names
from datomic_aws.app.cf_network import check_network
from datomic_aws.app.cf_plan import CfPlan
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Result
from datomic_aws.config.cf import (
    DEFAULT_JAVA_OPTS,
    LATEST_DATOMIC_VERSION,
    MODERN_ALTERNATIVES,
    CfSpec,
    default_xmx,
    heap_mib,
    load_cf,
    max_xmx_mib,
)
from datomic_aws.config.transactor import load_transactor
from datomic_aws.errors import InvalidInput, Problem
from datomic_aws.properties import PropertiesText, write_back
from datomic_aws.resources import ec2 as ec2r
from datomic_aws.resources import security_group as sgr

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


_CF_STEM = re.compile(r"^(?:(?P<prefix>.+)(?P<sep>[-_.]))?cf$")


def sibling_transactor(cf_path: str | Path) -> Path | None:
    """Where the transactor file of a cf file lives by convention: `cf.properties` next to
    `transactor.properties`, Datomic's `my-cf.properties` next to `my-transactor.properties`."""
    path = Path(cf_path)
    m = _CF_STEM.match(path.stem)
    if not m:
        return None
    prefix = f"{m.group('prefix')}{m.group('sep')}" if m.group("prefix") else ""
    return path.with_name(f"{prefix}transactor{path.suffix}")


def resolve_system(props: PropertiesText, spec: CfSpec) -> tuple[str, dict[str, str]]:
    """The system name: `datomic-system` when set, else the sibling transactor file's (and then
    written back so the cf file stands on its own)."""
    if spec.system:
        return spec.system, {}
    sibling = sibling_transactor(props.path)
    if sibling is not None and sibling.is_file():
        _, transactor = load_transactor(sibling)
        return transactor.system, {"datomic-system": transactor.system}
    expected = f" and there is no {sibling.name} next to it" if sibling else ""
    raise InvalidInput(
        [
            Problem(
                props.path,
                props.line_of("datomic-system"),
                "datomic-system",
                f"datomic-system is blank{expected} to take the system name from",
                "set datomic-system to the transactor's system name (its aws-dynamodb-table for "
                "protocol ddb), the one ensure-transactor provisioned",
            )
        ]
    )


def _check_instance_type(client: EC2Client, spec: CfSpec, plan: CfPlan) -> ec2r.InstanceType | None:
    """One rule for Datomic-era types: AWS's own CurrentGeneration flag (c1, c3, m3... are false)."""
    key = "aws-instance-type"
    info = ec2r.read_instance_type(client, spec.instance_type)
    if info is not None and not info.current_generation:
        offered = "" if info.offered else f", and is not offered in {spec.region}"
        plan.problems.append(
            Problem.at(
                spec,
                key,
                f"{key} {spec.instance_type} is a previous-generation type (CurrentGeneration=false "
                f"in {spec.region}){offered}",
                f"use a current type, e.g. {MODERN_ALTERNATIVES}; clear java-xmx to recompute it",
            )
        )
        return None
    if info is None or not info.offered:
        plan.problems.append(
            Problem.at(
                spec,
                key,
                f"{key} {spec.instance_type} is not an instance type offered in {spec.region}",
                f"check the spelling, or choose e.g. {MODERN_ALTERNATIVES}",
            )
        )
        return None
    if spec.ami is None and spec.architecture not in info.architectures:
        plan.problems.append(
            Problem.at(
                spec,
                key,
                f"{key} {spec.instance_type} runs {', '.join(info.architectures)}, not the "
                f"{spec.architecture} image datomic-aws would choose for it",
                "pin an image of the right architecture with aws-ami",
            )
        )
    return info


def _check_ami(
    client: EC2Client, spec: CfSpec, info: ec2r.InstanceType | None, plan: CfPlan
) -> None:
    if spec.ami is None:
        return
    arch = ec2r.read_image_architecture(client, spec.ami)
    if arch is None:
        plan.problems.append(
            Problem.at(
                spec,
                "aws-ami",
                f"aws-ami {spec.ami} is not an image you can launch in {spec.region}",
                "leave aws-ami blank to follow the latest Amazon Linux 2023",
            )
        )
    elif info is not None and arch not in info.architectures:
        plan.problems.append(
            Problem.at(
                spec,
                "aws-ami",
                f"aws-ami {spec.ami} is an {arch} image; {spec.instance_type} runs "
                f"{', '.join(info.architectures)}",
                "pin an image of the instance type's architecture, or change aws-instance-type",
            )
        )


def _check_heap(spec: CfSpec, info: ec2r.InstanceType, plan: CfPlan) -> None:
    if spec.java_xmx is None:
        plan.updates["java-xmx"] = default_xmx(info.memory_mib)
        return
    limit = max_xmx_mib(info.memory_mib)
    rule = default_xmx(info.memory_mib)
    if heap_mib(spec.java_xmx) < heap_mib(rule) // 2:
        # Reference §4: Datomic sizes the heap at 70% of the RAM; a heap kept from a smaller type
        # after aws-instance-type changed leaves most of the new type's memory unused.
        plan.warnings.append(
            f"{spec.path}:{spec.line_of('java-xmx')} java-xmx {spec.java_xmx} is less than half "
            f"of the {rule} the sizing rule gives for {spec.instance_type} (70% of its "
            f"{info.memory_mib} MiB): clear java-xmx to recompute it"
        )
    if heap_mib(spec.java_xmx) > limit:
        plan.problems.append(
            Problem.at(
                spec,
                "java-xmx",
                f"java-xmx {spec.java_xmx} does not fit in the {info.memory_mib} MiB of "
                f"{spec.instance_type} with room for the OS (at most {limit}m)",
                f"leave java-xmx blank for 70% of the RAM ({default_xmx(info.memory_mib)}), or choose "
                "a larger instance type",
            )
        )


def _check_group(client: EC2Client, spec: CfSpec, vpc: ec2r.Vpc, plan: CfPlan) -> None:
    """Which group the transactor gets, and its current state (by the file's id, else by name)."""
    # A group named in the file is shared by every system naming it (resources/ec2.py); the
    # derived one, found by name or by the id written back, is this system's own.
    named = spec.security_group is not None
    wanted = ec2r.SecurityGroupSpec(
        name=spec.security_group or names.security_group(plan.system),
        vpc_id=vpc.vpc_id,
        system=plan.system,
        sources=frozenset(),
        derived=not named,
        group_id=spec.security_group_id,
        description=(
            "Datomic transactors (datomic-aws; shared by the systems that name it)"
            if named
            else f"Datomic transactor {plan.system} (datomic-aws)"
        ),
    )
    state = ec2r.read_security_group(client, wanted)
    if state is None or state.group_id != spec.security_group_id:
        # Not found by the file's id (none, or gone): the group by name, if any.
        plan.group = dataclasses.replace(wanted, group_id=None)
    elif _group_mismatch(spec, vpc, state, plan):
        return
    else:
        plan.group = dataclasses.replace(wanted, name=state.name)
    plan.group_state = state


def _group_mismatch(
    spec: CfSpec, vpc: ec2r.Vpc, found: ec2r.SecurityGroupState, plan: CfPlan
) -> bool:
    """The group of the file's id is in another VPC, or is not the group the file names."""
    if found.vpc_id != vpc.vpc_id:
        plan.problems.append(
            Problem.at(
                spec,
                "aws-security-group-id",
                f"aws-security-group-id {spec.security_group_id} is in {found.vpc_id}, "
                f"not in {vpc.vpc_id}",
                "clear aws-security-group-id to use (or create) the group in this VPC",
            )
        )
        return True
    if spec.security_group and found.name != spec.security_group:
        plan.problems.append(
            Problem.at(
                spec,
                "aws-security-group-id",
                f"aws-security-group-id {spec.security_group_id} is the group "
                f"{found.name!r}, not aws-security-group {spec.security_group!r}",
                f"clear aws-security-group-id to use {spec.security_group!r}",
            )
        )
        return True
    return False


def _resolve_sources(
    ctx: AwsContext, client: EC2Client, spec: CfSpec, plan: CfPlan
) -> frozenset[ec2r.Source]:
    key = "aws-ingress-groups"
    assert plan.group is not None
    own_name = plan.group.name
    own_id = plan.group_state.group_id if plan.group_state else None
    sources: set[ec2r.Source] = set()
    for cidr in spec.ingress_cidrs:
        sources.add(ec2r.Source("cidr6" if ":" in cidr else "cidr", cidr))
    account = None
    if any(g.account for g in spec.ingress_groups):
        account = ctx.account_id(spec.region)
    for ref in spec.ingress_groups:
        foreign = ref.account is not None and ref.account != account
        if ref.group_id:
            if foreign:
                sources.add(ec2r.Source("group", ref.group_id, ref.account))
            elif ref.group_id == own_id:
                sources.add(ec2r.Source("group", ec2r.SELF))
            elif ec2r.find_group(client, group_id=ref.group_id) is None:
                plan.problems.append(
                    Problem.at(
                        spec,
                        key,
                        f"{key}: there is no security group {ref.group_id} in {spec.region}",
                    )
                )
            else:
                sources.add(ec2r.Source("group", ref.group_id))
        elif foreign:
            plan.problems.append(
                Problem.at(
                    spec,
                    key,
                    f"{key}: {ref.text} names a group of another account; in a VPC such a group is "
                    "referenced by id",
                    f"write {ref.account}:sg-... (the group's id)",
                )
            )
        elif ref.name == own_name:
            sources.add(ec2r.Source("group", ec2r.SELF))
        else:
            raw = ec2r.find_group(client, vpc_id=plan.group.vpc_id, name=ref.name)
            if raw is None:
                plan.problems.append(
                    Problem.at(
                        spec,
                        key,
                        f"{key}: there is no security group named {ref.name!r} in {plan.group.vpc_id}",
                        "create it first, or give its id (sg-...)",
                    )
                )
            else:
                sources.add(ec2r.Source("group", str(raw["GroupId"])))
    return frozenset(sources)


def plan_cf(ctx: AwsContext, spec: CfSpec, system: str) -> CfPlan:
    """Reads and checks only; raises InvalidInput listing every problem, or OwnershipError."""
    plan = CfPlan(system=system)
    client = ctx.client("ec2", spec.region)
    info = _check_instance_type(client, spec, plan)
    _check_ami(client, spec, info, plan)
    if info is not None:
        _check_heap(spec, info, plan)
    vpc = check_network(client, spec, info, plan)
    if vpc is not None:
        _check_group(client, spec, vpc, plan)
    if plan.group is not None:
        sources = _resolve_sources(ctx, client, spec, plan)
        plan.group = dataclasses.replace(plan.group, sources=sources)
    if plan.problems:
        plan.problems.sort(key=lambda p: (p.line is None, p.line or 0, p.key or ""))
        raise InvalidInput(plan.problems)
    if not spec.java_opts:
        plan.updates["java-opts"] = DEFAULT_JAVA_OPTS
    if not spec.datomic_version:
        plan.updates["datomic-version"] = LATEST_DATOMIC_VERSION
    if not spec.stack_name:
        plan.updates["aws-stack-name"] = names.stack(system)
    return plan


@dataclass
class CfRun:
    """ensure-cf after every read and refusal, before any write."""

    props: PropertiesText
    spec: CfSpec
    output: str | Path
    system_updates: dict[str, str]
    plan: CfPlan
    # The security group's planned operations (ownership already checked).
    group: sgr.SecurityGroupPlan


def prepare_cf(
    ctx: AwsContext,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    adopt: bool,
    loaded: tuple[PropertiesText, CfSpec] | None = None,
) -> CfRun:
    """Every check of ensure-cf (file, type, heap, image, network, group owner) and the group's
    plan; each thing is read once, nothing is written. `loaded` is the file as the caller already
    loaded it (then it is not read again)."""
    props, spec = loaded if loaded is not None else load_cf(input_path)
    system, system_updates = resolve_system(props, spec)
    plan = plan_cf(ctx, spec, system)
    assert plan.group is not None
    group = sgr.plan_security_group(plan.group, plan.group_state, adopt=adopt)
    return CfRun(props, spec, output_path or input_path, system_updates, plan, group)


def converge_cf(ctx: AwsContext, run: CfRun, *, dry_run: bool) -> Result:
    """The planned writes of ensure-cf, nothing read again: the security group, then the file."""
    spec, plan = run.spec, run.plan
    result = Result("ensure-cf", dry_run=dry_run)
    result.warnings.extend(spec.warnings)
    result.warnings.extend(plan.warnings)
    if plan.network is not None:
        result.changes.append(plan.network)
    outcome = sgr.run_security_group(ctx.client("ec2", spec.region), run.group, dry_run=dry_run)
    result.changes.append(outcome.change)
    updates = {**run.system_updates, **plan.updates}
    if outcome.group_id:
        updates["aws-security-group-id"] = outcome.group_id
    result.files.append(write_back(run.props, updates, run.output, dry_run=dry_run))
    result.extra["system"] = plan.system
    return result


def ensure_cf(
    ctx: AwsContext,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    dry_run: bool,
    adopt: bool,
) -> Result:
    """ensure-cf INPUT [OUTPUT]: converge the security group, write the generated keys back."""
    return converge_cf(ctx, prepare_cf(ctx, input_path, output_path, adopt=adopt), dry_run=dry_run)
