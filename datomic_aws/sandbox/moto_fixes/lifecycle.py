"""Auto Scaling lifecycle corrections: launch lifecycle hooks hold new instances in Pending:Wait
until completed (or until their timeout applies the default result), hooks can be created with the
group, and the instance software (the emulated transactors) is handed every launched instance.

Owns the pending launch actions (`PendingAction`, `complete_action`, `expire_actions`), the
lifecycle clock's time source `now` (a module function a test steps instead of sleeping), the
registered instance software (`set_instance_software`, `Launched`), and the Auto Scaling patches
`patch_launch_lifecycle_hook`, `patch_lifecycle_hooks_at_group_creation`,
`patch_terminate_instance_not_in_group`. What AWS does between calls runs in `clock`.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datomic_aws.sandbox.moto_fixes._registry import MARK, replace

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
_ACTIONS = "_datomic_aws_lifecycle_actions"
# States that count toward the group's capacity (AWS counts an instance from its launch).
_CAPACITY_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")


@dataclass
class PendingAction:
    """A launch lifecycle action an instance has not completed yet."""

    hook: str
    token: str
    default_result: str
    timeout: float
    deadline: float


@dataclass(frozen=True)
class Launched:
    """An instance the Auto Scaling group has just launched, as the software on it sees it."""

    account_id: str
    region: str
    group: str
    instance_id: str
    user_data: str
    held_by_hook: str | None  # the launch hook holding it in Pending:Wait, if any


Software = Callable[[Launched], None]
_software: Software | None = None


def set_instance_software(software: Software | None) -> None:
    """What runs on every instance the embedded Auto Scaling launches from now on (called inside the
    launching request, under MOTO_LOCK: it must only start a thread). None: no software; an instance
    held by a launch hook then completes it with CONTINUE at once, like a boot script that succeeds
    in no time (so flows that do not emulate instances see them InService, as before)."""
    global _software
    _software = software


def now() -> float:
    """The lifecycle clock. A module function so that a test can step it instead of sleeping."""
    return time.monotonic()


def _decoded_user_data(instance: Any) -> str:
    raw = getattr(instance, "user_data", None)
    if raw is None:
        return ""
    if isinstance(raw, list):  # moto keeps a list for some launch paths
        raw = raw[0] if raw else ""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "replace")
    except ValueError:
        return text


def _launch_hooks(group: Any) -> list[Any]:
    return [
        hook
        for hook in group.autoscaling_backend.lifecycle_hooks.values()
        if hook.auto_scaling_group_name == group.name and hook.lifecycle_transition == LAUNCHING
    ]


def _hold(state: Any, hooks: list[Any]) -> None:
    """Put a just-launched instance in Pending:Wait with one pending action per launch hook."""
    state.lifecycle_state = "Pending:Wait"
    actions = {
        hook.name: PendingAction(
            hook.name,
            str(uuid.uuid4()),
            hook.default_result,
            float(hook.heartbeat_timeout),
            now() + float(hook.heartbeat_timeout),
        )
        for hook in hooks
    }
    setattr(state.instance, _ACTIONS, actions)


def _launch_held(group: Any, before: set[str]) -> None:
    """Hold every instance launched since `before` by the group's launch hooks, then hand each to
    the instance software (none registered: a held instance completes its hooks with CONTINUE)."""
    hooks = _launch_hooks(group)
    launched: list[Launched] = []
    for state in group.instance_states:
        if state.instance.id in before:
            continue
        if hooks:
            _hold(state, hooks)
        launched.append(
            Launched(
                group.account_id,
                group.region,
                group.name,
                state.instance.id,
                _decoded_user_data(state.instance),
                hooks[0].name if hooks else None,
            )
        )
    for item in launched:
        software = _software
        if software is not None:
            software(item)
        elif item.held_by_hook:
            for hook in hooks:
                complete_action(group, item.instance_id, hook.name, "CONTINUE")


def _active_instances(self: Any) -> list[Any]:
    return [s for s in self.instance_states if s.lifecycle_state in _CAPACITY_STATES]


def _group_of(response: Any) -> Any:
    from moto.autoscaling.exceptions import ValidationError

    name = response._get_param("AutoScalingGroupName")
    group = response.autoscaling_backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(f"Group {name} not found")
    return group


def _action_instance(response: Any, group: Any) -> str | None:
    """The instance a lifecycle call names: by id, or by the token of its pending action."""
    instance_id: str | None = response._get_param("InstanceId")
    return instance_id or _instance_of_token(group, response._get_param("LifecycleActionToken"))


def _complete_lifecycle_action(self: Any) -> Any:
    """CompleteLifecycleAction, as a method of moto's AutoScalingResponse."""
    from moto.autoscaling.exceptions import ValidationError
    from moto.core.responses import EmptyResult

    group = _group_of(self)
    instance_id = _action_instance(self, group)
    if not complete_action(
        group,
        instance_id,
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionResult"),
    ):
        raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")
    return EmptyResult()


