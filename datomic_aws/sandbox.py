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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

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
    text = path.read_text(encoding="latin-1")
    text = text.replace("# aws-s3-log-bucket-id=", "aws-s3-log-bucket-id=", 1)
    path.write_text(text, encoding="latin-1")


def run_demo(directory: str | None, *, out: Say, err: Say, json_output: bool = False) -> int:
    from datomic_aws import render
    from datomic_aws.ensure import ensure_transactor

    folder = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="datomic-aws-demo-"))
    files = copy_samples(folder)
    transactor = files["transactor.properties"]
    _enable_demo_options(transactor)

    def step(title: str, run: Callable[[AwsContext], Result], ctx: AwsContext) -> Result:
        err(f"\n== {title}")
        result = run(ctx)
        calls = ctx.call_log.as_dict()
        out(render.to_json(result, calls) if json_output else render.to_text(result).rstrip("\n"))
        err(f"   AWS calls: {calls['total']} ({calls['mutating']} mutating)")
        return result

    with embedded_aws() as endpoint:
        err(f"Embedded AWS (moto) listening on {endpoint}; demo files in {folder}")
        first = step(
            "ensure-transactor (first run: creates everything, writes the names back)",
            lambda c: ensure_transactor(c, transactor),
            AwsContext(endpoint_url=endpoint),
        )
        second_ctx = AwsContext(endpoint_url=endpoint)
        second = step(
            "ensure-transactor again (idempotent: nothing to do, file untouched)",
            lambda c: ensure_transactor(c, transactor),
            second_ctx,
        )
    ok = first.pending and not second.pending and second_ctx.call_log.mutating() == {}
    err(
        f"\nDone. The files are in {folder}; the embedded AWS is gone."
        if ok
        else "\nThe demo did not converge: see the output above."
    )
    return 0 if ok else 1
