"""The Datomic storage table in DynamoDB.

Owns creating the table (hash key `id`/`S`, capacity or on-demand, point-in-time recovery, deletion
protection, tags) and converging only what is safe on an existing one: PITR and deletion protection
on, capacity or billing mode when the file states them. It must never delete, recreate or change the
key schema of a table: a wrong schema is an error for the operator, not something to fix.
Read once (`read_table`), plan typed operations (`plan_table`), run only those (`execute_table`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.aws_errors import has_code, translating
from datomic_aws.errors import ResourceMismatch, WaitTimeout
from datomic_aws.resources.plan import Operation, Planned, action_for

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TableDescriptionTypeDef, UpdateTableInputTypeDef


@dataclass(frozen=True)
class TableSpec:
    name: str
    system: str
    billing_mode: str
    read_capacity: int | None
    write_capacity: int | None
    default_read: int
    default_write: int
    # DynamoDB Local has no backups, deletion protection or tags worth converging.
    local: bool = False


@dataclass(frozen=True)
class TableState:
    arn: str
    status: str
    key_schema: tuple[tuple[str, str, str], ...]
    billing_mode: str
    read_capacity: int
    write_capacity: int
    deletion_protection: bool
    pitr: bool


def _resource(spec: TableSpec) -> str:
    return f"dynamodb table {spec.name}"


@dataclass(frozen=True)
class Described:
    """DescribeTable's answer (None: no such table), read ahead by a caller that needs the ARN
    (it names the account); `read_table` goes on from it without asking again."""

    table: TableDescriptionTypeDef | None


def _describe(ddb: DynamoDBClient, spec: TableSpec) -> TableDescriptionTypeDef | None:
    try:
        return ddb.describe_table(TableName=spec.name)["Table"]
    except ClientError as exc:
        if has_code(exc, "ResourceNotFoundException"):
            return None
        raise


def describe_table(ddb: DynamoDBClient, spec: TableSpec) -> Described:
    with translating(_resource(spec)):
        return Described(_describe(ddb, spec))


def read_table(
    ddb: DynamoDBClient, spec: TableSpec, described: Described | None = None
) -> TableState | None:
    table = described.table if described is not None else _describe(ddb, spec)
    if table is None:
        return None
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    key_schema = tuple(
        (k["AttributeName"], str(types.get(k["AttributeName"], "?")), str(k["KeyType"]))
        for k in table.get("KeySchema", [])
    )
    throughput = table.get("ProvisionedThroughput", {})
    billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    pitr = True
    if not spec.local:
        backups = ddb.describe_continuous_backups(TableName=spec.name)[
            "ContinuousBackupsDescription"
        ]
        pitr = (
            backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
            == "ENABLED"
        )
    return TableState(
        arn=table.get("TableArn", ""),
        status=table.get("TableStatus", "ACTIVE"),
        key_schema=key_schema,
        billing_mode=billing,
        read_capacity=int(throughput.get("ReadCapacityUnits", 0)),
        write_capacity=int(throughput.get("WriteCapacityUnits", 0)),
        deletion_protection=bool(table.get("DeletionProtectionEnabled", False)),
        pitr=pitr,
    )


# ---------------------------------------------------------------------------------------------
# Operations


@dataclass(frozen=True)
class CreateTable:
    """Create the table hardened: key, capacity, deletion protection and tags at creation, then
    point-in-time recovery once it is active."""

    spec: TableSpec

    def describe(self) -> str:
        spec = self.spec
        capacity = (
            "on-demand"
            if spec.billing_mode == "PAY_PER_REQUEST"
            else f"{spec.read_capacity or spec.default_read}/"
            f"{spec.write_capacity or spec.default_write} RCU/WCU"
        )
        hardening = () if spec.local else ("point-in-time recovery", "deletion protection")
        return "\n".join(("hash key id (S)", capacity, *hardening))


@dataclass(frozen=True)
class SetBillingMode:
    current: str
    wanted: str
    # The throughput to set with it when the wanted mode is PROVISIONED.
    read: int
    write: int

    def describe(self) -> str:
        return f"billing mode: {self.current} -> {self.wanted}"


@dataclass(frozen=True)
class SetCapacity:
    billing_mode: str
    current: tuple[int, int]
    read: int
    write: int

    def describe(self) -> str:
        return f"capacity: {self.current[0]}/{self.current[1]} -> {self.read}/{self.write}"


@dataclass(frozen=True)
class EnablePitr:
    def describe(self) -> str:
        return "point-in-time recovery: on"


@dataclass(frozen=True)
class EnableDeletionProtection:
    def describe(self) -> str:
        return "deletion protection: on"


@dataclass(frozen=True)
class TablePlan(Planned):
    spec: TableSpec | None = None
    # The table exists but is not ACTIVE (being created or updated): updates wait for it.
    busy: bool = False


def _target_capacity(spec: TableSpec, current: TableState) -> tuple[int, int]:
    # Only capacities the file states are converged: Datomic-era tables keep what they have.
    was_provisioned = current.billing_mode == "PROVISIONED"
    read = spec.read_capacity or (current.read_capacity if was_provisioned else spec.default_read)
    write = spec.write_capacity or (
        current.write_capacity if was_provisioned else spec.default_write
    )
    return read, write


def _update_operations(spec: TableSpec, current: TableState) -> tuple[Operation, ...]:
    ops: list[Operation] = []
    read, write = _target_capacity(spec, current)
    if spec.billing_mode != current.billing_mode:
        ops.append(SetBillingMode(current.billing_mode, spec.billing_mode, read, write))
    if spec.billing_mode == "PROVISIONED" and (read, write) != (
        current.read_capacity,
        current.write_capacity,
    ):
        current_rw = (current.read_capacity, current.write_capacity)
        ops.append(SetCapacity(spec.billing_mode, current_rw, read, write))
    if not spec.local:
        if not current.pitr:
            ops.append(EnablePitr())
        if not current.deletion_protection:
            ops.append(EnableDeletionProtection())
    return tuple(ops)


def plan_table(spec: TableSpec, current: TableState | None) -> TablePlan:
    """Pure. Refuses a table whose key schema Datomic cannot use, before any write."""
    resource = _resource(spec)
    if current is None:
        ops: tuple[Operation, ...] = (CreateTable(spec),)
        return TablePlan(resource, action_for(False, ops), ops, spec=spec)
    if current.key_schema != (("id", "S", "HASH"),):
        raise ResourceMismatch(
            "has a key schema Datomic cannot use (it needs hash key id of type S only)",
            resource,
            "name another table in aws-dynamodb-table; this one is left untouched",
        )
    ops = _update_operations(spec, current)
    return TablePlan(
        resource, action_for(True, ops), ops, spec=spec, busy=current.status != "ACTIVE"
    )


# ---------------------------------------------------------------------------------------------
# Executor


def _wait_active(ddb: DynamoDBClient, name: str) -> None:
    ddb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 300}
    )


def _create(ddb: DynamoDBClient, spec: TableSpec) -> bool:
    """False when a concurrent or crashed run created it meanwhile."""
    args: dict[str, Any] = {
        "TableName": spec.name,
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "BillingMode": spec.billing_mode,
    }
    if spec.billing_mode == "PROVISIONED":
        args["ProvisionedThroughput"] = {
            "ReadCapacityUnits": spec.read_capacity or spec.default_read,
            "WriteCapacityUnits": spec.write_capacity or spec.default_write,
        }
    if not spec.local:
        args["DeletionProtectionEnabled"] = True
        args["Tags"] = names.tag_list(spec.system)
    try:
        ddb.create_table(**args)
    except ClientError as exc:
        if not has_code(exc, "ResourceInUseException"):
            raise
        return False
    return True


Sleep = Callable[[float], None]
# Point-in-time recovery right after CreateTable: attempts and back-off (seconds, doubling, capped).
# About two minutes in all before the run gives up with a clear error.
PITR_ATTEMPTS = 8
PITR_FIRST_DELAY = 2.0
PITR_MAX_DELAY = 30.0


def _enable_pitr(ddb: DynamoDBClient, spec: TableSpec, sleep: Sleep) -> None:
    # Reference §11: right after CreateTable, UpdateContinuousBackups may answer
    # ContinuousBackupsUnavailableException for a while, and botocore's standard retry mode does
    # not retry that code: a bounded back-off of our own.
    delay = PITR_FIRST_DELAY
    for attempt in range(1, PITR_ATTEMPTS + 1):
        try:
            ddb.update_continuous_backups(
                TableName=spec.name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
            return
        except ClientError as exc:
            if not has_code(exc, "ContinuousBackupsUnavailableException"):
                raise
            if attempt == PITR_ATTEMPTS:
                raise WaitTimeout(
                    "DynamoDB still refuses point-in-time recovery "
                    f"(ContinuousBackupsUnavailableException) after {PITR_ATTEMPTS} attempts",
                    _resource(spec),
                    "the table exists; rerun the same command later to turn "
                    "point-in-time recovery on (it is safe to repeat)",
                ) from exc
        sleep(delay)
        delay = min(delay * 2, PITR_MAX_DELAY)


def _run_create(ddb: DynamoDBClient, spec: TableSpec, sleep: Sleep) -> None:
    if not _create(ddb, spec):
        # Someone else's create won the race: converge the table that exists instead.
        _wait_active(ddb, spec.name)
        found = read_table(ddb, spec)
        if found is not None:
            _run_updates(ddb, spec, plan_table(spec, found).operations, sleep)
        return
    if spec.local:
        return
    _wait_active(ddb, spec.name)
    # Created with its capacity and deletion protection; only PITR waits for an active table.
    _run_updates(ddb, spec, (EnablePitr(),), sleep)


def _run_updates(
    ddb: DynamoDBClient, spec: TableSpec, ops: tuple[Operation, ...], sleep: Sleep
) -> None:
    update: UpdateTableInputTypeDef = {"TableName": spec.name}
    for op in ops:
        if isinstance(op, SetBillingMode | SetCapacity):
            provisioned = spec.billing_mode == "PROVISIONED"
            update["BillingMode"] = "PROVISIONED" if provisioned else "PAY_PER_REQUEST"
            if provisioned:
                update["ProvisionedThroughput"] = {
                    "ReadCapacityUnits": op.read,
                    "WriteCapacityUnits": op.write,
                }
        elif isinstance(op, EnableDeletionProtection):
            update["DeletionProtectionEnabled"] = True
    if len(update) > 1:
        ddb.update_table(**update)
    if any(isinstance(op, EnablePitr) for op in ops):
        _enable_pitr(ddb, spec, sleep)


def execute_table(ddb: DynamoDBClient, plan: TablePlan, sleep: Sleep = time.sleep) -> None:
    """Only the planned operations; nothing is read again (a lost race excepted)."""
    assert plan.spec is not None
    with translating(plan.resource):
        if any(isinstance(op, CreateTable) for op in plan.operations):
            _run_create(ddb, plan.spec, sleep)
            return
        if not plan.operations:
            return
        if plan.busy:
            _wait_active(ddb, plan.spec.name)
        _run_updates(ddb, plan.spec, plan.operations, sleep)


def read_and_plan_table(
    ddb: DynamoDBClient, spec: TableSpec, described: Described | None = None
) -> TablePlan:
    with translating(_resource(spec)):
        return plan_table(spec, read_table(ddb, spec, described))
