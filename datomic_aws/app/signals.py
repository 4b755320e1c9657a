"""SIGINT and SIGTERM for one CLI run: cancel its AWS calls, unwind, never cut the cleanup short.

It must not print: the line a repeated signal shows goes through the `say` callback the CLI gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datomic_aws.aws import AwsContext


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
