"""The fake Amazon Linux: runs a rendered boot script (the user data, unchanged) with real bash.

A world is a folder: the stubbed commands (tests/boot/fakes.py) in bin/, the SSM parameter's value,
a fake Datomic release zip (tests/boot/fake_datomic.py behind Datomic's bin/transactor argument
handling), and after the run the instance's /etc and /opt writes (etc/, opt/), its console, its
stdout/stderr and every command call (state/*.calls). The script runs in private mount, network and
PID namespaces (tests/boot/inside.py), so its absolute paths, ports and processes are its own and
nothing outlives the test. Needs util-linux's unshare, and root (CI) or, for anyone else, a user
namespace in which they are root (`unshare --map-root-user`: Linux 5.11 or later for overlayfs,
unprivileged user namespaces allowed). There only root is mapped: the instance's chown and install
to the datomic user are recorded instead of done (tests/boot/fakes.py), and `owner` reads both.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.boot import fake_datomic, fakes

HERE = Path(__file__).resolve().parent
INSTANCE_ID = fakes.INSTANCE_ID
REGION = fakes.REGION


def datomic_zip(version: str) -> bytes:
    """A release laid out as Datomic's: datomic-pro-VERSION/bin/transactor, executable."""
    root = f"datomic-pro-{version}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        transactor = zipfile.ZipInfo(f"{root}/bin/transactor")
        transactor.external_attr = 0o100755 << 16
        z.writestr(transactor, fake_datomic.TRANSACTOR.replace("@PYTHON@", sys.executable))
        library = zipfile.ZipInfo(f"{root}/lib/fake_datomic.py")
        library.external_attr = 0o100644 << 16
        z.writestr(library, (HERE / "fake_datomic.py").read_text(encoding="utf-8"))
        z.writestr(f"{root}/LICENSE", "Apache-2.0 (fake)\n")
    return buffer.getvalue()


NEEDS = (
    "the fake Amazon Linux (tests/boot) needs util-linux's unshare, and root or user namespaces "
    "open to unprivileged users (user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, "
    "kernel.apparmor_restrict_unprivileged_userns=0; overlayfs in them: Linux 5.11 or later)"
)
NAMESPACES = ["--mount", "--net", "--pid", "--fork", "--mount-proc"]
_usable: dict[str, str] = {}  # unshare's path -> "" (usable) or why not


def unshare_command() -> list[str]:
    """`unshare` and the namespaces of the fake Amazon Linux; as root, as CI runs it, no user
    namespace. Fails the test with what is needed (never a skip) when neither works."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail(f"{NEEDS}; there is no unshare on PATH", pytrace=False)
    if os.geteuid() == 0:
        return [unshare, *NAMESPACES]
    command = [unshare, "--map-root-user", *NAMESPACES]
    if unshare not in _usable:
        try:
            done = subprocess.run(
                [*command, "true"], capture_output=True, text=True, timeout=30, check=False
            )
            _usable[unshare] = "" if done.returncode == 0 else done.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            _usable[unshare] = str(e)
    if _usable[unshare]:
        pytest.fail(
            f"{NEEDS}; as uid {os.geteuid()}, `{' '.join(command)} true` failed: "
            f"{_usable[unshare]}",
            pytrace=False,
        )
    return command


class FakeAmazonLinux:
    def __init__(self, world: Path, script: str, parameter: str, release: bytes) -> None:
        self.world = world
        (world / "state").mkdir(parents=True)
        (world / "tmp").mkdir()
        (world / "console").write_bytes(b"")
        (world / "parameter.txt").write_text(parameter, encoding="utf-8")
        (world / "datomic.zip").write_bytes(release)
        user_data = world / "user-data.sh"
        user_data.write_text(script, encoding="utf-8")
        user_data.chmod(0o700)
        self.command = unshare_command()
        self.user_namespace = "--map-root-user" in self.command
        # Who the instance's root is on this machine: the files it writes are theirs.
        self.root_uid = os.geteuid()
        fakes.install(world, self.user_namespace)
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.boot_seconds = 0.0

    def __enter__(self) -> FakeAmazonLinux:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                *self.command,
                "--kill-child",
                sys.executable,
                "-S",
                str(HERE / "inside.py"),
                str(self.world),
                *(["--user-namespace"] if self.user_namespace else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        (self.world / "stop").touch()
        assert self.process is not None
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    # ------------------------------------------------------------------------------ waiting

    def boot(self, timeout: float = 60) -> int:
        """Waits for the boot script to end; its exit status."""
        rc = self.world / "boot.rc"
        self.wait_for(rc.exists, timeout, "the boot script to end")
        self.boot_seconds = time.monotonic() - self.started
        return int(rc.read_text())

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process is not None
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                raise AssertionError(f"the fake Amazon Linux ended early: {out}\n{self.printed()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.printed()}")
            time.sleep(0.05)

    # ------------------------------------------------------------------------------ reading

    def calls(self, command: str) -> list[list[str]]:
        path = self.world / "state" / f"{command}.calls"
        if not path.exists():
            return []
        return [line.split("\x1f")[:-1] for line in path.read_text().splitlines()]

    def aws(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.calls("aws") if tuple(c[: len(prefix)]) == prefix]

    def lifecycle_results(self) -> list[str]:
        return [
            c[c.index("--lifecycle-action-result") + 1]
            for c in self.aws("autoscaling", "complete-lifecycle-action")
        ]

    def powered_off(self) -> bool:
        return any("poweroff" in c for c in self.calls("systemctl")) or bool(self.calls("shutdown"))

    def file(self, path: str) -> Path:
        """Where the instance's /etc/... or /opt/... was written."""
        return self.world / path.lstrip("/")

    def owner(self, path: str) -> str:
        """The user owning the instance's /etc/... or /opt/... (by name, as in its /etc/passwd).
        In a user namespace the last chown or install naming the path, or a folder above it
        recursively, or else root (the only user mapped there); a file renamed after its chown
        is not followed there."""
        target = "/" + path.lstrip("/")
        ledger = self.world / "state" / "owners"
        if self.user_namespace and ledger.exists():
            for line in reversed(ledger.read_text().splitlines()):
                named, owner, recursive = line.split("\x1f")
                if target == named or (recursive and target.startswith(named.rstrip("/") + "/")):
                    return owner.partition(":")[0]
        uid = self.file(path).stat().st_uid
        if uid == self.root_uid:
            return "root"
        passwd = self.file("/etc/passwd")
        entries = [e.split(":") for e in passwd.read_text().splitlines()] if passwd.exists() else []
        # The last: the instance's useradd appends to the machine's own users.
        names = [fields[0] for fields in entries if len(fields) > 2 and fields[2] == str(uid)]
        return names[-1] if names else str(uid)

    def launch(self) -> dict[str, Any]:
        record = self.file("/opt/datomic/release/log/launch.json")
        self.wait_for(record.exists, 20, "the transactor to start")
        return dict(json.loads(record.read_text()))

    def journal(self, unit: str) -> str:
        path = self.world / "state" / "units" / f"{unit}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def printed(self) -> str:
        """Everything the script and its helper printed: stdout, stderr, console, and the journal
        of the role unit (the transactor's own journal is Datomic's output, appended last)."""
        parts = []
        for name in ("boot.out", "boot.err", "console"):
            path = self.world / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')}")
        for unit in ("datomic-role.service", "datomic-transactor.service"):
            parts.append(f"--- journal of {unit}\n{self.journal(unit)}")
        return "\n".join(parts)
