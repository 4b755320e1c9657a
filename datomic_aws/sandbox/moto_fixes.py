"""Corrections that make moto behave like AWS where our demo and tests depend on it.

Owns `patch_moto()`: small, idempotent, in-process patches of moto's model/response classes, each
stating the AWS behaviour it restores. Because they patch classes, they apply to `mock_aws` and to
a `ThreadedMotoServer` running in the same process alike. Call it before the first request.

Also owns what AWS does on its own between calls (moto only acts inside a request): the Auto
Scaling clock (lifecycle hook timeouts, EC2 health checks, `tick`), the locks that serialise
requests with that clock (`MOTO_LOCK`; DynamoDB has its own), the hand-off to the software an
instance runs (`set_instance_software`, the emulated transactors), and an instance powering itself
off (`power_off`). Everything synchronous *within* a call stays as moto does it; only what AWS
does later, on its own, is added.

It must not patch our own code, must not be imported by the product outside the sandbox/test
paths (moto is an optional dependency), and must not paper over a gap that our code has to handle
on AWS too: only behaviour AWS really has is added here. Known moto gaps that are *not* corrected
(our code handles them, see the reference §7): the group is not moved to a new launch template
version on a stack update (update-stack's `ensure_group_version` moves it), no instance refresh,
CloudFormation synchronous. Tested with moto 5.2.x (the `sandbox` extra pins it).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

_MARK = "_datomic_aws_patched"
_LAUNCHED_FROM = "_datomic_aws_launch_template"
_lock = threading.Lock()
# (class, attribute, moto's original) for every patched attribute, so tests can show moto's own
# behaviour next to the corrected one without leaking a patched moto into other tests.
_originals: list[tuple[Any, str, Any]] = []


def patch_moto() -> None:
    """Apply every correction once; later calls do nothing."""
    with _lock:
        if _originals:
            return
        _patch_serialised_requests()
        _patch_instance_launch_template_version()
        _patch_launch_lifecycle_hook()
        _patch_lifecycle_hooks_at_group_creation()
        _patch_create_bucket_tags()
        _patch_secure_transport_condition()
        _patch_termination_protection()
        _patch_update_change_set_tags()
        _patch_terminate_instance_not_in_group()
        _clock.start()


def is_patched() -> bool:
    with _lock:
        return bool(_originals)


def unpatch_moto() -> None:
    """Put moto's own behaviour back (for tests that demonstrate why a correction is needed)."""
    with _lock:
        _clock.stop()
        while _originals:
            cls, attribute, original = _originals.pop()
            if original is None:
                delattr(cls, attribute)
            else:
                setattr(cls, attribute, original)


