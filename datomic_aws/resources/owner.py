"""The ownership rule of design §3, shared by every resource module.

A name written in the operator's file is theirs: adopted and converged. A derived name that exists
without our tags is refused unless `--adopt`; one tagged for another system is always refused.
"""

from __future__ import annotations

from typing import TypedDict

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


class Tag(TypedDict):
    """A tag as every AWS service's API takes it (each boto3 stub's TagTypeDef has this shape)."""

    Key: str
    Value: str


def tag_list(system: str) -> list[Tag]:
    """Our ownership tags for `system` (names.tags), in the shape the tagging APIs take."""
    return [{"Key": k, "Value": v} for k, v in names.tags(system).items()]
