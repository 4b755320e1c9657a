"""The ownership rule of design §3, shared by every resource module.

A name written in the operator's file is theirs: adopted and converged. A derived name that exists
without our tags is refused unless `--adopt`; one tagged for another system is always refused.
"""

from __future__ import annotations

from datomic_aws import names
from datomic_aws.errors import ForeignSystemError, OwnershipError


def check_owner(
    tags: dict[str, str], system: str, resource: str, *, explicit: bool, adopt: bool
) -> None:
    other = tags.get(names.TAG_SYSTEM)
    if other is not None and other != system:
        raise ForeignSystemError(resource, names.TAG_SYSTEM, other)
    if not explicit and not adopt and not names.is_ours(tags, system):
        raise OwnershipError(resource)
