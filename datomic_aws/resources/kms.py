"""The KMS key of the configuration parameter, when the transactor file names one (issue 11).

`aws-ssm-kms-key` blank: the AWS-managed `alias/aws/ssm`, which every principal of the account
allowed to call SSM can decrypt through (reference §11), and nothing here runs. `managed`: a
symmetric key this tool creates for the system and owns (our tags, alias
`alias/datomic-aws/<system>`); its key policy lets the account administer the key (so it can never
become unmanageable) and encrypt through SSM for this parameter only, and lets ONLY the transactor
role decrypt, through SSM, this parameter only. Any other value names the operator's own key: it
is resolved and checked (enabled, symmetric, in the parameter's region), its key policy is never
read nor changed; the transactor role's inline policy grants the decrypt instead (ensure_transactor).

Ownership as everywhere (design §3): a key behind our alias without our tags is changed only with
`--adopt`, one tagged for another system never. The tool never disables a key nor schedules its
deletion. Read once (`read_managed_key`, `read_named_key`), plan (`plan_managed_key`,
`plan_named_key`), run only that (`execute_key`). Nothing here decrypts.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.aws_errors import has_code, translating
from datomic_aws.changes import Action
from datomic_aws.errors import ResourceMismatch
from datomic_aws.policies import Document, via_ssm
from datomic_aws.resources.owner import check_owner
from datomic_aws.resources.plan import Operation, Planned

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_kms.type_defs import KeyMetadataTypeDef, TagTypeDef

# The value of aws-ssm-kms-key that asks for a key of the tool's own.
MANAGED = "managed"
# A key policy has one name (KMS's only policy name).
_POLICY_NAME = "default"
# What the account principal may do with the key: everything but using it, so whoever IAM lets
# administer keys keeps it manageable (the key policy lockout rule of KMS), and nobody reads the
# parameter without first changing the key policy or granting themselves (both logged by CloudTrail).
ADMIN_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:Create*",
    "kms:Delete*",
    "kms:Describe*",
    "kms:Disable*",
    "kms:Enable*",
    "kms:Get*",
    "kms:List*",
    "kms:Put*",
    "kms:Revoke*",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:Update*",
)
# Writing a SecureString: Encrypt for a standard parameter, GenerateDataKey for an advanced one.
ENCRYPT_ACTIONS = ("kms:Encrypt", "kms:GenerateDataKey")
# IAM keeps a just-created role invisible to KMS for a while (reference §11: eventually
# consistent): a key policy naming it is refused as MalformedPolicyDocumentException meanwhile.
_ROLE_WAITS = (2.0, 4.0, 8.0, 16.0, 30.0)

Sleep = Callable[[float], None]


def key_policy(account: str, region: str, role: str, parameter_arn: str) -> Document:
    account_principal = names.arn("iam", region, account, "root", scope=f":{account}")
    role_arn = names.arn("iam", region, account, f"role/{role}", scope=f":{account}")
    condition = {"StringEquals": via_ssm(region, parameter_arn)}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersTheKey",
                "Effect": "Allow",
                "Principal": {"AWS": account_principal},
                "Action": list(ADMIN_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "AccountWritesTheParameterThroughSsm",
                "Effect": "Allow",
                "Principal": {"AWS": account_principal},
                "Action": list(ENCRYPT_ACTIONS),
                "Resource": "*",
                "Condition": condition,
            },
            {
                "Sid": "OnlyTheTransactorRoleReadsTheParameterThroughSsm",
                "Effect": "Allow",
                "Principal": {"AWS": role_arn},
                "Action": ["kms:Decrypt"],
                "Resource": "*",
                "Condition": condition,
            },
        ],
    }


@dataclass(frozen=True)
class ManagedKeySpec:
    system: str
    region: str
    role: str
    # The key policy, as the JSON text PutKeyPolicy sends.
    policy: str

    @property
    def alias(self) -> str:
        return names.kms_alias(self.system)


def managed_key_spec(
    system: str, account: str, region: str, role: str, parameter_arn: str
) -> ManagedKeySpec:
    doc = key_policy(account, region, role, parameter_arn)
    return ManagedKeySpec(system, region, role, json.dumps(doc, indent=2))


@dataclass(frozen=True)
class KeyState:
    """What DescribeKey says of a key (and, for ours, its key policy)."""

    key_id: str
    arn: str
    state: str
    spec: str
    usage: str
    manager: str
    policy: Document | None = field(default=None, hash=False)
    # Read only when a write follows (ownership proof); None otherwise.
    tags: dict[str, str] | None = field(default=None, hash=False, compare=False)

    def identifiers(self, *aliases: str) -> frozenset[str]:
        """Every name of this key SSM may report as a parameter's KeyId (DescribeParameters
        says what PutParameter was given): its id, its ARN, and `aliases` by name and ARN."""
        prefix = self.arn.rsplit(":key/", 1)[0]
        return frozenset(
            {self.key_id, self.arn, *aliases, *(f"{prefix}:{a}" for a in aliases if prefix)}
        )


def _state(meta: KeyMetadataTypeDef) -> KeyState:
    return KeyState(
        key_id=meta["KeyId"],
        arn=meta.get("Arn", ""),
        state=meta.get("KeyState", ""),
        # AWS always answers both; absent, they are CreateKey's defaults.
        spec=meta.get("KeySpec", "SYMMETRIC_DEFAULT"),
        usage=meta.get("KeyUsage", "ENCRYPT_DECRYPT"),
        manager=meta.get("KeyManager", ""),
    )


def _describe(kms: KMSClient, key: str) -> KeyState | None:
    try:
        return _state(kms.describe_key(KeyId=key)["KeyMetadata"])
    except ClientError as exc:
        if has_code(exc, "NotFoundException"):
            return None
        raise


def read_tags(kms: KMSClient, key_id: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    marker = ""
    while True:
        page = (
            kms.list_resource_tags(KeyId=key_id, Marker=marker)
            if marker
            else kms.list_resource_tags(KeyId=key_id)
        )
        tags.update({t["TagKey"]: t["TagValue"] for t in page.get("Tags", [])})
        marker = page.get("NextMarker", "") if page.get("Truncated") else ""
        if not marker:
            return tags


def read_managed_key(kms: KMSClient, spec: ManagedKeySpec) -> KeyState | None:
    """The key behind our alias and its key policy; its tags only when the policy differs."""
    with translating(f"kms key {spec.alias}"):
        found = _describe(kms, spec.alias)
        if found is None:
            return None
        text = kms.get_key_policy(KeyId=found.key_id, PolicyName=_POLICY_NAME)["Policy"]
        policy = dict(json.loads(text))
        if policy == json.loads(spec.policy):
            return replace(found, policy=policy)
        return replace(found, policy=policy, tags=read_tags(kms, found.key_id))


def read_named_key(kms: KMSClient, key: str, region: str) -> KeyState | None:
    """The operator's key (an id, key ARN, alias name or alias ARN); its policy is not ours to
    read. Not read when its ARN names another region (plan_named_key refuses it)."""
    if _region_of(key, region) != region:
        return None
    with translating(f"kms key {key}"):
        return _describe(kms, key)


def _region_of(arn: str, default: str) -> str:
    parts = arn.split(":")
    return parts[3] if arn.startswith("arn:") and len(parts) > 5 else default


def _check_usable(resource: str, state: KeyState, where: str) -> None:
    """SSM encrypts with an enabled symmetric encryption key of its own region only."""
    if state.state != "Enabled":
        raise ResourceMismatch(
            f"the key is {state.state}, not Enabled: SSM cannot encrypt the configuration with it",
            resource,
            "enable it (aws kms enable-key, or aws kms cancel-key-deletion then enable-key); "
            f"datomic-aws never disables nor deletes a key ({where})",
        )
    if state.spec != "SYMMETRIC_DEFAULT" or state.usage != "ENCRYPT_DECRYPT":
        raise ResourceMismatch(
            f"the key is {state.spec} for {state.usage}: SSM needs a symmetric encryption key",
            resource,
            f"name a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key in {where}",
        )


@dataclass(frozen=True)
class CreateKey:
    spec: ManagedKeySpec = field(repr=False)

    def describe(self) -> str:
        return (
            "symmetric key, tags datomic:system, managed-by\n"
            f"key policy: the account administers it; only role {self.spec.role} decrypts, "
            "through SSM, this parameter"
        )


@dataclass(frozen=True)
class CreateAlias:
    alias: str
    key_id: str = ""  # "" = the key CreateKey makes in the same plan

    def describe(self) -> str:
        return f"alias {self.alias}"


@dataclass(frozen=True)
class PutKeyPolicy:
    key_id: str
    spec: ManagedKeySpec = field(repr=False)

    def describe(self) -> str:
        return (
            f"key policy: the account administers it; only role {self.spec.role} decrypts, "
            "through SSM, this parameter"
        )


@dataclass(frozen=True)
class TagKey:
    """Adopted: tag it as ours, or every later change would need --adopt again."""

    key_id: str
    system: str

    def describe(self) -> str:
        return "tags: add datomic:system, managed-by"


def plan_managed_key(spec: ManagedKeySpec, current: KeyState | None, *, adopt: bool) -> Planned:
    """Pure; every refusal (a key not ours, unusable) comes here, before any write."""
    resource = f"kms key {spec.alias}"
    if current is None:
        return Planned(resource, Action.CREATE, (CreateKey(spec), CreateAlias(spec.alias)))
    _check_usable(resource, current, "aws-ssm-kms-key")
    if current.policy == json.loads(spec.policy):
        return Planned(resource, Action.NOOP, notes=(current.arn,))
    tags = current.tags or {}
    check_owner(tags, spec.system, resource, explicit=False, adopt=adopt)
    ops: tuple[Operation, ...] = (PutKeyPolicy(current.key_id, spec),)
    if not names.is_ours(tags, spec.system):
        ops += (TagKey(current.key_id, spec.system),)
    return Planned(resource, Action.UPDATE, ops, notes=(current.arn,))


def plan_named_key(key: str, region: str, current: KeyState | None) -> Planned:
    """The operator's key: used as it is (never changed), or refused."""
    resource = f"kms key {key}"
    key_region = _region_of(key, region) if current is None else _region_of(current.arn, region)
    if key_region != region:
        raise ResourceMismatch(
            f"the key is in {key_region}: SSM in {region} can only use a key of its region",
            resource,
            f"name a key of {region} in aws-ssm-kms-key",
        )
    if current is None:
        raise ResourceMismatch(
            "no such key in this account and region",
            resource,
            "name an existing key in aws-ssm-kms-key, use managed (datomic-aws creates one), or "
            "leave it blank (the AWS-managed alias/aws/ssm)",
        )
    _check_usable(resource, current, "aws-ssm-kms-key")
    return Planned(resource, Action.NOOP, notes=(f"{current.arn} (its key policy is yours)",))


