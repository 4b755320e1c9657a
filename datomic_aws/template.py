"""The transactor's CloudFormation template: a pure function of the two properties files' specs.

Owns the template's shape (parameters, launch template, Auto Scaling group with its launching
lifecycle hook, outputs; the optional ones are template_observe.py's; the user data is
user_data.py's), and the deterministic dump. `build_template` makes no AWS call and reads no clock
and no randomness, so identical files give a byte-identical template. It must never put a transactor
configuration value or a secret in the template: the instance reads its configuration from SSM, at
the parameter version the transactor file names, and only that version and the configuration's
keyed digest (HMAC-SHA256, whose key only the file and the SSM value hold) are embedded, once, as
the user data's Fn::Sub variable (so that a configuration change rolls the instances and is a
one-line diff of the template).
It must not read or write the operator's files: app/ loads the specs and writes the template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from datomic_aws import names, template_observe
from datomic_aws.config.cf import CfSpec
from datomic_aws.config.era import license_findings, obsolete_license_warning
from datomic_aws.config.transactor import TransactorSpec, config_pin, pin_problems
from datomic_aws.errors import InvalidInput, Problem
from datomic_aws.user_data import user_data_sub

# The stack package uploads a template above this instead, but one this tool generates should never
# come near it.
MAX_TEMPLATE_BYTES = names.TEMPLATE_BODY_LIMIT

LAUNCH_HOOK_NAME = names.LAUNCH_HOOK_NAME
# Time Auto Scaling waits for the boot script to report; on expiry it abandons (terminates) the
# instance. Installing Java, downloading Datomic and starting the transactor takes 2-4 minutes.
# The script records a heartbeat after each step and every HEARTBEAT_EVERY_SECONDS while it waits,
# which restarts this timeout (reference §11).
LAUNCH_HOOK_HEARTBEAT_SECONDS = 900

# CloudFormation has no arithmetic: MaxSize = GroupSize + 1 comes from a mapping keyed by GroupSize,
# which is why GroupSize is limited to the values the mapping lists (the cf schema's maximum).
MAX_GROUP_SIZE = 10

# Amazon Linux 2023's root device name (DescribeImages: RootDeviceName of Amazon's AL2023 images,
# x86_64 and arm64 alike; tests/embedded/test_root_device.py reads it from the image data moto
# carries). A mapping on that name sets the root volume; on another it would add a second disk.
ROOT_DEVICE = "/dev/xvda"

AL2023_IMAGE_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"


_REQUIRED_GENERATED = (
    ("aws-security-group-id", "security_group_id"),
    ("aws-subnet-ids", "subnet_ids"),
    ("java-xmx", "java_xmx"),
    ("datomic-version", "datomic_version"),
)


def instance_profile(transactor: TransactorSpec) -> str:
    return transactor.transactor_role or names.transactor_role(transactor.system)


def architecture(cf: CfSpec) -> str:
    return cf.architecture


def image_parameter_path(cf: CfSpec) -> str:
    return AL2023_IMAGE_PARAMETER.format(arch=cf.architecture)


def template_problems(transactor: TransactorSpec, cf: CfSpec) -> list[Problem]:
    """What the files lack for a template: the keys ensure-cf and ensure-transactor generate, a
    consistent system."""
    problems = pin_problems(transactor)
    values = {
        "security_group_id": cf.security_group_id,
        "subnet_ids": cf.subnet_ids,
        "java_xmx": cf.java_xmx,
        "datomic_version": cf.datomic_version,
    }
    for key, field_name in _REQUIRED_GENERATED:
        if not values[field_name]:
            problems.append(
                Problem(
                    cf.path,
                    cf.line_of(key),
                    key,
                    f"{key} is blank",
                    f"run datomic-aws ensure-cf {cf.path} first; it fills it in",
                )
            )
    problems.extend(cross_file_checks(transactor, cf)[0])
    problems.extend(template_observe.observe_problems(transactor, cf))
    return problems


def cross_file_checks(transactor: TransactorSpec, cf: CfSpec) -> tuple[list[Problem], list[str]]:
    """What the two files must agree on (one system; license-key against datomic-version), and
    the transactor file's warnings worded for the Datomic version the cf file runs."""
    problems = []
    if cf.system and cf.system != transactor.system:
        problems.append(
            Problem(
                cf.path,
                cf.line_of("datomic-system"),
                "datomic-system",
                f"datomic-system {cf.system!r} is not the transactor's system "
                f"{transactor.system!r} ({transactor.path})",
                "pair each cf file with its own transactor file",
            )
        )
    license_problems, license_warnings = license_findings(
        transactor.path,
        transactor.license_key_line,
        transactor.values.get("license-key"),
        cf.path,
        cf.datomic_version,
    )
    problems.extend(license_problems)
    generic = obsolete_license_warning(transactor.path, transactor.license_key_line)
    warnings = [w for w in transactor.warnings if w != generic] + license_warnings
    return problems, warnings


