"""The moto corrections (datomic_aws/sandbox/moto_fixes) patch moto's internals, so they are applied
only to a moto version they were tested on: any other is refused before anything is patched, and
the extras pin exactly the tested versions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from datomic_aws.errors import UsageError
from datomic_aws.sandbox import moto_fixes

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("unpatched_moto")
def test_an_untested_moto_version_is_refused_before_anything_is_patched() -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup
    from moto.s3.responses import S3Response

    launch = FakeAutoScalingGroup.replace_autoscaling_group_instances
    put = S3Response._bucket_response_put
    with pytest.raises(UsageError) as caught:
        moto_fixes.patch_moto(moto_version="5.3.0")
    assert caught.value.what == (
        "the sandbox's moto corrections patch moto's internals and were tested on moto 5.2.5 "
        "only; moto 5.3.0 is installed, so they are not applied"
    )
    assert caught.value.hint == "pip install 'moto[server]==5.2.5' (the `sandbox` extra pins it)"
    assert not moto_fixes.is_patched()
    assert FakeAutoScalingGroup.replace_autoscaling_group_instances is launch
    assert S3Response._bucket_response_put is put


@pytest.mark.parametrize("version", ["5.2.4", "5.2.6", "5.3.0", "6.0.0", "5.2.5.dev0"])
def test_every_version_but_the_tested_ones_is_refused(version: str) -> None:
    with pytest.raises(UsageError, match=f"moto {version} is installed"):
        moto_fixes.check_moto_version(version)


def test_no_moto_at_all_is_refused_too() -> None:
    with pytest.raises(UsageError, match="moto is not installed"):
        moto_fixes.check_moto_version(None)


@pytest.mark.usefixtures("unpatched_moto")
def test_a_tested_version_is_patched() -> None:
    moto_fixes.patch_moto(moto_version=moto_fixes.TESTED_MOTO_VERSIONS[0])
    assert moto_fixes.is_patched()


def test_the_moto_these_tests_run_on_is_a_tested_one() -> None:
    assert moto_fixes.installed_moto_version() in moto_fixes.TESTED_MOTO_VERSIONS


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_every_extra_pins_moto_to_the_tested_versions() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pins = {
        name: [r for r in requirements if r.startswith("moto")]
        for name, requirements in extras.items()
    }
    (tested,) = moto_fixes.TESTED_MOTO_VERSIONS  # one version: an exact pin
    assert pins["sandbox"] == [f"moto[server]=={tested}"]
    for name, found in pins.items():
        assert found in ([], [f"moto[server]=={tested}"]), name


def test_the_split_package_keeps_the_names_its_users_import() -> None:
    for name in (
        "patch_moto",
        "unpatch_moto",
        "is_patched",
        "set_instance_software",
        "Launched",
        "power_off",
        "tick",
        "complete_action",
        "MOTO_LOCK",
        "DYNAMODB_LOCK",
    ):
        assert hasattr(moto_fixes, name), name
    # The lifecycle clock a test steps is the one the launch hooks and the clock read.
    assert moto_fixes.lifecycle.now is moto_fixes.clock.lifecycle.now


def test_every_correction_states_the_aws_behaviour_it_restores() -> None:
    """Each correction patch_moto applies says first what AWS does ("AWS: ..."), then what moto
    does instead and the correction (issue 10: the corrections live with the sandbox, each stating
    the AWS behaviour it restores)."""
    import ast
    import inspect

    source = inspect.getsource(moto_fixes.patch_moto)
    applied = {
        node.func.attr
        for node in ast.walk(ast.parse(source.lstrip()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr.startswith("patch_")
    }
    assert len(applied) >= 10
    for name in sorted(applied):
        owner = next(
            module
            for module in (
                moto_fixes.cloudformation,
                moto_fixes.ec2,
                moto_fixes.lifecycle,
                moto_fixes.s3,
                moto_fixes.serialise,
            )
            if hasattr(module, name)
        )
        doc = inspect.getdoc(getattr(owner, name)) or ""
        assert doc.startswith("AWS: "), name
        assert "moto" in doc.split("\n\n", 1)[-1], name
