"""One run at a time per stack, across folders and machines: a lock held in AWS.

Owns the stack lock: an SSM String parameter `/datomic-aws/locks/<stack>` in the stack's region. Its
value names the owner (user@host, pid, command, since) and an expiry. Why SSM: `PutParameter` with
`Overwrite=False` is an atomic create-if-absent (a second creator gets `ParameterAlreadyExists`),
the operators' credentials already use SSM for the transactor configuration, and the parameter
costs nothing and needs no resource of its own (a DynamoDB lock table would have to be created,
and the Datomic table is Datomic's storage, never ours to write into).

- Lazy: the lock is taken right before the first write of a stack command (a change set created
  or executed, a template uploaded, a group's size changed), never for a dry run, so a no-op run
  makes no mutating call. The write that needed it is not sent: the command starts again with the
  lock held and decides again from what AWS says now, since another run may have changed the
  stack between the first reads and the lock.
- Waiting: a second run waits up to `--lock-timeout`, saying who holds the lock, then refuses
  (exit 1) naming the holder.
- A holder known dead (same machine and process namespace, its pid gone: a `kill -9`) is taken
  over at once.
- Expiry: the holder refreshes the expiry (`TTL`) during its long waits, at most every
  `REFRESH_EVERY` seconds of its AWS calls. A lock whose run died expires and is taken over; the
  takeover goes through a second create-if-absent parameter (`<lock>.takeover`) so that of two
  runs finding the same expired lock only one overwrites it, after checking it is still the
  expired one. A holder that finds its lock taken over stops before its next write.
- Released (deleted) at the end of the command, also after a failure or an interrupt; a kill
  leaves it, and the next stack command removes it (one read of the lock per command, for that).

The credentials need `ssm:PutParameter`, `ssm:GetParameter` and `ssm:DeleteParameter` on
`arn:<partition>:ssm:<region>:<account>:parameter/datomic-aws/locks/*`.

It must not print (progress goes through `on_event`) and must not decide anything about the stack.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from botocore.exceptions import ClientError

from datomic_aws import names
from datomic_aws.aws import AwsContext
from datomic_aws.aws_errors import has_code, translate
from datomic_aws.errors import DatomicAwsError, Interrupted, LockedError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

PREFIX = names.LOCK_PREFIX
TTL = 600.0
REFRESH_EVERY = 60.0
POLL = 2.0
# How long a takeover marker may stand before it counts as left by a run that died mid-takeover.
MARKER_TTL = 60.0

# The tokens of the locks this process is taking or holding now: a lock that names this process but
# none of these was left by an earlier run in it that was cut short (a library caller's), and is
# dead for sure.
_LIVE: set[str] = set()

P = ParamSpec("P")
R = TypeVar("R")


def parameter_name(stack: str) -> str:
    return names.stack_lock(stack)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _machine() -> str:
    """This machine and process namespace, when they can be told apart for sure (Linux: the boot
    id and the pid namespace; containers on one host share the boot id, not the namespace), else
    ''. Two runs with the same non-empty key see each other's processes."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{socket.gethostname()}/{boot}/{namespace}"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, under another user
        return False
    return False


def _me() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Owner:
    """What the lock parameter says about its holder."""

    token: str
    who: str
    pid: int
    command: str
    since: float
    expires: float
    machine: str = ""

    def describe(self) -> str:
        return (
            f"{self.who} (pid {self.pid}, {self.command or 'datomic-aws'}, "
            f"since {_iso(self.since)}, expires {_iso(self.expires)})"
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "token": self.token,
                "owner": self.who,
                "pid": self.pid,
                "command": self.command,
                "since": _iso(self.since),
                "since_epoch": self.since,
                "expires": _iso(self.expires),
                "expires_epoch": self.expires,
                "machine": self.machine,
            },
            sort_keys=True,
        )

    @staticmethod
    def from_parameter(parameter: Any) -> Owner:
        """A value we cannot read (written by hand, say) is a lock held by `unknown`, expiring
        TTL after the parameter's last change."""
        try:
            doc = json.loads(parameter["Value"])
            return Owner(
                token=str(doc["token"]),
                who=str(doc["owner"]),
                pid=int(doc["pid"]),
                command=str(doc.get("command", "")),
                since=float(doc["since_epoch"]),
                expires=float(doc["expires_epoch"]),
                machine=str(doc.get("machine", "")),
            )
        except (ValueError, KeyError, TypeError):
            changed = parameter.get("LastModifiedDate")
            at = changed.timestamp() if isinstance(changed, datetime) else 0.0
            return Owner("", "unknown", 0, "", at, at + TTL)


class _Reread(BaseException):
    """The lock was just taken in front of a write that was not sent: run the command again.

    A BaseException so that no `except Exception` cleanup on the way (a replacement's size
    restore) runs for a write that never happened."""


