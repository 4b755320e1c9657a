"""IAM roles with their inline policies and the instance profile of the same name.

Owns creating a role (EC2 trust, tags), converging its trust policy and the inline policies it is
given, and the instance profile that carries it to EC2. The profile has the role's name and follows
the ownership rule of design §3 on its own: at a derived name, one that exists without our tags
(holding another role, or none) is refused unless `--adopt`, which tags it and makes it hold our
role; at a name from the file it is used as it is, but taking another role out of it still needs
`--adopt`. Removes only inline policies the tool itself manages (see
policies.is_managed_policy_name); never deletes a role, a profile or a foreign policy. What widens
a role's access behind the tool's back (a managed policy attached to it, an inline policy the tool
did not write) is the operator's: never detached or deleted, reported as a warning on every run
(`RolePlan.warnings`, `drift_warnings`); the S3 grant the stack writes (policies.download_grant)
is recognised as the tool's and left to the stack.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.aws_errors import has_code, ignoring, translating
from datomic_aws.changes import Change
from datomic_aws.errors import ResourceMismatch, WaitTimeout
from datomic_aws.policies import TRUST_POLICY, Document
from datomic_aws.properties import unified_diff
from datomic_aws.resources import iam_drift
from datomic_aws.resources.owner import check_owner
from datomic_aws.resources.plan import Operation, Planned, action_for

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


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
    # Every inline policy by name; the content only of those the spec declares ({} for the rest).
    policies: dict[str, Document]
    # The ARNs of the managed policies attached to the role (the tool attaches none).
    attached: tuple[str, ...] = ()


def _decode(doc: Any) -> Document:
    # IAM returns policy documents URL-encoded; boto3 decodes some and not others.
    if isinstance(doc, str):
        return dict(json.loads(urllib.parse.unquote(doc)))
    return dict(doc)


def _canonical(doc: Document) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def read_role(iam: IAMClient, spec: RoleSpec) -> RoleState | None:
    try:
        role = iam.get_role(RoleName=spec.name)["Role"]
    except ClientError as exc:
        if has_code(exc, "NoSuchEntity"):
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
        attached=iam_drift.read_attached(iam, spec.name),
    )


def role_warnings(spec: RoleSpec, current: RoleState | None) -> tuple[str, ...]:
    if current is None:
        return ()
    return tuple(
        iam_drift.foreign_policies(
            spec.name,
            current.policies,
            current.attached,
            # The stack's own grants (template.py) are the tool's too, but never
            # ensure-transactor's to remove: they are not in `managed`.
            lambda name: (
                name in spec.policies
                or spec.managed(name)
                or iam_drift.written_by_the_stack(name, spec.system)
            ),
        )
    )


def read_profile(iam: IAMClient, name: str) -> ProfileState | None:
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except ClientError as exc:
        if has_code(exc, "NoSuchEntity"):
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


@dataclass(frozen=True)
class CreateRole:
    spec: RoleSpec = field(repr=False)

    def describe(self) -> str:
        return "trust: ec2.amazonaws.com"


@dataclass(frozen=True)
class SetTrust:
    role: str

    def describe(self) -> str:
        return "trust policy: EC2 may assume the role"


@dataclass(frozen=True)
class PutPolicy:
    role: str
    name: str
    document: str = field(repr=False)
    verb: str = ""  # "add" or "update"; blank on a role being created
    before: str = field(default="", repr=False)  # the document an update replaces

    def describe(self) -> str:
        head = f"inline policy {self.name}" + (f": {self.verb}" if self.verb else "")
        if not self.before:
            return head
        diff = unified_diff(_pretty(self.before), _pretty(self.document), f"{self.name}.json")
        return f"{head}\n{diff.rstrip()}"


def _pretty(document: str) -> str:
    """A policy document as its diff shows it: one statement part per line, keys sorted."""
    return json.dumps(json.loads(document), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class DeletePolicy:
    role: str
    name: str

    def describe(self) -> str:
        return f"inline policy {self.name}: remove (no longer in the file)"


@dataclass(frozen=True)
class CreateProfile:
    """Create the profile (tagged) and put the role in it."""

    spec: RoleSpec = field(repr=False)

    def describe(self) -> str:
        return f"instance profile {self.spec.name}: create, holding the role"


@dataclass(frozen=True)
class AdoptProfile:
    profile: str
    system: str

    def describe(self) -> str:
        return f"instance profile {self.profile}: adopt (tag datomic:system={self.system})"


@dataclass(frozen=True)
class RemoveRoleFromProfile:
    profile: str
    role: str

    def describe(self) -> str:
        return f"instance profile {self.profile}: remove the role {self.role} (a profile holds one role)"


@dataclass(frozen=True)
class AddRoleToProfile:
    spec: RoleSpec = field(repr=False)

    def describe(self) -> str:
        return f"instance profile {self.spec.name}: add the role"


def _profile_operations(spec: RoleSpec, profile: ProfileState | None) -> tuple[Operation, ...]:
    if profile is None:
        return (CreateProfile(spec),)
    ops: list[Operation] = []
    if _needs_adoption(spec, profile):
        ops.append(AdoptProfile(spec.name, spec.system))
    ops += [RemoveRoleFromProfile(spec.name, r) for r in profile.roles if r != spec.name]
    if spec.name not in profile.roles:
        ops.append(AddRoleToProfile(spec))
    return tuple(ops)


def _policy_json(doc: Document) -> str:
    return json.dumps(doc)


def _role_operations(spec: RoleSpec, current: RoleState | None) -> tuple[Operation, ...]:
    if current is None:
        return (
            CreateRole(spec),
            *(
                PutPolicy(spec.name, n, _policy_json(doc))
                for n, doc in sorted(spec.policies.items())
            ),
        )
    ops: list[Operation] = []
    if _canonical(current.trust) != _canonical(TRUST_POLICY):
        ops.append(SetTrust(spec.name))
    for name, doc in sorted(spec.policies.items()):
        if name not in current.policies:
            ops.append(PutPolicy(spec.name, name, _policy_json(doc), "add"))
        elif _canonical(current.policies[name]) != _canonical(doc):
            before = _policy_json(current.policies[name])
            ops.append(PutPolicy(spec.name, name, _policy_json(doc), "update", before))
    for name in sorted(current.policies):
        if name not in spec.policies and spec.managed(name):
            ops.append(DeletePolicy(spec.name, name))
    return tuple(ops)


@dataclass(frozen=True)
class RoleAndProfile:
    role: RoleState | None
    profile: ProfileState | None


def read_role_and_profile(iam: IAMClient, spec: RoleSpec) -> RoleAndProfile:
    with translating(f"iam role {spec.name}"):
        role = read_role(iam, spec)
    with translating(_profile_resource(spec)):
        return RoleAndProfile(role, read_profile(iam, spec.name))


@dataclass(frozen=True)
class RolePlan(Planned):
    """A role's plan, with the policies on it the tool did not write (never an operation)."""

    warnings: tuple[str, ...] = ()


