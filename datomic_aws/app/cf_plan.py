"""What ensure-cf found and will do (`CfPlan`), and how its checks word a problem of the file.

Owns the plan's shape only: app/ensure_cf.py and app/cf_network.py fill it from their reads. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datomic_aws.changes import Change
from datomic_aws.config.cf import CfSpec
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


def problem(spec: CfSpec, key: str, message: str, hint: str = "") -> Problem:
    """A problem of the cf file at the line of `key`."""
    return Problem(spec.path, spec.line_of(key), key, message, hint)
