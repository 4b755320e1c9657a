"""The record of every moto attribute the corrections replace, so that `unpatch_moto` can put
moto's own behaviour back, and the locks that serialise requests with the Auto Scaling clock.

Owns bookkeeping only: it must not patch anything itself.
"""

from __future__ import annotations

import threading
from typing import Any

MARK = "_datomic_aws_patched"

# Serialises moto's requests with the Auto Scaling clock (re-entrant: a request may trigger another
# one in the same thread). DynamoDB requests have their own lock, so that a slow CloudFormation
# request never delays a transactor's heartbeat (on AWS the services do not wait for each other).
MOTO_LOCK = threading.RLock()
DYNAMODB_LOCK = threading.RLock()

# (class, attribute, moto's original) for every patched attribute, so tests can show moto's own
# behaviour next to the corrected one without leaking a patched moto into other tests.
originals: list[tuple[Any, str, Any]] = []


def replace(cls: Any, attribute: str, original: Any, new: Any) -> None:
    """Set `cls.attribute = new`, remembering moto's `original` (None: there was none, so restoring
    deletes the attribute)."""
    originals.append((cls, attribute, original))
    setattr(cls, attribute, new)


def restore_all() -> None:
    while originals:
        cls, attribute, original = originals.pop()
        if original is None:
            delattr(cls, attribute)
        else:
            setattr(cls, attribute, original)
