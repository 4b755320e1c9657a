"""IAM roles with their inline policies and the instance profile of the same name.

Owns creating a role (EC2 trust, tags), converging its trust policy and the inline policies it is
given, and the instance profile that carries it to EC2. Removes only inline policies the tool itself
manages (see policies.is_managed_policy_name); never deletes a role, a profile or a foreign policy.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from datomic_aws import names
from datomic_aws.aws import is_error, translating
from datomic_aws.changes import Action, Change
from datomic_aws.policies import TRUST_POLICY, Document
from datomic_aws.resources.owner import check_owner


@dataclass(frozen=True)
class RoleSpec:
    name: str
    system: str
    explicit: bool
    policies: Mapping[str, Document]
    description: str
    # Names of inline policies the tool may delete when they are not in `policies`.
    managed: Callable[[str], bool] = field(default=lambda _name: False)


@dataclass(frozen=True)
class RoleState:
    tags: dict[str, str]
    trust: Document
    policies: dict[str, Document]
    profile_exists: bool
    profile_roles: tuple[str, ...]


def _decode(doc: Any) -> Document:
    # IAM returns policy documents URL-encoded; boto3 decodes some and not others.
    if isinstance(doc, str):
        return dict(json.loads(urllib.parse.unquote(doc)))
    return dict(doc)


def _canonical(doc: Document) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def read_role(iam: Any, spec: RoleSpec) -> RoleState | None:
    try:
        role = iam.get_role(RoleName=spec.name)["Role"]
    except Exception as exc:
        if is_error(exc, "NoSuchEntity"):
            return None
        raise
    policy_names: list[str] = []
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=spec.name):
        policy_names.extend(page["PolicyNames"])
    policies = {
        name: _decode(iam.get_role_policy(RoleName=spec.name, PolicyName=name)["PolicyDocument"])
        for name in policy_names
        if name in spec.policies
    }
    policies.update({name: {} for name in policy_names if name not in spec.policies})
    try:
        profile = iam.get_instance_profile(InstanceProfileName=spec.name)["InstanceProfile"]
        profile_exists = True
        profile_roles = tuple(r["RoleName"] for r in profile.get("Roles", []))
    except Exception as exc:
        if not is_error(exc, "NoSuchEntity"):
            raise
        profile_exists, profile_roles = False, ()
    return RoleState(
        tags={t["Key"]: t["Value"] for t in role.get("Tags", [])},
        trust=_decode(role["AssumeRolePolicyDocument"]),
        policies=policies,
        profile_exists=profile_exists,
        profile_roles=profile_roles,
    )


def diff_role(spec: RoleSpec, current: RoleState) -> list[str]:
    out = []
    if _canonical(current.trust) != _canonical(TRUST_POLICY):
        out.append("trust policy: EC2 may assume the role")
    for name, doc in sorted(spec.policies.items()):
        if name not in current.policies:
            out.append(f"inline policy {name}: add")
        elif _canonical(current.policies[name]) != _canonical(doc):
            out.append(f"inline policy {name}: update")
    for name in sorted(current.policies):
        if name not in spec.policies and spec.managed(name):
            out.append(f"inline policy {name}: remove (no longer in the file)")
    if not current.profile_exists:
        out.append(f"instance profile {spec.name}: create")
    if spec.name not in current.profile_roles:
        out.append(f"instance profile {spec.name}: add the role")
    return out


def apply_role(iam: Any, spec: RoleSpec, current: RoleState | None) -> None:
    if current is None:
        try:
            iam.create_role(
                RoleName=spec.name,
                AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
                Description=spec.description,
                Tags=names.tag_list(spec.system),
            )
        except Exception as exc:
            if not is_error(exc, "EntityAlreadyExists"):
                raise
        current = RoleState({}, TRUST_POLICY, {}, False, ())
        current = _with_profile(iam, spec, current)
    if _canonical(current.trust) != _canonical(TRUST_POLICY):
        iam.update_assume_role_policy(RoleName=spec.name, PolicyDocument=json.dumps(TRUST_POLICY))
    for name, doc in sorted(spec.policies.items()):
        if _canonical(current.policies.get(name, {})) != _canonical(doc):
            iam.put_role_policy(RoleName=spec.name, PolicyName=name, PolicyDocument=json.dumps(doc))
    for name in sorted(current.policies):
        if name not in spec.policies and spec.managed(name):
            iam.delete_role_policy(RoleName=spec.name, PolicyName=name)
    _with_profile(iam, spec, current)


def _with_profile(iam: Any, spec: RoleSpec, current: RoleState) -> RoleState:
    if not current.profile_exists:
        try:
            iam.create_instance_profile(
                InstanceProfileName=spec.name, Tags=names.tag_list(spec.system)
            )
        except Exception as exc:
            if not is_error(exc, "EntityAlreadyExists"):
                raise
    if spec.name not in current.profile_roles:
        # AddRoleToInstanceProfile twice is LimitExceeded (a profile holds one role), so the
        # state read above decides; a crash between create and add is converged here.
        try:
            iam.add_role_to_instance_profile(InstanceProfileName=spec.name, RoleName=spec.name)
        except Exception as exc:
            if not is_error(exc, "LimitExceeded", "EntityAlreadyExists"):
                raise
    return RoleState(current.tags, current.trust, current.policies, True, (spec.name,))


def ensure_role(iam: Any, spec: RoleSpec, *, dry_run: bool, adopt: bool) -> Change:
    resource = f"iam role {spec.name}"
    with translating(resource):
        current = read_role(iam, spec)
        if current is not None:
            check_owner(current.tags, spec.system, resource, explicit=spec.explicit, adopt=adopt)
        if current is None:
            action = Action.CREATE
            details: tuple[str, ...] = (
                "trust: ec2.amazonaws.com",
                *(f"inline policy {n}" for n in sorted(spec.policies)),
                f"instance profile {spec.name}",
            )
        else:
            details = tuple(diff_role(spec, current))
            action = Action.UPDATE if details else Action.NOOP
        if action is not Action.NOOP and not dry_run:
            apply_role(iam, spec, current)
    return Change(resource, action, details)
