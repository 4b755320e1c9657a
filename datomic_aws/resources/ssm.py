"""The transactor's configuration as an SSM SecureString parameter.

Owns creating and updating the parameter that instances read at boot. The value carries secrets: it
must never appear in a Change, a log line or an error; changes are described by keyed digest only.
The keyed digest (HMAC-SHA256, config/transactor.py) is kept in the parameter's Description, so a
run decides "unchanged" from `DescribeParameters` alone: no read decrypts the value, and a drift
check needs no decrypt permission (issue 11). The KMS key encrypting it is the AWS-managed
`alias/aws/ssm` unless the spec names another (resources/kms.py); DescribeParameters says which key
the parameter has, and another key re-puts the value under the spec's. Tags are only read before a
write (a no-op run needs no ownership proof because it changes nothing). Read once (`read_parameter_state`), plan
(`plan_parameter`), run only that (`execute_parameter`, which answers the version it wrote).
"""

from __future__ import annotations

import re
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
    from mypy_boto3_ssm.type_defs import ParameterStringFilterTypeDef, PutParameterRequestTypeDef

# SSM's default key for SecureString (the AWS-managed key of the account and region).
DEFAULT_KEY = "alias/aws/ssm"
# Standard parameters hold 4 KB; larger values need the (billed) Advanced tier.
_STANDARD_LIMIT = 4096
_DIGEST_IN_DESCRIPTION = re.compile(r"\bhmac-sha256:([0-9a-f]{64})\b")


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    system: str
    value: str = field(repr=False)
    description: str
    # The value's keyed digest (HMAC-SHA256 hex): reveals nothing without the key inside the value.
    digest: str = ""
    # The version the file says holds its configuration (None before the first write): a later
    # version, written by hand, is drift even when the Description was left as it was.
    version: int | None = None
    # The KMS key PutParameter is given (an alias or key ARN); `key_names` are other names of
    # the same key (its id, its ARN, its alias's ARN) DescribeParameters may answer with.
    key: str = DEFAULT_KEY
    key_names: frozenset[str] = frozenset()

    def uses(self, key: str) -> bool:
        return key == self.key or key in self.key_names

    @property
    def full_description(self) -> str:
        return f"{self.description}; hmac-sha256:{self.digest}"


@dataclass(frozen=True)
class ParameterState:
    """What DescribeParameters says, the value never read."""

    version: int
    # The keyed digest the Description holds; None when it holds none (written by hand, or by a
    # version of the tool before the digest moved there): the value is then rewritten once.
    digest: str | None
    # Read only when the digest differs (a write follows); None otherwise.
    tags: dict[str, str] | None = field(default=None, hash=False, compare=False)
    # The KMS key the value is encrypted with, as DescribeParameters names it.
    key: str = DEFAULT_KEY


def _resource(spec: ParameterSpec) -> str:
    return f"ssm parameter {spec.name}"


def describe_parameter(ssm: SSMClient, name: str) -> tuple[int, str, str] | None:
    """(version, description, KMS key) of the parameter, or None when there is none. DescribeParameters
    may answer a page without the match and a NextToken (it filters after paginating): follow it.
    One call in practice."""
    filters: list[ParameterStringFilterTypeDef] = [
        {"Key": "Name", "Option": "Equals", "Values": [name]}
    ]
    token = ""
    while True:
        page = (
            ssm.describe_parameters(ParameterFilters=filters, NextToken=token)
            if token
            else ssm.describe_parameters(ParameterFilters=filters)
        )
        for meta in page.get("Parameters", []):
            if meta.get("Name") == name:
                key = meta.get("KeyId") or DEFAULT_KEY
                return int(meta.get("Version", 0)), meta.get("Description", ""), key
        token = page.get("NextToken", "")
        if not token:
            return None


def stored_digest(description: str) -> str | None:
    """The keyed digest a parameter's Description keeps (None when it keeps none)."""
    m = _DIGEST_IN_DESCRIPTION.search(description)
    return m.group(1) if m else None


def read_parameter_tags(ssm: SSMClient, spec: ParameterSpec) -> dict[str, str]:
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=spec.name)["TagList"]
    return {t["Key"]: t["Value"] for t in tags}


