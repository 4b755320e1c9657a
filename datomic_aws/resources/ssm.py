"""The transactor's configuration as an SSM SecureString parameter.

Owns creating and updating the parameter that instances read at boot. The value carries secrets: it
must never appear in a Change, a log line or an error; changes are described by digest only. Tags
are only read before a write (a no-op run needs no ownership proof because it changes nothing).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from datomic_aws import names
from datomic_aws.aws import is_error, translating
from datomic_aws.changes import Action, Change
from datomic_aws.resources.owner import check_owner

# Standard parameters hold 4 KB; larger values need the (billed) Advanced tier.
_STANDARD_LIMIT = 4096


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    system: str
    value: str
    description: str


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def read_parameter(ssm: Any, spec: ParameterSpec) -> str | None:
    try:
        return str(ssm.get_parameter(Name=spec.name, WithDecryption=True)["Parameter"]["Value"])
    except Exception as exc:
        if is_error(exc, "ParameterNotFound"):
            return None
        raise


def read_parameter_tags(ssm: Any, spec: ParameterSpec) -> dict[str, str]:
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=spec.name)["TagList"]
    return {t["Key"]: t["Value"] for t in tags}


def apply_parameter(ssm: Any, spec: ParameterSpec, exists: bool) -> None:
    args: dict[str, Any] = {
        "Name": spec.name,
        "Value": spec.value,
        "Type": "SecureString",
        "Description": spec.description,
        "Tier": "Standard" if len(spec.value.encode()) <= _STANDARD_LIMIT else "Advanced",
    }
    if exists:
        # PutParameter refuses Tags together with Overwrite; tags were set at creation.
        ssm.put_parameter(**args, Overwrite=True)
        return
    try:
        ssm.put_parameter(**args, Tags=names.tag_list(spec.system))
    except Exception as exc:
        if not is_error(exc, "ParameterAlreadyExists"):
            raise
        ssm.put_parameter(**args, Overwrite=True)


def ensure_parameter(ssm: Any, spec: ParameterSpec, *, dry_run: bool, adopt: bool) -> Change:
    resource = f"ssm parameter {spec.name}"
    with translating(resource):
        current = read_parameter(ssm, spec)
        if current == spec.value:
            return Change(resource, Action.NOOP, (f"sha256 {digest(spec.value)[:12]}",))
        retag = False
        if current is not None:
            tags = read_parameter_tags(ssm, spec)
            check_owner(tags, spec.system, resource, explicit=False, adopt=adopt)
            # Adopted: tag it as ours, or every later change would need --adopt again.
            retag = not names.is_ours(tags, spec.system)
            action = Action.UPDATE
            details: tuple[str, ...] = (
                f"SecureString sha256 {digest(current)[:12]} -> {digest(spec.value)[:12]}",
            ) + (("tags: add datomic:system, managed-by",) if retag else ())
        else:
            action = Action.CREATE
            details = (f"SecureString, sha256 {digest(spec.value)[:12]}",)
        if not dry_run:
            apply_parameter(ssm, spec, exists=current is not None)
            if retag:
                ssm.add_tags_to_resource(
                    ResourceType="Parameter", ResourceId=spec.name, Tags=names.tag_list(spec.system)
                )
    return Change(resource, action, details)