class _Stop(BaseException):
    """The run must stop before a write because of the lock (refused, lost, or interrupted while
    waiting for it). A BaseException for the same reason as `_Reread`: a refused run wrote
    nothing, and a run that lost the lock must not write, not even a cleanup."""

    def __init__(self, error: DatomicAwsError) -> None:
        super().__init__(str(error))
        self.error = error


class StackLock:
    def __init__(
        self,
        ssm: SSMClient,
        region: str,
        stack: str,
        *,
        command: str = "",
        timeout: float = 600.0,
        on_event: Callable[[str], None] = lambda _msg: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll: float = POLL,
        ttl: float = TTL,
        refresh_every: float = REFRESH_EVERY,
    ) -> None:
        self.ssm = ssm
        self.region = region
        self.stack = stack
        self.name = parameter_name(stack)
        self.command = command
        self.timeout = timeout
        self.say = on_event
        self.clock = clock
        self.sleep = sleep
        self.poll = poll
        self.ttl = ttl
        self.refresh_every = refresh_every
        self.token = uuid.uuid4().hex
        self.who = _me()
        self.machine = _machine()
        self.since = 0.0
        self.held = False
        self.stopped: DatomicAwsError | None = None
        self._refreshed = 0.0

    @property
    def resource(self) -> str:
        return f"stack lock {self.name} ({self.region})"

    def _record(self) -> Owner:
        now = self.clock()
        return Owner(
            self.token,
            self.who,
            os.getpid(),
            self.command,
            self.since,
            now + self.ttl,
            self.machine,
        )

    # -- SSM, with the error codes that carry meaning

    def _put(self, name: str, value: str, *, overwrite: bool) -> bool:
        """False when `overwrite` is off and the parameter exists."""
        try:
            self.ssm.put_parameter(
                Name=name,
                Value=value,
                Type="String",
                Overwrite=overwrite,
                Description="datomic-aws: one run at a time on this stack; deleted when it ends",
            )
        except ClientError as exc:
            if not overwrite and has_code(exc, "ParameterAlreadyExists"):
                return False
            raise translate(exc, self.resource) from exc
        return True

    def _get(self, name: str) -> Any | None:
        try:
            return self.ssm.get_parameter(Name=name)["Parameter"]
        except ClientError as exc:
            if has_code(exc, "ParameterNotFound"):
                return None
            raise translate(exc, self.resource) from exc

    def _delete(self, name: str) -> None:
        try:
            self.ssm.delete_parameter(Name=name)
        except ClientError as exc:
            if not has_code(exc, "ParameterNotFound"):
                raise translate(exc, self.resource) from exc

    def read(self) -> Owner | None:
        parameter = self._get(self.name)
        return None if parameter is None else Owner.from_parameter(parameter)

    # -- the lock

    def acquire(self) -> None:
        """Take the lock, waiting up to `timeout` for another run; LockedError when it does not
        come free in time."""
        deadline = time.monotonic() + self.timeout
        told = ""
        self.since = self.clock()
        _LIVE.add(self.token)
        absent = 0
        while True:
            if self._put(self.name, self._record().to_json(), overwrite=False):
                break
            holder = self.read()
            if holder is None:  # released between our two calls: try again (at once, at first)
                absent += 1
                if absent > 3:
                    if time.monotonic() >= deadline:
                        raise LockedError(
                            f"the lock of stack {self.stack} can be neither created nor read",
                            f"{self.region} {self.name}",
                            "check the parameter in SSM, then rerun",
                        )
                    self.sleep(self.poll)
                continue
            absent = 0
            if holder.token == self.token:
                break  # our own create, whose answer was lost and retried
            gone = holder.expires <= self.clock() or self._holder_is_dead(holder)
            # A takeover that loses (another run is taking over this very lock) waits like the rest.
            if gone and self._take_over(holder):
                break
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"stack {self.stack} is locked by another datomic-aws run: {holder.describe()}",
                    f"{self.region} {self.name}",
                    "wait for it to finish, or raise --lock-timeout; if that run is dead, the lock "
                    "expires on its own (or delete the parameter)",
                )
            if holder.token != told:
                self.say(f"waiting for the lock of stack {self.stack}: held by {holder.describe()}")
                told = holder.token
            self.sleep(max(0.0, min(self.poll, deadline - time.monotonic())))
        self.held = True
        self._refreshed = self.clock()

    def _holder_is_dead(self, holder: Owner) -> bool:
        """A holder on this machine whose process is gone (a kill), or an earlier run of this very
        process that was cut short, is known dead: its lock is taken over without waiting."""
        if not self.machine or holder.machine != self.machine:
            return False
        if holder.pid == os.getpid():
            return holder.token not in _LIVE
        return _process_gone(holder.pid)

    def _take_over(self, expired: Owner, *, quiet: bool = False, again: bool = True) -> bool:
        marker = f"{self.name}.takeover"
        stamp = json.dumps({"token": self.token, "expires_epoch": self.clock() + MARKER_TTL})
        if not self._put(marker, stamp, overwrite=False):
            parameter = self._get(marker)
            if parameter is not None:
                try:
                    stale = float(json.loads(parameter["Value"])["expires_epoch"]) <= self.clock()
                except (ValueError, KeyError, TypeError):
                    stale = True
                if stale:  # left by a run that died mid-takeover
                    self._delete(marker)
                    return again and self._take_over(expired, quiet=quiet, again=False)
            return False
        try:
            current = self.read()
            if current is None or current.token != expired.token:
                return False
            self._put(self.name, self._record().to_json(), overwrite=True)
            if not quiet:
                self.say(f"took over the lock of stack {self.stack} left by {expired.describe()}")
            return True
        finally:
            self._delete(marker)

    def clear_dead(self) -> None:
        """Remove a lock whose run is gone (expired, or known dead), so that a rerun after a kill
        leaves AWS as an uninterrupted run would, even when it has nothing else to write. Goes
        through the takeover, so it never removes a lock another run has just taken."""
        holder = self.read()
        if holder is None or holder.token == self.token:
            return
        if holder.expires > self.clock() and not self._holder_is_dead(holder):
            return
        _LIVE.add(self.token)
        self.since = self.clock()
        if self._take_over(holder, quiet=True):
            self.held = True
            self.release()
            self.say(f"removed the lock of stack {self.stack} left by {holder.describe()}")

    def refresh(self, *, force: bool = False) -> None:
        """Push the expiry back (at most every `refresh_every` s); a lock found taken over marks
        this run as having lost it."""
        if not self.held or (not force and self.clock() - self._refreshed < self.refresh_every):
            return
        holder = self.read()
        if holder is None or holder.token != self.token:
            self.held = False
            by = holder.describe() if holder is not None else "nobody (it was deleted)"
            self.stopped = self._lost_error(by)
            raise _Stop(self.stopped)
        self._put(self.name, self._record().to_json(), overwrite=True)
        self._refreshed = self.clock()

    def _lost_error(self, by: str) -> LockedError:
        return LockedError(
            f"this run lost the lock of stack {self.stack}; it is now held by {by}",
            f"{self.region} {self.name}",
            "a run that stalls longer than the lock's expiry loses it; rerun the command",
        )

    def release(self) -> None:
        """Delete the lock if it is still ours. A failure is said, never raised: the lock expires."""
        _LIVE.discard(self.token)
        if not self.held:
            return
        self.held = False
        try:
            holder = self.read()
            if holder is not None and holder.token == self.token:
                self._delete(self.name)
        except Exception as exc:
            self.say(
                f"could not release the lock of stack {self.stack} ({exc}); "
                f"it expires on its own in at most {self.ttl:g}s"
            )

    def gate(self, action: str, mutating: bool) -> None:
        """In front of every AWS call of the command (AwsContext.gated)."""
        if self.stopped is not None:
            if mutating:
                raise _Stop(self.stopped)
            return
        if self.held:
            self.refresh()
            return
        if not mutating:
            return
        try:
            self.acquire()
        except LockedError as exc:
            self.stopped = exc
            raise _Stop(exc) from None
        except KeyboardInterrupt:
            self.stopped = Interrupted(
                f"interrupted while waiting for the lock of stack {self.stack}",
                f"{self.region} {self.name}",
                "this run changed nothing on the stack; rerun the same command",
            )
            raise _Stop(self.stopped) from None
        self.say(
            f"took the lock of stack {self.stack} ({self.name}) before {action}; "
            "reading the stack again"
        )
        raise _Reread


def holding_stack_lock(
    fn: Callable[Concatenate[AwsContext, str, str, P], R],
) -> Callable[Concatenate[AwsContext, str, str, P], R]:
    """For a stack command `fn(ctx, region, stack, ..., dry_run=, waiting=)`: the stack lock is
    taken before its first write (the command then runs again from the start, the lock held) and
    released when it returns or fails. A dry run never takes it."""

    @functools.wraps(fn)
    def run(ctx: AwsContext, region: str, stack: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if ctx.read_only or kwargs.get("dry_run"):
            return fn(ctx, region, stack, *args, **kwargs)
        waiting = kwargs.get("waiting")
        lock = StackLock(
            ctx.client("ssm", region),
            region,
            stack,
            command=ctx.command,
            timeout=ctx.lock_timeout,
            on_event=getattr(waiting, "on_event", lambda _msg: None),
        )
        try:
            lock.clear_dead()
            while True:
                try:
                    with ctx.gated(lock.gate):
                        return fn(ctx, region, stack, *args, **kwargs)
                except _Reread:
                    # Started over with the lock held: what the caller read before is stale.
                    kwargs.pop("known", None)
                    continue
        except _Stop as stop:
            raise stop.error from None
        finally:
            lock.release()

    return run
