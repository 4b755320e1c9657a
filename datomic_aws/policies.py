"""IAM documents for the transactor and peer roles: trust policy and least-privilege statements.

Pure functions of names, account and region. Keeps Datomic's inline policy names (reference §3) so
deployments made by `bin/datomic` converge without churn, while scoping each statement to the
system's own table, bucket, parameter, group and instances. No AWS.
"""

from __future__ import annotations

from typing import Any

from datomic_aws import names

Document = dict[str, Any]

TRUST_POLICY: Document = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}

# What a transactor does to its storage table: conditional writes, reads, scans for indexing and
# deletes for garbage collection. Datomic's tool granted dynamodb:*.
TRANSACTOR_TABLE_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
)
PEER_TABLE_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
)


def _doc(*statements: Document) -> Document:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def table_arn(table: str, account: str, region: str) -> str:
    return names.arn("dynamodb", region, account, f"table/{table}")


def parameter_arn(system: str, account: str, region: str) -> str:
    return names.arn("ssm", region, account, f"parameter{names.ssm_parameter(system)}")


def group_arn(system: str, account: str, region: str) -> str:
    # The group's ARN embeds a UUID unknown until it exists; region is open because the stack's
    # region is chosen later, in cf.properties.
    resource = f"autoScalingGroup:*:autoScalingGroupName/{names.autoscaling_group(system)}"
    return names.arn("autoscaling", region, account, resource, scope=f"*:{account}")


def transactor_table_policy(table: str, account: str, region: str) -> tuple[str, Document]:
    return f"{table}-transactor", _doc(
        {
            "Effect": "Allow",
            "Action": list(TRANSACTOR_TABLE_ACTIONS),
            "Resource": [table_arn(table, account, region)],
        }
    )


def peer_table_policy(table: str, account: str, region: str) -> tuple[str, Document]:
    return f"{table}-peer", _doc(
        {
            "Effect": "Allow",
            "Action": list(PEER_TABLE_ACTIONS),
            "Resource": [table_arn(table, account, region)],
        }
    )


def log_bucket_policy(bucket: str, region: str) -> tuple[str, Document]:
    objects = names.arn("s3", region, "", f"{bucket}/*", scope=":")
    return names.log_policy(bucket), _doc(
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [objects]}
    )


METRICS_POLICY_NAME = "transactor-metrics"


def metrics_policy() -> tuple[str, Document]:
    # PutMetricData has no resource-level permissions: AWS requires "*". The namespace condition
    # keeps the role to Datomic's own metrics.
    return METRICS_POLICY_NAME, _doc(
        {
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": "*",
            "Condition": {
                "Bool": {"aws:SecureTransport": "true"},
                "StringEquals": {"cloudwatch:namespace": "Datomic"},
            },
        }
    )


# What the instance tells Auto Scaling about itself: ready or abandoned (launch hook), still booting
# (hook heartbeat), and Unhealthy when its transactor exits so that it is replaced at once.
RUNTIME_GROUP_ACTIONS = (
    "autoscaling:CompleteLifecycleAction",
    "autoscaling:RecordLifecycleActionHeartbeat",
    "autoscaling:SetInstanceHealth",
)


def instances_arn(account: str, region: str) -> str:
    # Instance ids are unknown in advance: the system tag condition scopes the statement instead.
    # Region open for the same reason as the group's.
    return names.arn("ec2", region, account, "instance/*", scope=f"*:{account}")


def via_ssm(region: str, parameter: str) -> dict[str, str]:
    """The condition keys that limit a use of a KMS key to SSM and to one parameter: SSM
    encrypts and decrypts a SecureString under the encryption context PARAMETER_ARN=<its ARN>."""
    return {
        "kms:ViaService": f"ssm.{region}.{names.dns_suffix(region)}",
        "kms:EncryptionContext:PARAMETER_ARN": parameter,
    }


def runtime_policy(
    system: str, account: str, region: str, decrypt_key: str | None = None
) -> tuple[str, Document]:
    """Read the stored configuration; report readiness to Auto Scaling; publish the HA role tag.
    `decrypt_key`: the ARN of the operator's KMS key encrypting the configuration, whose key
    policy is theirs: the decrypt is granted here, through SSM and for this parameter only."""
    parameter = parameter_arn(system, account, region)
    decrypt: tuple[Document, ...] = ()
    if decrypt_key is not None:
        decrypt = (
            {
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": [decrypt_key],
                "Condition": {"StringEquals": via_ssm(region, parameter)},
            },
        )
    return names.runtime_policy(system), _doc(
        {
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": [parameter],
        },
        *decrypt,
        {
            "Effect": "Allow",
            "Action": list(RUNTIME_GROUP_ACTIONS),
            "Resource": [group_arn(system, account, region)],
        },
        {
            # The role tag only (names.TAG_ROLE), only on instances of this system.
            "Effect": "Allow",
            "Action": ["ec2:CreateTags"],
            "Resource": [instances_arn(account, region)],
            "Condition": {
                "StringEquals": {f"aws:ResourceTag/{names.TAG_SYSTEM}": system},
                "ForAllValues:StringEquals": {"aws:TagKeys": [names.TAG_ROLE]},
            },
        },
    )


def download_policy_name(system: str) -> str:
    """The transactor role's inline policy that the stack writes (template.py, an
    AWS::IAM::Policy) when Datomic Pro comes from S3. CloudFormation owns it: ensure-transactor
    never writes nor deletes it, and only recognises it as the tool's (no drift warning)."""
    return f"datomic-{system}-transactor-download"


def object_arn(bucket: str, key: str, region: str) -> str:
    # S3 ARNs leave region and account empty; the partition is the stack region's.
    return names.arn("s3", region, "", f"{bucket}/{key}", scope=":")


def download_policy(system: str, bucket: str, key: str, region: str) -> tuple[str, Document]:
    """s3:GetObject on exactly the release zip the instance downloads: no bucket listing, no
    other object (config/download.py keeps IAM wildcards out of the key)."""
    return download_policy_name(system), _doc(
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [object_arn(bucket, key, region)],
        }
    )


# The template's logical id of the grant.
DOWNLOAD_GRANT = "DownloadGrant"


def download_grant(system: str, role: str, bucket: str, key: str, region: str) -> Document:
    """The stack resource (AWS::IAM::Policy) that puts `download_policy` on the transactor role:
    the grant is written, changed and removed with the template that names the location, so the
    two never disagree, and deleting the stack takes it away."""
    name, document = download_policy(system, bucket, key, region)
    return {
        "Type": "AWS::IAM::Policy",
        "Properties": {"PolicyName": name, "PolicyDocument": document, "Roles": [role]},
    }


def is_managed_policy_name(name: str, system: str) -> bool:
    """Inline policies this tool may remove when the file no longer asks for them."""
    return (
        name == METRICS_POLICY_NAME
        or name.endswith(names.log_policy(""))
        or name == names.runtime_policy(system)
    )
