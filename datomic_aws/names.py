"""Deterministic names of everything the tool creates, and the tags that mark ownership.

Every name is a pure function of the system name (plus account and region where AWS requires global
uniqueness), so a rerun after a crash finds what the first run created. Each is sanitised to its
service's charset and length. Two systems never share a name: when sanitising changes the system
name (`prod.a` and `prod_a` both clean to `prod-a` for a stack), or the service ignores case and the
name has upper-case letters, the cleaned part carries a short hash of the original system name; an
over-long name is truncated and suffixed with a short hash. A system name that needs no cleaning
keeps the plain names (`datomic-orders`). No AWS.
"""

from __future__ import annotations

import hashlib
import re
from typing import TypedDict

TAG_SYSTEM = "datomic:system"
TAG_MANAGED = "managed-by"
MANAGED_BY = "datomic-aws"

# The role a transactor instance publishes about itself (Datomic HA: one active, the others
# standby), as an instance tag kept current by the instance. Readable with AWS credentials alone,
# with no network path into the VPC.
TAG_ROLE = "datomic:role"
ROLE_ACTIVE = "active"
ROLE_STANDBY = "standby"
# The metrics Datomic's transactor publishes to CloudWatch when its properties set
# aws-cloudwatch-region: namespace "Datomic", one dimension "Transactor" =
# aws-cloudwatch-dimension-value, reported once a minute; HeartbeatMsec counts the heartbeats the
# active transactor wrote ("Transactor Metrics", docs.datomic.com/on-prem/monitoring.html; the
# reference does not list Datomic's metrics yet). The same values as template_observe's alarms.
METRICS_NAMESPACE = "Datomic"
METRICS_DIMENSION = "Transactor"
METRICS_PERIOD_SECONDS = 60
HEARTBEAT_METRIC = "HeartbeatMsec"
# The launching lifecycle hook the boot script completes (template.py declares it).
LAUNCH_HOOK_NAME = "transactor-listening"


def tags(system: str) -> dict[str, str]:
    return {TAG_SYSTEM: system, TAG_MANAGED: MANAGED_BY}


class Tag(TypedDict):
    """A tag as every AWS service's API takes it (each boto3 stub's TagTypeDef has this shape)."""

    Key: str
    Value: str


def tag_list(system: str) -> list[Tag]:
    """Our ownership tags for `system`, in the shape the tagging APIs take."""
    return [{"Key": k, "Value": v} for k, v in tags(system).items()]


def is_ours(found: dict[str, str], system: str) -> bool:
    return found.get(TAG_SYSTEM) == system and found.get(TAG_MANAGED) == MANAGED_BY


