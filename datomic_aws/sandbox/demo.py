"""The demo: the operator's loop run against the embedded AWS (moto) on 127.0.0.1, with emulated
transactors.

Owns copying the packaged samples into the demo folder, the demo's own edits of them (the log
bucket on, a short heartbeat), and narrating each step and the measured availability of the roll
through the `out` / `err` callbacks. The embedded AWS itself (server, masked credentials,
transactors, probe) is `datomic_aws.sandbox.embedded`. It never talks to real AWS.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from datomic_aws.aws import AwsContext
from datomic_aws.changes import Result
from datomic_aws.errors import UsageError

Say = Callable[[str], None]
# A short heartbeat keeps the demo fast: a standby takes over after two missed heartbeats
# (reference §10), so the worst case is 2 x 0.5 s + 1 s.
DEMO_HEARTBEAT_MSEC = 500
DEMO_BOOT_SECONDS = 0.3


def copy_samples(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    samples = resources.files("datomic_aws.config_samples")
    copied = {}
    for name in ("transactor.properties", "cf.properties"):
        source = samples.joinpath(name)
        if source.is_file():
            target = directory / name
            target.write_bytes(source.read_bytes())
            copied[name] = target
    return copied


def _enable_demo_options(path: Path) -> None:
    """The demo turns on the optional log bucket so that every resource kind is shown, and
    shortens the transactors' heartbeat through their configuration, as an operator could."""
    _edit(path, "# aws-s3-log-bucket-id=", "aws-s3-log-bucket-id=")
    _edit(path, "# heartbeat-interval-msec=5000", f"heartbeat-interval-msec={DEMO_HEARTBEAT_MSEC}")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="latin-1")
    if old not in text:
        raise UsageError(f"the demo sample has no {old!r}", str(path), "please report this")
    path.write_text(text.replace(old, new, 1), encoding="latin-1")


def _instance_type(path: Path) -> str:
    from datomic_aws.properties import PropertiesText

    return PropertiesText.load(path).get("aws-instance-type") or ""


def worst_case_gap(heartbeat_msec: int) -> float:
    """Datomic's worst-case peer recovery: 2 x heartbeat + 1 s (reference §10)."""
    return 2 * heartbeat_msec / 1000 + 1


def _wait_until_serving(aws: Any, endpoint: str, region: str, system: str, group: str) -> None:
    """As an operator would, start the roll once the first transactor is up: active for a peer,
    its instance InService."""
    import boto3

    autoscaling = boto3.client("autoscaling", region_name=region, endpoint_url=endpoint)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
        serving = [
            i
            for g in groups["AutoScalingGroups"]
            for i in g["Instances"]
            if i["LifecycleState"] == "InService"
        ]
        if serving and aws.probe.live_active(system) is not None:
            return
        time.sleep(0.05)


def run_demo(directory: str | None, *, out: Say, err: Say, json_output: bool = False) -> int:
    from datomic_aws import names, render
    from datomic_aws.deploy import apply_dir
    from datomic_aws.sandbox.embedded import embedded_aws
    from datomic_aws.sandbox.probe import InServicePoller
    from datomic_aws.sandbox.transactors import Settings
    from datomic_aws.stack import Waiting

    folder = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="datomic-aws-demo-"))
    files = copy_samples(folder)
    _enable_demo_options(files["transactor.properties"])
    cf = files["cf.properties"]
    waiting = Waiting(poll_interval=0.2, heartbeat_interval=30, on_event=lambda m: err(f"   {m}"))
    started = time.monotonic()

    def apply(title: str, endpoint: str) -> tuple[Result, dict[str, Any]]:
        err(f"\n== {title}")
        ctx = AwsContext(endpoint_url=endpoint)
        result = apply_dir(ctx, folder, waiting=waiting)
        calls = ctx.call_log.as_dict()
        out(render.to_json(result, calls) if json_output else render.to_text(result).rstrip("\n"))
        err(f"   AWS calls: {calls['total']} ({calls['mutating']} mutating)")
        return result, calls

    with embedded_aws(transactors=True, settings=Settings(boot_seconds=DEMO_BOOT_SECONDS)) as aws:
        endpoint = aws.endpoint
        err(
            f"Embedded AWS (moto) listening on {endpoint}, every instance running an emulated "
            f"transactor (heartbeat {DEMO_HEARTBEAT_MSEC} ms); demo folder {folder}"
        )
        first, _ = apply(
            f"apply {folder}: table, roles, bucket, configuration, security group, template, stack",
            endpoint,
        )
        system = str(first.extra.get("system", ""))
        old_type = _instance_type(cf)
        new_type = "m7i.xlarge" if old_type != "m7i.xlarge" else "m7i.2xlarge"
        _edit(cf, f"aws-instance-type={old_type}", f"aws-instance-type={new_type}")
        err(f"\n   (the operator edits cf.properties: aws-instance-type={old_type} -> {new_type})")
        region = str(first.extra.get("region", "us-east-1"))
        group = names.autoscaling_group(system)
        _wait_until_serving(aws, endpoint, region, system, group)
        aws.probe.clear()
        with InServicePoller(endpoint, region, group) as poller:
            second, _ = apply(
                "apply again: update the stack, surge-replace the transactor", endpoint
            )
            # The standby takes over only after two missed heartbeats: let the probe see it.
            deadline = time.monotonic() + worst_case_gap(DEMO_HEARTBEAT_MSEC) + 1
            while time.monotonic() < deadline and aws.probe.summary().failovers == 0:
                time.sleep(0.05)
            time.sleep(0.2)
        roll = aws.probe.summary()
        third, third_calls = apply("apply once more: nothing to do", endpoint)

    low = min(poller.in_service) if poller.in_service else None
    replaced = any(c.resource.startswith("ec2 instance") and c.changed for c in second.changes)
    bound = worst_case_gap(DEMO_HEARTBEAT_MSEC)
    ok = (
        first.pending
        and replaced
        and not third.pending
        and third_calls["mutating"] == 0
        and low is not None
        and low >= 1
        and roll.race_losses == 0
        and roll.failovers <= 1
        and roll.longest_gap <= bound
    )
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(roll.exit_reasons.items()))
    err(
        f"\nAvailability of the roll, as a peer saw it ({roll.samples} samples): the longest "
        f"interval without an active transactor was {roll.longest_gap:.2f} s (total "
        f"{roll.total_gap:.2f} s; Datomic's bound 2 x heartbeat + 1 s = {bound:.1f} s), "
        f"{roll.failovers} failover(s), {roll.exits} transactor exit(s)"
        f"{f' ({reasons})' if reasons else ''}, {roll.race_losses} lost takeover race(s)."
    )
    err(
        f"InService floor: during the update the group never had fewer than {low} "
        f"transactor(s) in service ({len(poller.samples)} samples); the no-op run made "
        f"{third_calls['total']} AWS calls, none of them writes. "
        f"{time.monotonic() - started:.1f} s in all."
    )
    err(
        f"Done. The files are in {folder} (git init there to see the diffs); the embedded AWS is gone."
        if ok
        else "\nThe demo did not converge: see the output above."
    )
    return 0 if ok else 1
