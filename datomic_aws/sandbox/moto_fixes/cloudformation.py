"""CloudFormation corrections: an UPDATE change set applies its tags; termination protection.

Owns `patch_update_change_set_tags` and `patch_termination_protection`; each restores one AWS
behaviour our flows rely on (reference §7 lists the moto gaps our code handles itself instead).
"""

from __future__ import annotations

from typing import Any

from datomic_aws.sandbox.moto_fixes._registry import MARK, replace


def patch_update_change_set_tags() -> None:
    """AWS: executing an UPDATE change set applies the change set's `Tags` to the stack
    (CreateChangeSet `Tags`: "Key-value pairs to associate with this stack"); that is how
    `--adopt` tags a stack it takes over.

    moto 5.2 applies the template and parameters of an UPDATE change set but keeps the stack's old
    tags. Correction: after moto applies an UPDATE change set that carries tags, the stack's tags
    are the change set's.
    """
    from moto.cloudformation.models import ChangeSet

    cls: Any = ChangeSet
    original = cls.apply

    def apply(self: Any) -> None:
        original(self)
        if self.change_set_type == "UPDATE" and self.tags:
            self.stack.tags = dict(self.tags)

    replace(cls, "apply", original, apply)


def patch_termination_protection() -> None:
    """AWS: UpdateTerminationProtection turns a stack's termination protection on or off, and
    DeleteStack on a protected stack fails with a ValidationError.

    moto 5.2 has no UpdateTerminationProtection (in-process: NotImplementedError; server: an
    unparsable 500) and deletes protected stacks. Correction: implement the call on moto's own
    stack attribute, and refuse DeleteStack while it is set, as AWS does.
    """
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.core.responses import ActionResult

    response_cls: Any = CloudFormationResponse
    if getattr(getattr(response_cls, "update_termination_protection", None), MARK, False):
        return
    original_delete = response_cls.delete_stack

    def update_termination_protection(self: Any) -> Any:
        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        stack.enable_termination_protection = self._get_bool_param(
            "EnableTerminationProtection", False
        )
        return ActionResult({"StackId": stack.stack_id})

    def delete_stack(self: Any) -> Any:
        name = self._get_param("StackName")
        stacks = self.cloudformation_backend.describe_stacks(name)
        if stacks and getattr(stacks[0], "enable_termination_protection", False):
            raise ValidationError(
                name,
                message=f"Stack [{name}] cannot be deleted while TerminationProtection is enabled",
            )
        return original_delete(self)

    setattr(update_termination_protection, MARK, True)
    replace(response_cls, "update_termination_protection", None, update_termination_protection)
    replace(response_cls, "delete_stack", original_delete, delete_stack)
