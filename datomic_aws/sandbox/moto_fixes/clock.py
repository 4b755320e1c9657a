"""What Auto Scaling does on its own between calls (moto only acts inside a request): lifecycle
hook timeouts and EC2 health checks (`tick`, run every 50 ms by `CLOCK` while the corrections are
applied), and an instance powering itself off (`power_off`).

Everything synchronous *within* a call stays as moto does it; only what AWS does later, on its
own, is added here. Every step runs under `MOTO_LOCK`, the lock moto's requests share.
"""

from __future__ import annotations

import threading
from typing import Any

from datomic_aws.app.signals import background_thread
from datomic_aws.sandbox.moto_fixes import lifecycle
from datomic_aws.sandbox.moto_fixes._registry import MOTO_LOCK


def power_off(account_id: str, region: str, instance_id: str) -> None:
    """`poweroff` inside an instance (the transactor exited): the instance terminates when its
    shutdown behaviour says `terminate`, else it stops; either way the group's EC2 health check
    then takes it out of the group and replaces it (`_health_check`)."""
    from moto.ec2.models import ec2_backends

    with MOTO_LOCK:
        ec2 = ec2_backends[account_id][region]
        try:
            instance = ec2.get_instance(instance_id)
        except Exception:  # reset meanwhile: nothing left to power off
            return
        if not instance.is_running():
            return
        if getattr(instance, "instance_initiated_shutdown_behavior", "stop") == "terminate":
            ec2.terminate_instances([instance_id])
        else:
            ec2.stop_instances([instance_id])
        tick()


def _health_check(group: Any) -> None:
    """AWS: with EC2 health checks a group replaces an instance that is no longer running (stopped
    by a `poweroff`, or terminated from inside or through EC2): it leaves the group (a stopped one
    is terminated) and the group launches a replacement while below its desired capacity.

    moto 5.2 notices only TerminateInstances API calls; an instance that stops, or terminates other
    than through that call, stays in its group for good."""
    gone = [s for s in group.instance_states if s.instance.state not in ("pending", "running")]
    if not gone:
        return
    ids = {s.instance.id for s in gone}
    group.instance_states = [s for s in group.instance_states if s.instance.id not in ids]
    stopped = [s.instance.id for s in gone if s.instance.state in ("stopping", "stopped")]
    if stopped:
        group.autoscaling_backend.ec2_backend.terminate_instances(stopped)
    group.set_desired_capacity(group.desired_capacity)


def tick() -> None:
    """One step of what Auto Scaling does between calls: lifecycle timeouts, health checks."""
    from moto.autoscaling.models import autoscaling_backends

    with MOTO_LOCK:
        backends: list[Any] = [b for _a, _r, b in autoscaling_backends.iter_backends()]
        for backend in backends:
            for group in list(backend.autoscaling_groups.values()):
                lifecycle.expire_actions(group)
                _health_check(group)


class _Clock:
    """Runs `tick` every 50 ms while the corrections are applied."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop = threading.Event()
        self._thread = background_thread(self._run, name="moto-autoscaling-clock")
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(5)
        self._thread = None

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(0.05):
            try:
                tick()
            except Exception:  # a reset between two steps: the next tick sees the new state
                continue


CLOCK = _Clock()
