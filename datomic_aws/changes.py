"""What a command did or would do: per-resource changes, rewritten files, warnings.

Plain data shared by every command; rendering lives in render.py. No AWS, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"


@dataclass(frozen=True)
class Change:
    resource: str
    action: Action
    details: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.action is not Action.NOOP

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "action": self.action.value,
            "details": list(self.details),
        }


def noop(resource: str, *details: str) -> Change:
    return Change(resource, Action.NOOP, details)


@dataclass(frozen=True)
class FileChange:
    path: str
    diff: str
    written: bool
    # The file's full new text, for a later step of the same run (a dry-run `apply` plans the
    # template from it). May hold secrets: never rendered.
    content: str | None = field(default=None, repr=False, compare=False)
    # What the file held before (the same caution): render.py shows the diff of a properties file
    # through its allowlist from both texts, so a continued line is known by the line before it.
    before: str | None = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        return bool(self.diff)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "changed": self.changed,
            "written": self.written,
            "diff": self.diff,
        }


@dataclass
class Result:
    """The outcome of one command; `pending` drives --detailed-exitcode."""

    command: str
    dry_run: bool = False
    changes: list[Change] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        return any(c.changed for c in self.changes) or any(f.changed for f in self.files)

    def merge(self, other: Result) -> None:
        self.changes.extend(other.changes)
        self.files.extend(other.files)
        self.warnings.extend(w for w in other.warnings if w not in self.warnings)
        self.extra.update(other.extra)