def _record_lifecycle_action_heartbeat(self: Any) -> Any:
    """RecordLifecycleActionHeartbeat, as a method of moto's AutoScalingResponse."""
    from moto.autoscaling.exceptions import ValidationError
    from moto.core.responses import EmptyResult

    group = _group_of(self)
    instance_id = _action_instance(self, group)
    action = _pending(group, instance_id).get(self._get_param("LifecycleHookName"))
    if action is None:
        raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")
    action.deadline = now() + action.timeout
    return EmptyResult()


def patch_launch_lifecycle_hook() -> None:
    """AWS: an instance launched into a group with an `autoscaling:EC2_INSTANCE_LAUNCHING` hook
    stays in `Pending:Wait` (counting toward the group's capacity) until CompleteLifecycleAction:
    CONTINUE puts it InService; ABANDON terminates it and the group launches a replacement while it
    is below its desired capacity. RecordLifecycleActionHeartbeat restarts the hook's
    HeartbeatTimeout; when it expires the hook's DefaultResult applies (reference §11).

    moto 5.2 stores hooks but never applies them: instances are InService at once, and
    CompleteLifecycleAction / RecordLifecycleActionHeartbeat do not exist. Correction: hold new
    instances in Pending:Wait, implement both calls, let the clock apply DefaultResult; hand every
    launched instance to the registered instance software (`set_instance_software`).
    """
    from moto.autoscaling import models, responses

    group_cls: Any = models.FakeAutoScalingGroup
    response_cls: Any = responses.AutoScalingResponse
    if getattr(getattr(response_cls, "complete_lifecycle_action", None), MARK, False):
        return
    original_launch = group_cls.replace_autoscaling_group_instances

    def replace_autoscaling_group_instances(
        self: Any, count_needed: int, propagated_tags: dict[str, str]
    ) -> None:
        before = {state.instance.id for state in self.instance_states}
        original_launch(self, count_needed, propagated_tags)
        _launch_held(self, before)

    def complete_lifecycle_action(self: Any) -> Any:
        return _complete_lifecycle_action(self)

    for function in (replace_autoscaling_group_instances, complete_lifecycle_action):
        setattr(function, MARK, True)
    replace(
        group_cls,
        "replace_autoscaling_group_instances",
        original_launch,
        replace_autoscaling_group_instances,
    )
    replace(group_cls, "active_instances", group_cls.active_instances, _active_instances)
    replace(response_cls, "complete_lifecycle_action", None, complete_lifecycle_action)
    replace(
        response_cls, "record_lifecycle_action_heartbeat", None, _record_lifecycle_action_heartbeat
    )


def _pending(group: Any, instance_id: str | None) -> dict[str, PendingAction]:
    for state in group.instance_states:
        if state.instance.id == instance_id and state.lifecycle_state == "Pending:Wait":
            actions: dict[str, PendingAction] = getattr(state.instance, _ACTIONS, {})
            return actions
    return {}


def _instance_of_token(group: Any, token: str | None) -> str | None:
    for state in group.instance_states:
        for action in getattr(state.instance, _ACTIONS, {}).values():
            if action.token == token:
                return str(state.instance.id)
    return None


def complete_action(group: Any, instance_id: str | None, hook: str, result: str) -> bool:
    """Apply CONTINUE or ABANDON to an instance's pending launch action; False when none is pending.
    Callers hold MOTO_LOCK (a request, the clock)."""
    actions = _pending(group, instance_id)
    if hook not in actions:
        return False
    del actions[hook]
    if result == "ABANDON":
        group.instance_states = [s for s in group.instance_states if s.instance.id != instance_id]
        group.autoscaling_backend.ec2_backend.terminate_instances([instance_id])
        group.set_desired_capacity(group.desired_capacity)  # a replacement while below desired
    elif not actions:
        for state in group.instance_states:
            if state.instance.id == instance_id:
                state.lifecycle_state = "InService"
    return True


