"""The transactor properties file as a validated, typed, frozen spec.

Owns which keys mean what to the tool (system name, region, explicit versus derived names), the
warnings about obsolete keys, and the effective configuration that the transactor receives through
SSM (and whose digest rolls the instances). No AWS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import javaproperties

from datomic_aws.config.common import read_properties, secret_values, validate
from datomic_aws.errors import InvalidInput
from datomic_aws.properties import PropertiesText

# Set on the instance at boot from instance metadata; never part of the stored configuration.
_BOOT_KEYS = ("host", "alt-host")
DEFAULT_READ_CAPACITY = 100
DEFAULT_WRITE_CAPACITY = 50


@dataclass(frozen=True)
class TransactorSpec:
    path: str
    protocol: str
    system: str
    region: str
    table: str | None
    table_endpoint: str | None
    billing_mode: str
    read_capacity: int | None
    write_capacity: int | None
    transactor_role: str | None
    peer_role: str | None
    log_bucket_wanted: bool
    log_bucket: str | None
    cloudwatch_region: str | None
    values: Mapping[str, str]
    secrets: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def has_table(self) -> bool:
        return self.protocol in ("ddb", "ddb-local")

    @property
    def has_iam(self) -> bool:
        """ddb-local runs against DynamoDB Local: the table is all there is to provision."""
        return self.protocol != "ddb-local"


def _optional(values: Mapping[str, str], key: str) -> str | None:
    value = values.get(key, "").strip()
    return value or None


def _local_endpoint(value: str) -> str:
    return value if "://" in value else f"http://{value}"


def spec_from(props: PropertiesText) -> TransactorSpec:
    typed, problems = validate(props, "transactor")
    if problems:
        raise InvalidInput(problems)
    values = props.values()
    protocol = str(typed["protocol"])
    table = _optional(values, "aws-dynamodb-table") if protocol in ("ddb", "ddb-local") else None
    system = table or _optional(values, "aws-cloudwatch-dimension-value") or Path(props.path).stem
    if protocol in ("ddb", "ddb-local"):
        # The table lives where the transactor looks for it: aws-dynamodb-region comes first.
        region = _optional(values, "aws-dynamodb-region") or _optional(values, "aws-region")
    else:
        region = _optional(values, "aws-region")
    if region is None:
        # ddb-local with no region: DynamoDB Local ignores it, but the SDK wants one.
        region = "us-east-1"
    warnings = []
    if "license-key" in values:
        warnings.append(
            f"{props.path}:{props.line_of('license-key')} license-key is obsolete since Datomic Pro "
            "1.0.6726 (free, Apache-2.0); it is accepted and passed through, but can be removed"
        )
    endpoint = _optional(values, "aws-dynamodb-override-endpoint")
    return TransactorSpec(
        path=props.path,
        protocol=protocol,
        system=system,
        region=region,
        table=table,
        table_endpoint=_local_endpoint(endpoint) if protocol == "ddb-local" and endpoint else None,
        billing_mode=str(typed.get("aws-dynamodb-billing-mode", "PROVISIONED")),
        read_capacity=typed.get("aws-dynamodb-read-capacity"),
        write_capacity=typed.get("aws-dynamodb-write-capacity"),
        transactor_role=_optional(values, "aws-transactor-role"),
        peer_role=_optional(values, "aws-peer-role"),
        log_bucket_wanted="aws-s3-log-bucket-id" in values,
        log_bucket=_optional(values, "aws-s3-log-bucket-id"),
        cloudwatch_region=_optional(values, "aws-cloudwatch-region"),
        values=values,
        secrets=secret_values(values),
        warnings=tuple(warnings),
    )


def load_transactor(path: str | Path) -> tuple[PropertiesText, TransactorSpec]:
    props = read_properties(path)
    return props, spec_from(props)


def effective_config(values: Mapping[str, str]) -> str:
    """What the transactor reads from SSM: every key but host/alt-host, in file order, no comments."""
    lines = [
        javaproperties.join_key_value(key, value) + "\n"
        for key, value in values.items()
        if key not in _BOOT_KEYS
    ]
    return "".join(lines)


def config_digest(values: Mapping[str, str]) -> str:
    return hashlib.sha256(effective_config(values).encode("utf-8")).hexdigest()