def plan_role(spec: RoleSpec, state: RoleAndProfile, *, adopt: bool) -> RolePlan:
    """Pure; both ownership refusals (role, then profile) come here, before any write."""
    resource = f"iam role {spec.name}"
    if state.role is not None:
        check_owner(state.role.tags, spec.system, resource, explicit=spec.explicit, adopt=adopt)
    _check_profile_owner(spec, state.profile, adopt=adopt)
    ops = _role_operations(spec, state.role) + _profile_operations(spec, state.profile)
    return RolePlan(
        resource,
        action_for(state.role is not None, ops),
        ops,
        warnings=role_warnings(spec, state.role),
    )


def drift_warnings(plans: Iterable[Planned]) -> list[str]:
    """The warnings of the role plans among `plans`, in order (for the command's result)."""
    return [w for plan in plans if isinstance(plan, RolePlan) for w in plan.warnings]


def _create_role(iam: IAMClient, spec: RoleSpec) -> None:
    with ignoring("EntityAlreadyExists"):
        iam.create_role(
            RoleName=spec.name,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description=spec.description,
            Tags=names.tag_list(spec.system),
        )


def _create_profile(iam: IAMClient, spec: RoleSpec) -> None:
    """Create the profile holding our role; a lost race is decided again from a fresh read."""
    try:
        iam.create_instance_profile(InstanceProfileName=spec.name, Tags=names.tag_list(spec.system))
    except ClientError as exc:
        if not has_code(exc, "EntityAlreadyExists"):
            raise
        # Our own create whose answer was lost, or someone else's meanwhile: decide again.
        profile = read_profile(iam, spec.name)
        if profile is None:
            raise
        _check_profile_owner(spec, profile, adopt=False)
        for op in _profile_operations(spec, profile):
            _run(iam, op)
        return
    _add_role(iam, spec)


