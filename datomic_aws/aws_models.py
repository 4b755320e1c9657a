"""Trimmed botocore service models: the operations this tool calls, and only those.

botocore builds a client from its service's whole model: ec2's is 3.5 MB of JSON, and the seven
services below cost ~0.2 s of CPU per run (a fifth of a no-op apply, more than every AWS call of it
together). After a run builds a client from botocore's own model, it writes the model of
`OPERATIONS[service]` (those operations, the shapes they reach, no documentation) into a per-user
cache folder keyed by botocore's version and this table; later runs put that folder first on
botocore's search path. Endpoint rules, paginators, waiters and endpoints.json still come from
botocore's files (a non-builtin endpoints.json would switch botocore's endpoint resolution mode).

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
    "dynamodb": frozenset(
        {
            "CreateTable",
            "DescribeContinuousBackups",
            "DescribeTable",
            # status: the heartbeat item, one consistent read.
            "GetItem",
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
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8")
            # Atomic: a concurrent run reads botocore's model or the whole trimmed one.
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)


def _can_create(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return True
