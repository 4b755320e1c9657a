"""What a roll measured (`Availability`): the lowest InService count, the intervals with no
instance reporting active, the failovers, the roll's warnings and the steps it ran. Pure
bookkeeping from the polls the executor makes anyway; no AWS call, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datomic_aws.names import ROLE_ACTIVE
from datomic_aws.replace.group import GroupInfo, is_current


@dataclass
class Availability:
    """What a roll measured, from the polls it made anyway: the lowest InService count, the
    intervals with no current instance reporting `active` (from the termination of the old
    active to the first poll that sees its successor report active), and the failovers seen.

    Measured from the instances' role tags, so at the poll interval's resolution.
    """

    group_size: int = 0
    poll_interval: float = 0.0
    roles_known: bool = False
    replaced: int = 0
    min_in_service: int | None = None
    failovers: int = 0
    no_active_intervals: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The describe() of each plan step, in order: what the roll ran (or, in a dry run, would run).
    steps: list[str] = field(default_factory=list)
    _gap_start: float | None = None
    _last_active: str | None = None

    def observe(self, group: GroupInfo, now: float, version: str | None, lt_id: str | None) -> None:
        count = group.in_service_count
        self.min_in_service = (
            count if self.min_in_service is None else min(self.min_in_service, count)
        )
        active = group.with_role(ROLE_ACTIVE)
        self.roles_known = self.roles_known or group.roles_known
        if active:
            if self._last_active is not None and active[0].instance_id != self._last_active:
                self.failovers += 1
            self._last_active = active[0].instance_id
        current_active = [i for i in active if version and lt_id and is_current(i, lt_id, version)]
        if self._gap_start is not None and current_active:
            self.no_active_intervals.append(max(0.0, now - self._gap_start))
            self._gap_start = None

    def active_terminated(self, now: float) -> None:
        self._gap_start = now

    def as_dict(self) -> dict[str, Any]:
        return {
            "group_size": self.group_size,
            "replaced": self.replaced,
            "min_in_service": self.min_in_service,
            "roles_known": self.roles_known,
            "failovers": self.failovers if self.roles_known else None,
            "no_active_seconds": round(sum(self.no_active_intervals), 3)
            if self.roles_known
            else None,
            "no_active_intervals": [round(x, 3) for x in self.no_active_intervals],
            "poll_interval": self.poll_interval,
            "measured_from": "the instances' datomic:role tags, at the poll interval's resolution",
        }

    def details(self) -> tuple[str, ...]:
        floor = "?" if self.min_in_service is None else str(self.min_in_service)
        lines = [
            f"availability during the roll: lowest InService count seen {floor} "
            f"(group of {self.group_size})"
        ]
        if not self.roles_known:
            lines.append(
                "interval with no active transactor: not measured (the instances publish no role)"
            )
        else:
            gaps = " + ".join(f"{x:.1f}s" for x in self.no_active_intervals) or "none seen"
            lines.append(
                f"interval with no instance reporting active: {gaps}, over {self.failovers} "
                f"failover(s) (measured from the datomic:role tags at the {self.poll_interval:g}s "
                "poll interval's resolution)"
            )
        return tuple(lines)
