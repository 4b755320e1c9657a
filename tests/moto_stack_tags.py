"""A correction of moto for the tests, pending its move into datomic_aws/sandbox_moto.py.

AWS: executing an UPDATE change set applies the change set's `Tags` to the stack (CreateChangeSet
`Tags`: "Key-value pairs to associate with this stack"); that is how `--adopt` tags a stack it
takes over. moto 5.2 applies the template and parameters of an UPDATE change set but keeps the
stack's old tags. Correction: after moto applies an UPDATE change set, set the stack's tags to the
change set's when it has any. Idempotent; `unpatch()` puts moto's own behaviour back.
"""

from __future__ import annotations

from typing import Any

_ORIGINAL: list[Any] = []


def patch() -> None:
    from moto.cloudformation.models import ChangeSet

    cls: Any = ChangeSet
    if _ORIGINAL:
        return
    original = cls.apply

    def apply(self: Any) -> None:
        original(self)
        if self.change_set_type == "UPDATE" and self.tags:
            self.stack.tags = dict(self.tags)

    _ORIGINAL.append(original)
    cls.apply = apply


def unpatch() -> None:
    from moto.cloudformation.models import ChangeSet

    if _ORIGINAL:
        cls: Any = ChangeSet
        cls.apply = _ORIGINAL.pop()
