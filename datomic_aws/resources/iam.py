"""IAM roles with their inline policies and the instance profile of the same name.

Owns creating a role (EC2 trust, tags), converging its trust policy and the inline policies it is
given, and the instance profile that carries it to EC2. The profile has the role's name and follows
the ownership rule of design §3 on its own: at a derived name, one that exists without our tags
(holding another role, or none) is refused unless `--adopt`, which tags it and makes it hold our
role; at a name from the file it is used as it is, but taking another role out of it still needs
`--adopt`. Removes only inline policies the tool itself manages (see
policies.is_managed_policy_name); never deletes a role, a profile or a foreign policy.
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
from datomic_aws.errors import ResourceMismatch
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
class ProfileState:
    tags: dict[str, str]
    roles: tuple[str, ...]


@dataclass(frozen=True)
class RoleState:
    tags: dict[str, str]
    trust: Document
    policies: dict[str, Document]


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
    return RoleState(
        tags={t["Key"]: t["Value"] for t in role.get("Tags", [])},
        trust=_decode(role["AssumeRolePolicyDocument"]),
        policies=policies,
    )


def read_profile(iam: Any, name: str) -> ProfileState | None:
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except Exception as exc:
        if is_error(exc, "NoSuchEntity"):
            return None
        raise
    return ProfileState(
        tags={t["Key"]: t["Value"] for t in profile.get("Tags", [])},
        roles=tuple(r["RoleName"] for r in profile.get("Roles", [])),
    )


def _profile_resource(spec: RoleSpec) -> str:
    return f"iam instance profile {spec.name}"


def _needs_adoption(spec: RoleSpec, profile: ProfileState | None) -> bool:
    """A profile at a derived name that we did not create: tagged when --adopt takes it over."""
    return (
        profile is not None and not spec.explicit and not names.is_ours(profile.tags, spec.system)
    )


def diff_profile(spec: RoleSpec, profile: ProfileState | None) -> list[str]:
    if profile is None:
        return [f"instance profile {spec.name}: create, holding the role"]
    out = []
    if _needs_adoption(spec, profile):
        out.append(f"instance profile {spec.name}: adopt (tag datomic:system={spec.system})")
    out += [
        f"instance profile {spec.name}: remove the role {other} (a profile holds one role)"
        for other in profile.roles
        if other != spec.name
    ]
    if spec.name not in profile.roles:
        out.append(f"instance profile {spec.name}: add the role")
    return out


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
    return out


def apply_role(
    iam: Any, spec: RoleSpec, current: RoleState | None, profile: ProfileState | None
) -> None:
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
        current = RoleState({}, TRUST_POLICY, {})
    if _canonical(current.trust) != _canonical(TRUST_POLICY):
        iam.update_assume_role_policy(RoleName=spec.name, PolicyDocument=json.dumps(TRUST_POLICY))
    for name, doc in sorted(spec.policies.items()):
        if _canonical(current.policies.get(name, {})) != _canonical(doc):
            iam.put_role_policy(RoleName=spec.name, PolicyName=name, PolicyDocument=json.dumps(doc))
    for name in sorted(current.policies):
        if name not in spec.policies and spec.managed(name):
            iam.delete_role_policy(RoleName=spec.name, PolicyName=name)
    apply_profile(iam, spec, profile)


def apply_profile(iam: Any, spec: RoleSpec, profile: ProfileState | None) -> None:
    """Make the profile exist and hold exactly our role; only the calls the state read asks for."""
    if profile is None:
        try:
            iam.create_instance_profile(
                InstanceProfileName=spec.name, Tags=names.tag_list(spec.system)
            )
            profile = ProfileState(names.tags(spec.system), ())
        except Exception as exc:
            if not is_error(exc, "EntityAlreadyExists"):
                raise
            # Our own create whose answer was lost, or someone else's meanwhile: decide again.
            profile = read_profile(iam, spec.name)
            if profile is None:
                raise
            _check_profile_owner(spec, profile, adopt=False)
    if _needs_adoption(spec, profile):
        iam.tag_instance_profile(InstanceProfileName=spec.name, Tags=names.tag_list(spec.system))
    for other in profile.roles:
        if other != spec.name:
            try:
                iam.remove_role_from_instance_profile(InstanceProfileName=spec.name, RoleName=other)
            except Exception as exc:
                if not is_error(exc, "NoSuchEntity"):
                    raise
    if spec.name in profile.roles:
        return
    try:
        iam.add_role_to_instance_profile(InstanceProfileName=spec.name, RoleName=spec.name)
    except Exception as exc:
        # A profile holds one role: LimitExceeded when it holds one already. After a retry of
        # our own add that is our role, and all is well; any other role is not ours to replace.
        if not is_error(exc, "LimitExceeded", "EntityAlreadyExists"):
            raise
        now = read_profile(iam, spec.name)
        if now is None or now.roles != (spec.name,):
            held = ", ".join(now.roles) if now else "nothing"
            raise ResourceMismatch(
                f"holds the role {held}, added while datomic-aws was converging it",
                _profile_resource(spec),
                "rerun; if it happens again, something else manages this instance profile",
            ) from exc


def _check_profile_owner(spec: RoleSpec, profile: ProfileState | None, *, adopt: bool) -> None:
    """Design §3 for the profile on its own: a derived name we did not create (no tags of ours,
    whatever role it holds) is refused unless --adopt; another system's, always. Taking another
    role out of a profile we did not create needs --adopt even when the file names it: whatever
    runs with that profile would lose its role."""
    if profile is None:
        return
    resource = _profile_resource(spec)
    others = [r for r in profile.roles if r != spec.name]
    explicit = spec.explicit
    if others and not names.is_ours(profile.tags, spec.system):
        resource += f" (holds the role {', '.join(others)})"
        explicit = False
    check_owner(profile.tags, spec.system, resource, explicit=explicit, adopt=adopt)


def ensure_role(iam: Any, spec: RoleSpec, *, dry_run: bool, adopt: bool) -> Change:
    resource = f"iam role {spec.name}"
    with translating(resource):
        current = read_role(iam, spec)
        if current is not None:
            check_owner(current.tags, spec.system, resource, explicit=spec.explicit, adopt=adopt)
    with translating(_profile_resource(spec)):
        profile = read_profile(iam, spec.name)
        _check_profile_owner(spec, profile, adopt=adopt)
    with translating(resource):
        if current is None:
            action = Action.CREATE
            details: tuple[str, ...] = (
                "trust: ec2.amazonaws.com",
                *(f"inline policy {n}" for n in sorted(spec.policies)),
                *diff_profile(spec, profile),
            )
        else:
            details = (*diff_role(spec, current), *diff_profile(spec, profile))
            action = Action.UPDATE if details else Action.NOOP
        if action is not Action.NOOP and not dry_run:
            apply_role(iam, spec, current, profile)
    return Change(resource, action, details)
