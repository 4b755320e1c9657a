"""A stack shaped like the one Datomic's `bin/datomic create-cf-stack` made (reference §5), for the
ownership and migration tests (in-process moto and the CLI against the moto server).

The shape is Datomic's: Parameters InstanceType, InstanceProfile, Xmx, GroupSize,
InstanceMonitoring, JavaOpts, SecurityGroups, DatomicDeployBucket, DatomicVersion; Mappings of AMIs
per region and architecture; an AWS::AutoScaling::LaunchConfiguration `LaunchConfig` and an
AutoScalingGroup `LaunchGroup` with Min=Max=GroupSize over `Fn::GetAZs`, no subnets, no update
policy, no tags of ours. What moto needs: SecurityGroups holds a group *id* (moto resolves a bare
name only in EC2-Classic), and the AMI map names an AMI of moto's.
"""

from __future__ import annotations

import json
from typing import Any

DATOMIC_PARAMETERS = (
    "InstanceType",
    "InstanceProfile",
    "Xmx",
    "GroupSize",
    "InstanceMonitoring",
    "JavaOpts",
    "SecurityGroups",
    "DatomicDeployBucket",
    "DatomicVersion",
)


def datomic_template(ami: str = "ami-12c6146b") -> dict[str, Any]:
    join = "Fn::Join"
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Datomic Transactor Template",
        "Parameters": {
            "InstanceType": {
                "Description": "Type of EC2 instance to launch",
                "Type": "String",
                "Default": "c3.large",
            },
            "InstanceProfile": {
                "Description": "Preexisting IAM Role / Instance Profile",
                "Type": "String",
                "Default": "datomic-aws-transactor",
            },
            "Xmx": {
                "Description": "Xmx setting for the JVM",
                "Type": "String",
                "AllowedPattern": "\\d+[GgMm]",
                "Default": "2625m",
            },
            "GroupSize": {
                "Description": "Size of machine group",
                "Type": "String",
                "Default": "1",
            },
            "InstanceMonitoring": {
                "Description": "Detailed monitoring for store instances?",
                "Type": "String",
                "Default": "true",
            },
            "JavaOpts": {
                "Description": "Options passed to Java launcher",
                "Type": "String",
                "Default": "",
            },
            "SecurityGroups": {
                "Description": "Preexisting security groups.",
                "Type": "CommaDelimitedList",
                "Default": "datomic",
            },
            "DatomicDeployBucket": {
                "Type": "String",
                "Default": "deploy-a0dbc565-faf2-4760-9b7e-29a8e45f428e",
            },
            "DatomicVersion": {"Type": "String", "Default": "0.9.5703"},
        },
        "Mappings": {
            "AWSInstanceType2Arch": {
                "c3.large": {"Arch": "64h"},
                "m3.large": {"Arch": "64h"},
                "t1.micro": {"Arch": "64p"},
            },
            "AWSRegionArch2AMI": {
                "us-east-1": {"64p": ami, "64h": ami},
                "eu-west-1": {"64p": ami, "64h": ami},
            },
        },
        "Resources": {
            "LaunchGroup": {
                "Type": "AWS::AutoScaling::AutoScalingGroup",
                "Properties": {
                    "Tags": [
                        {
                            "Key": "Name",
                            "Value": {"Ref": "AWS::StackName"},
                            "PropagateAtLaunch": "true",
                        }
                    ],
                    "LaunchConfigurationName": {"Ref": "LaunchConfig"},
                    "AvailabilityZones": {"Fn::GetAZs": ""},
                    "MinSize": {"Ref": "GroupSize"},
                    "MaxSize": {"Ref": "GroupSize"},
                },
            },
            "LaunchConfig": {
                "Type": "AWS::AutoScaling::LaunchConfiguration",
                "Properties": {
                    "ImageId": {
                        "Fn::FindInMap": [
                            "AWSRegionArch2AMI",
                            {"Ref": "AWS::Region"},
                            {
                                "Fn::FindInMap": [
                                    "AWSInstanceType2Arch",
                                    {"Ref": "InstanceType"},
                                    "Arch",
                                ]
                            },
                        ]
                    },
                    "UserData": {
                        "Fn::Base64": {
                            join: [
                                "\n",
                                [
                                    "exec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1",
                                    {join: ["=", ["export XMX", {"Ref": "Xmx"}]]},
                                    {join: ["=", ["export JAVA_OPTS", {"Ref": "JavaOpts"}]]},
                                    {
                                        join: [
                                            "=",
                                            [
                                                "export DATOMIC_DEPLOY_BUCKET",
                                                {"Ref": "DatomicDeployBucket"},
                                            ],
                                        ]
                                    },
                                    {
                                        join: [
                                            "=",
                                            ["export DATOMIC_VERSION", {"Ref": "DatomicVersion"}],
                                        ]
                                    },
                                    "cd /datomic",
                                    "cat <<EOF >aws.properties",
                                    "protocol=ddb",
                                    "EOF",
                                    "chmod 744 aws.properties",
                                    "./startup.sh",
                                ],
                            ]
                        }
                    },
                    "InstanceType": {"Ref": "InstanceType"},
                    "InstanceMonitoring": {"Ref": "InstanceMonitoring"},
                    "SecurityGroups": {"Ref": "SecurityGroups"},
                    "IamInstanceProfile": {"Ref": "InstanceProfile"},
                    "BlockDeviceMappings": [
                        {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}
                    ],
                },
            },
        },
    }


def create_datomic_stack(cfn: Any, ec2: Any, name: str) -> str:
    """Create the Datomic-era stack `name` (untagged) with a `datomic` security group; returns
    the physical name of its LaunchGroup."""
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    group_id = ec2.create_security_group(
        GroupName="datomic", Description="Datomic transactors", VpcId=vpc["VpcId"]
    )["GroupId"]
    template = datomic_template()
    values = {k: str(v["Default"]) for k, v in template["Parameters"].items()}
    values["SecurityGroups"] = group_id
    # Every parameter stated, as describe-stacks reports them: moto (unlike CloudFormation) sees a
    # parameter first passed explicitly later as changed and rebuilds what refers to it.
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(values.items())],
    )
    (group,) = [
        r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName=name)["StackResources"]
        if r["LogicalResourceId"] == "LaunchGroup"
    ]
    return str(group)