def read_parameter_state(ssm: SSMClient, spec: ParameterSpec) -> ParameterState | None:
    with translating(_resource(spec)):
        found = describe_parameter(ssm, spec.name)
        if found is None:
            return None
        version, description, key = found
        m = _DIGEST_IN_DESCRIPTION.search(description)
        stored = m.group(1) if m else None
        state = ParameterState(version, stored, key=key)
        if _unchanged(spec, state):
            return state
        return ParameterState(version, stored, read_parameter_tags(ssm, spec), key=key)


def _unchanged(spec: ParameterSpec, current: ParameterState) -> bool:
    return (
        current.digest == spec.digest
        and spec.version in (None, current.version)
        and spec.uses(current.key)
    )


def planned_version(current: ParameterState | None, plan: Planned) -> int:
    """The version the parameter will hold after `plan`: each write adds one (1 when created)."""
    if current is None:
        return 1
    writes = sum(isinstance(op, PutParameter) for op in plan.operations)
    return current.version + writes


@dataclass(frozen=True)
class PutParameter:
    spec: ParameterSpec = field(repr=False)
    # The keyed digest of the value it replaces ("" when unknown); None when it is created.
    previous: str | None = None
    # The key of the value it replaces (None when it is created).
    previous_key: str | None = None

    @property
    def key_id(self) -> str | None:
        """The KeyId to send: none for the default key on a parameter that has it (or is new),
        so today's calls are unchanged; always named otherwise, a return to the default key
        included (an overwrite without KeyId is not documented to reset the key)."""
        if self.spec.key == DEFAULT_KEY and self.previous_key in (None, DEFAULT_KEY):
            return None
        return self.spec.key

    def describe(self) -> str:
        new = self.spec.digest[:12]
        key = self.spec.key
        if self.previous is None:
            return f"SecureString, hmac-sha256 {new}" + (
                "" if key == DEFAULT_KEY else f", key {key}"
            )
        line = f"SecureString hmac-sha256 {self.previous[:12] or '(none)'} -> {new}"
        if self.previous_key is not None and not self.spec.uses(self.previous_key):
            line += f"; key {self.previous_key} -> {key}"
        return line


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
    if current is not None and _unchanged(spec, current):
        return Planned(resource, Action.NOOP, notes=(f"hmac-sha256 {spec.digest[:12]}",))
    if current is None:
        return Planned(resource, Action.CREATE, (PutParameter(spec),))
    tags = current.tags or {}
    check_owner(tags, spec.system, resource, explicit=False, adopt=adopt)
    ops: tuple[Operation, ...] = (PutParameter(spec, current.digest or "", current.key),)
    if not names.is_ours(tags, spec.system):
        ops += (TagParameter(spec.name, spec.system),)
    return Planned(resource, Action.UPDATE, ops)


def _put(ssm: SSMClient, op: PutParameter, *, exists: bool) -> int:
    """The write; the version it made."""
    spec = op.spec
    tier: ParameterTierType = (
        "Standard" if len(spec.value.encode()) <= _STANDARD_LIMIT else "Advanced"
    )
    request: PutParameterRequestTypeDef = {
        "Name": spec.name,
        "Value": spec.value,
        "Type": "SecureString",
        "Description": spec.full_description,
        "Tier": tier,
    }
    if op.key_id is not None:
        request["KeyId"] = op.key_id
    if exists:
        # PutParameter refuses Tags together with Overwrite; tags were set at creation.
        request["Overwrite"] = True
        return ssm.put_parameter(**request)["Version"]
    try:
        created: PutParameterRequestTypeDef = {**request, "Tags": names.tag_list(spec.system)}
        return ssm.put_parameter(**created)["Version"]
    except ClientError as exc:
        if not has_code(exc, "ParameterAlreadyExists"):
            raise
        # A create whose answer was lost and was retried: the version it made holds this value.
        found = describe_parameter(ssm, spec.name)
        if found is not None and f"hmac-sha256:{spec.digest}" in found[1] and spec.uses(found[2]):
            return found[0]
        return _put(ssm, op, exists=True)


def execute_parameter(ssm: SSMClient, plan: Planned) -> int | None:
    """The planned writes; the version the last one made (None when nothing was written)."""
    version = None
    with translating(plan.resource):
        for op in plan.operations:
            if isinstance(op, PutParameter):
                version = _put(ssm, op, exists=op.previous is not None)
            elif isinstance(op, TagParameter):
                ssm.add_tags_to_resource(
                    ResourceType="Parameter",
                    ResourceId=op.name,
                    Tags=names.tag_list(op.system),
                )
    return version
