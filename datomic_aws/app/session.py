"""The one session factory of a CLI run: its global options, every AwsContext it makes (so that an
interrupt can cancel their calls) and the folder lock of the files a command rewrites.

It must not print (the lock's waiting lines go to `on_wait`) or import click.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datomic_aws.aws import AwsContext


@dataclass
class Options:
    profile: str | None
    endpoint_url: str | None
    output: str
    debug: bool
    lock_timeout: float = 600.0
    command: str = ""
    # Where the folder lock's waiting lines go (the CLI's stderr).
    on_wait: Callable[[str], None] = print
    # Every AwsContext of the run, so that an interrupt can cancel their worker threads' calls.
    contexts: list[AwsContext] = field(default_factory=list)

    def locked(
        self, *paths: str | None, dry_run: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """The folders of the files a command rewrites, locked against a concurrent run."""
        if dry_run:
            return contextlib.nullcontext()
        from datomic_aws.locking import folder_lock

        folders = [os.path.dirname(os.path.abspath(p)) for p in paths if p]
        return folder_lock(folders, timeout=self.lock_timeout, on_wait=self.on_wait)

    def aws(
        self, *, dry_run: bool = False, allowed_writes: frozenset[str] = frozenset()
    ) -> AwsContext:
        from datomic_aws.aws import AwsContext

        aws = AwsContext(
            profile=self.profile,
            endpoint_url=self.endpoint_url,
            read_only=dry_run,
            allowed_writes=allowed_writes,
            command=self.command,
            lock_timeout=self.lock_timeout,
        )
        self.contexts.append(aws)
        return aws
