"""PID 1 of the fake Amazon Linux: run by tests/boot/fake_al.py as
`unshare --mount --net --pid --fork --mount-proc --kill-child python inside.py WORLD` (as root), or
with `--map-root-user` and `inside.py WORLD --user-namespace` (as anyone else).

In its private mount namespace /etc and /opt become overlays whose writes land in WORLD/etc and
WORLD/opt (the host's are never touched), and what is written to /dev/console lands in
WORLD/console. In a user namespace the host's files keep their real owner, which is unmapped there
(nobody), so even the namespace's root cannot create a file in the host's /etc/systemd/system or
change /etc/passwd: a layer of the namespace's own sits between the host's /etc and the writes
(see `own_layer`). Its private network namespace has only loopback (brought up here), so ports
9999 and 4334 are the test's own. It runs WORLD/user-data.sh as cloud-init would (root, a plain
environment, WORLD/bin first on PATH), writes its output to WORLD/boot.out / boot.err and its exit
status to WORLD/boot.rc, then stays up until WORLD/stop appears (or a minute passes): when it
exits, the kernel kills every process left in the namespace (the transactor, the role loop).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


class Console:
    """/dev/console as a character device behaves: each writer's lines append (a bind-mounted
    regular file would be truncated by every `>/dev/console`). A FIFO, read into WORLD/console."""

    def __init__(self, world: Path) -> None:
        fifo = world / ".console.fifo"
        os.mkfifo(fifo)
        self.fd = os.open(fifo, os.O_RDWR)  # never EOF, never a blocked writer
        self.out = os.open(world / "console", os.O_WRONLY | os.O_APPEND)
        self.idle = threading.Event()
        threading.Thread(target=self.copy, daemon=True).start()

    def copy(self) -> None:
        while True:
            self.idle.set()
            chunk = os.read(self.fd, 65536)
            self.idle.clear()
            os.write(self.out, chunk)

    def drain(self) -> None:
        """Until everything written so far is in WORLD/console."""
        while True:
            pending = struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0" * 4))[0]
            if pending == 0 and self.idle.is_set():
                return
            time.sleep(0.01)


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(
            f"the fake Amazon Linux cannot mount {args[-1]} (`mount {' '.join(args)}`: "
            f"{done.stderr.strip()}); in a user namespace overlayfs needs Linux 5.11 or later"
        )


# What the fake instance's commands change in place under /etc (useradd, tests/boot/fakes.py).
CHANGED_IN_PLACE = ("passwd", "group")


def own_layer(folder: str, layer: Path) -> None:
    """For a user namespace: the host's /FOLDER as the namespace's root would own it. Every
    readable folder (same mode, so new files can be created anywhere, as on the instance) and the
    files changed in place, copied; the rest is read from the host's layer underneath."""
    host = Path("/", folder)
    for path, _, _ in os.walk(host):
        target = layer / os.path.relpath(path, host)
        target.mkdir(exist_ok=True)
        target.chmod(os.stat(path).st_mode & 0o7777)
    for name in CHANGED_IN_PLACE if folder == "etc" else ():
        if (host / name).is_file():
            shutil.copy2(host / name, layer / name)


def main(world: Path, user_namespace: bool) -> int:
    loopback_up()
    for folder in ("etc", "opt"):
        upper, work = world / folder, world / f".{folder}-work"
        upper.mkdir()
        work.mkdir()
        options = f"lowerdir=/{folder},upperdir={upper},workdir={work}"
        if user_namespace:
            # Overlayfs mounted without privileges keeps its own metadata in user.* xattrs.
            layer = world / f".{folder}-own"
            own_layer(folder, layer)
            options = f"userxattr,lowerdir={layer}:/{folder},upperdir={upper},workdir={work}"
        mount("-t", "overlay", "overlay", "-o", options, f"/{folder}")
    console = Console(world)
    mount("--bind", str(world / ".console.fifo"), "/dev/console")
    env = {
        "PATH": f"{world / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TMPDIR": str(world / "tmp"),
    }
    with open(world / "boot.out", "wb") as out, open(world / "boot.err", "wb") as err:
        done = subprocess.run(
            [str(world / "user-data.sh")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            check=False,
        )
    console.drain()
    (world / "boot.rc.tmp").write_text(str(done.returncode))
    os.replace(world / "boot.rc.tmp", world / "boot.rc")
    deadline = time.monotonic() + 60
    while not (world / "stop").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:] == ["--user-namespace"]))
