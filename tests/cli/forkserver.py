"""A fork server for the CLI runs of the end-to-end tests: each run is its own `datomic-aws`
process, forked from one that has already imported the package.

Why: the suite starts the CLI several hundred times, and each start spent most of its CPU on
Python's start and the imports (about 0.35 s of a no-op apply's 0.65 s), which is the same work
every time. multiprocessing's `forkserver` does the same for the same reason.

What a run is: the server (`python tests/cli/forkserver.py SOCKET`, one per test worker) imports
`datomic_aws.cli` and the modules its commands import lazily, nothing else (never moto, never a
botocore session), then waits. For each run it receives the arguments, the environment, the folder
and three open files (standard input, output and error), forks, and the child takes them: the
files become fds 0, 1 and 2, the environment replaces its own, the folder becomes its working
directory, the signal dispositions are Python's defaults, and it calls `datomic_aws.cli.main`, then
exits as the interpreter does (atexit handlers, thread joins). So a run has its own process, pid,
environment, folder, files and exit status, as with `subprocess.run`; only the imports were done
before. Nothing in the package reads the environment at import time (a test checks it by running
the same commands both ways), and each process's random state is reseeded after the fork by
Python itself.

What it is not for: a test that depends on how the process starts (the console script, the
interpreter's options, signals sent from a terminal, a shadowed moto) starts it with `subprocess`,
as do the runs whose environment carries a `PYTHON*` or locale variable the server was not
started with (tests/cli/fixtures.py decides). `DATOMIC_AWS_TEST_FRESH=1` starts every run fresh.

Protocol (one Unix-socket connection per run): the client sends one JSON line with the three fds
attached (SCM_RIGHTS); the server answers `{"pid": N}` and, when the child ends, `{"status": S}`
(a wait status). The server stops when its standard input closes; a child of a stopped server
still runs to its end.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import locale
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

# The modules the commands import when they run (the CLI defers them for a fast --help).
PRELOAD = (
    "datomic_aws.cli",
    "datomic_aws.app.apply",
    "datomic_aws.app.ensure_cf",
    "datomic_aws.app.ensure_transactor",
    "datomic_aws.app.stacks",
    "datomic_aws.app.status",
    "datomic_aws.app.template",
    "datomic_aws.app.fleet",
    "datomic_aws.app.argv",
    "datomic_aws.app.completion",
    "datomic_aws.app.signals",
    "datomic_aws.app.failures",
    "datomic_aws.aws_models",
    "datomic_aws.boot",
    "datomic_aws.locking",
    "datomic_aws.render",
    "datomic_aws.schemas",
    "botocore.session",
    "botocore.client",
    "encodings.idna",  # botocore's host names
)

REPO = Path(__file__).resolve().parents[2]


# --- the server ---------------------------------------------------------------------------------


def serve(path: str) -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    if "moto" in sys.modules:  # the package must never pull it in (tests mix no moto and a server)
        raise SystemExit("forkserver: moto was imported by the preload")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    print("ready", flush=True)
    _loop(listener, wake_r)


def _loop(listener: socket.socket, wake_r: int) -> None:
    import selectors

    waiting: dict[int, socket.socket] = {}
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    sel.register(sys.stdin, selectors.EVENT_READ, "stop")
    while True:
        for key, _ in sel.select():
            if key.data == "stop" and not sys.stdin.buffer.read1(4096):
                return
            if key.data == "child":
                os.read(wake_r, 4096)
            if key.data == "accept":
                conn, _ = listener.accept()
                pid = _fork_run(conn, listener, wake_r)
                if pid is None:
                    conn.close()
                else:
                    waiting[pid] = conn
            _reap(waiting)


def _reap(waiting: dict[int, socket.socket]) -> None:
    while waiting:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = waiting.pop(pid, None)
        if conn is not None:
            # A test that went away (a timeout) has nobody to tell.
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"status": status}).encode() + b"\n")
            conn.close()


def _fork_run(conn: socket.socket, listener: socket.socket, wake_r: int) -> int | None:
    line, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
    while not line.endswith(b"\n"):
        more = conn.recv(1 << 20)
        if not more:
            return None
        line += more
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        listener.close()
        conn.close()
        os.close(wake_r)
        _child(request, fds)  # never returns
    for fd in fds:
        os.close(fd)
    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    return pid


def _child(request: dict[str, Any], fds: list[int]) -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["datomic-aws", *request["args"]]
    from datomic_aws.cli import main

    # main() ends with sys.exit(code): the SystemExit unwinds to the top of this process, which
    # then exits as any Python process does.
    main()
    raise SystemExit(0)


# --- the client ---------------------------------------------------------------------------------


def _text(file: IO[bytes]) -> str:
    """What `subprocess.run(text=True)` makes of a stream: the locale's encoding, universal
    newlines."""
    file.seek(0)
    text = file.read().decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


class ForkServer:
    """One server per test worker; `run` is `subprocess.run` for `datomic-aws ARGS`."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="datomic-aws-fork-")
        self.path = os.path.join(self._dir.name, "s")
        self.env = dict(os.environ)
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the CLI fork server did not start")

    def run(self, args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
        with (
            open(os.devnull, "rb") as stdin,
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn,
        ):
            conn.connect(self.path)
            request = {"args": args, "env": env, "cwd": os.getcwd()}
            socket.send_fds(
                conn,
                [json.dumps(request).encode() + b"\n"],
                [stdin.fileno(), out.fileno(), err.fileno()],
            )
            replies = conn.makefile("rb")
            pid = json.loads(replies.readline())["pid"]
            conn.settimeout(timeout)
            try:
                status = json.loads(replies.readline())["status"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(["datomic-aws", *args], timeout) from None
            return os.waitstatus_to_exitcode(status), _text(out), _text(err)

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=10)
        self._dir.cleanup()


if __name__ == "__main__":
    # Not this folder on the path, which a `datomic-aws` process would not have: the package comes
    # from the environment, as for `python -m datomic_aws`.
    sys.path.pop(0)
    serve(sys.argv[1])