def _fit(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def _clean(text: str, allowed: str, replacement: str = "-") -> str:
    return re.sub(f"[^{allowed}]+", replacement, text).strip("-.")


def _digest(system: str) -> str:
    return hashlib.sha256(system.encode("utf-8")).hexdigest()[:8]


def _part(system: str, allowed: str, *, lower: bool = False, fold: bool = False) -> str:
    """The system name as it appears inside a derived name: cleaned to `allowed` (lower-cased
    first when the service only takes lower case). When that changed it, or when the service's
    names ignore case (`fold`) and it has upper-case letters, a short hash of the original
    follows, so two systems that clean to the same text keep distinct names."""
    cleaned = _clean(system.lower() if lower else system, allowed)
    if cleaned == system and not (fold and system != system.lower()):
        return cleaned
    return f"{cleaned}-{_digest(system)}" if cleaned else _digest(system)


def iam_name(system: str, suffix: str) -> str:
    """Roles and instance profiles: [\\w+=,.@-], 64 characters. IAM names are unique without
    regard to case (`Prod` and `prod` would be one role), hence `fold`."""
    return _fit(f"datomic-{_part(system, r'A-Za-z0-9+=,.@_-', fold=True)}-{suffix}", 64)


def transactor_role(system: str) -> str:
    return iam_name(system, "transactor")


def peer_role(system: str) -> str:
    return iam_name(system, "peer")


def _bucket(system: str, kind: str, account: str, region: str) -> str:
    """S3: lower-case letters, digits, hyphens; 3-63 characters; globally unique."""
    tail = f"-{kind}-{account}-{region}"
    head = f"datomic-{_part(system, 'a-z0-9-', lower=True)}"
    return _fit(head, 63 - len(tail)) + tail


def log_bucket(system: str, account: str, region: str) -> str:
    return _bucket(system, "logs", account, region)


def templates_bucket(account: str, region: str) -> str:
    return f"datomic-aws-templates-{account}-{region}"


def security_group(system: str) -> str:
    """EC2: 255 characters of a restricted set, unique per VPC without regard to case."""
    part = _part(system, r"A-Za-z0-9 ._:/()#,@+=&;{}!$*-", fold=True)
    return _fit(f"datomic-{part}-transactor", 255)


def ssm_parameter(system: str) -> str:
    return f"/datomic/{_part(system, r'A-Za-z0-9_.-')}/transactor.properties"


def kms_alias(system: str) -> str:
    """The alias of the configuration's key when the tool makes one (aws-ssm-kms-key=managed):
    `alias/` then [A-Za-z0-9/_-], 256 characters; `alias/aws/` is AWS's own."""
    return "alias/datomic-aws/" + _fit(_part(system, "A-Za-z0-9_-"), 256 - 18)


def autoscaling_group(system: str) -> str:
    return _fit(f"datomic-{_part(system, r'A-Za-z0-9_.-')}-transactors", 255)


def stack(system: str) -> str:
    """CloudFormation: [A-Za-z][-A-Za-z0-9]*, 128 characters."""
    return _fit(f"datomic-{_part(system, 'A-Za-z0-9-')}", 128)


def stack_or_default(explicit: str | None, system: str) -> str:
    """The stack a cf.properties names (`stack-name`), else the one the system derives."""
    return explicit or stack(system)


def instance(system: str) -> str:
    """The Name tag of the transactor instances (a tag value: any text, so never cleaned; the
    golden template holds it as is)."""
    return f"datomic-{system}-transactor"


def runtime_policy(system: str) -> str:
    """The transactor role's inline policy for its runtime calls. A policy name is per role, so
    it needs no hash against other systems; it stays what earlier releases named it, so an
    existing role's policy keeps being recognised as ours."""
    return f"datomic-{system}-transactor-runtime"


def log_policy(bucket: str) -> str:
    """The transactor role's inline policy for writing to its log bucket."""
    return f"{bucket}-transactor-logs"


def log_group(system: str) -> str:
    """The CloudWatch Logs group of the transactors' logs (aws-log-group-retention-days):
    [.-_/#A-Za-z0-9], 512 characters."""
    return _fit(f"/datomic-aws/{_part(system, r'A-Za-z0-9_.-')}", 512)


def logs_shipping_policy(system: str) -> str:
    """The transactor role's inline policy that the stack writes to ship logs to `log_group`.
    Not ending in `log_policy("")`: that suffix is the log bucket's, which ensure-transactor
    removes when the file drops the bucket."""
    return _fit(f"datomic-{system}-transactor-cloudwatch-logs", 128)


def session_manager_policy(system: str) -> str:
    """The transactor role's inline policy that the stack writes for Session Manager."""
    return _fit(f"datomic-{system}-transactor-session-manager", 128)


def stack_policies(system: str) -> tuple[str, str]:
    """The observability grants' policy names (the S3 download's is policies.py's)."""
    return logs_shipping_policy(system), session_manager_policy(system)


def alarm(system: str, what: str) -> str:
    """A CloudWatch alarm of the system (any text, 255 characters, unique per account and
    region)."""
    return _fit(f"datomic-{system}-{what}", 255)


# CloudFormation refuses a TemplateBody above this many bytes; a larger template goes by TemplateURL.
TEMPLATE_BODY_LIMIT = 51_200


def stack_lock(stack: str) -> str:
    """The SSM parameter holding a stack's lock (stack_lock.py): its stack's name as is, since a
    stack name is a valid parameter path segment."""
    return f"{LOCK_PREFIX}{stack}"


LOCK_PREFIX = "/datomic-aws/locks/"

# Auto Scaling group tags of a replacement in progress (replace/group.py says what each holds), so
# that a rerun after a kill can put the group back.
TAG_MAX_BEFORE_REPLACE = "datomic-aws:max-size-before-replace"
TAG_MIN_BEFORE_REPLACE = "datomic-aws:min-size-before-replace"
TAG_SUSPENDED_FOR_REPLACE = "datomic-aws:suspended-for-replace"


def partition(region: str) -> str:
    """The ARN partition of a region (reference §11): an ARN of the wrong partition is refused
    (MalformedPolicyDocument) or never matches."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def dns_suffix(region: str) -> str:
    """The domain of the region's service endpoints (`ssm.<region>.<suffix>`, what
    `kms:ViaService` names): China's differ (reference §11)."""
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def arn(service: str, region: str, account: str, resource: str, *, scope: str | None = None) -> str:
    """`arn:<partition>:<service>:<region>:<account>:<resource>`. `scope` replaces the region and
    account fields where the ARN leaves them open (`*`) or empty (S3), the partition still being
    the region's."""
    place = scope if scope is not None else f"{region}:{account}"
    return f"arn:{partition(region)}:{service}:{place}:{resource}"
