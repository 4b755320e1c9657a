"""A fake Datomic Pro transactor that behaves as reference §10 says, for the fake Amazon Linux.

Packed into the fake release zip as lib/fake_datomic.py and started by its bin/transactor (which
handles arguments as Datomic's does: -Xms/-Xmx from the arguments, every other argument appended to
$JAVA_OPTS from the environment) with the JVM's command line: `[jvm args...] -- properties-file`.

- Records its JVM arguments, the arguments and the JAVA_OPTS bin/transactor received, in
  log/launch.json (the release's log/ folder).
- Serves GET /health (204) on ping-host:ping-port when the properties set both, before it knows
  its role, as Datomic does: it answers for an active and for a standby.
- Active: binds `port` (on loopback: the namespace has no other address). Standby: never binds it;
  with `fake-takeover-after-seconds` it becomes active after that long.
- Logs its role to log/transactor.log (Datomic's log files), not to stdout.
- `fake-behaviour`: active (default), standby, die (exits at start), silent (no /health ever).
  `fake-exit-after-seconds`: exits ("Heartbeat failed") after that long.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path


def properties(path: str) -> dict[str, str]:
    values = {}
    for line in Path(path).read_text(encoding="latin-1").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        for i, ch in enumerate(line):
            if ch in "=: \t":
                key, rest = line[:i], line[i:].lstrip(" \t")
                if rest[:1] in ("=", ":"):
                    rest = rest[1:].lstrip(" \t")
                values[key] = rest
                break
    return values


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def log(line: str) -> None:
    with open("log/transactor.log", "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%H:%M:%S')} INFO datomic.lifecycle - {line}\n")


def main(argv: list[str]) -> int:
    split = argv.index("--")
    jvm_args, (props_file,) = argv[1:split], argv[split + 1 :]
    Path("log").mkdir(exist_ok=True)
    Path("log/launch.json").write_text(
        json.dumps(
            {
                "jvm_args": jvm_args,
                "transactor_args": os.environ.get("FAKE_RAW_ARGS", ""),
                "java_opts_env": os.environ.get("FAKE_RAW_JAVA_OPTS"),
                "properties": props_file,
            }
        )
    )
    props = properties(props_file)
    behaviour = props.get("fake-behaviour", "active")
    if behaviour == "die":
        print("Critical failure, cannot continue: fake transactor told to die", file=sys.stderr)
        return 1
    if behaviour != "silent" and "ping-host" in props and "ping-port" in props:
        server = http.server.ThreadingHTTPServer(
            (props["ping-host"], int(props["ping-port"])), Health
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"System started datomic:{props.get('protocol', 'ddb')}://fake", flush=True)

    listener: socket.socket | None = None

    def become_active() -> None:
        nonlocal listener
        listener = socket.create_server(("127.0.0.1", int(props.get("port", "4334"))))
        log(":transactor/active, bound port " + props.get("port", "4334"))

    if behaviour == "standby":
        log(":transactor/standby")
    else:
        become_active()
    takeover = props.get("fake-takeover-after-seconds")
    exit_after = props.get("fake-exit-after-seconds")
    started = time.monotonic()
    while True:
        time.sleep(0.05)
        elapsed = time.monotonic() - started
        if takeover and listener is None and elapsed >= float(takeover):
            become_active()
        if exit_after and elapsed >= float(exit_after):
            print("Heartbeat failed", file=sys.stderr)
            return 1


TRANSACTOR = """#!/bin/bash
# Fake Datomic Pro bin/transactor: Datomic's own argument handling (reference §10), then the fake
# "JVM" (lib/fake_datomic.py) with the command line java would get.
cd "$(dirname "$0")/.." || exit 1
export FAKE_RAW_ARGS="$*" FAKE_RAW_JAVA_OPTS="${JAVA_OPTS-}"
XMX=
XMS=
while [ $# -gt 1 ]; do
  case "$1" in
    -Xmx*) XMX=$1 ;;
    -Xms*) XMS=$1 ;;
    *) JAVA_OPTS="${JAVA_OPTS-} $1" ;;
  esac
  shift
done
if [ -z "$XMX" ]; then XMX=-Xmx1g; fi
if [ -z "$XMS" ]; then XMS=-Xms1g; fi
if [ -z "${JAVA_OPTS-}" ]; then JAVA_OPTS='-XX:+UseG1GC -XX:MaxGCPauseMillis=50'; fi
echo "Launching with Java options -server $XMS $XMX $JAVA_OPTS"
# shellcheck disable=SC2086
exec @PYTHON@ -S lib/fake_datomic.py -server $XMX $XMS $JAVA_OPTS -- "$@"
"""


if __name__ == "__main__":
    sys.exit(main(sys.argv))