def expire_actions(group: Any) -> None:
    """Apply the default result of every pending launch action whose heartbeat timeout passed."""
    current = now()
    for state in list(group.instance_states):
        for action in list(getattr(state.instance, _ACTIONS, {}).values()):
            if action.deadline <= current:
                complete_action(group, state.instance.id, action.hook, action.default_result)


def _put_hooks(backend: Any, group: str, specs: list[dict[str, Any]]) -> None:
    for spec in specs:
        timeout = spec.get("HeartbeatTimeout")
        backend.create_lifecycle_hook(
            name=spec["LifecycleHookName"],
            as_name=group,
            transition=spec.get("LifecycleTransition"),
            timeout=int(timeout) if timeout is not None else None,
            result=spec.get("DefaultResult"),
        )


def patch_lifecycle_hooks_at_group_creation() -> None:
    """AWS: `LifecycleHookSpecificationList` on CreateAutoScalingGroup (and on an
    AWS::AutoScaling::AutoScalingGroup resource) creates the hooks before the group launches its
    first instances, so those are held too; deleting the group deletes its hooks.

    moto 5.2 ignores the list in both places and keeps a deleted group's hooks. Correction: create
    the listed hooks before moto creates the group; drop a group's hooks with the group.
    """
    from moto.autoscaling import models, responses

    group_cls: Any = models.FakeAutoScalingGroup
    response_cls: Any = responses.AutoScalingResponse
    backend_cls: Any = models.AutoScalingBackend
    if getattr(backend_cls.delete_auto_scaling_group, MARK, False):
        return
    original_cf = group_cls.__dict__["create_from_cloudformation_json"]
    original_create = response_cls.create_auto_scaling_group
    original_delete = backend_cls.delete_auto_scaling_group

    def create_from_cloudformation_json(
        cls: Any,
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        properties = cloudformation_json.get("Properties", {})
        backend = models.autoscaling_backends[account_id][region_name]
        _put_hooks(backend, resource_name, properties.get("LifecycleHookSpecificationList", []))
        return original_cf.__func__(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )

    def create_auto_scaling_group(self: Any) -> Any:
        name = self._get_param("AutoScalingGroupName")
        _put_hooks(
            self.autoscaling_backend, name, self._get_param("LifecycleHookSpecificationList", [])
        )
        return original_create(self)

    def delete_auto_scaling_group(self: Any, group_name: str) -> None:
        original_delete(self, group_name)
        for key, hook in list(self.lifecycle_hooks.items()):
            if hook.auto_scaling_group_name == group_name:
                del self.lifecycle_hooks[key]

    setattr(delete_auto_scaling_group, MARK, True)
    replace(
        group_cls,
        "create_from_cloudformation_json",
        original_cf,
        classmethod(create_from_cloudformation_json),
    )
    replace(response_cls, "create_auto_scaling_group", original_create, create_auto_scaling_group)
    replace(backend_cls, "delete_auto_scaling_group", original_delete, delete_auto_scaling_group)


# --- an instance that powers itself off ----------------------------------------------------------


def patch_terminate_instance_not_in_group() -> None:
    """AWS: TerminateInstanceInAutoScalingGroup on an instance that is no longer in a group (it
    was abandoned by its launch hook, or terminated meanwhile) answers HTTP 400 `ValidationError`
    "Instance Id not found - No managed instance found for instance ID: <id>".

    moto 5.2 looks the instance up with a bare `next()` and answers HTTP 500 with an HTML page, which
    no client can tell from a broken proxy. With launch hooks and self-terminating instances (the
    launch hook and the clock's health check) an instance can leave its group between a read and this call, as on AWS.
    Correction: answer as AWS does.
    """
    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.models import AutoScalingBackend

    cls: Any = AutoScalingBackend
    original = cls.terminate_instance

    def terminate_instance(self: Any, instance_id: str, should_decrement: bool) -> Any:
        if not any(
            state.instance.id == instance_id
            for group in self.autoscaling_groups.values()
            for state in group.instance_states
        ):
            raise ValidationError(
                f"Instance Id not found - No managed instance found for instance ID: {instance_id}"
            )
        return original(self, instance_id, should_decrement)

    replace(cls, "terminate_instance", original, terminate_instance)
