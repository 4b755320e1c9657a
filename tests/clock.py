"""A clock and sleep for code that waits (injected as `clock` and `sleep`): time moves only when
the code sleeps, and every sleep is recorded, so a test of a back-off never really waits."""

from __future__ import annotations


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
