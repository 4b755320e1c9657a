"""The root volume keys of cf.properties (issue 13): aws-root-volume-size (GiB),
aws-root-volume-type and aws-root-volume-iops, in the launch template's mapping of Amazon Linux
2023's root device, always encrypted; every contradiction refused before anything is written."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from datomic_aws.config.cf import load_cf
from datomic_aws.config.volume import DEFAULT_SIZE_GIB, DEFAULT_TYPE, RootVolume
from datomic_aws.errors import InvalidInput
from datomic_aws.template import ROOT_DEVICE, dump_template
from tests.cli.fixtures import command_line
from tests.unit.test_template import LINT_REGIONS, files, template_of


def _mappings(template: dict[str, Any]) -> list[dict[str, Any]]:
    data = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    mappings: list[dict[str, Any]] = data["BlockDeviceMappings"]
    return mappings


def _problems(tmp_path: Path, **cf: str) -> list[str]:
    _, c, _ = files(tmp_path, **cf)
    with pytest.raises(InvalidInput) as caught:
        load_cf(c)
    return [f"{p.key}: {p.message} ({p.hint})" for p in caught.value.problems]


def test_the_default_is_an_encrypted_20_gib_gp3_root_volume(tmp_path: Path) -> None:
    """What the golden template has (tests/golden/cf.json): the defaults add nothing to it."""
    assert (DEFAULT_SIZE_GIB, DEFAULT_TYPE) == (20, "gp3")
    assert load_cf(files(tmp_path)[1])[1].root_volume == RootVolume(20, "gp3", None)
    assert _mappings(template_of(tmp_path)) == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "VolumeType": "gp3",
                "VolumeSize": 20,
                "Encrypted": True,
                "DeleteOnTermination": True,
            },
        }
    ]


@pytest.mark.parametrize(
    ("keys", "ebs"),
    [
        ({"aws_root_volume_size": "100"}, {"VolumeType": "gp3", "VolumeSize": 100}),
        (
            {"aws_root_volume_size": "50", "aws_root_volume_iops": "6000"},
            {"VolumeType": "gp3", "VolumeSize": 50, "Iops": 6000},
        ),
        ({"aws_root_volume_type": "gp2"}, {"VolumeType": "gp2", "VolumeSize": 20}),
        (
            {"aws_root_volume_type": "io1", "aws_root_volume_iops": "1000"},
            {"VolumeType": "io1", "VolumeSize": 20, "Iops": 1000},
        ),
        (
            {"aws_root_volume_type": "io2", "aws_root_volume_iops": "20000"},
            {"VolumeType": "io2", "VolumeSize": 20, "Iops": 20000},
        ),
    ],
)
def test_the_keys_set_the_root_volume(
    tmp_path: Path, keys: dict[str, str], ebs: dict[str, Any]
) -> None:
    (mapping,) = _mappings(template_of(tmp_path, **keys))
    assert mapping == {
        "DeviceName": ROOT_DEVICE,
        "Ebs": {**ebs, "Encrypted": True, "DeleteOnTermination": True},
    }


def test_a_provisioned_iops_root_volume_stays_lint_clean(tmp_path: Path) -> None:
    """(The default one is linted with the sample template, tests/unit/test_template.py.)"""
    from cfnlint.api import ManualArgs, lint

    for keys in (
        {"aws_root_volume_type": "io2", "aws_root_volume_iops": "20000"},
        {"aws_root_volume_size": "200", "aws_root_volume_iops": "16000"},
    ):
        template = dump_template(template_of(tmp_path, **keys))
        matches = lint(template, config=ManualArgs(regions=LINT_REGIONS))
        assert [f"{m.rule.id} {m.message}" for m in matches] == [], keys


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"aws_root_volume_size": "4"}, "must be a whole number of GiB from 8 to 16384 (got '4')"),
        ({"aws_root_volume_size": "20g"}, "aws-root-volume-size"),
        ({"aws_root_volume_type": "st1"}, "must be one of gp3, gp2, io1, io2"),
        ({"aws_root_volume_type": "io1"}, "aws-root-volume-type=io1 needs aws-root-volume-iops"),
        (
            {"aws_root_volume_type": "gp2", "aws_root_volume_iops": "3000"},
            "aws-root-volume-iops does not apply to gp2 volumes",
        ),
        (
            {"aws_root_volume_iops": "1000"},
            "aws-root-volume-iops=1000 is below the 3000 IOPS every gp3 volume has",
        ),
        (
            {"aws_root_volume_type": "io1", "aws_root_volume_iops": "2000"},
            "aws-root-volume-iops=2000 is more than a 20 GiB io1 volume allows (50 per GiB: 1000)"
            " (lower aws-root-volume-iops, or raise aws-root-volume-size to at least 40)",
        ),
        ({"aws_root_volume_iops": "99"}, "must be a whole number of IOPS from 100 to 256000"),
    ],
)
def test_contradictions_and_values_out_of_range_are_refused(
    tmp_path: Path, keys: dict[str, str], expected: str
) -> None:
    problems = _problems(tmp_path, **keys)
    assert len(problems) == 1, problems
    assert expected in problems[0], problems


def test_a_type_the_schema_refused_is_not_checked_again(tmp_path: Path) -> None:
    """One problem per mistake: an unknown type with IOPS is the type's problem alone."""
    problems = _problems(tmp_path, aws_root_volume_type="io9", aws_root_volume_iops="5000")
    assert [p.split(":")[0] for p in problems] == ["aws-root-volume-type"]


def test_create_cf_template_refuses_an_invalid_volume_with_exit_2(tmp_path: Path) -> None:
    t, c, out = files(tmp_path, aws_root_volume_type="io1")
    before = c.read_bytes()
    run = subprocess.run(
        [*command_line(), "create-cf-template", str(t), str(c), str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "aws-root-volume-type=io1 needs aws-root-volume-iops" in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists() and c.read_bytes() == before
