"""Trimmed botocore service models: the operations this tool calls, and only those.

botocore builds a client from its service's whole model: ec2's is 3.5 MB of JSON, and the seven
services below cost ~0.2 s of CPU per run (a fifth of a no-op apply, more than every AWS call of it
together). After a run builds a client from botocore's own model, it writes the model of
`OPERATIONS[service]` (those operations, the shapes they reach, no documentation) into a per-user
cache folder keyed by botocore's version and this table; later runs put that folder first on
botocore's search path. The same folder keeps botocore's list of services (botocore walks its ~420
service folders for it, per type of data) and endpoints.json with only the services of
CLIENT_SERVICES (~20 ms to parse whole), served as botocore's builtin data, which it is: a
non-builtin endpoints.json would switch botocore's endpoint resolution mode. Endpoint rule sets,
paginators and waiters still come from botocore's files.

STS is not trimmed: botocore's own credential providers call operations of it (AssumeRole...)
through the same session.

Owns OPERATIONS (tests/unit/test_aws_models.py checks that every client call of the package is
listed) and the cache folder. It must not change what a model says about an operation: a trimmed
model is botocore's model with other operations and documentation left out. The cache is an
optimisation: a folder that cannot be written is ignored, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

OPERATIONS: dict[str, frozenset[str]] = {
    "autoscaling": frozenset(
        {
            "CreateOrUpdateTags",
            "DeleteTags",
            "DescribeAutoScalingGroups",
            "ResumeProcesses",
            "SetDesiredCapacity",
            "SuspendProcesses",
            "TerminateInstanceInAutoScalingGroup",
            "UpdateAutoScalingGroup",
        }
    ),
    "cloudformation": frozenset(
        {
            "CreateChangeSet",
            "CreateStack",
            "DeleteChangeSet",
            "DeleteStack",
            "DescribeChangeSet",
            "DescribeStackEvents",
            "DescribeStackResources",
            "DescribeStacks",
            "ExecuteChangeSet",
            "GetTemplate",
            "UpdateStack",
            "UpdateTerminationProtection",
        }
    ),
    "cloudwatch": frozenset(
        {
            # status: the age of the last HeartbeatMsec datapoint the transactor published.
            "GetMetricData",
            # Never called: SSM's and KMS's have the same method names.
            "ListTagsForResource",
            "TagResource",
        }
    ),
    "dynamodb": frozenset(
        {
            "CreateTable",
            "DescribeContinuousBackups",
            "DescribeTable",
            # Never called: KMS's TagResource has the same method name (tag_resource).
            "TagResource",
            "UpdateContinuousBackups",
            "UpdateTable",
        }
    ),
    "ec2": frozenset(
        {
            "AuthorizeSecurityGroupIngress",
            "CreateSecurityGroup",
            "CreateTags",
            "DeleteTags",
            "DescribeImages",
            "DescribeInstanceTypeOfferings",
            "DescribeInstanceTypes",
            "DescribeInstances",
            "DescribeLaunchTemplateVersions",
            "DescribeLaunchTemplates",
            "DescribeSecurityGroups",
            "DescribeSubnets",
            "DescribeVpcs",
            "RevokeSecurityGroupIngress",
        }
    ),
    "iam": frozenset(
        {
            "AddRoleToInstanceProfile",
            "CreateInstanceProfile",
            "CreateRole",
            "DeleteRolePolicy",
            "GetInstanceProfile",
            "GetRole",
            "GetRolePolicy",
            "ListAttachedRolePolicies",
            "ListRolePolicies",
            "PutRolePolicy",
            "RemoveRoleFromInstanceProfile",
            "TagInstanceProfile",
            "UpdateAssumeRolePolicy",
        }
    ),
    "kms": frozenset(
        {
            "CreateAlias",
            "CreateKey",
            "DescribeKey",
            "GetKeyPolicy",
            "ListResourceTags",
            "PutKeyPolicy",
            "TagResource",
        }
    ),
    "s3": frozenset(
        {
            "CreateBucket",
            # botocore's own S3 region redirector and S3 Express identity call these.
            "CreateSession",
            "GetBucketEncryption",
            "GetBucketLocation",
            "GetBucketPolicy",
            "GetBucketTagging",
            "GetPublicAccessBlock",
            "HeadBucket",
            "HeadObject",
            "PutBucketEncryption",
            "PutBucketPolicy",
            "PutBucketTagging",
            "PutObject",
            "PutPublicAccessBlock",
        }
    ),
    "ssm": frozenset(
        {
            "AddTagsToResource",
            "DeleteParameter",
            "DescribeParameters",
            "GetParameter",
            "ListTagsForResource",
            "PutParameter",
        }
    ),
}

# Services whose clients a session of this tool builds: ours (AwsContext.client) and those botocore's
# credential and token providers build through the same session (AssumeRole, SSO, sign-in).
# tests/unit/test_aws_models.py checks the latter against botocore's source.
PROVIDER_SERVICES = frozenset({"signin", "sso", "sso-oidc", "sts"})
CLIENT_SERVICES = frozenset(OPERATIONS) | PROVIDER_SERVICES

_MODEL = "service-2"
_DROPPED = frozenset({"documentation", "documentationUrl"})


def cache_root() -> Path:
    """$DATOMIC_AWS_CACHE_DIR, else $XDG_CACHE_HOME/datomic-aws, else ~/.cache/datomic-aws."""
    named = os.environ.get("DATOMIC_AWS_CACHE_DIR")
    if named:
        return Path(named)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datomic-aws"


def models_folder(botocore_version: str, root: Path | None = None) -> Path:
    """The folder of this botocore's trimmed models for this OPERATIONS table: a new botocore or
    a new operation in the table gets a new folder, never a stale model."""
    table = json.dumps({s: sorted(ops) for s, ops in sorted(OPERATIONS.items())})
    digest = hashlib.sha256(table.encode()).hexdigest()[:12]
    return (root or cache_root()) / "botocore-models" / f"{botocore_version}-{digest}"


def undocumented(value: Any) -> Any:
    """`value` without its documentation keys, at every depth."""
    if isinstance(value, dict):
        return {k: undocumented(v) for k, v in value.items() if k not in _DROPPED}
    if isinstance(value, list):
        return [undocumented(v) for v in value]
    return value


def _reached(shapes: dict[str, Any], roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in shapes:
            continue
        seen.add(name)
        shape = shapes[name]
        todo.extend(shape[k]["shape"] for k in ("member", "key", "value") if k in shape)
        todo.extend(m["shape"] for m in shape.get("members", {}).values())
    return seen


def trim(model: dict[str, Any], operations: frozenset[str]) -> dict[str, Any]:
    """`model` with only `operations` and the shapes they reach; no documentation."""
    ops = {name: body for name, body in model["operations"].items() if name in operations}
    roots = [
        ref["shape"]
        for body in ops.values()
        for ref in [body.get("input"), body.get("output"), *body.get("errors", [])]
        if isinstance(ref, dict) and "shape" in ref
    ]
    shapes = model["shapes"]
    kept = {name: shapes[name] for name in sorted(_reached(shapes, roots))}
    # Only operations and shapes lose their documentation: botocore reads the documentation of
    # the model's clientContextParams when it resolves an endpoint.
    return {**model, "operations": undocumented(ops), "shapes": undocumented(kept)}


# One loader per cache folder and data path, for the whole process: botocore's loader keeps what
# it parsed, so the sessions of a process (apply's, a test process's) parse each model once. Never
# botocore's default loader: other sessions of the process (the sandbox's, a test's own boto3
# clients) keep their whole models.
_LOADERS: dict[tuple[str, str | None], Any] = {}
_LOADERS_LOCK = threading.Lock()
# For what a loader's replaced methods keep (they call each other: reentrant).
_MEMO_LOCK = threading.RLock()


class ModelCache:
    """Gives a botocore session a loader that reads the cache folder first, and fills it."""

    def __init__(self, botocore_session: Any, folder: Path) -> None:
        import botocore.loaders

        self._folder = folder
        self._usable = folder.is_dir() or _can_create(folder)
        data_path = botocore_session.get_config_variable("data_path")
        key = (str(folder) if self._usable else "", data_path)
        with _LOADERS_LOCK:
            loader = _LOADERS.get(key)
            if loader is None:
                loader = botocore.loaders.create_loader(data_path)
                if self._usable:
                    loader.search_paths.insert(0, str(folder))
                    _list_services_from_cache(loader, folder)
                    _endpoints_from_cache(loader, folder)
                _LOADERS[key] = loader
        botocore_session.register_component("data_loader", loader)
        self._loader = loader

    def remember(self, service: str) -> None:
        """After a client of `service` was built: write its trimmed model if it is not there.
        The model comes from the loader's own cache (the one the client was built from)."""
        if not self._usable or service not in OPERATIONS:
            return
        version = self._loader.determine_latest_version(service, _MODEL)
        target = self._folder / service / version / f"{_MODEL}.json"
        if target.exists():
            return
        model = self._loader.load_service_model(service, _MODEL, version)
        text = json.dumps(trim(model, OPERATIONS[service]), separators=(",", ":"))
        # Atomic: a concurrent run reads botocore's model or the whole trimmed one.
        _write_atomically(target, text)


