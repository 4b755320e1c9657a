"""ensure-transactor: plan from the properties file, converge AWS, write back.

Owns the order of the steps of ensure-transactor and which keys it writes back (ensure-cf lives in
ensure_cf.py next to it; apply.py composes both). Validation happens before any
AWS call; `plan_transactor` reads each resource once (concurrently: they are independent) and plans
its typed operations, taking every refusal (a derived name owned by someone else, a table with the
wrong key) before the first write; `converge_transactor` runs exactly the planned operations, one
resource after the other, without reading again, and rewrites the file last, so a run killed at
any point is finished by a rerun that derives the same names and finds what the first run created.
A dry run renders the same plan. It must not build clients itself (the AwsContext does) nor print
(render.py does).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from datomic_aws import names, policies
from datomic_aws.app.signals import worker_pool
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Result
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import (
    CONFIG_DIGEST_KEY,
    CONFIG_VERSION_KEY,
    DEFAULT_READ_CAPACITY,
    DEFAULT_WRITE_CAPACITY,
    DIGEST_SECRET_KEY,
    TransactorSpec,
    config_digest,
    config_version,
    effective_config,
    load_transactor,
    new_digest_secret,
)
from datomic_aws.errors import DatomicAwsError
from datomic_aws.properties import PropertiesText, remove_stale_temps, write_back
from datomic_aws.resources import dynamodb, iam, kms, s3, ssm
from datomic_aws.resources.plan import Planned

__all__ = [
    "Step",
    "TransactorPlan",
    "converge_transactor",
    "ensure_transactor",
    "plan_transactor",
]


@dataclass(frozen=True)
class Step:
    """One resource's plan and the executor that runs exactly its operations."""

    plan: Planned
    execute: Callable[[], None] = field(repr=False, compare=False)


# Reads one resource and plans it; run concurrently with the others.
Reader = Callable[[], Step]
P = TypeVar("P", bound=Planned)


@dataclass
class TransactorPlan:
    """ensure-transactor after every read and refusal, before any write."""

    props: PropertiesText
    spec: TransactorSpec
    output: str | Path
    plan: Result
    steps: tuple[Step, ...] = ()
    updates: dict[str, str] = field(default_factory=dict)


def plan_transactor(
    ctx: AwsContext,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    adopt: bool = False,
    extra_warnings: tuple[str, ...] | None = None,
    loaded: tuple[PropertiesText, TransactorSpec] | None = None,
) -> TransactorPlan:
    """Every read (each resource once) and every refusal (a derived name owned by someone else, a
    table with the wrong key) of ensure-transactor, and the operations to run; no write.
    `extra_warnings` replaces the file's own warnings (apply knows the Datomic version and words
    the license-key warning for it). `loaded` is the file as the caller already loaded it (then it
    is not read again)."""
    props, spec = loaded if loaded is not None else load_transactor(input_path)
    output = output_path or input_path
    readers, updates = _readers(ctx, spec, props, adopt=adopt)
    steps = _read_all(readers)
    warnings = list(spec.warnings) if extra_warnings is None else list(extra_warnings)
    warnings += iam.drift_warnings(step.plan for step in steps)
    plan = Result("ensure-transactor", dry_run=True, warnings=warnings)
    plan.extra["system"] = spec.system
    plan.extra["secrets"] = list(spec.secrets)
    plan.changes.extend(step.plan.change() for step in steps)
    plan.files.append(write_back(props, updates, output, dry_run=True))
    return TransactorPlan(props, spec, output, plan, steps, updates)


def _read_all(readers: list[Reader]) -> tuple[Step, ...]:
    """The resources are independent: their reads run side by side; the steps keep their order."""
    if len(readers) <= 1:
        return tuple(reader() for reader in readers)
    with worker_pool(len(readers)) as pool:
        return tuple(pool.map(lambda reader: reader(), readers))


def converge_transactor(ctx: AwsContext, planned: TransactorPlan, *, dry_run: bool) -> Result:
    """The planned writes, nothing read again: one resource after the other, in order, so that a
    crash leaves a predictable prefix done; then the file. A plan with nothing pending, or a dry
    run, is the run's result as planned."""
    if dry_run or not planned.plan.pending:
        if not dry_run:  # as a write would: a killed run's temporary copy holds every secret
            remove_stale_temps(planned.output)
        planned.plan.dry_run = dry_run
        return planned.plan
    for step in planned.steps:
        if step.plan.operations:
            step.execute()
    result = Result(
        "ensure-transactor",
        dry_run=False,
        changes=list(planned.plan.changes),
        warnings=list(planned.plan.warnings),
        extra=dict(planned.plan.extra),
    )
    result.files.append(write_back(planned.props, planned.updates, planned.output, dry_run=False))
    return result


def ensure_transactor(
    ctx: AwsContext,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    dry_run: bool = False,
    adopt: bool = False,
) -> Result:
    # Plan first, so a refused run changes nothing in AWS and leaves the file as it was.
    loaded = load_transactor(input_path)
    planned = plan_transactor(
        ctx,
        input_path,
        output_path,
        adopt=adopt,
        extra_warnings=_warnings_for_release(input_path, loaded[1]),
        loaded=loaded,
    )
    return converge_transactor(ctx, planned, dry_run=dry_run)


