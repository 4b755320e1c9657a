"""The shape every resource kind shares: read once, plan typed operations, execute only those.

Each resource module reads its state once (`read_*`), plans pure frozen operations from the spec
and that state (`plan_*`, which also takes every ownership refusal, before any write), and runs
exactly the planned operations (`execute_*`). A dry run and a real run render the same plan: the
`describe()` of each operation, one line each (a create may state several lines). No AWS here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from datomic_aws.changes import Action, Change


class Operation(Protocol):
    """One planned write; what the dry run and the result print for it."""

    def describe(self) -> str: ...


def lines(operations: tuple[Operation, ...]) -> tuple[str, ...]:
    """The detail lines of planned operations, in order."""
    return tuple(line for op in operations for line in op.describe().splitlines())


@dataclass(frozen=True)
class Planned:
    """The plan of one resource: its operations and the lines that are not operations (a digest
    or an id for a resource left as it is, rules deliberately kept)."""

    resource: str
    action: Action
    operations: tuple[Operation, ...] = ()
    notes: tuple[str, ...] = ()

    def change(self, *head: str) -> Change:
        return Change(self.resource, self.action, (*head, *lines(self.operations), *self.notes))


def action_for(exists: bool, operations: tuple[Operation, ...]) -> Action:
    if not exists:
        return Action.CREATE
    return Action.UPDATE if operations else Action.NOOP
