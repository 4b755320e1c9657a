"""SIGINT and SIGTERM for one CLI run: cancel its AWS calls, unwind, never cut the cleanup short;
and the threads a run starts, which must leave both signals to the main thread.

Why the second: Linux delivers a signal sent to a process to any of its threads that does not block
it. Python runs its handlers in the main thread only, when that thread is awake; a signal that lands
on another thread leaves a main thread asleep (in `time.sleep`, or waiting for a future or a lock)
until it wakes for another reason. Seen: `sandbox serve` ignored a SIGTERM for 30 s, its main thread
still in its sleep. So every thread the tool starts blocks both signals (`block_interrupts`,
`background_thread`, `worker_pool`), and the kernel must deliver them to the main thread.

It must not print: the line a repeated signal shows goes through the `say` callback the CLI gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from datomic_aws.aws import AwsContext


def block_interrupts() -> None:
    """In a thread the tool starts, first thing: SIGINT and SIGTERM go to the main thread instead
    (threads this one starts inherit the mask). Where there are no POSIX signal masks, nothing."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def background_thread(
    target: Callable[..., object], *args: object, name: str | None = None
) -> threading.Thread:
    """A daemon thread that leaves SIGINT and SIGTERM to the main thread (not started)."""
    import threading

    def run() -> None:
        block_interrupts()
        target(*args)

    return threading.Thread(target=run, name=name, daemon=True)


def worker_pool(max_workers: int, *, thread_name_prefix: str = "") -> ThreadPoolExecutor:
    """A thread pool whose threads leave SIGINT and SIGTERM to the main thread."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(
        max_workers=max_workers,
        thread_name_prefix=thread_name_prefix,
        initializer=block_interrupts,
    )


def _on_interrupt(
    contexts: Callable[[], Iterable[AwsContext]], say: Callable[[], None]
) -> Callable[[int, Any], None]:
    """SIGINT and SIGTERM (what CI sends to cancel a job) alike: the first one cancels the run's
    AWS calls in other threads and raises KeyboardInterrupt in the main thread, whose unwinding
    restores what must be restored (a raised group's sizes, a half-written file, the locks);
    later ones only say so, so that the cleanup itself is not cut short."""
    seen: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        seen.append(signum)
        for aws in contexts():
            aws.cancel()
        if len(seen) == 1:
            raise KeyboardInterrupt
        say()

    return handler


@contextlib.contextmanager
def interrupt_handlers(
    contexts: Callable[[], Iterable[AwsContext]], say: Callable[[], None]
) -> Iterator[None]:
    """While the block runs: both signals go to the handler above; restored after."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    handler = _on_interrupt(contexts, say)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    # A signal the parent set to be ignored (nohup, a background job) stays ignored.
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, handler)
    if previous[signal.SIGTERM] == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
