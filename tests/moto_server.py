"""Runs the embedded AWS (moto with the sandbox corrections) on 127.0.0.1 in its own process and
prints its port: `datomic-aws sandbox serve`'s server (datomic_aws/sandbox/serve.py), for the tests.

The CLI tests start this as a subprocess so that the server never shares a process with the
in-process `mock_aws` tests. `--transactors` runs an emulated transactor on every instance its Auto
Scaling launches (datomic_aws/sandbox). Exits when its standard input closes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from datomic_aws.sandbox.serve import serve
from datomic_aws.sandbox.transactors import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactors", action="store_true")
    parser.add_argument("--boot-seconds", type=float, default=0.2)
    args = parser.parse_args()
    # No test needs moto's ~2,600 default AMIs, which every reset would load again (see
    # tests/conftest.py); set before the first EC2 backend is made.
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    settings = Settings(boot_seconds=args.boot_seconds) if args.transactors else None
    if args.transactors:
        # The emulated transactors keep Datomic's heartbeat timing in threads of this process; on
        # a loaded 2-core machine the test workers and CLI processes would starve them, and an
        # active that misses two heartbeats is taken over (reference §10) as it would be on a
        # frozen machine. Served first where the OS lets us (root, as in CI); as it is otherwise.
        with contextlib.suppress(OSError):
            os.nice(-10)
    # The embedded AWS of `datomic-aws sandbox serve` (and of the demo): moto with the corrections
    # that make it behave like AWS where our flows depend on it (each documented in
    # datomic_aws/sandbox/moto_fixes/), served until the tests close our standard input.
    serve(
        ready=lambda env: print(env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1], flush=True),
        transactors=args.transactors,
        settings=settings,
        block=sys.stdin.read,
    )


if __name__ == "__main__":
    main()