_TRANSACTOR_STEM = re.compile(r"^(?:(?P<prefix>.+)(?P<sep>[-_.]))?transactor$")


def _warnings_for_release(
    transactor_path: str | Path, transactor: TransactorSpec
) -> tuple[str, ...] | None:
    """The transactor file's warnings worded for the Datomic version of the cf file next to it
    (`cf.properties` by `transactor.properties`, `my-cf.properties` by `my-transactor.properties`);
    None (the file's own warnings) when there is none or it does not load: it is not this
    command's input, and its problems are ensure-cf's to report."""
    from datomic_aws.template import cross_file_checks

    path = Path(transactor_path)
    m = _TRANSACTOR_STEM.match(path.stem)
    if not m:
        return None
    prefix = f"{m.group('prefix')}{m.group('sep')}" if m.group("prefix") else ""
    sibling = path.with_name(f"{prefix}cf{path.suffix}")
    if not sibling.is_file():
        return None
    try:
        _, cf = load_cf(sibling)
    except DatomicAwsError:
        return None
    return tuple(cross_file_checks(transactor, cf)[1])


def _reader(read_and_plan: Callable[[], P], execute: Callable[[P], None]) -> Reader:
    """Reads and plans one resource when called; its step runs exactly that plan."""

    def read() -> Step:
        plan = read_and_plan()
        return Step(plan, functools.partial(execute, plan))

    return read


def _table_reader(ctx: AwsContext, spec: TransactorSpec, *, ahead: bool = False) -> Reader:
    """With `ahead`, DescribeTable is asked now, before the other readers are built: the ARN of
    a table found by name names the caller's account, which the roles' policies and the log
    bucket are planned with (so no GetCallerIdentity when the table exists)."""
    assert spec.table is not None
    table = dynamodb.TableSpec(
        name=spec.table,
        system=spec.system,
        billing_mode=spec.billing_mode,
        read_capacity=spec.read_capacity,
        write_capacity=spec.write_capacity,
        default_read=DEFAULT_READ_CAPACITY,
        default_write=DEFAULT_WRITE_CAPACITY,
        local=spec.protocol == "ddb-local",
    )
    client = ctx.client("dynamodb", spec.region, spec.table_endpoint)
    described = None
    if ahead and not table.local:  # DynamoDB Local's ARNs name no account of ours
        described = dynamodb.describe_table(client, table)
        if described.table is not None:
            ctx.learn_account(described.table.get("TableArn", ""))
    return _reader(
        functools.partial(dynamodb.read_and_plan_table, client, table, described),
        functools.partial(dynamodb.execute_table, client),
    )


def _bucket_reader(ctx: AwsContext, bucket: s3.BucketSpec, *, adopt: bool) -> Reader:
    client = ctx.client("s3", bucket.region)
    return _reader(
        functools.partial(s3.read_and_plan_bucket, client, bucket, adopt=adopt),
        functools.partial(s3.execute_bucket, client),
    )


def _role_reader(ctx: AwsContext, region: str, role: iam.RoleSpec, *, adopt: bool) -> Reader:
    client = ctx.client("iam", region)
    return _reader(
        lambda: iam.plan_role(role, iam.read_role_and_profile(client, role), adopt=adopt),
        functools.partial(iam.execute_role, client),
    )


def _parameter_reader(
    ctx: AwsContext,
    region: str,
    parameter: ssm.ParameterSpec,
    *,
    adopt: bool,
    updates: dict[str, str],
) -> Reader:
    """Also writes back the parameter version (create-cf-template pins the launch template to
    it), as planned, then as PutParameter answered, and the keyed digest of what it holds."""
    client = ctx.client("ssm", region)

    def read() -> Step:
        state = ssm.read_parameter_state(client, parameter)
        plan = ssm.plan_parameter(parameter, state, adopt=adopt)
        updates[CONFIG_VERSION_KEY] = str(ssm.planned_version(state, plan))
        # Beside the version, the keyed digest of what it holds: create-cf-template refuses a
        # configuration edited since (config/transactor.py `stale_pin`).
        updates[CONFIG_DIGEST_KEY] = parameter.digest

        def execute() -> None:
            version = ssm.execute_parameter(client, plan)
            if version is not None:
                updates[CONFIG_VERSION_KEY] = str(version)

        return Step(plan, execute)

    return read


def _readers(
    ctx: AwsContext, spec: TransactorSpec, props: PropertiesText, *, adopt: bool
) -> tuple[list[Reader], dict[str, str]]:
    """The resources of the file, in the order they are written, and the keys written back."""
    readers: list[Reader] = []
    if spec.has_table:
        readers.append(_table_reader(ctx, spec, ahead=spec.has_iam))
    updates: dict[str, str] = {}
    if spec.has_iam:
        updates = _iam_and_config_readers(ctx, spec, props, adopt=adopt, readers=readers)
    return readers, updates