def _tags(system: str, name: str) -> list[names.Tag]:
    return [*names.tag_list(system), {"Key": "Name", "Value": name}]


def _parameters(cf: CfSpec) -> dict[str, Any]:
    params: dict[str, Any] = {
        "InstanceType": {
            "Type": "String",
            "Default": cf.instance_type,
            "AllowedPattern": "^[a-z][a-z0-9-]*\\.[a-z0-9-]+$",
            "Description": "EC2 instance type of the transactor (aws-instance-type); its "
            "architecture must match ImageId",
        },
        "GroupSize": {
            "Type": "String",
            "Default": str(cf.group_size),
            "AllowedValues": [str(n) for n in range(1, MAX_GROUP_SIZE + 1)],
            "Description": "Transactors to run (aws-autoscaling-group-size): 1, or 2 for an "
            "active/standby pair; the group may hold one more during a replacement",
        },
        "Xmx": {
            "Type": "String",
            "Default": cf.java_xmx or "",
            "AllowedPattern": "^[1-9][0-9]*[kKmMgG]$",
            "Description": "JVM heap, -Xms and -Xmx (java-xmx)",
        },
        "JavaOpts": {
            "Type": "String",
            "Default": cf.java_opts or "",
            "AllowedPattern": "^[^'\"\\\\`$]*$",
            "Description": "JVM options (java-opts), no quotes",
        },
        "DatomicVersion": {
            "Type": "String",
            "Default": cf.datomic_version or "",
            "AllowedPattern": "^[0-9]+\\.[0-9]+\\.[0-9]+$",
            "Description": "Datomic Pro release to download (datomic-version)",
        },
    }
    if cf.ami:
        params["ImageId"] = {
            "Type": "AWS::EC2::Image::Id",
            "Default": cf.ami,
            "Description": "AMI of the transactor (pinned by aws-ami)",
        }
    else:
        params["ImageId"] = {
            "Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
            "Default": image_parameter_path(cf),
            "Description": f"Latest Amazon Linux 2023 for {cf.architecture}, resolved at each "
            "stack update",
        }
    return params


def _root_ebs(cf: CfSpec) -> dict[str, Any]:
    """The root volume (aws-root-volume-*), always encrypted (the account's default EBS key)."""
    volume = cf.root_volume
    ebs: dict[str, Any] = {
        "VolumeType": volume.volume_type,
        "VolumeSize": volume.size_gib,
        "Encrypted": True,
        "DeleteOnTermination": True,
    }
    if volume.iops is not None:
        ebs["Iops"] = volume.iops
    return ebs


def _launch_template(transactor: TransactorSpec, cf: CfSpec) -> dict[str, Any]:
    system = transactor.system
    instance_name = names.instance(system)
    return {
        "Type": "AWS::EC2::LaunchTemplate",
        "Properties": {
            "LaunchTemplateData": {
                "ImageId": {"Ref": "ImageId"},
                "InstanceType": {"Ref": "InstanceType"},
                "IamInstanceProfile": {"Name": instance_profile(transactor)},
                "SecurityGroupIds": [cf.security_group_id],
                "MetadataOptions": {
                    "HttpEndpoint": "enabled",
                    "HttpTokens": "required",
                    # Only the host itself reads instance metadata; no container hop allowed.
                    "HttpPutResponseHopLimit": 1,
                },
                "BlockDeviceMappings": [{"DeviceName": ROOT_DEVICE, "Ebs": _root_ebs(cf)}],
                "Monitoring": {"Enabled": cf.monitoring},
                # EC2's default is stop: a powered-off transactor would linger in the group
                # (reference §11). The boot script and the transactor unit power off to leave it.
                "InstanceInitiatedShutdownBehavior": "terminate",
                # The pin (`<SSM parameter version>:<keyed digest>`), the script's CONFIG_PIN, is a
                # variable of its own: one line of the template, in the launch template itself, so
                # a configuration change makes a new launch template version (replaced instances)
                # and a one-line diff. It is nowhere else: a copy (a tag, an output) would be a
                # second line, and a mapping would leave the resource's text unchanged.
                "UserData": {
                    "Fn::Base64": {
                        "Fn::Sub": [
                            user_data_sub(transactor, cf),
                            {"ConfigPin": config_pin(transactor)},
                        ]
                    }
                },
                "TagSpecifications": [
                    {
                        "ResourceType": "instance",
                        "Tags": _tags(system, instance_name),
                    },
                    {"ResourceType": "volume", "Tags": _tags(system, instance_name)},
                ],
            },
            "TagSpecifications": [
                {"ResourceType": "launch-template", "Tags": _tags(system, instance_name)}
            ],
        },
    }


