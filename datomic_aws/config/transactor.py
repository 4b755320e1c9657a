"""The transactor properties file as a validated, typed, frozen spec.

Owns which keys mean what to the tool (system name, region, explicit versus derived names), the
warnings about obsolete keys, and the effective configuration that the transactor receives through
SSM (and whose keyed digest rolls the instances). No AWS.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import javaproperties

from datomic_aws.config.common import read_properties, secret_values, validate
from datomic_aws.config.era import obsolete_license_warning
from datomic_aws.errors import InvalidInput, Problem
from datomic_aws.properties import PropertiesText

# Set on the instance at boot from instance metadata; never part of the stored configuration.
_BOOT_KEYS = ("host", "alt-host")
# The key of the configuration's keyed digest (HMAC-SHA256), written once by ensure-transactor.
# It lives in the transactor file and, like every other line, in the SSM value (the instance checks
# the digest with it), and nowhere else: the template, its outputs, the user data and the tags
# carry only the HMAC, which tests no guess of a secret without this key. The file already holds
# every secret the digest covers, so whoever can read the file (git included) learns nothing more
# from the key; keeping the key only in SSM instead would make every run decrypt the parameter to
# compute the digest, which a dry run must not need (issue 11).
DIGEST_SECRET_KEY = "datomic-aws-digest-secret"
# The SSM parameter version holding this file's configuration, written back by ensure-transactor;
# create-cf-template pins the launch template to it. Not part of the stored configuration.
CONFIG_VERSION_KEY = "datomic-aws-config-version"
# The keyed digest of the configuration that version holds, written beside it by ensure-transactor:
# create-cf-template refuses a file whose configuration no longer has that digest (edited since),
# which would otherwise pin the old version. Keyed, so it reveals nothing (issue 11). A file
# without it (written before it existed) cannot be checked and is not refused; the next
# ensure-transactor records it. Not part of the stored configuration either.
CONFIG_DIGEST_KEY = "datomic-aws-config-digest"
# The KMS key of the SSM parameter (resources/kms.py): blank = the AWS-managed alias/aws/ssm,
# `managed` = a key the tool creates for the system, else the operator's key (id, ARN or alias).
# Where the configuration is kept, not part of it: changing it re-encrypts the same value.
KMS_KEY_KEY = "aws-ssm-kms-key"
_NOT_STORED = (*_BOOT_KEYS, CONFIG_VERSION_KEY, CONFIG_DIGEST_KEY, KMS_KEY_KEY)
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
    license_key_line: int | None = None
    # aws-ssm-kms-key: None for SSM's default key, "managed", or the operator's key.
    kms_key: str | None = None

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


_SIZE = re.compile(r"[0-9]+[kKmMgG]?")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size_bytes(size: str) -> int:
    """A Datomic memory size (`32m`, `1g`, `65536` bytes) in bytes."""
    unit = size[-1].lower() if size[-1].isalpha() else ""
    return int(size[: len(size) - len(unit)]) * _SIZE_UNITS[unit]


def _contradictions(props: PropertiesText, typed: Mapping[str, object]) -> list[Problem]:
    """Keys that each pass on their own but cannot hold together."""
    problems = []
    threshold, maximum = typed.get("memory-index-threshold"), typed.get("memory-index-max")
    if (
        isinstance(threshold, str)
        and isinstance(maximum, str)
        and _SIZE.fullmatch(threshold)
        and _SIZE.fullmatch(maximum)
        and size_bytes(threshold) > size_bytes(maximum)
    ):
        # Datomic indexes when the memory index reaches the threshold, and throttles writes
        # at the max: a threshold above the max can never be reached.
        problems.append(
            Problem(
                props.path,
                props.line_of("memory-index-threshold"),
                "memory-index-threshold",
                f"memory-index-threshold {threshold} is above memory-index-max {maximum} "
                f"(line {props.line_of('memory-index-max')})",
                "the threshold must be below the max, e.g. memory-index-threshold=32m and "
                "memory-index-max=512m",
            )
        )
    region, ddb_region = typed.get("aws-region"), typed.get("aws-dynamodb-region")
    # With ddb everything lives in the table's region; sql and dev ignore aws-dynamodb-region.
    if (
        typed.get("protocol") == "ddb"
        and isinstance(region, str)
        and isinstance(ddb_region, str)
        and region != ddb_region
    ):
        problems.append(
            Problem(
                props.path,
                props.line_of("aws-region"),
                "aws-region",
                f"aws-region {region} disagrees with aws-dynamodb-region {ddb_region} (line "
                f"{props.line_of('aws-dynamodb-region')}): the roles, bucket and configuration "
                "live in one region with the table",
                "remove aws-region, or give both the same region",
            )
        )
    return problems


def spec_from(props: PropertiesText) -> TransactorSpec:
    typed, problems = validate(props, "transactor")
    problems = problems + _contradictions(props, typed)
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0, p.key or ""))
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
        warnings.append(obsolete_license_warning(props.path, props.line_of("license-key")))
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
        license_key_line=props.line_of("license-key"),
        kms_key=_kms_key(values),
    )


def _kms_key(values: Mapping[str, str]) -> str | None:
    key = _optional(values, KMS_KEY_KEY)
    return None if key in (None, "alias/aws/ssm") else key


def load_transactor(path: str | Path) -> tuple[PropertiesText, TransactorSpec]:
    props = read_properties(path)
    return props, spec_from(props)


def load_transactor_text(text: str, path: str | Path) -> tuple[PropertiesText, TransactorSpec]:
    """The same from text already in memory (a file a step of this run rewrote or would)."""
    props = PropertiesText(text, str(path))
    return props, spec_from(props)


def effective_config(values: Mapping[str, str]) -> str:
    """What the transactor reads from SSM: every key but host/alt-host and the version, in file
    order, no comments."""
    lines = [
        javaproperties.join_key_value(key, value) + "\n"
        for key, value in values.items()
        if key not in _NOT_STORED
    ]
    return "".join(lines)


def new_digest_secret() -> str:
    """A fresh key for the keyed digest: 256 random bits, hex."""
    return secrets.token_hex(32)


def config_digest(values: Mapping[str, str]) -> str | None:
    """HMAC-SHA256 (hex) of the stored configuration under the file's digest key; None without
    one. The message is the SSM value without its trailing newlines: the boot script reads the
    value through the CLI's text output, which adds one, and compares what bash keeps."""
    key = values.get(DIGEST_SECRET_KEY, "").strip()
    return value_digest(effective_config(values), key) if key else None


