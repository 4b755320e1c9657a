"""Runs a moto server on 127.0.0.1 in its own process and prints its port.

The CLI tests start this as a subprocess so that the server never shares a process with the
in-process `mock_aws` tests. Exits when its standard input closes.
"""

from __future__ import annotations

import sys

from moto.server import ThreadedMotoServer

from datomic_aws.sandbox_moto import patch_moto
from tests import moto_stack_tags


def main() -> None:
    # The corrections that make moto behave like AWS where our flows depend on it (each is
    # documented in datomic_aws/sandbox_moto.py); the demo's embedded AWS applies the same.
    patch_moto()
    # AWS applies an UPDATE change set's tags to the stack; moto does not (see the module).
    moto_stack_tags.patch()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _host, port = server.get_host_and_port()
    print(port, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