def _add_role(iam: IAMClient, spec: RoleSpec) -> None:
    try:
        iam.add_role_to_instance_profile(InstanceProfileName=spec.name, RoleName=spec.name)
    except ClientError as exc:
        # A profile holds one role: LimitExceeded when it holds one already. After a retry of
        # our own add that is our role, and all is well; any other role is not ours to replace.
        if not has_code(exc, "LimitExceeded", "EntityAlreadyExists"):
            raise
        now = read_profile(iam, spec.name)
        if now is None or now.roles != (spec.name,):
            held = ", ".join(now.roles) if now else "nothing"
            raise ResourceMismatch(
                f"holds the role {held}, added while datomic-aws was converging it",
                _profile_resource(spec),
                "rerun; if it happens again, something else manages this instance profile",
            ) from exc


def _run(iam: IAMClient, op: Operation) -> None:
    if isinstance(op, CreateRole):
        _create_role(iam, op.spec)
    elif isinstance(op, SetTrust):
        iam.update_assume_role_policy(RoleName=op.role, PolicyDocument=json.dumps(TRUST_POLICY))
    elif isinstance(op, PutPolicy):
        iam.put_role_policy(RoleName=op.role, PolicyName=op.name, PolicyDocument=op.document)
    elif isinstance(op, DeletePolicy):
        iam.delete_role_policy(RoleName=op.role, PolicyName=op.name)
    elif isinstance(op, CreateProfile):
        _create_profile(iam, op.spec)
    elif isinstance(op, AdoptProfile):
        iam.tag_instance_profile(InstanceProfileName=op.profile, Tags=names.tag_list(op.system))
    elif isinstance(op, RemoveRoleFromProfile):
        with ignoring("NoSuchEntity"):
            iam.remove_role_from_instance_profile(InstanceProfileName=op.profile, RoleName=op.role)
    elif isinstance(op, AddRoleToProfile):
        _add_role(iam, op.spec)


@dataclass(frozen=True)
class ProfileWait:
    """How long a profile this run created or gave its role is waited for (reference §11), and
    the clock and sleep it is waited with (tests inject both: they never really sleep)."""

    # About a minute in all: IAM's propagation usually takes seconds.
    timeout: float = 60.0
    first_delay: float = 1.0
    max_delay: float = 8.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def wait_for_profile(iam: IAMClient, spec: RoleSpec, wait: ProfileWait) -> None:
    """Until GetInstanceProfile answers the profile holding our role; WaitTimeout past the bound.

    Reference §11: IAM is eventually consistent, and EC2 and Auto Scaling refuse a profile just
    created or just given its role. During that window GetInstanceProfile answers NoSuchEntity
    (botocore's own InstanceProfileExists waiter retries on its 404) or the profile without its
    role; both are waited out with a doubling back-off, bounded in total."""
    deadline = wait.clock() + wait.timeout
    delay = wait.first_delay
    while True:
        profile = read_profile(iam, spec.name)
        if profile is not None and spec.name in profile.roles:
            return
        remaining = deadline - wait.clock()
        if remaining <= 0:
            seen = "not found" if profile is None else "found without the role"
            raise WaitTimeout(
                f"IAM still answers the instance profile as {seen} {int(wait.timeout)}s after "
                "this run created it or gave it its role (IAM is eventually consistent)",
                _profile_resource(spec),
                "the profile and its role are in place; rerun the same command in a minute "
                "(it is safe to repeat)",
            )
        wait.sleep(min(delay, remaining))
        delay = min(delay * 2, wait.max_delay)


def _profile_written(plan: Planned) -> RoleSpec | None:
    """The role's spec when the plan creates the profile or adds the role to it; else None."""
    for op in plan.operations:
        if isinstance(op, CreateProfile | AddRoleToProfile):
            return op.spec
    return None


def execute_role(iam: IAMClient, plan: Planned, wait: ProfileWait | None = None) -> None:
    """Only the planned operations, in order: the role first, then its profile; then, only when
    the profile was created or given the role, the wait until IAM shows it (`wait_for_profile`)."""
    with translating(plan.resource):
        for op in plan.operations:
            _run(iam, op)
        written = _profile_written(plan)
        if written is not None:
            wait_for_profile(iam, written, wait or ProfileWait())


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


def ensure_role(iam: IAMClient, spec: RoleSpec, *, dry_run: bool, adopt: bool) -> Change:
    """Read, plan and (unless `dry_run`) execute, for a caller with one role to converge."""
    plan = plan_role(spec, read_role_and_profile(iam, spec), adopt=adopt)
    if not dry_run:
        execute_role(iam, plan)
    return plan.change()
