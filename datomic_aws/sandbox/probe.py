"""Watching the sandbox from the outside: the probe (a peer) and the InService poller.

`Probe` plays a Datomic peer against the emulated transactors: every few tens of milliseconds it
reads each system's heartbeat from storage (as a peer finds the active's location there) and
"connects" to that transactor (listening and its instance running). It records a timeline of the
intervals with no live active transactor, failovers (the live active changed) and transactor exits
(with their reason), and sums them up. `InServicePoller` counts a group's InService instances
through the Auto Scaling API, the floor the tool's own replacement guarantees.

Times are the embedded world's (`clock.CLOCK`: moments the whole process was frozen are
left out). Neither changes anything; neither prints.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from datomic_aws.app.signals import background_thread
from datomic_aws.sandbox.clock import CLOCK
from datomic_aws.sandbox.transactors import LOST_RACE, Emulation, Exit

if TYPE_CHECKING:
    from mypy_boto3_autoscaling.client import AutoScalingClient
    from mypy_boto3_autoscaling.type_defs import AutoScalingGroupTypeDef


@dataclass(frozen=True)
class Summary:
    longest_gap: float  # seconds without a live active transactor, longest interval
    total_gap: float
    gaps: int
    failovers: int
    race_losses: int
    exits: int
    exit_reasons: dict[str, int]
    samples: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Probe:
    """Samples every `interval` seconds; `clear()` starts a new recording."""

    def __init__(self, emulation: Emulation, interval: float = 0.03) -> None:
        self._emulation = emulation
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clear_state()
        emulation.on_exit = self._on_exit

    def _clear_state(self) -> None:
        self._origin = CLOCK.now()
        self.timeline: list[dict[str, Any]] = []
        self._active: dict[str, str | None] = {}  # system -> live active instance (None: gap)
        self._last_live: dict[str, str] = {}
        self._gap_started: dict[str, float] = {}
        self._gaps: list[float] = []
        self._failovers = 0
        self._exits: list[Exit] = []
        self._samples = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = background_thread(self._run, name="sandbox-probe")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def clear(self) -> None:
        """A new recording from now on; who is active now is still known (a failover right after
        the clear is one), and an interval without an active counts from now."""
        with self._lock:
            active, last_live = dict(self._active), dict(self._last_live)
            self._clear_state()
            self._active, self._last_live = active, last_live
            for system, instance in active.items():
                if instance is None:
                    self._gap_started[system] = self._origin

    def reset(self) -> None:
        """Forget everything (the systems are gone with a reset of the embedded AWS)."""
        with self._lock:
            self._clear_state()

    def _at(self, moment: float) -> float:
        return round(moment - self._origin, 3)

    def _on_exit(self, event: Exit) -> None:
        with self._lock:
            if event.at < self._origin:
                return
            self._exits.append(event)
            self.timeline.append(
                {
                    "t": self._at(event.at),
                    "event": "exit",
                    "system": event.system,
                    "instance": event.instance_id,
                    "role": event.role,
                    "reason": event.reason,
                }
            )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sample()
            except Exception:  # a reset or a storage hiccup: the next sample tries again
                continue

    def live_active(self, system: str) -> str | None:
        """The instance a peer would reach as the active transactor, if any."""
        view = self._emulation.systems.get(system)
        if view is None:
            return None
        record = view.storage.read()
        if record is None or CLOCK.now() - record.stamp > 2 * view.heartbeat:
            return None
        transactor = self._emulation.transactors.get(record.owner)
        if transactor is None or not transactor.listening or not transactor.instance_running():
            return None
        return record.owner

    def sample(self) -> None:
        systems = list(self._emulation.systems)
        found = {system: self.live_active(system) for system in systems}
        now = CLOCK.now()
        with self._lock:
            self._samples += 1
            for system, active in found.items():
                known = system in self._active
                if (not known and active is None) or (known and active == self._active[system]):
                    continue  # not up yet (a first boot is not an outage), or no change
                self._active[system] = active
                if active is None:
                    self._gap_started[system] = now
                    self.timeline.append({"t": self._at(now), "event": "gap", "system": system})
                    continue
                if system in self._gap_started:
                    self._gaps.append(now - self._gap_started.pop(system))
                entry: dict[str, Any] = {
                    "t": self._at(now),
                    "event": "active",
                    "system": system,
                    "instance": active,
                }
                last = self._last_live.get(system)
                if last is not None and last != active:
                    self._failovers += 1
                    entry["failover"] = True
                self._last_live[system] = active
                self.timeline.append(entry)

    def summary(self) -> Summary:
        now = CLOCK.now()
        with self._lock:
            gaps = list(self._gaps) + [now - start for start in self._gap_started.values()]
            reasons: dict[str, int] = {}
            for event in self._exits:
                reasons[event.reason] = reasons.get(event.reason, 0) + 1
            return Summary(
                longest_gap=round(max(gaps, default=0.0), 3),
                total_gap=round(sum(gaps), 3),
                gaps=len(gaps),
                failovers=self._failovers,
                race_losses=reasons.get(LOST_RACE, 0),
                exits=len(self._exits),
                exit_reasons=reasons,
                samples=self._samples,
            )

    def report(self) -> dict[str, Any]:
        summary = self.summary()
        with self._lock:
            return {"summary": summary.as_dict(), "timeline": list(self.timeline)}


class InServiceSample(NamedTuple):
    desired: int
    in_service: int  # InService and Healthy


def serving_count(group: AutoScalingGroupTypeDef) -> int:
    """A group's instances that serve: InService and Healthy (what the replacement floor counts)."""
    return sum(
        1
        for i in group["Instances"]
        if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"
    )


class InServicePoller:
    """Reads groups every `interval` seconds from a thread (its own client) while a command runs:
    `samples` of (desired, in service) of the first group, `seen` of every named group found at
    each read (a group missing from a read was gone). Use as a context manager; `error` holds what
    stopped it. The one InService poller of the sandbox, its tests and the benchmark."""

    def __init__(self, endpoint: str, region: str, *groups: str, interval: float = 0.02) -> None:
        import boto3

        self._client: AutoScalingClient = boto3.client(
            "autoscaling", region_name=region, endpoint_url=endpoint
        )
        self._groups = list(groups)
        self._interval = interval
        self._stop = threading.Event()
        self.samples: list[InServiceSample] = []
        self.seen: list[dict[str, InServiceSample]] = []
        self.error: BaseException | None = None
        self._thread = background_thread(self._run, name="in-service-poller")

    @property
    def in_service(self) -> list[int]:
        return [s.in_service for s in self.samples]

    @property
    def latest(self) -> InServiceSample | None:
        """The first group's last sample (None before the first read, or while it does not exist)."""
        return self.seen[-1].get(self._groups[0]) if self.seen else None

    def _read(self) -> None:
        found = self._client.describe_auto_scaling_groups(AutoScalingGroupNames=self._groups)
        seen = {
            g["AutoScalingGroupName"]: InServiceSample(g["DesiredCapacity"], serving_count(g))
            for g in found["AutoScalingGroups"]
        }
        first = seen.get(self._groups[0])
        if first is not None:
            self.samples.append(first)
        self.seen.append(seen)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._read()
                self._stop.wait(self._interval)
        except BaseException as exc:  # reported by the caller after the run
            self.error = exc

    def __enter__(self) -> InServicePoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
