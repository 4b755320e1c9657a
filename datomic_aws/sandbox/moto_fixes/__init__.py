"""Corrections that make moto behave like AWS where our demo and tests depend on it.

Owns `patch_moto()`: small, idempotent, in-process patches of moto's model/response classes, each
stating the AWS behaviour it restores. Because they patch classes, they apply to `mock_aws` and to
a `ThreadedMotoServer` running in the same process alike. Call it before the first request.

The corrections reach into moto's internals, so they are applied only to a moto version they were
tested on (`TESTED_MOTO_VERSIONS`, the versions the `sandbox` extra pins): any other version is
refused with a `UsageError` before anything is patched, never patched blindly.

Modules, one concern each: `serialise` (one request at a time, `MOTO_LOCK`), `cloudformation`,
`s3`, `ec2` (what an instance records of its launch), `lifecycle` (launch lifecycle hooks, the
instance software, the lifecycle clock's time source `now`), `clock` (what Auto Scaling does on its
own between calls: `tick`, `power_off`). `_registry` remembers moto's originals for `unpatch_moto`.

It must not patch our own code, must not be imported by the product outside the sandbox/test
paths (moto is an optional dependency), and must not paper over a gap that our code has to handle
on AWS too: only behaviour AWS really has is added here. Known moto gaps that are *not* corrected
(our code handles them, see the reference §7): the group is not moved to a new launch template
version on a stack update (update-stack's `ensure_group_version` moves it), no instance refresh,
CloudFormation synchronous.
"""

from __future__ import annotations

import threading
from importlib import metadata

from datomic_aws.errors import UsageError
from datomic_aws.sandbox.moto_fixes import (
    _registry,
    clock,
    cloudformation,
    ec2,
    lifecycle,
    s3,
    serialise,
)
from datomic_aws.sandbox.moto_fixes._registry import DYNAMODB_LOCK, MOTO_LOCK
from datomic_aws.sandbox.moto_fixes.clock import power_off, tick
from datomic_aws.sandbox.moto_fixes.lifecycle import (
    LAUNCHING,
    Launched,
    PendingAction,
    Software,
    complete_action,
    set_instance_software,
)

# The moto versions every correction (and tests/sandbox, tests/embedded/test_replace.py) was run against.
# Add a version only after running those tests on it; the `sandbox` extra pins the same list.
TESTED_MOTO_VERSIONS = ("5.2.5",)

__all__ = [
    "DYNAMODB_LOCK",
    "LAUNCHING",
    "MOTO_LOCK",
    "TESTED_MOTO_VERSIONS",
    "Launched",
    "PendingAction",
    "Software",
    "check_moto_version",
    "clock",
    "complete_action",
    "is_patched",
    "lifecycle",
    "patch_moto",
    "power_off",
    "set_instance_software",
    "tick",
    "unpatch_moto",
]

_lock = threading.Lock()


def installed_moto_version() -> str | None:
    try:
        return metadata.version("moto")
    except metadata.PackageNotFoundError:
        return None


def check_moto_version(version: str | None) -> None:
    """Refuse a moto version the corrections were not tested on (UsageError)."""
    if version in TESTED_MOTO_VERSIONS:
        return
    tested = ", ".join(TESTED_MOTO_VERSIONS)
    found = f"moto {version} is installed" if version else "moto is not installed"
    raise UsageError(
        f"the sandbox's moto corrections patch moto's internals and were tested on moto {tested} "
        f"only; {found}, so they are not applied",
        "",
        f"pip install 'moto[server]=={TESTED_MOTO_VERSIONS[-1]}' (the `sandbox` extra pins it)",
    )


def patch_moto(*, moto_version: str | None = None) -> None:
    """Apply every correction once; later calls do nothing. `moto_version` (default: the installed
    one) must be one of TESTED_MOTO_VERSIONS, or nothing is patched and UsageError is raised."""
    with _lock:
        if _registry.originals:
            return
        check_moto_version(moto_version or installed_moto_version())
        # Order matters: the lifecycle hook wraps the group launch the ec2 correction wraps first.
        serialise.patch_serialised_requests()
        ec2.patch_instance_launch_template_version()
        lifecycle.patch_launch_lifecycle_hook()
        lifecycle.patch_lifecycle_hooks_at_group_creation()
        s3.patch_create_bucket_tags()
        s3.patch_secure_transport_condition()
        cloudformation.patch_termination_protection()
        cloudformation.patch_update_change_set_tags()
        cloudformation.patch_previous_parameter_values()
        lifecycle.patch_terminate_instance_not_in_group()
        clock.CLOCK.start()


def is_patched() -> bool:
    with _lock:
        return bool(_registry.originals)


def unpatch_moto() -> None:
    """Put moto's own behaviour back (for tests that demonstrate why a correction is needed)."""
    with _lock:
        clock.CLOCK.stop()
        _registry.restore_all()
