"""The demo: the operator's loop run against an embedded AWS (moto) on 127.0.0.1.

Owns starting and stopping the embedded moto server, the throw-away credentials it needs, copying
the packaged samples into the demo folder, and narrating each step through the `out` / `err`
callbacks. It never talks to real AWS: every client it builds points at the local server, and the
operator's own credentials are masked for the duration.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from datomic_aws.aws import AwsContext
from datomic_aws.changes import Result
from datomic_aws.errors import UsageError

Say = Callable[[str], None]
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_SESSION_TOKEN": "demo",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_MASKED = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


@contextmanager
def embedded_aws() -> Iterator[str]:
    """Start moto on 127.0.0.1 (never 0.0.0.0) and yield its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise UsageError(
            "the demo needs moto, which is not installed",
            "",
            "pip install 'datomic-aws[sandbox]'",
        ) from exc
    saved = {k: os.environ.get(k) for k in (*_FAKE_ENV, *_MASKED)}
    with tempfile.TemporaryDirectory(prefix="datomic-aws-demo-home-") as home:
        os.environ.update(_FAKE_ENV)
        for key in _MASKED:
            os.environ.pop(key, None)
        # No stray ~/.aws profile can leak into the sandbox.
        os.environ["AWS_CONFIG_FILE"] = str(Path(home) / "config")
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(Path(home) / "credentials")
        # werkzeug logs every request to stderr, which would drown the demo's narration.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        from datomic_aws.sandbox_moto import patch_moto

        patch_moto()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


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
    """The demo turns on the optional log bucket so that every resource kind is shown."""
    _edit(path, "# aws-s3-log-bucket-id=", "aws-s3-log-bucket-id=")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="latin-1")
    if old not in text:
        raise UsageError(f"the demo sample has no {old!r}", str(path), "please report this")
    path.write_text(text.replace(old, new, 1), encoding="latin-1")


def _instance_type(path: Path) -> str:
    from datomic_aws.properties import PropertiesText

    return PropertiesText.load(path).get("aws-instance-type") or ""


class InServicePoller:
    """Counts the group's InService instances every few milliseconds while an update runs."""

    def __init__(self, endpoint: str, region: str, group: str) -> None:
        import boto3

        self._client = boto3.client("autoscaling", region_name=region, endpoint_url=endpoint)
        self._group = group
        self._stop = threading.Event()
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            groups = self._client.describe_auto_scaling_groups(AutoScalingGroupNames=[self._group])[
                "AutoScalingGroups"
            ]
            if groups:
                self.samples.append(
                    sum(1 for i in groups[0]["Instances"] if i["LifecycleState"] == "InService")
                )
            self._stop.wait(0.02)

    def __enter__(self) -> InServicePoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def run_demo(directory: str | None, *, out: Say, err: Say, json_output: bool = False) -> int:
    from datomic_aws import names, render
    from datomic_aws.deploy import apply_dir
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

    with embedded_aws() as endpoint:
        err(f"Embedded AWS (moto) listening on {endpoint}; demo folder {folder}")
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
        with InServicePoller(endpoint, region, names.autoscaling_group(system)) as poller:
            second, _ = apply(
                "apply again: update the stack, surge-replace the transactor", endpoint
            )
        third, third_calls = apply("apply once more: nothing to do", endpoint)

    low = min(poller.samples) if poller.samples else None
    replaced = any(c.resource.startswith("ec2 instance") and c.changed for c in second.changes)
    ok = (
        first.pending
        and replaced
        and not third.pending
        and third_calls["mutating"] == 0
        and low is not None
        and low >= 1
    )
    err(
        f"\nDuring the update the group never had fewer than {low} transactor(s) in service "
        f"({len(poller.samples)} samples); the no-op run made {third_calls['total']} AWS calls, "
        f"none of them writes. {time.monotonic() - started:.1f} s in all."
    )
    err(
        f"Done. The files are in {folder} (git init there to see the diffs); the embedded AWS is gone."
        if ok
        else "\nThe demo did not converge: see the output above."
    )
    return 0 if ok else 1
