"""ensure-transactor: the AWS resources a transactor needs, then the write-back of generated names.

Owns the order of the steps and which keys are written back. Validation happens before any AWS
call; the file is rewritten last, so a run killed at any point is finished by a rerun that derives
the same names and finds what the first run created. Dry-run is this same path with `dry_run=True`:
reads happen, writes are skipped (and the AwsContext guard refuses any that slips through).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from datomic_aws import names, policies
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Change, Result
from datomic_aws.config.transactor import (
    DEFAULT_READ_CAPACITY,
    DEFAULT_WRITE_CAPACITY,
    TransactorSpec,
    effective_config,
    load_transactor,
)
from datomic_aws.properties import PropertiesText, write_back
from datomic_aws.resources.dynamodb import TableSpec, ensure_table
from datomic_aws.resources.iam import RoleSpec, ensure_role
from datomic_aws.resources.s3 import BucketSpec, ensure_bucket
from datomic_aws.resources.ssm import ParameterSpec, ensure_parameter


def ensure_transactor(
    ctx: AwsContext,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    dry_run: bool = False,
    adopt: bool = False,
) -> Result:
    props, spec = load_transactor(input_path)
    output = output_path or input_path
    # Plan first: every read and every refusal (a derived name owned by someone else, a table
    # with the wrong key) happens before the first write, so a refused run changes nothing in
    # AWS and leaves the file as it was. A plan with nothing pending is the run's result.
    plan = _run(ctx, props, spec, output, dry_run=True, adopt=adopt)
    if dry_run or not plan.pending:
        plan.dry_run = dry_run
        return plan
    return _run(ctx, props, spec, output, dry_run=False, adopt=adopt)


def _run(
    ctx: AwsContext,
    props: PropertiesText,
    spec: TransactorSpec,
    output: str | Path,
    *,
    dry_run: bool,
    adopt: bool,
) -> Result:
    result = Result("ensure-transactor", dry_run=dry_run, warnings=list(spec.warnings))
    result.extra["system"] = spec.system
    result.extra["secrets"] = list(spec.secrets)
    steps: list[Step] = []
    if spec.has_table:
        steps.append(_table_step(ctx, spec))
    updates: dict[str, str] = {}
    if spec.has_iam:
        updates = _iam_and_config_steps(ctx, spec, props, adopt=adopt, steps=steps)
    result.changes.extend(run_steps(steps, dry_run=dry_run))
    result.files.append(write_back(props, updates, output, dry_run=dry_run))
    return result


Step = Callable[[bool], Change]


def run_steps(steps: list[Step], *, dry_run: bool) -> list[Change]:
    """Each step ensures one resource. A plan only reads, and the resources are independent, so
    planning runs them concurrently; writes run one after the other, in order, so that a crash
    leaves a predictable prefix done."""
    if dry_run and len(steps) > 1:
        with ThreadPoolExecutor(max_workers=len(steps)) as pool:
            return list(pool.map(lambda step: step(True), steps))
    return [step(dry_run) for step in steps]


def _table_step(ctx: AwsContext, spec: TransactorSpec) -> Step:
    assert spec.table is not None
    table = TableSpec(
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
    return lambda dry_run: ensure_table(client, table, dry_run=dry_run)


def _iam_and_config_steps(
    ctx: AwsContext,
    spec: TransactorSpec,
    props: PropertiesText,
    *,
    adopt: bool,
    steps: list[Step],
) -> dict[str, str]:
    region = spec.region
    account = ctx.account_id(region)
    system = spec.system
    transactor_role = spec.transactor_role or names.transactor_role(system)
    peer_role = spec.peer_role or names.peer_role(system)
    updates = {"aws-transactor-role": transactor_role, "aws-peer-role": peer_role}

    transactor_policies = dict([policies.runtime_policy(system, account, region)])
    peer_policies: dict[str, policies.Document] = {}
    if spec.protocol == "ddb" and spec.table:
        transactor_policies.update([policies.transactor_table_policy(spec.table, account, region)])
        peer_policies.update([policies.peer_table_policy(spec.table, account, region)])
    if spec.log_bucket_wanted:
        bucket = spec.log_bucket or names.log_bucket(system, account, region)
        updates["aws-s3-log-bucket-id"] = bucket
        bucket_spec = BucketSpec(
            bucket, region, system, spec.log_bucket is not None, "aws-s3-log-bucket-id"
        )
        s3 = ctx.client("s3", region)
        steps.append(lambda dry_run: ensure_bucket(s3, bucket_spec, dry_run=dry_run, adopt=adopt))
        transactor_policies.update([policies.log_bucket_policy(bucket)])
    if spec.cloudwatch_region:
        transactor_policies.update([policies.metrics_policy()])

    iam = ctx.client("iam", region)
    for name, explicit, role_policies, what in (
        (transactor_role, spec.transactor_role is not None, transactor_policies, "transactor"),
        (peer_role, spec.peer_role is not None, peer_policies, "peer"),
    ):
        role = RoleSpec(
            name=name,
            system=system,
            explicit=explicit,
            policies=role_policies,
            description=f"Datomic {what} of system {system} (managed by datomic-aws)",
            managed=functools.partial(policies.is_managed_policy_name, system=system),
        )
        steps.append(functools.partial(_role_step, iam, role, adopt))

    # The configuration is what the rewritten file will hold, in its line order, so that the
    # digest a rerun computes from the file is the one stored now.
    final_values = props.with_values(updates).values()
    parameter = ParameterSpec(
        name=names.ssm_parameter(system),
        system=system,
        value=effective_config(final_values),
        description=f"Datomic transactor configuration of system {system} (datomic-aws)",
    )
    ssm = ctx.client("ssm", region)
    steps.append(lambda dry_run: ensure_parameter(ssm, parameter, dry_run=dry_run, adopt=adopt))
    return updates


def _role_step(iam: object, role: RoleSpec, adopt: bool, dry_run: bool) -> Change:
    return ensure_role(iam, role, dry_run=dry_run, adopt=adopt)
