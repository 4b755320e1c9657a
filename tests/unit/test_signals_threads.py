"""SIGINT and SIGTERM reach the main thread, whatever thread the kernel picks (app/signals.py).

The claim the code rests on, reproduced: a signal taken by another thread runs its Python handler
only when the main thread wakes; the main thread asleep stays asleep. Each case runs in its own
Python process, so that no handler of the test process is touched.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from datomic_aws.app.signals import background_thread, worker_pool

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def _blocked_here() -> set[int]:
    return {int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])}


def test_the_tools_threads_block_both_signals() -> None:
    with worker_pool(2) as pool:
        assert pool.submit(_blocked_here).result() >= {signal.SIGINT, signal.SIGTERM}
    seen: list[set[int]] = []
    thread = background_thread(lambda: seen.append(_blocked_here()), name="t")
    thread.start()
    thread.join(10)
    assert thread.daemon and seen and seen[0] >= {signal.SIGINT, signal.SIGTERM}
    # The main thread keeps receiving them.
    assert not _blocked_here() & {signal.SIGINT, signal.SIGTERM}
    assert threading.current_thread() is threading.main_thread()


# A SIGTERM taken by a worker thread (sent to that thread, as the kernel may route a process's
# signal), a second after the main thread fell asleep for 4 s: its handler waits for the main
# thread to wake.
CLAIM = """
import signal, threading, time
ran = []
signal.signal(signal.SIGTERM, lambda *_: ran.append(time.monotonic()))
def worker():
    time.sleep(1)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    time.sleep(30)
start = time.monotonic()
threading.Thread(target=worker, daemon=True).start()
time.sleep(4)
print(len(ran), time.monotonic() - start >= 4, ran[0] - start >= 4)
"""


def test_a_signal_a_worker_takes_leaves_the_main_thread_asleep() -> None:
    out = _python(CLAIM)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True", "True"]


# serve's wait: a SIGTERM taken by a thread that does not block it still stops it, within a step.
SERVE = """
import signal, threading, time
from datomic_aws.sandbox.serve import until_interrupted
def stop(*_):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, stop)
def worker():
    time.sleep(0.5)  # the main thread is in its wait by then
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
try:
    threading.Thread(target=worker, daemon=True).start()
    until_interrupted()
except KeyboardInterrupt:
    print("stopped")
"""


def test_serve_stops_on_a_signal_another_thread_took() -> None:
    out = _python(SERVE, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "stopped"
