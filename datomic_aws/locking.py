"""Advisory lock on an environment folder, so two runs never rewrite its files at once.

Owns the lock file `.datomic-aws.lock` next to the files a command rewrites: a second run waits for
the first (telling the operator whom it waits for) and gives up after a timeout. The lock is
advisory (flock): it orders datomic-aws runs, never blocks an editor or git. The lock file is
never opened through a symbolic link. No AWS.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from datomic_aws.errors import InvalidInput, LockedError, Problem

LOCK_NAME = ".datomic-aws.lock"


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def folder_lock(
    folders: Iterable[str | Path],
    *,
    timeout: float,
    on_wait: Callable[[str], None] = lambda _msg: None,
    poll: float = 0.2,
) -> Iterator[None]:
    """Hold the lock of each folder (in a fixed order, so two runs cannot deadlock)."""
    paths = sorted({Path(f).resolve() / LOCK_NAME for f in folders})
    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(_one(path, timeout=timeout, on_wait=on_wait, poll=poll))
        yield


def _open_lock(path: Path) -> int:
    """The lock file, never through a link: a planted `.datomic-aws.lock -> ~/.bashrc` would
    otherwise be truncated. A link or anything but a regular file is refused (exit 2)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise _refused(path, "is a symbolic link") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _refused(path, "is not a regular file")
    return fd


def _refused(path: Path, what: str) -> InvalidInput:
    return InvalidInput(
        [
            Problem(
                str(path),
                None,
                None,
                f"the lock file {what}: it is not followed",
                "remove it; datomic-aws creates its own lock file",
            )
        ]
    )


@contextlib.contextmanager
def _one(
    path: Path, *, timeout: float, on_wait: Callable[[str], None], poll: float
) -> Iterator[None]:
    fd = _open_lock(path)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"another datomic-aws run (pid {holder}) is working on this folder",
                        str(path.parent),
                        "wait for it to finish, or raise --lock-timeout",
                    ) from None
                if not told:
                    on_wait(f"waiting for another datomic-aws run (pid {holder}) on {path.parent}")
                    told = True
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