def _iam_and_config_readers(
    ctx: AwsContext,
    spec: TransactorSpec,
    props: PropertiesText,
    *,
    adopt: bool,
    readers: list[Reader],
) -> dict[str, str]:
    region = spec.region
    account = ctx.account_id(region)
    system = spec.system
    transactor_role = spec.transactor_role or names.transactor_role(system)
    peer_role = spec.peer_role or names.peer_role(system)
    updates = {"aws-transactor-role": transactor_role, "aws-peer-role": peer_role}

    key = _configuration_key(ctx, spec, account, transactor_role, adopt=adopt)
    decrypt = key.decrypt_arn if key is not None else None
    transactor_policies = dict([policies.runtime_policy(system, account, region, decrypt)])
    peer_policies: dict[str, policies.Document] = {}
    if spec.protocol == "ddb" and spec.table:
        transactor_policies.update([policies.transactor_table_policy(spec.table, account, region)])
        peer_policies.update([policies.peer_table_policy(spec.table, account, region)])
    if spec.log_bucket_wanted:
        bucket = spec.log_bucket or names.log_bucket(system, account, region)
        updates["aws-s3-log-bucket-id"] = bucket
        explicit = spec.log_bucket is not None
        bucket_spec = s3.BucketSpec(
            bucket, region, system, explicit, "aws-s3-log-bucket-id", owner=account
        )
        readers.append(_bucket_reader(ctx, bucket_spec, adopt=adopt))
        transactor_policies.update([policies.log_bucket_policy(bucket, region)])
    if spec.cloudwatch_region:
        transactor_policies.update([policies.metrics_policy()])

    for name, explicit, role_policies, what in (
        (transactor_role, spec.transactor_role is not None, transactor_policies, "transactor"),
        (peer_role, spec.peer_role is not None, peer_policies, "peer"),
    ):
        role = iam.RoleSpec(
            name=name,
            system=system,
            explicit=explicit,
            policies=role_policies,
            description=f"Datomic {what} of system {system} (managed by datomic-aws)",
            managed=functools.partial(policies.is_managed_policy_name, system=system),
        )
        readers.append(_role_reader(ctx, region, role, adopt=adopt))

    if key is not None:
        # After the roles (the key policy names the transactor role), before the parameter.
        key_step = key.step
        readers.append(lambda: key_step)
    parameter = _parameter(spec, props, updates, key)
    readers.append(_parameter_reader(ctx, region, parameter, adopt=adopt, updates=updates))
    return updates


@dataclass(frozen=True)
class _Key:
    """The configuration's KMS key as planned: its step, the KeyId the parameter is put with and
    the key's other names, and the ARN the transactor role may decrypt with (the operator's key:
    its key policy is theirs; ours names the role itself)."""

    step: Step
    key_id: str
    names: frozenset[str]
    decrypt_arn: str | None


def _configuration_key(
    ctx: AwsContext, spec: TransactorSpec, account: str, role: str, *, adopt: bool
) -> _Key | None:
    """Read before the other resources (the role's policy needs the operator's key's ARN); no
    KMS call at all with SSM's default key."""
    if spec.kms_key is None:
        return None
    client = ctx.client("kms", spec.region)
    if spec.kms_key == kms.MANAGED:
        parameter_arn = policies.parameter_arn(spec.system, account, spec.region)
        wanted = kms.managed_key_spec(spec.system, account, spec.region, role, parameter_arn)
        state = kms.read_managed_key(client, wanted)
        plan = kms.plan_managed_key(wanted, state, adopt=adopt)
        # Put by alias: the key may be created in this very run, before the parameter.
        known = state.identifiers(wanted.alias) if state is not None else frozenset()
        return _Key(
            Step(plan, functools.partial(kms.execute_key, client, plan)), wanted.alias, known, None
        )
    named = kms.read_named_key(client, spec.kms_key, spec.region)
    plan = kms.plan_named_key(spec.kms_key, spec.region, named)
    assert named is not None  # plan_named_key refused a missing key
    aliases = [spec.kms_key] if spec.kms_key.startswith("alias/") else []
    known = named.identifiers(*aliases) | {spec.kms_key}
    return _Key(Step(plan, lambda: None), named.arn, known, named.arn)


def _parameter(
    spec: TransactorSpec, props: PropertiesText, updates: dict[str, str], key: _Key | None
) -> ssm.ParameterSpec:
    """The parameter of the rewritten file; adds the digest's key to `updates` when the file has
    none yet (generated once, kept in the file: config/transactor.py says why)."""
    if not spec.values.get(DIGEST_SECRET_KEY, "").strip():
        updates[DIGEST_SECRET_KEY] = new_digest_secret()
    # The configuration is what the rewritten file will hold, in its line order, so that the
    # digest a rerun computes from the file is the one stored now.
    final_values = props.with_values(updates).values()
    return ssm.ParameterSpec(
        name=names.ssm_parameter(spec.system),
        system=spec.system,
        value=effective_config(final_values),
        description=f"Datomic transactor configuration of system {spec.system} (datomic-aws)",
        digest=config_digest(final_values) or "",
        version=config_version(spec.values),
        key=key.key_id if key is not None else ssm.DEFAULT_KEY,
        key_names=key.names if key is not None else frozenset(),
    )