def value_digest(value: str, key: str) -> str:
    """The keyed digest of a stored value under `key` (hex), as the boot script computes it."""
    message = value.rstrip("\n").encode("utf-8")
    return hmac.new(bytes.fromhex(key), message, hashlib.sha256).hexdigest()


def config_version(values: Mapping[str, str]) -> int | None:
    """The SSM parameter version ensure-transactor stored this configuration as; None before."""
    value = values.get(CONFIG_VERSION_KEY, "").strip()
    return int(value) if value.isdigit() else None


def config_pin(transactor: TransactorSpec) -> str:
    """`<version>:<keyed digest>` of the transactor file's configuration (template_problems says
    when the file lacks either)."""
    values = transactor.values
    return f"{config_version(values)}:{config_digest(values)}"


def pin_problems(transactor: TransactorSpec) -> list[Problem]:
    """The transactor file's keys ensure-transactor writes for the pin (the digest's key, the
    parameter version), and a configuration edited since ensure-transactor stored that version
    (`stale_pin`)."""
    problems = [
        Problem(
            transactor.path,
            None,
            key,
            f"{key} is missing",
            f"run datomic-aws ensure-transactor {transactor.path} first; it writes it",
        )
        for key, value in (
            (DIGEST_SECRET_KEY, config_digest(transactor.values)),
            (CONFIG_VERSION_KEY, config_version(transactor.values)),
        )
        if value is None
    ]
    return problems or stale_pin(transactor)


def stale_pin(transactor: TransactorSpec) -> list[Problem]:
    """The configuration no longer has the keyed digest recorded beside its version: it was edited
    after ensure-transactor stored that version, so a template would pin the old configuration
    (whose digest the instance then refuses). None without a recorded digest (cannot check)."""
    values = transactor.values
    recorded = values.get(CONFIG_DIGEST_KEY, "").strip()
    current = config_digest(values)
    if not recorded or current is None or hmac.compare_digest(recorded, current):
        return []
    return [
        Problem(
            transactor.path,
            None,
            CONFIG_VERSION_KEY,
            f"the configuration changed since ensure-transactor stored it as version "
            f"{config_version(values)}: a template would pin that older version",
            f"run datomic-aws ensure-transactor {transactor.path} first; it stores this "
            "configuration and records its version (apply does both)",
        )
    ]
