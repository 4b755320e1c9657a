"""Corrections that make moto behave like AWS where our demo and tests depend on it.

Owns `patch_moto()`: small, idempotent, in-process patches of moto's model/response classes, each
stating the AWS behaviour it restores. Because they patch classes, they apply to `mock_aws` and to
a `ThreadedMotoServer` running in the same process alike. Call it before the first request.

It must not patch our own code, must not be imported by the product outside the sandbox/test
paths (moto is an optional dependency), and must not paper over a gap that our code has to handle
on AWS too: only behaviour AWS really has is added here. Known moto gaps that are *not* corrected
(our code handles them, see the reference §7): the group is not moved to a new launch template
version on a stack update (update-stack's `ensure_group_version` moves it), no instance refresh,
everything synchronous.
"""

from __future__ import annotations

import json
import threading
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
        _patch_instance_launch_template_version()
        _patch_create_bucket_tags()
        _patch_secure_transport_condition()
        _patch_termination_protection()


def is_patched() -> bool:
    with _lock:
        return bool(_originals)


def unpatch_moto() -> None:
    """Put moto's own behaviour back (for tests that demonstrate why a correction is needed)."""
    with _lock:
        while _originals:
            cls, attribute, original = _originals.pop()
            if original is None:
                delattr(cls, attribute)
            else:
                setattr(cls, attribute, original)


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
        for state in self.instance_states:
            if state.instance.id not in before:
                # On the EC2 instance, not the InstanceState: moto rebuilds states (standby).
                setattr(state.instance, _LAUNCHED_FROM, dict(record))

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
