"""What ensure-cf found and will do (`CfPlan`).

Owns the plan's shape only: app/ensure_cf.py and app/cf_network.py fill it from their reads. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datomic_aws.changes import Change
from datomic_aws.errors import Problem
from datomic_aws.resources import ec2 as ec2r


@dataclass
class CfPlan:
    """What ensure-cf found and will do; built by reads only."""

    system: str
    updates: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    group: ec2r.SecurityGroupSpec | None = None
    group_state: ec2r.SecurityGroupState | None = None
    network: Change | None = None
