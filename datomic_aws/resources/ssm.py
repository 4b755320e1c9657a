"""The transactor's configuration as an SSM SecureString parameter.

Owns creating and updating the parameter that instances read at boot. The value carries secrets: it
must never appear in a Change, a log line or an error; changes are described by digest only. Tags
are only read before a write (a no-op run needs no ownership proof because it changes nothing).
Read once (`read_parameter_state`), plan (`plan_parameter`), run only that (`execute_parameter`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.aws_errors import has_code, translating
from datomic_aws.changes import Action
from datomic_aws.resources.owner import check_owner
from datomic_aws.resources.plan import Operation, Planned

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_ssm.literals import ParameterTierType

# Standard parameters hold 4 KB; larger values need the (billed) Advanced tier.
_STANDARD_LIMIT = 4096


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    system: str
    value: str = field(repr=False)
    description: str


@dataclass(frozen=True)
class ParameterState:
    value: str = field(repr=False)
    # Read only when the value differs (a write follows); None otherwise.
    tags: dict[str, str] | None = field(default=None, hash=False, compare=False)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _resource(spec: ParameterSpec) -> str:
    return f"ssm parameter {spec.name}"


def read_parameter(ssm: SSMClient, spec: ParameterSpec) -> str | None:
    try:
        return str(ssm.get_parameter(Name=spec.name, WithDecryption=True)["Parameter"]["Value"])
    except ClientError as exc:
        if has_code(exc, "ParameterNotFound"):
            return None
        raise


def read_parameter_tags(ssm: SSMClient, spec: ParameterSpec) -> dict[str, str]:
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=spec.name)["TagList"]
    return {t["Key"]: t["Value"] for t in tags}


def read_parameter_state(ssm: SSMClient, spec: ParameterSpec) -> ParameterState | None:
    with translating(_resource(spec)):
        value = read_parameter(ssm, spec)
        if value is None:
            return None
        tags = None if value == spec.value else read_parameter_tags(ssm, spec)
        return ParameterState(value, tags)


@dataclass(frozen=True)
class PutParameter:
    spec: ParameterSpec = field(repr=False)
    # The digest of the value it replaces; None when the parameter is created.
    previous: str | None = None

    def describe(self) -> str:
        new = digest(self.spec.value)[:12]
        if self.previous is None:
            return f"SecureString, sha256 {new}"
        return f"SecureString sha256 {self.previous[:12]} -> {new}"


@dataclass(frozen=True)
class TagParameter:
    """Adopted: tag it as ours, or every later change would need --adopt again."""

    name: str
    system: str

    def describe(self) -> str:
        return "tags: add datomic:system, managed-by"


def plan_parameter(spec: ParameterSpec, current: ParameterState | None, *, adopt: bool) -> Planned:
    """Pure; the ownership refusal comes here, before any write."""
    resource = _resource(spec)
    if current is not None and current.value == spec.value:
        return Planned(resource, Action.NOOP, notes=(f"sha256 {digest(spec.value)[:12]}",))
    if current is None:
        return Planned(resource, Action.CREATE, (PutParameter(spec),))
    tags = current.tags or {}
    check_owner(tags, spec.system, resource, explicit=False, adopt=adopt)
    ops: tuple[Operation, ...] = (PutParameter(spec, digest(current.value)),)
    if not names.is_ours(tags, spec.system):
        ops += (TagParameter(spec.name, spec.system),)
    return Planned(resource, Action.UPDATE, ops)


def _put(ssm: SSMClient, spec: ParameterSpec, *, exists: bool) -> None:
    tier: ParameterTierType = (
        "Standard" if len(spec.value.encode()) <= _STANDARD_LIMIT else "Advanced"
    )
    if exists:
        # PutParameter refuses Tags together with Overwrite; tags were set at creation.
        ssm.put_parameter(
            Name=spec.name,
            Value=spec.value,
            Type="SecureString",
            Description=spec.description,
            Tier=tier,
            Overwrite=True,
        )
        return
    try:
        ssm.put_parameter(
            Name=spec.name,
            Value=spec.value,
            Type="SecureString",
            Description=spec.description,
            Tier=tier,
            Tags=names.tag_list(spec.system),
        )
    except ClientError as exc:
        if not has_code(exc, "ParameterAlreadyExists"):
            raise
        _put(ssm, spec, exists=True)


def execute_parameter(ssm: SSMClient, plan: Planned) -> None:
    with translating(plan.resource):
        for op in plan.operations:
            if isinstance(op, PutParameter):
                _put(ssm, op.spec, exists=op.previous is not None)
            elif isinstance(op, TagParameter):
                ssm.add_tags_to_resource(
                    ResourceType="Parameter",
                    ResourceId=op.name,
                    Tags=names.tag_list(op.system),
                )