def _retrying_for_role(call: Callable[[], object], sleep: Sleep) -> None:
    for wait in (*_ROLE_WAITS, None):
        try:
            call()
            return
        except ClientError as exc:
            if wait is None or not has_code(exc, "MalformedPolicyDocumentException"):
                raise
            sleep(wait)


def _create(kms: KMSClient, spec: ManagedKeySpec, sleep: Sleep) -> str:
    made: list[str] = []

    def create() -> None:
        made.append(
            kms.create_key(
                Policy=spec.policy,
                Description=f"Datomic transactor configuration of system {spec.system} "
                "(datomic-aws)",
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
                Tags=_tags(spec.system),
            )["KeyMetadata"]["KeyId"]
        )

    _retrying_for_role(create, sleep)
    return made[-1]


def execute_key(kms: KMSClient, plan: Planned, sleep: Sleep = time.sleep) -> None:
    """The planned writes, in order."""
    created = ""
    with translating(plan.resource):
        for op in plan.operations:
            if isinstance(op, CreateKey):
                created = _create(kms, op.spec, sleep)
            elif isinstance(op, CreateAlias):
                kms.create_alias(AliasName=op.alias, TargetKeyId=op.key_id or created)
            elif isinstance(op, PutKeyPolicy):
                _retrying_for_role(
                    functools.partial(
                        kms.put_key_policy,
                        KeyId=op.key_id,
                        PolicyName=_POLICY_NAME,
                        Policy=op.spec.policy,
                    ),
                    sleep,
                )
            elif isinstance(op, TagKey):
                kms.tag_resource(KeyId=op.key_id, Tags=_tags(op.system))


def _tags(system: str) -> list[TagTypeDef]:
    """Our ownership tags as KMS spells a tag."""
    return [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in names.tag_list(system)]
