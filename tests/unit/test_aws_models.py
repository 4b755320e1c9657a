"""The trimmed botocore models (datomic_aws/aws_models.py): every operation the package calls is
in them, they say what botocore's own models say about those operations, and a client built from
them works; a cache folder that cannot be written changes nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import botocore
import botocore.loaders
import botocore.session
import pytest
from botocore.stub import Stubber

from datomic_aws import aws_models
from datomic_aws.aws import AwsContext
from datomic_aws.aws_models import OPERATIONS, models_folder, trim, undocumented

PACKAGE = Path(__file__).resolve().parents[2] / "datomic_aws"
# The sandbox builds its own boto3 clients (emulated transactors, probe), never through AwsContext.
OWN_CLIENTS = ("sandbox",)


def _full_models() -> dict[str, dict[str, Any]]:
    loader = botocore.loaders.create_loader()
    return {s: loader.load_service_model(s, "service-2") for s in OPERATIONS}


FULL = _full_models()


def _source() -> str:
    files = [
        p
        for p in PACKAGE.rglob("*.py")
        if not any(part in OWN_CLIENTS for part in p.relative_to(PACKAGE).parts)
    ]
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def _snake(service: str) -> dict[str, str]:
    return {botocore.xform_name(op): op for op in FULL[service]["operations"]}


def test_every_operation_the_package_calls_is_in_the_trimmed_models() -> None:
    # A method, called or passed to a retry helper (`asg.set_desired_capacity`), or a
    # paginator's operation name (`"describe_subnets"`); a name several services share
    # (delete_tags) must be in each of them.
    tokens = set(re.findall(r"\.([a-z][a-z0-9_]+)\b", _source()))
    tokens |= set(re.findall(r"[\"']([a-z][a-z0-9_]+)[\"']", _source()))
    missing = {
        f"{service}:{op}"
        for service in OPERATIONS
        for snake, op in _snake(service).items()
        if snake in tokens and op not in OPERATIONS[service]
    }
    assert not missing, f"add to aws_models.OPERATIONS: {sorted(missing)}"


def test_the_operations_of_every_waiter_the_package_uses_are_in_the_trimmed_models() -> None:
    loader = botocore.loaders.create_loader()
    used = set(re.findall(r"get_waiter\(\s*[\"']([a-z_]+)[\"']", _source()))
    assert used, "the scan finds no waiter: the pattern is stale"
    found = set()
    for service in OPERATIONS:
        try:
            waiters = loader.load_service_model(service, "waiters-2")["waiters"]
        except botocore.exceptions.DataNotFoundError:
            continue
        for name, body in waiters.items():
            if botocore.xform_name(name) in used:
                found.add(botocore.xform_name(name))
                assert body["operation"] in OPERATIONS[service], (service, name)
    assert found == used


def test_every_listed_operation_exists() -> None:
    for service, ops in OPERATIONS.items():
        assert ops <= FULL[service]["operations"].keys(), service


@pytest.mark.parametrize("service", sorted(OPERATIONS))
def test_a_trimmed_model_says_what_botocores_says_about_its_operations(service: str) -> None:
    full, trimmed = FULL[service], trim(FULL[service], OPERATIONS[service])
    assert set(trimmed["operations"]) == OPERATIONS[service]
    assert trimmed["metadata"] == full["metadata"]
    for name, shape in trimmed["shapes"].items():
        assert shape == undocumented(full["shapes"][name]), name
    for name, op in trimmed["operations"].items():
        assert op == undocumented(full["operations"][name]), name
    # Trimming is worth it: the largest model loses most of its size.
    assert len(repr(trimmed)) < len(repr(full)) / 2


@pytest.fixture
def own_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    """No loader kept from an earlier context of this process, as in a new CLI run."""
    monkeypatch.setattr(aws_models, "_LOADERS", {})


def _new_process() -> None:
    aws_models._LOADERS.clear()


@pytest.mark.usefixtures("own_loaders")
def test_a_second_run_builds_its_clients_from_the_trimmed_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATOMIC_AWS_CACHE_DIR", str(tmp_path))
    AwsContext().client("ec2", "us-east-1")
    folder = models_folder(botocore.__version__, tmp_path)
    written = list(folder.glob("ec2/*/service-2.json"))
    assert len(written) == 1

    _new_process()
    ctx = AwsContext()
    ec2 = ctx.client("ec2", "us-east-1")
    loader = ctx.session().get_component("data_loader")
    version = written[0].parent.name
    _, path = loader.load_data_with_path(f"ec2/{version}/service-2")
    assert loader is not botocore.session.get_session().get_component("data_loader")
    assert Path(f"{path}.json").resolve() == written[0].resolve()
    assert len(ec2.meta.service_model.operation_names) == len(OPERATIONS["ec2"])
    with Stubber(ec2) as stub:
        stub.add_response("describe_vpcs", {"Vpcs": [{"VpcId": "vpc-1"}]}, {"VpcIds": ["vpc-1"]})
        assert ec2.describe_vpcs(VpcIds=["vpc-1"])["Vpcs"][0]["VpcId"] == "vpc-1"


@pytest.mark.usefixtures("own_loaders")
def test_a_cache_folder_that_cannot_be_made_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DATOMIC_AWS_CACHE_DIR", str(blocker / "cache"))
    ec2 = AwsContext().client("ec2", "us-east-1")
    assert len(ec2.meta.service_model.operation_names) == len(FULL["ec2"]["operations"])
    assert blocker.read_text() == ""