def _autoscaling_group(transactor: TransactorSpec, cf: CfSpec) -> dict[str, Any]:
    system = transactor.system
    return {
        "Type": "AWS::AutoScaling::AutoScalingGroup",
        # A stack update must not reset the group's sizes while update-stack is surging it.
        "UpdatePolicy": {
            "AutoScalingScheduledAction": {"IgnoreUnmodifiedGroupSizeProperties": True}
        },
        "Properties": {
            "AutoScalingGroupName": names.autoscaling_group(system),
            "VPCZoneIdentifier": list(cf.subnet_ids),
            "LaunchTemplate": {
                "LaunchTemplateId": {"Ref": "LaunchTemplate"},
                "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]},
            },
            "MinSize": {"Ref": "GroupSize"},
            "DesiredCapacity": {"Ref": "GroupSize"},
            # One above the group size, so a replacement starts before the old transactor stops.
            "MaxSize": {"Fn::FindInMap": ["GroupSizes", {"Ref": "GroupSize"}, "MaxSize"]},
            "HealthCheckType": "EC2",
            # On a scale-in, instances of an old launch template version go first.
            "TerminationPolicies": ["OldestLaunchTemplate", "OldestInstance"],
            "LifecycleHookSpecificationList": [
                {
                    "LifecycleHookName": LAUNCH_HOOK_NAME,
                    "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                    "HeartbeatTimeout": LAUNCH_HOOK_HEARTBEAT_SECONDS,
                    "DefaultResult": "ABANDON",
                }
            ],
            # Reference §11: CloudFormation applies the stack's tags (names.tags) to the group it
            # creates; the same key in the group's own Tags has made group updates fail with
            # "multiple tags with the same key". So the group's Tags carry none of them.
            "Tags": [
                {"Key": t["Key"], "Value": t["Value"], "PropagateAtLaunch": True}
                for t in _tags(system, names.instance(system))
                if t["Key"] not in names.tags(system)
            ],
            **template_observe.notification_configurations(cf),
        },
    }


def build_template(transactor: TransactorSpec, cf: CfSpec) -> dict[str, Any]:
    """The template as a dict; raises InvalidInput when the cf file was not through ensure-cf."""
    problems = template_problems(transactor, cf)
    if problems:
        raise InvalidInput(problems)
    system = transactor.system
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Datomic Pro transactor for system {system}: launch template and Auto "
        "Scaling group. Generated by datomic-aws create-cf-template from the properties files; "
        "edit those, not this file.",
        "Metadata": {
            "DatomicAws": {
                "System": system,
                "ConfigParameter": names.ssm_parameter(system),
                "ConfigRegion": transactor.region,
                # The region the stack belongs in: the stack commands refuse another REGION.
                "Region": cf.region,
            }
        },
        "Parameters": _parameters(cf),
        "Mappings": {
            "GroupSizes": {str(n): {"MaxSize": n + 1} for n in range(1, MAX_GROUP_SIZE + 1)}
        },
        "Resources": {
            "LaunchTemplate": _launch_template(transactor, cf) | template_observe.depends_on(cf),
            "AutoScalingGroup": _autoscaling_group(transactor, cf),
        }
        | template_observe.role_grants(transactor, cf, instance_profile(transactor)),
        "Outputs": {
            "AutoScalingGroupName": {
                "Description": "The transactors' Auto Scaling group",
                "Value": {"Ref": "AutoScalingGroup"},
            },
            "LaunchTemplateId": {
                "Description": "The transactors' launch template",
                "Value": {"Ref": "LaunchTemplate"},
            },
            "LaunchTemplateVersion": {
                "Description": "The launch template version current instances should run",
                "Value": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]},
            },
        },
    }


def dump_template(template: dict[str, Any]) -> str:
    """Deterministic JSON: sorted keys, 2-space indent, ASCII only, trailing newline."""
    return json.dumps(template, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


@dataclass(frozen=True)
class Rendered:
    """The template of two specs: the document, its deterministic text and what to warn about."""

    doc: dict[str, Any]
    text: str
    warnings: tuple[str, ...]
    config_pin: str

    @property
    def size(self) -> int:
        return len(self.text.encode("ascii"))


def render_template(transactor: TransactorSpec, cf: CfSpec, *, where: str) -> Rendered:
    """The template of two valid specs, rendered once; InvalidInput (naming `where`, the output)
    when the cf file was not through ensure-cf or the template outgrows a TemplateBody."""
    doc = build_template(transactor, cf)
    text = dump_template(doc)
    rendered = Rendered(
        doc,
        text,
        (*cross_file_checks(transactor, cf)[1], *cf.warnings),
        config_pin(transactor),
    )
    if rendered.size > MAX_TEMPLATE_BYTES:
        # Not reachable with today's template; kept so growth is caught here, not by CloudFormation.
        raise InvalidInput(
            [
                Problem(
                    where,
                    None,
                    None,
                    f"the template is {rendered.size} bytes, over CloudFormation's "
                    f"{MAX_TEMPLATE_BYTES}",
                    "please report this",
                )
            ]
        )
    return rendered
