"""`datomic-aws sandbox serve`: the embedded AWS as a server an operator points another shell at,
to run their own files through the whole loop before touching an account.

Owns the environment a shell exports to use it (`environment`, `exports`) and `serve`: start the
embedded AWS (`embedded.EmbeddedAws`: moto with the corrections, optionally running emulated
transactors) on 127.0.0.1 with the operator's own AWS settings masked, hand its environment to
`ready`, block until interrupted, then stop it. `run_server` is the same with the CLI's rendering;
tests/moto_server.py serves the tests through `serve` too.

It never prints (the `out` / `err` callbacks do), never listens beyond 127.0.0.1 and never talks to
real AWS: the credentials it hands out are fake, and its state lives only as long as the process.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Callable
from typing import Any

from datomic_aws.sandbox.embedded import embedded_aws

REGION = "us-east-1"
# Any non-empty pair works: moto checks no signature. Named so that nobody takes them for keys.
FAKE_KEY_ID = "sandbox-fake-key"
FAKE_SECRET = "sandbox-fake-secret"

Say = Callable[[str], None]


def environment(endpoint: str, region: str = REGION) -> dict[str, str]:
    """What a shell exports to send every AWS call of `datomic-aws` (and the AWS CLI) here."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_DEFAULT_REGION": region,
    }


def exports(env: dict[str, str]) -> str:
    """`export NAME=value` lines, shell-quoted: `eval "$(cat FILE)"` or `. FILE` reads them."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def until_interrupted() -> None:
    """Block until SIGINT or SIGTERM: the CLI's handlers raise KeyboardInterrupt in this thread.

    In steps of a second: a signal that a thread not blocking it took (one a library started; the
    tool's own block both, app/signals.py) runs its handler only when this thread next wakes."""
    while True:
        time.sleep(1)


def serve(
    *,
    ready: Callable[[dict[str, str]], None],
    port: int = 0,
    transactors: bool = False,
    settings: Any = None,
    block: Callable[[], object] = until_interrupted,
) -> None:
    """Serve the embedded AWS on 127.0.0.1:`port` (0: a free one) until `block` returns or is
    interrupted (KeyboardInterrupt: a clean stop, not an error); `ready` gets its environment."""
    with embedded_aws(transactors=transactors, settings=settings, port=port) as aws:
        ready(environment(aws.endpoint))
        # Ctrl-C or SIGTERM is the way to stop it, not an error.
        with contextlib.suppress(KeyboardInterrupt):
            block()


def run_server(port: int, transactors: bool, out: Say, err: Say, *, json_output: bool) -> int:
    """The CLI's `sandbox serve`: the environment on stdout (export lines, or one JSON object),
    what to do next on stderr; 0 once stopped."""

    def ready(env: dict[str, str]) -> None:
        out(json.dumps(env, sort_keys=True) if json_output else exports(env).rstrip())
        running = "moto with the sandbox's corrections"
        if transactors:
            running += ", an emulated transactor on every instance Auto Scaling launches"
        err(
            f"Embedded AWS ({running}) listening on {env['AWS_ENDPOINT_URL']}. In another "
            f"shell, export the environment above (or `. FILE` after `sandbox serve > FILE`), then "
            f"run the operator loop on a copy of your files. Ctrl-C or SIGTERM stops it; everything "
            f"in it is gone then."
        )

    serve(ready=ready, port=port, transactors=transactors)
    err("Embedded AWS stopped.")
    return 0
