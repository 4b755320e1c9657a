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


# What each service's client is asked, to see where it sends a request and how it signs it.
_PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "autoscaling": ("describe_auto_scaling_groups", {}),
    "cloudformation": ("describe_stacks", {}),
    "cloudwatch": ("list_tags_for_resource", {"ResourceARN": "arn:aws:cloudwatch:x"}),
    "dynamodb": ("describe_table", {"TableName": "t"}),
    "ec2": ("describe_vpcs", {}),
    "iam": ("get_role", {"RoleName": "r"}),
    "kms": ("describe_key", {"KeyId": "k"}),
    "s3": ("head_bucket", {"Bucket": "bucket-of-datomic"}),
    "ssm": ("get_parameter", {"Name": "n"}),
    "sts": ("get_caller_identity", {}),
}
_REGIONS = ("us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1")


class _Sent(Exception):
    pass


def _where(client: Any, operation: str, params: dict[str, Any]) -> tuple[Any, ...]:
    """Where `client` sends `operation` and the scope it signs it with, without sending it."""
    seen: list[tuple[str, str]] = []

    def stop(request: Any, **_: Any) -> None:
        seen.append((request.url, str(request.headers.get("Authorization", b"")).split(",")[0]))
        raise _Sent

    client.meta.events.register("before-send", stop)
    with pytest.raises(_Sent):
        getattr(client, operation)(**params)
    meta = client.meta
    return meta.endpoint_url, meta.region_name, meta.partition, seen[0][0], seen[0][1][-60:]


def _botocores_client(service: str, region: str, endpoint_url: str | None) -> Any:
    session = botocore.session.Session()
    session.set_credentials("AKIDEXAMPLE", "secret")
    return session.create_client(service, region_name=region, endpoint_url=endpoint_url)


@pytest.mark.usefixtures("own_loaders")
@pytest.mark.parametrize("endpoint_url", [None, "http://127.0.0.1:5000"])
def test_clients_from_the_cache_resolve_endpoints_as_botocores_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint_url: str | None
) -> None:
    monkeypatch.setenv("DATOMIC_AWS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for run in ("filling", "from the cache"):
        _new_process()
        ctx = AwsContext(endpoint_url=endpoint_url)
        for region in _REGIONS:
            for service, (operation, params) in _PROBES.items():
                ours = _where(ctx.client(service, region), operation, params)  # type: ignore[call-overload]
                theirs = _where(_botocores_client(service, region, endpoint_url), operation, params)
                assert ours == theirs, (run, service, region)
            for service in sorted(aws_models.PROVIDER_SERVICES - set(_PROBES)):
                mine = ctx.session().create_client(service, region_name=region)
                own = _botocores_client(service, region, None)
                assert (mine.meta.endpoint_url, mine.meta.partition) == (
                    own.meta.endpoint_url,
                    own.meta.partition,
                ), (run, service, region)
    assert list(models_folder(botocore.__version__, tmp_path).glob("endpoints-*.json"))


def test_the_kept_endpoints_include_every_client_botocores_providers_build() -> None:
    # botocore's credential and token providers build clients through the session they serve.
    root = Path(botocore.__file__).parent
    source = "\n".join(p.read_text(encoding="utf-8") for p in root.glob("*.py"))
    built = set(re.findall(r"_client_creator\(\s*['\"]([a-z0-9-]+)['\"]", source))
    built |= set(re.findall(r"create_nested_client\(\s*[^,()]+,\s*['\"]([a-z0-9-]+)['\"]", source))
    assert {"sts", "sso"} <= built, "the scan finds nothing: the pattern is stale"
    assert built <= aws_models.PROVIDER_SERVICES


@pytest.mark.usefixtures("own_loaders")
def test_the_cached_list_of_services_is_botocores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATOMIC_AWS_CACHE_DIR", str(tmp_path))
    for _ in range(2):
        _new_process()
        loader = AwsContext().session().get_component("data_loader")
        for type_name in ("service-2", "endpoint-rule-set-1", "waiters-2", "paginators-1"):
            own = botocore.loaders.create_loader().list_available_services(type_name)
            assert loader.list_available_services(type_name) == own, type_name
    assert list(models_folder(botocore.__version__, tmp_path).glob("services-*.json"))


@pytest.mark.usefixtures("own_loaders")
def test_a_customer_endpoints_file_is_loaded_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = tmp_path / "models"
    custom.mkdir()
    (custom / "endpoints.json").write_text('{"partitions": [], "version": 3}', encoding="utf-8")
    monkeypatch.setenv("DATOMIC_AWS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_DATA_PATH", str(custom))
    session = AwsContext().session()
    data, path = session.get_component("data_loader").load_data_with_path("endpoints")
    assert (data, Path(f"{path}.json")) == (
        {"partitions": [], "version": 3},
        custom / "endpoints.json",
    )
