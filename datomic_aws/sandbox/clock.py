"""The embedded world's clock (`CLOCK`), which every emulated transactor and the probe read.

Owns `WorldClock`: wall time minus every moment the whole process was frozen. No AWS.
"""

from __future__ import annotations

import threading
import time

from datomic_aws.app.signals import background_thread


class WorldClock:
    """The embedded world's clock: wall time, minus every moment the whole process was frozen.

    The sandbox runs moto, the transactors and the probe in one Python process on a shared
    machine; moto sometimes holds the interpreter for a second or more (loading its data files),
    and the machine may not schedule the process at all. Real transactors on their own machines
    would not stall with it, so a frozen moment must count neither as missed heartbeats nor as an
    outage: a thread notices each stall (a 10 ms sleep that took much longer) and this clock
    leaves it out. Every emulated transactor and the probe read this one clock (as NTP would
    give machines one time).
    """

    _STEP = 0.01
    _NOTICED = 0.2  # a late wake-up beyond this is a stall (shorter ones are thread scheduling)

    def __init__(self) -> None:
        self._stalled = 0.0
        self._last = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def now(self) -> float:
        """Never goes back: a stall is noticed only once it is over."""
        with self._lock:
            self._last = max(self._last, time.time() - self._stalled)
            return self._last

    def start(self) -> None:
        if self._thread is None:
            self._stop = threading.Event()
            self._thread = background_thread(self._run, name="world-clock")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self._STEP):
            current = time.monotonic()
            late = current - last - self._STEP
            if late > self._NOTICED:
                with self._lock:
                    self._stalled += late
            last = current


CLOCK = WorldClock()