def _patch_terminate_instance_not_in_group() -> None:
    """AWS: TerminateInstanceInAutoScalingGroup on an instance that is no longer in a group (it
    was abandoned by its launch hook, or terminated meanwhile) answers HTTP 400 `ValidationError`
    "Instance Id not found - No managed instance found for instance ID: <id>".

    moto 5.2 looks the instance up with a bare `next()` and answers HTTP 500 with an HTML page, which
    no client can tell from a broken proxy. With launch hooks and self-terminating instances (the
    corrections above) an instance can leave its group between a read and this call, as on AWS.
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

    _originals.append((cls, "terminate_instance", original))
    cls.terminate_instance = terminate_instance


def _patch_update_change_set_tags() -> None:
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

    _originals.append((cls, "apply", original))
    cls.apply = apply


def _patch_instance_launch_template_version() -> None:
    """AWS: each instance of an Auto Scaling group reports the launch template *version it was
    launched from* (`Instances[].LaunchTemplate.Version` in DescribeAutoScalingGroups and
    DescribeAutoScalingInstances); that is how an operator, an instance refresh, and our
    replacement tell outdated instances from current ones.

    moto 5.2 computes it on every read from the group's template's *default* version number, so
    every instance claims the same version whatever it was launched from, and moving the group to
    a new version never makes an instance current or outdated. Correction: when the group
    launches instances, record on each the template id, name and the version number the group's
    setting (`3`, `$Latest`, `$Default`) resolved to at that moment; report that record.

    AWS: an instance launched from a launch template also takes its
    `InstanceInitiatedShutdownBehavior` (`stop`, the default, or `terminate`): what a `poweroff`
    inside the instance does (reference §11). moto 5.2 drops it for Auto Scaling launches (every
    instance says `stop`). Correction: copy it from the same template version, in the same step.
    """
    from moto.autoscaling import models

    group_cls: Any = models.FakeAutoScalingGroup
    state_cls: Any = models.InstanceState
    if getattr(group_cls.replace_autoscaling_group_instances, _MARK, False):
        return
    original_launch = group_cls.replace_autoscaling_group_instances
    original_report = state_cls.launch_template

    def replace_autoscaling_group_instances(
        self: Any, count_needed: int, propagated_tags: dict[str, str]
    ) -> None:
        before = {state.instance.id for state in self.instance_states}
        original_launch(self, count_needed, propagated_tags)
        template = self.ec2_launch_template
        if template is None:
            return
        version = template.get_version(self.launch_template_version)
        record = {
            "LaunchTemplateId": template.id,
            "LaunchTemplateName": template.name,
            "Version": str(version.number),
        }
        behaviour = version.data.get("InstanceInitiatedShutdownBehavior")
        for state in self.instance_states:
            if state.instance.id not in before:
                # On the EC2 instance, not the InstanceState: moto rebuilds states (standby).
                setattr(state.instance, _LAUNCHED_FROM, dict(record))
                if behaviour:
                    state.instance.instance_initiated_shutdown_behavior = behaviour

    def launch_template(self: Any) -> dict[str, Any] | None:
        record = getattr(self.instance, _LAUNCHED_FROM, None)
        if record is not None:
            return dict(record)
        # Instances moto launched before the patch, or attached ones: moto's own answer.
        result: dict[str, Any] | None = original_report.fget(self)
        return result

    setattr(replace_autoscaling_group_instances, _MARK, True)
    _originals.append((group_cls, "replace_autoscaling_group_instances", original_launch))
    _originals.append((state_cls, "launch_template", original_report))
    group_cls.replace_autoscaling_group_instances = replace_autoscaling_group_instances
    state_cls.launch_template = property(launch_template)


def _patch_create_bucket_tags() -> None:
    """AWS: CreateBucket accepts `CreateBucketConfiguration.Tags` and the bucket exists with those
    tags from its first moment (atomically; our ownership tags are never missing on a bucket a
    crash left behind). Only a bucket this request creates is tagged: re-creating your own bucket
    in us-east-1 (a 200) leaves its tags alone.

    moto 5.2 parses only `LocationConstraint` from the body and drops the tags. Correction: after
    moto creates the bucket, apply the body's tags as PutBucketTagging would.
    """
    from moto.s3 import models, responses

    response_cls: Any = responses.S3Response
    if getattr(response_cls._bucket_response_put, _MARK, False):
        return
    original_put = response_cls._bucket_response_put

    def _bucket_response_put(
        self: Any, request: Any, bucket_name: str, querystring: dict[str, Any]
    ) -> Any:
        # CreateBucket is the PUT on the bucket without a sub-resource (?tagging, ?policy...).
        creating = not querystring
        existed = bucket_name in models.s3_backends.bucket_accounts
        result = original_put(self, request, bucket_name, querystring)
        if creating and not existed and bucket_name in models.s3_backends.bucket_accounts:
            tags = _tags_from_create_body(self.body)
            if tags:
                self.backend.put_bucket_tagging(bucket_name, tags)
        return result

    setattr(_bucket_response_put, _MARK, True)
    _originals.append((response_cls, "_bucket_response_put", original_put))
    response_cls._bucket_response_put = _bucket_response_put


def _tags_from_create_body(body: bytes | str | None) -> dict[str, str]:
    """`<CreateBucketConfiguration><Tags><Tag><Key/><Value/></Tag>...` -> {key: value}."""
    if not body:
        return {}
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:  # not XML: moto already answered the request
        return {}

    def local(tag: str) -> str:  # the S3 namespace is optional in request bodies
        return tag.rsplit("}", 1)[-1]

    tags: dict[str, str] = {}
    for element in root.iter():
        if local(element.tag) != "Tag":
            continue
        fields = {local(child.tag): child.text or "" for child in element}
        if "Key" in fields:
            tags[fields["Key"]] = fields.get("Value", "")
    return tags


_TLS_CONDITION = {"Bool": {"aws:SecureTransport": "false"}}


def _patch_secure_transport_condition() -> None:
    """AWS: a bucket policy statement `Deny ... Condition Bool aws:SecureTransport=false` denies
    only plain-HTTP requests; every SDK call over HTTPS passes it.

    moto 5.2 cannot evaluate that condition and treats the Deny as unconditional, so a TLS-only
    bucket refuses every object call (403), which would make template uploads to the templates
    bucket fail. The sandbox endpoint is plain HTTP on 127.0.0.1 standing in for AWS's HTTPS, so
    correction: evaluate bucket policies without that one statement.
    """
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    bucket_cls: Any = FakeBucket
    if getattr(bucket_cls.get_permission, _MARK, False):
        return
    original = bucket_cls.get_permission

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(self.policy)
        kept = [s for s in policy.get("Statement", []) if s.get("Condition") != _TLS_CONDITION]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**policy, "Statement": kept})).is_action_permitted(
            action, resource
        )

    setattr(get_permission, _MARK, True)
    _originals.append((bucket_cls, "get_permission", original))
    bucket_cls.get_permission = get_permission


def _patch_termination_protection() -> None:
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
    if getattr(getattr(response_cls, "update_termination_protection", None), _MARK, False):
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

    setattr(update_termination_protection, _MARK, True)
    _originals.append((response_cls, "update_termination_protection", None))
    _originals.append((response_cls, "delete_stack", original_delete))
    response_cls.update_termination_protection = update_termination_protection
    response_cls.delete_stack = delete_stack


# --- one request at a time -----------------------------------------------------------------------

# Serialises moto's requests with the Auto Scaling clock (re-entrant: a request may trigger another
# one in the same thread). DynamoDB requests have their own lock, so that a slow CloudFormation
# request never delays a transactor's heartbeat (on AWS the services do not wait for each other).
MOTO_LOCK = threading.RLock()
DYNAMODB_LOCK = threading.RLock()


def _lock_for(target: object) -> Any:
    return DYNAMODB_LOCK if str(target or "").startswith("DynamoDB_") else MOTO_LOCK


def _patch_serialised_requests() -> None:
    """AWS: each API call is atomic with respect to the others; of two DynamoDB conditional writes
    made at once on one item, exactly one succeeds.

    moto serves a server's requests on one thread each and its models are not thread safe: two
    conditional PutItems may both pass their check, and the Auto Scaling clock (below) would change a
    group while a request reads it. Correction: every request, in-process (`mock_aws`) and served,
    runs under a lock: DynamoDB's own, or `MOTO_LOCK`, which the clock shares.
    """
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    stubber_cls: Any = BotocoreStubber
    app_cls: Any = DomainDispatcherApplication
    original_stub = stubber_cls.__call__
    original_app = app_cls.__call__

    def stubbed(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        with _lock_for(request.headers.get("X-Amz-Target")):
            return original_stub(self, event_name, request, **kwargs)

    def served(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        with _lock_for(environ.get("HTTP_X_AMZ_TARGET")):
            return original_app(self, environ, start_response)

    _originals.append((stubber_cls, "__call__", original_stub))
    _originals.append((app_cls, "__call__", original_app))
    stubber_cls.__call__ = stubbed
    app_cls.__call__ = served


# --- launch lifecycle hooks and the software an instance runs ------------------------------------

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


def _patch_launch_lifecycle_hook() -> None:
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
    from moto.autoscaling.exceptions import ValidationError
    from moto.core.responses import EmptyResult

    group_cls: Any = models.FakeAutoScalingGroup
    response_cls: Any = responses.AutoScalingResponse
    if getattr(getattr(response_cls, "complete_lifecycle_action", None), _MARK, False):
        return
    original_launch = group_cls.replace_autoscaling_group_instances
    original_active = group_cls.active_instances

    def replace_autoscaling_group_instances(
        self: Any, count_needed: int, propagated_tags: dict[str, str]
    ) -> None:
        before = {state.instance.id for state in self.instance_states}
        original_launch(self, count_needed, propagated_tags)
        hooks = _launch_hooks(self)
        launched: list[Launched] = []
        for state in self.instance_states:
            if state.instance.id in before:
                continue
            if hooks:
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
            launched.append(
                Launched(
                    self.account_id,
                    self.region,
                    self.name,
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
                    complete_action(self, item.instance_id, hook.name, "CONTINUE")

    def active_instances(self: Any) -> list[Any]:
        return [s for s in self.instance_states if s.lifecycle_state in _CAPACITY_STATES]

    def _group(response: Any) -> Any:
        name = response._get_param("AutoScalingGroupName")
        group = response.autoscaling_backend.autoscaling_groups.get(name)
        if group is None:
            raise ValidationError(f"Group {name} not found")
        return group

    def complete_lifecycle_action(self: Any) -> Any:
        instance_id = self._get_param("InstanceId") or _instance_of_token(
            _group(self), self._get_param("LifecycleActionToken")
        )
        if not complete_action(
            _group(self),
            instance_id,
            self._get_param("LifecycleHookName"),
            self._get_param("LifecycleActionResult"),
        ):
            raise ValidationError(
                f"No active Lifecycle Action found with instance ID {instance_id}"
            )
        return EmptyResult()

    def record_lifecycle_action_heartbeat(self: Any) -> Any:
        group = _group(self)
        instance_id = self._get_param("InstanceId") or _instance_of_token(
            group, self._get_param("LifecycleActionToken")
        )
        action = _pending(group, instance_id).get(self._get_param("LifecycleHookName"))
        if action is None:
            raise ValidationError(
                f"No active Lifecycle Action found with instance ID {instance_id}"
            )
        action.deadline = now() + action.timeout
        return EmptyResult()

    for function in (replace_autoscaling_group_instances, complete_lifecycle_action):
        setattr(function, _MARK, True)
    _originals.append((group_cls, "replace_autoscaling_group_instances", original_launch))
    _originals.append((group_cls, "active_instances", original_active))
    _originals.append((response_cls, "complete_lifecycle_action", None))
    _originals.append((response_cls, "record_lifecycle_action_heartbeat", None))
    group_cls.replace_autoscaling_group_instances = replace_autoscaling_group_instances
    group_cls.active_instances = active_instances
    response_cls.complete_lifecycle_action = complete_lifecycle_action
    response_cls.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat


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


def _patch_lifecycle_hooks_at_group_creation() -> None:
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
    if getattr(backend_cls.delete_auto_scaling_group, _MARK, False):
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

    setattr(delete_auto_scaling_group, _MARK, True)
    _originals.append((group_cls, "create_from_cloudformation_json", original_cf))
    _originals.append((response_cls, "create_auto_scaling_group", original_create))
    _originals.append((backend_cls, "delete_auto_scaling_group", original_delete))
    group_cls.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
    response_cls.create_auto_scaling_group = create_auto_scaling_group
    backend_cls.delete_auto_scaling_group = delete_auto_scaling_group


# --- an instance that powers itself off ----------------------------------------------------------


def power_off(account_id: str, region: str, instance_id: str) -> None:
    """`poweroff` inside an instance (the transactor exited): the instance terminates when its
    shutdown behaviour says `terminate`, else it stops; either way the group's EC2 health check
    then takes it out of the group and replaces it (`_health_check`)."""
    from moto.ec2.models import ec2_backends

    with MOTO_LOCK:
        ec2 = ec2_backends[account_id][region]
        try:
            instance = ec2.get_instance(instance_id)
        except Exception:  # reset meanwhile: nothing left to power off
            return
        if not instance.is_running():
            return
        if getattr(instance, "instance_initiated_shutdown_behavior", "stop") == "terminate":
            ec2.terminate_instances([instance_id])
        else:
            ec2.stop_instances([instance_id])
        tick()


def _health_check(group: Any) -> None:
    """AWS: with EC2 health checks a group replaces an instance that is no longer running (stopped
    by a `poweroff`, or terminated from inside or through EC2): it leaves the group (a stopped one
    is terminated) and the group launches a replacement while below its desired capacity.

    moto 5.2 notices only TerminateInstances API calls; an instance that stops, or terminates other
    than through that call, stays in its group for good."""
    gone = [s for s in group.instance_states if s.instance.state not in ("pending", "running")]
    if not gone:
        return
    ids = {s.instance.id for s in gone}
    group.instance_states = [s for s in group.instance_states if s.instance.id not in ids]
    stopped = [s.instance.id for s in gone if s.instance.state in ("stopping", "stopped")]
    if stopped:
        group.autoscaling_backend.ec2_backend.terminate_instances(stopped)
    group.set_desired_capacity(group.desired_capacity)


def _expire_actions(group: Any) -> None:
    current = now()
    for state in list(group.instance_states):
        for action in list(getattr(state.instance, _ACTIONS, {}).values()):
            if action.deadline <= current:
                complete_action(group, state.instance.id, action.hook, action.default_result)


def now() -> float:
    """The lifecycle clock. A module function so that a test can step it instead of sleeping."""
    return time.monotonic()


def tick() -> None:
    """One step of what Auto Scaling does between calls: lifecycle timeouts, health checks."""
    from moto.autoscaling.models import autoscaling_backends

    with MOTO_LOCK:
        backends: list[Any] = [b for _a, _r, b in autoscaling_backends.iter_backends()]
        for backend in backends:
            for group in list(backend.autoscaling_groups.values()):
                _expire_actions(group)
                _health_check(group)


class _Clock:
    """Runs `tick` every 50 ms while the corrections are applied."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="moto-autoscaling-clock", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(5)
        self._thread = None

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(0.05):
            try:
                tick()
            except Exception:  # a reset between two steps: the next tick sees the new state
                continue


_clock = _Clock()
