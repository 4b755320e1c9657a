"""EC2 corrections for instances an Auto Scaling group launches: each keeps the launch template
version it was launched from and that version's shutdown behaviour.

Owns `patch_instance_launch_template_version`; it must not change which instances a group
launches, only what each reports about its launch.
"""

from __future__ import annotations

from typing import Any

from datomic_aws.sandbox.moto_fixes._registry import MARK, replace

_LAUNCHED_FROM = "_datomic_aws_launch_template"


def _record_launch(group: Any, before: set[str]) -> None:
    """Record on each instance launched since `before` the template version the group's setting
    (`3`, `$Latest`, `$Default`) resolves to now, and that version's shutdown behaviour."""
    template = group.ec2_launch_template
    if template is None:
        return
    version = template.get_version(group.launch_template_version)
    record = {
        "LaunchTemplateId": template.id,
        "LaunchTemplateName": template.name,
        "Version": str(version.number),
    }
    behaviour = version.data.get("InstanceInitiatedShutdownBehavior")
    for state in group.instance_states:
        if state.instance.id not in before:
            # On the EC2 instance, not the InstanceState: moto rebuilds states (standby).
            setattr(state.instance, _LAUNCHED_FROM, dict(record))
            if behaviour:
                state.instance.instance_initiated_shutdown_behavior = behaviour


def patch_instance_launch_template_version() -> None:
    """AWS: each instance of an Auto Scaling group reports the launch template *version it was
    launched from* (`Instances[].LaunchTemplate.Version` in DescribeAutoScalingGroups and
    DescribeAutoScalingInstances); that is how an operator, an instance refresh, and our
    replacement tell outdated instances from current ones.

    moto 5.2 computes it on every read from the group's template's *default* version number, so
    every instance claims the same version whatever it was launched from, and moving the group to
    a new version never makes an instance current or outdated. Correction: when the group
    launches instances, record on each the template id, name and the version number the group's
    setting resolved to at that moment; report that record.

    AWS: an instance launched from a launch template also takes its
    `InstanceInitiatedShutdownBehavior` (`stop`, the default, or `terminate`): what a `poweroff`
    inside the instance does (reference §11). moto 5.2 drops it for Auto Scaling launches (every
    instance says `stop`). Correction: copy it from the same template version, in the same step.
    """
    from moto.autoscaling import models

    group_cls: Any = models.FakeAutoScalingGroup
    state_cls: Any = models.InstanceState
    if getattr(group_cls.replace_autoscaling_group_instances, MARK, False):
        return
    original_launch = group_cls.replace_autoscaling_group_instances
    original_report = state_cls.launch_template

    def replace_autoscaling_group_instances(
        self: Any, count_needed: int, propagated_tags: dict[str, str]
    ) -> None:
        before = {state.instance.id for state in self.instance_states}
        original_launch(self, count_needed, propagated_tags)
        _record_launch(self, before)

    def launch_template(self: Any) -> dict[str, Any] | None:
        record = getattr(self.instance, _LAUNCHED_FROM, None)
        if record is not None:
            return dict(record)
        # Instances moto launched before the patch, or attached ones: moto's own answer.
        result: dict[str, Any] | None = original_report.fget(self)
        return result

    setattr(replace_autoscaling_group_instances, MARK, True)
    replace(
        group_cls,
        "replace_autoscaling_group_instances",
        original_launch,
        replace_autoscaling_group_instances,
    )
    replace(state_cls, "launch_template", original_report, property(launch_template))
