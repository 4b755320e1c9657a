"""The launch template's root volume mapping is on the root device of the image it boots: Amazon
Linux 2023's, as the public image data moto carries (AWS's DescribeImages answers for Amazon's own
AL2023 images, x86_64 and arm64) says. A mapping on another name would add a second disk and leave
the root volume at the image's default."""

from __future__ import annotations

import boto3
import pytest

from datomic_aws.template import AL2023_IMAGE_PARAMETER, ROOT_DEVICE


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_the_root_device_is_amazon_linux_2023s(monkeypatch: pytest.MonkeyPatch, arch: str) -> None:
    from moto import mock_aws

    # The tests leave moto's image data out (tests/conftest.py); this one reads it.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "true")
    with mock_aws():
        _check(arch)


def _check(arch: str) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    image = ssm.get_parameter(Name=AL2023_IMAGE_PARAMETER.format(arch=arch))["Parameter"]["Value"]
    (found,) = boto3.client("ec2", region_name="us-east-1").describe_images(ImageIds=[image])[
        "Images"
    ]
    assert found["Name"].startswith("al2023-ami-") and found["Architecture"] == arch
    assert found["RootDeviceName"] == ROOT_DEVICE == "/dev/xvda"