def _can_create(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return True


def _list_services_from_cache(loader: Any, folder: Path) -> None:
    """Make `loader.list_available_services` read botocore's own part of its answer from
    `folder`: botocore walks its ~420 service folders for it once per type of data it loads
    (service models, endpoint rule sets), ~20 ms of every run. The answer is the same list:
    botocore's folder is listed once per botocore version (the folder's key), every other folder
    of the search path (~/.aws/models, AWS_DATA_PATH) still live, and the cache folder not at all
    (it holds only trimmed copies of botocore's models, so nothing botocore's list lacks)."""
    import botocore.loaders

    original = loader.list_available_services

    def listed(type_name: str) -> list[str]:
        services = set(_builtin_services(loader, folder, type_name))
        for path in loader.search_paths:
            if path in (str(folder), botocore.loaders.Loader.BUILTIN_DATA_PATH):
                continue
            services.update(_services_under(loader, path, type_name))
        return sorted(services)

    def cached(type_name: str) -> list[str]:
        with _MEMO_LOCK:
            if type_name not in memo:
                memo[type_name] = listed(type_name)
            return memo[type_name]

    memo: dict[str, list[str]] = {}
    cached.__doc__ = original.__doc__
    loader.list_available_services = cached


def _builtin_services(loader: Any, folder: Path, type_name: str) -> list[str]:
    import botocore.loaders

    target = folder / f"services-{type_name}.json"
    try:
        names = json.loads(target.read_text(encoding="utf-8"))
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
    except (OSError, ValueError):
        pass
    names = _services_under(loader, botocore.loaders.Loader.BUILTIN_DATA_PATH, type_name)
    _write_atomically(target, json.dumps(names))
    return names


def _services_under(loader: Any, path: str, type_name: str) -> list[str]:
    """botocore's Loader.list_available_services, for one folder of the search path."""
    if not os.path.isdir(path):
        return []
    found = []
    for service in os.listdir(path):
        service_dir = os.path.join(path, service)
        if not os.path.isdir(service_dir):
            continue
        if any(
            loader.file_loader.exists(os.path.join(service_dir, version, type_name))
            for version in os.listdir(service_dir)
        ):
            found.append(service)
    return sorted(found)


def _write_atomically(target: Path, text: str) -> None:
    """A concurrent run reads the old state or the whole new file; a failure leaves nothing."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)


def _endpoints_from_cache(loader: Any, folder: Path) -> None:
    """Make `loader` load botocore's endpoints.json (1.2 MB, ~20 ms to parse on every run) as a
    copy kept in `folder` with only the services of CLIENT_SERVICES: every partition, region and
    default as botocore has them. It answers with the builtin path, as botocore's own loader
    would: botocore resolves endpoints with its rule sets only for its builtin endpoints data,
    which this copy is, less services no client of the session is of. A customer endpoints.json
    ahead of botocore's on the search path is loaded as before."""
    import botocore.loaders

    original = loader.load_data_with_path
    builtin = botocore.loaders.Loader.BUILTIN_DATA_PATH
    kept: list[tuple[Any, str]] = []

    def load_data_with_path(name: str) -> tuple[Any, str]:
        if name != "endpoints":
            return original(name)  # type: ignore[no-any-return]
        first = next(
            (
                path
                for path in loader.search_paths
                if path != str(folder) and loader.file_loader.exists(os.path.join(path, name))
            ),
            None,
        )
        if first != builtin:
            return original(name)  # type: ignore[no-any-return]
        with _MEMO_LOCK:
            if not kept:
                kept.append((_trimmed_endpoints(loader, folder), os.path.join(builtin, name)))
            return kept[0]

    loader.load_data_with_path = load_data_with_path


def _trimmed_endpoints(loader: Any, folder: Path) -> Any:
    services = sorted(CLIENT_SERVICES)
    digest = hashlib.sha256(json.dumps(services).encode()).hexdigest()[:12]
    target = folder / f"endpoints-{digest}.json"
    import botocore.loaders

    files = botocore.loaders.JSONFileLoader()
    try:
        # As botocore reads it (its JSON reader, its OrderedDicts).
        data = files.load_file(str(target.with_suffix("")))
        if isinstance(data, dict) and "partitions" in data:
            return data
    except (OSError, ValueError):
        pass
    full = files.load_file(os.path.join(botocore.loaders.Loader.BUILTIN_DATA_PATH, "endpoints"))
    data = trim_endpoints(full, endpoint_prefixes(loader, services))
    _write_atomically(target, json.dumps(data, separators=(",", ":")))
    return data


def endpoint_prefixes(loader: Any, services: list[str]) -> frozenset[str]:
    """The keys of `services` in endpoints.json (cloudwatch's is "monitoring")."""
    return frozenset(
        loader.load_service_model(service, _MODEL)["metadata"]["endpointPrefix"]
        for service in services
    )


def trim_endpoints(data: dict[str, Any], prefixes: frozenset[str]) -> dict[str, Any]:
    """botocore's endpoints data with only the services of `prefixes`, in every partition."""
    return {
        **data,
        "partitions": [
            {
                **partition,
                "services": {
                    name: body
                    for name, body in partition.get("services", {}).items()
                    if name in prefixes
                },
            }
            for partition in data["partitions"]
        ],
    }
