"""The Datomic storage table in DynamoDB.

Owns creating the table (hash key `id`/`S`, capacity or on-demand, point-in-time recovery, deletion
protection, tags) and converging only what is safe on an existing one: PITR and deletion protection
on, capacity or billing mode when the file states them. It must never delete, recreate or change the
key schema of a table: a wrong schema is an error for the operator, not something to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datomic_aws import names
from datomic_aws.aws import is_error, translating
from datomic_aws.changes import Action, Change
from datomic_aws.errors import ResourceMismatch

_KEY_SCHEMA = [{"AttributeName": "id", "KeyType": "HASH"}]
_ATTRIBUTES = [{"AttributeName": "id", "AttributeType": "S"}]


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


def read_table(ddb: Any, spec: TableSpec) -> TableState | None:
    try:
        table = ddb.describe_table(TableName=spec.name)["Table"]
    except Exception as exc:
        if is_error(exc, "ResourceNotFoundException"):
            return None
        raise
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    key_schema = tuple(
        (k["AttributeName"], types.get(k["AttributeName"], "?"), k["KeyType"])
        for k in table["KeySchema"]
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
        arn=table["TableArn"],
        status=table["TableStatus"],
        key_schema=key_schema,
        billing_mode=billing,
        read_capacity=int(throughput.get("ReadCapacityUnits", 0)),
        write_capacity=int(throughput.get("WriteCapacityUnits", 0)),
        deletion_protection=bool(table.get("DeletionProtectionEnabled", False)),
        pitr=pitr,
    )


def diff_table(spec: TableSpec, current: TableState) -> list[str]:
    out = []
    if spec.billing_mode != current.billing_mode:
        out.append(f"billing mode: {current.billing_mode} -> {spec.billing_mode}")
    if spec.billing_mode == "PROVISIONED":
        # Only capacities the file states are converged: Datomic-era tables keep what they have.
        read = spec.read_capacity or (
            current.read_capacity if current.billing_mode == "PROVISIONED" else spec.default_read
        )
        write = spec.write_capacity or (
            current.write_capacity if current.billing_mode == "PROVISIONED" else spec.default_write
        )
        if (read, write) != (current.read_capacity, current.write_capacity):
            out.append(
                f"capacity: {current.read_capacity}/{current.write_capacity} -> {read}/{write}"
            )
    if not spec.local:
        if not current.pitr:
            out.append("point-in-time recovery: on")
        if not current.deletion_protection:
            out.append("deletion protection: on")
    return out


def _wait_active(ddb: Any, name: str) -> None:
    ddb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 300}
    )


def _create(ddb: Any, spec: TableSpec) -> None:
    args: dict[str, Any] = {
        "TableName": spec.name,
        "KeySchema": _KEY_SCHEMA,
        "AttributeDefinitions": _ATTRIBUTES,
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
    except Exception as exc:
        # A concurrent or crashed run created it meanwhile: converge it instead.
        if not is_error(exc, "ResourceInUseException"):
            raise


def apply_table(ddb: Any, spec: TableSpec, current: TableState | None) -> None:
    if current is None:
        _create(ddb, spec)
        if spec.local:
            return
        _wait_active(ddb, spec.name)
        current = read_table(ddb, spec)
        assert current is not None
    elif current.status != "ACTIVE":
        _wait_active(ddb, spec.name)
    diffs = diff_table(spec, current)
    update: dict[str, Any] = {}
    if any(d.startswith(("billing mode", "capacity")) for d in diffs):
        update["BillingMode"] = spec.billing_mode
        if spec.billing_mode == "PROVISIONED":
            update["ProvisionedThroughput"] = {
                "ReadCapacityUnits": spec.read_capacity
                or current.read_capacity
                or spec.default_read,
                "WriteCapacityUnits": spec.write_capacity
                or current.write_capacity
                or spec.default_write,
            }
    if not spec.local and not current.deletion_protection:
        update["DeletionProtectionEnabled"] = True
    if update:
        ddb.update_table(TableName=spec.name, **update)
    if not spec.local and not current.pitr:
        ddb.update_continuous_backups(
            TableName=spec.name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


def ensure_table(ddb: Any, spec: TableSpec, *, dry_run: bool) -> Change:
    resource = _resource(spec)
    with translating(resource):
        current = read_table(ddb, spec)
        if current is not None and current.key_schema != (("id", "S", "HASH"),):
            raise ResourceMismatch(
                "has a key schema Datomic cannot use (it needs hash key id of type S only)",
                resource,
                "name another table in aws-dynamodb-table; this one is left untouched",
            )
        if current is None:
            action = Action.CREATE
            capacity = (
                "on-demand"
                if spec.billing_mode == "PAY_PER_REQUEST"
                else f"{spec.read_capacity or spec.default_read}/"
                f"{spec.write_capacity or spec.default_write} RCU/WCU"
            )
            details: tuple[str, ...] = ("hash key id (S)", capacity) + (
                () if spec.local else ("point-in-time recovery", "deletion protection")
            )
        else:
            details = tuple(diff_table(spec, current))
            action = Action.UPDATE if details else Action.NOOP
        if action is not Action.NOOP and not dry_run:
            apply_table(ddb, spec, current)
    return Change(resource, action, details)
